//! The wgpu backend: the WGSL kernels of [`crate::kernel`] on Vulkan, Metal or DX12 — and on Mesa's
//! lavapipe where a host has no GPU.
//!
//! One [`WgpuBackend`] per adapter, opened with the adapter's own limits. Pipelines are built once per
//! (kernel, transposes) and cached; the buffers of host-slice GEMMs are kept and grown on demand.
//! Shader modules are created without wgpu's runtime bounds checks (2.5–50× on NVIDIA, DESIGN.md):
//! every kernel guards its own accesses, and the odd-shape tests prove those guards.

use super::{
    check_gpu_limits, padded_bytes, Backend, BackendKind, Capabilities, DeviceInfo, DeviceType,
};
use crate::error::{Error, Result};
use crate::kernel::{catalogue, KernelSpec, Params};
use crate::problem::{Extents, GemmProblem, Transpose};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Source of the ids that tie a [`DeviceMatrix`] to the device that holds it.
static NEXT_DEVICE_ID: AtomicU64 = AtomicU64::new(1);

/// How long to wait for one submission: generous for a device doing a mere 1 GFLOPS.
fn timeout_for(problem: &GemmProblem) -> Duration {
    Duration::from_secs_f64(60.0 + problem.flops() / 1e9)
}

/// Opens every wgpu adapter of this host. `WGPU_BACKEND` (e.g. `vulkan`) restricts the APIs tried;
/// by default the primary ones (Vulkan, Metal, DX12). Err carries why no device could be opened.
pub fn discover() -> std::result::Result<Vec<WgpuBackend>, String> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        descriptor.backends = wgpu::Backends::PRIMARY;
    }
    let apis = descriptor.backends;
    let instance = wgpu::Instance::new(descriptor);
    let adapters = pollster::block_on(instance.enumerate_adapters(apis));
    if adapters.is_empty() {
        let tried = std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "vulkan, metal, dx12".into());
        return Err(format!(
            "no adapter found for {tried} (no Vulkan driver? on Debian/Ubuntu: apt install mesa-vulkan-drivers)"
        ));
    }
    let mut opened = Vec::new();
    let mut failures = Vec::new();
    for adapter in adapters {
        match WgpuBackend::open(adapter) {
            Ok(backend) => opened.push(backend),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if opened.is_empty() {
        Err(failures.join("; "))
    } else {
        Ok(opened)
    }
}

/// A matrix (or any f32 array) held in one device's memory, for GEMMs that skip the host.
pub struct DeviceMatrix {
    buffer: wgpu::Buffer,
    len: usize,
    owner: u64,
}

impl DeviceMatrix {
    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One wgpu adapter, opened as a device.
pub struct WgpuBackend {
    info: DeviceInfo,
    capabilities: Capabilities,
    device: wgpu::Device,
    queue: wgpu::Queue,
    id: u64,
    bind_group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    kernels: RwLock<Vec<Arc<KernelSpec>>>,
    pipelines: Mutex<HashMap<(String, Transpose, Transpose), wgpu::ComputePipeline>>,
    staging: Mutex<Staging>,
}

/// Buffers reused by successive GEMMs; also the lock that keeps one thread's uniform write and
/// submission together.
struct Staging {
    a: Option<wgpu::Buffer>,
    b: Option<wgpu::Buffer>,
    c: Option<wgpu::Buffer>,
    readback: Option<wgpu::Buffer>,
    params: wgpu::Buffer,
    /// Present where the adapter offers timestamp queries.
    timestamps: Option<Timestamps>,
}

/// Two timestamps around the compute pass, resolved and read back to time the kernel alone.
struct Timestamps {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
}

impl Timestamps {
    fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        Timestamps {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel time"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: buffer(
                "timestamps",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "timestamp readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            period: queue.get_timestamp_period() as f64,
        }
    }

    fn pass_writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }
}

fn device_type(kind: wgpu::DeviceType) -> DeviceType {
    match kind {
        wgpu::DeviceType::Cpu => DeviceType::Cpu,
        wgpu::DeviceType::IntegratedGpu => DeviceType::IntegratedGpu,
        wgpu::DeviceType::DiscreteGpu => DeviceType::DiscreteGpu,
        wgpu::DeviceType::VirtualGpu => DeviceType::VirtualGpu,
        wgpu::DeviceType::Other => DeviceType::Other,
    }
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn bind(binding: u32, buffer: &wgpu::Buffer, bytes: u64) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: 0,
            size: wgpu::BufferSize::new(bytes),
        }),
    }
}

