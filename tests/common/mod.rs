//! Shared by the integration tests: one engine per test binary, and the devices to test.

#![allow(dead_code)] // each test binary uses part of this module

pub mod scripted;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tilegemm::bench::Measurement;
use tilegemm::verify::VerifyCase;
use tilegemm::{Backend, BackendKind, Engine, Shape, Transpose};

/// This binary's engine, opened once.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::new)
}

/// Whether this run must have a wgpu device (set by the CI script, where lavapipe is installed).
pub fn wgpu_required() -> bool {
    std::env::var("TILEGEMM_REQUIRE_WGPU").is_ok_and(|v| v == "1")
}

/// Every device of `kind` on this host; fails the test when `required` and none exists.
fn backends_of(kind: BackendKind, required: bool) -> Vec<Arc<dyn Backend>> {
    let found: Vec<Arc<dyn Backend>> = engine()
        .backends()
        .iter()
        .filter(|b| b.info().backend == kind)
        .cloned()
        .collect();
    if found.is_empty() {
        let why: Vec<String> = engine()
            .unavailable()
            .iter()
            .map(|u| u.reason.clone())
            .collect();
        assert!(
            !required,
            "a {kind} device is required but none was found: {why:?}"
        );
        eprintln!("no {kind} device on this host ({why:?}): its cases are skipped");
    }
    found
}

/// Every wgpu device of this host.
pub fn wgpu_backends() -> Vec<Arc<dyn Backend>> {
    backends_of(BackendKind::Wgpu, wgpu_required())
}

/// Whether this run must have an OpenCL device (set by the CI script, where PoCL is installed).
pub fn ocl_required() -> bool {
    std::env::var("TILEGEMM_REQUIRE_OCL").is_ok_and(|v| v == "1")
}

/// Every OpenCL device of this host (none in a build without the `ocl` feature).
pub fn ocl_backends() -> Vec<Arc<dyn Backend>> {
    backends_of(BackendKind::Ocl, ocl_required() && cfg!(feature = "ocl"))
}

/// The CPU backend, opened on its own (no discovery of other devices).
pub fn cpu_backend() -> Arc<dyn Backend> {
    Arc::new(tilegemm::backend::cpu::CpuBackend::new())
}

/// DESIGN.md's odd shapes (kept ≤ 256 for lavapipe): 1, 7, 33, 255, K = 1, and 35×67×19, whose
/// sizes ≡ 3 (mod 4) leave a partial quad at the end of 16-byte-aligned rows when padded by 1.
pub const ODD_SHAPES: [&str; 7] = [
    "1x1x1",
    "7x13x5",
    "33x65x17",
    "64x64x64",
    "255x257x129",
    "65x33x1",
    "35x67x19",
];

/// Every case of the correctness matrix: shapes × transposes × (α, β) × leading-dimension padding.
pub fn correctness_cases() -> Vec<VerifyCase> {
    case_matrix(&ODD_SHAPES, &[0, 1], &[1])
}

/// Every combination of `shapes`, A and B each as is and transposed, (α, β) ∈ {(1, 0), (0.5, 2)},
/// `ld_pads` (rows and batch strides padded by that many elements) and `batches`.
fn case_matrix(shapes: &[&str], ld_pads: &[usize], batches: &[usize]) -> Vec<VerifyCase> {
    let mut cases = Vec::new();
    for shape in shapes {
        let shape: Shape = shape.parse().unwrap();
        for trans_a in [Transpose::No, Transpose::Yes] {
            for trans_b in [Transpose::No, Transpose::Yes] {
                for (alpha, beta) in [(1.0, 0.0), (0.5, 2.0)] {
                    for &ld_pad in ld_pads {
                        for &batch in batches {
                            cases.push(VerifyCase {
                                shape,
                                trans_a,
                                trans_b,
                                alpha,
                                beta,
                                ld_pad,
                                batch,
                            });
                        }
                    }
                }
            }
        }
    }
    cases
}

/// Strided batches for every kernel: three products whose matrices lie one element beyond packed
/// apart (and rows padded by one), at odd shapes, every transpose, β = 0 (C poisoned) and β = 2.
pub fn batched_cases() -> Vec<VerifyCase> {
    correctness_cases()
        .into_iter()
        .filter(|case| {
            case.ld_pad == 1 && ["7x13x5", "35x67x19"].contains(&case.shape.to_string().as_str())
        })
        .map(|case| VerifyCase { batch: 3, ..case })
        .collect()
}

/// Whole tiles of every family member (BM, BN ∈ {64, 128}, BK ∈ {8, 16, 32}), which run unguarded
/// (`WHOLE_TILES`): every transpose and (α, β), rows packed and padded by 4 (still 16-byte
/// aligned), single and batched (strides padded by 4 too).
pub fn whole_tile_cases() -> Vec<VerifyCase> {
    case_matrix(&["128x128x64"], &[0, 4], &[1, 2])
}

/// A C the CPU backend on two threads cuts into two blocks (272 and 248 rows), so a batch of two
/// is four (product, block) items for two threads: every transpose and (α, β), rows packed and
/// padded, single and batched.
pub fn two_thread_block_cases() -> Vec<VerifyCase> {
    case_matrix(&["520x516x29"], &[0, 3], &[1, 2])
}

/// A fresh, empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tilegemm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A measurement of `kernel` on `backend` at size³ running at `e2e_gflops`, for tuning databases.
pub fn measurement(
    backend: &dyn Backend,
    kernel: &str,
    size: usize,
    e2e_gflops: f64,
) -> Measurement {
    let info = backend.info();
    Measurement {
        device: info.name.clone(),
        device_key: info.key.clone(),
        backend: info.backend.to_string(),
        api: info.api.clone(),
        kernel: kernel.to_string(),
        m: size,
        n: size,
        k: size,
        batch: 1,
        kernel_seconds: 1e-3,
        kernel_seconds_min: 1e-3,
        kernel_seconds_max: 1e-3,
        end_to_end_seconds: 1e-3,
        end_to_end_seconds_min: 1e-3,
        end_to_end_seconds_max: 1e-3,
        gflops: e2e_gflops,
        e2e_gflops,
        reps: 3,
        device_timed: false,
        resident_gflops: None,
    }
}
