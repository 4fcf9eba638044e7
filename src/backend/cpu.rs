//! The CPU backend: the `gemm` crate's SIMD kernels, C cut into a block per thread. The fallback on
//! every host and usually the right choice for tiny problems.

use super::Backend;
use crate::device::{BackendKind, Capabilities, DeviceInfo, DeviceType};
use crate::error::{Error, Result};
use crate::problem::{op_strides, scale_c, GemmProblem};
use crate::telemetry::median;
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// The one kernel the CPU backend offers.
pub const NATIVE_KERNEL: &str = "native";

/// Below this many multiply-adds taken off the first core ((1 − 1/threads) of a product's), a
/// product runs on one thread on every host: waking the others never paid there (one core of the
/// 16-core Xeon hosts ran 96³ at 111% of OpenBLAS).
const SAVED_MACS_ONE_THREAD_BELOW: f64 = 80.0 * 80.0 * 80.0;

/// From this many multiply-adds taken off the first core, a product runs on every core on every
/// host (two Xeon cores won from 256³, 232 GFLOPS against one's 165). Once the pool is awake, more
/// threads cost little: on a 16-core Xeon sixteen beat 1, 2, 4 and 8 at 192³, 256³ and 384³.
const SAVED_MACS_EVERY_CORE_FROM: f64 = 200.0 * 200.0 * 200.0;

/// Multiply-adds taken off the first core from which every core runs a product where the host's
/// break-even is not known yet and this call may not measure it (another call is measuring, or this
/// one runs on one of rayon's own threads): the fixed rule of before, 158³ on sixteen cores and
/// 2·155³ on two.
const SAVED_MACS_UNMEASURED: f64 = 155.0 * 155.0 * 155.0;

/// Timed runs of each calibration product; the median is kept, so runs slowed by another process
/// on a loaded host do not move the break-even.
const CALIBRATION_RUNS: usize = 7;

/// States of [`CpuBackend::break_even`] other than a measured value (NaN patterns: a measured
/// break-even is finite).
const UNMEASURED: u64 = u64::MAX;
const MEASURING: u64 = u64::MAX - 1;

