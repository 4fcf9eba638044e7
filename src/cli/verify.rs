//! `tilegemm verify`: every selected (backend, kernel) against the f64 reference, C poisoned first.

use super::args::{Scalars, Selection};
use super::progress::bar;
use super::table::table;
use anyhow::{bail, Context};
use clap::Args;
use std::process::ExitCode;
use tilegemm::select::{candidates, why_no_candidate};
use tilegemm::verify::{verify, VerifyCase, VerifyReport};
use tilegemm::{Shape, Transpose};

#[derive(Args)]
pub struct VerifyArgs {
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
    /// Extra elements at the end of every stored row (exercises leading dimensions; at most 2²⁰).
    #[arg(long, default_value_t = 0, value_parser = super::args::ld_pad())]
    ld_pad: usize,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn verify_command(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let engine = args.selection.engine();
    super::report_unavailable(&engine);
    let target = args.selection.target();
    // Without explicit scalars, check both the plain product (β = 0: C never read) and the general case.
    let scalars = match (args.scalars.alpha, args.scalars.beta) {
        (None, None) => vec![(1.0, 0.0), (0.5, 2.0)],
        (alpha, beta) => vec![(alpha.unwrap_or(1.0), beta.unwrap_or(0.0))],
    };
    let mut plan = Vec::new();
    for &shape in &args.shapes {
        for &(alpha, beta) in &scalars {
            let case = VerifyCase {
                shape,
                trans_a: Transpose::from_bool(args.scalars.trans_a),
                trans_b: Transpose::from_bool(args.scalars.trans_b),
                alpha,
                beta,
                ld_pad: args.ld_pad,
                batch: args.scalars.batch,
            };
            let problem = case.problem();
            problem
                .extents()
                .with_context(|| format!("shape {shape}"))?;
            let choices = candidates(engine.backends(), &target, &problem);
            if choices.is_empty() {
                // Say why, in the words of the device that would have run it.
                bail!(
                    "nothing can run {shape}: {}",
                    why_no_candidate(engine.backends(), &target, &problem)
                );
            }
            plan.extend(choices.into_iter().map(|choice| (case, choice)));
        }
    }
    let progress = bar(plan.len());
    let reports: Vec<VerifyReport> = plan
        .iter()
        .map(|(case, choice)| {
            progress.set_message(format!(
                "{} {} {}",
                choice.backend.info().name,
                choice.kernel,
                case.shape
            ));
            let report = verify(choice.backend.as_ref(), &choice.kernel, case);
            progress.inc(1);
            report
        })
        .collect();
    progress.finish_and_clear();
    let failed = reports.iter().filter(|r| !r.pass).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_reports(&reports);
        println!(
            "verify: {} passed, {} failed",
            reports.len() - failed,
            failed
        );
    }
    Ok(super::exit_code(failed == 0))
}

fn print_reports(reports: &[VerifyReport]) {
    let mut table = table(
        &[
            "result",
            "backend",
            "device",
            "kernel",
            "shape",
            "op",
            "α",
            "β",
            "max_rel_error",
        ],
        4,
    );
    for r in reports {
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
        table.add_row(vec![
            if r.pass { "ok" } else { "FAIL" }.to_string(),
            r.backend.clone(),
            r.device.clone(),
            r.kernel.clone(),
            super::shape_label(r.batch, r.m, r.n, r.k),
            format!(
                "{}{}",
                if r.trans_a { "T" } else { "N" },
                if r.trans_b { "T" } else { "N" }
            ),
            r.alpha.to_string(),
            r.beta.to_string(),
            format!("{error}{padding}"),
        ]);
    }
    println!("{table}");
}
