//! Bad input gets a typed error and leaves C untouched; degenerate sizes do what the docs say.

mod common;

use common::{cpu_backend, engine, ocl_backends, wgpu_backends};
use std::borrow::Cow;
use std::sync::Arc;
use tilegemm::{Backend, Engine, Error, GemmProblem, Operand, Target};

/// The CPU, every wgpu device and every OpenCL device.
fn all_backends() -> Vec<Arc<dyn Backend>> {
    let mut all = vec![cpu_backend()];
    all.extend(wgpu_backends());
    all.extend(ocl_backends());
    all
}

fn first_kernel(backend: &dyn Backend) -> String {
    backend.kernels()[0].clone()
}

const POISON: f32 = -7.25;

#[test]
fn short_slices_are_length_mismatches_and_c_is_untouched() {
    let p = GemmProblem::new(4, 5, 6);
    for backend in all_backends() {
        let kernel = first_kernel(backend.as_ref());
        let mut c = vec![POISON; 20];
        let err = backend
            .gemm(&kernel, &p, &[1.0; 23], &[1.0; 30], &mut c)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::LengthMismatch {
                    operand: Operand::A,
                    required: 24,
                    actual: 23
                }
            ),
            "{err}"
        );
        let err = backend
            .gemm(&kernel, &p, &[1.0; 24], &[1.0; 29], &mut c)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::LengthMismatch {
                    operand: Operand::B,
                    ..
                }
            ),
            "{err}"
        );
        let mut short_c = vec![POISON; 19];
        let err = backend
            .gemm(&kernel, &p, &[1.0; 24], &[1.0; 30], &mut short_c)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::LengthMismatch {
                    operand: Operand::C,
                    ..
                }
            ),
            "{err}"
        );
        assert!(c.iter().chain(&short_c).all(|&x| x == POISON));
    }
}

#[test]
fn overflowing_sizes_are_errors_not_panics() {
    let huge = GemmProblem::new(usize::MAX / 4, 3, usize::MAX / 4);
    let mut c = vec![POISON; 4];
    let err = engine().gemm(&huge, &[1.0], &[1.0], &mut c).unwrap_err();
    assert!(matches!(err, Error::SizeOverflow { .. }), "{err}");
    for backend in all_backends() {
        let err = backend
            .check(&first_kernel(backend.as_ref()), &huge)
            .unwrap_err();
        assert!(matches!(err, Error::SizeOverflow { .. }), "{err}");
    }
    assert!(c.iter().all(|&x| x == POISON));
}

#[test]
fn short_leading_dimension_is_an_error() {
    let p = GemmProblem::new(2, 2, 3).with_leading_dims(2, 2, 2);
    let mut c = vec![POISON; 4];
    let err = engine().gemm(&p, &[1.0; 8], &[1.0; 8], &mut c).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LeadingDimension {
                operand: Operand::A,
                ld: 2,
                min: 3
            }
        ),
        "{err}"
    );
    assert!(c.iter().all(|&x| x == POISON));
}

/// Over the binding size, a problem is split, not refused; only what no split can fix is a
/// `DeviceLimit` naming the limit: a leading dimension past the kernels' 32-bit indices.
#[test]
fn only_limits_no_split_can_fix_refuse_a_problem() {
    for backend in wgpu_backends() {
        let limit = backend.capabilities().max_binding_bytes;
        let over = GemmProblem::new(1, 1, (limit / 4 + 1) as usize);
        backend.check("tile16", &over).unwrap();
        let wide = GemmProblem::new(1, 1, 1).with_leading_dims(1 << 31, 1, 1);
        let err = backend.check("tile16", &wide).unwrap_err();
        match &err {
            Error::DeviceLimit {
                limit: name,
                required,
                available,
                ..
            } => {
                assert!(name.contains("leading dimension"), "{err}");
                assert!(required > available);
            }
            other => panic!("expected a device limit, got {other}"),
        }
        let mut c = vec![POISON];
        let err = backend
            .gemm("tile16", &wide, &[1.0], &[1.0], &mut c)
            .unwrap_err();
        assert!(matches!(err, Error::DeviceLimit { .. }), "{err}");
        assert_eq!(c, [POISON]);
        // Explicitly targeted, the engine reports the same limit rather than a generic refusal.
        let target = Target {
            device: Some(backend.info().name.clone()),
            kernel: Some("tile16".into()),
            ..Default::default()
        };
        let err = engine()
            .gemm_on(&target, &wide, &[1.0], &[1.0], &mut c)
            .unwrap_err();
        assert!(err.to_string().contains("leading dimension"), "{err}");
        assert_eq!(c, [POISON]);
    }
}

