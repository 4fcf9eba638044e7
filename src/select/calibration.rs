//! The calibrated prior: a short calibration of each device on first use, and the end-to-end time it
//! predicts for any (kernel, problem) nobody measured.
//!
//! A calibration measures, in a few hundred milliseconds: the fixed cost of a call (a tiny GEMM),
//! host→device and device→host bandwidth (GEMMs that move 4–64 MiB and compute little, their
//! device-timed kernel time taken off), and the GFLOPS of the prior's kernels at a mid-size cube
//! (doubled from 256³ until the kernel runs for a few milliseconds), and the first kernel's rate on
//! a single output tile, K grown until it runs for a millisecond. The estimate is then
//! `fixed + bytes up ÷ upload rate + bytes down ÷ download rate + kernel seconds`.
//!
//! Kernel seconds of a catalogue kernel count whole waves of workgroups: the cube's rate over the
//! one tile's says how many workgroups of the first kernel the device runs at once (its tile's
//! outputs times that, shared out by tile area, for the others), so a GEMM of few tiles gets
//! only the share of the device its tiles occupy — 64×64×65536 is one workgroup of 132 SMs' worth
//! on an H100 — and a split-K member (its whole member's rate, on its slices, plus the summing
//! pass) can win where its member idles the device. A kernel that was not calibrated gets the
//! device's slowest calibrated rate: it never wins on a guess.
//!
//! A calibration is kept beside the device's tuning database, in the same folder and named after
//! the same device key (`<key>.calibration.json`): in the user cache for this host's devices (the
//! selector only trusts calibrations made on this host), in `models/` (shipped inside the binary)
//! for the devices the shipped data was measured on, which the learned model is trained with
//! ([`super::model`]).

use super::db::{write_atomically, DataSource, TuningDb};
use crate::backend::cpu::NATIVE_KERNEL;
use crate::backend::gpu::split_k::{self, SplitPlan};
use crate::backend::gpu::stream_k;
use crate::backend::Backend;
use crate::bench::{measure, BenchConfig, Operands};
use crate::device::BackendKind;
use crate::error::{Error, Result};
use crate::kernel::{find, KernelSpec, BASELINE_KERNEL, PRIOR_GPU_KERNELS};
use crate::problem::GemmProblem;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FORMAT: &str = "tilegemm-calibration";
/// Version 2 added [`Calibration::one_tile`]; version 1 files are still read (for training).
const VERSION: u32 = 2;

/// Stop growing the rate measurement's cube once the kernel runs this long.
const RATE_TARGET_SECONDS: f64 = 0.004;

/// Stop growing the one-tile measurement's K once the kernel runs this long, or at
/// [`ONE_TILE_MAX_K`] (a 128-row A of 32 MiB).
const ONE_TILE_TARGET_SECONDS: f64 = 0.001;
const ONE_TILE_MAX_K: usize = 65536;

/// Stop growing a copy measurement once the copy takes this long.
const COPY_TARGET_SECONDS: f64 = 0.01;

/// The calibration's soft time limit: no new measurement starts after it.
const BUDGET: Duration = Duration::from_millis(400);

/// What a calibration found about one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `tilegemm-calibration`.
    pub format: String,
    /// The file format's version.
    pub version: u32,
    /// The device's key.
    pub device_key: String,
    /// Seconds of a call that moves and computes almost nothing.
    pub fixed_seconds: f64,
    /// Host→device bytes per second; `None` on the CPU (no copies) or where the device cannot time
    /// its kernels apart from the copies.
    pub upload_bytes_per_second: Option<f64>,
    /// Device→host bytes per second, as `upload_bytes_per_second`.
    pub download_bytes_per_second: Option<f64>,
    /// Kernel GFLOPS of each calibrated kernel, with the cube it was measured at.
    pub kernels: Vec<KernelRate>,
    /// The first calibrated kernel's GFLOPS on one output tile (`size` is K there): how fast one
    /// workgroup computes alone. None for kernels outside the catalogue (the CPU's) and in
    /// version 1 calibrations.
    #[serde(default)]
    pub one_tile: Option<KernelRate>,
    /// Seconds the calibration took.
    pub seconds: f64,
}

