//! The OpenCL backend (cargo feature `ocl`): the OpenCL C sources of [`crate::kernel`] on every
//! OpenCL device (NVIDIA, AMD, Intel drivers; PoCL on the CPU).
//!
//! libOpenCL is loaded at run time (`opencl3`'s `dynamic` feature), so a binary built with `ocl`
//! starts on a host without OpenCL and simply lists no OpenCL device. Programs are built once per
//! (kernel, transposes) and cached; buffers are kept and grown on demand.

use super::{check_gpu_limits, Backend, BackendKind, Capabilities, DeviceInfo, DeviceType};
use crate::error::{Error, Result};
use crate::kernel::{catalogue, KernelSpec};
use crate::problem::{GemmProblem, Transpose};
use opencl3::command_queue::{CommandQueue, CL_QUEUE_PROFILING_ENABLE};
use opencl3::context::Context;
use opencl3::device::{Device, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU};
use opencl3::kernel::Kernel;
use opencl3::memory::{Buffer, ClMem, CL_MEM_READ_WRITE};
use opencl3::program::Program;
use opencl3::types::{cl_uint, CL_BLOCKING, CL_NON_BLOCKING};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Opens every device of every OpenCL platform. Err carries why none could be opened.
pub fn discover() -> std::result::Result<Vec<OclBackend>, String> {
    let platforms = opencl3::platform::get_platforms()
        .map_err(|e| format!("no OpenCL platform ({e}); install an ICD, e.g. pocl-opencl-icd"))?;
    let mut opened = Vec::new();
    let mut failures = Vec::new();
    for platform in platforms {
        let platform_name = platform.name().unwrap_or_else(|_| "OpenCL".into());
        for id in platform.get_devices(CL_DEVICE_TYPE_ALL).unwrap_or_default() {
            match OclBackend::open(&platform_name, Device::new(id)) {
                Ok(backend) => opened.push(backend),
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

/// One OpenCL device with its context and an in-order, profiling queue.
pub struct OclBackend {
    info: DeviceInfo,
    capabilities: Capabilities,
    context: Context,
    queue: CommandQueue,
    kernels: Vec<KernelSpec>,
    state: Mutex<State>,
}

/// Built kernels and reused buffers; also serialises argument setting and enqueueing.
struct State {
    kernels: HashMap<(String, Transpose, Transpose), (Program, Kernel)>,
    a: Option<(Buffer<f32>, usize)>,
    b: Option<(Buffer<f32>, usize)>,
    c: Option<(Buffer<f32>, usize)>,
}

impl OclBackend {
    fn open(platform_name: &str, device: Device) -> Result<Self> {
        let name = device.name().unwrap_or_else(|_| "OpenCL device".into());
        let fail = |what: &str, e: opencl3::error_codes::ClError| Error::Device {
            device: name.clone(),
            message: format!("{what}: {e}"),
        };
        let kind = device
            .dev_type()
            .map_err(|e| fail("querying the device type", e))?;
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
            .map_err(|e| fail("querying limits", e))?;
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
        let context = Context::from_device(&device).map_err(|e| fail("creating a context", e))?;
        let queue =
            CommandQueue::create_default_with_properties(&context, CL_QUEUE_PROFILING_ENABLE, 0)
                .map_err(|e| fail("creating a queue", e))?;
        Ok(OclBackend {
            info,
            capabilities,
            context,
            queue,
            kernels: catalogue()
                .iter()
                .filter(|k| k.opencl.is_some())
                .cloned()
                .collect(),
            state: Mutex::new(State {
                kernels: HashMap::new(),
                a: None,
                b: None,
                c: None,
            }),
        })
    }

    /// A backend whose catalogue is `kernels` instead of the built-in one (tests of build failures).
    pub fn with_kernels(mut self, kernels: Vec<KernelSpec>) -> Self {
        self.kernels = kernels;
        self
    }

    fn spec(&self, name: &str) -> Result<&KernelSpec> {
        self.kernels.iter().find(|k| k.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.kernels.iter().map(|k| k.name.as_str()).collect();
            Error::NotFound(format!(
                "OpenCL device '{}' has no kernel '{name}' (it has {})",
                self.info.name,
                known.join(", ")
            ))
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn device_error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Device {
            device: self.info.name.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// A buffer of at least `elements` floats, reusing the one in `slot` when large enough.
    fn reuse<'s>(
        &self,
        slot: &'s mut Option<(Buffer<f32>, usize)>,
        elements: usize,
    ) -> Result<&'s mut Buffer<f32>> {
        let elements = elements.max(4);
        if slot
            .as_ref()
            .is_none_or(|(_, capacity)| *capacity < elements)
        {
            *slot = None;
            // SAFETY: no host pointer is passed; the size was checked against max_mem_alloc_size.
            let buffer = unsafe {
                Buffer::<f32>::create(
                    &self.context,
                    CL_MEM_READ_WRITE,
                    elements,
                    std::ptr::null_mut(),
                )
            }
            .map_err(|e| self.device_error(&format!("allocating {elements} floats"), e))?;
            *slot = Some((buffer, elements));
        }
        Ok(&mut slot.as_mut().expect("allocated above").0)
    }

    /// Runs the GEMM; returns the kernel's device time in seconds (from profiling events).
    fn run(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<Option<f64>> {
        let spec = self.spec(kernel)?;
        let extents = problem.check_lengths(a.len(), b.len(), c.len())?;
        check_gpu_limits(&self.info, &self.capabilities, spec, problem, &extents)?;
        if problem.is_empty() {
            return Ok(None);
        }
        let mut state = self.lock();
        let key = (spec.name.clone(), problem.trans_a, problem.trans_b);
        if !state.kernels.contains_key(&key) {
            let source = spec
                .opencl
                .as_deref()
                .expect("catalogue filtered to OpenCL kernels");
            let options = format!(
                "-D TRANS_A={} -D TRANS_B={}",
                problem.trans_a.is_transposed() as u8,
                problem.trans_b.is_transposed() as u8
            );
            let program = Program::create_and_build_from_source(&self.context, source, &options)
                .map_err(|log| Error::KernelBuild {
                    kernel: spec.name.clone(),
                    device: self.info.name.clone(),
                    log,
                })?;
            let built = Kernel::create(&program, "gemm").map_err(|e| Error::KernelBuild {
                kernel: spec.name.clone(),
                device: self.info.name.clone(),
                log: format!("no kernel 'gemm': {e}"),
            })?;
            state.kernels.insert(key.clone(), (program, built));
        }
        let State {
            kernels,
            a: a_slot,
            b: b_slot,
            c: c_slot,
        } = &mut *state;
        let a_buffer = self.reuse(a_slot, extents.a)?;
        let b_buffer = self.reuse(b_slot, extents.b)?;
        let c_buffer = self.reuse(c_slot, extents.c)?;
        let queue = &self.queue;
        let mut result = vec![0.0f32; extents.c];
        // SAFETY: every buffer holds at least its extent (`reuse`), host slices outlive the blocking
        // read that ends this block (the queue is in order), and the kernel's arguments match the
        // signature in kernels_cl/ one for one.
        let event = unsafe {
            let write = |buffer: &mut Buffer<f32>, data: &[f32]| {
                if data.is_empty() {
                    return Ok(());
                }
                queue
                    .enqueue_write_buffer(buffer, CL_NON_BLOCKING, 0, data, &[])
                    .map(|_| ())
                    .map_err(|e| self.device_error("uploading", e))
            };
            write(a_buffer, &a[..extents.a])?;
            write(b_buffer, &b[..extents.b])?;
            if problem.beta != 0.0 {
                write(c_buffer, &c[..extents.c])?;
            }
            let (_, gemm) = &kernels[&key];
            let args = (|| {
                gemm.set_arg(0, &(problem.m as cl_uint))?;
                gemm.set_arg(1, &(problem.n as cl_uint))?;
                gemm.set_arg(2, &(problem.k as cl_uint))?;
                gemm.set_arg(3, &problem.alpha)?;
                gemm.set_arg(4, &a_buffer.get())?;
                gemm.set_arg(5, &b_buffer.get())?;
                gemm.set_arg(6, &problem.beta)?;
                gemm.set_arg(7, &c_buffer.get())?;
                gemm.set_arg(8, &(problem.lda() as cl_uint))?;
                gemm.set_arg(9, &(problem.ldb() as cl_uint))?;
                gemm.set_arg(10, &(problem.ldc() as cl_uint))
            })();
            args.map_err(|e| self.device_error("setting kernel arguments", e))?;
            let (groups_x, groups_y) = spec.dispatch(problem.m, problem.n);
            let global = [
                groups_x as usize * spec.workgroup[0] as usize,
                groups_y as usize * spec.workgroup[1] as usize,
            ];
            let local = [spec.workgroup[0] as usize, spec.workgroup[1] as usize];
            let event = queue
                .enqueue_nd_range_kernel(
                    gemm.get(),
                    2,
                    std::ptr::null(),
                    global.as_ptr(),
                    local.as_ptr(),
                    &[],
                )
                .map_err(|e| self.device_error("launching the kernel", e))?;
            queue
                .enqueue_read_buffer(c_buffer, CL_BLOCKING, 0, &mut result, &[])
                .map_err(|e| self.device_error("reading the result back", e))?;
            event
        };
        let (n, ldc) = (problem.n, problem.ldc());
        for (row_out, row_in) in c[..extents.c].chunks_mut(ldc).zip(result.chunks(ldc)) {
            row_out[..n].copy_from_slice(&row_in[..n]);
        }
        let seconds = match (
            event.profiling_command_start(),
            event.profiling_command_end(),
        ) {
            (Ok(start), Ok(end)) if end >= start => Some((end - start) as f64 * 1e-9),
            _ => None,
        };
        Ok(seconds)
    }
}

impl Backend for OclBackend {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn kernels(&self) -> Vec<String> {
        self.kernels.iter().map(|k| k.name.clone()).collect()
    }

    fn check(&self, kernel: &str, problem: &GemmProblem) -> Result<()> {
        let spec = self.spec(kernel)?;
        let extents = problem.extents()?;
        check_gpu_limits(&self.info, &self.capabilities, spec, problem, &extents)
    }

    fn gemm(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<()> {
        self.run(kernel, problem, a, b, c).map(|_| ())
    }

    fn gemm_timed(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<Option<f64>> {
        self.run(kernel, problem, a, b, c)
    }
}
