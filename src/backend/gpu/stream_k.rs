//! Stream-K: a stream-K member (`KernelSpec::stream_k` = G) runs a GEMM on a persistent grid of G
//! workgroups that share every tile's slabs out evenly (the kernel text says how:
//! `TileParams::stream_k_source`), so a GEMM whose tiles fill the device's slots badly — 64 tiles
//! of 128×128 at 1024³ for an H100's 132 SMs — keeps every slot busy to the end.
//!
//! Pass 1 (G workgroups) stores the tiles a workgroup computed whole into C and the pieces of
//! shared tiles, raw, into two slots per workgroup of a workspace; pass 2, the same program built
//! with `STREAM_K_FIXUP` (one workgroup per tile), sums each shared tile's pieces in workgroup
//! order into C with α and β. No atomics and no workgroup waits for another (WGSL promises neither
//! float atomics nor forward progress between workgroups), and a result repeats bit for bit. A
//! batch runs its products one after another, each over the whole grid.

use super::{padded_bytes, GpuBackend, GpuRuntime};
use crate::error::Result;
use crate::kernel::{Dispatch, KernelSpec, Params};
use crate::problem::{Extents, GemmProblem};

/// Whether `spec` runs `problem` stream-K (a stream-K member, on any non-empty problem).
pub(crate) fn applies(spec: &KernelSpec, problem: &GemmProblem) -> bool {
    spec.stream_k > 0 && !problem.is_empty()
}

/// Floats of `spec`'s workspace: two BM×BN partial tiles per workgroup of its grid.
pub(crate) fn workspace_elements(spec: &KernelSpec) -> usize {
    2 * spec.stream_k as usize * (spec.tile_m * spec.tile_n) as usize
}

/// Slabs of K in every tile's loop: at least one (with K = 0 each tile is still stored).
fn slabs(spec: &KernelSpec, problem: &GemmProblem) -> u64 {
    (problem.k as u64).div_ceil(spec.tile_k as u64).max(1)
}

/// Iterations (tiles times slabs of K) the kernel counts in 32 bits.
pub(crate) fn iterations(spec: &KernelSpec, problem: &GemmProblem) -> u64 {
    let (tiles_n, tiles_m) = spec.dispatch(problem.m, problem.n);
    tiles_n * tiles_m * slabs(spec, problem)
}

/// Pieces the most shared tile of `problem` is cut into over `spec`'s grid (1: every tile is
/// computed by one workgroup, and the fixup has nothing to sum).
pub(crate) fn pieces_per_tile(spec: &KernelSpec, problem: &GemmProblem) -> u64 {
    let slabs = slabs(spec, problem);
    let groups = spec.stream_k.max(1) as u64;
    let iterations = iterations(spec, problem);
    let share = iterations / groups;
    if iterations.is_multiple_of(groups) && share.is_multiple_of(slabs) {
        return 1;
    }
    // A tile's slabs meet at most ⌈slabs / share⌉ + 1 shares.
    match share {
        0 => slabs,
        _ => (slabs.div_ceil(share) + 1).min(slabs),
    }
}

