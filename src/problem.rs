//! The GEMM problem `C ← α·op(A)·op(B) + β·C` (row-major, with leading dimensions) and its validation.
//!
//! Layout: op(A) is m×k, op(B) is k×n, C is m×n, all row-major.
//! - A not transposed is stored m×k (row r starts at `r·lda`); transposed it is stored k×m.
//! - B not transposed is stored k×n; transposed it is stored n×k.
//! - C is stored m×n with row stride `ldc`; elements between `n` and `ldc` are never touched.
//!
//! Degenerate sizes are defined, not errors: m = 0 or n = 0 does nothing; k = 0 means C ← β·C.
//! β = 0 means C is not read (NaN or garbage in C is overwritten), as in BLAS.
//!
//! A strided batch ([`GemmProblem::with_batch`]) is `batch` such GEMMs of one shape: matrix `i` of
//! A starts at element `i·stride_a` of A's slice, likewise B and C. A stride of 0 broadcasts one
//! A (or B) to every product; the C matrices must not overlap.

use crate::error::{Error, Operand, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Whether an operand is used as stored or transposed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transpose {
    /// Used as stored (the default).
    #[default]
    No,
    /// Used transposed: op(X) is Xᵀ.
    Yes,
}

impl Transpose {
    /// `Yes` when `transposed` is true.
    pub fn from_bool(transposed: bool) -> Self {
        if transposed {
            Transpose::Yes
        } else {
            Transpose::No
        }
    }

    /// True for [`Transpose::Yes`].
    pub fn is_transposed(self) -> bool {
        self == Transpose::Yes
    }
}

/// One GEMM: sizes, scalars, transposes and leading dimensions. Built with [`GemmProblem::new`] and
/// the `with_*` methods; leading dimensions default to the packed layout of each operand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmProblem {
    /// Rows of op(A) and of C (0: nothing to do).
    pub m: usize,
    /// Columns of op(B) and of C (0: nothing to do).
    pub n: usize,
    /// Depth of the product: columns of op(A), rows of op(B) (0: C ← β·C).
    pub k: usize,
    /// α, the scale of op(A)·op(B).
    pub alpha: f32,
    /// β, the scale of the incoming C (0: C is not read, as in BLAS).
    pub beta: f32,
    /// Whether A is stored transposed (k×m instead of m×k).
    pub trans_a: Transpose,
    /// Whether B is stored transposed (n×k instead of k×n).
    pub trans_b: Transpose,
    lda: Option<usize>,
    ldb: Option<usize>,
    ldc: Option<usize>,
    /// Products in the strided batch (1: a single GEMM; 0: nothing to do).
    pub batch: usize,
    /// Batch strides of A, B and C in elements; `None`: packed (stored rows × leading dimension).
    strides: Option<[usize; 3]>,
}

/// How many elements of each slice a validated problem touches (row stride × rows, last row short).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extents {
    /// Elements of A's slice the problem touches.
    pub a: usize,
    /// Elements of B's slice the problem touches.
    pub b: usize,
    /// Elements of C's slice the problem touches.
    pub c: usize,
}

