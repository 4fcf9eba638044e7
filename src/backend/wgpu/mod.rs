//! The wgpu backend: the catalogue's WGSL kernels on Vulkan, Metal or DX12 — and on Mesa's lavapipe
//! where a host has no GPU.
//!
//! One [`WgpuBackend`] per adapter, opened with the adapter's own limits; [`WgpuRuntime`] is what
//! wgpu contributes to the shared GPU path ([`crate::backend::gpu`]), resident matrices included.
//! Shader modules are created without wgpu's runtime bounds checks (2.5–50× on NVIDIA, DESIGN.md):
//! every kernel guards its own accesses, and the odd-shape tests prove those guards.

use super::gpu::{copy_chunk, padded_bytes, GpuBackend, GpuRuntime, PARALLEL_COPY_ELEMENTS};
use crate::device::{BackendKind, Capabilities, DeviceInfo, DeviceType};
use crate::error::{Error, Result};
use crate::kernel::{Dispatch, KernelSpec, Params, Specialisation};
use crate::problem::Extents;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One wgpu adapter, opened as a device.
pub type WgpuBackend = GpuBackend<WgpuRuntime>;

/// How long a finished mapping may take to reach its callback through another thread's poll.
const MAPPING_GRACE: Duration = Duration::from_secs(10);

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
        match WgpuRuntime::open(adapter) {
            Ok(runtime) => opened.push(GpuBackend::new(runtime)),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if opened.is_empty() {
        Err(failures.join("; "))
    } else {
        Ok(opened)
    }
}

/// What wgpu contributes to the shared GPU path: one opened adapter, its layouts, the uniform
/// buffer, the read-back buffer and the timestamp queries.
pub struct WgpuRuntime {
    info: DeviceInfo,
    capabilities: Capabilities,
    device: wgpu::Device,
    queue: wgpu::Queue,
    /// Bindings 0–3: A, B, C and the uniform.
    bind_group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    /// As above, and binding 4: a stream-K member's partial tiles.
    stream_k_bind_group_layout: wgpu::BindGroupLayout,
    stream_k_pipeline_layout: wgpu::PipelineLayout,
    /// The uniform buffer of `Params` and the value last written to it; locked from its write to
    /// the submission that reads it.
    params: Mutex<(wgpu::Buffer, Option<Params>)>,
    /// Mappable copy of the last buffer read back, reused and grown on demand.
    readback: Mutex<Option<wgpu::Buffer>>,
    /// Host-visible buffers that stage uploads, kept mapped between calls ([`UPLOAD_BUFFERS`]).
    uploads: Mutex<Vec<Upload>>,
    /// Present where the adapter offers timestamp queries.
    timestamps: Option<Timestamps>,
    /// Why the device was lost, once wgpu has said so (its device-lost callback).
    lost: Arc<Mutex<Option<String>>>,
}

/// Upload staging buffers kept: one per operand a host-slice call writes (A, B, C).
const UPLOAD_BUFFERS: usize = 3;

/// A host-visible buffer that stages a large upload. After its copy to the device is submitted it
/// is mapped again at once, so the next call writes into mapped memory instead of having
/// `Queue::write_buffer` allocate and map fresh staging memory (what held copies to ~4 GB/s: 4096³
/// end to end on the H100 went from 2.8 to 11.1 TFLOPS).
struct Upload {
    buffer: wgpu::Buffer,
    /// Set by the mapping's callback: the buffer may be written.
    mapped: Arc<AtomicBool>,
}

