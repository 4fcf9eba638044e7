//! `tilegemm run`: one GEMM through the engine, timed and checked against the f64 reference.

use super::args::{Scalars, Selection};
use super::report::print_telemetry;
use clap::Args;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::process::ExitCode;
use std::time::Instant;
use tilegemm::problem::check_host_memory;
use tilegemm::reference::{max_relative_error, reference_gemm};
use tilegemm::telemetry::median;
use tilegemm::verify::{random_inputs, tolerance};
use tilegemm::{Policy, Shape, Transpose};

#[derive(Args)]
pub struct RunArgs {
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

pub fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let engine = args.selection.engine();
    super::report_unavailable(&engine);
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
        )
        .with_packed_batch(args.scalars.batch);
    // The operands, C's copy and the f64 reference (two floats' worth per element of C at most).
    check_host_memory(&problem, 4)?;
    let target = args.selection.target();
    let selection = engine.select(&target, &problem)?;
    let (a, b, c_in) = random_inputs(&problem, &mut SmallRng::from_os_rng());
    let mut c = c_in.clone();
    // The first call (also the warm-up: validates, compiles, allocates).
    let first = engine.gemm_on(&target, &problem, &a, &b, &mut c)?;
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
    let median = median(&mut times);
    let reference = reference_gemm(&problem, &a, &b, &c_in)?;
    let error = max_relative_error(&problem, &c, &reference);
    let pass = error < tolerance(problem.k);
    println!(
        "{} on {} ({}) {}: {} in {:.3} ms (median of {}, end to end) = {:.1} GFLOPS; max_rel_error {:.2e} ({})",
        choice.kernel,
        info.backend,
        info.api,
        info.name,
        super::shape_label(problem.batch, shape.m, shape.n, shape.k),
        median * 1e3,
        times.len(),
        problem.flops() / median / 1e9,
        error,
        if pass { "pass" } else { "FAIL" }
    );
    println!(
        "policy {}; selector: {} from the {:?}; first call ran {} on {} {}",
        args.policy,
        selection.chosen.kernel,
        selection.source,
        first.kernel,
        first.backend.info().backend,
        first.backend.info().name
    );
    let online = engine.telemetry().online;
    if online.tracked_calls > 0 {
        println!(
            "on-line tuning: {} of {} timed calls ran a rival; {} decision settled, {} changed",
            online.rival_calls, online.tracked_calls, online.settled, online.changed
        );
        let decision = engine.select(&target, &problem)?;
        println!(
            "decision after the calls: {} on {} {} from the {:?}",
            decision.chosen.kernel,
            decision.chosen.backend,
            decision.chosen.device,
            decision.source
        );
    }
    let telemetry = engine.telemetry();
    if matches!(args.policy, Policy::Ab(..)) || telemetry.fallbacks_total > 0 {
        print_telemetry(&telemetry, &args.policy);
    }
    Ok(super::exit_code(pass))
}
