//! `tilegemm tune` (measure and store the tuning databases, train the model), `train` (the model
//! from existing databases) and `select` (which (backend, kernel) would run a shape, and why).

use super::args::{Selection, ShapeArgs};
use super::progress::PlanProgress;
use super::table::table;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tilegemm::bench::BenchConfig;
use tilegemm::select::calibration::CalibrationMode;
use tilegemm::select::db::{user_dir, DataSource};
use tilegemm::select::{Selector, Source};
use tilegemm::tune::{
    budgeted_tune_shapes, default_tune_shapes, read_training_data, train, tune, TrainedModel,
    Training, TuneOptions, DEFAULT_FOLDS,
};
use tilegemm::Shape;

#[derive(Args)]
pub struct TuneArgs {
    #[command(flatten)]
    shape_args: ShapeArgs,
    #[command(flatten)]
    selection: Selection,
    /// Where to write the databases (default: the user cache, e.g. ~/.cache/tilegemm).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Timed repetitions per measurement.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Time budget per measurement, seconds.
    #[arg(long, default_value_t = 1.0, value_parser = super::args::seconds)]
    max_seconds: f64,
    /// Total seconds to spend measuring: shapes are taken in order, cheapest first, until it is
    /// spent. Without --sizes/--shapes it draws from a wider spread (up to 2048³).
    #[arg(long, value_parser = super::args::seconds)]
    budget: Option<f64>,
    /// Only measure and store; train later with `tilegemm train` (e.g. after one process per shape).
    #[arg(long)]
    no_train: bool,
}

#[derive(Args)]
pub struct SelectArgs {
    /// The problem, MxNxK (or N for N³).
    shape: Shape,
    #[command(flatten)]
    selection: Selection,
    /// Folders with tuning databases (default: the shipped models/ and the user cache).
    #[arg(long)]
    db: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Tuning database files, one per device of the host.
    #[arg(required = true)]
    databases: Vec<PathBuf>,
    /// Where to write the model.
    #[arg(long)]
    out: PathBuf,
    /// Folds of the held-out quality estimate (over shapes).
    #[arg(long, default_value_t = DEFAULT_FOLDS)]
    folds: usize,
}

pub fn tune_command(args: TuneArgs) -> anyhow::Result<ExitCode> {
    let shapes = args.shape_args.list(if args.budget.is_some() {
        budgeted_tune_shapes()
    } else {
        default_tune_shapes()
    });
    let Some(out) = args.out.or_else(user_dir) else {
        anyhow::bail!("no user cache (set HOME or TILEGEMM_CACHE) and no --out");
    };
    // The folder first: measurements that cannot be kept are not worth taking.
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("cannot use {} for the databases: {e}", out.display()))?;
    let engine = args.selection.engine();
    super::report_unavailable(&engine);
    let options = TuneOptions {
        out,
        config: BenchConfig {
            reps: args.reps,
            budget_seconds: args.max_seconds,
            ..BenchConfig::default()
        },
        budget: args.budget.map(Duration::from_secs_f64),
        train: !args.no_train,
        folds: DEFAULT_FOLDS,
    };
    let mut progress = PlanProgress::new();
    let report = tune(
        &engine,
        &args.selection.target(),
        &shapes,
        &options,
        &mut |event| progress.show(event),
    )?;
    progress.finish();
    for e in &report.started_afresh {
        eprintln!("note: {e}; started that device afresh");
    }
    for saved in &report.databases {
        println!(
            "{}: {} measurements in {}",
            saved.database.device,
            saved.database.rows.len(),
            saved.path.display()
        );
    }
    println!(
        "tune: {} measurements, {} failed",
        report.measured,
        report.failures.len()
    );
    match &report.model {
        Training::Skipped => {}
        Training::Trained(trained) => print_model(trained),
        Training::Failed(e) => eprintln!("note: no model trained: {e}"),
    }
    Ok(super::exit_code(report.failures.is_empty()))
}

pub fn train_command(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let (databases, calibrations) = read_training_data(&args.databases)?;
    print_model(&train(&databases, &calibrations, args.folds, &args.out)?);
    Ok(ExitCode::SUCCESS)
}

