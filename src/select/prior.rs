//! The prior: the documented order of candidates on a device nobody measured.

use super::candidates::{candidates, Choice, Target};
use crate::backend::cpu::NATIVE_KERNEL;
use crate::backend::Backend;
use crate::device::{BackendKind, DeviceType};
use crate::kernel::PRIOR_GPU_KERNELS;
use crate::problem::GemmProblem;
use std::sync::Arc;

/// Below this many flops the prior keeps a GEMM on the CPU: a GPU round trip costs more.
const PRIOR_GPU_MIN_FLOPS: f64 = 2.0 * 256.0 * 256.0 * 256.0;

/// Every candidate of `target` for `problem` in the prior's order: the CPU first for problems
/// under 2·256³ flops and on hosts whose only wgpu devices are CPUs themselves (lavapipe is 100×
/// slower than the CPU backend); else GPUs first, each with [`PRIOR_GPU_KERNELS`] in order, then its
/// other kernels.
pub fn prior_order(
    devices: &[Arc<dyn Backend>],
    target: &Target,
    problem: &GemmProblem,
) -> Vec<Choice> {
    let prefer_gpu = problem.flops() >= PRIOR_GPU_MIN_FLOPS;
    let device_rank = |backend: &dyn Backend| {
        let info = backend.info();
        match (info.device_type.is_gpu(), prefer_gpu) {
            (true, true) => 0,
            _ if info.backend == BackendKind::Cpu => 1,
            _ if info.device_type == DeviceType::Cpu => 3,
            _ => 2,
        }
    };
    let kernel_rank = |kernel: &str| {
        PRIOR_GPU_KERNELS
            .into_iter()
            .chain([NATIVE_KERNEL])
            .position(|k| k == kernel)
            .unwrap_or(PRIOR_GPU_KERNELS.len() + 1)
    };
    let mut choices = candidates(devices, target, problem);
    choices.sort_by_key(|c| (device_rank(c.backend.as_ref()), kernel_rank(&c.kernel)));
    choices
}
