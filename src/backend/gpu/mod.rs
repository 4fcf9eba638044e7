//! The host-slice GPU path, written once for every GPU API.
//!
//! A [`GpuRuntime`] is what an API must provide — build a kernel, allocate, write, launch, read back,
//! time — and [`GpuBackend`] turns any runtime into a [`Backend`]: the device's kernel list (the
//! shared catalogue, filtered to the kernels the runtime has a source for), programs built once per
//! (kernel, [`Specialisation`]), the three host-path buffers kept and grown on demand, the limit checks, and
//! the row-by-row copy-back that leaves C's padding between rows untouched.

pub(crate) mod split_k;
pub(crate) mod stream_k;

use super::resident::{check_on, DeviceMatrix};
use super::Backend;
use crate::device::{Capabilities, DeviceInfo};
use crate::error::{Error, Operand, Result};
use crate::kernel::{catalogue, Dispatch, KernelSpec, Specialisation};
use crate::problem::{scale_c, Extents, GemmProblem};
use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// What one GPU API provides to run a catalogue kernel. Implemented by `wgpu` and `ocl`.
pub trait GpuRuntime: Send + Sync + 'static {
    /// Device memory holding f32 elements.
    type Buffer: Send + Sync + 'static;
    /// A kernel built for one (spec, transposes), ready to launch.
    type Program: Clone + Send + Sync;
    /// What [`GpuRuntime::kernel_seconds`] needs to time a launch.
    type Launch;

    /// Who the device is.
    fn info(&self) -> &DeviceInfo;
    /// The device's limits and features.
    fn capabilities(&self) -> &Capabilities;
    /// The kernel's source in this runtime's language; `None` where the kernel has none.
    fn source<'s>(&self, spec: &'s KernelSpec) -> Option<&'s str>;
    /// Compiles `spec` for `specialisation` (`Error::KernelBuild` with the log).
    fn build(&self, spec: &KernelSpec, specialisation: Specialisation) -> Result<Self::Program>;
    /// A new buffer of `bytes` (a multiple of 16); `what` names it in errors.
    fn allocate(&self, bytes: u64, what: &str) -> Result<Self::Buffer>;
    /// The size of `buffer`, bytes.
    fn capacity(&self, buffer: &Self::Buffer) -> u64;
    /// Copies `data` to the start of `buffer`. When this returns, `data` is no longer read: the
    /// caller may free it whatever happens next.
    fn write(&self, buffer: &mut Self::Buffer, data: &[f32]) -> Result<()>;
    /// Queues one launch of `spec` on (A, B, C), which span `extents`, and for a stream-K member
    /// (`spec.stream_k` > 0) its partial tiles, a fourth buffer; with `timed`, the launch is timed
    /// on the device where the device can.
    fn launch(
        &self,
        program: &Self::Program,
        spec: &KernelSpec,
        dispatch: &Dispatch,
        extents: &Extents,
        buffers: &[&Self::Buffer],
        timed: bool,
    ) -> Result<Self::Launch>;
    /// Waits (at most `timeout`) for queued work, then hands the first `elements` floats of
    /// `buffer` to `sink`.
    fn read(
        &self,
        buffer: &Self::Buffer,
        elements: usize,
        timeout: Duration,
        sink: &mut dyn FnMut(&[f32]),
    ) -> Result<()>;
    /// Waits for a launch to finish, then the seconds its kernel ran on the device; `None` where
    /// untimed.
    fn kernel_seconds(&self, launch: Self::Launch) -> Result<Option<f64>>;
    /// What the driver makes of `spec` (built unspecialised, for this alone), where the API hands it
    /// back: OpenCL's program binary, Vulkan's pipeline cache holding that one pipeline.
    fn program_binary(&self, spec: &KernelSpec) -> Result<Option<Vec<u8>>>;
}

/// A GPU device as a [`Backend`]: one runtime plus what every API needs alike.
pub struct GpuBackend<R: GpuRuntime> {
    runtime: R,
    kernels: RwLock<Vec<Cow<'static, KernelSpec>>>,
    programs: Mutex<HashMap<(String, Specialisation), R::Program>>,
    /// A, B and C of host-slice calls; the lock also keeps one call's writes, launch and read
    /// together.
    host_buffers: Mutex<[Option<R::Buffer>; 3]>,
    /// The partial products of split-K calls ([`split_k`]) and the partial tiles of stream-K calls
    /// ([`stream_k`]); the lock keeps one call's passes together.
    workspace: Mutex<Option<R::Buffer>>,
    /// Per kernel, the slowest GFLOPS of its host-slice calls here (copies included, calls of at
    /// least [`TIMED_CALL_SECONDS`]): what its time-outs scale with.
    slowest: Mutex<HashMap<String, f64>>,
}

