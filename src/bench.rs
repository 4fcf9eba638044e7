//! The benchmark harness, shared by `tilegemm bench`, the criterion benches and the tuner.
//!
//! One measurement = warm-up runs (compilation, allocation), then timed repetitions until the count
//! or the time budget is reached. Each repetition yields an end-to-end time (host slices in and out,
//! copies included, wall clock) and, where the backend can measure it on the device, the kernel time
//! alone. Reported: medians, min and max of both. GFLOPS = 2·M·N·K / time. Inputs are random in
//! [−1, 1], never zeros.

use crate::backend::{Backend, DeviceMatrix};
use crate::error::Result;
use crate::problem::{check_host_memory, GemmProblem};
use crate::telemetry::median;
use crate::verify::fill_random;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// Untimed runs first (the first one builds the kernel).
    pub warmup: usize,
    /// Timed repetitions wanted.
    pub reps: usize,
    /// Fewest timed repetitions, even past the budget.
    pub min_reps: usize,
    /// Stop adding repetitions once this many seconds were spent timing.
    pub budget_seconds: f64,
    /// GEMMs of a resident chain timed after the host-slice repetitions (0: none): queued on
    /// matrices uploaded once, with one read-back at the end ([`Measurement::resident_gflops`]).
    pub resident_chain: usize,
    /// Products of one strided-batched call (1: plain GEMMs), packed one after the other.
    pub batch: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            warmup: 1,
            reps: 10,
            min_reps: 3,
            budget_seconds: 3.0,
            resident_chain: 0,
            batch: 1,
        }
    }
}

/// The result of measuring one (backend, kernel) at one shape. Times in seconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// The device's name, as its API reports it.
    pub device: String,
    /// The device's stable key (`DeviceInfo::key`); empty in files written before it existed.
    #[serde(default)]
    pub device_key: String,
    /// The backend the device was opened through (`cpu`, `wgpu`, `ocl`).
    pub backend: String,
    /// The API underneath the backend (`vulkan`, `metal`, `dx12`, `opencl`, `native`).
    pub api: String,
    /// The kernel's catalogue name.
    pub kernel: String,
    /// Rows of op(A) and of C.
    pub m: usize,
    /// Columns of op(B) and of C.
    pub n: usize,
    /// Depth of the product: columns of op(A), rows of op(B).
    pub k: usize,
    /// Products per call of a strided batch (1 in files written before batches existed).
    #[serde(default = "one")]
    pub batch: usize,
    /// Median kernel time: device-measured where `device_timed`, else the end-to-end time.
    pub kernel_seconds: f64,
    /// Fastest repetition of `kernel_seconds`, seconds.
    pub kernel_seconds_min: f64,
    /// Slowest repetition of `kernel_seconds`, seconds.
    pub kernel_seconds_max: f64,
    /// Median wall time of the whole call, host↔device copies included.
    pub end_to_end_seconds: f64,
    /// Fastest end-to-end repetition, seconds.
    pub end_to_end_seconds_min: f64,
    /// Slowest end-to-end repetition, seconds.
    pub end_to_end_seconds_max: f64,
    /// GFLOPS from the median kernel time (all products of a batch).
    pub gflops: f64,
    /// GFLOPS from the median end-to-end time.
    pub e2e_gflops: f64,
    /// Timed repetitions actually run (warm-up runs not counted).
    pub reps: usize,
    /// Whether `kernel_seconds` came from the device's own clock.
    pub device_timed: bool,
    /// GFLOPS of a chain of GEMMs on resident matrices, its one read-back included
    /// ([`BenchConfig::resident_chain`]); None when not measured.
    #[serde(default)]
    pub resident_gflops: Option<f64>,
}

/// The batch of a measurement that does not say.
fn one() -> usize {
    1
}

/// Random operands for `problem` (C preloaded too, so β ≠ 0 reads real numbers).
pub struct Operands {
    /// A as the problem stores it: as many elements as it spans (`Extents::a`).
    pub a: Vec<f32>,
    /// B as the problem stores it: as many elements as it spans (`Extents::b`).
    pub b: Vec<f32>,
    /// C as the problem stores it (`Extents::c` elements); every run overwrites it.
    pub c: Vec<f32>,
}

impl Operands {
    /// Operands sized for `problem`, uniform in [−1, 1], drawn from `seed` (same seed, same data);
    /// an error when the problem's leading dimensions or sizes are invalid.
    pub fn random(problem: &GemmProblem, seed: u64) -> Result<Self> {
        let extents = problem.extents()?;
        check_host_memory(problem, 1)?;
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut make = |len: usize| {
            let mut v = vec![0.0f32; len];
            fill_random(&mut rng, &mut v);
            v
        };
        Ok(Operands {
            a: make(extents.a),
            b: make(extents.b),
            c: make(extents.c),
        })
    }
}