/// The host CPU through the `gemm` crate.
pub struct CpuBackend {
    info: DeviceInfo,
    capabilities: Capabilities,
    threads: usize,
    /// The bits of [`CpuBackend::every_core_from_macs`] once measured, else [`UNMEASURED`] or
    /// [`MEASURING`]: an atomic, not a lock, so no call ever waits for the measurement (a rayon
    /// thread waiting on it could be the one the measurement's own work needs).
    break_even: AtomicU64,
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
            break_even: AtomicU64::new(UNMEASURED),
        }
    }

    /// Multiply-adds from which a product runs on every core rather than one (infinite on one
    /// thread). Where that depends on the host (between 80³ and 200³ multiply-adds taken off the
    /// first core) the first call from outside rayon's threads measures it, in a few milliseconds,
    /// once per backend: square products at both ends of that range on one thread and on every
    /// core (`RUST_LOG=info` logs the result).
    /// Call it at start-up to keep the measurement out of the first timed product. One constant
    /// cannot serve every host: sixteen Xeon cores pay from about 123³, while two vCPUs of a shared
    /// EPYC ran 160³–192³ at 42–155 GFLOPS against one core's steady 96–101; there, the measured
    /// value also varies from process to process (155³–252³), as the host does.
    pub fn every_core_from_macs(&self) -> f64 {
        let share = self.share_off_first_core();
        if share == 0.0 {
            return f64::INFINITY;
        }
        let state = self.break_even.load(Ordering::Acquire);
        if state != UNMEASURED && state != MEASURING {
            return f64::from_bits(state);
        }
        let may_measure = state == UNMEASURED
            && rayon::current_thread_index().is_none()
            && self
                .break_even
                .compare_exchange(UNMEASURED, MEASURING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if !may_measure {
            return SAVED_MACS_UNMEASURED / share;
        }
        let measured = self.measure_break_even(share);
        self.break_even.store(measured.to_bits(), Ordering::Release);
        measured
    }

    /// The part of a product every core takes off the first: 1 − 1/threads.
    fn share_off_first_core(&self) -> f64 {
        1.0 - 1.0 / self.threads as f64
    }

    /// How many threads a product of `macs` multiply-adds runs on: one, or every one.
    fn threads_worth(&self, macs: f64) -> usize {
        let saved = macs * self.share_off_first_core();
        if saved < SAVED_MACS_ONE_THREAD_BELOW {
            1
        } else if saved >= SAVED_MACS_EVERY_CORE_FROM || macs >= self.every_core_from_macs() {
            self.threads
        } else {
            1
        }
    }

    /// Times square products just outside both ends of the host-dependent range (`share` is the
    /// part of a product every core takes off the first) on one thread and on every core (medians
    /// of [`CALIBRATION_RUNS`], the two interleaved) and returns where every core starts to win,
    /// kept inside the range. The smaller product runs on the `gemm` crate's threads and the
    /// larger on a block per thread, as real products of those sizes do.
    fn measure_break_even(&self, share: f64) -> f64 {
        let (low, high) = (
            SAVED_MACS_ONE_THREAD_BELOW / share,
            SAVED_MACS_EVERY_CORE_FROM / share,
        );
        // Edges of 16 (a SIMD register of f32s), as real products mostly are: the smaller rounded
        // down, the larger up, so the two enclose the range.
        let edges = [
            (low.cbrt() / 16.0).floor() as usize * 16,
            (high.cbrt() / 16.0).ceil() as usize * 16,
        ];
        let largest = edges[1] * edges[1];
        let (a, b) = (vec![0.5f32; largest], vec![0.25f32; largest]);
        let mut c = vec![0.0f32; largest];
        let (mut one, mut every) = ([0.0; 2], [0.0; 2]);
        for (i, &edge) in edges.iter().enumerate() {
            let problem = GemmProblem::new(edge, edge, edge);
            let mut seconds = |threads: usize| {
                let started = Instant::now();
                // SAFETY: a packed edge³ product's operands are edge² elements each, and every
                // buffer holds the larger edge's square, so check_lengths holds.
                unsafe { self.run(&problem, &a, &b, &mut c, threads, 1) };
                started.elapsed().as_secs_f64()
            };
            // A first run of each wakes the pool and warms the caches.
            seconds(1);
            seconds(self.threads);
            let (mut ones, mut everys): (Vec<f64>, Vec<f64>) = (0..CALIBRATION_RUNS)
                .map(|_| (seconds(1), seconds(self.threads)))
                .unzip();
            one[i] = median(&mut ones);
            every[i] = median(&mut everys);
        }
        let macs = edges.map(|edge| (edge as f64).powi(3));
        let break_even = crossing(macs, one, every).clamp(low, high);
        log::info!(
            "cpu: every core from {:.0}³ multiply-adds (one thread {:.0} / {:.0} µs, {} threads \
             {:.0} / {:.0} µs at {}³ / {}³)",
            break_even.cbrt(),
            one[0] * 1e6,
            one[1] * 1e6,
            self.threads,
            every[0] * 1e6,
            every[1] * 1e6,
            edges[0],
            edges[1],
        );
        break_even
    }

    /// Computes `problem` (neither empty nor a scaling of C alone) with each product on
    /// `product_threads` and the batch's products on up to `batch_threads`.
    ///
    /// # Safety
    /// `problem.check_lengths(a.len(), b.len(), c.len())` must hold.
    unsafe fn run(
        &self,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        product_threads: usize,
        batch_threads: usize,
    ) {
        debug_assert!(problem.check_lengths(a.len(), b.len(), c.len()).is_ok());
        let single = problem.single();
        let grid = match product_threads {
            1 => Some(BlockGrid::whole(&single)),
            threads => BlockGrid::new(&single, threads),
        };
        let Some(grid) = grid else {
            // C too small to cut for every thread: the crate's own threads, product by product.
            let whole = BlockGrid::whole(&single).block(0);
            for index in 0..problem.batch {
                let (a_at, b_at, c_at) = problem.offsets(index);
                // SAFETY: the caller's check_lengths proved every product lies inside the slices,
                // and C (borrowed mutably) does not alias A or B.
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
            return;
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
            // SAFETY: the caller's check_lengths proved every product lies inside the slices,
            // extents() that no two products' C elements overlap, and blocks of one C are
            // disjoint, so threads write disjoint elements (each item is taken once); C does not
            // alias A or B.
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
    }
}

/// Where every core starts to beat one, from their seconds at two sizes of `macs` multiply-adds:
/// the smaller size where every core is ahead there already, infinity where it is still behind at
/// the larger, else where the straight line through the two sizes' differences crosses zero.
fn crossing(macs: [f64; 2], one: [f64; 2], every: [f64; 2]) -> f64 {
    let lead = [one[0] - every[0], one[1] - every[1]];
    if lead[0] >= 0.0 {
        macs[0]
    } else if lead[1] <= 0.0 {
        f64::INFINITY
    } else {
        macs[0] + (macs[1] - macs[0]) * -lead[0] / (lead[1] - lead[0])
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
        let product_threads = self.threads_worth(problem.single().flops() / 2.0);
        // Threads for the batch only when it is worth them as a whole, as for one product.
        let batch_threads = self.threads_worth(problem.flops() / 2.0).min(problem.batch);
        // SAFETY: check_lengths passed above.
        unsafe { self.run(problem, a, b, c, product_threads, batch_threads) };
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
    use super::{crossing, Block, BlockGrid, CpuBackend, MEASURING, UNMEASURED};
    use crate::backend::Backend;
    use crate::problem::GemmProblem;
    use rayon::iter::{IntoParallelIterator, ParallelIterator};
    use std::sync::atomic::Ordering;

    fn cube(edge: f64) -> f64 {
        edge * edge * edge
    }

    #[test]
    fn threads_are_one_below_the_range_every_core_above_it_and_the_host_s_choice_inside() {
        let sixteen = CpuBackend::with_threads(16);
        // Outside the range nothing is measured.
        assert_eq!(sixteen.threads_worth(cube(80.0)), 1);
        assert_eq!(sixteen.threads_worth(cube(210.0)), 16);
        assert_eq!(sixteen.break_even.load(Ordering::Relaxed), UNMEASURED);
        sixteen
            .break_even
            .store(cube(140.0).to_bits(), Ordering::Relaxed);
        assert_eq!(sixteen.threads_worth(cube(139.0)), 1);
        assert_eq!(sixteen.threads_worth(cube(141.0)), 16);
        // Two threads take half the work off the first core: the range is twice as many macs.
        let two = CpuBackend::with_threads(2);
        assert_eq!(two.threads_worth(cube(100.0)), 1);
        assert_eq!(two.threads_worth(2.0 * cube(200.0)), 2);
        assert_eq!(two.break_even.load(Ordering::Relaxed), UNMEASURED);
        assert_eq!(CpuBackend::with_threads(1).threads_worth(cube(4096.0)), 1);
        assert_eq!(CpuBackend::with_threads(0).threads_worth(cube(4096.0)), 1);
    }

    #[test]
    fn rayon_threads_and_calls_during_a_measurement_use_the_fixed_rule_and_never_wait() {
        let two = CpuBackend::with_threads(2);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(
            pool.install(|| two.every_core_from_macs()),
            2.0 * cube(155.0)
        );
        assert_eq!(two.break_even.load(Ordering::Relaxed), UNMEASURED);
        two.break_even.store(MEASURING, Ordering::Relaxed);
        assert_eq!(two.every_core_from_macs(), 2.0 * cube(155.0));
        // A fresh backend's first products in the range, all from rayon's threads: correct, and
        // none of them measures.
        let fresh = CpuBackend::with_threads(2);
        let edge = 150;
        let problem = GemmProblem::new(edge, edge, edge);
        let (a, b) = (vec![0.5f32; edge * edge], vec![0.25f32; edge * edge]);
        let results: Vec<Vec<f32>> = (0..4)
            .into_par_iter()
            .map(|_| {
                let mut c = vec![f32::NAN; edge * edge];
                fresh.gemm("native", &problem, &a, &b, &mut c).unwrap();
                c
            })
            .collect();
        let exact = 0.125 * edge as f32;
        assert!(results.iter().flatten().all(|&x| x == exact));
        assert_eq!(fresh.break_even.load(Ordering::Relaxed), UNMEASURED);
    }

    #[test]
    fn every_core_starts_to_win_where_the_difference_of_their_times_crosses_zero() {
        // One thread at 50 G multiply-adds a second; every core 8 times that after 30 µs of waking.
        let macs = [cube(96.0), cube(208.0)];
        let one = macs.map(|m| m / 50e9);
        let every = macs.map(|m| 30e-6 + m / 400e9);
        let expected = 30e-6 / (1.0 / 50e9 - 1.0 / 400e9);
        assert!((crossing(macs, one, every) / expected - 1.0).abs() < 1e-9);
        // Every core still behind at the larger size: never.
        let slow = macs.map(|m| 30e-6 + m / 50e9);
        assert_eq!(crossing(macs, one, slow), f64::INFINITY);
        // Every core ahead at both sizes, even with no smaller slope: from the smaller.
        let (one, every) = ([100e-6, 300e-6], [50e-6, 260e-6]);
        assert_eq!(crossing(macs, one, every), macs[0]);
    }

    #[test]
    fn the_measured_break_even_lies_inside_the_host_dependent_range_and_is_kept() {
        for threads in [2, 3, 16] {
            let backend = CpuBackend::with_threads(threads);
            let share = 1.0 - 1.0 / threads as f64;
            let measured = backend.every_core_from_macs();
            assert!(
                (cube(80.0) / share..=cube(200.0) / share).contains(&measured),
                "{threads} threads from {}³",
                measured.cbrt()
            );
            let kept = backend.break_even.load(Ordering::Relaxed);
            assert_eq!(f64::from_bits(kept), measured);
            assert_eq!(backend.every_core_from_macs(), measured);
        }
        assert_eq!(
            CpuBackend::with_threads(1).every_core_from_macs(),
            f64::INFINITY
        );
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
