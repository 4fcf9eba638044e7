//! The OpenCL backend (cargo feature `ocl`): the catalogue's OpenCL C kernels on every OpenCL device
//! (NVIDIA, AMD, Intel drivers; PoCL on the CPU).
//!
//! libOpenCL is loaded at run time (`opencl3`'s `dynamic` feature), so a binary built with `ocl`
//! starts on a host without OpenCL and simply lists no OpenCL device. [`OclRuntime`] is what OpenCL
//! contributes to the shared GPU path ([`crate::backend::gpu`]).

use super::gpu::{copy_parallel, GpuBackend, GpuRuntime};
use crate::device::{BackendKind, Capabilities, DeviceInfo, DeviceType};
use crate::error::{Error, Result};
use crate::kernel::{Dispatch, KernelSpec, Specialisation};
use crate::problem::Extents;
use opencl3::command_queue::{CommandQueue, CL_QUEUE_PROFILING_ENABLE};
use opencl3::context::Context;
use opencl3::device::{Device, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU};
use opencl3::error_codes::ClError;
use opencl3::event::{Event, CL_COMPLETE};
use opencl3::kernel::Kernel;
use opencl3::memory::{
    Buffer, ClMem, CL_MAP_READ, CL_MAP_WRITE, CL_MEM_ALLOC_HOST_PTR, CL_MEM_READ_WRITE,
};
use opencl3::program::Program;
use opencl3::types::{cl_uint, CL_BLOCKING};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One OpenCL device, opened.
pub type OclBackend = GpuBackend<OclRuntime>;

