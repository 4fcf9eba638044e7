//! `tilegemm report`: GEMMs through the engine under a policy, then its telemetry.

use super::args::{Selection, ShapeArgs};
use super::progress::bar;
use super::table::table;
use anyhow::Context;
use clap::Args;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tilegemm::telemetry::Report;
use tilegemm::verify::random_inputs;
use tilegemm::{GemmProblem, Policy, Shape};

#[derive(Args)]
pub struct ReportArgs {
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

pub fn report_command(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let shapes = args.shape_args.list(vec![
        Shape::new(64, 64, 64),
        Shape::new(128, 128, 128),
        Shape::new(256, 256, 256),
        Shape::new(64, 256, 512),
    ]);
    let engine = args.selection.engine();
    super::report_unavailable(&engine);
    engine.set_policy(args.policy.clone())?;
    let target = args.selection.target();
    let problems: Vec<GemmProblem> = shapes.iter().map(|s| s.problem()).collect();
    for problem in &problems {
        problem.extents()?;
    }
    let progress = bar(problems.len() * (args.warmup + args.calls));
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
pub fn print_telemetry(report: &Report, policy: &Policy) {
    let mut kernels = table(
        &[
            "backend",
            "device",
            "kernel",
            "calls",
            "failures",
            "mean GFLOPS",
            "std dev",
        ],
        3,
    );
    for k in &report.kernels {
        kernels.add_row(vec![
            k.backend.clone(),
            k.device.clone(),
            k.kernel.clone(),
            k.calls.to_string(),
            k.failures.to_string(),
            super::gflops(k.gflops.mean),
            format!("{:.1}", k.gflops.std_dev()),
        ]);
    }
    println!("{kernels}");
    let latency = &report.selection_latency_us;
    println!(
        "selection latency: mean {:.2} µs, std dev {:.2} µs over {} calls",
        latency.mean,
        latency.std_dev(),
        latency.count
    );
    let online = &report.online;
    println!(
        "on-line tuning: {} calls timed ({:.3} s), {} ran a rival ({:.3} s, {:.1}% of the timed time); {} buckets settled, {} decisions changed",
        online.tracked_calls,
        online.tracked_seconds,
        online.rival_calls,
        online.rival_seconds,
        100.0 * online.rival_seconds / online.tracked_seconds.max(1e-12),
        online.settled,
        online.changed
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
        let mut arms = table(
            &["shape", "A calls", "A GFLOPS", "B calls", "B GFLOPS", "B/A"],
            1,
        );
        for row in report.ab_comparison(&a, &b) {
            arms.add_row(vec![
                row.shape,
                row.a.count.to_string(),
                super::gflops(row.a.mean),
                row.b.count.to_string(),
                super::gflops(row.b.mean),
                super::gflops(row.b_over_a),
            ]);
        }
        println!("{arms}");
    }
}
