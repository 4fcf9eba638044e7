//! Strided-batched GEMM on every backend: odd strides (zero strides that broadcast A or B, padded
//! strides, products interleaved within C's rows), batch 1, a batch past the dispatch limit, C
//! matrices that would overlap refused with C untouched, through the engine on host slices, on
//! resident matrices and as 3-D ndarray stacks. Every result against the f64 reference, C poisoned
//! first and its gaps checked untouched.

mod common;

use common::engine;
use ndarray::{s, Array3, Axis};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::sync::Arc;
use tilegemm::reference::{max_relative_error, reference_gemm};
use tilegemm::verify::{fill_random, random_inputs, tolerance};
use tilegemm::{Backend, DeviceMatrix, Error, GemmProblem, Transpose};

/// Every device of the host: the CPU, and the wgpu and OpenCL devices the environment requires.
fn every_device() -> Vec<Arc<dyn Backend>> {
    common::wgpu_backends(); // fail here when a device is required and missing
    common::ocl_backends();
    engine().backends().to_vec()
}

/// The kernels checked on `device`: the CPU's, tile16 and one register-blocked member.
fn kernels_of(device: &dyn Backend) -> Vec<String> {
    device
        .kernels()
        .into_iter()
        .filter(|k| ["native", "tile16", "rb64x64x16_4x4"].contains(&k.as_str()))
        .collect()
}

/// Runs `problem` with `kernel` on poisoned inputs; the error against the reference, or the reason
/// it failed. Every element of C outside the products' results must keep its poison.
fn run_checked(device: &dyn Backend, kernel: &str, problem: &GemmProblem) -> Result<f64, String> {
    let (a, b, c_in) = random_inputs(problem, &mut SmallRng::seed_from_u64(11));
    let mut c = c_in.clone();
    device
        .gemm(kernel, problem, &a, &b, &mut c)
        .map_err(|e| e.to_string())?;
    let want = reference_gemm(problem, &a, &b, &c_in).unwrap();
    let mut computed = vec![false; c.len()];
    for index in 0..problem.batch {
        let start = problem.offsets(index).2;
        for row in 0..problem.m {
            let at = start + row * problem.ldc();
            computed[at..at + problem.n].fill(true);
        }
    }
    let gaps_poisoned = c
        .iter()
        .zip(&computed)
        .all(|(x, &computed)| computed || x.is_nan());
    if !gaps_poisoned {
        return Err("wrote outside the products' results".into());
    }
    Ok(max_relative_error(problem, &c, &want))
}

/// The strided layouts a user meets, at an odd shape.
fn layouts() -> Vec<(&'static str, GemmProblem)> {
    let base = GemmProblem::new(13, 11, 7).with_scalars(0.5, 2.0);
    let (m, n, k) = (13, 11, 7);
    vec![
        ("batch 1", base.with_packed_batch(1)),
        ("packed", base.with_packed_batch(5)),
        (
            "padded strides",
            base.with_batch(4, m * k + 3, k * n + 5, m * n + 1),
        ),
        ("A broadcast", base.with_batch(4, 0, k * n, m * n)),
        ("B broadcast", base.with_batch(4, m * k, 0, m * n)),
        (
            "transposed, padded rows",
            base.with_transpose(Transpose::Yes, Transpose::Yes)
                .with_leading_dims(m + 1, k + 2, n + 3)
                .with_packed_batch(3),
        ),
        (
            // C as an [m, batch, n] array: the products side by side within each row.
            "interleaved C",
            base.with_leading_dims(k, n, 3 * n)
                .with_batch(3, m * k, k * n, n),
        ),
        (
            "β = 0 (C never read)",
            base.with_scalars(1.0, 0.0).with_packed_batch(3),
        ),
    ]
}

