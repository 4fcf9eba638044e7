//! Progress on stderr: indicatif bars on a terminal; elsewhere (a log, a pipe, CI) one line per
//! measurement, so a long run never looks hung. Failures and the budget's end get lines of their own.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use tilegemm::tune::PlanEvent;

/// A bar of `len` steps, with the elapsed time and a message.
pub fn bar(len: usize) -> ProgressBar {
    ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .expect("a valid template"),
    )
}

/// Shows the events of `tune::measure_shapes`: a bar over the plan's measurements with the one
/// under way, and on their own lines each failure and the budget's end.
pub struct PlanProgress {
    bar: ProgressBar,
    /// Lines instead of a bar: stderr is not a terminal.
    lines: bool,
    planned: usize,
    done: usize,
}

impl PlanProgress {
    /// Nothing is drawn until the plan is made.
    pub fn new() -> Self {
        PlanProgress {
            bar: ProgressBar::hidden(),
            lines: !std::io::stderr().is_terminal(),
            planned: 0,
            done: 0,
        }
    }

    pub fn show(&mut self, event: PlanEvent<'_>) {
        match event {
            PlanEvent::Planned { measurements } => {
                self.planned = measurements;
                if !self.lines {
                    self.bar = bar(measurements);
                }
            }
            PlanEvent::Started {
                device,
                kernel,
                shape,
            } => self.bar.set_message(format!("{device} {kernel} {shape}")),
            PlanEvent::Measured(m) => {
                self.done += 1;
                if self.lines {
                    eprintln!(
                        "[{}/{}] {} {} {}x{}x{}: {} GFLOPS end to end",
                        self.done,
                        self.planned,
                        m.device,
                        m.kernel,
                        m.m,
                        m.n,
                        m.k,
                        super::gflops(m.e2e_gflops)
                    );
                }
                self.bar.inc(1)
            }
            PlanEvent::Failed(failure) => {
                self.done += 1;
                self.bar.suspend(|| {
                    eprintln!(
                        "failed: {} {} {}: {}",
                        failure.device, failure.kernel, failure.shape, failure.error
                    )
                });
                self.bar.inc(1);
            }
            PlanEvent::Skipped(skipped) => {
                self.done += 1;
                self.bar.suspend(|| {
                    eprintln!(
                        "skipped: {} {} {}: ≈ {:.1} s per call, too slow for the budget of one measurement (--max-seconds)",
                        skipped.device, skipped.kernel, skipped.shape, skipped.predicted_seconds
                    )
                });
                self.bar.inc(1);
            }
            PlanEvent::BudgetSpent { measured, shapes } => self
                .bar
                .suspend(|| eprintln!("budget spent: {measured} of {shapes} shapes measured")),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