/// One kernel's calibrated rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelRate {
    /// The kernel.
    pub kernel: String,
    /// The cube's side it was measured at.
    pub size: usize,
    /// Kernel GFLOPS there.
    pub gflops: f64,
}

/// Where calibrations come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CalibrationMode {
    /// No calibration: unmeasured candidates keep the prior's order after those with a number.
    Off,
    /// Calibrate each device on first use, kept for this process only.
    InMemory,
    /// As `InMemory`, and kept in (and read back from) this folder.
    Cached(PathBuf),
}

impl Calibration {
    /// Predicted end-to-end GFLOPS of `kernel` on `problem`.
    pub fn estimate_gflops(&self, kernel: &str, problem: &GemmProblem) -> Option<f64> {
        let extents = problem.extents().ok()?;
        let kernel_seconds = self.kernel_seconds(kernel, problem)?;
        let up_elements = extents.a + extents.b + if problem.beta != 0.0 { extents.c } else { 0 };
        let copy =
            |elements: usize, rate: Option<f64>| rate.map_or(0.0, |r| 4.0 * elements as f64 / r);
        let seconds = self.fixed_seconds
            + copy(up_elements, self.upload_bytes_per_second)
            + copy(extents.c, self.download_bytes_per_second)
            + kernel_seconds;
        Some(problem.flops().max(1.0) / seconds / 1e9)
    }

    /// Predicted kernel seconds of `kernel` on `problem`: flops over the calibrated rate, or, for
    /// a catalogue kernel, whole waves of its workgroups (see the module's documentation).
    pub fn kernel_seconds(&self, kernel: &str, problem: &GemmProblem) -> Option<f64> {
        let Some(spec) = find(kernel) else {
            return Some(problem.flops() / (self.kernel_gflops(kernel)? * 1e9));
        };
        if stream_k::applies(spec, problem) {
            return self.stream_k_seconds(spec, problem);
        }
        if !split_k::applies(spec, problem) {
            return self.wave_seconds(spec, problem);
        }
        let plan = SplitPlan::new(problem, spec.split_k);
        let slices =
            GemmProblem::new(problem.m, problem.n, plan.slab()).with_packed_batch(plan.slices());
        let summer = find(BASELINE_KERNEL)?;
        Some(
            self.wave_seconds(spec, &slices)?
                + self.wave_seconds(summer, &plan.reduce_problem())?,
        )
    }

    /// Seconds of the workgroups of `spec` (a kernel run whole: each workgroup a tile of every
    /// product over all of K) at its member's calibrated rate, in waves of as many workgroups as
    /// the device runs at once; without a one-tile rate, as one wave of them all.
    fn wave_seconds(&self, spec: &KernelSpec, problem: &GemmProblem) -> Option<f64> {
        let (groups_x, groups_y) = spec.dispatch(problem.m, problem.n);
        let groups = (groups_x * groups_y) as f64 * problem.batch as f64;
        self.grid_seconds(spec, groups, tile_flops(spec, problem.k))
    }

    /// Seconds of `groups` workgroups of `spec` doing `group_flops` each at its member's
    /// calibrated rate, in waves of as many as the device runs at once (one wave of them all
    /// without a one-tile rate).
    fn grid_seconds(&self, spec: &KernelSpec, groups: f64, group_flops: f64) -> Option<f64> {
        let whole_rate = self.full_tile_gflops(spec, spec.whole_name())?;
        let at_once = self.concurrent_outputs().map_or(groups, |outputs| {
            (outputs / (spec.tile_m * spec.tile_n) as f64).max(1.0)
        });
        let waves = (groups / at_once).ceil();
        Some(waves * at_once * group_flops / (whole_rate * 1e9))
    }

