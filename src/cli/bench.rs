//! `tilegemm bench` (every selected (backend, kernel) over shapes: table, JSON, chart) and
//! `tilegemm chart` (the chart of a saved `bench --json` file).

use super::args::{Selection, ShapeArgs};
use super::chart::{chart, read_reference, ReferencePoint};
use super::progress::PlanProgress;
use super::table::table;
use anyhow::Context;
use clap::Args;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tilegemm::bench::{BenchConfig, Measurement};
use tilegemm::tune::measure_shapes;
use tilegemm::Shape;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    shape_args: ShapeArgs,
    #[command(flatten)]
    selection: Selection,
    /// Timed repetitions per measurement (fewer when --max-seconds runs out, never under 3).
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Time budget per measurement, seconds: repetitions stop once it is spent (at least 3), and a
    /// pair whose rate at a smaller shape predicts a warm-up and 3 repetitions over twice the
    /// budget is skipped at the larger shape and named after the table.
    #[arg(long, default_value_t = 1.0, value_parser = super::args::seconds)]
    max_seconds: f64,
    /// Write the measurements as a JSON array.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw GFLOPS against size (.svg or .png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Reference results (`cublas_sgemm.py` output): adds a "% of reference" column and a line.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Open the devices afresh for every shape (isolates shapes from each other's device state).
    #[arg(long)]
    fresh_engine: bool,
    /// Seconds to wait between shapes (lets the GPU's clocks settle).
    #[arg(long, default_value_t = 0.0, value_parser = super::args::seconds)]
    pause: f64,
    /// Also time a chain of this many GEMMs on resident matrices (queued, one read-back at the
    /// end) for every pair: a second table, beside the kernel's own throughput.
    #[arg(long, default_value_t = 0)]
    chain: usize,
    /// Products per call: time strided batches of this many GEMMs of each shape, stored one
    /// after the other (1: plain GEMMs).
    #[arg(long, default_value_t = 1, value_parser = super::args::batch())]
    batch: usize,
}

#[derive(Args)]
pub struct ChartArgs {
    /// A file written by `tilegemm bench --json`.
    input: PathBuf,
    /// The chart to write (.svg or .png).
    #[arg(long)]
    out: PathBuf,
    /// Reference results to draw as a dashed line.
    #[arg(long)]
    reference: Option<PathBuf>,
    #[arg(long, default_value = "SGEMM throughput")]
    title: String,
}

pub fn bench_command(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let shapes = args
        .shape_args
        .list([256, 512, 1024].map(|n| Shape::new(n, n, n)).to_vec());
    let reference = read_optional_reference(args.reference.as_deref())?;
    super::check_output(args.json.as_deref())?;
    super::check_output(args.plot.as_deref())?;
    let mut engine = args.selection.engine();
    super::report_unavailable(&engine);
    let config = BenchConfig {
        reps: args.reps,
        budget_seconds: args.max_seconds,
        resident_chain: args.chain,
        batch: args.batch,
        ..BenchConfig::default()
    };
    let batches: Vec<&[Shape]> = if args.fresh_engine || args.pause > 0.0 {
        shapes.chunks(1).collect()
    } else {
        vec![&shapes]
    };
    let mut measurements: Vec<Measurement> = Vec::new();
    let mut skipped = Vec::new();
    let mut failures = 0;
    for (i, batch) in batches.into_iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_secs_f64(args.pause));
        }
        if i > 0 && args.fresh_engine {
            drop(engine);
            engine = args.selection.engine();
        }
        let mut progress = PlanProgress::new();
        let outcome = measure_shapes(
            &engine,
            &args.selection.target(),
            batch,
            &config,
            None,
            &mut |event| progress.show(event),
        )?;
        progress.finish();
        measurements.extend(outcome.measurements);
        skipped.extend(outcome.skipped);
        failures += outcome.failures.len();
    }
    print_bench_table(&measurements, &reference);
    for s in &skipped {
        println!(
            "not measured: {} {} at {} (≈ {:.1} s per call at its rate on a smaller shape; raise --max-seconds to measure it)",
            s.device, s.kernel, s.shape, s.predicted_seconds
        );
    }
    print_resident_table(&measurements, args.chain);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&measurements)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        chart(&measurements, &reference, path, &bench_title(&measurements))?;
    }
    Ok(super::exit_code(failures == 0))
}

