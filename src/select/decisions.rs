//! Decisions remembered per shape bucket, with a bound on how many.
//!
//! m, n and k are bucketed in quarter octaves (sizes within ~19% of each other share a bucket:
//! `round(4·log2(x))`), alongside the transposes, whether every leading dimension is a multiple of 4
//! (the kernels' 16-byte load path), the batch (quarter octaves too) and the caller's target. The first shape ranked in a bucket
//! decides for the bucket. A shape measured exactly on this host keys on its exact sizes, so its
//! measurement is never overridden by a neighbour's decision. At most `capacity` decisions are kept;
//! past it the least recently used eighth is dropped.

use super::{Selection, Target};
use crate::problem::{GemmProblem, Transpose};
use std::collections::HashMap;
use std::sync::Arc;

/// Decisions kept by default: more buckets than a workload uses. Each holds every candidate
/// ranked (measured on this CPU-only class: ~21 KB with 77 candidates, two devices' 38 GPU kernels
/// and the CPU's), so the cache stays near 20 MB.
pub const DEFAULT_CAPACITY: usize = 1024;

/// What a decision depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    /// Exact sizes (a measured shape) or bucket numbers.
    dims: [u64; 3],
    /// The bucket of the batch count.
    batch: u64,
    exact: bool,
    transposes: (Transpose, Transpose),
    aligned: bool,
    target: Target,
    /// The device key of a GEMM on resident matrices (ranked by kernel time, on that device only).
    resident: Option<String>,
}

/// The bucket of one size: quarter octaves, 0 for 0.
pub fn bucket(size: usize) -> u64 {
    if size == 0 {
        0
    } else {
        (4.0 * (size as f64).log2()).round() as u64 + 1
    }
}

impl DecisionKey {
    /// The key of `problem` under `target`; `exact` for shapes measured on this host.
    pub fn new(problem: &GemmProblem, target: &Target, exact: bool) -> Self {
        let sizes = [problem.m, problem.n, problem.k];
        DecisionKey {
            dims: sizes.map(|s| if exact { s as u64 } else { bucket(s) }),
            batch: bucket(problem.batch),
            exact,
            transposes: (problem.trans_a, problem.trans_b),
            aligned: [problem.lda(), problem.ldb(), problem.ldc()]
                .iter()
                .all(|ld| ld % 4 == 0),
            target: target.clone(),
            resident: None,
        }
    }

    /// The key of `problem` on matrices resident on the device `device_key`.
    pub fn resident(problem: &GemmProblem, device_key: &str, exact: bool) -> Self {
        DecisionKey {
            resident: Some(device_key.to_string()),
            ..Self::new(problem, &Target::default(), exact)
        }
    }
}

/// A bounded map of decisions, least recently used dropped first.
pub struct Decisions {
    entries: HashMap<DecisionKey, (Arc<Selection>, u64)>,
    clock: u64,
    capacity: usize,
}

impl Decisions {
    /// An empty cache of at most `capacity` decisions (at least 8).
    pub fn new(capacity: usize) -> Self {
        Decisions {
            entries: HashMap::new(),
            clock: 0,
            capacity: capacity.max(8),
        }
    }

    /// The decision for `key`, marked as used.
    pub fn get(&mut self, key: &DecisionKey) -> Option<Arc<Selection>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(selection, used)| {
            *used = clock;
            selection.clone()
        })
    }

    /// Remembers `selection` for `key`, dropping the least recently used eighth when full.
    pub fn insert(&mut self, key: DecisionKey, selection: Arc<Selection>) {
        if self.entries.len() >= self.capacity {
            let mut ages: Vec<u64> = self.entries.values().map(|(_, used)| *used).collect();
            let cut = self.capacity / 8;
            let (_, &mut oldest_kept, _) = ages.select_nth_unstable(cut);
            self.entries.retain(|_, (_, used)| *used >= oldest_kept);
        }
        self.clock += 1;
        self.entries.insert(key, (selection, self.clock));
    }

    /// How many decisions are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no decision is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_quarter_octaves() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 1);
        assert_eq!(bucket(1000), bucket(1024));
        assert_eq!(bucket(1024), bucket(1100));
        assert_ne!(bucket(1024), bucket(1300));
        assert_eq!(bucket(4096), 49);
    }

    #[test]
    fn keys_bucket_unless_exact() {
        let target = Target::default();
        let a = GemmProblem::new(1000, 1000, 1000);
        let b = GemmProblem::new(1024, 1012, 992);
        assert_eq!(
            DecisionKey::new(&a, &target, false),
            DecisionKey::new(&b, &target, false)
        );
        assert_ne!(
            DecisionKey::new(&a, &target, true),
            DecisionKey::new(&b, &target, true)
        );
        let transposed = a.with_transpose(Transpose::Yes, Transpose::No);
        assert_ne!(
            DecisionKey::new(&a, &target, false),
            DecisionKey::new(&transposed, &target, false)
        );
        let unaligned = a.with_leading_dims(1001, 1000, 1000);
        assert_ne!(
            DecisionKey::new(&a, &target, false),
            DecisionKey::new(&unaligned, &target, false)
        );
        assert_ne!(
            DecisionKey::new(&a, &target, false),
            DecisionKey::new(&a.with_packed_batch(8), &target, false)
        );
        assert_eq!(
            DecisionKey::new(&a.with_packed_batch(60), &target, false),
            DecisionKey::new(&a.with_packed_batch(64), &target, false)
        );
    }
}
