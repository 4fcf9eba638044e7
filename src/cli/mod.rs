//! The commands of the `tilegemm` binary, one module per command or group of commands. Each takes
//! its parsed arguments, calls the library, and prints; `main.rs` only parses and dispatches.

mod args;
pub mod bench;
mod chart;
pub mod devices;
mod progress;
pub mod report;
pub mod run;
mod table;
pub mod tune;
pub mod verify;

use std::process::ExitCode;
use tilegemm::Engine;

/// Tells the user about backends that were looked for and not found.
fn report_unavailable(engine: &Engine) {
    for missing in engine.unavailable() {
        eprintln!("note: {} unavailable: {}", missing.backend, missing.reason);
    }
}

/// Exit status 0 when every case passed or every measurement succeeded, else 1.
fn exit_code(all_passed: bool) -> ExitCode {
    if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