/// Buffers are sized in multiples of 16 bytes: vec4 kernels read whole quads.
const BUFFER_ALIGN: u64 = 16;

/// Kernels index with u32 arithmetic; sizes stay below 2³¹ so no index or loop counter can wrap.
const MAX_INDEX: u64 = i32::MAX as u64;

/// Bytes of device storage for `elements` floats, padded to 16 bytes and never empty.
pub(crate) fn padded_bytes(elements: usize) -> u64 {
    (elements as u64 * 4).div_ceil(BUFFER_ALIGN).max(1) * BUFFER_ALIGN
}

/// Copies below this many elements (8 MiB) are done by one thread: spawning costs more than it
/// saves.
pub(crate) const PARALLEL_COPY_ELEMENTS: usize = 1 << 21;

/// Elements per thread of a host copy of `elements` floats: all of them below
/// [`PARALLEL_COPY_ELEMENTS`], else an equal share for each of up to 8 threads. One core's memcpy
/// moves ~10 GB/s, less than the PCIe link behind the staging memory these copies fill and drain.
pub(crate) fn copy_chunk(elements: usize) -> usize {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if elements < PARALLEL_COPY_ELEMENTS {
        elements.max(1)
    } else {
        elements.div_ceil(threads).max(1)
    }
}

/// `dst.copy_from_slice(src)`, split over threads by [`copy_chunk`].
pub(crate) fn copy_parallel(dst: &mut [f32], src: &[f32]) {
    let chunk = copy_chunk(src.len());
    if chunk >= src.len() {
        dst.copy_from_slice(src);
        return;
    }
    std::thread::scope(|scope| {
        for (to, from) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
            scope.spawn(move || to.copy_from_slice(from));
        }
    });
}

/// How long a read-back of resident data may wait for the GEMMs queued before it.
const RESIDENT_READ_TIMEOUT: Duration = Duration::from_secs(600);

/// A time-out allows this many times what the kernel's slowest call so far predicts.
const TIMEOUT_SLACK: f64 = 10.0;

/// The rate a kernel not yet timed on a device is assumed to reach, GFLOPS: a third of lavapipe's
/// slowest (tile16 at 0.03 GFLOPS on 2 cores), so a first call is never cut short.
const UNTIMED_GFLOPS: f64 = 0.01;

/// Calls shorter than this are mostly fixed costs: their rate says little about the kernel's.
const TIMED_CALL_SECONDS: f64 = 0.01;

/// How long a GEMM of `flops` may take before it counts as hung: a minute, plus [`TIMEOUT_SLACK`]
/// times what `slowest_gflops` (the kernel's slowest call on this device so far) predicts, or,
/// for a kernel not yet timed here, what [`UNTIMED_GFLOPS`] (itself the slack) predicts; at most a
/// week.
fn timeout_for(flops: f64, slowest_gflops: Option<f64>) -> Duration {
    let predicted = |gflops: f64| flops / (gflops.max(1e-6) * 1e9);
    let seconds = 60.0
        + match slowest_gflops {
            Some(gflops) => TIMEOUT_SLACK * predicted(gflops),
            None => predicted(UNTIMED_GFLOPS),
        };
    Duration::from_secs_f64(seconds.min(7.0 * 86_400.0))
}

impl<R: GpuRuntime> GpuBackend<R> {
    /// A backend over `runtime`, offering every catalogue kernel the runtime has a source for.
    pub(crate) fn new(runtime: R) -> Self {
        let kernels = catalogue()
            .iter()
            .filter(|spec| runtime.source(spec).is_some())
            .map(Cow::Borrowed)
            .collect();
        GpuBackend {
            runtime,
            kernels: RwLock::new(kernels),
            programs: Mutex::new(HashMap::new()),
            host_buffers: Mutex::new([None, None, None]),
            slowest: Mutex::new(HashMap::new()),
            workspace: Mutex::new(None),
        }
    }

    /// The API underneath.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Adds a kernel to this device's list (or replaces the one of the same name).
    ///
    /// # Safety
    /// Kernels run without runtime bounds checks: the kernel must keep every access inside its
    /// buffers for any problem this backend accepts, as the catalogue's kernels do, and inside
    /// its declared tiles (`tile_m`, `tile_n`, `tile_k`): problems of whole tiles run with the
    /// prelude's guards off (`WHOLE_TILES`).
    pub unsafe fn register_kernel(&self, spec: KernelSpec) {
        let mut kernels = self.kernels.write().unwrap_or_else(|e| e.into_inner());
        kernels.retain(|k| k.name != spec.name);
        self.lock_programs().retain(|key, _| key.0 != spec.name);
        kernels.push(Cow::Owned(spec));
    }

