//! The [`Engine`]: this host's devices, the selector that ranks them, the policy that orders the
//! ranking, the guard that validates and disables kernels, and the telemetry of what ran — put
//! together behind `gemm`, `gemm_on` and `matmul`.

use crate::backend::resident::check_on;
use crate::backend::{discover, Backend, DeviceMatrix, WgpuBackend};
use crate::device::{BackendKind, Unavailable};
use crate::error::{Blame, Error, Result};
use crate::problem::{GemmProblem, Shape, Transpose};
use crate::select::calibration::CalibrationMode;
use crate::select::db::user_dir;
use crate::select::db::{DataSource, Row};
use crate::select::guard::{Disabled, Guard};
use crate::select::online::{Explorer, OnlineTuning, Plan};
use crate::select::policy::{ActivePolicy, Policy};
use crate::select::recorder::Recorder;
use crate::select::{ranked_as, Choice, Selection, Selector, Target};
use crate::telemetry::{Fallback, Report, Telemetry};
use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// How [`Engine::with_options`] opens an engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// The backends to open (the CPU backend is always opened: it is every GEMM's last resort).
    /// OpenCL needs the cargo feature `ocl`.
    pub backends: Vec<BackendKind>,
    /// How GEMMs that name no kernel are placed.
    pub policy: Policy,
    /// Where tuning databases and models come from, later ones winning (default: the data shipped
    /// inside the binary, then the user cache).
    pub selector_data: Vec<DataSource>,
    /// Check each (device, kernel, transposes) against the f64 reference on a small probe before
    /// its first use by a policy; a kernel that fails is disabled and the call falls back.
    pub validate: bool,
    /// How unmeasured candidates are estimated: each device calibrated on first need, the result
    /// kept in the user cache by default.
    pub calibration: CalibrationMode,
    /// Whether real calls under the adaptive policy try the close rivals of a bucket's leader
    /// ([`crate::select::online`]).
    pub online: OnlineTuning,
    /// Where on-line tuning appends what real calls measured (one database per device, shared
    /// safely by processes) and keeps the model it retrains from them, both in a background
    /// thread ([`crate::select::recorder`]); `None` keeps decisions in memory only. Default: the
    /// user cache.
    pub record_dir: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            backends: BackendKind::ALL.to_vec(),
            policy: Policy::default(),
            selector_data: Selector::default_sources(),
            validate: true,
            calibration: user_dir().map_or(CalibrationMode::InMemory, CalibrationMode::Cached),
            online: OnlineTuning::default(),
            record_dir: user_dir(),
        }
    }
}

/// Every backend of this host, the selector that places GEMMs on them, and what happened since.
/// Shareable across threads (`Send + Sync`).
pub struct Engine {
    wgpu_devices: Vec<Arc<WgpuBackend>>,
    unavailable: Vec<Unavailable>,
    /// Shared with the recorder's thread, which retrains its model (declared before `recorder`:
    /// dropped first, so no training starts while the engine goes away).
    selector: Arc<Selector>,
    policy: ActivePolicy,
    guard: Guard,
    explorer: Explorer,
    /// Keeps what on-line tuning measured, off the call path; None without a record folder.
    recorder: Option<Recorder>,
    telemetry: Telemetry,
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

    /// Discovers the backends `options` names, with its policy, selector folders and validation.
    pub fn with_options(options: EngineOptions) -> Self {
        let found = discover(&options.backends);
        let mut engine = Self::with_backends(found.backends, options);
        engine.wgpu_devices = found.wgpu_devices;
        engine.unavailable = found.unavailable;
        engine
    }

    /// An engine over the given backends (e.g. one of your own [`Backend`] implementations),
    /// with `options`' policy, selector data, calibration and on-line tuning; `options.backends` is not used.
    pub fn with_backends(backends: Vec<Arc<dyn Backend>>, options: EngineOptions) -> Self {
        let selector = Arc::new(Selector::from_sources(
            &backends,
            &options.selector_data,
            options.calibration,
        ));
        let recorder = options
            .record_dir
            .filter(|_| options.online != OnlineTuning::Off)
            .map(|dir| Recorder::start(dir, Arc::downgrade(&selector)));
        Engine {
            wgpu_devices: Vec::new(),
            unavailable: Vec::new(),
            selector,
            policy: ActivePolicy::new(options.policy),
            guard: Guard::new(options.validate),
            explorer: Explorer::new(options.online),
            recorder,
            telemetry: Telemetry::default(),
        }
    }

