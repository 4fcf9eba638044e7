//! What happened in an engine: per (device, kernel) call counts and GFLOPS, selection latency,
//! fallbacks with their reasons, and per-arm results of an A/B policy.
//!
//! Running statistics use Welford's update (one pass, numerically stable), so an engine that runs
//! millions of GEMMs keeps a fixed amount of telemetry. [`Telemetry::snapshot`] copies it out as a
//! serialisable [`Report`]. [`median`] is the one median of a sample the crate's timings use.

use crate::problem::Shape;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// At most this many fallback events are kept (the oldest go first); counts stay exact.
const MAX_FALLBACK_EVENTS: usize = 256;

/// Shapes kept apart per A/B arm; calls of further shapes are counted under [`OTHER_SHAPES`], so a
/// long-lived engine with ever new shapes stays bounded.
pub const MAX_ARM_SHAPES: usize = 4096;

/// The shape of an arm's entry that gathers the shapes past [`MAX_ARM_SHAPES`].
pub const OTHER_SHAPES: &str = "other";

/// The middle value of a non-empty sample (the upper one of an even count); sorts it.
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Running count, mean and variance of a series (Welford).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Welford {
    /// Values pushed so far.
    pub count: u64,
    /// Mean of the values pushed (0 before the first).
    pub mean: f64,
    /// Sum of squared differences from the mean.
    m2: f64,
}

impl Welford {
    /// Adds one value to the series.
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Sample variance (n − 1); 0 below two values.
    pub fn variance(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            self.m2 / (self.count - 1) as f64
        }
    }

    /// Sample standard deviation (n − 1); 0 below two values.
    pub fn std_dev(&self) -> f64 {
        self.variance().sqrt()
    }
}

/// Calls of one (backend, device, kernel).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KernelStats {
    /// The backend of the device (`cpu`, `wgpu`, `ocl`).
    pub backend: String,
    /// The device's name, as its API reports it.
    pub device: String,
    /// The kernel's catalogue name.
    pub kernel: String,
    /// Calls that returned a result.
    pub calls: u64,
    /// Calls that failed (error or failed validation) and fell back.
    pub failures: u64,
    /// End-to-end GFLOPS of the successful calls.
    pub gflops: Welford,
}

/// Why a call left a (device, kernel) for the next candidate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fallback {
    /// The backend of the device left.
    pub backend: String,
    /// The device left.
    pub device: String,
    /// The kernel left.
    pub kernel: String,
    /// The problem's shape, `MxNxK`.
    pub shape: String,
    /// The error.
    pub reason: String,
    /// Whether the kernel was disabled (a kernel failure) or only this problem moved on (a limit
    /// or an allocation the device refused).
    pub disabled: bool,
    /// The seed of the validation probe's inputs, when the probe failed.
    pub probe_seed: Option<u64>,
}

/// One arm of an A/B policy at one shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArmStats {
    /// The arm's policy, e.g. `adaptive`.
    pub arm: String,
    /// The problem shape, `MxNxK`.
    pub shape: String,
    /// End-to-end GFLOPS of the arm's successful calls at this shape.
    pub gflops: Welford,
}

/// A copy of an engine's telemetry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// One entry per (backend, device, kernel) that was called or failed, in order of first use.
    pub kernels: Vec<KernelStats>,
    /// Microseconds from a GEMM call to its ranked candidates (cache hits included).
    pub selection_latency_us: Welford,
    /// Every fallback since creation or the last reset, including those no longer kept.
    pub fallbacks_total: u64,
    /// The latest fallbacks, oldest first (at most 256).
    pub fallbacks: Vec<Fallback>,
    /// Per arm and shape, for the A/B policy.
    pub arms: Vec<ArmStats>,
    /// On-line tuning at work.
    pub online: OnlineStats,
}

/// What on-line tuning did: calls timed while buckets were being settled, the calls that ran a
/// rival of the leader, and the decisions it settled or changed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OnlineStats {
    /// Calls timed in buckets not yet settled.
    pub tracked_calls: u64,
    /// Seconds of those calls.
    pub tracked_seconds: f64,
    /// Calls that ran a rival instead of the leader.
    pub rival_calls: u64,
    /// Seconds of those calls.
    pub rival_seconds: f64,
    /// Buckets whose contenders all have their samples.
    pub settled: u64,
    /// Settled buckets whose winner was not the first ranking's choice.
    pub changed: u64,
}

/// An engine's telemetry, shared by its threads.
#[derive(Default)]
pub struct Telemetry {
    inner: Mutex<State>,
}