    /// The kernel named `name`, or `NotFound` listing the ones this device has.
    pub(crate) fn kernel(&self, name: &str) -> Result<Cow<'static, KernelSpec>> {
        let kernels = self.kernels.read().unwrap_or_else(|e| e.into_inner());
        kernels
            .iter()
            .find(|k| k.name == name)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = kernels.iter().map(|k| k.name.as_str()).collect();
                Error::NotFound(format!(
                    "{} device '{}' has no kernel '{name}' (it has {})",
                    self.runtime.info().backend,
                    self.runtime.info().name,
                    known.join(", ")
                ))
            })
    }

    fn lock_programs(&self) -> MutexGuard<'_, HashMap<(String, Specialisation), R::Program>> {
        self.programs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The program of `spec` for `specialisation`, built on first use.
    pub(crate) fn program(
        &self,
        spec: &KernelSpec,
        specialisation: Specialisation,
    ) -> Result<R::Program> {
        let key = (spec.name.clone(), specialisation);
        let mut programs = self.lock_programs();
        if let Some(program) = programs.get(&key) {
            return Ok(program.clone());
        }
        let program = self.runtime.build(spec, specialisation)?;
        programs.insert(key, program.clone());
        Ok(program)
    }

    /// The program that runs `problem` with `spec` ([`specialisation_for`]).
    fn program_for(&self, spec: &KernelSpec, problem: &GemmProblem) -> Result<R::Program> {
        self.program(spec, specialisation_for(spec, problem))
    }

    /// Ok, or the first device limit `problem` exceeds with `spec`.
    pub(crate) fn check_limits(
        &self,
        spec: &KernelSpec,
        problem: &GemmProblem,
        extents: &Extents,
    ) -> Result<()> {
        self.check_unsplittable(spec, problem)?;
        let caps = self.runtime.capabilities();
        for (operand, elements) in [
            (Operand::A, extents.a),
            (Operand::B, extents.b),
            (Operand::C, extents.c),
        ] {
            let limit = match operand {
                Operand::A => "max_storage_buffer_binding_size (bytes of A)",
                Operand::B => "max_storage_buffer_binding_size (bytes of B)",
                Operand::C => "max_storage_buffer_binding_size (bytes of C)",
            };
            let bytes = padded_bytes(elements);
            self.exceeds(limit, bytes, caps.max_binding_bytes)?;
            self.exceeds("max_buffer_size (bytes)", bytes, caps.max_buffer_bytes)?;
            self.exceeds("32-bit kernel index (elements)", elements as u64, MAX_INDEX)?;
        }
        let largest = [problem.m, problem.n, problem.k].into_iter().max();
        self.exceeds(
            "32-bit kernel index (size)",
            largest.unwrap_or(0) as u64,
            MAX_INDEX,
        )?;
        let (groups_x, groups_y) = spec.dispatch(problem.m, problem.n);
        self.exceeds(
            "workgroups per dispatch dimension",
            groups_x.max(groups_y),
            caps.max_workgroups_per_dimension as u64,
        )?;
        if split_k::applies(spec, problem) {
            let workspace = split_k::SplitPlan::new(problem, spec.split_k).workspace_elements();
            self.exceeds(
                "split-K workspace (elements)",
                workspace as u64,
                self.fitting_elements(),
            )?;
        }
        if stream_k::applies(spec, problem) {
            self.exceeds(
                "stream-K iterations (tiles times slabs, 32-bit)",
                stream_k::iterations(spec, problem),
                MAX_INDEX,
            )?;
            self.exceeds(
                "stream-K workspace (elements)",
                stream_k::workspace_elements(spec) as u64,
                self.fitting_elements(),
            )?;
        }
        Ok(())
    }

    /// The limits no split of `problem` can bring it under: the kernel's workgroup against the
    /// device, and leading dimensions within the kernels' 32-bit indices (sub-GEMMs keep them).
    fn check_unsplittable(&self, spec: &KernelSpec, problem: &GemmProblem) -> Result<()> {
        let caps = self.runtime.capabilities();
        self.exceeds(
            "threads per workgroup",
            spec.invocations() as u64,
            caps.max_workgroup_invocations as u64,
        )?;
        self.exceeds(
            "workgroup memory (bytes)",
            spec.workgroup_memory_bytes() as u64,
            caps.max_workgroup_memory_bytes as u64,
        )?;
        let widest = [problem.lda(), problem.ldb(), problem.ldc()]
            .into_iter()
            .max();
        self.exceeds(
            "32-bit kernel index (leading dimension)",
            widest.unwrap_or(0) as u64,
            MAX_INDEX,
        )
    }

    /// `Err(DeviceLimit)` when `required` exceeds `available`.
    fn exceeds(&self, limit: &'static str, required: u64, available: u64) -> Result<()> {
        if required > available {
            Err(Error::DeviceLimit {
                device: self.runtime.info().name.clone(),
                limit,
                required,
                available,
            })
        } else {
            Ok(())
        }
    }

    /// The host-slice GEMM, split into sub-GEMMs while it exceeds a limit a split can fix (an
    /// operand over the device's binding or buffer size or the kernels' 32-bit index, a grid over
    /// the dispatch limit): halves of a batch, of M (row panels of A and C), of N (column panels of
    /// B and C) or of K (slabs, the second accumulated onto the first with β = 1). Each part is a view of the
    /// caller's slices — offsets with the same leading dimensions — so nothing is copied on the
    /// host. With `timed`, the parts' kernel times are summed.
    fn run_split(
        &self,
        spec: &KernelSpec,
        problem: &GemmProblem,
        (a, b, c): (&[f32], &[f32], &mut [f32]),
        timed: bool,
    ) -> Result<Option<f64>> {
        let extents = problem.check_lengths(a.len(), b.len(), c.len())?;
        self.check_unsplittable(spec, problem)?;
        if problem.scales_c_only() {
            // No kernel: 0 · Inf in a kernel would make NaN where BLAS leaves β·C.
            scale_c(problem, c);
            return Ok(None);
        }
        let Err(limit) = self.check_limits(spec, problem, &extents) else {
            return self.run_host(spec, problem, (a, b, c), &extents, timed);
        };
        let Some((first, second)) = split(problem, &extents, self.fitting_elements()) else {
            return Err(limit);
        };
        let mut seconds = Some(0.0);
        for part in [first, second] {
            let (a, b) = (&a[part.a_offset..], &b[part.b_offset..]);
            let c = &mut c[part.c_offset..];
            let ran = self.run_split(spec, &part.problem, (a, b, c), timed)?;
            seconds = seconds.zip(ran).map(|(sum, s)| sum + s);
        }
        Ok(seconds)
    }

    /// The most elements one operand may span on this device.
    fn fitting_elements(&self) -> u64 {
        let caps = self.runtime.capabilities();
        (caps.max_binding_bytes.min(caps.max_buffer_bytes) / 4).min(MAX_INDEX)
    }

    /// A buffer of at least `bytes` in `slot`, reusing the one there when it is large enough.
    fn reuse<'s>(
        &self,
        slot: &'s mut Option<R::Buffer>,
        bytes: u64,
        what: &str,
    ) -> Result<&'s mut R::Buffer> {
        if slot
            .as_ref()
            .is_none_or(|buffer| self.runtime.capacity(buffer) < bytes)
        {
            *slot = None; // free the old one before allocating its successor
            *slot = Some(self.runtime.allocate(bytes, what)?);
        }
        Ok(slot.as_mut().expect("allocated above"))
    }

    /// The host-slice GEMM of a problem within the device's limits: upload, launch, read back the
    /// valid part of C. With `timed`, also the kernel's device time where the device can tell.
    fn run_host(
        &self,
        spec: &KernelSpec,
        problem: &GemmProblem,
        (a, b, c): (&[f32], &[f32], &mut [f32]),
        extents: &Extents,
        timed: bool,
    ) -> Result<Option<f64>> {
        if problem.is_empty() {
            return Ok(None);
        }
        let program = self.program_for(spec, problem)?;
        let started = Instant::now();
        let mut slots = self.host_buffers.lock().unwrap_or_else(|e| e.into_inner());
        let [a_slot, b_slot, c_slot] = &mut *slots;
        let a_buffer = self.reuse(a_slot, padded_bytes(extents.a), "A")?;
        let b_buffer = self.reuse(b_slot, padded_bytes(extents.b), "B")?;
        let c_buffer = self.reuse(c_slot, padded_bytes(extents.c), "C")?;
        for (buffer, data) in [
            (&mut *a_buffer, &a[..extents.a]),
            (&mut *b_buffer, &b[..extents.b]),
        ] {
            if !data.is_empty() {
                self.runtime.write(buffer, data)?;
            }
        }
        if problem.beta != 0.0 {
            self.runtime.write(c_buffer, &c[..extents.c])?;
        }
        let buffers = [&*a_buffer, &*b_buffer, &*c_buffer];
        let seconds = self.enqueue(&program, spec, problem, extents, buffers, timed)?;
        let c_valid = &mut c[..extents.c];
        let flops = problem.flops();
        let timeout = timeout_for(flops, self.lock_slowest().get(&spec.name).copied());
        self.runtime
            .read(c_buffer, extents.c, timeout, &mut |data| {
                copy_valid(problem, c_valid, data)
            })?;
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed >= TIMED_CALL_SECONDS {
            let gflops = flops / elapsed / 1e9;
            let mut rates = self.lock_slowest();
            let rate = rates.entry(spec.name.clone()).or_insert(gflops);
            *rate = rate.min(gflops);
        }
        Ok(seconds)
    }

    fn lock_slowest(&self) -> MutexGuard<'_, HashMap<String, f64>> {
        self.slowest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the launches of `problem` with `spec` on (A, B, C), which span `extents`: a split-K
    /// kernel's two passes ([`split_k`]), a stream-K kernel's grid and fixup ([`stream_k`]), else
    /// one launch per block of workgroup layers. With
    /// `timed`, the kernel seconds of every launch, summed.
    fn enqueue(
        &self,
        program: &R::Program,
        spec: &KernelSpec,
        problem: &GemmProblem,
        extents: &Extents,
        buffers: [&R::Buffer; 3],
        timed: bool,
    ) -> Result<Option<f64>> {
        let seconds = if split_k::applies(spec, problem) {
            self.enqueue_split_k(program, spec, problem, extents, buffers, timed)?
        } else if stream_k::applies(spec, problem) {
            let fixup = Specialisation {
                fixup: true,
                ..specialisation_for(spec, problem)
            };
            let fixup = self.program(spec, fixup)?;
            self.enqueue_stream_k((program, &fixup), spec, problem, extents, buffers, timed)?
        } else {
            let dispatches = spec.dispatches(problem, self.max_layers());
            self.launch_all(program, spec, dispatches, extents, &buffers, timed)?
        };
        Ok(seconds.filter(|_| timed))
    }

    /// Queues `dispatches` of `spec` on `buffers` (A, B, C, and a stream-K member's partial
    /// tiles); with `timed`, their kernel seconds summed (each launch waited for), else
    /// `Some(0.0)`.
    fn launch_all(
        &self,
        program: &R::Program,
        spec: &KernelSpec,
        dispatches: impl IntoIterator<Item = Dispatch>,
        extents: &Extents,
        buffers: &[&R::Buffer],
        timed: bool,
    ) -> Result<Option<f64>> {
        let mut seconds = Some(0.0);
        for dispatch in dispatches {
            let launch = self
                .runtime
                .launch(program, spec, &dispatch, extents, buffers, timed)?;
            if timed {
                let ran = self.runtime.kernel_seconds(launch)?;
                seconds = seconds.zip(ran).map(|(sum, s)| sum + s);
            }
        }
        Ok(seconds)
    }

    /// Workgroup layers (products of a batch) one launch may have.
    fn max_layers(&self) -> u32 {
        self.runtime.capabilities().max_workgroups_per_dimension
    }
}

