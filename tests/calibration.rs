//! The selector on hosts nobody tuned: the calibrated prior, estimates per candidate, data of the
//! same device under another driver, and bucketed, bounded decisions. Scripted devices only.

mod common;

use common::scripted::{ScriptedGpu, Speed};
use common::{cpu_backend, measurement, temp_dir};
use std::sync::Arc;
use tilegemm::select::calibration::CalibrationMode;
use tilegemm::select::db::TuningDb;
use tilegemm::select::{Selector, Source, Target};
use tilegemm::{Backend, GemmProblem};

/// A GPU like an H100 from host slices: 10 TFLOPS kernels, 10 GB/s copies, 100 µs a call.
fn fast_gpu() -> ScriptedGpu {
    ScriptedGpu::named("Fast GPU", &["tile16"]).with_speed(Speed {
        gflops: 10_000.0,
        bytes_per_second: 10e9,
        fixed_seconds: 1e-4,
    })
}

/// A device like lavapipe: 2 GFLOPS.
fn slow_gpu() -> ScriptedGpu {
    ScriptedGpu::named("Slow GPU", &["tile16"]).with_speed(Speed {
        gflops: 2.0,
        bytes_per_second: 5e9,
        fixed_seconds: 5e-4,
    })
}

fn ranked(selector: &Selector, size: usize) -> Vec<(String, Source)> {
    let selection = selector
        .select(&Target::default(), &GemmProblem::new(size, size, size))
        .unwrap();
    selection
        .candidates
        .iter()
        .map(|c| (c.device.clone(), c.source))
        .collect()
}