/// (median, min, max) of a non-empty sample.
fn summary(samples: &mut [f64]) -> (f64, f64, f64) {
    let median = median(samples);
    (median, samples[0], samples[samples.len() - 1])
}

/// Measures `kernel` of `backend` on `problem` with `operands`.
pub fn measure(
    backend: &dyn Backend,
    kernel: &str,
    problem: &GemmProblem,
    operands: &mut Operands,
    config: &BenchConfig,
) -> Result<Measurement> {
    let Operands { a, b, c } = operands;
    for _ in 0..config.warmup {
        backend.gemm(kernel, problem, a, b, c)?;
    }
    let mut kernel_times = Vec::new();
    let mut e2e_times = Vec::new();
    let mut device_timed = true;
    let started = Instant::now();
    while e2e_times.len() < config.reps.max(1)
        && (e2e_times.len() < config.min_reps.max(1)
            || started.elapsed().as_secs_f64() < config.budget_seconds)
    {
        let call = Instant::now();
        let device_seconds = backend.gemm_timed(kernel, problem, a, b, c)?;
        let wall = call.elapsed().as_secs_f64();
        e2e_times.push(wall);
        match device_seconds {
            Some(seconds) if seconds > 0.0 => kernel_times.push(seconds),
            _ => {
                device_timed = false;
                kernel_times.push(wall);
            }
        }
    }
    if !device_timed {
        kernel_times = e2e_times.clone();
    }
    let (kernel_seconds, kernel_min, kernel_max) = summary(&mut kernel_times);
    let (e2e_seconds, e2e_min, e2e_max) = summary(&mut e2e_times);
    let info = backend.info();
    let flops = problem.flops();
    Ok(Measurement {
        device: info.name.clone(),
        device_key: info.key.clone(),
        backend: info.backend.to_string(),
        api: info.api.clone(),
        kernel: kernel.to_string(),
        m: problem.m,
        n: problem.n,
        k: problem.k,
        batch: problem.batch,
        kernel_seconds,
        kernel_seconds_min: kernel_min,
        kernel_seconds_max: kernel_max,
        end_to_end_seconds: e2e_seconds,
        end_to_end_seconds_min: e2e_min,
        end_to_end_seconds_max: e2e_max,
        gflops: flops / kernel_seconds / 1e9,
        e2e_gflops: flops / e2e_seconds / 1e9,
        reps: e2e_times.len(),
        device_timed,
        resident_gflops: None,
    })
}

/// GFLOPS of a chain of `chain` GEMMs of `problem` with `kernel` on matrices resident on
/// `device`: every GEMM queued, then one read-back of C into a host buffer, which is timed with
/// them. One untimed GEMM and read-back first (allocations, the pipeline's first use), as in a
/// program that runs chains in a loop.
pub fn measure_resident_chain(
    device: &Arc<dyn Backend>,
    kernel: &str,
    problem: &GemmProblem,
    operands: &Operands,
    chain: usize,
) -> Result<f64> {
    let a = DeviceMatrix::upload(device, &operands.a)?;
    let b = DeviceMatrix::upload(device, &operands.b)?;
    let mut c = DeviceMatrix::upload(device, &operands.c)?;
    let mut host_c = vec![0.0; c.len()];
    device.gemm_resident(kernel, problem, &a, &b, &mut c)?;
    device.read_resident(&c, &mut host_c)?;
    let started = Instant::now();
    for _ in 0..chain {
        device.gemm_resident(kernel, problem, &a, &b, &mut c)?;
    }
    device.read_resident(&c, &mut host_c)?;
    Ok(chain as f64 * problem.flops() / started.elapsed().as_secs_f64() / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_median_min_max() {
        assert_eq!(summary(&mut [3.0, 1.0, 2.0, 10.0, 4.0]), (3.0, 1.0, 10.0));
        assert_eq!(summary(&mut [5.0]), (5.0, 5.0, 5.0));
    }

    #[test]
    fn operands_are_random_not_zero() {
        let o = Operands::random(&GemmProblem::new(8, 8, 8), 1).unwrap();
        assert!(o.a.iter().all(|x| (-1.0..=1.0).contains(x)));
        assert!(o.a.iter().filter(|&&x| x == 0.0).count() < 2);
        assert_ne!(o.a, o.b);
    }
}
