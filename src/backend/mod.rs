//! The [`Backend`] trait — one device of one GPU API (or the CPU) — and what it reports about itself.

pub mod cpu;
pub mod wgpu;

use crate::error::Result;
use crate::problem::GemmProblem;
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
}