/// A grid over the device's workgroups per dimension is split into row panels and runs.
#[test]
fn dispatches_over_the_workgroup_limit_run_in_panels() {
    for backend in wgpu_backends() {
        let max_groups = backend.capabilities().max_workgroups_per_dimension as usize;
        let m = max_groups * 16 + 1;
        let p = GemmProblem::new(m, 1, 1).with_scalars(2.0, 0.0);
        backend.check("tile16", &p).unwrap();
        let a: Vec<f32> = (0..m).map(|i| (i % 1000) as f32).collect();
        let mut c = vec![POISON; m];
        backend.gemm("tile16", &p, &a, &[0.5], &mut c).unwrap();
        assert!(c.iter().zip(&a).all(|(c, a)| *c == *a), "C = 2 · A · 0.5");
    }
}

#[test]
fn empty_outputs_do_nothing() {
    for backend in all_backends() {
        let kernel = first_kernel(backend.as_ref());
        let mut c: Vec<f32> = vec![];
        backend
            .gemm(&kernel, &GemmProblem::new(0, 5, 3), &[], &[1.0; 15], &mut c)
            .unwrap();
        backend
            .gemm(&kernel, &GemmProblem::new(5, 0, 3), &[1.0; 15], &[], &mut c)
            .unwrap();
        backend
            .gemm(&kernel, &GemmProblem::new(0, 0, 0), &[], &[], &mut c)
            .unwrap();
    }
}

#[test]
fn zero_k_scales_c_by_beta() {
    for backend in all_backends() {
        let kernel = first_kernel(backend.as_ref());
        let name = &backend.info().name;
        // ldc = 3 with n = 2: the padding column must survive.
        let p = GemmProblem::new(2, 2, 0)
            .with_scalars(0.5, 2.0)
            .with_leading_dims(0, 2, 3);
        let mut c = vec![1.0, -2.0, POISON, 3.0, 4.0];
        backend.gemm(&kernel, &p, &[], &[], &mut c).unwrap();
        assert_eq!(c, [2.0, -4.0, POISON, 6.0, 8.0], "{name} {kernel}");
        // β = 0 overwrites C without reading it, NaN included.
        let p = GemmProblem::new(2, 2, 0).with_scalars(0.5, 0.0);
        let mut c = vec![f32::NAN; 4];
        backend.gemm(&kernel, &p, &[], &[], &mut c).unwrap();
        assert_eq!(c, [0.0; 4], "{name} {kernel}");
        // k = 0 with α = Inf or NaN, and α = 0 with Inf and NaN in A and B: A, B and α are not
        // read (BLAS), C ← β·C.
        for alpha in [f32::INFINITY, f32::NAN] {
            let p = GemmProblem::new(2, 2, 0).with_scalars(alpha, 2.0);
            let mut c = vec![1.0, -2.0, 3.0, 4.0];
            backend.gemm(&kernel, &p, &[], &[], &mut c).unwrap();
            assert_eq!(c, [2.0, -4.0, 6.0, 8.0], "{name} {kernel} α = {alpha}");
        }
        let p = GemmProblem::new(2, 2, 2).with_scalars(0.0, 0.5);
        let poisoned = [f32::NAN, f32::INFINITY, 1.0, f32::NEG_INFINITY];
        let mut c = vec![1.0, -2.0, 3.0, 4.0];
        backend
            .gemm(&kernel, &p, &poisoned, &poisoned, &mut c)
            .unwrap();
        assert_eq!(c, [0.5, -1.0, 1.5, 2.0], "{name} {kernel} α = 0");
    }
}