#[test]
fn strided_layouts_match_the_reference_on_every_backend() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for device in every_device() {
        for kernel in kernels_of(device.as_ref()) {
            for (layout, problem) in layouts() {
                checked += 1;
                match run_checked(device.as_ref(), &kernel, &problem) {
                    Ok(error) if error < tolerance(problem.k) => {}
                    outcome => failures.push(format!(
                        "{} {kernel} {layout}: {outcome:?}",
                        device.info().name
                    )),
                }
            }
        }
    }
    assert!(checked >= layouts().len() * 2, "{checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// More products than a launch may have layers (65,535 on lavapipe and most GPUs): the batch runs
/// in several launches, each starting where the last ended.
#[test]
fn a_batch_past_the_dispatch_limit_runs_in_several_launches() {
    for device in common::wgpu_backends()
        .into_iter()
        .chain(common::ocl_backends())
    {
        let layers = device.capabilities().max_workgroups_per_dimension as usize;
        if layers > 1 << 20 {
            continue; // a device whose grid is this deep needs no second launch
        }
        let problem = GemmProblem::new(2, 3, 2)
            .with_scalars(1.0, 1.0)
            .with_packed_batch(layers + 7);
        let error = run_checked(device.as_ref(), "tile16", &problem).unwrap();
        assert!(error < 1e-5, "{}: {error}", device.info().name);
    }
}

#[test]
fn overlapping_c_matrices_are_refused_with_c_untouched() {
    let problem = GemmProblem::new(4, 4, 4).with_batch(3, 16, 16, 15);
    assert!(matches!(
        problem.extents(),
        Err(Error::BatchOverlap {
            batch: 3,
            stride: 15,
            span: 16
        })
    ));
    let (a, b) = (vec![1.0f32; 48], vec![1.0f32; 48]);
    let mut c = vec![7.0f32; 48];
    for device in every_device() {
        let kernel = &kernels_of(device.as_ref())[0];
        let outcome = device.gemm(kernel, &problem, &a, &b, &mut c);
        assert!(
            matches!(outcome, Err(Error::BatchOverlap { .. })),
            "{outcome:?}"
        );
        assert!(c.iter().all(|&x| x == 7.0));
    }
    assert!(matches!(
        engine().gemm(&problem, &a, &b, &mut c),
        Err(Error::BatchOverlap { .. })
    ));
    assert!(c.iter().all(|&x| x == 7.0));
    // A and B may overlap (they are only read): a sliding window over one buffer is valid.
    GemmProblem::new(4, 4, 4)
        .with_batch(3, 1, 1, 16)
        .extents()
        .unwrap();
}

#[test]
fn batches_through_the_engine_host_and_resident() {
    let (batch, m, n, k) = (6, 19, 23, 17);
    let problem = GemmProblem::new(m, n, k)
        .with_scalars(0.5, 2.0)
        .with_packed_batch(batch);
    let mut rng = SmallRng::seed_from_u64(3);
    let (a, b, c0) = random_inputs(&problem, &mut rng);
    let want = reference_gemm(&problem, &a, &b, &c0).unwrap();

    let mut c = c0.clone();
    engine().gemm(&problem, &a, &b, &mut c).unwrap();
    assert!(max_relative_error(&problem, &c, &want) < 1e-5);

    for device in every_device() {
        let a_dev = DeviceMatrix::upload(&device, &a).unwrap();
        let b_dev = DeviceMatrix::upload(&device, &b).unwrap();
        let mut c_dev = DeviceMatrix::upload(&device, &c0).unwrap();
        let ran = engine()
            .gemm_resident(&problem, &a_dev, &b_dev, &mut c_dev)
            .unwrap();
        assert_eq!(ran.backend.info().key, device.info().key);
        let c = c_dev.download().unwrap();
        let error = max_relative_error(&problem, &c, &want);
        assert!(error < 1e-5, "{}: {error}", device.info().name);
    }
}

#[test]
fn ndarray_stacks_of_any_layout_and_broadcasts() {
    let mut rng = SmallRng::seed_from_u64(8);
    let mut random = |shape: (usize, usize, usize)| {
        let mut data = vec![0.0f32; shape.0 * shape.1 * shape.2];
        fill_random(&mut rng, &mut data);
        Array3::from_shape_vec(shape, data).unwrap()
    };
    let (batch, m, n, k) = (4, 9, 14, 11);
    let a = random((batch, m, k));
    let b = random((batch, k, n));
    let expected = |a: &Array3<f32>, b: &Array3<f32>| -> Array3<f64> {
        let mut out = Array3::zeros((batch, m, n));
        for i in 0..batch {
            let ai = a.index_axis(Axis(0), i.min(a.dim().0 - 1)).mapv(f64::from);
            let bi = b.index_axis(Axis(0), i.min(b.dim().0 - 1)).mapv(f64::from);
            out.index_axis_mut(Axis(0), i).assign(&ai.dot(&bi));
        }
        out
    };
    let close = |got: &Array3<f32>, want: &Array3<f64>| {
        assert_eq!(got.dim(), want.dim());
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (*g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-4, "{worst}");
    };
    let e = engine();
    // C-order stacks.
    close(
        &e.matmul_batched(a.view(), b.view()).unwrap(),
        &expected(&a, &b),
    );
    // Stacks of transposed matrices (each matrix column-major), without a copy.
    let at = a
        .clone()
        .permuted_axes([0, 2, 1])
        .as_standard_layout()
        .to_owned();
    let at_view = at.view().permuted_axes([0, 2, 1]);
    close(
        &e.matmul_batched(at_view, b.view()).unwrap(),
        &expected(&a, &b),
    );
    // One B for every product: a stack of one, and a broadcast view.
    let b1 = random((1, k, n));
    close(
        &e.matmul_batched(a.view(), b1.view()).unwrap(),
        &expected(&a, &b1),
    );
    let broadcast = b1.broadcast((batch, k, n)).unwrap();
    close(
        &e.matmul_batched(a.view(), broadcast).unwrap(),
        &expected(&a, &b1),
    );
    // A strided slice: copied first.
    let wide = random((batch, m, 2 * k));
    let sliced = wide.slice(s![.., .., ..;2]);
    let owned = sliced.to_owned();
    close(
        &e.matmul_batched(sliced, b.view()).unwrap(),
        &expected(&owned, &b),
    );
    // Mismatched batches or depths are typed errors.
    assert!(matches!(
        e.matmul_batched(random((3, m, k)).view(), b.view()),
        Err(Error::ShapeMismatch(_))
    ));
    assert!(matches!(
        e.matmul_batched(a.view(), random((batch, k + 1, n)).view()),
        Err(Error::ShapeMismatch(_))
    ));
}
