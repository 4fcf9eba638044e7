//! The [`Engine`]: every backend this host has, and the entry points that run a GEMM on one of them.

use crate::backend::cpu::{CpuBackend, NATIVE_KERNEL};
use crate::backend::wgpu::{self as wgpu_backend, WgpuBackend};
use crate::backend::{Backend, BackendKind, DeviceType};
use crate::error::{Error, Result};
use crate::kernels::PRIOR_GPU_KERNELS;
use crate::problem::{GemmProblem, Transpose};
use ndarray::{Array2, ArrayView2};
use serde::Serialize;
use std::borrow::Cow;
use std::sync::Arc;

/// A backend that was looked for and not found, with the reason.
#[derive(Clone, Debug, Serialize)]
pub struct Unavailable {
    pub backend: BackendKind,
    pub reason: String,
}

/// Which backends [`Engine::with_options`] opens.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    pub wgpu: bool,
    /// OpenCL devices; only with the cargo feature `ocl`.
    pub ocl: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            wgpu: true,
            ocl: true,
        }
    }
}

/// What to run a GEMM on; every field left `None` is chosen by the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Target {
    pub backend: Option<BackendKind>,
    /// Case-insensitive substring of the device name.
    pub device: Option<String>,
    pub kernel: Option<String>,
}

impl Target {
    pub fn is_auto(&self) -> bool {
        self.backend.is_none() && self.device.is_none() && self.kernel.is_none()
    }

    /// Whether `backend` is allowed by this target (the kernel is not considered).
    pub fn admits(&self, backend: &dyn Backend) -> bool {
        let info = backend.info();
        self.backend.is_none_or(|kind| kind == info.backend)
            && self
                .device
                .as_ref()
                .is_none_or(|d| info.name.to_lowercase().contains(&d.to_lowercase()))
    }
}

/// The (backend, kernel) a GEMM ran on.
#[derive(Clone)]
pub struct Choice {
    pub backend: Arc<dyn Backend>,
    pub kernel: String,
}

impl std::fmt::Debug for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = self.backend.info();
        write!(f, "{}/{}/{}", info.backend, info.name, self.kernel)
    }
}

/// Below this many flops the prior keeps a GEMM on the CPU: a GPU round trip costs more.
const PRIOR_GPU_MIN_FLOPS: f64 = 2.0 * 256.0 * 256.0 * 256.0;

/// Every backend of this host. Shareable across threads (`Send + Sync`).
pub struct Engine {
    backends: Vec<Arc<dyn Backend>>,
    wgpu_devices: Vec<Arc<WgpuBackend>>,
    unavailable: Vec<Unavailable>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// Discovers every backend of this host. Never fails: the CPU backend is always there, and a
    /// missing GPU API is recorded in [`Engine::unavailable`].
    pub fn new() -> Self {
        Self::with_options(EngineOptions::default())
    }

    pub fn with_options(options: EngineOptions) -> Self {
        let mut backends: Vec<Arc<dyn Backend>> = vec![Arc::new(CpuBackend::new())];
        let mut wgpu_devices = Vec::new();
        let mut unavailable = Vec::new();
        if options.wgpu {
            match wgpu_backend::discover() {
                Ok(devices) => {
                    for device in devices {
                        let device = Arc::new(device);
                        backends.push(device.clone());
                        wgpu_devices.push(device);
                    }
                }
                Err(reason) => unavailable.push(Unavailable {
                    backend: BackendKind::Wgpu,
                    reason,
                }),
            }
        }
        if options.ocl {
            match discover_ocl() {
                Ok(devices) => backends.extend(devices),
                Err(reason) => unavailable.push(Unavailable {
                    backend: BackendKind::Ocl,
                    reason,
                }),
            }
        }
        Engine {
            backends,
            wgpu_devices,
            unavailable,
        }
    }

