//! The benchmark harness and (with the `cli` feature) the `bench` / `chart` commands.

mod common;

use common::{cpu_backend, ocl_backends, wgpu_backends};
use tilegemm::bench::{measure, BenchConfig, Operands};
use tilegemm::GemmProblem;

#[test]
fn measurements_are_consistent_for_every_backend() {
    let problem = GemmProblem::new(48, 40, 32);
    let config = BenchConfig {
        warmup: 1,
        reps: 4,
        min_reps: 3,
        budget_seconds: 5.0,
        resident_chain: 0,
        batch: 1,
    };
    let mut backends = vec![cpu_backend()];
    backends.extend(wgpu_backends());
    backends.extend(ocl_backends());
    for backend in backends {
        let kernel = backend.kernels()[0].clone();
        let mut operands = Operands::random(&problem, 1).unwrap();
        let m = measure(backend.as_ref(), &kernel, &problem, &mut operands, &config).unwrap();
        let name = &backend.info().name;
        assert_eq!((m.m, m.n, m.k, m.reps), (48, 40, 32, 4), "{name}");
        assert!(
            m.kernel_seconds_min <= m.kernel_seconds && m.kernel_seconds <= m.kernel_seconds_max
        );
        assert!(
            m.end_to_end_seconds > 0.0 && m.kernel_seconds > 0.0,
            "{name}: {m:?}"
        );
        assert!((m.gflops - problem.flops() / m.kernel_seconds / 1e9).abs() < 1e-6 * m.gflops);
        assert_eq!(
            m.device_timed,
            backend.capabilities().timestamp_query,
            "{name}: device timing where, and only where, the device offers it"
        );
        if m.device_timed {
            // The kernel alone cannot take longer than the whole call around it: a timestamp
            // period applied wrongly (ns vs s) would break this.
            assert!(
                m.kernel_seconds <= m.end_to_end_seconds * 1.05,
                "{name}: {m:?}"
            );
        }
        assert_eq!(m.resident_gflops, None, "measured only when asked for");
    }
}

/// A resident chain reports a throughput on every backend (its results are checked in
/// tests/resident.rs); `tune::measure_shapes` adds it to each measurement when asked.
#[test]
fn resident_chains_are_measured_on_every_backend() {
    use tilegemm::bench::measure_resident_chain;
    use tilegemm::tune::measure_shapes;
    let problem = GemmProblem::new(40, 24, 16);
    let config = BenchConfig {
        warmup: 0,
        reps: 1,
        min_reps: 1,
        budget_seconds: 0.0,
        resident_chain: 2,
        batch: 1,
    };
    let mut backends = vec![cpu_backend()];
    backends.extend(wgpu_backends());
    backends.extend(ocl_backends());
    for backend in &backends {
        let kernel = backend.kernels()[0].clone();
        let operands = Operands::random(&problem, 3).unwrap();
        let gflops = measure_resident_chain(backend, &kernel, &problem, &operands, 4).unwrap();
        assert!(
            gflops.is_finite() && gflops > 0.0,
            "{}",
            backend.info().name
        );
    }
    let engine = common::engine();
    let target = tilegemm::Target {
        kernel: Some("tile16".into()),
        ..Default::default()
    };
    let outcome = measure_shapes(
        engine,
        &target,
        &[tilegemm::Shape::new(40, 24, 16)],
        &config,
        None,
        &mut |_| {},
    )
    .unwrap();
    assert!(!outcome.measurements.is_empty() || backends.len() == 1);
    for m in &outcome.measurements {
        assert!(m.resident_gflops.is_some_and(|g| g > 0.0), "{m:?}");
    }
}

#[test]
fn the_time_budget_cuts_repetitions_but_not_below_the_minimum() {
    let problem = GemmProblem::new(64, 64, 64);
    let config = BenchConfig {
        warmup: 0,
        reps: 1000,
        min_reps: 3,
        budget_seconds: 0.0,
        resident_chain: 0,
        batch: 1,
    };
    let mut operands = Operands::random(&problem, 2).unwrap();
    let m = measure(
        cpu_backend().as_ref(),
        "native",
        &problem,
        &mut operands,
        &config,
    )
    .unwrap();
    assert_eq!(m.reps, 3);
}

#[cfg(feature = "cli")]
fn tilegemm(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tilegemm"))
        .args(args)
        .output()
        .unwrap()
}

/// The cells of a markdown table's row.
#[cfg(feature = "cli")]
fn cells(row: &str) -> Vec<&str> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.split('|').map(str::trim).collect()
}

