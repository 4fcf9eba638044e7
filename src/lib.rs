//! tilegemm: single-precision GEMM, `C ← α·op(A)·op(B) + β·C`, on any GPU API a host has.
//!
//! An [`Engine`] discovers this host's devices — the CPU (always), every wgpu adapter (Vulkan,
//! Metal, DX12; lavapipe on CPU-only hosts), every OpenCL device (cargo feature `ocl`) — and runs
//! GEMMs on host slices, on ndarray matrices, or (wgpu) on matrices kept on the device, each on the
//! (device, kernel) its selector expects to be fastest for that shape on this host.
//!
//! ```no_run
//! use tilegemm::{Engine, GemmProblem};
//!
//! let engine = Engine::new();
//! let (m, n, k) = (64, 48, 32);
//! let a = vec![1.0f32; m * k];
//! let b = vec![0.5f32; k * n];
//! let mut c = vec![0.0f32; m * n];
//! let ran_on = engine.gemm(&GemmProblem::new(m, n, k), &a, &b, &mut c)?;
//! assert_eq!(c[0], 16.0);
//! println!("ran on {ran_on:?}");
//! # Ok::<(), tilegemm::Error>(())
//! ```
//!
//! # Architecture
//!
//! The modules, lowest first; each uses only those above it in this list.
//!
//! | module | holds |
//! |---|---|
//! | [`error`] | [`Error`], one enum for every failure, foreign errors kept as sources; [`Blame`] |
//! | [`problem`] | [`GemmProblem`] (sizes, scalars, transposes, leading dimensions) and its validation |
//! | [`device`] | who a device is ([`DeviceInfo`], its key) and what it can do ([`Capabilities`]) |
//! | [`kernel`] | the kernel catalogue, built once: the seed tilings and the generated family, each a parameter set plus WGSL and OpenCL C sources that share one prelude per language |
//! | [`reference`](mod@reference) | the f64 reference GEMM every kernel is judged against |
//! | [`backend`] | the [`Backend`] trait; `cpu`; the host-slice GPU path written once over a small runtime trait that `wgpu` and `ocl` implement; discovery |
//! | [`verify`], [`bench`](mod@bench) | a kernel checked against the reference on poisoned C; a kernel timed |
//! | [`telemetry`] | Welford statistics of what ran, fallbacks, A/B arms; the median of timings |
//! | [`select`] | for the devices it is given: candidates, the calibrated prior, the tuning store, the learned model, ranking, bucketed decisions, on-line tuning and its recorder thread, policies, the guard (validation probe, disabled kernels) |
//! | [`engine`] | discovery + selector + policy + guard + telemetry behind `gemm`, `gemm_on`, `matmul` |
//! | [`tune`] | measuring, tuning and training as library API (the CLI's `tune` and `train` call it) |
//!
//! # One call
//!
//! [`Engine::gemm`]`(problem, a, b, c)`:
//! 1. `problem.check_lengths` — a bad call is a typed error before anything runs, C untouched;
//! 2. the selector ranks every candidate (backend, kernel) that passes the device's capability
//!    checks — each by its measurement on this host, else the learned model, else the calibrated
//!    prior — and caches the ranking per shape bucket;
//! 3. the policy orders the ranking (adaptive, baseline, fixed kernel, or one arm of an A/B);
//! 4. down that order: the guard skips disabled kernels and validates a kernel's first use on a
//!    seeded probe; the backend runs the GEMM (GPU backends: upload A, B (and C when β ≠ 0) into
//!    reused buffers, launch the cached program, read back C's valid columns);
//! 5. a kernel failure disables that kernel for these transposes and the call moves on; a problem
//!    that does not fit a device moves on without disabling anything; both are recorded in the
//!    telemetry, and the first success returns the [`Choice`] that ran;
//! 6. under on-line tuning the call may run a close rival instead of the leader, timed; once a
//!    bucket's contenders are measured the winner becomes its decision and the recorder thread
//!    keeps the samples (and retrains the model) off the call path.

#![warn(missing_docs)]

pub mod backend;
pub mod bench;
pub mod device;
pub mod engine;
pub mod error;
pub mod kernel;
pub mod problem;
pub mod reference;
pub mod select;
pub mod telemetry;
pub mod tune;
pub mod verify;

pub use backend::{Backend, DeviceMatrix, WgpuBackend};
pub use device::{BackendKind, Capabilities, DeviceInfo, DeviceType, Unavailable};
pub use engine::{Engine, EngineOptions};
pub use error::{Blame, Error, Operand, Result};
pub use problem::{GemmProblem, Shape, Transpose};
pub use select::policy::Policy;
pub use select::{Choice, Target};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