/// Copies the elements of C that `problem` computes from `data` (C's buffer, as long as `c`): the
/// n valid columns of each row of each product, so C's padding between rows and between the
/// matrices of a batch stays as it was; one parallel copy when C is packed.
fn copy_valid(problem: &GemmProblem, c: &mut [f32], data: &[f32]) {
    let (m, n, ldc) = (problem.m, problem.n, problem.ldc());
    let packed = n == ldc && (problem.batch == 1 || problem.stride_c() == m * n);
    if packed {
        copy_parallel(c, data);
        return;
    }
    for index in 0..problem.batch {
        let start = problem.offsets(index).2;
        for row in 0..m {
            let at = start + row * ldc;
            c[at..at + n].copy_from_slice(&data[at..at + n]);
        }
    }
}

/// One part of a split GEMM: its problem and where its operands start in the caller's slices.
struct Part {
    problem: GemmProblem,
    a_offset: usize,
    b_offset: usize,
    c_offset: usize,
}

/// `problem` cut in two along a dimension that shrinks what is over `fitting` elements: the batch
/// when there is more than one product (halves of it, same strides), else K when A and B both are (each slab shrinks both), M for A (else K), N for B (else K), otherwise (C, the
/// grid, a size over the 32-bit index) the largest of M, N and K. The second K slab adds onto the
/// first (β = 1). None when no dimension can be halved.
fn split(problem: &GemmProblem, extents: &Extents, fitting: u64) -> Option<(Part, Part)> {
    #[derive(PartialEq)]
    enum Cut {
        Batch,
        M,
        N,
        K,
    }
    let over = |elements: usize| elements as u64 > fitting;
    let (m, n, k) = (problem.m, problem.n, problem.k);
    let halvable = |cut: &Cut| match cut {
        Cut::Batch => problem.batch > 1,
        Cut::M => m > 1,
        Cut::N => n > 1,
        Cut::K => k > 1,
    };
    let preferred = match (over(extents.a), over(extents.b)) {
        _ if problem.batch > 1 => vec![Cut::Batch],
        (true, true) => vec![Cut::K, Cut::M, Cut::N],
        (true, false) => vec![Cut::M, Cut::K],
        (false, true) => vec![Cut::N, Cut::K],
        (false, false) if m >= n && m >= k => vec![Cut::M, Cut::N, Cut::K],
        (false, false) if n >= k => vec![Cut::N, Cut::M, Cut::K],
        (false, false) => vec![Cut::K, Cut::M, Cut::N],
    };
    let cut = preferred.into_iter().find(halvable)?;
    let (lda, ldb, ldc) = (problem.lda(), problem.ldb(), problem.ldc());
    let a_transposed = problem.trans_a.is_transposed();
    let b_transposed = problem.trans_b.is_transposed();
    let part = |m, n, k, beta, offsets: (usize, usize, usize)| Part {
        problem: GemmProblem::new(m, n, k)
            .with_transpose(problem.trans_a, problem.trans_b)
            .with_scalars(problem.alpha, beta)
            .with_leading_dims(lda, ldb, ldc),
        a_offset: offsets.0,
        b_offset: offsets.1,
        c_offset: offsets.2,
    };
    let beta = problem.beta;
    if cut == Cut::Batch {
        let half = problem.batch / 2;
        let (a_offset, b_offset, c_offset) = problem.offsets(half);
        let batch = |count| Part {
            problem: problem.sub_batch(count),
            a_offset: 0,
            b_offset: 0,
            c_offset: 0,
        };
        Some((
            batch(half),
            Part {
                a_offset,
                b_offset,
                c_offset,
                ..batch(problem.batch - half)
            },
        ))
    } else if cut == Cut::K {
        let half = k / 2;
        let a_offset = if a_transposed { half * lda } else { half };
        let b_offset = if b_transposed { half } else { half * ldb };
        Some((
            part(m, n, half, beta, (0, 0, 0)),
            part(m, n, k - half, 1.0, (a_offset, b_offset, 0)),
        ))
    } else if cut == Cut::M {
        let half = m / 2;
        let a_offset = if a_transposed { half } else { half * lda };
        Some((
            part(half, n, k, beta, (0, 0, 0)),
            part(m - half, n, k, beta, (a_offset, 0, half * ldc)),
        ))
    } else {
        let half = n / 2;
        let b_offset = if b_transposed { half * ldb } else { half };
        Some((
            part(m, half, k, beta, (0, 0, 0)),
            part(m, n - half, k, beta, (0, b_offset, half)),
        ))
    }
}

