//! Every kernel of every backend (CPU, wgpu, OpenCL) against the f64 reference at odd shapes, both transposes, α = 0.5
//! with β = 2 (C preloaded) and β = 0 (C poisoned with NaN), packed and padded leading dimensions,
//! single GEMMs and strided batches.

mod common;

use common::scripted::ScriptedGpu;
use common::{
    batched_cases, correctness_cases, cpu_backend, ocl_backends, two_thread_block_cases,
    wgpu_backends, whole_tile_cases,
};
use std::sync::Arc;
use tilegemm::verify::{verify, VerifyCase};
use tilegemm::Backend;

/// Verifies `kernel` on each backend over the whole case matrix, batches and whole tiles included;
/// lists every failure.
fn check_kernel(backends: &[Arc<dyn Backend>], kernel: &str) {
    let cases = [correctness_cases(), batched_cases(), whole_tile_cases()].concat();
    check_cases(backends, kernel, &cases);
}

/// Verifies `kernel` on each backend at each of `cases`; lists every failure.
fn check_cases(backends: &[Arc<dyn Backend>], kernel: &str, cases: &[VerifyCase]) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for backend in backends {
        for case in cases {
            let report = verify(backend.as_ref(), kernel, case);
            checked += 1;
            if !report.pass {
                failures.push(format!("{report:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn cpu_native_matches_reference() {
    check_kernel(&[cpu_backend()], "native");
}

/// Six threads cut 255×257 into 2 × 3 blocks of 128 × 96 (the last row and column shorter), each
/// with its own packing: whatever cores CI has.
#[test]
fn cpu_native_cut_into_blocks_for_six_threads_matches_reference() {
    let six: Arc<dyn Backend> = Arc::new(tilegemm::backend::cpu::CpuBackend::with_threads(6));
    check_kernel(&[six], "native");
}

/// Two threads take the blocks of 520×516 (and of a batch of two) in turn, each the next one
/// not yet taken.
#[test]
fn cpu_native_blocks_taken_in_turn_by_two_threads_match_reference() {
    let two: Arc<dyn Backend> = Arc::new(tilegemm::backend::cpu::CpuBackend::with_threads(2));
    check_cases(&[two], "native", &two_thread_block_cases());
}

#[test]
fn wgpu_tile16_matches_reference() {
    check_kernel(&wgpu_backends(), "tile16");
}

#[test]
fn wgpu_tile20_matches_reference() {
    check_kernel(&wgpu_backends(), "tile20");
}

#[test]
fn wgpu_tile24_matches_reference() {
    check_kernel(&wgpu_backends(), "tile24");
}

#[test]
fn wgpu_register_blocked_family_matches_reference() {
    for params in tilegemm::kernel::FAMILY {
        check_kernel(&wgpu_backends(), &params.name());
    }
}

/// Grouped workgroup order walks bands of tile-rows: these tall shapes span several bands, the
/// last one partial, which the ≤ 256 shapes above never do.
#[test]
fn grouped_order_covers_every_tile_across_bands() {
    use tilegemm::verify::{verify, VerifyCase};
    use tilegemm::{Shape, Transpose};
    let mut failures = Vec::new();
    for backend in wgpu_backends().into_iter().chain(ocl_backends()) {
        for params in tilegemm::kernel::FAMILY.iter().filter(|p| p.group_m > 0) {
            for (m, n, k) in [(1100, 9, 5), (1030, 130, 3), (2049, 260, 7)] {
                for trans in [Transpose::No, Transpose::Yes] {
                    let case = VerifyCase {
                        trans_a: trans,
                        trans_b: trans,
                        ld_pad: 1,
                        alpha: 0.5,
                        beta: 2.0,
                        ..VerifyCase::new(Shape::new(m, n, k))
                    };
                    let report = verify(backend.as_ref(), &params.name(), &case);
                    if !report.pass {
                        failures.push(format!("{report:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ocl_register_blocked_family_matches_reference() {
    for params in tilegemm::kernel::FAMILY {
        check_kernel(&ocl_backends(), &params.name());
    }
}

/// Split-K members (slices of K into a workspace, then summed) on both APIs: the case matrix (K
/// from 1 up, so slices of one element and short last slices), long K over few outputs, what
/// they are for, and whole tiles (slices unguarded).
#[test]
fn split_k_members_match_reference_on_both_apis() {
    use tilegemm::verify::VerifyCase;
    use tilegemm::{Shape, Transpose};
    let backends: Vec<_> = wgpu_backends().into_iter().chain(ocl_backends()).collect();
    let mut long_k = Vec::new();
    for (m, n, k) in [(13, 9, 1000), (64, 64, 2049), (1, 70, 777)] {
        for trans in [Transpose::No, Transpose::Yes] {
            long_k.push(VerifyCase {
                trans_a: trans,
                trans_b: trans,
                alpha: 0.5,
                beta: 2.0,
                ld_pad: 1,
                ..VerifyCase::new(Shape::new(m, n, k))
            });
        }
    }
    // Whole tiles of every split member, slices included (unguarded: `WHOLE_TILES`).
    for (trans, ld_pad) in [(Transpose::No, 0), (Transpose::Yes, 4)] {
        long_k.push(VerifyCase {
            trans_a: trans,
            trans_b: trans,
            beta: 1.0,
            ld_pad,
            ..VerifyCase::new(Shape::new(128, 128, 4096))
        });
    }
    let mut failures = Vec::new();
    for (member, slices) in tilegemm::kernel::SPLIT_K {
        let kernel = format!("{member}_sk{slices}");
        for backend in &backends {
            for case in correctness_cases().iter().chain(&long_k) {
                let report = verify(backend.as_ref(), &kernel, case);
                if !report.pass {
                    failures.push(format!("{report:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Stream-K members (a persistent grid sharing out every tile's slabs, then the fixup summing the
/// shared tiles) on both APIs: the case matrix and strided batches (tiles of few slabs, fewer
/// slabs than workgroups, single-slab tiles), whole tiles, and long K over one or four tiles
/// (one tile in up to 264 pieces).
#[test]
fn stream_k_members_match_reference_on_both_apis() {
    use tilegemm::verify::VerifyCase;
    use tilegemm::{Shape, Transpose};
    let backends: Vec<_> = wgpu_backends().into_iter().chain(ocl_backends()).collect();
    let long_k = [(64, 64, 4099), (128, 128, 2048)].map(|(m, n, k)| VerifyCase {
        trans_a: Transpose::Yes,
        alpha: 0.5,
        beta: 2.0,
        ld_pad: 1,
        ..VerifyCase::new(Shape::new(m, n, k))
    });
    let mut failures = Vec::new();
    for (member, groups) in tilegemm::kernel::STREAM_K {
        let kernel = format!("{member}_streamk{groups}");
        for backend in &backends {
            let cases = correctness_cases().into_iter().chain(batched_cases());
            for case in cases.chain(whole_tile_cases()).chain(long_k) {
                let report = verify(backend.as_ref(), &kernel, &case);
                if !report.pass {
                    failures.push(format!("{report:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Stream-K on a grid of 3 workgroups, registered on every device, so that shapes small enough
/// for CI give each workgroup many tiles: whole tiles, pieces at both ends of a share, and shares
/// that divide the tiles evenly (192×64 is 3 tiles of 64×64, 384×256 is 24) or not (255×257, 20;
/// 320×448, 35).
#[test]
fn stream_k_on_a_small_grid_gives_each_workgroup_many_tiles() {
    use tilegemm::kernel::{find, Language, FAMILY};
    use tilegemm::verify::VerifyCase;
    use tilegemm::{Shape, Transpose};
    let member = FAMILY
        .iter()
        .find(|p| p.name() == "rb64x64x16_4x4_db")
        .unwrap();
    let spec = tilegemm::kernel::KernelSpec {
        name: "rb64x64x16_4x4_db_streamk3".to_string(),
        stream_k: 3,
        wgsl: member.stream_k_source(Language::Wgsl, 3).into(),
        opencl: Some(member.stream_k_source(Language::OpenCl, 3).into()),
        ..find(&member.name()).unwrap().clone()
    };
    let mut cases = correctness_cases();
    for (m, n, k) in [(192, 64, 40), (384, 256, 33), (320, 448, 50)] {
        for trans in [Transpose::No, Transpose::Yes] {
            cases.push(VerifyCase {
                trans_a: trans,
                alpha: 0.5,
                beta: 2.0,
                ld_pad: 1,
                ..VerifyCase::new(Shape::new(m, n, k))
            });
        }
    }
    let engine = tilegemm::Engine::new();
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    for device in engine.wgpu_devices() {
        // SAFETY: a catalogue member's stream-K text, generated for another grid size.
        unsafe { device.register_kernel(spec.clone()) };
        backends.push(device.clone());
    }
    #[cfg(feature = "ocl")]
    for device in tilegemm::backend::ocl::discover().unwrap_or_default() {
        // SAFETY: as above.
        unsafe { device.register_kernel(spec.clone()) };
        backends.push(Arc::new(device));
    }
    assert!(
        !(common::wgpu_required() && engine.wgpu_devices().is_empty()),
        "a wgpu device is required"
    );
    let mut failures = Vec::new();
    for backend in &backends {
        for case in cases.iter().chain(&whole_tile_cases()) {
            let report = verify(backend.as_ref(), &spec.name, case);
            if !report.pass {
                failures.push(format!("{report:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ocl_tile16_matches_reference() {
    check_kernel(&ocl_backends(), "tile16");
}

#[test]
fn ocl_tile20_matches_reference() {
    check_kernel(&ocl_backends(), "tile20");
}

#[test]
fn ocl_tile24_matches_reference() {
    check_kernel(&ocl_backends(), "tile24");
}

/// The checker itself: a kernel off by one, one that leaves an element unwritten and one that
/// writes into C's row padding are each caught — on every case, or on every padded case.
#[test]
fn the_checker_catches_wrong_unwritten_and_padding_writes() {
    let gpu = ScriptedGpu::offering(&["good", "wrong", "lazy", "sloppy"]);
    let cases = correctness_cases();
    let failed = |kernel: &str| -> Vec<bool> {
        cases
            .iter()
            .map(|case| !verify(&gpu, kernel, case).pass)
            .collect()
    };
    // Padding lies between rows: a one-row C has none.
    let padded: Vec<bool> = cases
        .iter()
        .map(|case| case.ld_pad > 0 && case.shape.m > 1)
        .collect();
    assert!(failed("good").iter().all(|f| !f), "the control passes");
    assert!(failed("wrong").iter().all(|&f| f));
    assert!(failed("lazy").iter().all(|&f| f));
    assert_eq!(
        failed("sloppy"),
        padded,
        "caught exactly where C has padding"
    );
    assert!(padded.contains(&true) && padded.contains(&false));
}

/// Host copies of two million elements or more are split over threads (the upload staging and the
/// read-back): operands that large, on both GPU APIs, each call after a larger one (staging
/// buffers reused) and with packed C (the parallel read-back) and padded C (row by row).
#[test]
fn large_host_copies_split_over_threads_stay_exact() {
    use tilegemm::verify::VerifyCase;
    use tilegemm::Shape;
    let mut failures = Vec::new();
    let backends: Vec<_> = wgpu_backends().into_iter().chain(ocl_backends()).collect();
    for backend in &backends {
        // A of 2.1 M elements; then C of 2.1 M; then B of 2.1 M; then all small again.
        for (m, n, k) in [(8200, 8, 256), (8200, 256, 8), (8, 8200, 256), (33, 17, 9)] {
            for (ld_pad, beta) in [(0, 0.0), (3, 2.0)] {
                let case = VerifyCase {
                    ld_pad,
                    alpha: 0.5,
                    beta,
                    ..VerifyCase::new(Shape::new(m, n, k))
                };
                let report = verify(backend.as_ref(), "tile16", &case);
                if !report.pass {
                    failures.push(format!("{report:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A problem whose operands exceed the device's binding size (128 MiB on lavapipe) runs as
/// sub-GEMMs — views of the caller's slices — and matches the reference: A over (row panels),
/// B over (column panels), transposed and padded. (Every cut, K slabs included, is checked
/// against the reference by `backend::gpu`'s unit tests; a C or K past 128 MiB is too slow for
/// lavapipe in CI.)
#[test]
fn problems_over_the_binding_limit_run_as_sub_gemms() {
    use tilegemm::reference::{max_relative_error, reference_gemm};
    use tilegemm::verify::fill_random;
    use tilegemm::{GemmProblem, Transpose};
    let cases = [
        GemmProblem::new(8200, 2, 4100).with_scalars(0.5, 2.0),
        GemmProblem::new(3, 8200, 4100)
            .with_transpose(Transpose::Yes, Transpose::Yes)
            .with_leading_dims(5, 4103, 8201),
    ];
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(5);
    for device in wgpu_backends() {
        let binding = device.capabilities().max_binding_bytes;
        let mut split = 0;
        for problem in &cases {
            let extents = problem.extents().unwrap();
            let largest = extents.a.max(extents.b).max(extents.c) as u64 * 4;
            if binding >= largest {
                continue; // the device binds it whole: nothing to split here
            }
            device.check("tile16", problem).unwrap();
            let mut a = vec![0.0f32; extents.a];
            let mut b = vec![0.0f32; extents.b];
            let mut c = vec![0.0f32; extents.c];
            fill_random(&mut rng, &mut a);
            fill_random(&mut rng, &mut b);
            fill_random(&mut rng, &mut c);
            let want = reference_gemm(problem, &a, &b, &c).unwrap();
            device.gemm("tile16", problem, &a, &b, &mut c).unwrap();
            let error = max_relative_error(problem, &c, &want);
            assert!(
                error < 1e-5,
                "{problem:?} on {}: {error}",
                device.info().name
            );
            split += 1;
        }
        assert!(
            split == cases.len() || binding > 1 << 27,
            "a device binding at most 128 MiB (lavapipe) must split every case"
        );
    }
}

/// GPU devices hand back what their compiler made of a kernel, for `tilegemm devices --emit`:
/// OpenCL its program binary (PoCL: its own container; NVIDIA: PTX), Vulkan the driver's pipeline
/// cache in wgpu's container (lavapipe's holds headers only); the CPU has none to give.
#[test]
fn gpu_devices_hand_back_what_their_compiler_made() {
    for backend in ocl_backends() {
        for kernel in ["tile16", "rb64x64x16_4x4"] {
            let binary = backend.kernel_binary(kernel).unwrap().unwrap_or_default();
            assert!(binary.len() > 100, "{kernel}: {} bytes", binary.len());
        }
        assert!(backend.kernel_binary("no such kernel").is_err());
    }
    for backend in wgpu_backends() {
        let cache = backend.kernel_binary("tile16").unwrap();
        if backend.info().api == "vulkan" {
            assert!(cache.unwrap_or_default().starts_with(b"WGPUPLCH"));
        }
        assert!(backend.kernel_binary("no such kernel").is_err());
    }
    assert_eq!(cpu_backend().kernel_binary("tile16").ok().flatten(), None);
}
