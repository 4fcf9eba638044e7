//! The tuning database (atomic files, corrupt and foreign files) and database-driven selection.

mod common;

use common::scripted::ScriptedGpu;
use common::{cpu_backend, engine, measurement, temp_dir};
use std::sync::Arc;
use tilegemm::select::db::TuningDb;
use tilegemm::select::{Selector, Source};
use tilegemm::{Backend, Engine, EngineOptions, GemmProblem, Target};

/// The CPU backend and a scripted GPU whose `good` kernel always computes right: two devices to
/// rank without discovering any.
fn cpu_and_gpu() -> Vec<Arc<dyn Backend>> {
    vec![cpu_backend(), Arc::new(ScriptedGpu::offering(&["good"]))]
}

#[test]
fn a_database_round_trips_atomically_and_replaces_rows() {
    let dir = temp_dir("db-roundtrip");
    let cpu = cpu_backend();
    let mut db = TuningDb::new(cpu.info());
    db.record(&measurement(cpu.as_ref(), "native", 40, 10.0));
    db.record(&measurement(cpu.as_ref(), "native", 40, 12.0));
    db.record(&measurement(cpu.as_ref(), "native", 80, 20.0));
    assert_eq!(
        db.rows.len(),
        2,
        "a second measurement of a shape replaces the first"
    );
    let path = db.save(&dir).unwrap();
    assert!(path.ends_with(TuningDb::file_name(&cpu.info().key)));
    let loaded = TuningDb::load(&dir, &cpu.info().key).unwrap().unwrap();
    assert_eq!(loaded, db);
    assert_eq!(
        loaded
            .lookup("40".parse().unwrap(), "native")
            .unwrap()
            .e2e_gflops,
        12.0
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    assert!(TuningDb::load(&dir, "cpu/native/other machine/x")
        .unwrap()
        .is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_and_foreign_files_are_reported_ignored_and_kept() {
    let dir = temp_dir("db-corrupt");
    let cpu = cpu_backend();
    let key = cpu.info().key.clone();
    let path = dir.join(TuningDb::file_name(&key));

    std::fs::write(&path, "{ not json").unwrap();
    assert!(matches!(
        TuningDb::load(&dir, &key),
        Err(tilegemm::Error::File { .. })
    ));
    let selector = Selector::load(&cpu_and_gpu(), std::slice::from_ref(&dir));
    assert_eq!(
        selector.problems.len(),
        1,
        "reported once: {:?}",
        selector.problems
    );
    let problem = GemmProblem::new(40, 40, 40);
    let selection = selector.select(&Target::default(), &problem).unwrap();
    assert_eq!(
        selection.source,
        Source::Prior,
        "a corrupt file is ignored, not fatal"
    );

    // Saving over it keeps the corrupt file aside instead of silently replacing it.
    let mut db = TuningDb::new(cpu.info());
    db.record(&measurement(cpu.as_ref(), "native", 40, 5.0));
    db.save(&dir).unwrap();
    assert_eq!(
        std::fs::read_to_string(path.with_extension("json.corrupt")).unwrap(),
        "{ not json"
    );
    assert!(TuningDb::load(&dir, &key).unwrap().is_some());

    // Another version, or another device's measurements under this name: refused.
    let mut other = db.clone();
    other.version = 99;
    std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
    assert!(TuningDb::load(&dir, &key)
        .unwrap_err()
        .to_string()
        .contains("version 99"));
    let mut foreign = db.clone();
    foreign.device_key = "wgpu/vulkan/some gpu/1".into();
    std::fs::write(&path, serde_json::to_string(&foreign).unwrap()).unwrap();
    assert!(TuningDb::load(&dir, &key)
        .unwrap_err()
        .to_string()
        .contains("some gpu"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn measured_shapes_are_chosen_by_their_measurements() {
    let devices = cpu_and_gpu();
    let (cpu, other) = (&devices[0], &devices[1]);
    let other_kernel = other.kernels()[0].clone();
    for (cpu_gflops, other_gflops) in [(100.0, 1.0), (1.0, 100.0)] {
        let dir = temp_dir("db-select");
        let mut cpu_db = TuningDb::new(cpu.info());
        cpu_db.record(&measurement(cpu.as_ref(), "native", 48, cpu_gflops));
        cpu_db.save(&dir).unwrap();
        let mut other_db = TuningDb::new(other.info());
        other_db.record(&measurement(
            other.as_ref(),
            &other_kernel,
            48,
            other_gflops,
        ));
        other_db.save(&dir).unwrap();

        let selector = Selector::load(&devices, std::slice::from_ref(&dir));
        let selection = selector
            .select(&Target::default(), &GemmProblem::new(48, 48, 48))
            .unwrap();
        assert_eq!(selection.source, Source::Database);
        let (winner, loser) = if cpu_gflops > other_gflops {
            (cpu, other)
        } else {
            (other, cpu)
        };
        assert_eq!(selection.chosen.device, winner.info().name);
        assert_eq!(selection.chosen.predicted_gflops, Some(100.0));
        let runner_up = selection.runner_up.expect("the other measured pair");
        assert_eq!(
            (runner_up.device.as_str(), runner_up.predicted_gflops),
            (loser.info().name.as_str(), Some(1.0))
        );
        // An unmeasured shape falls back to the prior.
        let unmeasured = selector
            .select(&Target::default(), &GemmProblem::new(49, 48, 48))
            .unwrap();
        assert_eq!(unmeasured.source, Source::Prior);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(feature = "cli")]
#[test]
fn tune_then_select_from_the_command_line() {
    let dir = temp_dir("tune-cli");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tilegemm"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "tune",
        "--backend",
        "cpu",
        "--shapes",
        "32,16x24x8",
        "--reps",
        "3",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("tune: 2 measurements, 0 failed"),
        "{report}"
    );
    assert!(
        report.contains("model: 2 rows, held out by 2-fold over 2 shapes"),
        "{report}"
    );
    let out = run(&[
        "select",
        "32",
        "--backend",
        "cpu",
        "--db",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let selection: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in ["backend", "api", "kernel", "predicted_gflops", "source"] {
        assert!(
            selection.get(field).is_some(),
            "missing {field}: {selection}"
        );
    }
    assert_eq!(selection["source"], "database");
    assert_eq!(selection["backend"], "cpu");
    assert!(selection["predicted_gflops"].as_f64().unwrap() > 0.0);
    let out = run(&[
        "select",
        "33",
        "--backend",
        "cpu",
        "--db",
        dir.to_str().unwrap(),
        "--json",
    ]);
    let selection: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        selection["source"], "model",
        "tune trained a model for unmeasured shapes"
    );
    assert!(selection["predicted_gflops"].as_f64().unwrap() > 0.0);
    // tune kept the device's calibration beside its database (the model is trained with it), and
    // select says what its estimates came from.
    let beside: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.ends_with(".calibration.json"))
        .collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    let out = run(&[
        "select",
        "33",
        "--backend",
        "cpu",
        "--db",
        dir.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("model: 2 rows of 1 device(s)"), "{text}");
    assert!(text.contains("calibration of cpu "), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_shipped_database_loads_under_its_own_name() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".tuning.json") {
            continue;
        }
        let db: TuningDb = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(TuningDb::file_name(&db.device_key), name);
        let loaded = TuningDb::load(&dir, &db.device_key).unwrap().unwrap();
        assert!(!loaded.rows.is_empty(), "{name}");
        assert!(
            loaded
                .rows
                .iter()
                .all(|r| r.gflops > 0.0 && r.e2e_gflops > 0.0),
            "{name}"
        );
        seen += 1;
    }
    assert!(seen >= 4, "expected the H200 host's databases in {dir:?}");
}

/// Databases where the CPU wins small shapes and another device wins large ones (crossover at 256³).
fn crossover_databases(other: &dyn Backend, other_kernel: &str) -> Vec<TuningDb> {
    let cpu = cpu_backend();
    let mut cpu_db = TuningDb::new(cpu.info());
    let mut other_db = TuningDb::new(other.info());
    for size in [16, 32, 64, 128, 192, 320, 512, 768, 1024, 2048] {
        let work = (size as f64).log2();
        cpu_db.record(&measurement(cpu.as_ref(), "native", size, 100.0 + work));
        other_db.record(&measurement(
            other,
            other_kernel,
            size,
            if size < 256 { 10.0 } else { 1000.0 },
        ));
    }
    vec![cpu_db, other_db]
}

#[test]
fn the_model_predicts_unmeasured_shapes_from_the_learned_crossover() {
    use tilegemm::select::model::Model;
    let devices = cpu_and_gpu();
    let other = &devices[1];
    let kernel = other.kernels()[0].clone();
    let databases = crossover_databases(other.as_ref(), &kernel);
    // The model knows a device through its calibration, kept beside its database.
    let calibrations: Vec<_> = devices
        .iter()
        .map(|d| tilegemm::select::calibration::calibrate(d.as_ref()).expect("calibrates"))
        .collect();
    let model = Model::train(&databases, &calibrations, 5).unwrap();
    let quality = model.quality.clone().expect("10 shapes: held-out quality");
    assert_eq!((quality.folds, quality.shapes), (5, 10));
    // The crossover is clear-cut: held out, every shape's winner is still found but perhaps one
    // of the two beside the crossover (192³ and 320³, a guess between their neighbours), each miss
    // a regret of 10× (a model or a judge that picked the slower device would score top-1 ≈ 0
    // and a mean regret near 10).
    assert!(quality.top1 >= 0.9, "{quality:?}");
    assert!(quality.mean_regret < 1.1, "{quality:?}");

    let dir = temp_dir("model-select");
    for db in &databases {
        db.save(&dir).unwrap();
    }
    for calibration in &calibrations {
        calibration.save(&dir).unwrap();
    }
    model.save(&dir).unwrap();
    let selector = Selector::load(&devices, std::slice::from_ref(&dir));
    assert!(selector.problems.is_empty(), "{:?}", selector.problems);
    assert!(selector.model().is_some());
    for (size, winner) in [(48, &devices[0]), (1536, other)] {
        let problem = GemmProblem::new(size, size, size);
        let selection = selector.select(&Target::default(), &problem).unwrap();
        assert_eq!(
            selection.source,
            Source::Model,
            "{size}³ was never measured"
        );
        assert_eq!(
            selection.chosen.device,
            winner.info().name,
            "{size}³: {selection:?}"
        );
    }
    // A measured shape still comes from the database.
    let measured = selector
        .select(&Target::default(), &GemmProblem::new(512, 512, 512))
        .unwrap();
    assert_eq!(measured.source, Source::Database);

    // A corrupt model is reported and ignored: unmeasured shapes fall back to the prior.
    let keys: Vec<String> = databases.iter().map(|db| db.device_key.clone()).collect();
    std::fs::write(dir.join(Model::file_name(&keys)), "{\"format\": 3").unwrap();
    let selector = Selector::load(&devices, std::slice::from_ref(&dir));
    assert_eq!(selector.problems.len(), 1, "{:?}", selector.problems);
    let selection = selector
        .select(&Target::default(), &GemmProblem::new(48, 48, 48))
        .unwrap();
    assert_eq!(selection.source, Source::Prior);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_model_file_name_ignores_device_order() {
    use tilegemm::select::model::Model;
    let a = vec!["cpu/x".to_string(), "wgpu/y".to_string()];
    let b = vec!["wgpu/y".to_string(), "cpu/x".to_string()];
    assert_eq!(Model::file_name(&a), Model::file_name(&b));
    assert_ne!(Model::file_name(&a), Model::file_name(&a[..1]));
}

#[test]
fn every_shipped_model_loads_with_its_quality() {
    use tilegemm::select::model::Model;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".model.json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let devices: Vec<String> = serde_json::from_str::<serde_json::Value>(&text).unwrap()
            ["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        let model = Model::load(&dir, &devices)
            .unwrap()
            .expect("named after its devices");
        let quality = model
            .quality
            .as_ref()
            .expect("shipped models carry held-out quality");
        assert!(
            quality.shapes >= 9 && (0.0..=1.0).contains(&quality.top1),
            "{path:?}"
        );
        seen += 1;
    }
    assert!(seen >= 2, "the H200 host's and the CPU-only class's models");
}

#[test]
fn cached_decisions_are_the_same_decision() {
    let selector = Selector::load(&cpu_and_gpu(), &[]);
    let problem = GemmProblem::new(70, 30, 50);
    let target = Target::default();
    let first = selector.select_cached(&target, &problem).unwrap();
    let again = selector.select_cached(&target, &problem).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "served from the cache"
    );
    let cpu_only = Target {
        backend: Some(tilegemm::BackendKind::Cpu),
        ..Default::default()
    };
    let other = selector.select_cached(&cpu_only, &problem).unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&first, &other),
        "another target is another decision"
    );
    assert_eq!(other.chosen.backend, "cpu");
}

#[test]
fn the_default_engine_runs_each_measured_shape_on_its_measured_best() {
    // On a host with shipped databases (this CPU-only class in CI): among the devices measured
    // here, every shape measured is placed on its fastest measured pair — the CPU backend
    // wherever it beat lavapipe and PoCL. (A device without its own database, such as a CPU of
    // another core count, is left out: the model may rightly prefer it.)
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let measured: Vec<_> = engine()
        .backends()
        .iter()
        .filter(|b| matches!(TuningDb::load(&dir, &b.info().key), Ok(Some(_))))
        .cloned()
        .collect();
    let databases: Vec<TuningDb> = measured
        .iter()
        .filter_map(|b| TuningDb::load(&dir, &b.info().key).ok().flatten())
        .collect();
    let engine = &Engine::with_backends(measured, EngineOptions::default());
    if databases.is_empty() {
        // The shipped lavapipe database is this CI class's: where lavapipe must be found, so must it.
        assert!(
            !common::wgpu_required(),
            "no shipped database matches this host's devices"
        );
        eprintln!("no shipped database for this host: nothing to compare");
        return;
    }
    let mut shapes: Vec<(usize, usize, usize)> = databases
        .iter()
        .flat_map(|db| db.rows.iter().map(|r| (r.m, r.n, r.k)))
        .collect();
    shapes.sort();
    shapes.dedup();
    for (m, n, k) in shapes {
        // Each row judged as the selector reads it: the shape's median copy time plus the row's
        // own kernel time (TuningDb::e2e_estimate), not one run's noisy end-to-end time.
        let shape = tilegemm::Shape::new(m, n, k);
        let (best_device, best_kernel, _) = databases
            .iter()
            .flat_map(|db| {
                db.rows
                    .iter()
                    .filter(move |r| (r.m, r.n, r.k) == (m, n, k))
                    .map(move |r| {
                        let estimate = db.e2e_estimate(shape, &r.kernel).unwrap();
                        (db.device.clone(), r.kernel.clone(), estimate)
                    })
            })
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .unwrap();
        let problem = GemmProblem::new(m, n, k);
        let selection = engine.select(&Target::default(), &problem).unwrap();
        assert_eq!(selection.source, Source::Database, "{m}x{n}x{k}");
        assert_eq!(
            (
                selection.chosen.device.as_str(),
                selection.chosen.kernel.as_str()
            ),
            (best_device.as_str(), best_kernel.as_str()),
            "{m}x{n}x{k}"
        );
    }
}

/// Damaged files in a cache are kept aside, each under its own name, and a file over the size cap
/// is reported without being read: both leave the selector working.
#[test]
fn damaged_and_oversized_cache_files_are_kept_aside_or_ignored() {
    use tilegemm::select::db::MAX_FILE_BYTES;
    let dir = temp_dir("damaged-files");
    let cpu = cpu_backend();
    let mut db = TuningDb::new(cpu.info());
    db.record(&measurement(cpu.as_ref(), "native", 40, 10.0));
    let path = dir.join(TuningDb::file_name(&cpu.info().key));
    for garbage in ["{", "not json at all"] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, garbage).unwrap();
        db.save(&dir).unwrap();
    }
    let aside: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.contains(".corrupt"))
        .collect();
    assert_eq!(
        aside.len(),
        2,
        "the second does not overwrite the first: {aside:?}"
    );
    assert_eq!(
        TuningDb::load(&dir, &cpu.info().key)
            .unwrap()
            .unwrap()
            .rows
            .len(),
        1
    );

    // Sparse: the size is real, the disk stays empty.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(MAX_FILE_BYTES + 1)
        .unwrap();
    let err = TuningDb::load(&dir, &cpu.info().key).unwrap_err();
    assert!(err.to_string().contains("cap"), "{err}");
    let selector = Selector::load(std::slice::from_ref(&cpu), std::slice::from_ref(&dir));
    assert_eq!(selector.problems.len(), 1, "{:?}", selector.problems);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A real GPU device's calibration times one output tile of its first kernel beside the cube — what
/// the calibrated prior's waves come from — and a problem of that one tile is then estimated at the
/// slower of the two rates.
#[test]
fn real_devices_calibrate_a_one_tile_rate() {
    use tilegemm::select::calibration::calibrate;
    for device in common::wgpu_backends()
        .into_iter()
        .chain(common::ocl_backends())
    {
        let name = &device.info().name;
        let calibration = calibrate(device.as_ref()).expect("calibrates");
        let one = calibration
            .one_tile
            .clone()
            .unwrap_or_else(|| panic!("{name}: no one-tile rate"));
        assert_eq!(one.kernel, calibration.kernels[0].kernel, "{name}");
        assert!(one.gflops > 0.0 && one.size >= 2048, "{name}: {one:?}");
        let spec = tilegemm::kernel::find(&one.kernel).unwrap();
        let tile = GemmProblem::new(spec.tile_m as usize, spec.tile_n as usize, one.size);
        let estimated =
            tile.flops() / calibration.kernel_seconds(&one.kernel, &tile).unwrap() / 1e9;
        let slower = one.gflops.min(calibration.kernels[0].gflops);
        assert!(
            (estimated - slower).abs() < 1e-6 * slower,
            "{name}: {estimated} vs {slower}"
        );
    }
}