    /// Seconds of a stream-K member: its tiles' work shared evenly over its grid (the workgroups
    /// that get at least a slab), in waves ([`Calibration::grid_seconds`]),
    /// plus the fixup where tiles are shared, priced as split-K's summing pass over the pieces of
    /// the most shared tile.
    fn stream_k_seconds(&self, spec: &KernelSpec, problem: &GemmProblem) -> Option<f64> {
        let (groups_x, groups_y) = spec.dispatch(problem.m, problem.n);
        let work = (groups_x * groups_y) as f64 * tile_flops(spec, problem.k);
        // A workgroup's share is whole slabs: with fewer slabs than workgroups, some idle.
        let groups = (spec.stream_k as f64).min(stream_k::iterations(spec, problem) as f64);
        let grid = self.grid_seconds(spec, groups, work / groups)?;
        let pieces = stream_k::pieces_per_tile(spec, problem);
        let fixup = if pieces > 1 {
            let sum = split_k::sum_problem(problem, pieces as usize);
            self.wave_seconds(find(BASELINE_KERNEL)?, &sum)?
        } else {
            0.0
        };
        Some((grid + fixup) * problem.batch as f64)
    }

    /// The calibrated rate of `kernel` (tiling `spec`) counted in its workgroups' flops, padding
    /// included: the rate at which the device does whole tiles when every slot is busy.
    fn full_tile_gflops(&self, spec: &KernelSpec, kernel: &str) -> Option<f64> {
        let gflops = self.kernel_gflops(kernel)?;
        let size = self
            .kernels
            .iter()
            .find(|k| k.kernel == kernel)
            .map_or(0, |k| k.size);
        if size == 0 {
            return Some(gflops);
        }
        let (groups_x, groups_y) = spec.dispatch(size, size);
        let padded = (groups_x * groups_y) as f64 * tile_flops(spec, size);
        Some(gflops * padded / (2.0 * (size as f64).powi(3)))
    }

    /// Outputs the device computes at once: the first kernel's tiles at once (its full rate over
    /// its one-tile rate) times its tile's outputs. None without a one-tile rate.
    fn concurrent_outputs(&self) -> Option<f64> {
        let one = self.one_tile.as_ref()?;
        let spec = find(&one.kernel)?;
        let full = self.full_tile_gflops(spec, &one.kernel)?;
        let tiles_at_once = (full / one.gflops).max(1.0);
        Some(tiles_at_once * (spec.tile_m * spec.tile_n) as f64)
    }

    /// Whether this calibration measured everything the current version measures (an older one
    /// is made again on this host; it still serves for training).
    pub fn is_current(&self) -> bool {
        self.version == VERSION
    }

    /// The calibrated kernel GFLOPS of `kernel`; a kernel not calibrated gets the device's slowest
    /// calibrated rate (it never wins on a guess). None without any rate.
    pub fn kernel_gflops(&self, kernel: &str) -> Option<f64> {
        let slowest = self
            .kernels
            .iter()
            .map(|k| k.gflops)
            .min_by(f64::total_cmp)?;
        Some(
            self.kernels
                .iter()
                .find(|k| k.kernel == kernel)
                .map_or(slowest, |k| k.gflops),
        )
    }

    /// The fastest calibrated kernel rate, GFLOPS: how fast the device computes.
    pub fn peak_gflops(&self) -> f64 {
        self.kernels.iter().map(|k| k.gflops).fold(0.0, f64::max)
    }

    /// The calibration of `key` in the folder `dir`, if there is a usable one.
    pub fn load(dir: &Path, key: &str) -> Result<Option<Self>> {
        Self::load_from(&DataSource::Folder(dir.to_path_buf()), key)
    }

