//! The one error type of the library: every failure is a typed variant with a message a user can act
//! on, and the foreign error underneath (io, JSON, wgpu, OpenCL) kept as its [`std::error::Error::source`].

use std::fmt;
use std::path::Path;

/// One of the three matrices of `C ← α·op(A)·op(B) + β·C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// The left factor.
    A,
    /// The right factor.
    B,
    /// The accumulated output.
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

/// A foreign error kept as the source of one of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in tilegemm. On any error, C is left untouched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A leading dimension is smaller than the row it has to hold.
    #[error("leading dimension of {operand} is {ld}, but its stored rows have {min} elements")]
    LeadingDimension {
        /// The matrix whose leading dimension is too small.
        operand: Operand,
        /// The leading dimension given.
        ld: usize,
        /// The smallest leading dimension that holds a stored row.
        min: usize,
    },

    /// A slice is shorter than the problem's layout needs.
    #[error("{operand} has {actual} elements, but the problem needs at least {required}")]
    LengthMismatch {
        /// The matrix whose slice is short.
        operand: Operand,
        /// Elements the problem's layout spans.
        required: usize,
        /// Elements the slice has.
        actual: usize,
    },

    /// The C matrices of a batched problem overlap: each must own its elements.
    #[error(
        "the {batch} matrices of C overlap: batch stride {stride} is below the {span} elements one spans \
         (and the matrices do not interleave within C's rows either)"
    )]
    BatchOverlap {
        /// Matrices in the batch.
        batch: usize,
        /// The batch stride of C, in elements.
        stride: usize,
        /// Elements one matrix of C spans.
        span: usize,
    },

    /// A size computation does not fit in the machine's integers.
    #[error("problem too large: {what} overflows")]
    SizeOverflow {
        /// The quantity that overflowed.
        what: String,
    },

    /// The problem exceeds a limit of the device that would run it.
    #[error("{device}: the problem needs {required} for {limit}, the device allows {available}")]
    DeviceLimit {
        /// The device's name.
        device: String,
        /// The limit, in the API's words.
        limit: &'static str,
        /// What the problem needs.
        required: u64,
        /// What the device allows.
        available: u64,
    },

    /// The device could not allocate memory for this problem (another, smaller one may still fit).
    #[error("{device}: out of memory allocating {bytes} bytes for {what}")]
    OutOfMemory {
        /// The device's name.
        device: String,
        /// The size of the failed allocation.
        bytes: u64,
        /// What the allocation was for.
        what: String,
        /// The API's own error.
        #[source]
        source: Option<BoxError>,
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
        /// The kernel's catalogue name.
        kernel: String,
        /// The device's name.
        device: String,
        /// The compiler's log.
        log: String,
    },

    /// The GPU API reported an error (validation, device lost, mapping).
    #[error("{device}: {message}")]
    Device {
        /// The device's name.
        device: String,
        /// What tilegemm was doing, and what went wrong.
        message: String,
        /// The API's own error.
        #[source]
        source: Option<BoxError>,
    },

    /// The device stopped working (lost, reset, out of resources): nothing more runs on it in this
    /// process; the engine drops it and falls back to the other devices.
    #[error("{device} was lost: {message}")]
    DeviceLost {
        /// The device's name.
        device: String,
        /// What tilegemm was doing, and what the API said.
        message: String,
        /// The API's own error.
        #[source]
        source: Option<BoxError>,
    },

    /// The device did not finish within the time allowed.
    #[error("{device}: no result after {seconds:.0} s")]
    Timeout {
        /// The device's name.
        device: String,
        /// How long tilegemm waited.
        seconds: f64,
    },

    /// A kernel ran but gave a wrong result on the engine's validation probe. The probe's inputs
    /// come from `seed` ([`crate::verify::verify_seeded`] reproduces them).
    #[error("kernel '{kernel}' on {device} failed validation (probe seed {seed}): {reason}")]
    Validation {
        /// The kernel's catalogue name.
        kernel: String,
        /// The device's name.
        device: String,
        /// How the result was wrong.
        reason: String,
        /// The seed of the probe's random inputs.
        seed: u64,
    },

    /// A file could not be read, parsed or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
        /// The io or JSON error underneath.
        #[source]
        source: Option<BoxError>,
    },

    /// A device-resident buffer was passed to a device it does not belong to, or is too small.
    #[error("device buffer: {0}")]
    Buffer(String),
}

impl Error {
    /// A [`Error::File`] about `path`, with the foreign error underneath where there is one.
    pub fn file(path: &Path, message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::File {
            path: path.display().to_string(),
            message: message.into(),
            source,
        }
    }

    /// A [`Error::Device`] of `device`: what was being done, and the API's error.
    pub fn device(
        device: &str,
        what: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Device {
            device: device.to_string(),
            message: format!("{what}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// Who is to blame, which decides what the engine does next (see [`Blame`]).
    pub fn blame(&self) -> Blame {
        match self {
            Error::KernelBuild { .. }
            | Error::Device { .. }
            | Error::Timeout { .. }
            | Error::Validation { .. } => Blame::Kernel,
            Error::DeviceLimit { .. } | Error::OutOfMemory { .. } => Blame::Problem,
            Error::DeviceLost { .. } => Blame::Device,
            Error::LeadingDimension { .. }
            | Error::LengthMismatch { .. }
            | Error::BatchOverlap { .. }
            | Error::SizeOverflow { .. }
            | Error::ShapeMismatch(_)
            | Error::NotFound(_)
            | Error::File { .. }
            | Error::Buffer(_) => Blame::Caller,
        }
    }
}

/// What a failure says about the (device, kernel) that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The call itself is wrong (lengths, layouts, names): no candidate can run it.
    Caller,
    /// This problem does not fit this device (a limit, an allocation): another candidate may run
    /// it, and this kernel stays usable for other problems.
    Problem,
    /// The kernel failed (build, device error, time-out, wrong result): it is disabled.
    Kernel,
    /// The device failed as a whole (lost): every kernel of it is skipped from then on.
    Device,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