impl GemmProblem {
    /// `C ← op(A)·op(B)` with α = 1, β = 0, no transposes, packed leading dimensions.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        GemmProblem {
            m,
            n,
            k,
            alpha: 1.0,
            beta: 0.0,
            trans_a: Transpose::No,
            trans_b: Transpose::No,
            lda: None,
            ldb: None,
            ldc: None,
            batch: 1,
            strides: None,
        }
    }

    /// Sets α and β of `C ← α·op(A)·op(B) + β·C`.
    pub fn with_scalars(mut self, alpha: f32, beta: f32) -> Self {
        self.alpha = alpha;
        self.beta = beta;
        self
    }

    /// Sets whether A and B are stored transposed; leading dimensions not set explicitly follow.
    pub fn with_transpose(mut self, trans_a: Transpose, trans_b: Transpose) -> Self {
        self.trans_a = trans_a;
        self.trans_b = trans_b;
        self
    }

    /// Explicit row strides of the stored A, B and C (each at least its stored row length).
    pub fn with_leading_dims(mut self, lda: usize, ldb: usize, ldc: usize) -> Self {
        self.lda = Some(lda);
        self.ldb = Some(ldb);
        self.ldc = Some(ldc);
        self
    }

    /// A strided batch of `batch` products whose matrices lie `stride_a`, `stride_b` and
    /// `stride_c` elements apart (0 for A or B: the same matrix in every product).
    pub fn with_batch(
        mut self,
        batch: usize,
        stride_a: usize,
        stride_b: usize,
        stride_c: usize,
    ) -> Self {
        self.batch = batch;
        self.strides = Some([stride_a, stride_b, stride_c]);
        self
    }

    /// A strided batch of `batch` products stored one after the other (each matrix's stored rows ×
    /// its leading dimension), as a C-order 3-D array holds them.
    pub fn with_packed_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self.strides = None;
        self
    }

    /// Elements from one matrix of A to the next.
    pub fn stride_a(&self) -> usize {
        self.strides
            .map_or(self.stored_a().0 * self.lda(), |s| s[0])
    }

    /// Elements from one matrix of B to the next.
    pub fn stride_b(&self) -> usize {
        self.strides
            .map_or(self.stored_b().0 * self.ldb(), |s| s[1])
    }

    /// Elements from one matrix of C to the next.
    pub fn stride_c(&self) -> usize {
        self.strides.map_or(self.m * self.ldc(), |s| s[2])
    }

    /// One product of the batch, on its own (batch 1); its operands start at [`Self::offsets`].
    pub fn single(&self) -> GemmProblem {
        GemmProblem {
            batch: 1,
            strides: None,
            ..*self
        }
    }

    /// Where product `index`'s A, B and C start in the batch's slices.
    pub fn offsets(&self, index: usize) -> (usize, usize, usize) {
        (
            index * self.stride_a(),
            index * self.stride_b(),
            index * self.stride_c(),
        )
    }

    /// `count` consecutive products of this batch as a batch of their own (same strides): the
    /// slices of products `first..first + count` start at [`Self::offsets`]`(first)`.
    pub fn sub_batch(&self, count: usize) -> GemmProblem {
        GemmProblem {
            batch: count,
            strides: Some([self.stride_a(), self.stride_b(), self.stride_c()]),
            ..*self
        }
    }

    /// Whether the product term vanishes (k = 0 or α = 0): as in BLAS, A and B are then not read
    /// and C ← β·C (β = 0 writes zeros, whatever C held), even where α or A hold Inf or NaN.
    pub fn scales_c_only(&self) -> bool {
        self.k == 0 || self.alpha == 0.0
    }

    /// Rows and columns of A as stored.
    pub fn stored_a(&self) -> (usize, usize) {
        match self.trans_a {
            Transpose::No => (self.m, self.k),
            Transpose::Yes => (self.k, self.m),
        }
    }

    /// Rows and columns of B as stored.
    pub fn stored_b(&self) -> (usize, usize) {
        match self.trans_b {
            Transpose::No => (self.k, self.n),
            Transpose::Yes => (self.n, self.k),
        }
    }

    /// Row stride of A as stored, in elements: the explicit one, else its stored row length.
    pub fn lda(&self) -> usize {
        self.lda.unwrap_or(self.stored_a().1)
    }

    /// Row stride of B as stored, in elements: the explicit one, else its stored row length.
    pub fn ldb(&self) -> usize {
        self.ldb.unwrap_or(self.stored_b().1)
    }

    /// Row stride of C, in elements: the explicit one, else n (packed).
    pub fn ldc(&self) -> usize {
        self.ldc.unwrap_or(self.n)
    }

    /// Floating-point operations of the products, 2·m·n·k·batch.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// True when there is no element of C to compute (m = 0, n = 0 or batch = 0).
    pub fn is_empty(&self) -> bool {
        self.m == 0 || self.n == 0 || self.batch == 0
    }

    /// Checks leading dimensions, batch strides and size arithmetic; returns how many elements
    /// each operand spans over the whole batch.
    pub fn extents(&self) -> Result<Extents> {
        let (ar, ac) = self.stored_a();
        let (br, bc) = self.stored_b();
        let one = Extents {
            a: span(Operand::A, ar, ac, self.lda())?,
            b: span(Operand::B, br, bc, self.ldb())?,
            c: span(Operand::C, self.m, self.n, self.ldc())?,
        };
        if self.batch <= 1 {
            let empty = self.batch == 0;
            return Ok(if empty {
                Extents { a: 0, b: 0, c: 0 }
            } else {
                one
            });
        }
        let (stride_c, n, ldc) = (self.stride_c(), self.n, self.ldc());
        // Disjoint blocks, or matrices side by side within C's rows (an [m, batch, n] array).
        let interleaved = stride_c >= n
            && (self.batch - 1)
                .checked_mul(stride_c)
                .and_then(|x| x.checked_add(n))
                .is_some_and(|row| row <= ldc);
        if one.c > 0 && stride_c < one.c && !interleaved {
            return Err(Error::BatchOverlap {
                batch: self.batch,
                stride: stride_c,
                span: one.c,
            });
        }
        let last = self.batch - 1;
        let whole = |operand: Operand, stride: usize, span: usize| {
            if span == 0 {
                return Ok(0);
            }
            last.checked_mul(stride)
                .and_then(|x| x.checked_add(span))
                .filter(|&elements| elements.checked_mul(4).is_some())
                .ok_or_else(|| Error::SizeOverflow {
                    what: format!(
                        "{operand} ({} matrices {stride} elements apart)",
                        self.batch
                    ),
                })
        };
        Ok(Extents {
            a: whole(Operand::A, self.stride_a(), one.a)?,
            b: whole(Operand::B, self.stride_b(), one.b)?,
            c: whole(Operand::C, stride_c, one.c)?,
        })
    }

    /// Validates the problem against the lengths of the three slices.
    pub fn check_lengths(&self, a: usize, b: usize, c: usize) -> Result<Extents> {
        let extents = self.extents()?;
        for (operand, required, actual) in [
            (Operand::A, extents.a, a),
            (Operand::B, extents.b, b),
            (Operand::C, extents.c, c),
        ] {
            if actual < required {
                return Err(Error::LengthMismatch {
                    operand,
                    required,
                    actual,
                });
            }
        }
        Ok(extents)
    }
}