    /// As [`Calibration::load`], from any data source.
    pub fn load_from(source: &DataSource, key: &str) -> Result<Option<Self>> {
        let name = Self::file_name(key);
        let Some(text) = source.read(&name)? else {
            return Ok(None);
        };
        let path = source.path(&name);
        let calibration: Calibration = serde_json::from_str(&text).map_err(|e| {
            Error::file(&path, format!("not a calibration: {e}"), Some(Box::new(e)))
        })?;
        if calibration.format != FORMAT
            || !(1..=VERSION).contains(&calibration.version)
            || calibration.device_key != key
        {
            return Err(Error::file(
                &path,
                "another format, version or device",
                None,
            ));
        }
        Ok(Some(calibration))
    }

    /// Writes the calibration into the folder `dir`, beside the device's tuning database.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(Self::file_name(&self.device_key));
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, "creating the folder", Some(Box::new(e))))?;
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::file(&path, "serialising", Some(Box::new(e))))?;
        write_atomically(&path, &text)?;
        Ok(path)
    }

    /// The file name of the calibration of the device `key`.
    pub fn file_name(key: &str) -> String {
        format!("{}.calibration.json", TuningDb::file_stem(key))
    }
}

/// 2·m·n·k of one workgroup of `spec` over a depth of `k`: its tile whole, padding included.
fn tile_flops(spec: &KernelSpec, k: usize) -> f64 {
    2.0 * (spec.tile_m * spec.tile_n) as f64 * k as f64
}

/// The kernel rate of `kernel` on `shape(size)`, `size` doubled from `first` until the kernel runs
/// `target` seconds, reaches `last` or the calibration's budget is spent; with the last size tried.
/// The rate is the last one measured (None when the first measurement fails).
fn grown_rate(
    backend: &dyn Backend,
    kernel: &str,
    fixed_seconds: f64,
    started: Instant,
    (first, last): (usize, usize),
    target: f64,
    shape: impl Fn(usize) -> GemmProblem,
) -> (Option<KernelRate>, usize) {
    let mut size = first;
    let mut rate = None;
    loop {
        let problem = shape(size);
        let Ok((e2e, kernel_seconds)) = time(backend, kernel, &problem) else {
            return (rate, size);
        };
        let seconds = kernel_seconds.unwrap_or(e2e - fixed_seconds).max(1e-9);
        rate = Some(KernelRate {
            kernel: kernel.to_string(),
            size,
            gflops: problem.flops() / seconds / 1e9,
        });
        if seconds >= target || size >= last || started.elapsed() >= BUDGET {
            return (rate, size);
        }
        size *= 2;
    }
}

/// The kernels a calibration measures on `backend`: the prior's, where the device offers them;
/// else its first kernel, so that every device can be described to the model.
fn calibrated_kernels(backend: &dyn Backend) -> Vec<String> {
    let offered = backend.kernels();
    let prior: Vec<String> = PRIOR_GPU_KERNELS
        .into_iter()
        .chain([NATIVE_KERNEL])
        .filter(|k| offered.iter().any(|o| o == k))
        .map(str::to_string)
        .collect();
    if prior.is_empty() {
        offered.into_iter().take(1).collect()
    } else {
        prior
    }
}

/// Fastest end-to-end and kernel seconds of `kernel` on `problem` over two calls after a warm-up
/// (kernel `None`: not device-timed). The fastest, because a copy or a kernel is only ever slowed
/// by what else the host does: one call of a 64 MiB copy varied 2.3× between runs on the H100.
fn time(backend: &dyn Backend, kernel: &str, problem: &GemmProblem) -> Result<(f64, Option<f64>)> {
    let config = BenchConfig {
        warmup: 1,
        reps: 3,
        min_reps: 2,
        budget_seconds: 0.05,
        ..BenchConfig::default()
    };
    let mut operands = Operands::random(problem, 7)?;
    let m = measure(backend, kernel, problem, &mut operands, &config)?;
    let kernel_seconds = m.device_timed.then_some(m.kernel_seconds_min);
    Ok((m.end_to_end_seconds_min, kernel_seconds))
}

