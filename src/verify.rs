//! Correctness checks: run a (backend, kernel) on fresh random inputs with C poisoned, and judge it
//! against the f64 reference (DESIGN.md's protocol).

use crate::backend::Backend;
use crate::error::Result;
use crate::problem::{GemmProblem, Shape, Transpose};
use crate::reference::{max_relative_error, reference_gemm};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

/// Everything about one check but the device: shape, transposes, scalars and layout padding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VerifyCase {
    /// Sizes M×N×K.
    pub shape: Shape,
    /// Whether A is stored transposed.
    pub trans_a: Transpose,
    /// Whether B is stored transposed.
    pub trans_b: Transpose,
    /// α, the scale of op(A)·op(B).
    pub alpha: f32,
    /// β, the scale of the incoming C (0: C is not read, so it starts as NaN).
    pub beta: f32,
    /// Extra elements at the end of every stored row of A, B and C (0 = packed).
    pub ld_pad: usize,
    /// Products in a strided batch (1: one GEMM); their matrices lie `ld_pad` elements beyond
    /// packed apart.
    pub batch: usize,
}

impl VerifyCase {
    /// The packed, untransposed case with α = 1 and β = 0.
    pub fn new(shape: Shape) -> Self {
        VerifyCase {
            shape,
            trans_a: Transpose::No,
            trans_b: Transpose::No,
            alpha: 1.0,
            beta: 0.0,
            ld_pad: 0,
            batch: 1,
        }
    }

    /// The GEMM of this case, every leading dimension (and batch stride) padded by `ld_pad`.
    pub fn problem(&self) -> GemmProblem {
        let packed = self
            .shape
            .problem()
            .with_transpose(self.trans_a, self.trans_b)
            .with_scalars(self.alpha, self.beta);
        let padded = packed.with_leading_dims(
            packed.lda() + self.ld_pad,
            packed.ldb() + self.ld_pad,
            packed.ldc() + self.ld_pad,
        );
        let strides = padded.with_packed_batch(self.batch);
        padded.with_batch(
            self.batch,
            strides.stride_a() + self.ld_pad,
            strides.stride_b() + self.ld_pad,
            strides.stride_c() + self.ld_pad,
        )
    }
}

/// The outcome of one check. `max_rel_error` is `max|C − R| / max|R|` (None when the run failed
/// or C holds a non-finite value).
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The backend of the device checked (`cpu`, `wgpu`, `ocl`).
    pub backend: String,
    /// The API underneath the backend (`vulkan`, `metal`, `dx12`, `opencl`, `native`).
    pub api: String,
    /// The device's name, as its API reports it.
    pub device: String,
    /// The checked kernel's catalogue name.
    pub kernel: String,
    /// Rows of op(A) and of C.
    pub m: usize,
    /// Columns of op(B) and of C.
    pub n: usize,
    /// Depth of the product: columns of op(A), rows of op(B).
    pub k: usize,
    /// Whether A was stored transposed.
    pub trans_a: bool,
    /// Whether B was stored transposed.
    pub trans_b: bool,
    /// α, the scale of op(A)·op(B).
    pub alpha: f32,
    /// β, the scale of the incoming C.
    pub beta: f32,
    /// Extra elements at the end of every stored row of A, B and C (0 = packed).
    pub ld_pad: usize,
    /// Products in the strided batch.
    pub batch: usize,
    /// The seed of the random inputs ([`verify_seeded`] reproduces them).
    pub seed: u64,
    /// `max|C − R| / max|R|` against the f64 reference R; None when the run failed or C holds a
    /// non-finite value.
    pub max_rel_error: Option<f64>,
    /// The largest relative error that passes, from K ([`tolerance`]).
    pub tolerance: f64,
    /// Whether every element of C outside the m×n results (padding between rows and matrices)
    /// kept its poison.
    pub padding_intact: bool,
    /// Whether the error is below the tolerance and the padding is intact.
    pub pass: bool,
    /// Wall time of the call, first-use compilation included.
    pub seconds: f64,
    /// Why the run (or the reference) failed; None when it ran.
    pub error: Option<String>,
}

/// The largest relative error that passes: 1e-4 for K ≤ 4096, growing as √K beyond (the typical
/// growth of f32 rounding in a K-term sum).
pub fn tolerance(k: usize) -> f64 {
    1e-4 * (k as f64 / 4096.0).sqrt().max(1.0)
}

/// Fills `values` with uniform random numbers in [−1, 1].
pub fn fill_random(rng: &mut impl Rng, values: &mut [f32]) {
    values
        .iter_mut()
        .for_each(|x| *x = rng.random_range(-1.0..=1.0));
}

/// Random inputs for `problem`: A and B random where the problem reads them and NaN in their
/// padding (between rows and between a batch's matrices); C random where β ≠ 0 reads it and NaN
/// everywhere else, so an element the kernel fails to write, or writes from padding, shows up as
/// NaN.
pub fn random_inputs(problem: &GemmProblem, rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let extents = problem.extents().expect("verify cases are valid problems");
    let (mut a, mut b, mut c) = (
        vec![f32::NAN; extents.a],
        vec![f32::NAN; extents.b],
        vec![f32::NAN; extents.c],
    );
    let (ar, ac) = problem.stored_a();
    let (br, bc) = problem.stored_b();
    for index in 0..problem.batch {
        let (a_at, b_at, c_at) = problem.offsets(index);
        fill_rows(rng, &mut a[a_at..], ar, ac, problem.lda());
        fill_rows(rng, &mut b[b_at..], br, bc, problem.ldb());
        if problem.beta != 0.0 {
            fill_rows(rng, &mut c[c_at..], problem.m, problem.n, problem.ldc());
        }
    }
    (a, b, c)
}