/// The report and, per arm, where each shape's entry is in `report.arms` (a call finds its entry
/// without searching or allocating).
#[derive(Default)]
struct State {
    report: Report,
    arm_entries: HashMap<String, HashMap<Shape, usize>>,
}

impl Telemetry {
    fn with<T>(&self, f: impl FnOnce(&mut Report) -> T) -> T {
        self.with_state(|state| f(&mut state.report))
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Adds the time one selection took (ranking or cache hit) to `selection_latency_us`.
    pub fn record_selection(&self, latency: Duration) {
        self.with(|r| r.selection_latency_us.push(latency.as_secs_f64() * 1e6));
    }

    /// A call that succeeded on (backend, device, kernel) at `gflops`, under the A/B arm `arm`.
    pub fn record_call(
        &self,
        (backend, device, kernel): (&str, &str, &str),
        shape: Shape,
        gflops: f64,
        arm: Option<&str>,
    ) {
        self.with_state(|state| {
            let r = &mut state.report;
            let stats = kernel_entry(&mut r.kernels, backend, device, kernel);
            stats.calls += 1;
            stats.gflops.push(gflops);
            let Some(arm) = arm else {
                return;
            };
            if !state.arm_entries.contains_key(arm) {
                state.arm_entries.insert(arm.to_string(), HashMap::new());
            }
            let entries = state.arm_entries.get_mut(arm).expect("inserted above");
            // Past the bound, new shapes share one entry (keyed by the 0×0×0 shape, named "other").
            let key = if entries.len() < MAX_ARM_SHAPES || entries.contains_key(&shape) {
                shape
            } else {
                Shape::new(0, 0, 0)
            };
            let index = *entries.entry(key).or_insert_with(|| {
                r.arms.push(ArmStats {
                    arm: arm.to_string(),
                    shape: if key == shape {
                        shape.to_string()
                    } else {
                        OTHER_SHAPES.to_string()
                    },
                    gflops: Welford::default(),
                });
                r.arms.len() - 1
            });
            r.arms[index].gflops.push(gflops);
        });
    }

    /// A call timed for on-line tuning; `rival` when it ran a rival of the leader.
    pub fn record_tracked(&self, seconds: f64, rival: bool) {
        self.with(|r| {
            r.online.tracked_calls += 1;
            r.online.tracked_seconds += seconds;
            if rival {
                r.online.rival_calls += 1;
                r.online.rival_seconds += seconds;
            }
        });
    }

    /// A bucket settled by on-line tuning; `changed` when its winner was not the first choice.
    pub fn record_settled(&self, changed: bool) {
        self.with(|r| {
            r.online.settled += 1;
            r.online.changed += changed as u64;
        });
    }

    /// A (device, kernel) that failed a call and was left for the next candidate.
    pub fn record_fallback(&self, event: Fallback) {
        self.with(|r| {
            kernel_entry(&mut r.kernels, &event.backend, &event.device, &event.kernel).failures +=
                1;
            r.fallbacks_total += 1;
            if r.fallbacks.len() == MAX_FALLBACK_EVENTS {
                r.fallbacks.remove(0);
            }
            r.fallbacks.push(event);
        });
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Report {
        self.with(|r| r.clone())
    }

    /// Forgets everything recorded so far (e.g. after warm-up calls).
    pub fn reset(&self) {
        self.with_state(|state| *state = State::default());
    }
}

fn kernel_entry<'a>(
    kernels: &'a mut Vec<KernelStats>,
    backend: &str,
    device: &str,
    kernel: &str,
) -> &'a mut KernelStats {
    let found = kernels
        .iter()
        .position(|s| s.backend == backend && s.device == device && s.kernel == kernel);
    let index = found.unwrap_or_else(|| {
        kernels.push(KernelStats {
            backend: backend.to_string(),
            device: device.to_string(),
            kernel: kernel.to_string(),
            ..KernelStats::default()
        });
        kernels.len() - 1
    });
    &mut kernels[index]
}

/// One line of an A/B comparison: both arms at a shape both ran.
#[derive(Clone, Debug, Serialize)]
pub struct AbRow {
    /// The problem shape, `MxNxK`.
    pub shape: String,
    /// End-to-end GFLOPS of arm A at this shape.
    pub a: Welford,
    /// End-to-end GFLOPS of arm B at this shape.
    pub b: Welford,
    /// Mean GFLOPS of arm B ÷ arm A.
    pub b_over_a: f64,
}

