//! The device-resident path (upload once, many GEMMs, read back once), ndarray entry points, and
//! sharing one engine across threads.

mod common;

use common::engine;
use common::scripted::ScriptedGpu;
use ndarray::{s, Array2};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::sync::Arc;
use tilegemm::reference::{max_relative_error, reference_gemm};
use tilegemm::select::calibration::CalibrationMode;
use tilegemm::verify::fill_random;
use tilegemm::{Backend, Engine, Error, GemmProblem, Target, Transpose};
use tilegemm::{BackendKind, DeviceMatrix, EngineOptions};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0; len];
    fill_random(&mut SmallRng::seed_from_u64(seed), &mut v);
    v
}

/// Every device of the host: the CPU, and the wgpu and OpenCL devices the environment requires.
fn every_device() -> Vec<Arc<dyn Backend>> {
    common::wgpu_backends(); // fail here when a device is required and missing
    common::ocl_backends();
    engine().backends().to_vec()
}

#[test]
fn many_resident_gemms_then_one_readback_on_every_backend() {
    let (m, n, k) = (67, 45, 33);
    let a = random(m * k, 1);
    let b = random(k * n, 2);
    let c0 = random(m * n, 3);
    // C ← 0.5·A·B + 2·C three times on the device; the expected result is built the same way in f64.
    let p = GemmProblem::new(m, n, k).with_scalars(0.5, 2.0);
    let mut expected = c0.clone();
    for _ in 0..3 {
        let r = reference_gemm(&p, &a, &b, &expected).unwrap();
        expected = r.iter().map(|&x| x as f32).collect();
    }
    let exact: Vec<f64> = expected.iter().map(|&x| x as f64).collect();
    let devices = every_device();
    let kinds: Vec<_> = devices.iter().map(|d| d.info().backend).collect();
    assert!(kinds.contains(&BackendKind::Cpu));
    for device in &devices {
        let a_dev = DeviceMatrix::upload(device, &a).unwrap();
        let b_dev = DeviceMatrix::upload(device, &b).unwrap();
        // Through the engine: the device's kernels ranked by kernel time, policy, rollback.
        let mut c_dev = DeviceMatrix::upload(device, &c0).unwrap();
        for _ in 0..3 {
            let ran = engine()
                .gemm_resident(&p, &a_dev, &b_dev, &mut c_dev)
                .unwrap();
            assert!(
                ran.backend.info().key == device.info().key,
                "stays on the device"
            );
        }
        let err = max_relative_error(&p, &c_dev.download().unwrap(), &exact);
        assert!(err < 1e-5, "{}: {err}", device.info().name);

        // Each kernel named on the backend, and Bᵀ·Aᵀ = (A·B)ᵀ from the same resident buffers
        // into a fresh zeroed one.
        for kernel in device.kernels().iter().take(4) {
            let mut c_dev = DeviceMatrix::upload(device, &c0).unwrap();
            for _ in 0..3 {
                device
                    .gemm_resident(kernel, &p, &a_dev, &b_dev, &mut c_dev)
                    .unwrap();
            }
            let err = max_relative_error(&p, &c_dev.download().unwrap(), &exact);
            assert!(err < 1e-5, "{kernel} on {}: {err}", device.info().name);
            let pt = GemmProblem::new(n, m, k).with_transpose(Transpose::Yes, Transpose::Yes);
            let mut d_dev = DeviceMatrix::zeros(device, n * m).unwrap();
            device
                .gemm_resident(kernel, &pt, &b_dev, &a_dev, &mut d_dev)
                .unwrap();
            let r = reference_gemm(&pt, &b, &a, &vec![0.0; n * m]).unwrap();
            assert!(
                max_relative_error(&pt, &d_dev.download().unwrap(), &r) < 1e-5,
                "{kernel} transposed on {}",
                device.info().name
            );
        }
    }
}

#[test]
fn resident_matrices_are_checked_and_c_stays_untouched() {
    let devices = every_device();
    let p = GemmProblem::new(4, 4, 4);
    for device in &devices {
        assert_eq!(
            DeviceMatrix::zeros(device, 5).unwrap().download().unwrap(),
            [0.0; 5]
        );
        let a = DeviceMatrix::upload(device, &[1.0; 16]).unwrap();
        let b = DeviceMatrix::upload(device, &[1.0; 16]).unwrap();
        let mut short = DeviceMatrix::upload(device, &[7.0; 15]).unwrap();
        let err = engine().gemm_resident(&p, &a, &b, &mut short).unwrap_err();
        assert!(matches!(err, Error::LengthMismatch { .. }), "{err}");
        assert_eq!(short.download().unwrap(), [7.0; 15]);
        let kernel = &device.kernels()[0];
        let err = device
            .gemm_resident(kernel, &p, &a, &b, &mut short)
            .unwrap_err();
        assert!(matches!(err, Error::LengthMismatch { .. }), "{err}");
        // A matrix of another device, through the engine and through the backend itself.
        for other in devices.iter().filter(|o| o.info().key != device.info().key) {
            let mut foreign = DeviceMatrix::upload(other, &[7.0; 16]).unwrap();
            let err = engine()
                .gemm_resident(&p, &a, &b, &mut foreign)
                .unwrap_err();
            assert!(matches!(err, Error::Buffer(_)), "{err}");
            let err = device
                .gemm_resident(kernel, &p, &a, &b, &mut foreign)
                .unwrap_err();
            assert!(matches!(err, Error::Buffer(_)), "{err}");
            assert_eq!(foreign.download().unwrap(), [7.0; 16]);
        }
        if device.info().backend != BackendKind::Cpu {
            let too_big = device.capabilities().max_buffer_bytes as usize / 4 + 1;
            assert!(matches!(
                DeviceMatrix::zeros(device, too_big),
                Err(Error::DeviceLimit { .. })
            ));
        }
    }
}

