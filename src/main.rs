//! `tilegemm`: list devices, verify kernels against the f64 reference, run one GEMM.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tilegemm::bench::{measure, BenchConfig, Measurement, Operands};
use tilegemm::plot::{chart, read_reference, ReferencePoint};
use tilegemm::reference::{max_relative_error, reference_gemm};
use tilegemm::select::db::{user_dir, TuningDb};
use tilegemm::select::model::Model;
use tilegemm::select::{Selector, Source};
use tilegemm::telemetry::Report;
use tilegemm::verify::{random_inputs, tolerance, verify, VerifyCase, VerifyReport};
use tilegemm::{
    Backend, BackendKind, Engine, EngineOptions, GemmProblem, Policy, Shape, Target, Transpose,
};

#[derive(Parser)]
#[command(
    name = "tilegemm",
    version,
    about = "Single-precision GEMM on every GPU API this host has"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every backend and device found, with limits, features and kernels.
    Devices {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check kernels against the f64 reference on fresh random data, C poisoned first.
    /// Exits 1 if any case fails.
    Verify(VerifyArgs),
    /// Run one GEMM and print its time, GFLOPS and error against the reference.
    Run(RunArgs),
    /// Benchmark every selected (backend, kernel) over sizes (default 256, 512, 1024): table,
    /// JSON, chart.
    Bench(BenchArgs),
    /// Draw the chart of a saved `bench --json` file.
    Chart(ChartArgs),
    /// Measure every candidate over a spread of shapes and store the tuning database per device
    /// (default spread: squares, non-squares, tall-skinny and small-K shapes up to 512).
    Tune(TuneArgs),
    /// Which (backend, kernel) would run a shape, from where, and the runner-up.
    Select(SelectArgs),
    /// Train the selector's model from tuning databases of one host (e.g. measured elsewhere).
    Train(TrainArgs),
    /// Run GEMMs through the engine under a policy and print its telemetry: calls and GFLOPS per
    /// kernel, selection latency, fallbacks, and the A/B comparison (default shapes 64, 128, 256,
    /// 64x256x512).
    Report(ReportArgs),
}

/// Which devices and kernels a command uses.
#[derive(Args)]
struct Selection {
    /// Only this backend: cpu, wgpu or ocl.
    #[arg(long)]
    backend: Option<BackendKind>,
    /// Only devices whose name contains this (case-insensitive).
    #[arg(long)]
    device: Option<String>,
    /// Only this kernel (e.g. tile16, tile20, tile24, native).
    #[arg(long)]
    kernel: Option<String>,
}

impl Selection {
    fn target(&self) -> Target {
        Target {
            backend: self.backend,
            device: self.device.clone(),
            kernel: self.kernel.clone(),
        }
    }

    /// Opens only the backends the selection can use.
    fn engine(&self) -> Engine {
        Engine::with_options(EngineOptions {
            backends: BackendKind::ALL
                .into_iter()
                .filter(|&kind| self.backend.is_none_or(|b| b == kind))
                .collect(),
            ..EngineOptions::default()
        })
    }
}

/// α, β and transposes of a problem.
#[derive(Args)]
struct Scalars {
    /// Use op(A) = Aᵀ.
    #[arg(long)]
    trans_a: bool,
    /// Use op(B) = Bᵀ.
    #[arg(long)]
    trans_b: bool,
    #[arg(long, allow_negative_numbers = true)]
    alpha: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    beta: Option<f32>,
}

#[derive(Args)]
struct VerifyArgs {
    /// Shapes MxNxK (or N for N³), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1x1x1,7x13x5,33x65x17,64x64x64,255x257x129,65x33x1"
    )]
    shapes: Vec<Shape>,
    #[command(flatten)]
    selection: Selection,
    #[command(flatten)]
    scalars: Scalars,
    /// Extra elements at the end of every stored row (exercises leading dimensions).
    #[arg(long, default_value_t = 0)]
    ld_pad: usize,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// The problem, MxNxK (or N for N³).
    #[arg(long)]
    shape: Shape,
    #[command(flatten)]
    selection: Selection,
    #[command(flatten)]
    scalars: Scalars,
    /// Timed repetitions after one warm-up run; the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// How the engine places the GEMM when no kernel is named: adaptive, baseline,
    /// fixed:KERNEL or ab:POLICY,POLICY.
    #[arg(long, default_value = "adaptive")]
    policy: Policy,
}