/// The model's size, held-out quality and file.
fn print_model(trained: &TrainedModel) {
    let TrainedModel { model, path } = trained;
    let Some(q) = &model.quality else {
        println!(
            "model: {} rows, too few shapes to hold any out ({})",
            model.rows,
            path.display()
        );
        return;
    };
    println!(
        "model: {} rows, held out by {}-fold over {} shapes: top-1 {:.0}%, regret mean {:.1}% max {:.1}% ({})",
        model.rows,
        q.folds,
        q.shapes,
        100.0 * q.top1,
        100.0 * q.mean_regret,
        100.0 * q.max_regret,
        path.display()
    );
    if let Some(raw) = &q.raw {
        println!(
            "       against single end-to-end measurements (copy noise included): top-1 {:.0}%, regret mean {:.1}% max {:.1}%",
            100.0 * raw.top1,
            100.0 * raw.mean_regret,
            100.0 * raw.max_regret
        );
    }
}

pub fn select_command(args: SelectArgs) -> anyhow::Result<ExitCode> {
    let engine = args.selection.engine();
    super::report_unavailable(&engine);
    // The engine's own selector reads the default sources; a second one only for `--db` folders
    // (each source read once, each unusable file reported once).
    let from_folders;
    let selector = if args.db.is_empty() {
        engine.selector()
    } else {
        let sources: Vec<DataSource> = args.db.into_iter().map(DataSource::Folder).collect();
        from_folders = Selector::from_sources(
            engine.backends(),
            &sources,
            user_dir().map_or(CalibrationMode::InMemory, CalibrationMode::Cached),
        );
        for problem in &from_folders.problems {
            eprintln!("note: ignored {problem}");
        }
        &from_folders
    };
    let problem = args.shape.problem();
    problem.extents()?;
    let answer = selector.select(&args.selection.target(), &problem)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let chosen = &answer.chosen;
    println!(
        "{}: {} on {} ({}) {} [estimate from the {:?}]",
        args.shape, chosen.kernel, chosen.backend, chosen.api, chosen.device, answer.source
    );
    // Every candidate, best first.
    let mut rows = table(
        &["backend", "device", "kernel", "estimate from", "GFLOPS"],
        4,
    );
    for c in &answer.candidates {
        let gflops = c
            .predicted_gflops
            .map_or_else(|| "-".to_string(), |g| format!("{g:.1}"));
        let from = match (c.source, c.predicted_gflops) {
            (Source::Database, _) => "measured here",
            (Source::Model, _) => "learned model",
            (Source::Prior, Some(_)) => "calibrated prior",
            (Source::Prior, None) => "prior order",
        };
        rows.add_row(vec![
            c.backend.clone(),
            c.device.clone(),
            c.kernel.clone(),
            from.to_string(),
            gflops,
        ]);
    }
    println!("{rows}");
    print_estimators(selector);
    Ok(ExitCode::SUCCESS)
}

/// The model in use and each device's calibration: what the estimates above came from.
fn print_estimators(selector: &Selector) {
    match selector.model() {
        Some(model) => println!(
            "model: {} rows of {} device(s){}",
            model.rows,
            model.devices.len(),
            model
                .quality
                .as_ref()
                .map(|q| format!(
                    ", held out: top-1 {:.0}%, mean regret {:.1}%",
                    100.0 * q.top1,
                    100.0 * q.mean_regret
                ))
                .unwrap_or_default()
        ),
        None => println!("model: none"),
    }
    for device in selector.devices() {
        let info = device.info();
        let Some(c) = selector.calibration(device.as_ref()) else {
            continue;
        };
        let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1} GB/s", r / 1e9));
        let kernels: Vec<String> = c
            .kernels
            .iter()
            .map(|k| {
                let digits = if k.gflops >= 100.0 { 0 } else { 2 };
                format!("{} {:.*} GFLOPS at {}³", k.kernel, digits, k.gflops, k.size)
            })
            .collect();
        println!(
            "calibration of {} {}: call {:.0} µs, up {}, down {}, {}",
            info.backend,
            info.name,
            c.fixed_seconds * 1e6,
            rate(c.upload_bytes_per_second),
            rate(c.download_bytes_per_second),
            kernels.join(", ")
        );
    }
}