pub fn chart_command(args: ChartArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let measurements: Vec<Measurement> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a bench JSON file", args.input.display()))?;
    let reference = read_optional_reference(args.reference.as_deref())?;
    chart(&measurements, &reference, &args.out, &args.title)?;
    Ok(ExitCode::SUCCESS)
}

/// The reference results of `--reference`, none without it.
fn read_optional_reference(path: Option<&Path>) -> anyhow::Result<Vec<ReferencePoint>> {
    Ok(path.map(read_reference).transpose()?.unwrap_or_default())
}

/// The reference GFLOPS at exactly this shape, if measured.
fn reference_at(reference: &[ReferencePoint], m: &Measurement) -> Option<f64> {
    reference
        .iter()
        .find(|r| (r.batch, r.m, r.n, r.k) == (m.batch, m.m, m.n, m.k))
        .map(|r| r.gflops)
}

fn print_bench_table(measurements: &[Measurement], reference: &[ReferencePoint]) {
    let mut table = table(
        &[
            "device",
            "backend",
            "api",
            "kernel",
            "shape",
            "kernel ms",
            "GFLOPS",
            "e2e ms",
            "e2e GFLOPS",
            "reps",
            "% ref",
        ],
        4,
    );
    for m in measurements {
        let percent = reference_at(reference, m)
            .map(|r| format!("{:.1}", 100.0 * m.gflops / r))
            .unwrap_or_else(|| "-".into());
        table.add_row(vec![
            m.device.clone(),
            m.backend.clone(),
            m.api.clone(),
            m.kernel.clone(),
            super::shape_label(m.batch, m.m, m.n, m.k),
            format!("{:.3}", m.kernel_seconds * 1e3),
            super::gflops(m.gflops),
            format!("{:.3}", m.end_to_end_seconds * 1e3),
            super::gflops(m.e2e_gflops),
            m.reps.to_string(),
            percent,
        ]);
    }
    for r in reference {
        table.add_row(vec![
            r.library.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            super::shape_label(r.batch, r.m, r.n, r.k),
            "-".into(),
            format!("{:.1}", r.gflops),
        ]);
    }
    println!("{table}");
}

/// The resident chains beside the kernel's own throughput (nothing without `--chain`).
fn print_resident_table(measurements: &[Measurement], chain: usize) {
    let resident: Vec<(&Measurement, f64)> = measurements
        .iter()
        .filter_map(|m| Some((m, m.resident_gflops?)))
        .collect();
    if resident.is_empty() {
        return;
    }
    let mut rows = table(
        &[
            "device",
            "kernel",
            "shape",
            "kernel GFLOPS",
            &format!("chain of {chain}, GFLOPS"),
            "% of kernel",
        ],
        3,
    );
    for (m, gflops) in resident {
        rows.add_row(vec![
            m.device.clone(),
            m.kernel.clone(),
            super::shape_label(m.batch, m.m, m.n, m.k),
            super::gflops(m.gflops),
            super::gflops(gflops),
            format!("{:.1}", 100.0 * gflops / m.gflops),
        ]);
    }
    println!("{rows}");
}

/// "SGEMM throughput, every backend of this host (wgpu on GPU, …)".
fn bench_title(measurements: &[Measurement]) -> String {
    let gpus: BTreeSet<&str> = measurements
        .iter()
        .filter(|m| m.backend == "wgpu")
        .map(|m| m.device.split('(').next().unwrap_or("").trim())
        .collect();
    let gpus: Vec<&str> = gpus.into_iter().collect();
    format!(
        "SGEMM throughput, every backend of this host (wgpu on {})",
        gpus.join(", ")
    )
}
