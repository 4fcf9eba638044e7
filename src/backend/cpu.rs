//! The CPU backend: the `gemm` crate's SIMD kernels, C cut into a block per thread. The fallback on
//! every host and usually the right choice for tiny problems.

use super::Backend;
use crate::device::{BackendKind, Capabilities, DeviceInfo, DeviceType};
use crate::error::{Error, Result};
use crate::problem::{op_strides, scale_c, GemmProblem};
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The one kernel the CPU backend offers.
pub const NATIVE_KERNEL: &str = "native";

/// Multiply-adds the threads must save before waking them pays: on a 2-core Xeon one core does
/// 96³–192³ at 150–160 GFLOPS while two do 67–155, and two win from 256³ (232 against 165), so the
/// break-even there lies just above 192³ (2·155³); on a 16-core Xeon sixteen threads ran 160³ at
/// 262 GFLOPS where one ran 126, so the bound lets them take it (it must stay below 156³).
const MACS_SAVED_FOR_THREADS: f64 = 155.0 * 155.0 * 155.0;

/// How many of `available` threads `macs` multiply-adds are worth: one, or every one, once the
/// (1 − 1/threads) of the product they take off the first core outweighs waking them — 2·155³ on
/// two cores, 158³ on sixteen. Once the pool is awake more threads cost little: on a 16-core Xeon
/// 16 threads beat 1, 2, 4 and 8 at 192³, 256³ and 384³ (398 / 414 / 523 GFLOPS; one thread 115
/// at 192³, the others at most 225 / 346 / 426).
fn threads_worth(macs: f64, available: usize) -> usize {
    let threads = available.max(1);
    if macs * (1.0 - 1.0 / threads as f64) >= MACS_SAVED_FOR_THREADS {
        threads
    } else {
        1
    }
}

/// The host CPU through the `gemm` crate.
pub struct CpuBackend {
    info: DeviceInfo,
    capabilities: Capabilities,
    threads: usize,
}