/// The program `problem` runs on with `spec`: its transposes, batched where it has more than one
/// product or `spec` cuts it into slices of K, unguarded where it is whole tiles of `spec` (split,
/// where the slices' depth is too: the last, shorter slice then is, as K is). A stream-K kernel's
/// fixup is this program with `fixup` set.
fn specialisation_for(spec: &KernelSpec, problem: &GemmProblem) -> Specialisation {
    let split = split_k::applies(spec, problem);
    let whole_slices = !split
        || split_k::SplitPlan::new(problem, spec.split_k)
            .slab()
            .is_multiple_of(spec.tile_k as usize);
    Specialisation {
        trans_a: problem.trans_a,
        trans_b: problem.trans_b,
        batched: problem.batch > 1 || split,
        whole_tiles: whole_slices && spec.whole_tiles(problem),
        fixup: false,
    }
}

impl<R: GpuRuntime> Backend for GpuBackend<R> {
    fn info(&self) -> &DeviceInfo {
        self.runtime.info()
    }

    fn capabilities(&self) -> &Capabilities {
        self.runtime.capabilities()
    }

    fn kernels(&self) -> Vec<String> {
        let kernels = self.kernels.read().unwrap_or_else(|e| e.into_inner());
        kernels.iter().map(|k| k.name.clone()).collect()
    }

