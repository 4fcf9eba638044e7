//! Matrices kept on a device: upload once, queue many GEMMs, read back once — on every backend.
//!
//! A [`DeviceMatrix`] belongs to one device and holds that device's storage behind a type-erased box:
//! a buffer in GPU memory on wgpu and OpenCL ([`super::gpu::GpuBackend`]), host memory on the CPU
//! backend and on any backend that keeps no memory of its own (the [`Backend`] trait's defaults), so
//! code written against it runs on every host. GEMMs on resident matrices are queued without
//! waiting; [`DeviceMatrix::download`] waits for them. The engine places them
//! ([`crate::Engine::gemm_resident`]).

use super::Backend;
use crate::error::{Error, Result};
use std::any::Any;
use std::sync::Arc;

/// A matrix (any array of f32) held by one device, for chains of GEMMs that skip the host.
pub struct DeviceMatrix {
    device: Arc<dyn Backend>,
    storage: Box<dyn Any + Send + Sync>,
    len: usize,
}

/// Resident storage in host memory: what the [`Backend`] trait's default methods keep.
pub(crate) struct HostStorage(pub(crate) Vec<f32>);

impl DeviceMatrix {
    /// Copies `data` into a new matrix on `device`.
    pub fn upload(device: &Arc<dyn Backend>, data: &[f32]) -> Result<Self> {
        Ok(DeviceMatrix {
            storage: device.allocate_resident(data.len(), Some(data))?,
            device: device.clone(),
            len: data.len(),
        })
    }

    /// A new matrix of `len` zeros on `device`.
    pub fn zeros(device: &Arc<dyn Backend>, len: usize) -> Result<Self> {
        Ok(DeviceMatrix {
            storage: device.allocate_resident(len, None)?,
            device: device.clone(),
            len,
        })
    }

    /// Waits for the GEMMs queued on this matrix's device and copies the matrix to the host.
    pub fn download(&self) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; self.len];
        self.device.read_resident(self, &mut out)?;
        Ok(out)
    }

    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the matrix holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device that holds it.
    pub fn device(&self) -> &Arc<dyn Backend> {
        &self.device
    }

    /// Whether `device` holds this matrix.
    pub fn is_on(&self, device: &dyn Backend) -> bool {
        self.is_at((device as *const dyn Backend).cast())
    }

    /// Whether the device at `address` holds this matrix.
    fn is_at(&self, address: *const ()) -> bool {
        Arc::as_ptr(&self.device).cast::<()>() == address
    }

    /// The device's storage, as its backend made it.
    pub fn storage<T: 'static>(&self) -> Result<&T> {
        self.storage.downcast_ref().ok_or_else(|| self.foreign())
    }

    /// As [`DeviceMatrix::storage`], to write.
    pub fn storage_mut<T: 'static>(&mut self) -> Result<&mut T> {
        if !self.storage.is::<T>() {
            return Err(self.foreign());
        }
        Ok(self.storage.downcast_mut().expect("checked above"))
    }

    fn foreign(&self) -> Error {
        Error::Buffer(format!(
            "a matrix of '{}' is not this backend's storage",
            self.device.info().name
        ))
    }
}

/// Ok when the device at `address` (named `name`) holds every one of `matrices`; a typed error
/// naming the first stranger otherwise.
pub(crate) fn check_on(address: *const (), name: &str, matrices: &[&DeviceMatrix]) -> Result<()> {
    match matrices.iter().find(|m| !m.is_at(address)) {
        None => Ok(()),
        Some(stranger) => Err(Error::Buffer(format!(
            "a matrix of '{}' passed to '{name}': resident matrices must be on the device they are used on",
            stranger.device.info().name,
        ))),
    }
}

/// `len` floats of host memory, `data` or zeros; an allocation the host refuses is `OutOfMemory`.
pub(crate) fn host_storage(
    device: &str,
    len: usize,
    data: Option<&[f32]>,
) -> Result<Box<dyn Any + Send + Sync>> {
    let mut host = Vec::new();
    host.try_reserve_exact(len)
        .map_err(|e| Error::OutOfMemory {
            device: device.to_string(),
            bytes: len as u64 * 4,
            what: "a resident matrix in host memory".into(),
            source: Some(Box::new(e)),
        })?;
    match data {
        Some(data) => host.extend_from_slice(data),
        None => host.resize(len, 0.0),
    }
    Ok(Box::new(HostStorage(host)))
}
