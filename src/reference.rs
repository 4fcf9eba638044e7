//! The f64 reference GEMM that `verify` and the tests judge every kernel against.

use crate::error::Result;
use crate::problem::{op_strides, GemmProblem};

/// `R = α·op(A)·op(B) + β·C` in f64, as packed m×n row-major matrices, one after the other for a
/// batch (C read with its `ldc` and batch stride). Inputs are widened to f64 and multiplied by the
/// `gemm` crate's f64 kernels, so the only f32 rounding in R is that of the inputs themselves.
pub fn reference_gemm(problem: &GemmProblem, a: &[f32], b: &[f32], c: &[f32]) -> Result<Vec<f64>> {
    problem.check_lengths(a.len(), b.len(), c.len())?;
    let single = problem.single();
    let mut r = Vec::with_capacity(problem.batch * problem.m * problem.n);
    for index in 0..problem.batch {
        let (a_at, b_at, c_at) = problem.offsets(index);
        r.extend(reference_one(&single, &a[a_at..], &b[b_at..], &c[c_at..])?);
    }
    Ok(r)
}

/// [`reference_gemm`] of one product.
fn reference_one(problem: &GemmProblem, a: &[f32], b: &[f32], c: &[f32]) -> Result<Vec<f64>> {
    let extents = problem.check_lengths(a.len(), b.len(), c.len())?;
    let (m, n, k) = (problem.m, problem.n, problem.k);
    let beta = problem.beta as f64;
    let mut r = vec![0.0f64; m * n];
    if beta != 0.0 {
        let ldc = problem.ldc();
        for row in 0..m {
            for col in 0..n {
                r[row * n + col] = beta * c[row * ldc + col] as f64;
            }
        }
    }
    if m == 0 || n == 0 || k == 0 {
        return Ok(r);
    }
    let a64: Vec<f64> = a[..extents.a].iter().map(|&x| x as f64).collect();
    let b64: Vec<f64> = b[..extents.b].iter().map(|&x| x as f64).collect();
    let (a_rs, a_cs) = op_strides(problem.trans_a, problem.lda());
    let (b_rs, b_cs) = op_strides(problem.trans_b, problem.ldb());
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    // SAFETY: check_lengths bounds every strided access; R is packed m×n and owned here.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            r.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a64.as_ptr(),
            a_cs,
            a_rs,
            b64.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            problem.alpha as f64,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        );
    }
    Ok(r)
}

/// `max|C − R| / max|R|` over the m×n elements of every C of the batch (1 as the scale when R is
/// all zeros). A non-finite element of C counts as an infinite error.
pub fn max_relative_error(problem: &GemmProblem, c: &[f32], r: &[f64]) -> f64 {
    let (m, n, ldc) = (problem.m, problem.n, problem.ldc());
    let scale = r.iter().fold(0.0f64, |acc, x| acc.max(x.abs()));
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let mut worst = 0.0f64;
    for index in 0..problem.batch {
        let (c_at, r_at) = (problem.offsets(index).2, index * m * n);
        for row in 0..m {
            for col in 0..n {
                let got = c[c_at + row * ldc + col];
                let diff = if got.is_finite() {
                    (got as f64 - r[r_at + row * n + col]).abs()
                } else {
                    f64::INFINITY
                };
                worst = worst.max(diff);
            }
        }
    }
    worst / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Transpose;

    /// The textbook triple loop, indexing the stored matrices directly.
    fn naive(p: &GemmProblem, a: &[f32], b: &[f32], c: &[f32]) -> Vec<f64> {
        let mut r = vec![0.0; p.m * p.n];
        for i in 0..p.m {
            for j in 0..p.n {
                let mut sum = 0.0f64;
                for l in 0..p.k {
                    let av = match p.trans_a {
                        Transpose::No => a[i * p.lda() + l],
                        Transpose::Yes => a[l * p.lda() + i],
                    };
                    let bv = match p.trans_b {
                        Transpose::No => b[l * p.ldb() + j],
                        Transpose::Yes => b[j * p.ldb() + l],
                    };
                    sum += av as f64 * bv as f64;
                }
                let old = if p.beta == 0.0 {
                    0.0
                } else {
                    p.beta as f64 * c[i * p.ldc() + j] as f64
                };
                r[i * p.n + j] = p.alpha as f64 * sum + old;
            }
        }
        r
    }

    #[test]
    fn matches_the_triple_loop_for_every_layout() {
        let mut seed = 12345u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        for (m, n, k) in [(1, 1, 1), (7, 13, 5), (5, 3, 9)] {
            for ta in [Transpose::No, Transpose::Yes] {
                for tb in [Transpose::No, Transpose::Yes] {
                    let base = GemmProblem::new(m, n, k).with_transpose(ta, tb);
                    let p = base.with_scalars(0.5, 2.0).with_leading_dims(
                        base.lda() + 2,
                        base.ldb() + 1,
                        n + 3,
                    );
                    let e = p.extents().unwrap();
                    let a: Vec<f32> = (0..e.a).map(|_| next()).collect();
                    let b: Vec<f32> = (0..e.b).map(|_| next()).collect();
                    let c: Vec<f32> = (0..e.c).map(|_| next()).collect();
                    let want = naive(&p, &a, &b, &c);
                    let got = reference_gemm(&p, &a, &b, &c).unwrap();
                    for (w, g) in want.iter().zip(&got) {
                        assert!(
                            (w - g).abs() < 1e-12,
                            "{m}x{n}x{k} {ta:?} {tb:?}: {w} vs {g}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn relative_error_flags_nan_and_scales_by_the_largest_entry() {
        let p = GemmProblem::new(1, 2, 1);
        assert_eq!(max_relative_error(&p, &[2.0, 4.5], &[2.0, 4.0]), 0.125);
        assert!(max_relative_error(&p, &[f32::NAN, 4.0], &[2.0, 4.0]).is_infinite());
    }
}