/// Opens every device of every OpenCL platform. Err carries why none could be opened.
pub fn discover() -> std::result::Result<Vec<OclBackend>, String> {
    let platforms = opencl3::platform::get_platforms()
        .map_err(|e| format!("no OpenCL platform ({e}); install an ICD, e.g. pocl-opencl-icd"))?;
    let mut opened = Vec::new();
    let mut failures = Vec::new();
    for platform in platforms {
        let platform_name = platform.name().unwrap_or_else(|_| "OpenCL".into());
        for id in platform.get_devices(CL_DEVICE_TYPE_ALL).unwrap_or_default() {
            match OclRuntime::open(&platform_name, Device::new(id)) {
                Ok(runtime) => opened.push(GpuBackend::new(runtime)),
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    if opened.is_empty() {
        Err(if failures.is_empty() {
            "no OpenCL device found".to_string()
        } else {
            failures.join("; ")
        })
    } else {
        Ok(opened)
    }
}

/// What OpenCL contributes to the shared GPU path: one device with its context and an in-order,
/// profiling queue.
pub struct OclRuntime {
    info: DeviceInfo,
    capabilities: Capabilities,
    context: Context,
    queue: CommandQueue,
    /// Pinned memory that host-slice copies go through, grown on demand.
    staging: Mutex<Option<Staging>>,
    /// The marker behind work that outlived its time-out: until it completes, the queue is stuck
    /// and nothing new is queued (a blocking copy behind it would never return).
    stuck: Mutex<Option<Event>>,
}

/// OpenCL errors that mean the device itself is gone or wedged, not the call: out of resources
/// (how NVIDIA reports a kernel that faulted), an invalid queue, a failed event in a wait list,
/// a device no longer available.
const LOST_DEVICE_CODES: [i32; 4] = [-5, -36, -14, -2];

/// Poll a marker this often once it has not completed at the first look.
const POLL_INTERVAL: Duration = Duration::from_micros(50);

/// Pinned host memory (`CL_MEM_ALLOC_HOST_PTR`, mapped for as long as it lives) that uploads and
/// read-backs go through: drivers move pinned memory by DMA at the link's speed, pageable memory
/// through bounce buffers of their own (1.8 GB/s with NVIDIA's OpenCL on the H100), and the host
/// side of the copy is split over threads ([`copy_parallel`]).
struct Staging {
    memory: Buffer<f32>,
    mapped: *mut f32,
    elements: usize,
}

// SAFETY: the mapping belongs to `memory`; it is used only under the runtime's staging lock.
unsafe impl Send for Staging {}

impl Staging {
    /// The first `elements` floats of the mapping.
    fn slice(&mut self, elements: usize) -> &mut [f32] {
        assert!(elements <= self.elements, "staging grown to fit");
        // SAFETY: the mapping holds `self.elements` floats and lives as long as `self`.
        unsafe { std::slice::from_raw_parts_mut(self.mapped, elements) }
    }
}

/// A built program and its `gemm` kernel. The kernel's arguments are state: the lock keeps one
/// launch's arguments and enqueue together.
pub struct OclProgram {
    program: Program,
    gemm: Mutex<Kernel>,
}

/// A device buffer and its size.
pub struct OclBuffer {
    memory: Buffer<f32>,
    bytes: u64,
}

impl OclRuntime {
    fn open(platform_name: &str, device: Device) -> Result<Self> {
        let name = device.name().unwrap_or_else(|_| "OpenCL device".into());
        let kind = device
            .dev_type()
            .map_err(|e| Error::device(&name, "querying the device type", e))?;
        let device_type = if kind & CL_DEVICE_TYPE_CPU != 0 {
            DeviceType::Cpu
        } else if kind & CL_DEVICE_TYPE_GPU != 0 {
            if device.host_unified_memory().unwrap_or(false) {
                DeviceType::IntegratedGpu
            } else {
                DeviceType::DiscreteGpu
            }
        } else {
            DeviceType::Other
        };
        let driver = format!(
            "{platform_name} {}",
            device.driver_version().unwrap_or_default()
        );
        let mut info = DeviceInfo::new(
            BackendKind::Ocl,
            "opencl",
            &name,
            driver.trim(),
            device_type,
        );
        info.vendor_id = device.vendor_id().unwrap_or(0);
        let max_alloc = device
            .max_mem_alloc_size()
            .map_err(|e| Error::device(&name, "querying limits", e))?;
        let extensions = device.extensions().unwrap_or_default();
        let capabilities = Capabilities {
            max_buffer_bytes: max_alloc,
            max_binding_bytes: max_alloc,
            max_workgroup_memory_bytes: device.local_mem_size().unwrap_or(0).min(u32::MAX as u64)
                as u32,
            max_workgroup_invocations: device
                .max_work_group_size()
                .unwrap_or(0)
                .min(u32::MAX as usize) as u32,
            // Global sizes are size_t: no per-dimension group limit beyond the index range.
            max_workgroups_per_dimension: u32::MAX,
            shader_f16: extensions.contains("cl_khr_fp16"),
            subgroups: extensions.contains("cl_khr_subgroups"),
            timestamp_query: true,
        };
        let context = Context::from_device(&device)
            .map_err(|e| Error::device(&name, "creating a context", e))?;
        let queue =
            CommandQueue::create_default_with_properties(&context, CL_QUEUE_PROFILING_ENABLE, 0)
                .map_err(|e| Error::device(&name, "creating a queue", e))?;
        Ok(OclRuntime {
            info,
            capabilities,
            context,
            queue,
            staging: Mutex::new(None),
            stuck: Mutex::new(None),
        })
    }

    /// The error of `what` failing with `error`: `DeviceLost` for the codes of a lost or wedged
    /// device ([`LOST_DEVICE_CODES`]), else `Device`.
    fn failure(&self, what: &str, error: ClError) -> Error {
        if LOST_DEVICE_CODES.contains(&error.0) {
            Error::DeviceLost {
                device: self.info.name.clone(),
                message: format!("{what}: {error}"),
                source: Some(Box::new(error)),
            }
        } else {
            Error::device(&self.info.name, what, error)
        }
    }

    /// Ok once the work that outlived a time-out has finished; `DeviceLost` while it has not (the
    /// device is wedged: nothing queued behind it would run) or when it failed.
    fn check_unstuck(&self) -> Result<()> {
        let mut stuck = self.stuck.lock().unwrap_or_else(|e| e.into_inner());
        let Some(marker) = stuck.as_ref() else {
            return Ok(());
        };
        match marker.command_execution_status() {
            Ok(status) if status.0 == CL_COMPLETE => {
                *stuck = None;
                Ok(())
            }
            Ok(status) if status.0 < 0 => {
                Err(self.failure("work that timed out", ClError(status.0)))
            }
            _ => Err(Error::DeviceLost {
                device: self.info.name.clone(),
                message: "still running work that timed out".into(),
                source: None,
            }),
        }
    }

    /// Waits at most `timeout` for everything queued so far; `Timeout` (the queue marked stuck)
    /// when it has not finished by then.
    fn wait_queued(&self, timeout: Duration) -> Result<()> {
        // SAFETY: a marker with an empty wait list waits for every command queued before it.
        let marker = unsafe { self.queue.enqueue_marker_with_wait_list(&[]) }
            .map_err(|e| self.failure("waiting for the queue", e))?;
        self.queue
            .flush()
            .map_err(|e| self.failure("flushing the queue", e))?;
        let started = Instant::now();
        loop {
            let status = marker
                .command_execution_status()
                .map_err(|e| self.failure("waiting for the queue", e))?;
            if status.0 == CL_COMPLETE {
                return Ok(());
            }
            if status.0 < 0 {
                return Err(self.failure("running the queued work", ClError(status.0)));
            }
            if started.elapsed() >= timeout {
                *self.stuck.lock().unwrap_or_else(|e| e.into_inner()) = Some(marker);
                return Err(Error::Timeout {
                    device: self.info.name.clone(),
                    seconds: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The staging memory, holding at least `elements` floats; None where the device offers no
    /// mappable pinned memory of that size (the copies then go from pageable memory).
    fn staging(&self, elements: usize) -> MutexGuard<'_, Option<Staging>> {
        let mut staging = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        if staging.as_ref().is_none_or(|s| s.elements < elements) {
            self.release(staging.take());
            *staging = self.pin(elements);
        }
        staging
    }

    /// New pinned memory of `elements` floats, mapped.
    fn pin(&self, elements: usize) -> Option<Staging> {
        // SAFETY: no host pointer is passed; a size the device refuses is an error, not UB.
        let memory = unsafe {
            Buffer::<f32>::create(
                &self.context,
                CL_MEM_ALLOC_HOST_PTR | CL_MEM_READ_WRITE,
                elements,
                std::ptr::null_mut(),
            )
        }
        .ok()?;
        let mut mapped = std::ptr::null_mut();
        // SAFETY: a blocking map of the whole buffer, which stays mapped until `release`.
        unsafe {
            self.queue.enqueue_map_buffer(
                &memory,
                CL_BLOCKING,
                CL_MAP_READ | CL_MAP_WRITE,
                0,
                elements * 4,
                &mut mapped,
                &[],
            )
        }
        .ok()?;
        Some(Staging {
            memory,
            mapped: mapped as *mut f32,
            elements,
        })
    }

    /// Unmaps `staging` (its memory is freed when dropped).
    fn release(&self, staging: Option<Staging>) {
        if let Some(staging) = staging {
            // SAFETY: `mapped` is the pointer the map returned; nothing uses it afterwards.
            let unmapped = unsafe {
                self.queue.enqueue_unmap_mem_object(
                    staging.memory.get(),
                    staging.mapped as *mut std::ffi::c_void,
                    &[],
                )
            };
            if unmapped.is_ok() {
                let _ = self.queue.finish();
            }
        }
    }
}

impl Drop for OclRuntime {
    fn drop(&mut self) {
        let staging = self
            .staging
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.release(staging);
    }
}

impl GpuRuntime for OclRuntime {
    type Buffer = OclBuffer;
    type Program = Arc<OclProgram>;
    /// The kernel's event, for its profiling times.
    type Launch = Event;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn source<'s>(&self, spec: &'s KernelSpec) -> Option<&'s str> {
        spec.opencl.as_deref()
    }

    fn build(&self, spec: &KernelSpec, specialisation: Specialisation) -> Result<Arc<OclProgram>> {
        let build_error = |log: String| Error::KernelBuild {
            kernel: spec.name.clone(),
            device: self.info.name.clone(),
            log,
        };
        let source = self
            .source(spec)
            .ok_or_else(|| build_error("no OpenCL C source".to_string()))?;
        let options = format!(
            "-D TRANS_A={} -D TRANS_B={} -D BATCHED={} -D WHOLE_TILES={} -D STREAM_K_FIXUP={}",
            specialisation.trans_a.is_transposed() as u8,
            specialisation.trans_b.is_transposed() as u8,
            specialisation.batched as u8,
            specialisation.whole_tiles as u8,
            specialisation.fixup as u8
        );
        let program = Program::create_and_build_from_source(&self.context, source, &options)
            .map_err(build_error)?;
        let gemm = Kernel::create(&program, "gemm")
            .map_err(|e| build_error(format!("no kernel 'gemm': {e}")))?;
        Ok(Arc::new(OclProgram {
            program,
            gemm: Mutex::new(gemm),
        }))
    }

    fn allocate(&self, bytes: u64, what: &str) -> Result<OclBuffer> {
        // SAFETY: no host pointer is passed; the size was checked against max_mem_alloc_size.
        let memory = unsafe {
            Buffer::<f32>::create(
                &self.context,
                CL_MEM_READ_WRITE,
                (bytes / 4) as usize,
                std::ptr::null_mut(),
            )
        }
        .map_err(|e| Error::OutOfMemory {
            device: self.info.name.clone(),
            bytes,
            what: what.to_string(),
            source: Some(Box::new(e)),
        })?;
        Ok(OclBuffer { memory, bytes })
    }

    fn capacity(&self, buffer: &OclBuffer) -> u64 {
        buffer.bytes
    }

    fn write(&self, buffer: &mut OclBuffer, data: &[f32]) -> Result<()> {
        self.check_unstuck()?;
        let mut staging = self.staging(data.len());
        let source = match staging.as_mut() {
            Some(pinned) => {
                let pinned = pinned.slice(data.len());
                copy_parallel(pinned, data);
                &*pinned
            }
            None => data,
        };
        // SAFETY: the write is blocking, so `source` has been copied when the call returns and no
        // queued command reads host memory afterwards, whatever fails later; the buffer holds at
        // least `data.len()` floats (the shared path sizes it from the same extents).
        unsafe {
            self.queue
                .enqueue_write_buffer(&mut buffer.memory, CL_BLOCKING, 0, source, &[])
        }
        .map(|_| ())
        .map_err(|e| self.failure("uploading", e))
    }

    fn launch(
        &self,
        program: &Arc<OclProgram>,
        spec: &KernelSpec,
        dispatch: &Dispatch,
        _extents: &Extents,
        buffers: &[&OclBuffer],
        _timed: bool,
    ) -> Result<Event> {
        self.check_unstuck()?;
        let gemm = program.gemm.lock().unwrap_or_else(|e| e.into_inner());
        let [a, b, c] = [0, 1, 2].map(|i| buffers[i]);
        // SAFETY: the arguments match the signature of kernels_cl/ one for one, and the buffers
        // hold the problem's extents (checked by the shared path).
        unsafe {
            let p = &dispatch.params;
            let args = (|| {
                gemm.set_arg(0, &(p.m as cl_uint))?;
                gemm.set_arg(1, &(p.n as cl_uint))?;
                gemm.set_arg(2, &(p.k as cl_uint))?;
                gemm.set_arg(3, &p.alpha)?;
                gemm.set_arg(4, &a.memory.get())?;
                gemm.set_arg(5, &b.memory.get())?;
                gemm.set_arg(6, &p.beta)?;
                gemm.set_arg(7, &c.memory.get())?;
                for (index, value) in [
                    p.lda,
                    p.ldb,
                    p.ldc,
                    p.stride_a,
                    p.stride_b,
                    p.stride_c,
                    p.first_batch,
                ]
                .iter()
                .enumerate()
                {
                    gemm.set_arg(8 + index as cl_uint, value as &cl_uint)?;
                }
                // A stream-K member's partial tiles: its last argument.
                if let Some(partials) = buffers.get(3) {
                    gemm.set_arg(15, &partials.memory.get())?;
                }
                Ok(())
            })();
            args.map_err(|e: ClError| self.failure("setting kernel arguments", e))?;
            let [x, y, z] = dispatch.groups.map(|g| g as usize);
            let [wx, wy] = spec.workgroup.map(|w| w as usize);
            let global = [x * wx, y * wy, z];
            let local = [wx, wy, 1];
            self.queue
                .enqueue_nd_range_kernel(
                    gemm.get(),
                    3,
                    std::ptr::null(),
                    global.as_ptr(),
                    local.as_ptr(),
                    &[],
                )
                .map_err(|e| self.failure("launching the kernel", e))
        }
    }

    fn read(
        &self,
        buffer: &OclBuffer,
        elements: usize,
        timeout: Duration,
        sink: &mut dyn FnMut(&[f32]),
    ) -> Result<()> {
        self.check_unstuck()?;
        // The kernels first, within the time-out: the blocking copy below then only copies.
        self.wait_queued(timeout)?;
        let mut staging = self.staging(elements);
        let mut pageable = Vec::new();
        let host = match staging.as_mut() {
            Some(pinned) => pinned.slice(elements),
            None => {
                pageable.resize(elements, 0.0f32);
                &mut pageable[..]
            }
        };
        // SAFETY: blocking read into a slice of exactly `elements` floats, which the buffer holds.
        unsafe {
            self.queue
                .enqueue_read_buffer(&buffer.memory, CL_BLOCKING, 0, host, &[])
        }
        .map_err(|e| self.failure("reading the result back", e))?;
        sink(host);
        Ok(())
    }

    fn kernel_seconds(&self, event: Event) -> Result<Option<f64>> {
        event
            .wait()
            .map_err(|e| self.failure("waiting for the kernel", e))?;
        Ok(
            match (
                event.profiling_command_start(),
                event.profiling_command_end(),
            ) {
                (Ok(start), Ok(end)) if end >= start => Some((end - start) as f64 * 1e-9),
                _ => None,
            },
        )
    }

    fn program_binary(&self, spec: &KernelSpec) -> Result<Option<Vec<u8>>> {
        let program = self.build(spec, Specialisation::default())?;
        // One context, one device: the first binary is this device's.
        let binaries = program.program.get_binaries().ok();
        Ok(binaries.and_then(|b| b.into_iter().next().filter(|b| !b.is_empty())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first OpenCL device, opened for one test (one test at a time opens the loader: two at
    /// once find no platform); None where there is none and none is required.
    fn device() -> Option<OclBackend> {
        static LOADER: Mutex<()> = Mutex::new(());
        let _alone = LOADER.lock().unwrap_or_else(|e| e.into_inner());
        let device = discover().unwrap_or_default().into_iter().next();
        assert!(
            device.is_some() || std::env::var("TILEGEMM_REQUIRE_OCL").as_deref() != Ok("1"),
            "an OpenCL device is required"
        );
        device
    }

    /// A read that times out leaves the queue marked stuck: calls fail as `DeviceLost` (never
    /// block) while the late work runs, and the device works again once it has finished.
    #[test]
    fn a_read_past_its_time_out_marks_the_queue_stuck_until_the_work_ends() {
        let Some(backend) = device() else {
            return;
        };
        let runtime = backend.runtime();
        let spec = crate::kernel::find("tile16").unwrap();
        let problem = crate::problem::GemmProblem::new(384, 384, 384);
        let extents = problem.extents().unwrap();
        let program = backend.program(spec, Specialisation::default()).unwrap();
        let buffers: Vec<OclBuffer> = [extents.a, extents.b, extents.c]
            .iter()
            .map(|&e| runtime.allocate(e as u64 * 4, "test").unwrap())
            .collect();
        // Several launches queued: milliseconds of work on any device.
        let dispatch = spec.dispatches(&problem, u32::MAX).next().unwrap();
        for _ in 0..20 {
            let [a, b, c] = [&buffers[0], &buffers[1], &buffers[2]];
            runtime
                .launch(&program, spec, &dispatch, &extents, &[a, b, c], false)
                .unwrap();
        }
        let read = |timeout| runtime.read(&buffers[2], 4, timeout, &mut |_| {});
        assert!(matches!(read(Duration::ZERO), Err(Error::Timeout { .. })));
        let mut refused = 0;
        let recovered = loop {
            match read(Duration::from_secs(60)) {
                Ok(()) => break true,
                Err(Error::DeviceLost { .. }) => refused += 1,
                Err(other) => panic!("{other}"),
            }
            std::thread::sleep(Duration::from_millis(1));
            if refused > 600_000 {
                break false;
            }
        };
        assert!(
            recovered,
            "the device works again once the late work is done"
        );
    }

    /// A write whose host data is overwritten the moment `write` returns must still land whole:
    /// a non-blocking write would race the overwrite (and read freed memory when the caller's
    /// slice is dropped after a later step fails).
    #[test]
    fn write_has_copied_the_host_data_when_it_returns() {
        let Some(backend) = device() else {
            return;
        };
        let runtime = backend.runtime();
        let elements = 16 << 20; // 64 MiB: a copy that takes milliseconds
        let mut buffer = runtime.allocate(elements as u64 * 4, "test").unwrap();
        for round in 0..3 {
            let value = round as f32 + 1.0;
            let mut host = vec![value; elements];
            runtime.write(&mut buffer, &host).unwrap();
            host.fill(-1.0);
            drop(host);
            let mut wrong = 0usize;
            runtime
                .read(&buffer, elements, Duration::from_secs(60), &mut |data| {
                    wrong = data.iter().filter(|&&x| x != value).count();
                })
                .unwrap();
            assert_eq!(
                wrong, 0,
                "round {round}: the device saw the overwritten host data"
            );
        }
    }
}