impl CpuBackend {
    /// The CPU backend, using every core this process may use.
    pub fn new() -> Self {
        Self::with_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The CPU backend on at most `threads` threads (at least one).
    pub fn with_threads(threads: usize) -> Self {
        let threads = threads.max(1);
        let info = DeviceInfo::new(
            BackendKind::Cpu,
            "native",
            &cpu_name(),
            &format!("gemm 0.19, {threads} threads"),
            DeviceType::Cpu,
        );
        let capabilities = Capabilities {
            max_buffer_bytes: isize::MAX as u64,
            max_binding_bytes: isize::MAX as u64,
            max_workgroup_memory_bytes: 0,
            max_workgroup_invocations: 0,
            max_workgroups_per_dimension: 0,
            shader_f16: false,
            subgroups: false,
            timestamp_query: false,
        };
        CpuBackend {
            info,
            capabilities,
            threads,
        }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// The CPU's model name from /proc/cpuinfo, or the architecture where that is not readable.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| format!("{} CPU", std::env::consts::ARCH))
}

impl Backend for CpuBackend {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn kernels(&self) -> Vec<String> {
        vec![NATIVE_KERNEL.to_string()]
    }

    fn check(&self, kernel: &str, problem: &GemmProblem) -> Result<()> {
        if kernel != NATIVE_KERNEL {
            return Err(Error::NotFound(format!(
                "the cpu backend has no kernel '{kernel}' (it has '{NATIVE_KERNEL}')"
            )));
        }
        problem.extents().map(|_| ())
    }

    fn gemm(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<()> {
        self.check(kernel, problem)?;
        problem.check_lengths(a.len(), b.len(), c.len())?;
        if problem.is_empty() {
            return Ok(());
        }
        if problem.scales_c_only() {
            scale_c(problem, c);
            return Ok(());
        }
        let single = problem.single();
        let product_threads = threads_worth(single.flops() / 2.0, self.threads);
        // Threads for the batch only when it is worth them as a whole, as for one product.
        let batch_threads = threads_worth(problem.flops() / 2.0, self.threads).min(problem.batch);
        let grid = match product_threads {
            1 => Some(BlockGrid::whole(&single)),
            threads => BlockGrid::new(&single, threads),
        };
        let Some(grid) = grid else {
            // C too small to cut for every thread: the crate's own threads, product by product.
            let whole = BlockGrid::whole(&single).block(0);
            for index in 0..problem.batch {
                let (a_at, b_at, c_at) = problem.offsets(index);
                // SAFETY: check_lengths proved every product lies inside the slices, and C
                // (borrowed mutably) does not alias A or B.
                unsafe {
                    raw_product(
                        &single,
                        whole,
                        a[a_at..].as_ptr(),
                        b[b_at..].as_ptr(),
                        c[c_at..].as_mut_ptr(),
                        gemm::Parallelism::Rayon(product_threads),
                    )
                };
            }
            return Ok(());
        };
        // Work items are (product, block) pairs; each thread takes the next one not yet taken.
        let items = problem.batch * grid.count();
        let threads = product_threads.max(batch_threads).min(items);
        let c_start = SendPtr(c.as_mut_ptr());
        let next_item = AtomicUsize::new(0);
        let work = || loop {
            let item = next_item.fetch_add(1, Ordering::Relaxed);
            if item >= items {
                break;
            }
            let (a_at, b_at, c_at) = problem.offsets(item / grid.count());
            // SAFETY: check_lengths proved every product lies inside the slices, extents() that
            // no two products' C elements overlap, and blocks of one C are disjoint, so threads
            // write disjoint elements (each item is taken once); C does not alias A or B.
            unsafe {
                raw_product(
                    &single,
                    grid.block(item % grid.count()),
                    a[a_at..].as_ptr(),
                    b[b_at..].as_ptr(),
                    c_start.at(c_at),
                    gemm::Parallelism::None,
                )
            };
        };
        if threads == 1 {
            work();
        } else {
            (0..threads).into_par_iter().for_each(|_| work());
        }
        Ok(())
    }
}

/// The narrowest block of C a thread is given (a chosen bound, not a measured one): where every
/// grid would cut thinner, the crate's own threads (which share the packing of B) run the product.
const MIN_BLOCK_EDGE: usize = 64;

/// C cut into a grid of blocks, each computed by one thread with its own packing of A's rows and
/// B's columns; threads then never wait for one another inside a product, where the crate's
/// threads meet at a barrier for every slab of K.
#[derive(Clone, Copy)]
struct BlockGrid {
    rows: usize,
    cols: usize,
    m: usize,
    n: usize,
    /// Edges of a block (the last in a row or column may be shorter).
    block_rows: usize,
    block_cols: usize,
}

/// One block of C: its first row and column and its extent.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Block {
    row: usize,
    rows: usize,
    col: usize,
    cols: usize,
}

impl BlockGrid {
    /// All of C as one block.
    fn whole(single: &GemmProblem) -> Self {
        Self::with_edges(single.m, single.n, single.m, single.n)
    }

    /// A grid of at most `threads` blocks: of the factor pairs rows × cols = `threads` that cut
    /// no dimension into blocks narrower than [`MIN_BLOCK_EDGE`], the one whose blocks are
    /// squarest (a square block packs the fewest elements for its work); edges rounded up to 16
    /// (a SIMD register of f32s). None where every pair cuts too thin.
    fn new(single: &GemmProblem, threads: usize) -> Option<Self> {
        let (m, n) = (single.m, single.n);
        let edge = |extent: usize, parts: usize| extent.div_ceil(parts).next_multiple_of(16);
        let thick_enough =
            |extent: usize, parts: usize| parts == 1 || edge(extent, parts) >= MIN_BLOCK_EDGE;
        let skew = |rows: usize| {
            let (tall, wide) = (edge(m, rows).min(m), edge(n, threads / rows).min(n));
            tall.max(wide) as f64 / tall.min(wide).max(1) as f64
        };
        let rows = (1..=threads)
            .filter(|&rows| threads.is_multiple_of(rows))
            .filter(|&rows| thick_enough(m, rows) && thick_enough(n, threads / rows))
            .min_by(|&x, &y| skew(x).total_cmp(&skew(y)))?;
        Some(Self::with_edges(
            m,
            n,
            edge(m, rows),
            edge(n, threads / rows),
        ))
    }

    fn with_edges(m: usize, n: usize, block_rows: usize, block_cols: usize) -> Self {
        BlockGrid {
            rows: m.div_ceil(block_rows),
            cols: n.div_ceil(block_cols),
            m,
            n,
            block_rows,
            block_cols,
        }
    }

    fn count(&self) -> usize {
        self.rows * self.cols
    }

    /// Block `index`, row-major over the grid.
    fn block(&self, index: usize) -> Block {
        let (row, col) = (
            index / self.cols * self.block_rows,
            index % self.cols * self.block_cols,
        );
        Block {
            row,
            rows: self.block_rows.min(self.m - row),
            col,
            cols: self.block_cols.min(self.n - col),
        }
    }
}

/// C's base pointer, sent to the threads that each write their own blocks and products.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the threads given it write disjoint elements (blocks of a C, and the batch's C matrices,
// never overlap).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The address `offset` elements on.
    ///
    /// # Safety
    /// `offset` must lie inside the allocation the pointer came from.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// `block` of `single`'s C through the `gemm` crate, on operands at these addresses.
///
/// # Safety
/// Every element `single` addresses from each pointer must be valid, C's for writing, and C must
/// not alias A or B.
unsafe fn raw_product(
    single: &GemmProblem,
    block: Block,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    parallelism: gemm::Parallelism,
) {
    let (a_rs, a_cs) = op_strides(single.trans_a, single.lda());
    let (b_rs, b_cs) = op_strides(single.trans_b, single.ldb());
    let ldc = single.ldc();
    // The crate computes dst := alpha·dst + beta·lhs·rhs, so our β is its alpha and our α its beta;
    // with read_dst false it never reads C (β = 0 overwrites NaN, as BLAS does).
    gemm::gemm(
        block.rows,
        block.cols,
        single.k,
        c.add(block.row * ldc + block.col),
        1,
        ldc as isize,
        single.beta != 0.0,
        a.offset(block.row as isize * a_rs),
        a_cs,
        a_rs,
        b.offset(block.col as isize * b_cs),
        b_cs,
        b_rs,
        single.beta,
        single.alpha,
        false,
        false,
        false,
        parallelism,
    )
}

#[cfg(test)]
mod tests {
    use super::{threads_worth, Block, BlockGrid};
    use crate::problem::GemmProblem;

    #[test]
    fn threads_are_every_core_once_they_save_more_than_waking_them_costs() {
        let macs = |n: f64| n * n * n;
        assert_eq!(threads_worth(macs(150.0), 16), 1);
        assert_eq!(threads_worth(macs(160.0), 16), 16);
        assert_eq!(threads_worth(macs(192.0), 2), 1);
        assert_eq!(threads_worth(macs(256.0), 16), 16);
        assert_eq!(threads_worth(macs(256.0), 2), 2);
        assert_eq!(threads_worth(macs(4096.0), 1), 1);
        assert_eq!(threads_worth(macs(4096.0), 0), 1);
    }

    fn grid(m: usize, n: usize, threads: usize) -> Option<BlockGrid> {
        BlockGrid::new(&GemmProblem::new(m, n, 256), threads)
    }

    #[test]
    fn blocks_are_the_squarest_factor_pair_of_the_threads() {
        let g = grid(2048, 2048, 16).unwrap();
        assert_eq!(
            (g.rows, g.cols, g.block_rows, g.block_cols),
            (4, 4, 512, 512)
        );
        let g = grid(1024, 2048, 8).unwrap();
        assert_eq!(
            (g.rows, g.cols, g.block_rows, g.block_cols),
            (2, 4, 512, 512)
        );
        // Thin C: one row of blocks, as wide as they may be; or one column of them.
        let g = grid(64, 4096, 16).unwrap();
        assert_eq!((g.rows, g.cols), (1, 16));
        let g = grid(100_000, 8, 16).unwrap();
        assert_eq!((g.rows, g.cols, g.block_rows), (16, 1, 6256));
        // Edges round up to 16, so 1000 rows in 3 make blocks of 336, 336 and 328.
        let g = grid(1000, 200, 3).unwrap();
        assert_eq!((g.rows, g.cols, g.block_rows), (3, 1, 336));
        assert_eq!(
            g.block(2),
            Block {
                row: 672,
                rows: 328,
                col: 0,
                cols: 200
            }
        );
    }

    #[test]
    fn c_too_small_for_a_block_per_thread_is_not_cut() {
        assert!(grid(64, 64, 16).is_none());
        assert!(grid(100, 300, 32).is_none());
    }

    #[test]
    fn blocks_cover_every_element_of_c_once() {
        for (m, n, threads) in [
            (1000, 777, 16),
            (129, 4097, 6),
            (2048, 96, 4),
            (500, 500, 7),
        ] {
            let g = grid(m, n, threads).unwrap();
            assert!(g.count() <= threads);
            let mut hits = vec![0u8; m * n];
            for index in 0..g.count() {
                let b = g.block(index);
                for row in b.row..b.row + b.rows {
                    for col in b.col..b.col + b.cols {
                        hits[row * n + col] += 1;
                    }
                }
            }
            assert!(hits.iter().all(|&h| h == 1), "{m}x{n} on {threads} threads");
        }
    }
}
