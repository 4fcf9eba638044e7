//! The one error type of the library: every failure is a typed variant with a message a user can act on.

use std::fmt;

/// One of the three matrices of `C ← α·op(A)·op(B) + β·C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    A,
    B,
    C,
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operand::A => "A",
            Operand::B => "B",
            Operand::C => "C",
        })
    }
}

/// Everything that can go wrong in tilegemm. On any error, C is left untouched.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A leading dimension is smaller than the row it has to hold.
    #[error("leading dimension of {operand} is {ld}, but its stored rows have {min} elements")]
    LeadingDimension {
        operand: Operand,
        ld: usize,
        min: usize,
    },

    /// A slice is shorter than the problem's layout needs.
    #[error("{operand} has {actual} elements, but the problem needs at least {required}")]
    LengthMismatch {
        operand: Operand,
        required: usize,
        actual: usize,
    },

    /// A size computation does not fit in the machine's integers.
    #[error("problem too large: {what} overflows")]
    SizeOverflow { what: String },

    /// The problem exceeds a limit of the device that would run it.
    #[error("{device}: the problem needs {required} for {limit}, the device allows {available}")]
    DeviceLimit {
        device: String,
        limit: &'static str,
        required: u64,
        available: u64,
    },

    /// Two arrays whose shapes do not multiply.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),

    /// No backend, device or kernel matches what was asked for.
    #[error("{0}")]
    NotFound(String),

    /// A kernel's source failed to compile on a device; `log` is the compiler's message.
    #[error("kernel '{kernel}' failed to compile on {device}:\n{log}")]
    KernelBuild {
        kernel: String,
        device: String,
        log: String,
    },

    /// The GPU API reported an error (validation, out of memory, device lost, mapping).
    #[error("{device}: {message}")]
    Device { device: String, message: String },

    /// The device did not finish within the time allowed.
    #[error("{device}: no result after {seconds:.0} s")]
    Timeout { device: String, seconds: f64 },

    /// A kernel ran but gave a wrong result on the engine's validation probe.
    #[error("kernel '{kernel}' on {device} failed validation: {reason}")]
    Validation {
        kernel: String,
        device: String,
        reason: String,
    },

    /// A file could not be read, parsed or written.
    #[error("{path}: {message}")]
    File { path: String, message: String },

    /// A device-resident buffer was passed to a device it does not belong to, or is too small.
    #[error("device buffer: {0}")]
    Buffer(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
