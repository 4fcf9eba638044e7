//! Policies: how the engine turns the selector's ranking into the order it tries candidates in.
//!
//! Every order ends in the rest of the ranking, so a failing kernel always has somewhere to fall
//! back to (rollback), except where the policy itself names the whole set (baseline).

use super::candidates::Choice;
use crate::backend::cpu::NATIVE_KERNEL;
use crate::kernel::BASELINE_KERNEL;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// How the engine chooses a (backend, kernel) when the caller does not name one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// The selector's ranking: measured, then learned, then the prior.
    #[default]
    Adaptive,
    /// tile16 only (best-ranked device first), then the CPU backend as the last resort.
    Baseline,
    /// This kernel wherever it can run (best-ranked device first), then the adaptive ranking.
    Fixed(String),
    /// Alternates two policies call by call and records each arm's GFLOPS per shape.
    Ab(Box<Policy>, Box<Policy>),
}

impl Policy {
    /// The candidates of `ranked` (best first) in the order this policy tries them. For `Ab`, the
    /// engine picks an arm first and orders by that arm.
    pub fn order<'a>(&self, ranked: &'a [Choice]) -> Vec<&'a Choice> {
        match self {
            Policy::Adaptive | Policy::Ab(..) => ranked.iter().collect(),
            Policy::Baseline => ranked
                .iter()
                .filter(|c| c.kernel == BASELINE_KERNEL)
                .chain(ranked.iter().filter(|c| c.kernel == NATIVE_KERNEL))
                .collect(),
            Policy::Fixed(kernel) => ranked
                .iter()
                .filter(|c| c.kernel == *kernel)
                .chain(ranked.iter().filter(|c| c.kernel != *kernel))
                .collect(),
        }
    }

    /// The kernel this policy insists on, if any (to check that some device offers it).
    pub fn named_kernel(&self) -> Option<&str> {
        match self {
            Policy::Fixed(kernel) => Some(kernel),
            _ => None,
        }
    }
}

/// The policy an engine places calls by, changeable while calls run, and the A/B call counter.
#[derive(Debug, Default)]
pub struct ActivePolicy {
    policy: RwLock<Arc<Policy>>,
    /// Calls placed by an A/B policy so far: even ones go to arm A, odd ones to arm B.
    ab_calls: AtomicU64,
}

impl ActivePolicy {
    /// Starts with `policy`.
    pub fn new(policy: Policy) -> Self {
        ActivePolicy {
            policy: RwLock::new(Arc::new(policy)),
            ab_calls: AtomicU64::new(0),
        }
    }

    /// The policy in force.
    pub fn get(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `policy` in force for later calls.
    pub fn set(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// The order to try `ranked` in for the next call under `policy` (the one in force, read once
    /// per call by the caller) and, under an A/B policy, the name of the arm this call belongs to
    /// (arms alternate call by call).
    pub fn place<'a>(
        &self,
        policy: &Policy,
        ranked: &'a [Choice],
    ) -> (Option<String>, Vec<&'a Choice>) {
        match policy {
            Policy::Ab(first, second) => {
                let call = self.ab_calls.fetch_add(1, Ordering::Relaxed);
                let arm = if call.is_multiple_of(2) {
                    first
                } else {
                    second
                };
                (Some(arm.to_string()), arm.order(ranked))
            }
            single => (None, single.order(ranked)),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Adaptive => f.write_str("adaptive"),
            Policy::Baseline => f.write_str("baseline"),
            Policy::Fixed(kernel) => write!(f, "fixed:{kernel}"),
            Policy::Ab(a, b) => write!(f, "ab:{a},{b}"),
        }
    }
}

impl FromStr for Policy {
    type Err = String;

    /// `adaptive`, `baseline`, `fixed:KERNEL`, or `ab:POLICY,POLICY` (two of the others).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(arms) = s.strip_prefix("ab:") {
            let (a, b) = arms
                .split_once(',')
                .ok_or_else(|| format!("'{s}': an A/B policy is ab:POLICY,POLICY"))?;
            let (a, b): (Policy, Policy) = (a.parse()?, b.parse()?);
            if matches!(a, Policy::Ab(..)) || matches!(b, Policy::Ab(..)) {
                return Err(format!("'{s}': the arms of an A/B policy cannot be A/B"));
            }
            return Ok(Policy::Ab(Box::new(a), Box::new(b)));
        }
        if let Some(kernel) = s.strip_prefix("fixed:") {
            if kernel.is_empty() || kernel.contains(',') {
                return Err(format!("'{s}': a fixed policy is fixed:KERNEL"));
            }
            return Ok(Policy::Fixed(kernel.to_string()));
        }
        match s {
            "adaptive" => Ok(Policy::Adaptive),
            "baseline" => Ok(Policy::Baseline),
            _ => Err(format!(
                "unknown policy '{s}' (expected adaptive, baseline, fixed:KERNEL or ab:POLICY,POLICY)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_back() {
        for text in [
            "adaptive",
            "baseline",
            "fixed:tile24",
            "ab:adaptive,baseline",
            "ab:fixed:rb64x64x16_4x4,adaptive",
        ] {
            let policy: Policy = text.parse().unwrap();
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!(
            "ab:adaptive,fixed:tile20".parse::<Policy>().unwrap(),
            Policy::Ab(
                Box::new(Policy::Adaptive),
                Box::new(Policy::Fixed("tile20".into()))
            )
        );
        for bad in [
            "",
            "fast",
            "fixed:",
            "ab:adaptive",
            "ab:ab:adaptive,baseline,adaptive",
        ] {
            assert!(bad.parse::<Policy>().is_err(), "{bad:?} parsed");
        }
    }
}
