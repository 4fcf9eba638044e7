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

/// Checks, before any measuring, that an output file can be written where `path` says: its folder
/// exists and is a folder (so hours of measurements are not lost to a typo at the end).
fn check_output(path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    anyhow::ensure!(
        folder.is_dir(),
        "cannot write {}: {} is not a folder",
        path.display(),
        folder.display()
    );
    anyhow::ensure!(
        !path.is_dir(),
        "cannot write {}: it is a folder",
        path.display()
    );
    Ok(())
}

/// A throughput (or a ratio) with three significant digits: lavapipe's 0.031 GFLOPS must not print
/// as 0.0, nor a B/A of 0.004 as 0.00.
fn gflops(value: f64) -> String {
    let digits = match value.abs() {
        v if v >= 100.0 || v == 0.0 => 0,
        v if v >= 10.0 => 1,
        v if v >= 1.0 => 2,
        v => (2.0 - v.log10().floor()).min(9.0) as usize,
    };
    format!("{value:.digits$}")
}

/// A problem's shape as the tables print it: `MxNxK`, or `B×MxNxK` for a batch of B products.
fn shape_label(batch: usize, m: usize, n: usize, k: usize) -> String {
    if batch == 1 {
        format!("{m}x{n}x{k}")
    } else {
        format!("{batch}×{m}x{n}x{k}")
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

#[cfg(test)]
mod tests {
    #[test]
    fn throughputs_keep_three_significant_digits() {
        let shown: Vec<String> = [36755.9, 48.27, 3.704, 0.0314, 0.004, 0.0]
            .into_iter()
            .map(super::gflops)
            .collect();
        assert_eq!(shown, ["36756", "48.3", "3.70", "0.0314", "0.00400", "0"]);
    }
}
