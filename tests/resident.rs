//! The device-resident path (upload once, many GEMMs, read back once), ndarray entry points, and
//! sharing one engine across threads.

mod common;

use common::engine;
use ndarray::{s, Array2};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tilegemm::reference::{max_relative_error, reference_gemm};
use tilegemm::verify::fill_random;
use tilegemm::{Backend, Engine, Error, GemmProblem, Target, Transpose};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0; len];
    fill_random(&mut SmallRng::seed_from_u64(seed), &mut v);
    v
}

#[test]
fn many_resident_gemms_then_one_readback() {
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
    common::wgpu_backends(); // fails here when a device is required and missing
    for device in engine().wgpu_devices() {
        for kernel in ["tile16", "tile20", "tile24"] {
            let a_dev = device.upload(&a).unwrap();
            let b_dev = device.upload(&b).unwrap();
            let mut c_dev = device.upload(&c0).unwrap();
            for _ in 0..3 {
                device
                    .gemm_resident(kernel, &p, &a_dev, &b_dev, &mut c_dev)
                    .unwrap();
            }
            let c = device.download(&c_dev).unwrap();
            let exact: Vec<f64> = expected.iter().map(|&x| x as f64).collect();
            let err = max_relative_error(&p, &c, &exact);
            assert!(err < 1e-5, "{kernel}: {err}");

            // Bᵀ·Aᵀ = (A·B)ᵀ from the same resident buffers, into a fresh zeroed buffer.
            let pt = GemmProblem::new(n, m, k).with_transpose(Transpose::Yes, Transpose::Yes);
            let mut d_dev = device.zeros(n * m).unwrap();
            device
                .gemm_resident(kernel, &pt, &b_dev, &a_dev, &mut d_dev)
                .unwrap();
            let d = device.download(&d_dev).unwrap();
            let r = reference_gemm(&pt, &b, &a, &vec![0.0; n * m]).unwrap();
            assert!(
                max_relative_error(&pt, &d, &r) < 1e-5,
                "{kernel} transposed"
            );
        }
    }
}

#[test]
fn resident_buffers_are_checked() {
    let other_engine = Engine::new();
    assert!(
        !(common::wgpu_required() && other_engine.wgpu_devices().is_empty()),
        "a wgpu device is required"
    );
    for (device, other) in engine()
        .wgpu_devices()
        .iter()
        .zip(other_engine.wgpu_devices())
    {
        let p = GemmProblem::new(4, 4, 4);
        let a = device.upload(&[1.0; 16]).unwrap();
        let b = device.upload(&[1.0; 16]).unwrap();
        let mut short = device.zeros(15).unwrap();
        let err = device
            .gemm_resident("tile16", &p, &a, &b, &mut short)
            .unwrap_err();
        assert!(matches!(err, Error::LengthMismatch { .. }), "{err}");
        let mut foreign = other.zeros(16).unwrap();
        let err = device
            .gemm_resident("tile16", &p, &a, &b, &mut foreign)
            .unwrap_err();
        assert!(matches!(err, Error::Buffer(_)), "{err}");
        let too_big = device.capabilities().max_buffer_bytes as usize / 4 + 1;
        assert!(matches!(
            device.zeros(too_big),
            Err(Error::DeviceLimit { .. })
        ));
    }
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