/// A kernel that fails on resident data is disabled and the call rolls back to the device's next
/// kernel: the data stays where it is and the result is right.
#[test]
fn a_failing_kernel_on_resident_data_rolls_back_on_the_same_device() {
    let gpu: Arc<dyn Backend> = Arc::new(ScriptedGpu::offering(&["broken", "good"]));
    let engine = Engine::with_backends(
        vec![common::cpu_backend(), gpu.clone()],
        EngineOptions {
            policy: "fixed:broken".parse().unwrap(),
            selector_data: Vec::new(),
            calibration: CalibrationMode::Off,
            record_dir: None,
            ..EngineOptions::default()
        },
    );
    let (m, n, k) = (9, 7, 5);
    let (a, b) = (random(m * k, 11), random(k * n, 12));
    let p = GemmProblem::new(m, n, k);
    let a_dev = DeviceMatrix::upload(&gpu, &a).unwrap();
    let b_dev = DeviceMatrix::upload(&gpu, &b).unwrap();
    let mut c_dev = DeviceMatrix::upload(&gpu, &vec![f32::NAN; m * n]).unwrap();
    let ran = engine
        .gemm_resident(&p, &a_dev, &b_dev, &mut c_dev)
        .unwrap();
    assert_eq!(ran.kernel, "good");
    assert!(ran.backend.info().key == gpu.info().key);
    let want = reference_gemm(&p, &a, &b, &vec![0.0; m * n]).unwrap();
    assert!(max_relative_error(&p, &c_dev.download().unwrap(), &want) < 1e-5);
    assert_eq!(engine.disabled().len(), 1, "{:?}", engine.disabled());
    assert_eq!(engine.telemetry().fallbacks_total, 1);
}

#[test]
fn matmul_accepts_any_ndarray_layout() {
    let a = Array2::from_shape_vec((37, 29), random(37 * 29, 4)).unwrap();
    let b = Array2::from_shape_vec((29, 41), random(29 * 41, 5)).unwrap();
    let want = a.dot(&b);
    let mut targets = vec![Target::default()];
    for device in engine().wgpu_devices() {
        targets.push(Target {
            device: Some(device.info().name.clone()),
            kernel: Some("tile24".into()),
            ..Default::default()
        });
    }
    for target in &targets {
        let plain = engine().matmul_on(target, a.view(), b.view()).unwrap();
        // Column-major operands (transposed views of row-major data) go through without a copy.
        let at = a.t().to_owned();
        let bt = b.t().to_owned();
        let transposed = engine().matmul_on(target, at.t(), bt.t()).unwrap();
        // Strided views are copied.
        let wide = Array2::from_shape_vec((37, 58), random(37 * 58, 6)).unwrap();
        let strided = wide.slice(s![.., ..;2]);
        let strided_want = strided.dot(&b);
        let strided_got = engine().matmul_on(target, strided, b.view()).unwrap();
        for (got, want) in [
            (&plain, &want),
            (&transposed, &want),
            (&strided_got, &strided_want),
        ] {
            let err = (got - want).iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(err < 1e-4, "{target:?}: {err}");
        }
    }
}

#[test]
fn one_engine_serves_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    let engine = engine();
    let (m, n, k) = (48, 40, 24);
    let a = random(m * k, 7);
    let b = random(k * n, 8);
    let p = GemmProblem::new(m, n, k);
    let want = reference_gemm(&p, &a, &b, &vec![0.0; m * n]).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (a, b, want, p) = (&a, &b, &want, &p);
            scope.spawn(move || {
                for i in 0..5 {
                    let mut target = Target::default();
                    if let Some(device) = engine.wgpu_devices().first() {
                        target.device = Some(device.info().name.clone());
                        target.kernel = Some(["tile16", "tile20", "tile24"][(t + i) % 3].into());
                    }
                    let mut c = vec![f32::NAN; m * n];
                    engine.gemm_on(&target, p, a, b, &mut c).unwrap();
                    assert!(max_relative_error(p, &c, want) < 1e-5);
                }
            });
        }
    });
}