    /// Every device found, the CPU first.
    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    /// The wgpu devices, typed, for the device-resident API ([`WgpuBackend::upload`] and friends).
    pub fn wgpu_devices(&self) -> &[Arc<WgpuBackend>] {
        &self.wgpu_devices
    }

    /// Backends that were looked for and not found, with why.
    pub fn unavailable(&self) -> &[Unavailable] {
        &self.unavailable
    }

    /// Every (backend, kernel) pair that `target` admits and that can run `problem`.
    pub fn candidates(&self, target: &Target, problem: &GemmProblem) -> Vec<Choice> {
        let mut out = Vec::new();
        for backend in self.backends.iter().filter(|b| target.admits(b.as_ref())) {
            for kernel in backend.kernels() {
                let wanted = target.kernel.as_ref().is_none_or(|k| *k == kernel);
                if wanted && backend.check(&kernel, problem).is_ok() {
                    out.push(Choice {
                        backend: backend.clone(),
                        kernel,
                    });
                }
            }
        }
        out
    }

    /// The (backend, kernel) for `problem` under `target`.
    ///
    /// An explicit kernel or backend is honoured or refused with the reason. Otherwise the prior
    /// decides: the CPU for problems under 2·256³ flops and on hosts whose only wgpu devices are
    /// CPUs themselves (lavapipe is 100× slower than the CPU backend); else the first GPU, with
    /// the first of [`PRIOR_GPU_KERNELS`] that can run the problem.
    pub fn choose(&self, target: &Target, problem: &GemmProblem) -> Result<Choice> {
        let admitted: Vec<&Arc<dyn Backend>> = self
            .backends
            .iter()
            .filter(|b| target.admits(b.as_ref()))
            .collect();
        if admitted.is_empty() {
            return Err(Error::NotFound(format!(
                "no device matches {}",
                describe(target)
            )));
        }
        if let Some(kernel) = &target.kernel {
            let mut reasons = Vec::new();
            for backend in &admitted {
                match backend.check(kernel, problem) {
                    Ok(()) => {
                        return Ok(Choice {
                            backend: (*backend).clone(),
                            kernel: kernel.clone(),
                        })
                    }
                    Err(e) => reasons.push(e),
                }
            }
            // One admitted device: its own error says best why (a limit, an unknown kernel).
            return Err(if reasons.len() == 1 {
                reasons.remove(0)
            } else {
                Error::NotFound(format!(
                    "no device matching {} can run it",
                    describe(target)
                ))
            });
        }
        let prefer_gpu = problem.flops() >= PRIOR_GPU_MIN_FLOPS;
        let rank = |backend: &&Arc<dyn Backend>| {
            let info = backend.info();
            match (info.device_type.is_gpu(), prefer_gpu) {
                (true, true) => 0,
                _ if info.backend == BackendKind::Cpu => 1,
                _ if info.device_type == DeviceType::Cpu => 3,
                _ => 2,
            }
        };
        let mut ranked = admitted;
        ranked.sort_by_key(rank);
        let mut reasons = Vec::new();
        for backend in ranked {
            let offered = backend.kernels();
            for kernel in PRIOR_GPU_KERNELS.into_iter().chain([NATIVE_KERNEL]) {
                if offered.iter().any(|k| k == kernel) {
                    match backend.check(kernel, problem) {
                        Ok(()) => {
                            return Ok(Choice {
                                backend: backend.clone(),
                                kernel: kernel.to_string(),
                            })
                        }
                        Err(e) => reasons.push(e),
                    }
                }
            }
        }
        Err(reasons.into_iter().next().unwrap_or_else(|| {
            Error::NotFound(format!("nothing matching {} can run it", describe(target)))
        }))
    }