/// Fills the first `cols` elements of `rows` rows, `ld` apart, with random numbers.
fn fill_rows(rng: &mut impl Rng, data: &mut [f32], rows: usize, cols: usize, ld: usize) {
    for row in 0..rows {
        fill_random(rng, &mut data[row * ld..row * ld + cols]);
    }
}

/// Runs `kernel` of `backend` on `case` with fresh random data and judges it.
pub fn verify(backend: &dyn Backend, kernel: &str, case: &VerifyCase) -> VerifyReport {
    verify_seeded(backend, kernel, case, rand::random())
}

/// As [`verify`], on the inputs drawn from `seed`: the same seed gives the same inputs, so a
/// failure can be reproduced. A run that fails is reported in `error`.
pub fn verify_seeded(
    backend: &dyn Backend,
    kernel: &str,
    case: &VerifyCase,
    seed: u64,
) -> VerifyReport {
    let mut report = VerifyReport::new(backend, kernel, case, seed);
    if let Err(e) = judge(backend, kernel, case, &mut report) {
        report.error = Some(e.to_string());
    }
    report
}

/// As [`verify_seeded`], with a run that fails returned as its error (for callers that act on
/// what failed).
pub fn verify_checked(
    backend: &dyn Backend,
    kernel: &str,
    case: &VerifyCase,
    seed: u64,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::new(backend, kernel, case, seed);
    judge(backend, kernel, case, &mut report)?;
    Ok(report)
}

impl VerifyReport {
    /// The report of a check not yet run.
    fn new(backend: &dyn Backend, kernel: &str, case: &VerifyCase, seed: u64) -> Self {
        let problem = case.problem();
        let info = backend.info();
        VerifyReport {
            backend: info.backend.to_string(),
            api: info.api.clone(),
            device: info.name.clone(),
            kernel: kernel.to_string(),
            m: problem.m,
            n: problem.n,
            k: problem.k,
            trans_a: problem.trans_a.is_transposed(),
            trans_b: problem.trans_b.is_transposed(),
            alpha: problem.alpha,
            beta: problem.beta,
            ld_pad: case.ld_pad,
            batch: problem.batch,
            seed,
            max_rel_error: None,
            tolerance: tolerance(problem.k),
            padding_intact: false,
            pass: false,
            seconds: 0.0,
            error: None,
        }
    }
}

/// Runs the check of `report` and fills in its outcome.
fn judge(
    backend: &dyn Backend,
    kernel: &str,
    case: &VerifyCase,
    report: &mut VerifyReport,
) -> Result<()> {
    let problem = case.problem();
    let (a, b, c_in) = random_inputs(&problem, &mut SmallRng::seed_from_u64(report.seed));
    let mut c = c_in.clone();
    let started = Instant::now();
    let outcome = backend.gemm(kernel, &problem, &a, &b, &mut c);
    report.seconds = started.elapsed().as_secs_f64();
    outcome?;
    let reference = reference_gemm(&problem, &a, &b, &c_in)?;
    let error = max_relative_error(&problem, &c, &reference);
    report.max_rel_error = error.is_finite().then_some(error);
    report.padding_intact = padding_intact(&problem, &c);
    report.pass = error < report.tolerance && report.padding_intact;
    Ok(())
}

/// True when every element of C outside the m×n results of the batch is still NaN.
fn padding_intact(problem: &GemmProblem, c: &[f32]) -> bool {
    let mut result = vec![false; c.len()];
    for index in 0..problem.batch {
        let start = problem.offsets(index).2;
        for row in 0..problem.m {
            let at = start + row * problem.ldc();
            result[at..at + problem.n].fill(true);
        }
    }
    c.iter()
        .zip(result)
        .all(|(x, computed)| computed || x.is_nan())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_the_design_bound_up_to_4096() {
        assert_eq!(tolerance(1), 1e-4);
        assert_eq!(tolerance(4096), 1e-4);
        assert!((tolerance(65536) - 4e-4).abs() < 1e-12);
    }

    #[test]
    fn random_inputs_poison_padding_and_unread_c() {
        let case = VerifyCase {
            ld_pad: 2,
            ..VerifyCase::new(Shape::new(3, 4, 5))
        };
        let (a, b, c) = random_inputs(&case.problem(), &mut SmallRng::seed_from_u64(7));
        // A is 3×5 stored with lda 7: two NaN after each full row.
        assert!(a[..5].iter().all(|x| (-1.0..=1.0).contains(x)));
        assert!(a[5].is_nan() && a[6].is_nan());
        assert_eq!(a.len(), 2 * 7 + 5);
        assert!(b[4].is_nan() && !b[6].is_nan());
        // β = 0: C is never read, so all of it is poison.
        assert!(c.iter().all(|x| x.is_nan()));
    }
}
