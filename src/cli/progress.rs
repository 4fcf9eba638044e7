//! Progress on stderr: indicatif bars (hidden when stderr is not a terminal), and the events of a
//! measuring plan as a bar plus one line per failure.

use indicatif::{ProgressBar, ProgressStyle};
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
}

impl PlanProgress {
    /// Nothing is drawn until the plan is made.
    pub fn new() -> Self {
        PlanProgress {
            bar: ProgressBar::hidden(),
        }
    }

    pub fn show(&mut self, event: PlanEvent<'_>) {
        match event {
            PlanEvent::Planned { measurements } => self.bar = bar(measurements),
            PlanEvent::Started {
                device,
                kernel,
                shape,
            } => self.bar.set_message(format!("{device} {kernel} {shape}")),
            PlanEvent::Measured(_) => self.bar.inc(1),
            PlanEvent::Failed(failure) => {
                self.bar.suspend(|| {
                    eprintln!(
                        "failed: {} {} {}: {}",
                        failure.device, failure.kernel, failure.shape, failure.error
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
