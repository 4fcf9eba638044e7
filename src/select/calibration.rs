//! The calibrated prior: a short calibration of each device on first use, and the end-to-end time it
//! predicts for any (kernel, problem) nobody measured.
//!
//! A calibration measures, in a few hundred milliseconds: the fixed cost of a call (a tiny GEMM),
//! host→device and device→host bandwidth (GEMMs that move 4–64 MiB and compute little, their
//! device-timed kernel time taken off), and the GFLOPS of the prior's kernels at a mid-size cube
//! (doubled from 256³ until the kernel runs for a few milliseconds). The estimate is then
//! `fixed + bytes up ÷ upload rate + bytes down ÷ download rate + flops ÷ kernel rate`. A kernel that
//! was not calibrated gets the device's slowest calibrated rate: it never wins on a guess.
//!
//! A calibration is kept beside the device's tuning database, in the same folder and named after
//! the same device key (`<key>.calibration.json`): in the user cache for this host's devices (the
//! selector only trusts calibrations made on this host), in `models/` (shipped inside the binary)
//! for the devices the shipped data was measured on, which the learned model is trained with
//! ([`super::model`]).

use super::db::{write_atomically, DataSource, TuningDb};
use crate::backend::cpu::NATIVE_KERNEL;
use crate::backend::Backend;
use crate::bench::{measure, BenchConfig, Operands};
use crate::device::BackendKind;
use crate::error::{Error, Result};
use crate::kernel::PRIOR_GPU_KERNELS;
use crate::problem::GemmProblem;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FORMAT: &str = "tilegemm-calibration";
const VERSION: u32 = 1;

/// Stop growing the rate measurement's cube once the kernel runs this long.
const RATE_TARGET_SECONDS: f64 = 0.004;

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
        let gflops = self.kernel_gflops(kernel)?;
        let up_elements = extents.a + extents.b + if problem.beta != 0.0 { extents.c } else { 0 };
        let copy =
            |elements: usize, rate: Option<f64>| rate.map_or(0.0, |r| 4.0 * elements as f64 / r);
        let seconds = self.fixed_seconds
            + copy(up_elements, self.upload_bytes_per_second)
            + copy(extents.c, self.download_bytes_per_second)
            + problem.flops() / (gflops * 1e9);
        Some(problem.flops().max(1.0) / seconds / 1e9)
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
            || calibration.version != VERSION
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
        TuningDb::file_name(key).replace(".tuning.json", ".calibration.json")
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
    for (position, kernel) in kernels.iter().enumerate() {
        let mut size = start;
        let mut rate = None;
        loop {
            let problem = GemmProblem::new(size, size, size);
            let Ok((e2e, kernel_seconds)) = time(backend, kernel, &problem) else {
                break;
            };
            let seconds = kernel_seconds.unwrap_or(e2e - fixed_seconds).max(1e-9);
            rate = Some(KernelRate {
                kernel: kernel.clone(),
                size,
                gflops: problem.flops() / seconds / 1e9,
            });
            if seconds >= RATE_TARGET_SECONDS || size >= 2048 || started.elapsed() >= BUDGET {
                break;
            }
            size *= 2;
        }
        if position == 0 {
            start = size;
            copy_rates = measure_copies();
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
            seconds: 0.1,
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
