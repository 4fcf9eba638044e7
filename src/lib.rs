//! tilegemm: single-precision GEMM, `C ← α·op(A)·op(B) + β·C`, on any GPU API a host has.
//!
//! An [`Engine`] discovers this host's backends — the CPU (always), every wgpu adapter (Vulkan,
//! Metal, DX12; lavapipe on CPU-only hosts) — and runs GEMMs on host slices, on ndarray matrices,
//! or (wgpu) on matrices kept on the device.
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

pub mod backend;
pub mod bench;
pub mod engine;
pub mod error;
pub mod family;
pub mod kernels;
pub mod problem;
pub mod reference;
pub mod select;
pub mod telemetry;
pub mod tune;
pub mod verify;

pub use backend::wgpu::{DeviceMatrix, WgpuBackend};
pub use backend::{Backend, BackendKind, Capabilities, DeviceInfo, DeviceType};
pub use engine::{Choice, Engine, EngineOptions, Target, Unavailable};
pub use error::{Error, Operand, Result};
pub use problem::{GemmProblem, Shape, Transpose};
pub use select::policy::Policy;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
