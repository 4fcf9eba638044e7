//! What a GEMM may run on: the caller's [`Target`], the [`Choice`]s that pass the devices' capability
//! checks, and why there are none when there are none.

use crate::backend::Backend;
use crate::device::BackendKind;
use crate::error::Error;
use crate::problem::GemmProblem;
use std::sync::Arc;

/// What to run a GEMM on; every field left `None` is chosen by the selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Target {
    /// Only devices of this backend.
    pub backend: Option<BackendKind>,
    /// Case-insensitive substring of the device name.
    pub device: Option<String>,
    /// Exactly this kernel.
    pub kernel: Option<String>,
}

impl Target {
    /// Whether `backend` is allowed by this target (the kernel is not considered).
    pub fn admits(&self, backend: &dyn Backend) -> bool {
        let info = backend.info();
        self.backend.is_none_or(|kind| kind == info.backend)
            && self
                .device
                .as_ref()
                .is_none_or(|d| info.name.to_lowercase().contains(&d.to_lowercase()))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(b) = self.backend {
            parts.push(format!("backend '{b}'"));
        }
        if let Some(d) = &self.device {
            parts.push(format!("device '{d}'"));
        }
        if let Some(k) = &self.kernel {
            parts.push(format!("kernel '{k}'"));
        }
        if parts.is_empty() {
            f.write_str("any device")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A (backend, kernel) pair: what a GEMM runs on.
#[derive(Clone)]
pub struct Choice {
    /// The device.
    pub backend: Arc<dyn Backend>,
    /// The kernel's name on that device.
    pub kernel: String,
}

impl std::fmt::Debug for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = self.backend.info();
        write!(f, "{}/{}/{}", info.backend, info.name, self.kernel)
    }
}

/// Every (backend, kernel) pair of `devices` that `target` admits and that can run `problem`.
pub fn candidates(
    devices: &[Arc<dyn Backend>],
    target: &Target,
    problem: &GemmProblem,
) -> Vec<Choice> {
    let mut out = Vec::new();
    for backend in devices.iter().filter(|b| target.admits(b.as_ref())) {
        for kernel in backend.kernels() {
            let wanted = target.kernel.as_ref().is_none_or(|k| *k == kernel);
            if wanted && backend.check(&kernel, problem).is_ok() {
                out.push(Choice {
                    backend: backend.clone(),
                    kernel,
                });
            }
        }
    }
    out
}

/// Why `target` has no candidate for `problem`: no matching device, or the one check that refused
/// it (a limit, an unknown kernel).
pub fn why_no_candidate(
    devices: &[Arc<dyn Backend>],
    target: &Target,
    problem: &GemmProblem,
) -> Error {
    let admitted: Vec<&Arc<dyn Backend>> = devices
        .iter()
        .filter(|b| target.admits(b.as_ref()))
        .collect();
    if admitted.is_empty() {
        return Error::NotFound(format!("no device matches {target}"));
    }
    if let Some(kernel) = &target.kernel {
        if !devices.iter().any(|b| b.kernels().contains(kernel)) {
            let mut known: Vec<String> = devices.iter().flat_map(|b| b.kernels()).collect();
            known.sort();
            known.dedup();
            return Error::NotFound(format!(
                "unknown kernel '{kernel}' (known here: {})",
                known.join(", ")
            ));
        }
    }
    let mut reasons: Vec<Error> = admitted
        .iter()
        .flat_map(|backend| {
            let kernels = match &target.kernel {
                Some(kernel) => vec![kernel.clone()],
                None => backend.kernels(),
            };
            kernels
                .into_iter()
                .filter_map(|kernel| backend.check(&kernel, problem).err())
                .collect::<Vec<_>>()
        })
        .collect();
    if reasons.len() == 1 || (target.kernel.is_none() && !reasons.is_empty()) {
        return reasons.remove(0);
    }
    Error::NotFound(format!("no device matching {target} can run it"))
}