impl<R: GpuRuntime> GpuBackend<R> {
    /// Queues `problem` with the stream-K `spec` on (A, B, C), which span `extents`: per product,
    /// the grid's pass (`program`) into C and the workspace, then the fixup pass (`fixup`) into C.
    /// With `timed`, the kernel seconds of every pass, summed.
    pub(super) fn enqueue_stream_k(
        &self,
        (program, fixup): (&R::Program, &R::Program),
        spec: &KernelSpec,
        problem: &GemmProblem,
        extents: &Extents,
        [a, b, c]: [&R::Buffer; 3],
        timed: bool,
    ) -> Result<Option<f64>> {
        // One call at a time through the workspace (as split-K's): the queue runs a call's passes
        // in order, so the next product's pass 1 only starts once this one's fixup has read it.
        let mut workspace = self.workspace.lock().unwrap_or_else(|e| e.into_inner());
        let partials = self.reuse(
            &mut workspace,
            padded_bytes(workspace_elements(spec)),
            "the stream-K workspace",
        )?;
        let buffers = [a, b, c, &*partials];
        let (tiles_n, tiles_m) = spec.dispatch(problem.m, problem.n);
        let params = Params::of(problem);
        let mut seconds = Some(0.0);
        for product in 0..problem.batch as u32 {
            let params = Params {
                first_batch: product,
                ..params
            };
            let passes = [
                (program, [spec.stream_k, 1, 1]),
                (fixup, [tiles_n as u32, tiles_m as u32, 1]),
            ];
            for (program, groups) in passes {
                let dispatch = Dispatch { params, groups };
                let ran = self.launch_all(program, spec, [dispatch], extents, &buffers, timed)?;
                seconds = seconds.zip(ran).map(|(sum, s)| sum + s);
            }
        }
        Ok(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arithmetic the kernel text does, on the host: the share of every workgroup, the pieces
    /// it cuts them into, and the fixup's owners and slots.
    struct Schedule {
        k_iters: u64,
        share: u64,
        extra: u64,
    }

    impl Schedule {
        fn new(tiles: u64, k_iters: u64, groups: u64) -> Self {
            let total = tiles * k_iters;
            Schedule {
                k_iters,
                share: total / groups,
                extra: total % groups,
            }
        }

        fn begin(&self, g: u64) -> u64 {
            g * self.share + g.min(self.extra)
        }

        fn owner(&self, i: u64) -> u64 {
            if i < self.extra * (self.share + 1) {
                i / (self.share + 1)
            } else {
                self.extra + (i - self.extra * (self.share + 1)) / self.share
            }
        }

        /// Workgroup g's work: (tile, first slab, end slab, slot) — slot None where it is a
        /// whole tile (stored into C).
        fn work(&self, g: u64) -> Vec<(u64, u64, u64, Option<u64>)> {
            let mut out = Vec::new();
            let (begin, end) = (self.begin(g), self.begin(g + 1));
            let mut it = begin;
            while it < end {
                let (tile, first) = (it / self.k_iters, it % self.k_iters);
                let last = self.k_iters.min(first + (end - it));
                let whole = first == 0 && last == self.k_iters;
                let slot = (!whole).then_some(2 * g + u64::from(it != begin));
                out.push((tile, first, last, slot));
                it += last - first;
            }
            out
        }

        /// The slots the fixup sums for `tile`, in order (empty: stored whole).
        fn fixup_slots(&self, tile: u64) -> Vec<u64> {
            let first = tile * self.k_iters;
            let (g_first, g_last) = (self.owner(first), self.owner(first + self.k_iters - 1));
            if g_first == g_last {
                return Vec::new();
            }
            let tail = self.begin(g_first) != first;
            (g_first..=g_last)
                .map(|g| 2 * g + u64::from(g == g_first && tail))
                .collect()
        }
    }

    /// Every slab of every tile is computed once, each shared tile's pieces are exactly the slots
    /// its fixup sums, and a tile computed by one workgroup goes to C straight: at more and fewer
    /// workgroups than tiles, shares of whole tiles, and fewer iterations than workgroups.
    #[test]
    fn the_shares_cover_every_slab_once_and_the_fixup_finds_every_piece() {
        // (tiles, slabs per tile, workgroups)
        let cases = [
            (64, 128, 264),
            (1, 4096, 264),
            (6, 17, 264),
            (1024, 512, 264),
            (528, 8, 264),
            (5, 1, 3),
            (128, 64, 264),
            (3, 3, 1),
            (20, 9, 3),
        ];
        for (tiles, k_iters, groups) in cases {
            let schedule = Schedule::new(tiles, k_iters, groups);
            let case = format!("{tiles}×{k_iters} on {groups}");
            let mut covered = vec![vec![0u32; k_iters as usize]; tiles as usize];
            let mut pieces: Vec<Vec<u64>> = vec![Vec::new(); tiles as usize];
            for g in 0..groups {
                for (tile, first, last, slot) in schedule.work(g) {
                    for k in first..last {
                        covered[tile as usize][k as usize] += 1;
                    }
                    if let Some(slot) = slot {
                        assert!(slot / 2 == g, "a workgroup writes only its own slots");
                        pieces[tile as usize].push(slot);
                    }
                }
            }
            assert!(covered.iter().flatten().all(|&n| n == 1), "{case}");
            for (tile, slots) in pieces.iter().enumerate() {
                assert_eq!(
                    &schedule.fixup_slots(tile as u64),
                    slots,
                    "tile {tile} of {case}"
                );
            }
        }
    }

    #[test]
    fn iterations_count_tiles_by_slabs_and_at_least_one_slab() {
        let spec = crate::kernel::find("rb128x128x8_8x8_g8_p_streamk264").unwrap();
        assert_eq!(
            iterations(spec, &GemmProblem::new(1024, 1024, 1024)),
            64 * 128
        );
        assert_eq!(iterations(spec, &GemmProblem::new(129, 1, 0)), 2);
        assert_eq!(workspace_elements(spec), 2 * 264 * 128 * 128);
        // Within the bound split-K keeps its workspace to (64 MiB).
        assert!(workspace_elements(spec) <= crate::backend::gpu::split_k::WORKSPACE_ELEMENTS);
        // 8192 iterations over 264 workgroups: shares of 31–32 slabs, so a 128-slab tile meets up
        // to 6 (2 + 31·4 + 2); 264 tiles of one slab each: one tile per workgroup, none shared.
        assert_eq!(
            pieces_per_tile(spec, &GemmProblem::new(1024, 1024, 1024)),
            6
        );
        assert_eq!(
            pieces_per_tile(spec, &GemmProblem::new(128, 128 * 264, 8)),
            1
        );
        // 4096³: 1,024 tiles of 512 slabs in shares of ~1,986: two pieces at most.
        assert_eq!(
            pieces_per_tile(spec, &GemmProblem::new(4096, 4096, 4096)),
            2
        );
    }
}