#[cfg(feature = "cli")]
#[test]
fn bench_writes_table_json_and_chart() {
    let dir = std::env::temp_dir().join(format!("tilegemm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let svg = dir.join("bench.svg");
    let reference = dir.join("ref.jsonl");
    std::fs::write(&reference, "gpu: test\n{\"library\": \"refblas\", \"m\": 32, \"n\": 32, \"k\": 32, \"gflops\": 1000.0}\n").unwrap();
    let out = tilegemm(&[
        "bench",
        "--sizes",
        "16,32",
        "--shapes",
        "8x24x40",
        "--backend",
        "cpu",
        "--reps",
        "3",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--reference",
        reference.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("GFLOPS") && table.contains("32x32x32") && table.contains("8x24x40"),
        "{table}"
    );
    assert!(table.contains("refblas"), "{table}");
    // stderr is a pipe here, not a terminal: one progress line per measurement instead of a bar.
    let progress = String::from_utf8_lossy(&out.stderr);
    let lines = progress.lines().filter(|l| l.starts_with('[')).count();
    assert_eq!(lines, 3, "{progress}");
    assert!(progress.contains("[3/3]"), "{progress}");
    let measurements: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(measurements.len(), 3);
    for m in &measurements {
        for field in [
            "device",
            "backend",
            "api",
            "kernel",
            "m",
            "n",
            "k",
            "kernel_seconds",
            "end_to_end_seconds",
            "gflops",
            "e2e_gflops",
            "reps",
        ] {
            assert!(m.get(field).is_some(), "missing {field} in {m}");
        }
        assert_eq!(m["reps"], 3);
        assert!(m["gflops"].as_f64().unwrap() > 0.0);
    }
    // The % column is the measured GFLOPS over the reference's 1000.
    let m32 = measurements.iter().find(|m| m["m"] == 32).unwrap();
    let percent = format!("{:.1}", m32["gflops"].as_f64().unwrap() / 10.0);
    let header = cells(table.lines().next().unwrap());
    let column = |name: &str| header.iter().position(|&h| h == name).unwrap();
    let row = table
        .lines()
        .map(cells)
        .find(|row| row[column("shape")] == "32x32x32" && row[column("device")] != "refblas")
        .unwrap();
    assert_eq!(row[column("% ref")], percent, "{row:?}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg")
            && chart.contains("cpu/native native")
            && chart.contains("refblas")
    );

    // The chart command redraws a saved run; PNG by extension.
    let png = dir.join("again.png");
    let out = tilegemm(&[
        "chart",
        json.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    let out = tilegemm(&[
        "chart",
        json.to_str().unwrap(),
        "--out",
        dir.join("x.gif").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = tilegemm(&[
        "chart",
        reference.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a reference file is not a bench file"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A plan skips a pair whose rate at a smaller shape predicts calls too slow for the budget of one
/// measurement (and says so), while faster pairs are measured: a slow device cannot hold up a
/// whole benchmark.
#[test]
fn pairs_too_slow_for_the_budget_are_skipped_and_reported() {
    use common::scripted::{ScriptedGpu, Speed};
    use std::sync::Arc;
    use tilegemm::select::calibration::CalibrationMode;
    use tilegemm::tune::{measure_shapes, PlanEvent};
    use tilegemm::{Engine, EngineOptions, Shape, Target};
    // 0.05 GFLOPS for `tile16`, 0.0125 for `crawl`: a 40³ call takes 3 and 10 ms; 160³, 0.16
    // and 0.66 s.
    let gpu = ScriptedGpu::named("Slow GPU", &["tile16", "crawl"]).with_speed(Speed {
        gflops: 0.05,
        bytes_per_second: 1e10,
        fixed_seconds: 0.0,
    });
    let engine = Engine::with_backends(
        vec![Arc::new(gpu)],
        EngineOptions {
            selector_data: vec![],
            calibration: CalibrationMode::Off,
            ..EngineOptions::default()
        },
    );
    let config = BenchConfig {
        warmup: 1,
        reps: 3,
        min_reps: 1,
        budget_seconds: 0.5,
        ..BenchConfig::default()
    };
    let shapes = [Shape::new(40, 40, 40), Shape::new(160, 160, 160)];
    let mut skipped_events = 0;
    let outcome = measure_shapes(
        &engine,
        &Target::default(),
        &shapes,
        &config,
        None,
        &mut |event| {
            if let PlanEvent::Skipped(_) = event {
                skipped_events += 1;
            }
        },
    )
    .unwrap();
    let measured: Vec<(String, usize)> = outcome
        .measurements
        .iter()
        .map(|m| (m.kernel.clone(), m.m))
        .collect();
    assert!(measured.contains(&("tile16".into(), 160)), "{measured:?}");
    assert!(!measured.contains(&("crawl".into(), 160)), "{measured:?}");
    assert_eq!(outcome.skipped.len(), 1);
    assert_eq!(skipped_events, 1);
    let skipped = &outcome.skipped[0];
    assert_eq!(
        (skipped.kernel.as_str(), skipped.shape),
        ("crawl", shapes[1])
    );
    assert!(
        skipped.predicted_seconds > 0.4,
        "{}",
        skipped.predicted_seconds
    );
}