    /// The selector: this host's devices, their tuning databases and model.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.get()
    }

    /// Changes how later calls are placed. A fixed kernel that no device offers is refused.
    pub fn set_policy(&self, policy: Policy) -> Result<()> {
        let arms = match &policy {
            Policy::Ab(a, b) => vec![a.as_ref(), b.as_ref()],
            other => vec![other],
        };
        for kernel in arms.iter().filter_map(|p| p.named_kernel()) {
            if !self
                .backends()
                .iter()
                .any(|b| b.kernels().iter().any(|k| k == kernel))
            {
                return Err(Error::NotFound(format!(
                    "policy {policy}: no device offers kernel '{kernel}'"
                )));
            }
        }
        self.policy.set(policy);
        Ok(())
    }

    /// What ran since the engine opened (or since [`Engine::reset_telemetry`]).
    pub fn telemetry(&self) -> Report {
        self.telemetry.snapshot()
    }

    /// Clears the telemetry (disabled kernels stay disabled).
    pub fn reset_telemetry(&self) {
        self.telemetry.reset();
    }

    /// Every (device, kernel, transposes) disabled after a failure in this engine.
    pub fn disabled(&self) -> Vec<Disabled> {
        self.guard.disabled()
    }

    /// Every device lost in this engine (its kernels all skipped since), as (device key, reason).
    pub fn lost_devices(&self) -> Vec<(String, String)> {
        self.guard.lost_devices()
    }

    /// Every device found, the CPU first.
    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        self.selector.devices()
    }

    /// The wgpu devices, typed (e.g. to register a kernel of your own).
    pub fn wgpu_devices(&self) -> &[Arc<WgpuBackend>] {
        &self.wgpu_devices
    }

    /// Backends that were looked for and not found, with why.
    pub fn unavailable(&self) -> &[Unavailable] {
        &self.unavailable
    }

    /// The selector's ranking of `target`'s candidates for `problem`, cached per shape.
    pub fn select(&self, target: &Target, problem: &GemmProblem) -> Result<Arc<Selection>> {
        self.selector.select_cached(target, problem)
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
    /// ranking, and the call goes down that order: a kernel that fails (build, device error,
    /// time-out, failed validation probe) is disabled for this engine and these transposes; a
    /// problem that does not fit a device (a limit, an allocation) moves on without disabling
    /// anything; both are recorded in the telemetry.
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
            return self
                .run_and_record(choice, problem, a, b, c, None, false)
                .map(|_| choice.clone());
        }
        let policy = self.policy.get();
        let (arm, mut order) = self.policy.place(&policy, &selection.order);
        // On-line tuning works on the selector's own ranking, not on an order a user asked for.
        let plan = match policy.as_ref() {
            Policy::Adaptive => self.explorer.plan(&selection, problem.flops()),
            _ => Plan {
                first: None,
                track: false,
            },
        };
        if let Some(first) = plan.first {
            let rival = &selection.order[first];
            order.retain(|c| !std::ptr::eq(*c, rival));
            order.insert(0, rival);
        }
        self.telemetry.record_selection(started.elapsed());

        let mut first_failure = None;
        for choice in order {
            let explored = plan
                .first
                .filter(|&i| std::ptr::eq(&selection.order[i], choice));
            if self.guard.is_disabled(choice, problem) {
                if let Some(first) = explored {
                    self.explorer.forget(&selection, first);
                }
                continue;
            }
            let outcome = self.guard.validate_once(choice, problem).and_then(|()| {
                self.run_and_record(choice, problem, a, b, c, arm.as_deref(), plan.track)
            });
            let error = match outcome {
                Ok(times) => {
                    if plan.track {
                        self.learn(&selection, choice, problem, times);
                    }
                    return Ok(choice.clone());
                }
                Err(e) => e,
            };
            if let Some(first) = explored {
                self.explorer.forget(&selection, first);
            }
            first_failure.get_or_insert(self.fall_back(choice, problem, error)?);
        }
        Err(first_failure.unwrap_or_else(|| all_disabled(problem, &target.to_string())))
    }

    /// `C ← α·op(A)·op(B) + β·C` on matrices resident on one device, queued without waiting
    /// ([`DeviceMatrix::download`] waits). The device's kernels are ranked by kernel time
    /// ([`Selector::select_resident`]), ordered by the policy, validated on first use and rolled
    /// back on failure as in [`Engine::gemm_on`], within the device that holds the data. Matrices
    /// of different devices are an `Error::Buffer`; C is untouched on error.
    pub fn gemm_resident(
        &self,
        problem: &GemmProblem,
        a: &DeviceMatrix,
        b: &DeviceMatrix,
        c: &mut DeviceMatrix,
    ) -> Result<Choice> {
        let device = a.device().clone();
        check_on(Arc::as_ptr(&device).cast(), &device.info().name, &[b, &*c])?;
        problem.check_lengths(a.len(), b.len(), c.len())?;
        let selection = self.selector.select_resident(&device, problem)?;
        let policy = self.policy.get();
        let (_, order) = self.policy.place(&policy, &selection.order);
        let mut first_failure = None;
        for choice in order {
            if self.guard.is_disabled(choice, problem) {
                continue;
            }
            let outcome = self.guard.validate_once(choice, problem).and_then(|()| {
                choice
                    .backend
                    .gemm_resident(&choice.kernel, problem, a, b, c)
            });
            match outcome {
                Ok(()) => return Ok(choice.clone()),
                Err(error) => {
                    first_failure.get_or_insert(self.fall_back(choice, problem, error)?);
                }
            }
        }
        Err(first_failure.unwrap_or_else(|| all_disabled(problem, &device.info().name)))
    }

    /// A failed attempt of `choice`: the caller's fault is returned as `Err` (nothing else would
    /// do better); otherwise the kernel is disabled when it is to blame (its whole device when the
    /// device was lost), the fallback recorded, and the error handed back to try the next
    /// candidate.
    fn fall_back(&self, choice: &Choice, problem: &GemmProblem, error: Error) -> Result<Error> {
        let disable = match error.blame() {
            Blame::Caller => return Err(error),
            Blame::Problem => false,
            Blame::Kernel => {
                self.guard.disable(choice, problem, &error);
                true
            }
            Blame::Device => {
                self.guard.lose_device(choice, &error);
                true
            }
        };
        self.record_fallback(choice, problem, &error, disable);
        Ok(error)
    }

    /// Feeds a tracked call to on-line tuning; once its bucket settles, the winner becomes the
    /// decision and the samples are appended to each device's database in `record_dir`.
    fn learn(
        &self,
        selection: &Selection,
        choice: &Choice,
        problem: &GemmProblem,
        (seconds, kernel_seconds): (f64, Option<f64>),
    ) {
        let Some(index) = selection.order.iter().position(|c| std::ptr::eq(c, choice)) else {
            return;
        };
        self.telemetry.record_tracked(seconds, index != 0);
        // A batch as the selector ranks it (its products stacked along M): its GFLOPS are right.
        let stacked = ranked_as(problem);
        let shape = Shape::new(stacked.m, stacked.n, stacked.k);
        let Some(settled) = self
            .explorer
            .record(selection, index, shape, seconds, kernel_seconds)
        else {
            return;
        };
        self.selector
            .promote(selection, settled.winner, settled.gflops);
        self.telemetry.record_settled(settled.winner != 0);
        // The tuning store holds single GEMMs: a batch settles its own decision only.
        let Some(recorder) = self.recorder.as_ref().filter(|_| problem.batch == 1) else {
            return;
        };
        let mut devices: Vec<&str> = settled
            .samples
            .iter()
            .map(|s| s.device_key.as_str())
            .collect();
        devices.sort_unstable();
        devices.dedup();
        for key in devices {
            let Some(device) = self.backends().iter().find(|b| b.info().key == key) else {
                continue;
            };
            let rows = settled
                .samples
                .iter()
                .filter(|s| s.device_key == key)
                .map(|s| Row::new(s.shape, &s.kernel, s.kernel_gflops, s.e2e_gflops))
                .collect();
            recorder.keep(device.info(), rows);
        }
    }

    /// Runs one GEMM on `choice` and records it (end-to-end GFLOPS) in the telemetry; returns its
    /// end-to-end seconds and, when `timed` and the device can tell, its kernel seconds.
    #[allow(clippy::too_many_arguments)]
    fn run_and_record(
        &self,
        choice: &Choice,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        arm: Option<&str>,
        timed: bool,
    ) -> Result<(f64, Option<f64>)> {
        let started = Instant::now();
        let kernel_seconds = if timed {
            choice
                .backend
                .gemm_timed(&choice.kernel, problem, a, b, c)?
        } else {
            choice.backend.gemm(&choice.kernel, problem, a, b, c)?;
            None
        };
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let info = choice.backend.info();
        self.telemetry.record_call(
            (info.backend.as_str(), &info.name, &choice.kernel),
            Shape::new(problem.m, problem.n, problem.k),
            problem.flops() / seconds / 1e9,
            arm,
        );
        Ok((seconds, kernel_seconds))
    }

    fn record_fallback(
        &self,
        choice: &Choice,
        problem: &GemmProblem,
        error: &Error,
        disabled: bool,
    ) {
        let info = choice.backend.info();
        self.telemetry.record_fallback(Fallback {
            backend: info.backend.to_string(),
            device: info.name.clone(),
            kernel: choice.kernel.clone(),
            shape: Shape::new(problem.m, problem.n, problem.k).to_string(),
            reason: error.to_string(),
            disabled,
            probe_seed: match error {
                Error::Validation { seed, .. } => Some(*seed),
                _ => None,
            },
        });
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

    /// `A[i]·B[i]` for every i of two stacks of matrices (batch × rows × columns), as one strided
    /// batch on the device the engine chooses. A stack of one (or a view broadcast along the
    /// batch, stride 0) is used for every product without a copy, as are C-order stacks and stacks
    /// of transposed matrices; other layouts are copied first.
    pub fn matmul_batched(&self, a: ArrayView3<f32>, b: ArrayView3<f32>) -> Result<Array3<f32>> {
        let ((batch_a, m, ka), (batch_b, kb, n)) = (a.dim(), b.dim());
        let batch = batch_a.max(batch_b);
        if ka != kb || (batch_a != batch_b && batch_a.min(batch_b) != 1) {
            return Err(Error::ShapeMismatch(format!(
                "A is {batch_a}×{m}×{ka} and B is {batch_b}×{kb}×{n}: A's columns must equal B's \
                 rows, and the batches must be equal (or one of them 1)"
            )));
        }
        let (a_data, trans_a, lda, stride_a) = stack_layout(a);
        let (b_data, trans_b, ldb, stride_b) = stack_layout(b);
        let problem = GemmProblem::new(m, n, ka)
            .with_transpose(trans_a, trans_b)
            .with_leading_dims(lda, ldb, n)
            .with_batch(batch, stride_a, stride_b, m * n);
        let mut c = vec![0.0f32; batch * m * n];
        self.gemm(&problem, &a_data, &b_data, &mut c)?;
        Array3::from_shape_vec((batch, m, n), c).map_err(|e| Error::ShapeMismatch(e.to_string()))
    }
}