#[test]
fn unknown_kernels_and_devices_are_not_found() {
    for backend in all_backends() {
        let err = backend
            .gemm(
                "tile99",
                &GemmProblem::new(1, 1, 1),
                &[1.0],
                &[1.0],
                &mut [0.0],
            )
            .unwrap_err();
        assert!(
            matches!(err, Error::NotFound(ref m) if m.contains("tile99")),
            "{err}"
        );
    }
    let target = Target {
        device: Some("no such device".into()),
        ..Default::default()
    };
    let err = engine()
        .gemm_on(
            &target,
            &GemmProblem::new(1, 1, 1),
            &[1.0],
            &[1.0],
            &mut [0.0],
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

/// A device that holds a kernel "broken" (which fails to build on it) and the working `healthy`:
/// the broken one gives a build error naming the culprit, leaves C alone, and `healthy` still runs.
fn check_build_failure(device: &dyn Backend, healthy: &str) {
    let problem = GemmProblem::new(2, 2, 2);
    let mut c = vec![POISON; 4];
    let err = device
        .gemm("broken", &problem, &[1.0; 4], &[1.0; 4], &mut c)
        .unwrap_err();
    match &err {
        Error::KernelBuild { kernel, log, .. } => {
            assert_eq!(kernel, "broken");
            assert!(
                log.contains("undefined_name"),
                "the log should name the culprit: {log}"
            );
        }
        other => panic!("expected a build error, got {other}"),
    }
    assert!(c.iter().all(|&x| x == POISON));
    device
        .gemm(healthy, &problem, &[1.0; 4], &[1.0; 4], &mut c)
        .unwrap();
    assert_eq!(c, [2.0; 4]);
}

#[test]
fn a_kernel_that_fails_to_compile_reports_its_log_and_others_still_work() {
    // A separate engine: the broken kernel must not leak into other tests.
    let engine = Engine::new();
    assert!(
        !(common::wgpu_required() && engine.wgpu_devices().is_empty()),
        "a wgpu device is required"
    );
    for device in engine.wgpu_devices() {
        let mut broken = tilegemm::kernel::catalogue()[0].clone();
        broken.name = "broken".to_string();
        broken.wgsl = Cow::Owned(broken.wgsl.replace("acc += ", "acc += undefined_name * "));
        // SAFETY: the kernel never compiles, so it never runs.
        unsafe { device.register_kernel(broken) };
        check_build_failure(device.as_ref(), "tile20");
    }
}

#[cfg(feature = "ocl")]
#[test]
fn an_opencl_kernel_that_fails_to_build_reports_its_log() {
    let devices = tilegemm::backend::ocl::discover().unwrap_or_default();
    assert!(
        !(common::ocl_required() && devices.is_empty()),
        "an OpenCL device is required"
    );
    for device in devices {
        let mut broken = tilegemm::kernel::catalogue()[1].clone();
        broken.name = "broken".to_string();
        let source = broken
            .opencl
            .as_deref()
            .unwrap()
            .replace("acc00 += ", "acc00 += undefined_name * ");
        broken.opencl = Some(Cow::Owned(source));
        // SAFETY: the kernel never compiles, so it never runs.
        unsafe { device.register_kernel(broken) };
        check_build_failure(&device, "tile16");
    }
}

#[test]
fn ndarray_shape_mismatch_is_an_error() {
    let a = ndarray::Array2::<f32>::zeros((3, 4));
    let b = ndarray::Array2::<f32>::zeros((5, 2));
    let err = engine().matmul(a.view(), b.view()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch(_)), "{err}");
}

#[test]
fn foreign_errors_are_kept_as_sources() {
    use std::error::Error as _;
    let dir = common::temp_dir("sources");
    let missing = dir.join("missing.tuning.json");
    let err = tilegemm::select::db::TuningDb::read_file(&missing).unwrap_err();
    let io = err
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(
        io.map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound),
        "{err:?}"
    );

    let garbage = dir.join("garbage.tuning.json");
    std::fs::write(&garbage, "{ not json").unwrap();
    let err = tilegemm::select::db::TuningDb::read_file(&garbage).unwrap_err();
    let json = err
        .source()
        .and_then(|s| s.downcast_ref::<serde_json::Error>());
    assert!(json.is_some_and(|e| e.is_syntax()), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