/// The shapes a command runs on.
#[derive(Args)]
struct ShapeArgs {
    /// Square sizes N (N×N×N), comma-separated.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Shapes MxNxK (or N), comma-separated; with --sizes, both are used; with neither, the
    /// command's default set.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<Shape>,
}

impl ShapeArgs {
    /// The squares of `--sizes` and the shapes of `--shapes`, or `default` (same syntax) when
    /// both are empty.
    fn list(&self, default: &str) -> Vec<Shape> {
        let mut list: Vec<Shape> = self.sizes.iter().map(|&n| Shape::new(n, n, n)).collect();
        list.extend(&self.shapes);
        if list.is_empty() {
            list = default
                .split(',')
                .map(|s| s.parse().expect("valid default shapes"))
                .collect();
        }
        list
    }
}

#[derive(Args)]
struct ReportArgs {
    #[command(flatten)]
    shape_args: ShapeArgs,
    #[command(flatten)]
    selection: Selection,
    /// GEMMs per shape (an A/B policy splits them between its arms).
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// Uncounted GEMMs per shape first (validation probes, pipeline builds, first allocations);
    /// keep it even so each arm of an A/B policy gets the same number.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// adaptive, baseline, fixed:KERNEL or ab:POLICY,POLICY.
    #[arg(long, default_value = "ab:adaptive,baseline")]
    policy: Policy,
    /// Also write the telemetry as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    shape_args: ShapeArgs,
    #[command(flatten)]
    selection: Selection,
    /// Timed repetitions per measurement (fewer when --max-seconds runs out, never under 3).
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Time budget per measurement, seconds.
    #[arg(long, default_value_t = 3.0)]
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
    #[arg(long, default_value_t = 0.0)]
    pause: f64,
}

