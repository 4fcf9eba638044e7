//! `tilegemm`: list devices, verify kernels against the f64 reference, run, benchmark and tune GEMMs.
//!
//! This file parses the command line and hands each command to its module under `cli/`.

mod cli;

use clap::{Parser, Subcommand};
use cli::bench::{bench_command, chart_command, BenchArgs, ChartArgs};
use cli::devices::devices_command;
use cli::report::{report_command, ReportArgs};
use cli::run::{run_command, RunArgs};
use cli::tune::{select_command, train_command, tune_command, SelectArgs, TrainArgs, TuneArgs};
use cli::verify::{verify_command, VerifyArgs};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tilegemm",
    version,
    about = "Single-precision GEMM on every GPU API this host has",
    after_help = "Environment:
  TILEGEMM_CACHE   the user cache (calibrations, tuning rows, models); default
                   $XDG_CACHE_HOME/tilegemm, else ~/.cache/tilegemm
  TILEGEMM_FONT    a TrueType font for PNG/SVG charts (else one is looked for)
  WGPU_BACKEND     the wgpu APIs to open, e.g. vulkan (default: Vulkan, Metal, DX12)
  RUST_LOG         log level of the library, e.g. info (calibrations, retraining)
  XDG_RUNTIME_DIR  where unset, tilegemm points it at <cache>/runtime for the
                   Vulkan loader (whose libwayland otherwise prints an error)
  TILEGEMM_REQUIRE_WGPU, TILEGEMM_REQUIRE_OCL   (tests) fail when that device is missing

Exit status: 0 success; 1 a check failed (verify) or a measurement failed;
2 bad arguments, or an error (one line on stderr)."
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
        /// Also write every GPU kernel's sources into this folder (`<kernel>.wgsl`, `<kernel>.cl`)
        /// and, where a device's API hands back what its compiler made (NVIDIA's OpenCL: PTX, for
        /// `ptxas -v`), `<device key>/<kernel>.ptx` (else `.bin`: a program binary, or on Vulkan
        /// the driver's pipeline cache of that kernel alone).
        #[arg(long, value_name = "DIR")]
        emit: Option<std::path::PathBuf>,
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

/// Gives the Vulkan loader's window-system libraries a runtime folder when the session has none
/// (a container, a CI job, `ssh` without a login session): libwayland otherwise prints
/// "error: XDG_RUNTIME_DIR is invalid or not set" at every start, which reads as tilegemm's own
/// error. The folder is private (0700) under the user cache; without a user cache nothing is set.
fn give_the_loader_a_runtime_dir() {
    let set = std::env::var_os("XDG_RUNTIME_DIR")
        .is_some_and(|dir| dir.to_string_lossy().starts_with('/'));
    let Some(cache) = tilegemm::select::db::user_dir().filter(|_| !set) else {
        return;
    };
    let dir = std::path::absolute(cache.join("runtime")).unwrap_or_default();
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    if dir.is_absolute() && builder.create(&dir).is_ok() {
        // Still single-threaded: nothing reads the environment concurrently.
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

fn main() -> ExitCode {
    give_the_loader_a_runtime_dir();
    // wgpu_hal reports a missing Vulkan driver as errors; tilegemm says so itself, in one line.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal=off"),
    )
    .init();
    let outcome = match Cli::parse().command {
        Command::Devices { json, emit } => devices_command(json, emit.as_deref()),
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