    /// `C ← α·op(A)·op(B) + β·C` on the device the engine chooses. Returns what ran it.
    pub fn gemm(
        &self,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<Choice> {
        self.gemm_on(&Target::default(), problem, a, b, c)
    }

    /// As [`Engine::gemm`], on `target`. When the engine chose for itself and a GPU kernel fails
    /// (build, device error), the call is retried on the CPU backend and the failure logged.
    pub fn gemm_on(
        &self,
        target: &Target,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<Choice> {
        problem.check_lengths(a.len(), b.len(), c.len())?;
        let choice = self.choose(target, problem)?;
        match choice.backend.gemm(&choice.kernel, problem, a, b, c) {
            Ok(()) => Ok(choice),
            Err(e @ (Error::KernelBuild { .. } | Error::Device { .. } | Error::Timeout { .. }))
                if target.is_auto() && choice.backend.info().backend != BackendKind::Cpu =>
            {
                log::warn!("{choice:?} failed, falling back to the CPU: {e}");
                let cpu = self.backends[0].clone();
                cpu.gemm(NATIVE_KERNEL, problem, a, b, c)?;
                Ok(Choice {
                    backend: cpu,
                    kernel: NATIVE_KERNEL.to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `A·B` for ndarray matrices of any layout, on the device the engine chooses.
    pub fn matmul(&self, a: ArrayView2<f32>, b: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.matmul_on(&Target::default(), a, b)
    }

    /// `A·B` for ndarray matrices on `target`. Row-major and column-major (transposed) views are
    /// passed without a copy; other strides are copied to row-major first.
    pub fn matmul_on(
        &self,
        target: &Target,
        a: ArrayView2<f32>,
        b: ArrayView2<f32>,
    ) -> Result<Array2<f32>> {
        let ((m, ka), (kb, n)) = (a.dim(), b.dim());
        if ka != kb {
            return Err(Error::ShapeMismatch(format!(
                "A is {m}×{ka} and B is {kb}×{n}: A's columns must equal B's rows"
            )));
        }
        let (a_data, trans_a, lda) = host_layout(a);
        let (b_data, trans_b, ldb) = host_layout(b);
        let problem = GemmProblem::new(m, n, ka)
            .with_transpose(trans_a, trans_b)
            .with_leading_dims(lda, ldb, n);
        let mut c = vec![0.0f32; m * n];
        self.gemm_on(target, &problem, &a_data, &b_data, &mut c)?;
        Array2::from_shape_vec((m, n), c).map_err(|e| Error::ShapeMismatch(e.to_string()))
    }
}

#[cfg(feature = "ocl")]
fn discover_ocl() -> std::result::Result<Vec<Arc<dyn Backend>>, String> {
    let devices = crate::backend::ocl::discover()?;
    Ok(devices
        .into_iter()
        .map(|d| Arc::new(d) as Arc<dyn Backend>)
        .collect())
}

#[cfg(not(feature = "ocl"))]
fn discover_ocl() -> std::result::Result<Vec<Arc<dyn Backend>>, String> {
    Err("built without the cargo feature `ocl`".to_string())
}

/// The data of a 2-D view as (elements, transpose, leading dimension) in tilegemm's row-major terms.
fn host_layout(view: ArrayView2<'_, f32>) -> (Cow<'_, [f32]>, Transpose, usize) {
    let (rows, cols) = view.dim();
    if let Some(data) = view.to_slice() {
        return (data.into(), Transpose::No, cols.max(1));
    }
    if let Some(data) = view.reversed_axes().to_slice() {
        return (data.into(), Transpose::Yes, rows.max(1));
    }
    let owned: Vec<f32> = view.iter().copied().collect();
    (owned.into(), Transpose::No, cols.max(1))
}

fn describe(target: &Target) -> String {
    let mut parts = Vec::new();
    if let Some(b) = target.backend {
        parts.push(format!("backend '{b}'"));
    }
    if let Some(d) = &target.device {
        parts.push(format!("device '{d}'"));
    }
    if let Some(k) = &target.kernel {
        parts.push(format!("kernel '{k}'"));
    }
    if parts.is_empty() {
        "any device".to_string()
    } else {
        parts.join(", ")
    }
}