/// One engine, 8 threads, random shapes, transposes and scalars on every backend in turn (the
/// engine's own choice, then each backend named): every result checked against the f64 reference.
/// `CALLS_PER_THREAD` calls per thread here; `cargo test --release -- --ignored many_threads` runs
/// 500.
fn many_threads_random_shapes(calls_per_thread: usize) {
    use rand::Rng;
    let engine = engine();
    let mut targets = vec![Target::default()];
    for kind in [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Ocl] {
        if engine.backends().iter().any(|b| b.info().backend == kind) {
            targets.push(Target {
                backend: Some(kind),
                ..Default::default()
            });
        }
    }
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            let targets = &targets;
            scope.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(100 + thread);
                for call in 0..calls_per_thread {
                    let (m, n, k) = (
                        rng.random_range(1..=96),
                        rng.random_range(1..=96),
                        rng.random_range(1..=96),
                    );
                    let p = GemmProblem::new(m, n, k)
                        .with_transpose(
                            Transpose::from_bool(rng.random()),
                            Transpose::from_bool(rng.random()),
                        )
                        .with_scalars(rng.random_range(-2.0..2.0), rng.random_range(-1.0..1.0));
                    let extents = p.extents().unwrap();
                    let a = random(extents.a, rng.random());
                    let b = random(extents.b, rng.random());
                    let c0 = random(extents.c, rng.random());
                    let target = &targets[(thread as usize + call) % targets.len()];
                    let mut c = c0.clone();
                    let ran = engine.gemm_on(target, &p, &a, &b, &mut c).unwrap();
                    let want = reference_gemm(&p, &a, &b, &c0).unwrap();
                    let error = max_relative_error(&p, &c, &want);
                    assert!(
                        error < tilegemm::verify::tolerance(k),
                        "{p:?} on {} {}: {error}",
                        ran.backend.info().name,
                        ran.kernel
                    );
                }
            });
        }
    });
}

#[test]
fn many_threads_random_shapes_every_backend() {
    every_device();
    many_threads_random_shapes(12);
}

#[test]
#[ignore = "the full count: cargo test --release -- --ignored many_threads"]
fn many_threads_random_shapes_every_backend_full() {
    every_device();
    many_threads_random_shapes(500);
}

/// A chain longer than one recorded command buffer (64 launches on wgpu), whose every GEMM has its
/// own α and β and reads what the GEMM before it wrote, interleaved with uploads that replace an
/// operand between GEMMs: each device must keep the calls' order and each call's scalars.
#[test]
fn a_long_chain_keeps_each_calls_order_and_scalars_on_every_backend() {
    let n = 24;
    let a = random(n * n, 11);
    let b = random(n * n, 12);
    let x0 = random(n * n, 13);
    let step = |i: usize| GemmProblem::new(n, n, n).with_scalars(0.25 + (i % 7) as f32 * 0.01, 0.5);
    // x ← α_i·A·y + 0.5·x and y ← α_i·B·x + 0.5·y in turn; B is replaced by A after 99 calls.
    let mut expected = [x0.clone(), x0.clone()];
    let mut b_now = b.clone();
    for i in 0..150 {
        if i == 99 {
            b_now = if b_now == a { b.clone() } else { a.clone() };
        }
        let (left, (into, from)) = if i % 2 == 0 {
            (&a, (0, 1))
        } else {
            (&b_now, (1, 0))
        };
        let r = reference_gemm(&step(i), left, &expected[from], &expected[into]).unwrap();
        expected[into] = r.iter().map(|&v| v as f32).collect();
    }
    let exact: Vec<f64> = expected[0].iter().map(|&v| v as f64).collect();
    for device in every_device() {
        let kernel = &device.kernels()[0];
        let a_dev = DeviceMatrix::upload(&device, &a).unwrap();
        let mut b_dev = DeviceMatrix::upload(&device, &b).unwrap();
        let mut xy = [
            DeviceMatrix::upload(&device, &x0).unwrap(),
            DeviceMatrix::upload(&device, &x0).unwrap(),
        ];
        let mut b_is_a = false;
        for i in 0..150 {
            if i == 99 {
                b_is_a = !b_is_a;
                b_dev = DeviceMatrix::upload(&device, if b_is_a { &a } else { &b }).unwrap();
            }
            let [x, y] = &mut xy;
            let (left, into, from) = if i % 2 == 0 {
                (&a_dev, x, &*y)
            } else {
                (&b_dev, y, &*x)
            };
            device
                .gemm_resident(kernel, &step(i), left, from, into)
                .unwrap();
        }
        let err = max_relative_error(&step(0), &xy[0].download().unwrap(), &exact);
        assert!(err < 1e-4, "{kernel} on {}: {err}", device.info().name);
    }
}