/// Elements spanned by a rows×cols matrix with row stride `ld`: `(rows − 1)·ld + cols`.
fn span(operand: Operand, rows: usize, cols: usize, ld: usize) -> Result<usize> {
    if ld < cols {
        return Err(Error::LeadingDimension {
            operand,
            ld,
            min: cols,
        });
    }
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    (rows - 1)
        .checked_mul(ld)
        .and_then(|x| x.checked_add(cols))
        .filter(|&elements| elements.checked_mul(4).is_some())
        .ok_or_else(|| Error::SizeOverflow {
            what: format!("{operand} ({rows} rows × leading dimension {ld})"),
        })
}

/// Row and column strides (in elements) of op(X) for a row-major X stored with row stride `ld`.
pub fn op_strides(trans: Transpose, ld: usize) -> (isize, isize) {
    match trans {
        Transpose::No => (ld as isize, 1),
        Transpose::Yes => (1, ld as isize),
    }
}

/// Writes C ← β·C over the m×n elements of every C of the batch (the whole GEMM when k = 0 or
/// α = 0). β = 0 writes zeros.
pub fn scale_c(problem: &GemmProblem, c: &mut [f32]) {
    let ldc = problem.ldc();
    for index in 0..problem.batch {
        let start = problem.offsets(index).2;
        for row in 0..problem.m {
            let row = &mut c[start + row * ldc..start + row * ldc + problem.n];
            if problem.beta == 0.0 {
                row.fill(0.0);
            } else {
                row.iter_mut().for_each(|x| *x *= problem.beta);
            }
        }
    }
}

/// Ok when `copies` copies of `problem`'s operands (A, B and C as stored) fit in the memory this
/// host has available (`MemAvailable` on Linux; not checked where the host does not say), else
/// `OutOfMemory` — before anything is allocated: an operating system that overcommits would
/// otherwise kill the process part-way through filling them.
pub fn check_host_memory(problem: &GemmProblem, copies: u64) -> Result<()> {
    let extents = problem.extents()?;
    let bytes = (extents.a as u64 + extents.b as u64 + extents.c as u64)
        .saturating_mul(4)
        .saturating_mul(copies);
    match available_host_bytes() {
        Some(available) if bytes > available => Err(Error::OutOfMemory {
            device: "host".into(),
            bytes,
            what: format!(
                "the operands of {}x{}x{} ({} MB available)",
                problem.m,
                problem.n,
                problem.k,
                available >> 20
            ),
            source: None,
        }),
        _ => Ok(()),
    }
}