    fn kernel_binary(&self, kernel: &str) -> Result<Option<Vec<u8>>> {
        self.runtime.program_binary(&*self.kernel(kernel)?)
    }

    /// Only what no split can fix: a problem over the device's sizes runs as sub-GEMMs.
    fn check(&self, kernel: &str, problem: &GemmProblem) -> Result<()> {
        let spec = self.kernel(kernel)?;
        problem.extents()?;
        self.check_unsplittable(&spec, problem)
    }

    fn gemm(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<()> {
        let spec = self.kernel(kernel)?;
        self.run_split(&spec, problem, (a, b, c), false).map(|_| ())
    }

    fn gemm_timed(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<Option<f64>> {
        let spec = self.kernel(kernel)?;
        self.run_split(&spec, problem, (a, b, c), true)
    }

    /// A buffer in device memory, written from `data` (or zeros: OpenCL does not clear new buffers).
    fn allocate_resident(
        &self,
        len: usize,
        data: Option<&[f32]>,
    ) -> Result<Box<dyn Any + Send + Sync>> {
        let bytes = padded_bytes(len);
        let available = self.runtime.capabilities().max_buffer_bytes;
        if bytes > available {
            return Err(Error::DeviceLimit {
                device: self.runtime.info().name.clone(),
                limit: "max_buffer_size (bytes)",
                required: bytes,
                available,
            });
        }
        let mut buffer = self.runtime.allocate(bytes, "a resident matrix")?;
        let zeros;
        let data = match data {
            Some(data) => data,
            None => {
                zeros = vec![0.0f32; len];
                &zeros
            }
        };
        if !data.is_empty() {
            self.runtime.write(&mut buffer, data)?;
        }
        Ok(Box::new(buffer))
    }

    fn gemm_resident(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &DeviceMatrix,
        b: &DeviceMatrix,
        c: &mut DeviceMatrix,
    ) -> Result<()> {
        check_on((self as *const Self).cast(), &self.info().name, &[a, b, c])?;
        let extents = problem.check_lengths(a.len(), b.len(), c.len())?;
        let spec = self.kernel(kernel)?;
        self.check_limits(&spec, problem, &extents)?;
        if problem.is_empty() {
            return Ok(());
        }
        let program = self.program_for(&spec, problem)?;
        let (a, b) = (a.storage::<R::Buffer>()?, b.storage::<R::Buffer>()?);
        let c = c.storage_mut::<R::Buffer>()?;
        self.enqueue(&program, &spec, problem, &extents, [a, b, &*c], false)?;
        Ok(())
    }

    fn read_resident(&self, matrix: &DeviceMatrix, out: &mut [f32]) -> Result<()> {
        check_on((self as *const Self).cast(), &self.info().name, &[matrix])?;
        if out.is_empty() {
            return Ok(());
        }
        let buffer = matrix.storage::<R::Buffer>()?;
        let elements = out.len();
        self.runtime
            .read(buffer, elements, RESIDENT_READ_TIMEOUT, &mut |data| {
                copy_parallel(out, &data[..elements])
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Transpose;
    use crate::reference::{max_relative_error, reference_gemm};
    use rand::{Rng, SeedableRng};

    /// Runs `problem` as `run_split` would with operands of at most `fitting` elements, each
    /// part by the f64 reference on views of the same slices.
    fn run_in_parts(problem: &GemmProblem, a: &[f32], b: &[f32], c: &mut [f32], fitting: u64) {
        let extents = problem.check_lengths(a.len(), b.len(), c.len()).unwrap();
        let over = [extents.a, extents.b, extents.c]
            .iter()
            .any(|&e| e as u64 > fitting);
        match split(problem, &extents, fitting).filter(|_| over) {
            None => {
                let result = reference_gemm(problem, a, b, c).unwrap();
                let (n, ldc) = (problem.n, problem.ldc());
                for (row, out) in c.chunks_mut(ldc).enumerate().take(problem.m) {
                    for (col, value) in out[..n].iter_mut().enumerate() {
                        *value = result[row * n + col] as f32;
                    }
                }
            }
            Some((first, second)) => {
                for part in [first, second] {
                    let c = &mut c[part.c_offset..];
                    run_in_parts(
                        &part.problem,
                        &a[part.a_offset..],
                        &b[part.b_offset..],
                        c,
                        fitting,
                    );
                }
            }
        }
    }

    /// Splitting down to 60-element operands — K slabs, row and column panels, every transpose,
    /// padded leading dimensions, β ≠ 0 — gives the product of the whole problem.
    #[test]
    fn split_parts_compose_to_the_whole_product() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
        for (m, n, k) in [
            (13, 11, 17),
            (1, 40, 3),
            (40, 1, 50),
            (2, 2, 90),
            (9, 30, 2),
        ] {
            for (ta, tb) in [
                (Transpose::No, Transpose::No),
                (Transpose::Yes, Transpose::No),
                (Transpose::No, Transpose::Yes),
                (Transpose::Yes, Transpose::Yes),
            ] {
                let plain = GemmProblem::new(m, n, k).with_transpose(ta, tb);
                let (lda, ldb) = (plain.lda() + 3, plain.ldb() + 1);
                let problem = plain
                    .with_scalars(0.5, -2.0)
                    .with_leading_dims(lda, ldb, n + 2);
                let extents = problem.extents().unwrap();
                let mut a = vec![0.0f32; extents.a];
                let mut b = vec![0.0f32; extents.b];
                let mut c = vec![0.0f32; extents.c];
                a.iter_mut().for_each(|x| *x = rng.random_range(-1.0..=1.0));
                b.iter_mut().for_each(|x| *x = rng.random_range(-1.0..=1.0));
                c.iter_mut().for_each(|x| *x = rng.random_range(-1.0..=1.0));
                let want = reference_gemm(&problem, &a, &b, &c).unwrap();
                let padding: Vec<f32> = c.clone();
                run_in_parts(&problem, &a, &b, &mut c, 60);
                let error = max_relative_error(&problem, &c, &want);
                assert!(error < 1e-5, "{problem:?}: {error}");
                // The padding between C's rows is never written.
                for (row, (got, was)) in c.chunks(n + 2).zip(padding.chunks(n + 2)).enumerate() {
                    assert_eq!(
                        got[n.min(got.len())..],
                        was[n.min(was.len())..],
                        "row {row}"
                    );
                }
            }
        }
    }

    /// The seed's lavapipe case: tile16 at 1792³ (11.5 GFLOP) runs at 0.03–0.1 GFLOPS, so a first
    /// call must wait well past its 2–6 minutes, and a timed kernel's limit follows its rate.
    #[test]
    fn time_outs_scale_with_the_slowest_rate_seen() {
        let flops = 2.0 * 1792f64.powi(3);
        let first = timeout_for(flops, None).as_secs_f64();
        assert!((first - (60.0 + flops / 0.01e9)).abs() < 1e-6, "{first}");
        let timed = timeout_for(flops, Some(0.03)).as_secs_f64();
        assert!((timed - (60.0 + 10.0 * flops / 0.03e9)).abs() < 1e-6);
        let fast = timeout_for(flops, Some(30_000.0)).as_secs_f64();
        assert!((60.0..61.0).contains(&fast), "{fast}");
        assert_eq!(timeout_for(f64::MAX, Some(1e-30)).as_secs(), 7 * 86_400);
    }

    #[test]
    fn whole_aligned_tiles_run_unguarded_and_nothing_else_does() {
        let spec = |name| crate::kernel::find(name).unwrap();
        let member = spec("rb128x64x16_8x4_p");
        let whole = GemmProblem::new(256, 128, 48);
        let of = |problem: &GemmProblem| specialisation_for(member, problem);
        assert!(of(&whole).whole_tiles && !of(&whole).batched);
        let transposed = whole.with_transpose(Transpose::Yes, Transpose::Yes);
        assert!(of(&transposed).whole_tiles && of(&transposed).trans_a.is_transposed());
        for partial in [
            GemmProblem::new(255, 128, 48),
            GemmProblem::new(256, 130, 48),
            GemmProblem::new(256, 128, 40),
            whole.with_leading_dims(50, 128, 128),
            whole.with_leading_dims(48, 129, 128),
            whole.with_batch(2, 256 * 48 + 1, 48 * 128, 256 * 128),
        ] {
            assert!(!of(&partial).whole_tiles, "{partial:?}");
        }
        // C's rows need no alignment (its stores are scalar); a batch with aligned strides is whole.
        assert!(of(&whole.with_leading_dims(48, 128, 129)).whole_tiles);
        let batch = whole.with_batch(3, 256 * 52, 48 * 132, 256 * 129);
        assert!(of(&batch).whole_tiles && of(&batch).batched);
        // Split-K's slices are batched, and whole where their depth is whole slabs: 48 in 4 slices
        // of 12 is not (BK = 16), 256 in 4 slices of 64 is.
        let split_member = spec("rb128x64x16_8x4_p_sk4");
        let split = specialisation_for(split_member, &whole);
        assert!(split.batched && !split.whole_tiles);
        let deep = GemmProblem::new(256, 128, 256);
        let split = specialisation_for(split_member, &deep);
        assert!(split.batched && split.whole_tiles);
    }

    #[test]
    fn a_split_cuts_the_dimension_that_shrinks_what_is_over() {
        let cut = |problem: GemmProblem, fitting| {
            let extents = problem.extents().unwrap();
            let (first, second) = split(&problem, &extents, fitting).unwrap();
            (
                first.problem,
                second.problem,
                second.a_offset,
                second.b_offset,
                second.c_offset,
            )
        };
        // A and B over: K, the second slab accumulating.
        let (first, second, a, b, c) = cut(GemmProblem::new(2, 2, 100), 150);
        assert_eq!(
            (first.k, second.k, second.beta, a, b, c),
            (50, 50, 1.0, 50, 100, 0)
        );
        // Only A over: M.
        let (first, second, a, _, c) = cut(GemmProblem::new(100, 2, 4), 300);
        assert_eq!((first.m, second.m, a, c), (50, 50, 200, 100));
        // Only B over: N.
        let (_, second, _, b, c) = cut(GemmProblem::new(2, 100, 4), 300);
        assert_eq!((second.n, b, c), (50, 50, 50));
        // Nothing left to halve.
        let one = GemmProblem::new(1, 1, 1);
        assert!(split(&one, &one.extents().unwrap(), 0).is_none());
    }
}
