//! The guard: validates each (device, kernel, transposes) on a small probe before its first use,
//! keeps the set of pairs disabled after a kernel failure, and the devices lost as a whole.
//!
//! Pipelines differ by transposes, so both sets are kept per transpose pair: a kernel that fails to
//! build transposed may still run untransposed. The probe's inputs come from a seed that the
//! failure carries ([`Error::Validation`]), so [`crate::verify::verify_seeded`] reproduces it.

use super::candidates::Choice;
use crate::error::{Error, Result};
use crate::problem::{GemmProblem, Shape, Transpose};
use crate::verify::{verify_checked, VerifyCase};
use std::collections::HashMap;
use std::sync::Mutex;

/// The validation probe's shape: odd sizes that leave partial tiles and quads on every side.
pub const PROBE_SHAPE: Shape = Shape {
    m: 35,
    n: 67,
    k: 19,
};

/// (device key, kernel) → something known per transpose pair, looked up without allocating.
type PerKernel<V> = HashMap<String, HashMap<String, [Option<V>; 4]>>;

/// One slot per (op(A), op(B)) pair.
fn transpose_slot(problem: &GemmProblem) -> usize {
    2 * problem.trans_a.is_transposed() as usize + problem.trans_b.is_transposed() as usize
}

fn slot<'a, V>(table: &'a PerKernel<V>, choice: &Choice, problem: &GemmProblem) -> Option<&'a V> {
    table.get(&choice.backend.info().key)?.get(&choice.kernel)?[transpose_slot(problem)].as_ref()
}

fn set<V>(table: &mut PerKernel<V>, choice: &Choice, problem: &GemmProblem, value: V) {
    let slots = table
        .entry(choice.backend.info().key.clone())
        .or_default()
        .entry(choice.kernel.clone())
        .or_default();
    slots[transpose_slot(problem)].get_or_insert(value);
}

/// A kernel disabled after a failure: where, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Disabled {
    /// The device key.
    pub device_key: String,
    /// The kernel.
    pub kernel: String,
    /// op(A) and op(B) of the pipeline that failed.
    pub transposes: (Transpose, Transpose),
    /// The first failure.
    pub reason: String,
}

/// Validation probe, disabled set and lost devices of one engine.
pub struct Guard {
    validate: bool,
    disabled: Mutex<PerKernel<String>>,
    validated: Mutex<PerKernel<()>>,
    /// Device key → why it was lost.
    lost: Mutex<HashMap<String, String>>,
}

impl Guard {
    /// A guard that probes before first use when `validate` is true.
    pub fn new(validate: bool) -> Self {
        Guard {
            validate,
            disabled: Mutex::new(HashMap::new()),
            validated: Mutex::new(HashMap::new()),
            lost: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `choice` was disabled for `problem`'s transposes, or its device lost.
    pub fn is_disabled(&self, choice: &Choice, problem: &GemmProblem) -> bool {
        let lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        if lost.contains_key(&choice.backend.info().key) {
            return true;
        }
        drop(lost);
        let disabled = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        slot(&disabled, choice, problem).is_some()
    }

    /// Drops `choice`'s device for the rest of this process, keeping the first reason (warned once).
    pub fn lose_device(&self, choice: &Choice, error: &Error) {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        let info = choice.backend.info();
        if !lost.contains_key(&info.key) {
            log::warn!(
                "{} {} is lost and dropped for this process: {error}",
                info.backend,
                info.name
            );
            lost.insert(info.key.clone(), error.to_string());
        }
    }

    /// The devices lost, as (device key, first reason), sorted.
    pub fn lost_devices(&self) -> Vec<(String, String)> {
        let lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<(String, String)> = lost.clone().into_iter().collect();
        list.sort();
        list
    }

    /// Disables `choice` for `problem`'s transposes, keeping the first reason.
    pub fn disable(&self, choice: &Choice, problem: &GemmProblem, error: &Error) {
        log::warn!("{choice:?} failed and is disabled for this process: {error}");
        let mut disabled = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        set(&mut disabled, choice, problem, error.to_string());
    }

    /// Every disabled (device, kernel, transposes), sorted.
    pub fn disabled(&self) -> Vec<Disabled> {
        let disabled = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = Vec::new();
        for (key, kernels) in disabled.iter() {
            for (kernel, slots) in kernels {
                for (index, reason) in slots.iter().enumerate() {
                    if let Some(reason) = reason {
                        list.push(Disabled {
                            device_key: key.clone(),
                            kernel: kernel.clone(),
                            transposes: (
                                Transpose::from_bool(index & 2 != 0),
                                Transpose::from_bool(index & 1 != 0),
                            ),
                            reason: reason.clone(),
                        });
                    }
                }
            }
        }
        list.sort();
        list
    }

    /// Before a (device, kernel, transposes) first runs under a policy: the probe shape with the
    /// same transposes and the same kind of β, on inputs drawn from a fresh seed, against the f64
    /// reference. `Validation` (with the seed) on a wrong result, the kernel's own error if it
    /// fails to run.
    pub fn validate_once(&self, choice: &Choice, problem: &GemmProblem) -> Result<()> {
        if !self.validate {
            return Ok(());
        }
        let validated = self.validated.lock().unwrap_or_else(|e| e.into_inner());
        if slot(&validated, choice, problem).is_some() {
            return Ok(());
        }
        drop(validated);
        let (alpha, beta) = if problem.beta == 0.0 {
            (1.0, 0.0)
        } else {
            (0.5, 2.0)
        };
        let case = VerifyCase {
            shape: PROBE_SHAPE,
            trans_a: problem.trans_a,
            trans_b: problem.trans_b,
            alpha,
            beta,
            ld_pad: 0,
            batch: 1,
        };
        let seed = rand::random();
        let report = verify_checked(choice.backend.as_ref(), &choice.kernel, &case, seed)?;
        if !report.pass {
            return Err(Error::Validation {
                kernel: choice.kernel.clone(),
                device: choice.backend.info().name.clone(),
                reason: format!(
                    "probe {PROBE_SHAPE}: max_rel_error {:.2e} over the tolerance {:.0e}",
                    report.max_rel_error.unwrap_or(f64::NAN),
                    report.tolerance
                ),
                seed,
            });
        }
        let mut validated = self.validated.lock().unwrap_or_else(|e| e.into_inner());
        set(&mut validated, choice, problem, ());
        Ok(())
    }
}
