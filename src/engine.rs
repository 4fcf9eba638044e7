//! The [`Engine`]: every backend this host has, and the entry points that run a GEMM on one of them.

use crate::backend::cpu::{CpuBackend, NATIVE_KERNEL};
use crate::backend::wgpu::{self as wgpu_backend, WgpuBackend};
use crate::backend::{Backend, BackendKind, DeviceType};
use crate::error::{Error, Result};
use crate::kernel::PRIOR_GPU_KERNELS;
use crate::problem::{GemmProblem, Shape, Transpose};
use crate::select::policy::Policy;
use crate::select::{Selection, Selector};
use crate::telemetry::{Fallback, Report, Telemetry};
use crate::verify::{verify, VerifyCase};
use ndarray::{Array2, ArrayView2};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// A backend that was looked for and not found, with the reason.
#[derive(Clone, Debug, Serialize)]
pub struct Unavailable {
    pub backend: BackendKind,
    pub reason: String,
}

/// How [`Engine::with_options`] opens an engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub wgpu: bool,
    /// OpenCL devices; only with the cargo feature `ocl`.
    pub ocl: bool,
    /// How GEMMs that name no kernel are placed.
    pub policy: Policy,
    /// Folders of tuning databases and models, later ones winning (default: the shipped
    /// `models/`, then the user cache).
    pub selector_dirs: Vec<PathBuf>,
    /// Check each (device, kernel, transposes) against the f64 reference on a small probe before
    /// its first use by a policy; a kernel that fails is disabled and the call falls back.
    pub validate: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            wgpu: true,
            ocl: true,
            policy: Policy::default(),
            selector_dirs: Selector::default_dirs(),
            validate: true,
        }
    }
}

/// The validation probe's shape: odd sizes that leave partial tiles and quads on every side.
const PROBE_SHAPE: Shape = Shape {
    m: 35,
    n: 67,
    k: 19,
};

/// What to run a GEMM on; every field left `None` is chosen by the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Target {
    pub backend: Option<BackendKind>,
    /// Case-insensitive substring of the device name.
    pub device: Option<String>,
    pub kernel: Option<String>,
}

impl Target {
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

/// Every backend of this host, the selector that places GEMMs on them, and what happened since.
/// Shareable across threads (`Send + Sync`).
pub struct Engine {
    backends: Vec<Arc<dyn Backend>>,
    wgpu_devices: Vec<Arc<WgpuBackend>>,
    unavailable: Vec<Unavailable>,
    selector: Selector,
    policy: RwLock<Arc<Policy>>,
    validate: bool,
    telemetry: Telemetry,
    /// Kernels that failed in this engine, with the first reason.
    disabled: Mutex<PerKernel<String>>,
    /// Kernels that passed the validation probe: a bit per transpose pair (`transpose_bit`).
    validated: Mutex<PerKernel<u8>>,
    /// Calls placed by an A/B policy so far: even ones go to arm A, odd ones to arm B.
    ab_calls: AtomicU64,
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
        let mut engine = Self::with_backends(backends, options);
        engine.wgpu_devices = wgpu_devices;
        engine.unavailable = unavailable;
        engine
    }

    /// An engine over the given backends (e.g. one of your own [`Backend`] implementations),
    /// with `options`' policy, selector folders and validation; `options.wgpu`/`ocl` are not used.
    /// The device-resident API stays with the [`WgpuBackend`] values you hold.
    pub fn with_backends(backends: Vec<Arc<dyn Backend>>, options: EngineOptions) -> Self {
        let selector = Selector::load(&backends, &options.selector_dirs);
        Engine {
            backends,
            wgpu_devices: Vec::new(),
            unavailable: Vec::new(),
            selector,
            policy: RwLock::new(Arc::new(options.policy)),
            validate: options.validate,
            telemetry: Telemetry::default(),
            disabled: Mutex::new(PerKernel::new()),
            validated: Mutex::new(PerKernel::new()),
            ab_calls: AtomicU64::new(0),
        }
    }

    /// The selector: tuning databases and model of this host's devices.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes how later calls are placed. A fixed kernel that no device offers is refused.
    pub fn set_policy(&self, policy: Policy) -> Result<()> {
        let arms = match &policy {
            Policy::Ab(a, b) => vec![a.as_ref(), b.as_ref()],
            other => vec![other],
        };
        for kernel in arms.iter().filter_map(|p| p.named_kernel()) {
            if !self
                .backends
                .iter()
                .any(|b| b.kernels().iter().any(|k| k == kernel))
            {
                return Err(Error::NotFound(format!(
                    "policy {policy}: no device offers kernel '{kernel}'"
                )));
            }
        }
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        Ok(())
    }

    /// A copy of what happened so far: calls, GFLOPS, selection latency, fallbacks, A/B arms.
    pub fn telemetry(&self) -> Report {
        self.telemetry.snapshot()
    }