/// Bytes of memory the host can still give (Linux `/proc/meminfo`); None where it does not say.
fn available_host_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// A problem size `MxNxK`, as written on the command line (e.g. `1399x1401x1400`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Rows of C (M).
    pub m: usize,
    /// Columns of C (N).
    pub n: usize,
    /// Depth of the product (K).
    pub k: usize,
}

impl Shape {
    /// The shape M×N×K.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Shape { m, n, k }
    }

    /// The packed, untransposed problem of this shape with α = 1, β = 0.
    pub fn problem(&self) -> GemmProblem {
        GemmProblem::new(self.m, self.n, self.k)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.m, self.n, self.k)
    }
}

impl FromStr for Shape {
    type Err = String;

    /// `MxNxK`, or a single `N` for a square N×N×N.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(['x', 'X']).collect();
        let parse = |p: &str| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{s}' is not a shape: expected MxNxK or N"))
        };
        match parts.as_slice() {
            [n] => {
                let n = parse(n)?;
                Ok(Shape::new(n, n, n))
            }
            [m, n, k] => Ok(Shape::new(parse(m)?, parse(n)?, parse(k)?)),
            _ => Err(format!("'{s}' is not a shape: expected MxNxK or N")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_extents_follow_transposes() {
        let p = GemmProblem::new(3, 5, 7);
        assert_eq!(
            p.extents().unwrap(),
            Extents {
                a: 21,
                b: 35,
                c: 15
            }
        );
        let t = p.with_transpose(Transpose::Yes, Transpose::Yes);
        assert_eq!((t.lda(), t.ldb(), t.ldc()), (3, 7, 5));
        assert_eq!(
            t.extents().unwrap(),
            Extents {
                a: 21,
                b: 35,
                c: 15
            }
        );
    }

    #[test]
    fn padded_extents_leave_the_last_row_short() {
        let p = GemmProblem::new(3, 5, 7).with_leading_dims(9, 6, 8);
        assert_eq!(
            p.extents().unwrap(),
            Extents {
                a: 2 * 9 + 7,
                b: 6 * 6 + 5,
                c: 2 * 8 + 5
            }
        );
    }

    #[test]
    fn short_leading_dimension_is_rejected() {
        let err = GemmProblem::new(3, 5, 7)
            .with_leading_dims(6, 5, 5)
            .extents();
        assert!(matches!(
            err,
            Err(Error::LeadingDimension {
                operand: Operand::A,
                ld: 6,
                min: 7
            })
        ));
    }

    #[test]
    fn overflowing_sizes_are_rejected() {
        let huge = usize::MAX / 2;
        assert!(matches!(
            GemmProblem::new(huge, 4, huge).extents(),
            Err(Error::SizeOverflow { .. })
        ));
        // Fits in usize elements but not in bytes.
        assert!(matches!(
            GemmProblem::new(1, usize::MAX / 3, 1).extents(),
            Err(Error::SizeOverflow { .. })
        ));
    }

    #[test]
    fn zero_sizes_span_nothing() {
        let p = GemmProblem::new(0, 5, 0);
        assert_eq!(p.extents().unwrap(), Extents { a: 0, b: 0, c: 0 });
        assert!(p.is_empty());
    }

    #[test]
    fn shapes_parse_and_print() {
        assert_eq!("33x65x17".parse::<Shape>().unwrap(), Shape::new(33, 65, 17));
        assert_eq!(
            "1400".parse::<Shape>().unwrap(),
            Shape::new(1400, 1400, 1400)
        );
        assert!("3x4".parse::<Shape>().is_err());
        assert!("axbxc".parse::<Shape>().is_err());
        assert_eq!(Shape::new(1, 2, 3).to_string(), "1x2x3");
    }

    #[test]
    fn scale_c_touches_only_the_valid_columns() {
        let p = GemmProblem::new(2, 2, 0)
            .with_scalars(1.0, 3.0)
            .with_leading_dims(0, 2, 3);
        let mut c = [1.0, 2.0, -9.0, 4.0, 5.0];
        scale_c(&p, &mut c);
        assert_eq!(c, [3.0, 6.0, -9.0, 12.0, 15.0]);
    }
}