#[test]
fn an_unmeasured_fast_gpu_beats_a_measured_cpu_where_its_estimate_is_higher() {
    // The H100 case: this host's CPU has measured rows (from a tuned host of the same CPU), its GPU
    // none. The GPU's calibrated estimate competes with the CPU's measurement instead of losing
    // for lack of one.
    let cpu = cpu_backend();
    let gpu: Arc<dyn Backend> = Arc::new(fast_gpu());
    let dir = temp_dir("calibrated-h100");
    let mut db = TuningDb::new(cpu.info());
    db.record(&measurement(cpu.as_ref(), "native", 1024, 600.0));
    db.record(&measurement(cpu.as_ref(), "native", 64, 50.0));
    db.save(&dir).unwrap();
    let selector = Selector::with_calibration(
        &[cpu.clone(), gpu.clone()],
        std::slice::from_ref(&dir),
        CalibrationMode::InMemory,
    );
    let calibration = selector
        .calibration(gpu.as_ref())
        .expect("tile16 is a prior kernel");
    let rate = calibration.kernels[0].gflops;
    assert!((3_000.0..20_000.0).contains(&rate), "{calibration:?}");

    // 1024³: 12 MB of copies at 10 GB/s beat 600 GFLOPS on the CPU (≈ 1.4 TFLOPS estimated).
    assert_eq!(
        ranked(&selector, 1024)[..2],
        [
            ("Fast GPU".to_string(), Source::Prior),
            (cpu.info().name.clone(), Source::Database)
        ]
    );
    // 64³: the GPU's 100 µs per call loses to the CPU's measured 50 GFLOPS.
    assert_eq!(
        ranked(&selector, 64)[0],
        (cpu.info().name.clone(), Source::Database)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_first_call_never_goes_to_a_device_the_calibration_shows_is_far_slower() {
    let cpu = cpu_backend();
    let slow: Arc<dyn Backend> = Arc::new(slow_gpu());
    let selector = Selector::with_calibration(&[slow, cpu.clone()], &[], CalibrationMode::InMemory);
    for size in [64, 256] {
        let ranking = ranked(&selector, size);
        assert_eq!(
            ranking[0],
            (cpu.info().name.clone(), Source::Prior),
            "{size}³"
        );
    }
}

#[test]
fn calibrations_are_kept_and_read_back_by_the_next_engine() {
    let dir = temp_dir("calibration-cache");
    let first = Arc::new(fast_gpu());
    let selector = Selector::with_calibration(
        &[first.clone() as Arc<dyn Backend>],
        &[],
        CalibrationMode::Cached(dir.clone()),
    );
    let made = selector.calibration(first.as_ref()).unwrap();
    assert!(first.calls("tile16") > 0);

    let second = Arc::new(fast_gpu());
    let selector = Selector::with_calibration(
        &[second.clone() as Arc<dyn Backend>],
        &[],
        CalibrationMode::Cached(dir.clone()),
    );
    assert_eq!(selector.calibration(second.as_ref()), Some(made));
    assert_eq!(second.calls("tile16"), 0, "read back, not measured again");

    // Off: no calibration, and unmeasured candidates carry no estimate.
    let off = Selector::with_calibration(
        &[second.clone() as Arc<dyn Backend>],
        &[],
        CalibrationMode::Off,
    );
    assert!(off.calibration(second.as_ref()).is_none());
    assert_eq!(
        off.select(&Target::default(), &GemmProblem::new(64, 64, 64))
            .unwrap()
            .chosen
            .predicted_gflops,
        None
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_driver_update_keeps_the_device_rows() {
    let dir = temp_dir("driver-update");
    let old = ScriptedGpu::named("Some GPU", &["good", "tile16"]).with_driver("1.0");
    let mut db = TuningDb::new(old.info());
    db.record(&measurement(&old, "good", 300, 900.0));
    db.record(&measurement(&old, "tile16", 300, 100.0));
    db.save(&dir).unwrap();

    let new: Arc<dyn Backend> =
        Arc::new(ScriptedGpu::named("Some GPU", &["good", "tile16"]).with_driver("2.0"));
    assert_ne!(new.info().key, old.info().key);
    let selector =
        Selector::with_calibration(&[new], std::slice::from_ref(&dir), CalibrationMode::Off);
    let selection = selector
        .select(&Target::default(), &GemmProblem::new(300, 300, 300))
        .unwrap();
    assert_eq!(
        (
            selection.chosen.kernel.as_str(),
            selection.source,
            selection.chosen.predicted_gflops
        ),
        ("good", Source::Database, Some(900.0))
    );
    // Another device of the same vendor is not this one.
    let other: Arc<dyn Backend> = Arc::new(ScriptedGpu::named("Some GPU 2", &["good"]));
    let selector =
        Selector::with_calibration(&[other], std::slice::from_ref(&dir), CalibrationMode::Off);
    assert_eq!(
        selector
            .select(&Target::default(), &GemmProblem::new(300, 300, 300))
            .unwrap()
            .source,
        Source::Prior
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn neighbouring_shapes_share_a_decision_measured_shapes_keep_their_own_and_the_cache_is_bounded() {
    let dir = temp_dir("buckets");
    let gpu = ScriptedGpu::named("Bucket GPU", &["good", "tile16"]);
    let mut db = TuningDb::new(gpu.info());
    db.record(&measurement(&gpu, "tile16", 1000, 900.0));
    db.record(&measurement(&gpu, "good", 1000, 100.0));
    db.save(&dir).unwrap();
    let devices: Vec<Arc<dyn Backend>> = vec![Arc::new(gpu)];
    let selector =
        Selector::with_calibration(&devices, std::slice::from_ref(&dir), CalibrationMode::Off);
    let target = Target::default();
    let at = |m, n, k| {
        selector
            .select_cached(&target, &GemmProblem::new(m, n, k))
            .unwrap()
    };

    let first = at(1024, 1024, 1024);
    assert!(
        Arc::ptr_eq(&first, &at(1060, 1028, 1000)),
        "one bucket, one decision"
    );
    let measured = at(1000, 1000, 1000);
    assert!(
        !Arc::ptr_eq(&first, &measured),
        "a measured shape keeps its own decision"
    );
    assert_eq!(
        (measured.chosen.kernel.as_str(), measured.source),
        ("tile16", Source::Database)
    );

    // Far more buckets than the bound: the cache stays within it.
    for i in 0..80u32 {
        for j in 0..70u32 {
            let size = |step: u32| (2f64.powf(step as f64 / 4.0)).round() as usize;
            at(size(i), size(j), 64);
        }
    }
    // Past the bound the least recently used eighth goes: between seven eighths of it and all.
    let kept = selector.cached_decisions();
    let bound = tilegemm::select::decisions::DEFAULT_CAPACITY;
    assert!(
        (bound * 7 / 8..=bound).contains(&kept),
        "{kept} decisions kept"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn measured_kernels_of_a_device_correct_the_estimates_of_its_others() {
    // The GPU's calibration promises ~1.4 TFLOPS at 1024³, but its tile16 was measured there at 100
    // GFLOPS: its unmeasured `good` is judged by the same reality and the measured CPU wins.
    let cpu = cpu_backend();
    let gpu = ScriptedGpu::named("Fast GPU", &["tile16", "good"]).with_speed(Speed {
        gflops: 10_000.0,
        bytes_per_second: 10e9,
        fixed_seconds: 1e-4,
    });
    let dir = temp_dir("calibration-corrected");
    let mut gpu_db = TuningDb::new(gpu.info());
    gpu_db.record(&measurement(&gpu, "tile16", 1024, 100.0));
    gpu_db.save(&dir).unwrap();
    let mut cpu_db = TuningDb::new(cpu.info());
    cpu_db.record(&measurement(cpu.as_ref(), "native", 1024, 600.0));
    cpu_db.save(&dir).unwrap();
    let gpu: Arc<dyn Backend> = Arc::new(gpu);
    let selector = Selector::with_calibration(
        &[cpu.clone(), gpu],
        std::slice::from_ref(&dir),
        CalibrationMode::InMemory,
    );
    let selection = selector
        .select(&Target::default(), &GemmProblem::new(1024, 1024, 1024))
        .unwrap();
    let estimates: Vec<(&str, Source, f64)> = selection
        .candidates
        .iter()
        .map(|c| (c.kernel.as_str(), c.source, c.predicted_gflops.unwrap()))
        .collect();
    assert_eq!(
        estimates[0],
        ("native", Source::Database, 600.0),
        "{estimates:?}"
    );
    let good = estimates.iter().find(|e| e.0 == "good").unwrap();
    assert_eq!(good.1, Source::Prior);
    assert!(
        (good.2 - 100.0).abs() < 1.0,
        "scaled to the measured tile16: {estimates:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rows_of_a_kernel_changed_since_they_were_measured_are_dropped() {
    use tilegemm::select::db::Row;
    use tilegemm::Shape;
    let dir = temp_dir("changed-kernels");
    let gpu = ScriptedGpu::named("Changed GPU", &["tile16", "tile24"]);
    let shape = Shape::new(100, 100, 100);
    let mut db = TuningDb::new(gpu.info());
    db.record_row(Row::new(shape, "tile16", 50.0, 50.0));
    let mut stale = Row::new(shape, "tile24", 500.0, 500.0);
    stale.kernel_fingerprint = stale.kernel_fingerprint.map(|f| f ^ 1);
    db.record_row(stale);
    db.save(&dir).unwrap();

    let devices: Vec<Arc<dyn Backend>> = vec![Arc::new(gpu)];
    let selector =
        Selector::with_calibration(&devices, std::slice::from_ref(&dir), CalibrationMode::Off);
    assert_eq!(selector.problems.len(), 1, "{:?}", selector.problems);
    assert!(
        selector.problems[0].contains("1 rows"),
        "{:?}",
        selector.problems
    );
    let selection = selector
        .select(&Target::default(), &GemmProblem::new(100, 100, 100))
        .unwrap();
    let sources: Vec<(&str, Source)> = selection
        .candidates
        .iter()
        .map(|c| (c.kernel.as_str(), c.source))
        .collect();
    assert_eq!(
        sources,
        [("tile16", Source::Database), ("tile24", Source::Prior)]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rows_of_a_later_source_add_to_an_earlier_one_instead_of_hiding_it() {
    let (shipped, cache) = (temp_dir("merge-shipped"), temp_dir("merge-cache"));
    let gpu = ScriptedGpu::named("Merge GPU", &["good", "tile16"]);
    let mut db = TuningDb::new(gpu.info());
    db.record(&measurement(&gpu, "good", 300, 900.0));
    db.save(&shipped).unwrap();
    let mut db = TuningDb::new(gpu.info());
    db.record(&measurement(&gpu, "tile16", 500, 100.0));
    db.save(&cache).unwrap();
    let devices: Vec<Arc<dyn Backend>> = vec![Arc::new(gpu)];
    let selector = Selector::with_calibration(
        &devices,
        &[shipped.clone(), cache.clone()],
        CalibrationMode::Off,
    );
    for (size, kernel) in [(300, "good"), (500, "tile16")] {
        let selection = selector
            .select(&Target::default(), &GemmProblem::new(size, size, size))
            .unwrap();
        assert_eq!(
            (selection.chosen.kernel.as_str(), selection.source),
            (kernel, Source::Database)
        );
    }
    std::fs::remove_dir_all(&shipped).unwrap();
    std::fs::remove_dir_all(&cache).unwrap();
}
