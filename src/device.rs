//! Who a device is and what it can do: the backend kind, the device's identity (the key its
//! measurements are filed under) and its capabilities. Shared by the backends, the selector and the
//! engine.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The API family a backend runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The host CPU (the `gemm` crate): always present.
    Cpu,
    /// WGSL through wgpu: Vulkan, Metal, DX12 (lavapipe on CPU-only hosts).
    Wgpu,
    /// OpenCL C (cargo feature `ocl`).
    Ocl,
}

impl BackendKind {
    /// Every backend kind, in the order the engine opens them.
    pub const ALL: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Ocl];

    /// The name used in device keys, files and the CLI.
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
    /// A CPU (the native backend, PoCL, lavapipe).
    Cpu,
    /// A GPU sharing memory with the host.
    IntegratedGpu,
    /// A GPU with its own memory.
    DiscreteGpu,
    /// A virtualised GPU.
    VirtualGpu,
    /// Anything else an API reports.
    Other,
}

impl DeviceType {
    /// Whether this is a GPU of any kind.
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
    /// The backend the device is opened through.
    pub backend: BackendKind,
    /// The API underneath: `vulkan`, `metal`, `dx12`, `opencl`, `native`.
    pub api: String,
    /// The device's name, as its API reports it.
    pub name: String,
    /// Driver name and version.
    pub driver: String,
    /// CPU or GPU, integrated or discrete.
    pub device_type: DeviceType,
    /// PCI vendor id where the API reports one (0 otherwise).
    pub vendor_id: u32,
    /// PCI device id where the API reports one (0 otherwise).
    pub device_id: u32,
    /// `backend/api/name/driver`: identifies measurements of this device in tuning data.
    pub key: String,
}

impl DeviceInfo {
    /// A device's identity; its key is `backend/api/name/driver`.
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
    /// Whether kernels may use f16 arithmetic.
    pub shader_f16: bool,
    /// Whether kernels may use subgroup (warp) operations.
    pub subgroups: bool,
    /// Whether the device can time a kernel on its own clock.
    pub timestamp_query: bool,
}

/// A backend that was looked for and not found, with the reason.
#[derive(Clone, Debug, Serialize)]
pub struct Unavailable {
    /// The backend looked for.
    pub backend: BackendKind,
    /// Why it is missing, in words a user can act on.
    pub reason: String,
}
