//! The [`Backend`] trait — one device of one GPU API (or the CPU) — and the discovery of this host's
//! devices.
//!
//! `cpu` is the native CPU GEMM; `gpu` is the GPU path written once over a small
//! [`gpu::GpuRuntime`] trait, which `wgpu` and `ocl` implement; `resident` the matrices kept on a
//! device. A new backend is its folder plus one line in [`discover`].

pub mod cpu;
pub mod gpu;
#[cfg(feature = "ocl")]
pub mod ocl;
pub mod resident;
pub mod wgpu;

pub use gpu::{GpuBackend, GpuRuntime};
#[cfg(feature = "ocl")]
pub use ocl::OclBackend;
pub use resident::DeviceMatrix;
pub use wgpu::WgpuBackend;

use crate::device::{BackendKind, Capabilities, DeviceInfo, Unavailable};
use crate::error::Result;
use crate::problem::GemmProblem;
use resident::{check_on, host_storage, HostStorage};
use std::any::Any;
use std::sync::Arc;

/// One device of one API that can run GEMMs. Implementations are cheap to share across threads.
pub trait Backend: Send + Sync {
    /// Who this device is: backend, API, name, driver, and the key its tuning data is stored under.
    fn info(&self) -> &DeviceInfo;

    /// This device's limits and optional features, which decide the kernels it can run.
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

    /// Storage for a [`DeviceMatrix`] of `len` floats on this device, holding `data` (zeros when
    /// `None`). By default host memory, which the default [`Backend::gemm_resident`] runs
    /// [`Backend::gemm`] on: every backend offers the resident API, GPU backends in device memory.
    fn allocate_resident(
        &self,
        len: usize,
        data: Option<&[f32]>,
    ) -> Result<Box<dyn Any + Send + Sync>> {
        host_storage(&self.info().name, len, data)
    }

    /// Queues `C ← α·op(A)·op(B) + β·C` with `kernel` on matrices this device holds, without
    /// waiting (a matrix of another device is an `Error::Buffer`; C is untouched on error).
    fn gemm_resident(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &DeviceMatrix,
        b: &DeviceMatrix,
        c: &mut DeviceMatrix,
    ) -> Result<()> {
        check_on((self as *const Self).cast(), &self.info().name, &[a, b, c])?;
        let (a, b) = (a.storage::<HostStorage>()?, b.storage::<HostStorage>()?);
        let c = c.storage_mut::<HostStorage>()?;
        self.gemm(kernel, problem, &a.0, &b.0, &mut c.0)
    }

    /// What the device's compiler made of `kernel` (built without transposes), where its API
    /// hands it back: NVIDIA's OpenCL gives PTX, for `ptxas -v` to show registers and spills.
    /// None elsewhere.
    fn kernel_binary(&self, _kernel: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Waits for the work queued on `matrix` and copies its first `out.len()` floats into `out`.
    fn read_resident(&self, matrix: &DeviceMatrix, out: &mut [f32]) -> Result<()> {
        check_on((self as *const Self).cast(), &self.info().name, &[matrix])?;
        let host = matrix.storage::<HostStorage>()?;
        out.copy_from_slice(&host.0[..out.len()]);
        Ok(())
    }
}

/// The devices found on this host and the backends that are missing, with why.
pub struct Discovered {
    /// Every device opened, the CPU first.
    pub backends: Vec<Arc<dyn Backend>>,
    /// The wgpu devices again, typed, for the device-resident API.
    pub wgpu_devices: Vec<Arc<wgpu::WgpuBackend>>,
    /// Backends that were looked for and not found.
    pub unavailable: Vec<Unavailable>,
}

/// Opens the CPU backend and every device of the backends in `kinds` (the CPU is always opened: it
/// is the fallback of every GEMM). A backend that finds no device is listed in `unavailable`.
pub fn discover(kinds: &[BackendKind]) -> Discovered {
    let mut found = Discovered {
        backends: vec![Arc::new(cpu::CpuBackend::new())],
        wgpu_devices: Vec::new(),
        unavailable: Vec::new(),
    };
    for &kind in kinds {
        let opened: std::result::Result<Vec<Arc<dyn Backend>>, String> = match kind {
            BackendKind::Cpu => continue,
            BackendKind::Wgpu => wgpu::discover().map(|devices| {
                let devices: Vec<_> = devices.into_iter().map(Arc::new).collect();
                found.wgpu_devices.extend(devices.iter().cloned());
                devices.into_iter().map(|d| d as Arc<dyn Backend>).collect()
            }),
            BackendKind::Ocl => discover_ocl(),
        };
        match opened {
            Ok(devices) => found.backends.extend(devices),
            Err(reason) => found.unavailable.push(Unavailable {
                backend: kind,
                reason,
            }),
        }
    }
    found
}

#[cfg(feature = "ocl")]
fn discover_ocl() -> std::result::Result<Vec<Arc<dyn Backend>>, String> {
    Ok(ocl::discover()?
        .into_iter()
        .map(|d| Arc::new(d) as Arc<dyn Backend>)
        .collect())
}

#[cfg(not(feature = "ocl"))]
fn discover_ocl() -> std::result::Result<Vec<Arc<dyn Backend>>, String> {
    Err("built without the cargo feature `ocl`".to_string())
}