/// How wgpu places buffers in device memory: `TILEGEMM_WGPU_MEMORY` = `performance` (wgpu's
/// default: large sub-allocated blocks), `memory-usage` (smaller blocks) or `dedicated` (every
/// buffer of 1 MiB or more in its own allocation). For experiments on memory placement
/// (`benchmarks/NOTES.md`); unknown values keep the default.
fn memory_hints() -> wgpu::MemoryHints {
    match std::env::var("TILEGEMM_WGPU_MEMORY").as_deref() {
        Ok("memory-usage") => wgpu::MemoryHints::MemoryUsage,
        Ok("dedicated") => wgpu::MemoryHints::Manual {
            suballocated_device_memory_block_size: (1 << 20)..(1 << 20),
        },
        _ => wgpu::MemoryHints::Performance,
    }
}

impl WgpuBackend {
    /// Opens `adapter` with its own limits (not wgpu's conservative defaults) and timestamp
    /// queries where offered.
    fn open(adapter: wgpu::Adapter) -> Result<Self> {
        let adapter_info = adapter.get_info();
        let features = adapter.features();
        let limits = adapter.limits();
        let name = adapter_info.name.clone();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tilegemm"),
            required_features: features & wgpu::Features::TIMESTAMP_QUERY,
            required_limits: limits.clone(),
            memory_hints: memory_hints(),
            ..Default::default()
        }))
        .map_err(|e| Error::Device {
            device: name.clone(),
            message: format!("cannot open the device: {e}"),
        })?;
        // Errors of calls outside an error scope are logged, never a panic.
        let log_name = name.clone();
        device.on_uncaptured_error(Arc::new(move |e| log::error!("{log_name}: {e}")));

        let api = format!("{:?}", adapter_info.backend).to_lowercase();
        let driver = format!("{} {}", adapter_info.driver, adapter_info.driver_info)
            .trim()
            .to_string();
        let mut info = DeviceInfo::new(
            BackendKind::Wgpu,
            &api,
            &name,
            &driver,
            device_type(adapter_info.device_type),
        );
        info.vendor_id = adapter_info.vendor;
        info.device_id = adapter_info.device;
        let capabilities = Capabilities {
            max_buffer_bytes: limits.max_buffer_size,
            max_binding_bytes: limits.max_storage_buffer_binding_size,
            max_workgroup_memory_bytes: limits.max_compute_workgroup_storage_size,
            max_workgroup_invocations: limits.max_compute_invocations_per_workgroup,
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        };

        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("gemm"),
            entries: &[
                storage_entry(0, true),
                storage_entry(1, true),
                storage_entry(2, false),
                wgpu::BindGroupLayoutEntry {
                    binding: 3,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("gemm"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let timestamps = capabilities
            .timestamp_query
            .then(|| Timestamps::new(&device, &queue));
        Ok(WgpuBackend {
            info,
            capabilities,
            device,
            queue,
            id: NEXT_DEVICE_ID.fetch_add(1, Ordering::Relaxed),
            bind_group_layout,
            pipeline_layout,
            kernels: RwLock::new(catalogue().iter().cloned().map(Arc::new).collect()),
            pipelines: Mutex::new(HashMap::new()),
            staging: Mutex::new(Staging {
                a: None,
                b: None,
                c: None,
                readback: None,
                params,
                timestamps,
            }),
        })
    }

    /// Adds a kernel to this device's catalogue (or replaces the one of the same name).
    ///
    /// # Safety
    /// The module is created without runtime bounds checks: the kernel must keep every access
    /// inside its bindings for any problem this backend accepts, as the built-in kernels do.
    pub unsafe fn register_kernel(&self, spec: KernelSpec) {
        let mut kernels = self.kernels.write().unwrap_or_else(|e| e.into_inner());
        kernels.retain(|k| k.name != spec.name);
        self.lock_pipelines().retain(|key, _| key.0 != spec.name);
        kernels.push(Arc::new(spec));
    }

    fn kernel(&self, name: &str) -> Result<Arc<KernelSpec>> {
        let kernels = self.kernels.read().unwrap_or_else(|e| e.into_inner());
        kernels
            .iter()
            .find(|k| k.name == name)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = kernels.iter().map(|k| k.name.as_str()).collect();
                Error::NotFound(format!(
                    "wgpu device '{}' has no kernel '{name}' (it has {})",
                    self.info.name,
                    known.join(", ")
                ))
            })
    }

    fn lock_pipelines(
        &self,
    ) -> MutexGuard<'_, HashMap<(String, Transpose, Transpose), wgpu::ComputePipeline>> {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_staging(&self) -> MutexGuard<'_, Staging> {
        self.staging.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn device_error(&self, message: impl std::fmt::Display) -> Error {
        Error::Device {
            device: self.info.name.clone(),
            message: message.to_string(),
        }
    }

    /// Runs `f` with wgpu's validation and out-of-memory errors captured into a typed error.
    fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let invalid = pollster::block_on(validation.pop());
        let oom = pollster::block_on(out_of_memory.pop());
        match invalid.or(oom) {
            Some(e) => Err(self.device_error(format!("{what}: {e}"))),
            None => Ok(value),
        }
    }

    /// The pipeline of `spec` specialised for these transposes, built on first use.
    fn pipeline(
        &self,
        spec: &KernelSpec,
        trans_a: Transpose,
        trans_b: Transpose,
    ) -> Result<wgpu::ComputePipeline> {
        let key = (spec.name.clone(), trans_a, trans_b);
        let mut pipelines = self.lock_pipelines();
        if let Some(pipeline) = pipelines.get(&key) {
            return Ok(pipeline.clone());
        }
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        // SAFETY: catalogue kernels guard every buffer access against the problem's bounds (see
        // shaders/), and `check_limits` keeps sizes inside the bindings and the u32 index range;
        // `register_kernel` makes callers promise the same of their kernels.
        let module = unsafe {
            self.device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some(&spec.name),
                    source: wgpu::ShaderSource::Wgsl(spec.wgsl.clone()),
                },
                wgpu::ShaderRuntimeChecks::unchecked(),
            )
        };
        let flag = |t: Transpose| if t.is_transposed() { 1.0 } else { 0.0 };
        let constants = [("TRANS_A", flag(trans_a)), ("TRANS_B", flag(trans_b))];
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&spec.name),
                layout: Some(&self.pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    // Every kernel writes its workgroup tiles before reading them.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(validation.pop()) {
            return Err(Error::KernelBuild {
                kernel: spec.name.clone(),
                device: self.info.name.clone(),
                log: e.to_string(),
            });
        }
        pipelines.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// A buffer of at least `bytes`, reusing the one in `slot` when it is large enough.
    fn reuse(
        &self,
        slot: &mut Option<wgpu::Buffer>,
        bytes: u64,
        usage: wgpu::BufferUsages,
        label: &str,
    ) -> Result<wgpu::Buffer> {
        if let Some(buffer) = slot.as_ref().filter(|b| b.size() >= bytes) {
            return Ok(buffer.clone());
        }
        *slot = None; // free the old one before allocating its successor
        let buffer = self.scoped(&format!("allocating {bytes} bytes for {label}"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        })?;
        *slot = Some(buffer.clone());
        Ok(buffer)
    }

    /// Records the GEMM's dispatch into `encoder`, with `problem` written to the uniform buffer.
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        spec: &KernelSpec,
        problem: &GemmProblem,
        extents: &Extents,
        buffers: [&wgpu::Buffer; 3],
        params: &wgpu::Buffer,
        timestamps: Option<&Timestamps>,
    ) {
        self.queue
            .write_buffer(params, 0, bytemuck::bytes_of(&Params::of(problem)));
        let [a, b, c] = buffers;
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("gemm"),
            layout: &self.bind_group_layout,
            entries: &[
                bind(0, a, padded_bytes(extents.a)),
                bind(1, b, padded_bytes(extents.b)),
                bind(2, c, padded_bytes(extents.c)),
                bind(3, params, std::mem::size_of::<Params>() as u64),
            ],
        });
        let (groups_x, groups_y) = spec.dispatch(problem.m, problem.n);
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&spec.name),
                timestamp_writes: timestamps.map(Timestamps::pass_writes),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups_x as u32, groups_y as u32, 1);
        }
        if let Some(ts) = timestamps {
            encoder.resolve_query_set(&ts.queries, 0..2, &ts.resolve, 0);
            encoder.copy_buffer_to_buffer(&ts.resolve, 0, &ts.readback, 0, 16);
        }
    }

    /// Maps `bytes` of `buffer` for reading once queued work is done; errors and time-outs typed.
    fn map_and_wait(&self, buffer: &wgpu::Buffer, bytes: u64, timeout: Duration) -> Result<()> {
        let (sender, receiver) = std::sync::mpsc::channel();
        buffer.map_async(wgpu::MapMode::Read, 0..bytes, move |result| {
            let _ = sender.send(result);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(timeout),
            })
            .map_err(|e| match e {
                wgpu::PollError::Timeout => Error::Timeout {
                    device: self.info.name.clone(),
                    seconds: timeout.as_secs_f64(),
                },
                other => self.device_error(other),
            })?;
        match receiver.try_recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.device_error(format!("reading back: {e}"))),
            Err(_) => Err(self.device_error("reading back: mapping never completed")),
        }
    }

    /// Seconds between the two timestamps of the last timed pass.
    fn read_kernel_seconds(&self, ts: &Timestamps) -> Result<f64> {
        self.map_and_wait(&ts.readback, 16, Duration::from_secs(10))?;
        let ticks = {
            let view = ts
                .readback
                .get_mapped_range(0..16)
                .map_err(|e| self.device_error(format!("reading timestamps: {e}")))?;
            let stamps: &[u64] = bytemuck::cast_slice(&view);
            stamps[1].saturating_sub(stamps[0])
        };
        ts.readback.unmap();
        Ok(ticks as f64 * ts.period * 1e-9)
    }

    /// Submits `encoder` after copying `bytes` of `source` into the readback buffer, waits, and
    /// hands the mapped floats to `read`.
    fn submit_and_read(
        &self,
        staging: &mut Staging,
        mut encoder: wgpu::CommandEncoder,
        source: &wgpu::Buffer,
        bytes: u64,
        timeout: Duration,
        read: impl FnOnce(&[f32]),
    ) -> Result<()> {
        let readback = self.reuse(
            &mut staging.readback,
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            "readback",
        )?;
        encoder.copy_buffer_to_buffer(source, 0, &readback, 0, bytes);
        self.scoped("submitting the GEMM", || {
            self.queue.submit([encoder.finish()])
        })?;
        self.map_and_wait(&readback, bytes, timeout)?;
        {
            let view = readback
                .get_mapped_range(0..bytes)
                .map_err(|e| self.device_error(format!("reading the result back: {e}")))?;
            read(bytemuck::cast_slice(&view));
        }
        readback.unmap();
        Ok(())
    }

    /// Copies `data` into a new buffer on this device.
    pub fn upload(&self, data: &[f32]) -> Result<DeviceMatrix> {
        let matrix = self.zeros(data.len())?;
        if !data.is_empty() {
            self.queue
                .write_buffer(&matrix.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(matrix)
    }

    /// A new zero-filled buffer of `len` floats on this device.
    pub fn zeros(&self, len: usize) -> Result<DeviceMatrix> {
        let bytes = len
            .checked_mul(4)
            .map(|_| padded_bytes(len))
            .ok_or_else(|| Error::SizeOverflow {
                what: format!("a device buffer of {len} floats"),
            })?;
        if bytes > self.capabilities.max_buffer_bytes {
            return Err(Error::DeviceLimit {
                device: self.info.name.clone(),
                limit: "max_buffer_size (bytes)",
                required: bytes,
                available: self.capabilities.max_buffer_bytes,
            });
        }
        let buffer = self.scoped(&format!("allocating {bytes} bytes"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("matrix"),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        })?;
        Ok(DeviceMatrix {
            buffer,
            len,
            owner: self.id,
        })
    }

    fn check_owner(&self, matrices: [&DeviceMatrix; 3]) -> Result<()> {
        if matrices.iter().all(|m| m.owner == self.id) {
            Ok(())
        } else {
            Err(Error::Buffer(format!(
                "a matrix passed to '{}' lives on another device",
                self.info.name
            )))
        }
    }

    /// Queues `C ← α·op(A)·op(B) + β·C` on matrices already on this device, without waiting:
    /// many GEMMs can be queued and the result read once with [`WgpuBackend::download`].
    pub fn gemm_resident(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &DeviceMatrix,
        b: &DeviceMatrix,
        c: &mut DeviceMatrix,
    ) -> Result<()> {
        self.check_owner([a, b, c])?;
        let spec = self.kernel(kernel)?;
        let extents = problem.check_lengths(a.len, b.len, c.len)?;
        check_gpu_limits(&self.info, &self.capabilities, &spec, problem, &extents)?;
        if problem.is_empty() {
            return Ok(());
        }
        let pipeline = self.pipeline(&spec, problem.trans_a, problem.trans_b)?;
        let staging = self.lock_staging();
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.scoped("recording the GEMM", || {
            self.encode(
                &mut encoder,
                &pipeline,
                &spec,
                problem,
                &extents,
                [&a.buffer, &b.buffer, &c.buffer],
                &staging.params,
                None,
            )
        })?;
        self.scoped("submitting the GEMM", || {
            self.queue.submit([encoder.finish()])
        })?;
        Ok(())
    }

    /// Waits for queued work and copies `matrix` back to the host.
    pub fn download(&self, matrix: &DeviceMatrix) -> Result<Vec<f32>> {
        self.check_owner([matrix, matrix, matrix])?;
        let mut out = vec![0.0f32; matrix.len];
        if matrix.len == 0 {
            return Ok(out);
        }
        let mut staging = self.lock_staging();
        let encoder = self.device.create_command_encoder(&Default::default());
        let bytes = matrix.len as u64 * 4;
        let timeout = Duration::from_secs(600);
        self.submit_and_read(
            &mut staging,
            encoder,
            &matrix.buffer,
            bytes,
            timeout,
            |data| out.copy_from_slice(&data[..matrix.len]),
        )?;
        Ok(out)
    }
}

impl Backend for WgpuBackend {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn kernels(&self) -> Vec<String> {
        let kernels = self.kernels.read().unwrap_or_else(|e| e.into_inner());
        kernels.iter().map(|k| k.name.clone()).collect()
    }

    fn check(&self, kernel: &str, problem: &GemmProblem) -> Result<()> {
        let spec = self.kernel(kernel)?;
        let extents = problem.extents()?;
        check_gpu_limits(&self.info, &self.capabilities, &spec, problem, &extents)
    }

    fn gemm(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<()> {
        self.run_host(kernel, problem, a, b, c, false).map(|_| ())
    }

    fn gemm_timed(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<Option<f64>> {
        self.run_host(kernel, problem, a, b, c, true)
    }
}

impl WgpuBackend {
    /// The host-slice GEMM: upload, dispatch, read back the valid part of C. With `timed`, and
    /// where the adapter offers timestamp queries, also returns the kernel's device time.
    fn run_host(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        timed: bool,
    ) -> Result<Option<f64>> {
        let spec = self.kernel(kernel)?;
        let extents = problem.check_lengths(a.len(), b.len(), c.len())?;
        check_gpu_limits(&self.info, &self.capabilities, &spec, problem, &extents)?;
        if problem.is_empty() {
            return Ok(None);
        }
        let pipeline = self.pipeline(&spec, problem.trans_a, problem.trans_b)?;

        let mut staging = self.lock_staging();
        let input = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let a_buffer = self.reuse(&mut staging.a, padded_bytes(extents.a), input, "A")?;
        let b_buffer = self.reuse(&mut staging.b, padded_bytes(extents.b), input, "B")?;
        let c_buffer = self.reuse(
            &mut staging.c,
            padded_bytes(extents.c),
            input | wgpu::BufferUsages::COPY_SRC,
            "C",
        )?;
        let write = |buffer: &wgpu::Buffer, data: &[f32]| {
            if !data.is_empty() {
                self.queue
                    .write_buffer(buffer, 0, bytemuck::cast_slice(data));
            }
        };
        write(&a_buffer, &a[..extents.a]);
        write(&b_buffer, &b[..extents.b]);
        if problem.beta != 0.0 {
            write(&c_buffer, &c[..extents.c]);
        }
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.scoped("recording the GEMM", || {
            self.encode(
                &mut encoder,
                &pipeline,
                &spec,
                problem,
                &extents,
                [&a_buffer, &b_buffer, &c_buffer],
                &staging.params,
                staging.timestamps.as_ref().filter(|_| timed),
            )
        })?;
        let (n, ldc) = (problem.n, problem.ldc());
        let bytes = extents.c as u64 * 4;
        self.submit_and_read(
            &mut staging,
            encoder,
            &c_buffer,
            bytes,
            timeout_for(problem),
            |data| {
                // Only the n valid columns of each row: C's padding between rows stays as it was.
                for (row_out, row_in) in c[..extents.c].chunks_mut(ldc).zip(data.chunks(ldc)) {
                    row_out[..n].copy_from_slice(&row_in[..n]);
                }
            },
        )?;
        match staging.timestamps.as_ref().filter(|_| timed) {
            Some(ts) => self.read_kernel_seconds(ts).map(Some),
            None => Ok(None),
        }
    }
}
