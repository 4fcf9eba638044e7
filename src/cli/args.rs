//! The argument groups that several commands share: which devices and kernels, the scalars and
//! transposes of a problem, and the shapes to run on.

use clap::Args;
use tilegemm::select::online::OnlineTuning;
use tilegemm::{BackendKind, Engine, EngineOptions, Shape, Target};

/// Which devices and kernels a command uses.
#[derive(Args)]
pub struct Selection {
    /// Only this backend: cpu, wgpu or ocl.
    #[arg(long)]
    pub backend: Option<BackendKind>,
    /// Only devices whose name contains this (case-insensitive).
    #[arg(long)]
    pub device: Option<String>,
    /// Only this kernel: native (CPU), tile16, tile20, tile24, or a register-blocked member such as
    /// rb128x64x16_8x4_p (`tilegemm devices` lists every device's kernels).
    #[arg(long)]
    pub kernel: Option<String>,
    /// On-line tuning of the engine's adaptive policy from real calls: off, on or eager.
    #[arg(long, default_value = "on")]
    pub online: OnlineTuning,
}

impl Selection {
    pub fn target(&self) -> Target {
        Target {
            backend: self.backend,
            device: self.device.clone(),
            kernel: self.kernel.clone(),
        }
    }

    /// Opens only the backends the selection can use.
    pub fn engine(&self) -> Engine {
        Engine::with_options(EngineOptions {
            backends: BackendKind::ALL
                .into_iter()
                .filter(|&kind| self.backend.is_none_or(|b| b == kind))
                .collect(),
            online: self.online,
            ..EngineOptions::default()
        })
    }
}

/// α, β, transposes and batch of a problem.
#[derive(Args)]
pub struct Scalars {
    /// Use op(A) = Aᵀ.
    #[arg(long)]
    pub trans_a: bool,
    /// Use op(B) = Bᵀ.
    #[arg(long)]
    pub trans_b: bool,
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    pub beta: Option<f32>,
    /// Products per call: a strided batch of this many GEMMs of the shape, stored one after the
    /// other (1: a plain GEMM).
    #[arg(long, default_value_t = 1, value_parser = batch())]
    pub batch: usize,
}

/// The shapes a command runs on.
#[derive(Args)]
pub struct ShapeArgs {
    /// Square sizes N (N×N×N), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<usize>,
    /// Shapes MxNxK (or N), comma-separated; with --sizes, both are used; with neither, the
    /// command's default set.
    #[arg(long, value_delimiter = ',')]
    pub shapes: Vec<Shape>,
}

impl ShapeArgs {
    /// The squares of `--sizes` and the shapes of `--shapes`, or `default` when both are empty.
    pub fn list(&self, default: Vec<Shape>) -> Vec<Shape> {
        let mut list: Vec<Shape> = self.sizes.iter().map(|&n| Shape::new(n, n, n)).collect();
        list.extend(&self.shapes);
        if list.is_empty() {
            list = default;
        }
        list
    }
}

/// A number of seconds on the command line: finite and not negative (`Duration` panics on
/// anything else).
pub fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        Ok(_) => Err(format!(
            "{text} is not a number of seconds (finite, at least 0)"
        )),
        Err(e) => Err(format!("{text}: {e}")),
    }
}

/// A batch count on the command line: 1 to 2²⁴.
pub fn batch() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=1 << 24)
}

/// Padding of leading dimensions on the command line: at most 2²⁰ elements, so padded sizes
/// cannot overflow.
pub fn ld_pad() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(0..=1 << 20)
}