impl Report {
    /// Shapes where both arms ran, with each arm's GFLOPS, in shape order.
    pub fn ab_comparison(&self, arm_a: &str, arm_b: &str) -> Vec<AbRow> {
        let mut by_shape: BTreeMap<&str, (Option<Welford>, Option<Welford>)> = BTreeMap::new();
        for stats in &self.arms {
            let slot = by_shape.entry(&stats.shape).or_default();
            if stats.arm == arm_a {
                slot.0 = Some(stats.gflops);
            } else if stats.arm == arm_b {
                slot.1 = Some(stats.gflops);
            }
        }
        by_shape
            .into_iter()
            .filter_map(|(shape, arms)| match arms {
                (Some(a), Some(b)) => Some(AbRow {
                    shape: shape.to_string(),
                    a,
                    b,
                    b_over_a: b.mean / a.mean,
                }),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_two_pass_statistics() {
        let xs = [3.0, 7.5, 1.25, 9.0, 4.0, 4.0];
        let mut w = Welford::default();
        xs.iter().for_each(|&x| w.push(x));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        assert_eq!(w.count, 6);
        assert!((w.mean - mean).abs() < 1e-12);
        assert!((w.variance() - var).abs() < 1e-12);
        let mut one = Welford::default();
        one.push(5.0);
        assert_eq!((one.mean, one.variance()), (5.0, 0.0));
    }

    #[test]
    fn welford_is_stable_on_large_offsets() {
        // The naive Σx² − n·mean² loses every digit here.
        let mut w = Welford::default();
        for x in [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0] {
            w.push(x);
        }
        assert!((w.variance() - 30.0).abs() < 1e-6, "{}", w.variance());
    }

    #[test]
    fn calls_fallbacks_and_arms_are_counted() {
        let t = Telemetry::default();
        let shape = Shape::new(8, 8, 8);
        t.record_call(("cpu", "x", "native"), shape, 10.0, Some("adaptive"));
        t.record_call(("cpu", "x", "native"), shape, 20.0, Some("adaptive"));
        t.record_call(("wgpu", "y", "tile16"), shape, 5.0, Some("baseline"));
        t.record_fallback(Fallback {
            backend: "wgpu".into(),
            device: "y".into(),
            kernel: "rb".into(),
            shape: shape.to_string(),
            reason: "boom".into(),
            disabled: true,
            probe_seed: None,
        });
        let r = t.snapshot();
        let native = r.kernels.iter().find(|k| k.kernel == "native").unwrap();
        assert_eq!((native.calls, native.gflops.mean), (2, 15.0));
        let rb = r.kernels.iter().find(|k| k.kernel == "rb").unwrap();
        assert_eq!((rb.calls, rb.failures), (0, 1));
        assert_eq!(r.fallbacks_total, 1);
        let ab = r.ab_comparison("adaptive", "baseline");
        assert_eq!(ab.len(), 1);
        assert!((ab[0].b_over_a - 5.0 / 15.0).abs() < 1e-12);
    }

    /// Ever new shapes under A/B keep the arms' entries bounded: past the bound they are counted
    /// together, and every call is still counted.
    #[test]
    fn arm_entries_are_bounded() {
        let t = Telemetry::default();
        for i in 0..MAX_ARM_SHAPES + 100 {
            t.record_call(
                ("cpu", "x", "native"),
                Shape::new(i + 1, 1, 1),
                1.0,
                Some("a"),
            );
        }
        t.record_call(("cpu", "x", "native"), Shape::new(1, 1, 1), 3.0, Some("a"));
        let r = t.snapshot();
        assert_eq!(r.arms.len(), MAX_ARM_SHAPES + 1);
        let other = r.arms.iter().find(|a| a.shape == OTHER_SHAPES).unwrap();
        assert_eq!(other.gflops.count, 100);
        let first = r.arms.iter().find(|a| a.shape == "1x1x1").unwrap();
        assert_eq!((first.gflops.count, first.gflops.mean), (2, 2.0));
        t.reset();
        assert!(t.snapshot().arms.is_empty());
    }

    #[test]
    fn fallback_events_are_capped_but_counted() {
        let t = Telemetry::default();
        for i in 0..MAX_FALLBACK_EVENTS + 10 {
            t.record_fallback(Fallback {
                backend: "wgpu".into(),
                device: "y".into(),
                kernel: "k".into(),
                shape: "1x1x1".into(),
                reason: i.to_string(),
                disabled: false,
                probe_seed: None,
            });
        }
        let r = t.snapshot();
        assert_eq!(r.fallbacks.len(), MAX_FALLBACK_EVENTS);
        assert_eq!(r.fallbacks_total as usize, MAX_FALLBACK_EVENTS + 10);
        assert_eq!(r.fallbacks[0].reason, "10", "the oldest went first");
    }
}