/// The data of a stack of matrices as (elements, transpose, leading dimension, batch stride) in
/// tilegemm's row-major terms; a stack of one or a broadcast stack has stride 0.
fn stack_layout(view: ArrayView3<'_, f32>) -> (Cow<'_, [f32]>, Transpose, usize, usize) {
    let (batch, rows, cols) = view.dim();
    if batch == 1 || (batch > 1 && view.strides()[0] == 0) {
        let (data, transpose, ld) = host_layout(view.index_axis_move(Axis(0), 0));
        return (data, transpose, ld, 0);
    }
    if let Some(data) = view.to_slice() {
        return (data.into(), Transpose::No, cols.max(1), rows * cols);
    }
    if let Some(data) = view.permuted_axes([0, 2, 1]).to_slice() {
        return (data.into(), Transpose::Yes, rows.max(1), rows * cols);
    }
    let owned: Vec<f32> = view.iter().copied().collect();
    (owned.into(), Transpose::No, cols.max(1), rows * cols)
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

/// The error when every candidate of `problem` on `on` was skipped as disabled.
fn all_disabled(problem: &GemmProblem, on: &str) -> Error {
    Error::NotFound(format!(
        "every candidate for {} on {on} was disabled after failing (see the telemetry)",
        Shape::new(problem.m, problem.n, problem.k),
    ))
}