/// Writes `src` into mapped memory, split over threads as [`copy_chunk`] says.
fn write_parallel(mut dst: wgpu::WriteOnly<'_, [u8]>, src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "a mapped range of the source's size");
    let chunk = copy_chunk(src.len() / 4) * 4;
    if chunk >= src.len() {
        dst.copy_from_slice(src);
        return;
    }
    /// The start of one thread's part of the mapping.
    struct Part(std::ptr::NonNull<u8>);
    // SAFETY: the parts are disjoint ranges of one mapping, which outlives the scoped threads.
    unsafe impl Send for Part {}
    let start = dst.as_raw_element_ptr();
    std::thread::scope(|scope| {
        for (index, from) in src.chunks(chunk).enumerate() {
            // SAFETY: `index * chunk + from.len() <= src.len() == dst.len()`.
            let part = Part(unsafe { start.add(index * chunk) });
            scope.spawn(move || {
                let part = part;
                // SAFETY: `from.len()` bytes from `part` lie inside the mapping and no other
                // thread writes them; `from` is host memory, so the two cannot overlap.
                unsafe { std::ptr::copy_nonoverlapping(from.as_ptr(), part.0.as_ptr(), from.len()) }
            });
        }
    });
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

fn layout_entry(binding: u32, ty: wgpu::BufferBindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
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

impl WgpuRuntime {
    /// Opens `adapter` with its own limits (not wgpu's conservative defaults) and timestamp
    /// queries where offered.
    fn open(adapter: wgpu::Adapter) -> Result<Self> {
        let adapter_info = adapter.get_info();
        let features = adapter.features();
        let limits = adapter.limits();
        let name = adapter_info.name.clone();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tilegemm"),
            required_features: features
                & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::PIPELINE_CACHE),
            required_limits: limits.clone(),
            memory_hints: memory_hints(),
            ..Default::default()
        }))
        .map_err(|e| Error::device(&name, "cannot open the device", e))?;
        // Errors of calls outside an error scope are logged, never a panic.
        let log_name = name.clone();
        device.on_uncaptured_error(Arc::new(move |e| log::error!("{log_name}: {e}")));
        let lost = Arc::new(Mutex::new(None));
        let lost_reason = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = format!("{reason:?}: {message}");
            *lost_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        });

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

        let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
        let entries = [
            layout_entry(0, storage(true)),
            layout_entry(1, storage(true)),
            layout_entry(2, storage(false)),
            layout_entry(3, wgpu::BufferBindingType::Uniform),
            layout_entry(4, storage(false)),
        ];
        let layouts = |label, entries| {
            let bind_group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries,
            });
            let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(&bind_group)],
                immediate_size: 0,
            });
            (bind_group, pipeline)
        };
        let (bind_group_layout, pipeline_layout) = layouts("gemm", &entries[..4]);
        let (stream_k_bind_group_layout, stream_k_pipeline_layout) =
            layouts("gemm stream-K", &entries);
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let timestamps = capabilities
            .timestamp_query
            .then(|| Timestamps::new(&device, &queue));
        Ok(WgpuRuntime {
            info,
            capabilities,
            device,
            queue,
            bind_group_layout,
            pipeline_layout,
            stream_k_bind_group_layout,
            stream_k_pipeline_layout,
            params: Mutex::new((params, None)),
            readback: Mutex::new(None),
            uploads: Mutex::new(Vec::new()),
            timestamps,
            lost,
        })
    }

    /// The error of `what` failing with `error`: `DeviceLost` once wgpu has reported the device
    /// lost (every later call would fail the same way), else `Device`.
    fn failure(&self, what: &str, error: impl std::error::Error + Send + Sync + 'static) -> Error {
        match self.check_lost(what) {
            Err(Error::DeviceLost {
                device, message, ..
            }) => Error::DeviceLost {
                device,
                message,
                source: Some(Box::new(error)),
            },
            _ => Error::device(&self.info.name, what, error),
        }
    }

    /// `Err(DeviceLost)` once wgpu has reported the device lost: checked before work is queued.
    fn check_lost(&self, what: &str) -> Result<()> {
        match self.lost.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(why) => Err(Error::DeviceLost {
                device: self.info.name.clone(),
                message: format!("{what}: {why}"),
                source: None,
            }),
            None => Ok(()),
        }
    }

    /// Runs `f` with wgpu's validation and out-of-memory errors captured into typed errors:
    /// `OutOfMemory` (the problem's fault) apart from `Device` (anything else).
    fn scoped<T>(&self, what: &str, bytes: u64, f: impl FnOnce() -> T) -> Result<T> {
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let invalid = pollster::block_on(validation.pop());
        let oom = pollster::block_on(out_of_memory.pop());
        if let Some(e) = invalid {
            return Err(self.failure(what, e));
        }
        if let Some(e) = oom {
            return Err(Error::OutOfMemory {
                device: self.info.name.clone(),
                bytes,
                what: what.to_string(),
                source: Some(Box::new(e)),
            });
        }
        Ok(value)
    }

    /// A buffer of `bytes` with `usage`; an allocation the device refuses is `OutOfMemory`.
    fn create_buffer(
        &self,
        bytes: u64,
        usage: wgpu::BufferUsages,
        what: &str,
    ) -> Result<wgpu::Buffer> {
        self.scoped(
            &format!("allocating {bytes} bytes for {what}"),
            bytes,
            || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(what),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            },
        )
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
                other => self.failure("waiting for the device", other),
            })?;
        // The callback runs in whichever thread's poll sees the work done: when another thread's
        // poll took it, it may still be on its way after ours returned.
        let deadline = std::time::Instant::now() + MAPPING_GRACE;
        loop {
            match receiver.recv_timeout(Duration::from_millis(1)) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(self.failure("reading back", e)),
                Err(_) if std::time::Instant::now() < deadline => {
                    let _ = self.device.poll(wgpu::PollType::Poll);
                }
                Err(_) => {
                    self.check_lost("reading back")?;
                    return Err(Error::Device {
                        device: self.info.name.clone(),
                        message: "reading back: mapping never completed".into(),
                        source: None,
                    });
                }
            }
        }
    }

    /// An upload buffer of at least `bytes`, mapped for writing, taken out of `uploads`: the
    /// smallest that fits (waiting for its mapping if it is still on its way), else a new one
    /// mapped at creation, the smallest kept one dropped when [`UPLOAD_BUFFERS`] are kept.
    fn take_upload(&self, uploads: &mut Vec<Upload>, bytes: u64) -> Result<Upload> {
        let fitting = (0..uploads.len())
            .filter(|&i| uploads[i].buffer.size() >= bytes)
            .min_by_key(|&i| uploads[i].buffer.size());
        if let Some(i) = fitting {
            let upload = uploads.swap_remove(i);
            let deadline = std::time::Instant::now() + MAPPING_GRACE;
            while !upload.mapped.load(Ordering::Acquire) {
                if std::time::Instant::now() >= deadline {
                    // Never mapped again (a lost device): drop it, and make a new one below.
                    break;
                }
                let _ = self.device.poll(wgpu::PollType::Wait {
                    submission_index: None,
                    timeout: Some(Duration::from_millis(10)),
                });
            }
            if upload.mapped.swap(false, Ordering::AcqRel) {
                return Ok(upload);
            }
        }
        if uploads.len() >= UPLOAD_BUFFERS {
            let smallest = (0..uploads.len())
                .min_by_key(|&i| uploads[i].buffer.size())
                .expect("not empty");
            uploads.swap_remove(smallest);
        }
        let size = padded_bytes(bytes as usize / 4);
        let buffer = self.scoped(
            &format!("allocating {size} bytes to stage uploads"),
            size,
            || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("upload"),
                    size,
                    usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: true,
                })
            },
        )?;
        Ok(Upload {
            buffer,
            mapped: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Seconds between the two timestamps of the last timed pass.
    fn read_kernel_seconds(&self, ts: &Timestamps) -> Result<f64> {
        self.map_and_wait(&ts.readback, 16, Duration::from_secs(10))?;
        let ticks = {
            let view = ts
                .readback
                .get_mapped_range(0..16)
                .map_err(|e| self.failure("reading timestamps", e))?;
            let stamps: &[u64] = bytemuck::cast_slice(&view);
            stamps[1].saturating_sub(stamps[0])
        };
        ts.readback.unmap();
        Ok(ticks as f64 * ts.period * 1e-9)
    }

    /// Compiles `spec` for `specialisation`, into `cache` where given.
    fn build_cached(
        &self,
        spec: &KernelSpec,
        specialisation: Specialisation,
        cache: Option<&wgpu::PipelineCache>,
    ) -> Result<wgpu::ComputePipeline> {
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
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        let stream_k = spec.stream_k > 0;
        let constants = [
            ("TRANS_A", flag(specialisation.trans_a.is_transposed())),
            ("TRANS_B", flag(specialisation.trans_b.is_transposed())),
            ("BATCHED", flag(specialisation.batched)),
            ("WHOLE_TILES", flag(specialisation.whole_tiles)),
            ("STREAM_K_FIXUP", flag(specialisation.fixup)),
        ];
        // Only stream-K members declare STREAM_K_FIXUP.
        let constants = &constants[..if stream_k { 5 } else { 4 }];
        let layout = if stream_k {
            &self.stream_k_pipeline_layout
        } else {
            &self.pipeline_layout
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&spec.name),
                layout: Some(layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    // Every kernel writes its workgroup tiles before reading them.
                    zero_initialize_workgroup_memory: false,
                },
                cache,
            });
        match pollster::block_on(validation.pop()) {
            Some(e) => Err(Error::KernelBuild {
                kernel: spec.name.clone(),
                device: self.info.name.clone(),
                log: e.to_string(),
            }),
            None => Ok(pipeline),
        }
    }
}

