//! The [`Backend`] trait — one device of one GPU API (or the CPU) — and what it reports about itself.

pub mod cpu;
#[cfg(feature = "ocl")]
pub mod ocl;
pub mod wgpu;

use crate::error::{Error, Operand, Result};
use crate::kernel::KernelSpec;
use crate::problem::{Extents, GemmProblem};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The API family a backend runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Cpu,
    Wgpu,
    Ocl,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Ocl => "ocl",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "ocl" | "opencl" => Ok(BackendKind::Ocl),
            _ => Err(format!("unknown backend '{s}' (expected cpu, wgpu or ocl)")),
        }
    }
}

/// What kind of processor a device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    Cpu,
    IntegratedGpu,
    DiscreteGpu,
    VirtualGpu,
    Other,
}

impl DeviceType {
    pub fn is_gpu(self) -> bool {
        matches!(
            self,
            DeviceType::IntegratedGpu | DeviceType::DiscreteGpu | DeviceType::VirtualGpu
        )
    }
}

/// Who a device is: stable across runs, so measurements can be keyed by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub backend: BackendKind,
    /// The API underneath: `vulkan`, `metal`, `dx12`, `opencl`, `native`.
    pub api: String,
    pub name: String,
    pub driver: String,
    pub device_type: DeviceType,
    pub vendor_id: u32,
    pub device_id: u32,
    /// `backend/api/name/driver`: identifies measurements of this device in tuning data.
    pub key: String,
}

impl DeviceInfo {
    pub fn new(
        backend: BackendKind,
        api: &str,
        name: &str,
        driver: &str,
        device_type: DeviceType,
    ) -> Self {
        DeviceInfo {
            backend,
            api: api.to_string(),
            name: name.to_string(),
            driver: driver.to_string(),
            device_type,
            vendor_id: 0,
            device_id: 0,
            key: format!("{backend}/{api}/{name}/{driver}"),
        }
    }
}

/// Limits and optional features of a device: kernels that do not fit are not candidates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Largest single buffer, bytes.
    pub max_buffer_bytes: u64,
    /// Largest storage binding a kernel can see, bytes.
    pub max_binding_bytes: u64,
    /// Workgroup (local/shared) memory, bytes; 0 on the CPU.
    pub max_workgroup_memory_bytes: u32,
    /// Threads in one workgroup; 0 on the CPU.
    pub max_workgroup_invocations: u32,
    /// Workgroups along one dispatch dimension; 0 on the CPU.
    pub max_workgroups_per_dimension: u32,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamp_query: bool,
}

/// One device of one API that can run GEMMs. Implementations are cheap to share across threads.
pub trait Backend: Send + Sync {
    fn info(&self) -> &DeviceInfo;

    fn capabilities(&self) -> &Capabilities;

    /// Names of every kernel this backend offers.
    fn kernels(&self) -> Vec<String>;

    /// Ok when `kernel` exists here and this device can run `problem` with it; the reason otherwise.
    fn check(&self, kernel: &str, problem: &GemmProblem) -> Result<()>;

    /// The kernels that can run `problem` on this device.
    fn kernels_for(&self, problem: &GemmProblem) -> Vec<String> {
        self.kernels()
            .into_iter()
            .filter(|kernel| self.check(kernel, problem).is_ok())
            .collect()
    }

    /// `C ← α·op(A)·op(B) + β·C` with `kernel`, from and to host memory. C is untouched on error.
    fn gemm(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<()>;

    /// As [`Backend::gemm`], and returns the seconds the kernel itself ran, measured on the device
    /// (wgpu timestamp queries, OpenCL profiling events); `None` where the device cannot tell.
    fn gemm_timed(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<Option<f64>> {
        self.gemm(kernel, problem, a, b, c).map(|()| None)
    }
}

/// GPU buffers are sized in multiples of 16 bytes: vec4 kernels read whole quads.
const BUFFER_ALIGN: u64 = 16;

/// Kernels index with u32 arithmetic; sizes stay below 2³¹ so no index or loop counter can wrap.
const MAX_INDEX: u64 = i32::MAX as u64;

/// Bytes of device storage for `elements` floats, padded to 16 bytes and never empty.
pub(crate) fn padded_bytes(elements: usize) -> u64 {
    (elements as u64 * 4).div_ceil(BUFFER_ALIGN).max(1) * BUFFER_ALIGN
}

/// Checks that `problem` fits a GPU device's limits when run with the tiling `spec`.
pub(crate) fn check_gpu_limits(
    info: &DeviceInfo,
    caps: &Capabilities,
    spec: &KernelSpec,
    problem: &GemmProblem,
    extents: &Extents,
) -> Result<()> {
    let exceeds = |limit: &'static str, required: u64, available: u64| {
        if required > available {
            Err(Error::DeviceLimit {
                device: info.name.clone(),
                limit,
                required,
                available,
            })
        } else {
            Ok(())
        }
    };
    exceeds(
        "threads per workgroup",
        spec.invocations() as u64,
        caps.max_workgroup_invocations as u64,
    )?;
    exceeds(
        "workgroup memory (bytes)",
        spec.workgroup_memory_bytes() as u64,
        caps.max_workgroup_memory_bytes as u64,
    )?;
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
        exceeds(limit, bytes, caps.max_binding_bytes)?;
        exceeds("max_buffer_size (bytes)", bytes, caps.max_buffer_bytes)?;
        exceeds("32-bit kernel index (elements)", elements as u64, MAX_INDEX)?;
    }
    let largest = [
        problem.m,
        problem.n,
        problem.k,
        problem.lda(),
        problem.ldb(),
        problem.ldc(),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    exceeds("32-bit kernel index (size)", largest as u64, MAX_INDEX)?;
    let (groups_x, groups_y) = spec.dispatch(problem.m, problem.n);
    exceeds(
        "workgroups per dispatch dimension",
        groups_x.max(groups_y),
        caps.max_workgroups_per_dimension as u64,
    )
}
