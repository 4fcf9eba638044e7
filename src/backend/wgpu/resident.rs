//! Matrices kept in a wgpu device's memory: upload once, queue many GEMMs, read back once.

use super::{WgpuBackend, WgpuRuntime};
use crate::backend::gpu::{padded_bytes, GpuRuntime};
use crate::error::{Error, Result};
use crate::problem::GemmProblem;
use std::time::Duration;

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

    /// Whether the matrix holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How long a read-back of resident data may wait for the GEMMs queued before it.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

impl WgpuBackend {
    /// Copies `data` into a new buffer on this device.
    pub fn upload(&self, data: &[f32]) -> Result<DeviceMatrix> {
        let mut matrix = self.zeros(data.len())?;
        if !data.is_empty() {
            self.runtime().write(&mut matrix.buffer, data)?;
        }
        Ok(matrix)
    }

    /// A new zero-filled buffer of `len` floats on this device.
    pub fn zeros(&self, len: usize) -> Result<DeviceMatrix> {
        let runtime = self.runtime();
        let bytes = len
            .checked_mul(4)
            .map(|_| padded_bytes(len))
            .ok_or_else(|| Error::SizeOverflow {
                what: format!("a device buffer of {len} floats"),
            })?;
        let available = runtime.capabilities().max_buffer_bytes;
        if bytes > available {
            return Err(Error::DeviceLimit {
                device: runtime.info().name.clone(),
                limit: "max_buffer_size (bytes)",
                required: bytes,
                available,
            });
        }
        Ok(DeviceMatrix {
            buffer: runtime.allocate(bytes, "matrix")?,
            len,
            owner: runtime.id,
        })
    }

    fn check_owner(&self, matrices: [&DeviceMatrix; 3]) -> Result<()> {
        if matrices.iter().all(|m| m.owner == self.runtime().id) {
            Ok(())
        } else {
            Err(Error::Buffer(format!(
                "a matrix passed to '{}' lives on another device",
                self.runtime().info().name
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
        self.check_limits(&spec, problem, &extents)?;
        if problem.is_empty() {
            return Ok(());
        }
        let pipeline = self.program(&spec, problem.trans_a, problem.trans_b)?;
        let runtime: &WgpuRuntime = self.runtime();
        runtime.launch(
            &pipeline,
            &spec,
            problem,
            &extents,
            [&a.buffer, &b.buffer, &c.buffer],
            false,
        )?;
        Ok(())
    }

    /// Waits for queued work and copies `matrix` back to the host.
    pub fn download(&self, matrix: &DeviceMatrix) -> Result<Vec<f32>> {
        self.check_owner([matrix, matrix, matrix])?;
        let mut out = vec![0.0f32; matrix.len];
        if matrix.len > 0 {
            self.runtime()
                .read(&matrix.buffer, matrix.len, DOWNLOAD_TIMEOUT, &mut |data| {
                    out.copy_from_slice(&data[..matrix.len])
                })?;
        }
        Ok(out)
    }
}