impl GpuRuntime for WgpuRuntime {
    type Buffer = wgpu::Buffer;
    type Program = wgpu::ComputePipeline;
    /// Whether the launch wrote timestamps.
    type Launch = bool;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn source<'s>(&self, spec: &'s KernelSpec) -> Option<&'s str> {
        Some(&spec.wgsl)
    }

    fn build(
        &self,
        spec: &KernelSpec,
        specialisation: Specialisation,
    ) -> Result<wgpu::ComputePipeline> {
        self.build_cached(spec, specialisation, None)
    }

    /// The driver's pipeline cache after building `spec` alone into a fresh one (Vulkan: what the
    /// driver compiled, e.g. NVIDIA's machine code), where the device offers pipeline caches.
    fn program_binary(&self, spec: &KernelSpec) -> Result<Option<Vec<u8>>> {
        if !self
            .device
            .features()
            .contains(wgpu::Features::PIPELINE_CACHE)
        {
            return Ok(None);
        }
        // SAFETY: no data is passed in, so there is nothing for the driver to trust.
        let cache = unsafe {
            self.device
                .create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                    label: Some(&spec.name),
                    data: None,
                    fallback: true,
                })
        };
        self.build_cached(spec, Specialisation::default(), Some(&cache))?;
        Ok(cache.get_data())
    }

    fn allocate(&self, bytes: u64, what: &str) -> Result<wgpu::Buffer> {
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        self.create_buffer(bytes, usage, what)
    }

    fn capacity(&self, buffer: &wgpu::Buffer) -> u64 {
        buffer.size()
    }

    fn write(&self, buffer: &mut wgpu::Buffer, data: &[f32]) -> Result<()> {
        self.check_lost("uploading")?;
        if data.len() < PARALLEL_COPY_ELEMENTS {
            // Small: wgpu's own staging, copied in with the GEMM's submission, costs less than a
            // submission of its own (1024³ end to end: 1.51 ms this way, 1.72 ms staged).
            self.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(data));
            return Ok(());
        }
        let bytes = data.len() as u64 * 4;
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let upload = self.take_upload(&mut uploads, bytes)?;
        {
            let mut view = upload
                .buffer
                .get_mapped_range_mut(0..bytes)
                .map_err(|e| self.failure("writing into the upload buffer", e))?;
            write_parallel(view.slice(..), bytemuck::cast_slice(data));
        }
        upload.buffer.unmap();
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&upload.buffer, 0, buffer, 0, bytes);
        self.scoped("submitting an upload", 0, || {
            self.queue.submit([encoder.finish()])
        })?;
        // Mapped again once the copy has run: ready for the next call.
        let mapped = upload.mapped.clone();
        upload
            .buffer
            .map_async(wgpu::MapMode::Write, .., move |result| {
                mapped.store(result.is_ok(), Ordering::Release);
            });
        uploads.push(upload);
        Ok(())
    }

    fn launch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        spec: &KernelSpec,
        dispatch: &Dispatch,
        extents: &Extents,
        buffers: &[&wgpu::Buffer],
        timed: bool,
    ) -> Result<bool> {
        self.check_lost("launching")?;
        let timestamps = self.timestamps.as_ref().filter(|_| timed);
        let mut guard = self.params.lock().unwrap_or_else(|e| e.into_inner());
        let (params, written) = &mut *guard;
        // A chain of GEMMs of one shape reuses the uniform as it is: `write_buffer` stages every
        // write through a fresh allocation.
        let wanted = dispatch.params;
        if *written != Some(wanted) {
            self.queue
                .write_buffer(params, 0, bytemuck::bytes_of(&wanted));
            *written = Some(wanted);
        }
        let (layout, partials) = match *buffers {
            [_, _, _] => (&self.bind_group_layout, None),
            [_, _, _, partials] => (&self.stream_k_bind_group_layout, Some(partials)),
            _ => unreachable!("launches bind A, B, C and at most a workspace"),
        };
        let [a, b, c] = [0, 1, 2].map(|i| buffers[i]);
        let encoder = self.scoped("recording the GEMM", 0, || {
            // Binding 4 only where the layout has it (a stream-K member's partial tiles).
            let workspace = partials.unwrap_or(c);
            let entries = [
                bind(0, a, padded_bytes(extents.a)),
                bind(1, b, padded_bytes(extents.b)),
                bind(2, c, padded_bytes(extents.c)),
                bind(3, params, std::mem::size_of::<Params>() as u64),
                bind(4, workspace, workspace.size()),
            ];
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("gemm"),
                layout,
                entries: &entries[..if partials.is_some() { 5 } else { 4 }],
            });
            let mut encoder = self.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&spec.name),
                    timestamp_writes: timestamps.map(Timestamps::pass_writes),
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                let [x, y, z] = dispatch.groups;
                pass.dispatch_workgroups(x, y, z);
            }
            if let Some(ts) = timestamps {
                encoder.resolve_query_set(&ts.queries, 0..2, &ts.resolve, 0);
                encoder.copy_buffer_to_buffer(&ts.resolve, 0, &ts.readback, 0, 16);
            }
            encoder
        })?;
        self.scoped("submitting the GEMM", 0, || {
            self.queue.submit([encoder.finish()])
        })?;
        Ok(timestamps.is_some())
    }

    fn read(
        &self,
        buffer: &wgpu::Buffer,
        elements: usize,
        timeout: Duration,
        sink: &mut dyn FnMut(&[f32]),
    ) -> Result<()> {
        let bytes = elements as u64 * 4;
        let mut slot = self.readback.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|b| b.size() < bytes) {
            *slot = None;
            let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
            *slot = Some(self.create_buffer(bytes, usage, "readback")?);
        }
        let readback = slot.as_ref().expect("allocated above");
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, readback, 0, bytes);
        self.scoped("submitting the read-back", 0, || {
            self.queue.submit([encoder.finish()])
        })?;
        if let Err(e) = self.map_and_wait(readback, bytes, timeout) {
            // A mapping still pending would fail every later read: start afresh next time.
            *slot = None;
            return Err(e);
        }
        {
            let view = readback
                .get_mapped_range(0..bytes)
                .map_err(|e| self.failure("reading the result back", e))?;
            sink(bytemuck::cast_slice(&view));
        }
        readback.unmap();
        Ok(())
    }

    fn kernel_seconds(&self, timed: bool) -> Result<Option<f64>> {
        match self.timestamps.as_ref().filter(|_| timed) {
            Some(ts) => self.read_kernel_seconds(ts).map(Some),
            None => Ok(None),
        }
    }
}