    /// Starts the telemetry afresh (disabled kernels stay disabled).
    pub fn reset_telemetry(&self) {
        self.telemetry.reset();
    }

    /// (device key, kernel, reason) of every pair disabled after a failure in this engine.
    pub fn disabled(&self) -> Vec<(String, String, String)> {
        let disabled = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = disabled
            .iter()
            .flat_map(|(key, kernels)| {
                kernels
                    .iter()
                    .map(|(kernel, reason)| (key.clone(), kernel.clone(), reason.clone()))
            })
            .collect();
        list.sort();
        list
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

    /// Every candidate of `target` for `problem` in the prior's order, for devices never measured:
    /// the CPU first for problems under 2·256³ flops and on hosts whose only wgpu devices are CPUs
    /// themselves (lavapipe is 100× slower than the CPU backend); else GPUs first, each with
    /// [`PRIOR_GPU_KERNELS`] in order, then its other kernels.
    pub fn prior_order(&self, target: &Target, problem: &GemmProblem) -> Vec<Choice> {
        let prefer_gpu = problem.flops() >= PRIOR_GPU_MIN_FLOPS;
        let device_rank = |backend: &dyn Backend| {
            let info = backend.info();
            match (info.device_type.is_gpu(), prefer_gpu) {
                (true, true) => 0,
                _ if info.backend == BackendKind::Cpu => 1,
                _ if info.device_type == DeviceType::Cpu => 3,
                _ => 2,
            }
        };
        let kernel_rank = |kernel: &str| {
            PRIOR_GPU_KERNELS
                .into_iter()
                .chain([NATIVE_KERNEL])
                .position(|k| k == kernel)
                .unwrap_or(PRIOR_GPU_KERNELS.len() + 1)
        };
        let mut choices = self.candidates(target, problem);
        choices.sort_by_key(|c| (device_rank(c.backend.as_ref()), kernel_rank(&c.kernel)));
        choices
    }

    /// Why `target` has no candidate for `problem`: no matching device, or the one check that
    /// refused it (a limit, an unknown kernel).
    pub fn why_no_candidate(&self, target: &Target, problem: &GemmProblem) -> Error {
        let admitted: Vec<&Arc<dyn Backend>> = self
            .backends
            .iter()
            .filter(|b| target.admits(b.as_ref()))
            .collect();
        if admitted.is_empty() {
            return Error::NotFound(format!("no device matches {}", describe(target)));
        }
        let mut reasons: Vec<Error> = admitted
            .iter()
            .flat_map(|backend| {
                let kernels = match &target.kernel {
                    Some(kernel) => vec![kernel.clone()],
                    None => backend.kernels(),
                };
                kernels
                    .into_iter()
                    .filter_map(|kernel| backend.check(&kernel, problem).err())
                    .collect::<Vec<_>>()
            })
            .collect();
        if reasons.len() == 1 || (target.kernel.is_none() && !reasons.is_empty()) {
            return reasons.remove(0);
        }
        Error::NotFound(format!(
            "no device matching {} can run it",
            describe(target)
        ))
    }

    /// The prior's (backend, kernel) for `problem` under `target`, or why there is none.
    pub fn choose(&self, target: &Target, problem: &GemmProblem) -> Result<Choice> {
        self.prior_order(target, problem)
            .into_iter()
            .next()
            .ok_or_else(|| self.why_no_candidate(target, problem))
    }

    /// The selector's ranking of `target`'s candidates for `problem`, cached per shape.
    pub fn select(&self, target: &Target, problem: &GemmProblem) -> Result<Arc<Selection>> {
        self.selector.select_cached(self, target, problem)
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

    /// As [`Engine::gemm`], among the candidates `target` admits. A target that names a kernel
    /// runs exactly that kernel and returns its error. Otherwise the policy orders the selector's
    /// ranking, and a candidate that fails (build, device error, time-out, failed validation
    /// probe) is disabled for this engine, recorded in the telemetry, and the call goes on to
    /// the next one.
    pub fn gemm_on(
        &self,
        target: &Target,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<Choice> {
        problem.check_lengths(a.len(), b.len(), c.len())?;
        let started = Instant::now();
        let selection = self.select(target, problem)?;
        if target.kernel.is_some() {
            let choice = &selection.order[0];
            self.telemetry.record_selection(started.elapsed());
            return self.run_and_record(choice, problem, a, b, c, None);
        }
        let policy = self.policy();
        let (arm, arm_policy) = match policy.as_ref() {
            Policy::Ab(first, second) => {
                let call = self.ab_calls.fetch_add(1, Ordering::Relaxed);
                let arm = if call.is_multiple_of(2) {
                    first
                } else {
                    second
                };
                (Some(arm.to_string()), arm.as_ref())
            }
            single => (None, single),
        };
        let order = arm_policy.order(&selection.order);
        self.telemetry.record_selection(started.elapsed());

        let mut first_failure = None;
        for choice in order {
            if self.is_disabled(choice) {
                continue;
            }
            let outcome = self
                .validate_once(choice, problem)
                .and_then(|()| self.run_and_record(choice, problem, a, b, c, arm.as_deref()));
            match outcome {
                Ok(ran) => return Ok(ran),
                Err(e) if is_kernel_failure(&e) => {
                    self.disable(choice, problem, &e);
                    first_failure.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_failure.unwrap_or_else(|| {
            Error::NotFound(format!(
                "every candidate for {} under {} was disabled after failing (see the telemetry)",
                Shape::new(problem.m, problem.n, problem.k),
                describe(target)
            ))
        }))
    }

    /// Runs one GEMM on `choice` and records it (end-to-end GFLOPS) in the telemetry.
    fn run_and_record(
        &self,
        choice: &Choice,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        arm: Option<&str>,
    ) -> Result<Choice> {
        let started = Instant::now();
        choice.backend.gemm(&choice.kernel, problem, a, b, c)?;
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let info = choice.backend.info();
        self.telemetry.record_call(
            (info.backend.as_str(), &info.name, &choice.kernel),
            Shape::new(problem.m, problem.n, problem.k),
            problem.flops() / seconds / 1e9,
            arm,
        );
        Ok(choice.clone())
    }

    fn is_disabled(&self, choice: &Choice) -> bool {
        let disabled = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        lookup(&disabled, choice).is_some()
    }

    fn disable(&self, choice: &Choice, problem: &GemmProblem, error: &Error) {
        let info = choice.backend.info();
        log::warn!("{choice:?} failed and is disabled for this process: {error}");
        self.disabled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(info.key.clone())
            .or_default()
            .entry(choice.kernel.clone())
            .or_insert_with(|| error.to_string());
        self.telemetry.record_fallback(Fallback {
            backend: info.backend.to_string(),
            device: info.name.clone(),
            kernel: choice.kernel.clone(),
            shape: Shape::new(problem.m, problem.n, problem.k).to_string(),
            reason: error.to_string(),
        });
    }

    /// Before a (device, kernel, transposes) first runs under a policy: the probe shape with the
    /// same transposes and the same kind of β, against the f64 reference. `Validation` on a wrong
    /// result, the kernel's own error if it fails to run.
    fn validate_once(&self, choice: &Choice, problem: &GemmProblem) -> Result<()> {
        if !self.validate {
            return Ok(());
        }
        let bit = transpose_bit(problem);
        let validated = self.validated.lock().unwrap_or_else(|e| e.into_inner());
        if lookup(&validated, choice).is_some_and(|bits| bits & bit != 0) {
            return Ok(());
        }
        drop(validated);
        let (alpha, beta) = if problem.beta == 0.0 {
            (1.0, 0.0)
        } else {
            (0.5, 2.0)
        };
        let case = VerifyCase {
            shape: PROBE_SHAPE,
            trans_a: problem.trans_a,
            trans_b: problem.trans_b,
            alpha,
            beta,
            ld_pad: 0,
        };
        let report = verify(choice.backend.as_ref(), &choice.kernel, &case);
        if let Some(error) = report.error {
            return Err(Error::Validation {
                kernel: choice.kernel.clone(),
                device: choice.backend.info().name.clone(),
                reason: error,
            });
        }
        if !report.pass {
            return Err(Error::Validation {
                kernel: choice.kernel.clone(),
                device: choice.backend.info().name.clone(),
                reason: format!(
                    "probe {PROBE_SHAPE}: max_rel_error {:.2e} over the tolerance {:.0e}",
                    report.max_rel_error.unwrap_or(f64::NAN),
                    report.tolerance
                ),
            });
        }
        *self
            .validated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(choice.backend.info().key.clone())
            .or_default()
            .entry(choice.kernel.clone())
            .or_default() |= bit;
        Ok(())
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

/// Something known per (device key, kernel), looked up without allocating on the call path.
type PerKernel<V> = HashMap<String, HashMap<String, V>>;

fn lookup<'a, V>(table: &'a PerKernel<V>, choice: &Choice) -> Option<&'a V> {
    table.get(&choice.backend.info().key)?.get(&choice.kernel)
}

/// One bit per (op(A), op(B)) pair: the pipelines, and so the validations, differ by transposes.
fn transpose_bit(problem: &GemmProblem) -> u8 {
    1 << (2 * (problem.trans_a == Transpose::Yes) as u8 + (problem.trans_b == Transpose::Yes) as u8)
}

/// Errors of a kernel or device, after which another candidate may still succeed.
fn is_kernel_failure(error: &Error) -> bool {
    matches!(
        error,
        Error::KernelBuild { .. }
            | Error::Device { .. }
            | Error::Timeout { .. }
            | Error::Validation { .. }
    )
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
