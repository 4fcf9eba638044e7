//! On-line tuning: real calls try the close rivals of a bucket's leader, and the measured winner
//! becomes the bucket's decision.
//!
//! When a bucket is first ranked, its contenders are fixed: the leader and up to [`RIVALS`]
//! unmeasured candidates whose estimate is at least a quarter of the leader's (or unknown): the
//! best of each other device first (estimates of different devices are the least comparable),
//! then the leader's own runners-up. Until each
//! contender has [`SAMPLES`] successful calls, calls are timed; a call runs a rival instead of the
//! leader only while the seconds spent on rivals stay under [`BUDGET_SHARE`] of the bucket's seconds
//! so far, counting the rival's expected seconds (its estimate, else the leader's mean) (`On`), or
//! as soon as one still needs samples (`Eager`). A rival measured at less than [`DROP_BELOW`] of the
//! fastest contender's speed is dropped after its first call (successive halving: the spread between calls of
//! one kernel is far smaller), so a bucket spends its budget on the rivals that can win. Every call
//! still returns a correct result: a rival goes through the same validation probe and rollback as
//! any candidate. Once every remaining contender has its samples, the one with the best mean
//! end-to-end GFLOPS wins.

use super::decisions::DecisionKey;
use super::{Selection, Source};
use crate::problem::Shape;
use crate::telemetry::Welford;
use std::collections::HashMap;
use std::sync::Mutex;

/// How an engine tunes from real calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnlineTuning {
    /// Never: each bucket keeps its first ranking.
    Off,
    /// Rivals run within a budget of [`BUDGET_SHARE`] of the bucket's time.
    #[default]
    On,
    /// Rivals run on the next calls until each has its samples (for tuning runs).
    Eager,
}

impl std::str::FromStr for OnlineTuning {
    type Err = String;

    /// `off`, `on` or `eager`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(OnlineTuning::Off),
            "on" => Ok(OnlineTuning::On),
            "eager" => Ok(OnlineTuning::Eager),
            _ => Err(format!(
                "unknown on-line tuning '{s}' (expected off, on or eager)"
            )),
        }
    }
}

/// Share of a bucket's seconds that calls to rivals may take under [`OnlineTuning::On`].
pub const BUDGET_SHARE: f64 = 0.10;
/// Successful calls each contender needs before the winner is chosen.
pub const SAMPLES: u64 = 2;
/// Rivals of the leader explored per bucket.
pub const RIVALS: usize = 2;
/// A rival slower than this share of the fastest contender's measured speed is dropped after one
/// call.
pub const DROP_BELOW: f64 = 0.5;
/// A rival is close when its estimate is at least this share of the leader's.
const CLOSE: f64 = 0.25;
/// Buckets followed at once; settled ones are dropped first past it.
const CAPACITY: usize = 4096;

/// What the engine does for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Run this candidate (an index into the selection's order) first.
    pub first: Option<usize>,
    /// Time the call and report it with [`Explorer::record`].
    pub track: bool,
}

/// One timed call of a contender.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The device's key.
    pub device_key: String,
    /// The kernel.
    pub kernel: String,
    /// The problem's shape.
    pub shape: Shape,
    /// End-to-end GFLOPS of the call.
    pub e2e_gflops: f64,
    /// Kernel GFLOPS, device-timed where the device can tell, else end to end.
    pub kernel_gflops: f64,
}

/// A bucket whose contenders all have their samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    /// Index into the selection's order of the winner.
    pub winner: usize,
    /// Its mean end-to-end GFLOPS.
    pub gflops: f64,
    /// Every sample taken, to keep as measurements.
    pub samples: Vec<Sample>,
}

struct Bucket {
    /// (device key, kernel) of each contender, the leader first: identities, not indices, so a
    /// decision ranked again (after its cache entry was dropped) still finds them.
    contenders: Vec<(String, String)>,
    /// Each contender's estimated end-to-end GFLOPS, where there is one.
    estimates: Vec<Option<f64>>,
    gflops: Vec<Welford>,
    /// Rivals measured too slow to win ([`DROP_BELOW`]): they take no more calls.
    dropped: Vec<bool>,
    samples: Vec<Sample>,
    rival_seconds: f64,
    total_seconds: f64,
    settled: bool,
}

impl Bucket {
    fn new(selection: &Selection) -> Self {
        let leader = &selection.candidates[0];
        let close: Vec<usize> = selection
            .candidates
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, c)| c.source != Source::Database)
            .filter(
                |(_, c)| match (c.predicted_gflops, leader.predicted_gflops) {
                    (Some(rival), Some(leader)) => rival >= CLOSE * leader,
                    _ => true,
                },
            )
            .map(|(index, _)| index)
            .collect();
        let device = |i: usize| {
            let c = &selection.candidates[i];
            (c.backend.as_str(), c.device.as_str())
        };
        let mut rivals: Vec<usize> = Vec::new();
        for &i in &close {
            let new_device =
                device(i) != device(0) && rivals.iter().all(|&r| device(r) != device(i));
            if new_device {
                rivals.push(i);
            }
        }
        rivals.extend(
            close
                .iter()
                .filter(|i| !rivals.contains(i))
                .copied()
                .collect::<Vec<_>>(),
        );
        rivals.truncate(RIVALS);
        let chosen: Vec<usize> = std::iter::once(0).chain(rivals).collect();
        Bucket {
            estimates: chosen
                .iter()
                .map(|&i| selection.candidates[i].predicted_gflops)
                .collect(),
            gflops: vec![Welford::default(); chosen.len()],
            dropped: vec![false; chosen.len()],
            settled: chosen.len() == 1,
            contenders: chosen.iter().map(|&i| identity(selection, i)).collect(),
            samples: Vec::new(),
            rival_seconds: 0.0,
            total_seconds: 0.0,
        }
    }
}