#[derive(Args)]
struct ChartArgs {
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

#[derive(Args)]
struct TuneArgs {
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
    #[arg(long, default_value_t = 1.0)]
    max_seconds: f64,
    /// Total seconds to spend measuring: shapes are taken in order, cheapest first, until it is
    /// spent. Without --sizes/--shapes it draws from a wider spread (up to 2048³).
    #[arg(long)]
    budget: Option<f64>,
    /// Only measure and store; train later with `tilegemm train` (e.g. after one process per shape).
    #[arg(long)]
    no_train: bool,
}

#[derive(Args)]
struct SelectArgs {
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
struct TrainArgs {
    /// Tuning database files, one per device of the host.
    #[arg(required = true)]
    databases: Vec<PathBuf>,
    /// Where to write the model.
    #[arg(long)]
    out: PathBuf,
    /// Folds of the held-out quality estimate (over shapes).
    #[arg(long, default_value_t = 5)]
    folds: usize,
}

/// The default spread of `tune`: squares, non-squares, tall-skinny, small K.
const TUNE_SHAPES: &str = "64,128,256,512,256x64x512,64x256x512,1024x16x256,16x1024x256,512x512x16";

/// The spread of `tune --budget`, in order of cost: the default spread, then larger shapes.
const TUNE_SHAPES_BUDGETED: &str =
    "64,128,256x64x512,64x256x512,1024x16x256,16x1024x256,512x512x16,\
     256,384,128x1024x256,1024x128x256,512,2048x64x64,64x64x2048,768,1024x1024x64,1024,\
     1024x256x1024,256x1024x1024,1400,2048x2048x128,2048";

fn main() -> ExitCode {
    // wgpu_hal reports a missing Vulkan driver as errors; tilegemm says so itself, in one line.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal=off"),
    )
    .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Devices { json } => devices(json),
        Command::Verify(args) => verify_command(args),
        Command::Run(args) => run_command(args),
        Command::Bench(args) => bench_command(args),
        Command::Chart(args) => chart_command(args),
        Command::Tune(args) => tune_command(args),
        Command::Select(args) => select_command(args),
        Command::Train(args) => train_command(args),
        Command::Report(args) => report_command(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Tells the user about backends that were looked for and not found.
fn report_unavailable(engine: &Engine) {
    for missing in engine.unavailable() {
        eprintln!("note: {} unavailable: {}", missing.backend, missing.reason);
    }
}

fn devices(as_json: bool) -> anyhow::Result<ExitCode> {
    let engine = Engine::new();
    report_unavailable(&engine);
    if as_json {
        let list: Vec<_> = engine
            .backends()
            .iter()
            .map(|b| device_json(b.as_ref()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    for backend in engine.backends() {
        let info = backend.info();
        let caps = backend.capabilities();
        println!(
            "{} ({}) {} — {:?}, driver {}",
            info.backend, info.api, info.name, info.device_type, info.driver
        );
        if info.backend != BackendKind::Cpu {
            let features: Vec<&str> = [
                (caps.shader_f16, "shader_f16"),
                (caps.subgroups, "subgroups"),
                (caps.timestamp_query, "timestamp_query"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            println!(
                "    limits: buffer {}, binding {}, workgroup memory {}, {} threads per workgroup; features: {}",
                mib(caps.max_buffer_bytes),
                mib(caps.max_binding_bytes),
                mib(caps.max_workgroup_memory_bytes as u64),
                caps.max_workgroup_invocations,
                if features.is_empty() { "none".to_string() } else { features.join(", ") }
            );
        }
        println!("    kernels: {}", backend.kernels().join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn device_json(backend: &dyn Backend) -> serde_json::Value {
    let info = backend.info();
    let caps = backend.capabilities();
    json!({
        "backend": info.backend,
        "api": info.api,
        "name": info.name,
        "device_type": info.device_type,
        "driver": info.driver,
        "key": info.key,
        "vendor_id": info.vendor_id,
        "device_id": info.device_id,
        "limits": {
            "max_buffer_bytes": caps.max_buffer_bytes,
            "max_binding_bytes": caps.max_binding_bytes,
            "max_workgroup_memory_bytes": caps.max_workgroup_memory_bytes,
            "max_workgroup_invocations": caps.max_workgroup_invocations,
            "max_workgroups_per_dimension": caps.max_workgroups_per_dimension,
        },
        "features": {
            "shader_f16": caps.shader_f16,
            "subgroups": caps.subgroups,
            "timestamp_query": caps.timestamp_query,
        },
        "kernels": backend.kernels(),
    })
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 40 {
        "unlimited".to_string()
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn verify_command(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let engine = args.selection.engine();
    report_unavailable(&engine);
    let target = args.selection.target();
    // Without explicit scalars, check both the plain product (β = 0: C never read) and the general case.
    let scalars = match (args.scalars.alpha, args.scalars.beta) {
        (None, None) => vec![(1.0, 0.0), (0.5, 2.0)],
        (alpha, beta) => vec![(alpha.unwrap_or(1.0), beta.unwrap_or(0.0))],
    };
    let mut reports = Vec::new();
    for &shape in &args.shapes {
        for &(alpha, beta) in &scalars {
            let case = VerifyCase {
                shape,
                trans_a: Transpose::from_bool(args.scalars.trans_a),
                trans_b: Transpose::from_bool(args.scalars.trans_b),
                alpha,
                beta,
                ld_pad: args.ld_pad,
            };
            let problem = case.problem();
            problem
                .extents()
                .with_context(|| format!("shape {shape}"))?;
            let pairs = tilegemm::select::candidates(engine.backends(), &target, &problem);
            if pairs.is_empty() {
                // Say why, in the words of the device that would have run it.
                bail!(
                    "nothing can run {shape}: {}",
                    tilegemm::select::why_no_candidate(engine.backends(), &target, &problem)
                );
            }
            for choice in pairs {
                let report = verify(choice.backend.as_ref(), &choice.kernel, &case);
                if !args.json {
                    print_report(&report);
                }
                reports.push(report);
            }
        }
    }
    let failed = reports.iter().filter(|r| !r.pass).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "verify: {} passed, {} failed",
            reports.len() - failed,
            failed
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(r: &VerifyReport) {
    let trans = format!(
        "{}{}",
        if r.trans_a { "T" } else { "N" },
        if r.trans_b { "T" } else { "N" }
    );
    let error = match (&r.error, r.max_rel_error) {
        (Some(e), _) => format!("error: {e}"),
        (None, Some(x)) => format!("{x:.2e}"),
        (None, None) => "non-finite".to_string(),
    };
    let padding = if r.error.is_none() && !r.padding_intact {
        " (padding overwritten)"
    } else {
        ""
    };
    println!(
        "{:<4} {:<5} {:<28.28} {:<22} {:>16} {} α={} β={}  max_rel_error {}{}",
        if r.pass { "ok" } else { "FAIL" },
        r.backend,
        r.device,
        r.kernel,
        format!("{}x{}x{}", r.m, r.n, r.k),
        trans,
        r.alpha,
        r.beta,
        error,
        padding
    );
}

fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let engine = args.selection.engine();
    report_unavailable(&engine);
    engine.set_policy(args.policy.clone())?;
    let shape = args.shape;
    let problem = shape
        .problem()
        .with_transpose(
            Transpose::from_bool(args.scalars.trans_a),
            Transpose::from_bool(args.scalars.trans_b),
        )
        .with_scalars(
            args.scalars.alpha.unwrap_or(1.0),
            args.scalars.beta.unwrap_or(0.0),
        );
    problem.extents()?;
    let target = args.selection.target();
    let selection = engine.select(&target, &problem)?;
    let (a, b, c_in) = random_inputs(&problem, &mut SmallRng::from_os_rng());
    let mut c = c_in.clone();
    engine.gemm_on(&target, &problem, &a, &b, &mut c)?; // warm-up: validates, compiles, allocates
    let mut times = Vec::with_capacity(args.reps.max(1));
    let mut choice = None;
    for _ in 0..args.reps.max(1) {
        c.copy_from_slice(&c_in);
        let started = Instant::now();
        choice = Some(engine.gemm_on(&target, &problem, &a, &b, &mut c)?);
        times.push(started.elapsed().as_secs_f64());
    }
    let choice = choice.expect("at least one repetition");
    let info = choice.backend.info();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let reference = reference_gemm(&problem, &a, &b, &c_in)?;
    let error = max_relative_error(&problem, &c, &reference);
    let pass = error < tolerance(problem.k);
    println!(
        "{} on {} ({}) {}: {shape} in {:.3} ms (median of {}, end to end) = {:.1} GFLOPS; max_rel_error {:.2e} ({})",
        choice.kernel,
        info.backend,
        info.api,
        info.name,
        median * 1e3,
        times.len(),
        problem.flops() / median / 1e9,
        error,
        if pass { "pass" } else { "FAIL" }
    );
    println!(
        "policy {}; selector: {} from the {:?}",
        args.policy, selection.chosen.kernel, selection.source
    );
    if matches!(args.policy, Policy::Ab(..)) || engine.telemetry().fallbacks_total > 0 {
        print_telemetry(&engine.telemetry(), &args.policy);
    }
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report_command(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let shapes = args.shape_args.list("64,128,256,64x256x512");
    let engine = args.selection.engine();
    report_unavailable(&engine);
    engine.set_policy(args.policy.clone())?;
    let target = args.selection.target();
    let problems: Vec<GemmProblem> = shapes.iter().map(|s| s.problem()).collect();
    for problem in &problems {
        problem.extents()?;
    }
    let progress =
        indicatif::ProgressBar::new((problems.len() * (args.warmup + args.calls)) as u64);
    let mut rng = SmallRng::from_os_rng();
    let inputs: Vec<_> = problems
        .iter()
        .map(|problem| random_inputs(problem, &mut rng))
        .collect();
    for (calls, counted) in [(args.warmup, false), (args.calls, true)] {
        if counted {
            engine.reset_telemetry();
        }
        for (problem, (a, b, c)) in problems.iter().zip(&inputs) {
            let mut c = c.clone();
            for _ in 0..calls {
                engine.gemm_on(&target, problem, a, b, &mut c)?;
                progress.inc(1);
            }
        }
    }
    progress.finish_and_clear();
    let report = engine.telemetry();
    print_telemetry(&report, &args.policy);
    if let Some(path) = &args.json {
        let json = json!({ "policy": args.policy.to_string(), "telemetry": report });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Per-kernel calls and GFLOPS, selection latency, fallbacks and, for an A/B policy, both arms.
fn print_telemetry(report: &Report, policy: &Policy) {
    println!(
        "{:<7} {:<36} {:<22} {:>6} {:>8} {:>12} {:>10}",
        "backend", "device", "kernel", "calls", "failures", "mean GFLOPS", "std dev"
    );
    for k in &report.kernels {
        println!(
            "{:<7} {:<36} {:<22} {:>6} {:>8} {:>12.1} {:>10.1}",
            k.backend,
            k.device,
            k.kernel,
            k.calls,
            k.failures,
            k.gflops.mean,
            k.gflops.std_dev()
        );
    }
    let latency = &report.selection_latency_us;
    println!(
        "selection latency: mean {:.2} µs, std dev {:.2} µs over {} calls",
        latency.mean,
        latency.std_dev(),
        latency.count
    );
    println!("fallbacks: {}", report.fallbacks_total);
    for f in &report.fallbacks {
        println!(
            "  {} {} {} at {}: {}",
            f.backend, f.device, f.kernel, f.shape, f.reason
        );
    }
    if let Policy::Ab(a, b) = policy {
        let (a, b) = (a.to_string(), b.to_string());
        println!("A/B: A = {a}, B = {b}");
        println!(
            "{:<16} {:>8} {:>12} {:>8} {:>12} {:>8}",
            "shape", "A calls", "A GFLOPS", "B calls", "B GFLOPS", "B/A"
        );
        for row in report.ab_comparison(&a, &b) {
            println!(
                "{:<16} {:>8} {:>12.1} {:>8} {:>12.1} {:>8.2}",
                row.shape, row.a.count, row.a.mean, row.b.count, row.b.mean, row.b_over_a
            );
        }
    }
}

/// Measures every candidate (backend, kernel) of `target` at every shape, with a progress bar, and
/// hands each measurement to `record`. Failures are reported and counted, not fatal. Past
/// `deadline`, no new shape is started (a shape is measured whole or not at all).
fn run_plan(
    engine: &Engine,
    target: &Target,
    shapes: &[Shape],
    config: &BenchConfig,
    deadline: Option<Instant>,
    mut record: impl FnMut(Measurement),
) -> anyhow::Result<usize> {
    let plan: Vec<_> = shapes
        .iter()
        .map(|shape| {
            let problem = shape.problem();
            (
                shape,
                tilegemm::select::candidates(engine.backends(), target, &problem),
            )
        })
        .collect();
    let total: usize = plan.iter().map(|(_, pairs)| pairs.len()).sum();
    if total == 0 {
        bail!("nothing to measure: no (backend, kernel) matches and fits these shapes");
    }
    let progress = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .expect("a valid template"),
    );
    let mut failures = 0;
    for (done, (shape, pairs)) in plan.into_iter().enumerate() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            progress
                .suspend(|| eprintln!("budget spent: {done} of {} shapes measured", shapes.len()));
            break;
        }
        let problem = shape.problem();
        let mut operands = Operands::random(&problem, 42)?;
        for choice in pairs {
            let info = choice.backend.info();
            progress.set_message(format!("{} {} {shape}", info.name, choice.kernel));
            match measure(
                choice.backend.as_ref(),
                &choice.kernel,
                &problem,
                &mut operands,
                config,
            ) {
                Ok(m) => record(m),
                Err(e) => {
                    failures += 1;
                    progress.suspend(|| {
                        eprintln!("failed: {} {} {shape}: {e}", info.name, choice.kernel)
                    });
                }
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    Ok(failures)
}

fn bench_command(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let shapes = args.shape_args.list("256,512,1024");
    let reference = args
        .reference
        .as_deref()
        .map(read_reference)
        .transpose()?
        .unwrap_or_default();
    let mut engine = args.selection.engine();
    report_unavailable(&engine);
    let config = BenchConfig {
        reps: args.reps,
        budget_seconds: args.max_seconds,
        ..BenchConfig::default()
    };
    let mut measurements: Vec<Measurement> = Vec::new();
    let batches: Vec<&[Shape]> = if args.fresh_engine || args.pause > 0.0 {
        shapes.chunks(1).collect()
    } else {
        vec![&shapes]
    };
    let mut failures = 0;
    for (i, batch) in batches.into_iter().enumerate() {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(args.pause.max(0.0)));
        }
        if i > 0 && args.fresh_engine {
            drop(engine);
            engine = args.selection.engine();
        }
        failures += run_plan(
            &engine,
            &args.selection.target(),
            batch,
            &config,
            None,
            |m| measurements.push(m),
        )?;
    }
    print_bench_table(&measurements, &reference);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&measurements)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        chart(&measurements, &reference, path, &bench_title(&measurements))?;
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The reference GFLOPS at exactly this shape, if measured.
fn reference_at(reference: &[ReferencePoint], m: &Measurement) -> Option<f64> {
    reference
        .iter()
        .find(|r| (r.m, r.n, r.k) == (m.m, m.n, m.k))
        .map(|r| r.gflops)
}

fn print_bench_table(measurements: &[Measurement], reference: &[ReferencePoint]) {
    println!(
        "{:<28} {:<7} {:<7} {:<22} {:>16} {:>11} {:>10} {:>11} {:>10} {:>5} {:>7}",
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
        "% ref"
    );
    for m in measurements {
        let percent = reference_at(reference, m)
            .map(|r| format!("{:.1}", 100.0 * m.gflops / r))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<28.28} {:<7} {:<7} {:<22} {:>16} {:>11.3} {:>10.1} {:>11.3} {:>10.1} {:>5} {:>7}",
            m.device,
            m.backend,
            m.api,
            m.kernel,
            format!("{}x{}x{}", m.m, m.n, m.k),
            m.kernel_seconds * 1e3,
            m.gflops,
            m.end_to_end_seconds * 1e3,
            m.e2e_gflops,
            m.reps,
            percent
        );
    }
    for r in reference {
        let shape = format!("{}x{}x{}", r.m, r.n, r.k);
        println!(
            "{:<28.28} {:<7} {:<7} {:<22} {shape:>16} {:>11} {:>10.1}",
            r.library, "-", "-", "-", "-", r.gflops
        );
    }
}

fn bench_title(measurements: &[Measurement]) -> String {
    let gpus: std::collections::BTreeSet<&str> = measurements
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

fn chart_command(args: ChartArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let measurements: Vec<Measurement> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a bench JSON file", args.input.display()))?;
    let reference = args
        .reference
        .as_deref()
        .map(read_reference)
        .transpose()?
        .unwrap_or_default();
    chart(&measurements, &reference, &args.out, &args.title)?;
    Ok(ExitCode::SUCCESS)
}

fn tune_command(args: TuneArgs) -> anyhow::Result<ExitCode> {
    let default_shapes = if args.budget.is_some() {
        TUNE_SHAPES_BUDGETED
    } else {
        TUNE_SHAPES
    };
    let shapes = args.shape_args.list(default_shapes);
    let out = args.out.clone().unwrap_or_else(user_dir);
    let engine = args.selection.engine();
    report_unavailable(&engine);
    let target = args.selection.target();
    let config = BenchConfig {
        reps: args.reps,
        budget_seconds: args.max_seconds,
        ..BenchConfig::default()
    };
    // Start from what `out` already holds for each device, so runs accumulate.
    let mut databases: Vec<TuningDb> = Vec::new();
    for backend in engine.backends() {
        let info = backend.info();
        let db = match TuningDb::load(&out, &info.key) {
            Ok(Some(db)) => db,
            Ok(None) => TuningDb::new(info),
            Err(e) => {
                eprintln!("note: {e}; starting that device afresh");
                TuningDb::new(info)
            }
        };
        databases.push(db);
    }
    let mut measured = 0;
    let deadline = args
        .budget
        .map(|seconds| Instant::now() + std::time::Duration::from_secs_f64(seconds));
    let failures = run_plan(&engine, &target, &shapes, &config, deadline, |m| {
        if let Some(db) = databases
            .iter_mut()
            .find(|db| db.device_key == m.device_key)
        {
            db.record(&m);
            measured += 1;
        }
    })?;
    for db in databases.iter().filter(|db| !db.rows.is_empty()) {
        let path = db.save(&out)?;
        println!(
            "{}: {} measurements in {}",
            db.device,
            db.rows.len(),
            path.display()
        );
    }
    println!("tune: {measured} measurements, {failures} failed");
    // The model learns from every device that holds measurements.
    let measured_devices: Vec<TuningDb> = databases
        .into_iter()
        .filter(|db| !db.rows.is_empty())
        .collect();
    if !args.no_train {
        if let Err(e) = train_and_report(&measured_devices, 5, &out) {
            eprintln!("note: no model trained: {e:#}");
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Trains the model on `databases`, saves it into `out`, and prints its held-out quality.
fn train_and_report(
    databases: &[TuningDb],
    folds: usize,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let model = Model::train(databases, folds)?;
    let path = model.save(out)?;
    match &model.quality {
        Some(q) => {
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
        None => println!(
            "model: {} rows, too few shapes to hold any out ({})",
            model.rows,
            path.display()
        ),
    }
    Ok(())
}

fn train_command(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let databases = args
        .databases
        .iter()
        .map(|path| TuningDb::read_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    train_and_report(&databases, args.folds, &args.out)?;
    Ok(ExitCode::SUCCESS)
}

fn select_command(args: SelectArgs) -> anyhow::Result<ExitCode> {
    let engine = args.selection.engine();
    report_unavailable(&engine);
    let dirs = if args.db.is_empty() {
        Selector::default_dirs()
    } else {
        args.db.clone()
    };
    let selector = Selector::load(engine.backends(), &dirs);
    for problem in &selector.problems {
        eprintln!("note: ignored {problem}");
    }
    let problem = args.shape.problem();
    problem.extents()?;
    let selection = selector.select(&args.selection.target(), &problem)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&selection)?);
        return Ok(ExitCode::SUCCESS);
    }
    let how = match selection.source {
        Source::Database => "measured",
        Source::Model | Source::Prior => "predicted",
    };
    let describe = |c: &tilegemm::select::Candidate| {
        let gflops = c
            .predicted_gflops
            .map(|g| format!(", {g:.1} GFLOPS {how}"))
            .unwrap_or_default();
        format!(
            "{} on {} ({}) {}{gflops}",
            c.kernel, c.backend, c.api, c.device
        )
    };
    println!(
        "{}: {} [from the {:?}]",
        args.shape,
        describe(&selection.chosen),
        selection.source
    );
    if let Some(runner_up) = &selection.runner_up {
        println!("runner-up: {}", describe(runner_up));
    }
    Ok(ExitCode::SUCCESS)
}