/// Calibrates `backend`; `None` when it offers no kernel or they all fail.
pub fn calibrate(backend: &dyn Backend) -> Option<Calibration> {
    let started = Instant::now();
    let kernels = calibrated_kernels(backend);
    let primary = kernels.first()?;
    let (fixed_seconds, _) = time(backend, primary, &GemmProblem::new(8, 8, 8)).ok()?;
    let copies = backend.info().backend != BackendKind::Cpu;
    // Bytes one way, little arithmetic, grown ×4 from 4 MiB until the copy takes
    // COPY_TARGET_SECONDS or reaches 64 MiB (small copies run faster per byte than the large ones
    // that decide between a GPU and the CPU): C of n² comes back (k = 1), or A and B of 16×k go up.
    let copy_rate = |problem: &dyn Fn(usize) -> (GemmProblem, f64)| -> Option<f64> {
        let copy_started = Instant::now();
        let mut scale = 1;
        loop {
            let (problem, bytes) = problem(scale);
            let (e2e, kernel) = time(backend, primary, &problem).ok()?;
            let seconds = (e2e - fixed_seconds - kernel?).max(1e-7);
            if seconds >= COPY_TARGET_SECONDS || scale >= 16 || copy_started.elapsed() >= BUDGET / 4
            {
                return Some(bytes / seconds);
            }
            scale *= 4;
        }
    };
    let measure_copies = || {
        if copies {
            (
                copy_rate(&|scale| {
                    let n = 1024 * (scale as f64).sqrt() as usize;
                    (GemmProblem::new(n, n, 1), 4.0 * (n * n) as f64)
                }),
                copy_rate(&|scale| {
                    let k = 32768 * scale;
                    (GemmProblem::new(16, 16, k), 8.0 * (16 * k) as f64)
                }),
            )
        } else {
            (None, None)
        }
    };
    let mut rates = Vec::new();
    // The first kernel grows its cube from 256³; the others start where it ended. The copies are
    // measured after the first kernel (each direction within a quarter of the budget), so slow
    // copies cannot take the time the first rate needs.
    let mut start = 256;
    let mut copy_rates = (None, None);
    let mut one_tile = None;
    for (position, kernel) in kernels.iter().enumerate() {
        let (rate, size) = grown_rate(
            backend,
            kernel,
            fixed_seconds,
            started,
            (start, 2048),
            RATE_TARGET_SECONDS,
            |size| GemmProblem::new(size, size, size),
        );
        if position == 0 {
            start = size;
            copy_rates = measure_copies();
            // One output tile of a catalogue kernel, K grown from 2048.
            one_tile = find(kernel).filter(|_| rate.is_some()).and_then(|spec| {
                let tile = (spec.tile_m as usize, spec.tile_n as usize);
                grown_rate(
                    backend,
                    kernel,
                    fixed_seconds,
                    started,
                    (2048, ONE_TILE_MAX_K),
                    ONE_TILE_TARGET_SECONDS,
                    |k| GemmProblem::new(tile.0, tile.1, k),
                )
                .0
            });
        }
        rates.extend(rate);
        if started.elapsed() >= BUDGET && position >= 1 {
            break;
        }
    }
    let (download, upload) = copy_rates;
    if rates.is_empty() {
        return None;
    }
    Some(Calibration {
        format: FORMAT.to_string(),
        version: VERSION,
        device_key: backend.info().key.clone(),
        fixed_seconds,
        upload_bytes_per_second: upload,
        download_bytes_per_second: download,
        kernels: rates,
        one_tile,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibration(upload: Option<f64>) -> Calibration {
        Calibration {
            format: FORMAT.into(),
            version: VERSION,
            device_key: "wgpu/vulkan/gpu/1".into(),
            fixed_seconds: 1e-4,
            upload_bytes_per_second: upload,
            download_bytes_per_second: upload,
            kernels: vec![
                KernelRate {
                    kernel: "fast".into(),
                    size: 1024,
                    gflops: 10_000.0,
                },
                KernelRate {
                    kernel: "slow".into(),
                    size: 1024,
                    gflops: 1_000.0,
                },
            ],
            one_tile: None,
            seconds: 0.1,
        }
    }

    /// An H100 as a calibration would see it: rb128x64x16_8x4_p at 36 TFLOPS on 4096³, tile16 at
    /// 5, and one 128×64 tile alone at 136 GFLOPS (about 265 workgroups at once).
    fn h100(one_tile: bool) -> Calibration {
        let rate = |kernel: &str, size, gflops| KernelRate {
            kernel: kernel.into(),
            size,
            gflops,
        };
        Calibration {
            kernels: vec![
                rate("rb128x64x16_8x4_p", 4096, 36_000.0),
                rate(BASELINE_KERNEL, 4096, 5_000.0),
            ],
            one_tile: one_tile.then(|| rate("rb128x64x16_8x4_p", 65536, 136.0)),
            ..calibration(Some(20e9))
        }
    }

    #[test]
    fn few_tiles_get_their_share_of_the_device_and_split_k_fills_it() {
        let c = h100(true);
        let seconds = |kernel: &str, p: &GemmProblem| c.kernel_seconds(kernel, p).unwrap();
        // The calibration's own point comes back within its last wave's rounding.
        let cube = GemmProblem::new(4096, 4096, 4096);
        let at_rate = cube.flops() / 36e12;
        let whole = seconds("rb128x64x16_8x4_p", &cube);
        assert!(
            whole >= at_rate && whole < 1.05 * at_rate,
            "{whole} vs {at_rate}"
        );
        // One 64×64 output over K = 65536 is one workgroup: the one-tile rate on a padded tile.
        let thin = GemmProblem::new(64, 64, 65536);
        let alone = seconds("rb128x64x16_8x4_p", &thin);
        assert!((alone - 2.0 * 128.0 * 64.0 * 65536.0 / 136e9).abs() < 1e-3 * alone);
        // Four slices keep four workgroups busy: close to 4× faster, the summing pass included;
        // sixteen 64×64 slices of the small tile faster still, though it was never calibrated
        // (the slowest rate, tile16's).
        let split = seconds("rb128x64x16_8x4_p_sk4", &thin);
        assert!(
            split < alone / 3.0 && split > alone / 4.0,
            "{split} vs {alone}"
        );
        assert!(
            c.estimate_gflops("rb128x64x16_8x4_p_sk4", &thin)
                > c.estimate_gflops("rb128x64x16_8x4_p", &thin)
        );
        // Where the tiles fill the device the split only adds its summing pass; where one slice of
        // the output fills the split-K workspace, the member runs whole.
        let half = GemmProblem::new(2048, 2048, 2048);
        assert!(seconds("rb128x64x16_8x4_p_sk4", &half) > seconds("rb128x64x16_8x4_p", &half));
        assert_eq!(seconds("rb128x64x16_8x4_p_sk4", &cube), whole);
        // A wave and one tile more takes two waves.
        let tiles_at_once = (36_000.0 / 136.0f64).floor() as usize;
        let one_wave = GemmProblem::new(128, 64 * tiles_at_once, 4096);
        let and_one = GemmProblem::new(128, 64 * (tiles_at_once + 1), 4096);
        let ratio =
            seconds("rb128x64x16_8x4_p", &and_one) / seconds("rb128x64x16_8x4_p", &one_wave);
        assert!((ratio - 2.0).abs() < 0.05, "{ratio}");
    }

    #[test]
    fn stream_k_fills_a_part_empty_wave_and_costs_its_fixup_elsewhere() {
        let c = h100(true);
        let seconds = |kernel: &str, p: &GemmProblem| c.kernel_seconds(kernel, p).unwrap();
        // 1024³ is 128 tiles of 128×64 where the device runs ~264 at once: the grid of 264
        // halves the time, fixup included.
        let cube = GemmProblem::new(1024, 1024, 1024);
        let member = seconds("rb128x64x16_8x4_p", &cube);
        let stream = seconds("rb128x64x16_8x4_p_streamk264", &cube);
        assert!(
            stream < 0.8 * member && stream > 0.45 * member,
            "{stream} vs {member}"
        );
        // One 48×48 tile of 3 slabs keeps 3 workgroups busy, not 264: stream-K loses.
        let tiny = GemmProblem::new(48, 48, 48);
        assert!(
            seconds("rb128x64x16_8x4_p_streamk264", &tiny)
                > seconds("rb128x64x16_8x4_p", &tiny) / 4.0
        );
        // 4096³ fills ~4 waves already: the fixup is all stream-K adds.
        let big = GemmProblem::new(4096, 4096, 4096);
        assert!(seconds("rb128x64x16_8x4_p_streamk264", &big) > seconds("rb128x64x16_8x4_p", &big));
        // Without a one-tile rate it never pays.
        let c = h100(false);
        assert!(
            c.kernel_seconds("rb128x64x16_8x4_p_streamk264", &cube)
                .unwrap()
                > c.kernel_seconds("rb128x64x16_8x4_p", &cube).unwrap()
        );
    }

    #[test]
    fn without_a_one_tile_rate_splitting_never_pays() {
        let c = h100(false);
        for p in [
            GemmProblem::new(64, 64, 65536),
            GemmProblem::new(2048, 2048, 2048),
        ] {
            let split = c.kernel_seconds("rb128x64x16_8x4_p_sk4", &p).unwrap();
            assert!(split > c.kernel_seconds("rb128x64x16_8x4_p", &p).unwrap());
        }
    }

    #[test]
    fn the_estimate_adds_fixed_cost_copies_and_arithmetic() {
        let c = calibration(Some(4e9));
        let p = GemmProblem::new(1000, 1000, 1000);
        // 1e-4 s + 8 MB up and 4 MB down at 4 GB/s (3 ms) + 2 GFLOP at 10 TFLOPS (0.2 ms).
        let expected = 2.0 / (1e-4 + 3e-3 + 2e-4);
        assert!((c.estimate_gflops("fast", &p).unwrap() - expected).abs() < 1e-6 * expected);
        // β ≠ 0 uploads C too.
        let with_c = p.with_scalars(1.0, 1.0);
        let expected = 2.0 / (1e-4 + 4e-3 + 2e-4);
        assert!((c.estimate_gflops("fast", &with_c).unwrap() - expected).abs() < 1e-6 * expected);
        // An uncalibrated kernel gets the slowest calibrated rate.
        assert_eq!(
            c.estimate_gflops("other", &p),
            c.estimate_gflops("slow", &p)
        );
        // No copies (the CPU): fixed cost and arithmetic only.
        let cpu = calibration(None);
        let expected = 2.0 / (1e-4 + 2e-4);
        assert!((cpu.estimate_gflops("fast", &p).unwrap() - expected).abs() < 1e-6 * expected);
    }

    #[test]
    fn calibrations_round_trip_and_foreign_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("tilegemm-calibration-{}", std::process::id()));
        let c = calibration(Some(1e9));
        c.save(&dir).unwrap();
        assert_eq!(
            Calibration::load(&dir, &c.device_key).unwrap(),
            Some(c.clone())
        );
        assert_eq!(Calibration::load(&dir, "cpu/other").unwrap(), None);
        std::fs::write(dir.join(Calibration::file_name(&c.device_key)), "{").unwrap();
        assert!(Calibration::load(&dir, &c.device_key).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