impl Bucket {
    /// Drops every rival measured at less than [`DROP_BELOW`] of the fastest contender so far
    /// (the leader is kept: it is the bucket's answer until another wins).
    fn drop_slow_rivals(&mut self) {
        let fastest = self
            .gflops
            .iter()
            .filter(|w| w.count > 0)
            .map(|w| w.mean)
            .fold(0.0, f64::max);
        for c in 1..self.contenders.len() {
            if self.gflops[c].count > 0 && self.gflops[c].mean < DROP_BELOW * fastest {
                self.dropped[c] = true;
            }
        }
    }

    /// Whether contender `c` still needs calls.
    fn hungry(&self, c: usize) -> bool {
        !self.dropped[c] && self.gflops[c].count < SAMPLES
    }
}

/// (device key, kernel) of candidate `index` of `selection`'s order.
fn identity(selection: &Selection, index: usize) -> (String, String) {
    let choice = &selection.order[index];
    (choice.backend.info().key.clone(), choice.kernel.clone())
}

/// Where the candidate `(key, kernel)` stands in `selection`'s order.
fn position(selection: &Selection, (key, kernel): &(String, String)) -> Option<usize> {
    selection
        .order
        .iter()
        .position(|c| &c.kernel == kernel && &c.backend.info().key == key)
}

/// The on-line tuning of one engine: a state per decision bucket.
pub struct Explorer {
    mode: OnlineTuning,
    buckets: Mutex<HashMap<DecisionKey, Bucket>>,
}

impl Explorer {
    /// An explorer in `mode`.
    pub fn new(mode: OnlineTuning) -> Self {
        Explorer {
            mode,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// What the next call of `selection`'s bucket, of `flops` floating-point operations, does.
    pub fn plan(&self, selection: &Selection, flops: f64) -> Plan {
        let idle = Plan {
            first: None,
            track: false,
        };
        if self.mode == OnlineTuning::Off {
            return idle;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.get(&selection.key).is_some_and(|b| b.settled) {
            return idle;
        }
        if buckets.len() >= CAPACITY && !buckets.contains_key(&selection.key) {
            buckets.retain(|_, b| !b.settled);
            if buckets.len() >= CAPACITY {
                return idle;
            }
        }
        let bucket = buckets
            .entry(selection.key.clone())
            .or_insert_with(|| Bucket::new(selection));
        if bucket.settled {
            return idle;
        }
        let hungry = (1..bucket.contenders.len()).find(|&c| bucket.hungry(c));
        let within_budget = |c: usize| {
            let leader = &bucket.gflops[0];
            let expected = match bucket.estimates[c] {
                Some(gflops) if gflops > 0.0 => flops / (gflops * 1e9),
                _ if leader.count > 0 => flops / (leader.mean.max(1e-9) * 1e9),
                _ => return false,
            };
            bucket.rival_seconds + expected <= BUDGET_SHARE * bucket.total_seconds
        };
        let go = |c: &usize| self.mode == OnlineTuning::Eager || within_budget(*c);
        Plan {
            first: hungry
                .filter(go)
                .and_then(|c| position(selection, &bucket.contenders[c])),
            track: true,
        }
    }

    /// A tracked call of `selection` that ran candidate `index` (of its order) in `seconds` end to
    /// end (`kernel_seconds` on the device where known). The bucket's winner once it is known.
    pub fn record(
        &self,
        selection: &Selection,
        index: usize,
        shape: Shape,
        seconds: f64,
        kernel_seconds: Option<f64>,
    ) -> Option<Settled> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.get_mut(&selection.key)?;
        if bucket.settled {
            return None;
        }
        bucket.total_seconds += seconds;
        let ran = identity(selection, index);
        let contender = bucket.contenders.iter().position(|c| *c == ran)?;
        if contender > 0 {
            bucket.rival_seconds += seconds;
        }
        let flops = 2.0 * shape.m as f64 * shape.n as f64 * shape.k as f64;
        let gflops = |s: f64| flops / s.max(1e-9) / 1e9;
        bucket.gflops[contender].push(gflops(seconds));
        bucket.samples.push(Sample {
            device_key: ran.0,
            kernel: ran.1,
            shape,
            e2e_gflops: gflops(seconds),
            kernel_gflops: gflops(kernel_seconds.unwrap_or(seconds)),
        });
        bucket.drop_slow_rivals();
        if (0..bucket.contenders.len()).any(|c| bucket.hungry(c)) {
            return None;
        }
        let best = (0..bucket.contenders.len())
            .filter(|&c| !bucket.dropped[c])
            .max_by(|&a, &b| bucket.gflops[a].mean.total_cmp(&bucket.gflops[b].mean))
            .expect("the leader is a contender");
        let winner = position(selection, &bucket.contenders[best])?;
        bucket.settled = true;
        Some(Settled {
            winner,
            gflops: bucket.gflops[best].mean,
            samples: std::mem::take(&mut bucket.samples),
        })
    }

    /// Candidate `index` of `selection` failed where it was to be explored (disabled, out of
    /// memory): it stops being a contender of this bucket.
    pub fn forget(&self, selection: &Selection, index: usize) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(&selection.key) {
            let failed = identity(selection, index);
            if let Some(c) = bucket.contenders.iter().skip(1).position(|c| *c == failed) {
                bucket.contenders.remove(c + 1);
                bucket.estimates.remove(c + 1);
                bucket.gflops.remove(c + 1);
                bucket.dropped.remove(c + 1);
                bucket
                    .samples
                    .retain(|s| (&s.device_key, &s.kernel) != (&failed.0, &failed.1));
            }
        }
    }
}
