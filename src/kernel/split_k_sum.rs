//! The summing pass of split-K (`backend::gpu::split_k`): not a GEMM, so not in the catalogue; the
//! split-K path launches it itself, after a split-K member's slices.

use super::spec::{Dispatch, KernelSpec, Params, OPENCL_PRELUDE, WGSL_PRELUDE};
use std::borrow::Cow;
use std::sync::OnceLock;

/// Quads of C one workgroup sums (its x size; y is 16 lanes over the slices).
const QUADS_PER_GROUP: u64 = 16;

/// The kernel (`shaders/split_k_sum.wgsl`, `kernels_cl/split_k_sum.cl`): C ← α · the sum of
/// `params.k` packed m×n partial products in A, one every `params.stride_a` elements, + β · C.
pub fn split_k_sum() -> &'static KernelSpec {
    static SPEC: OnceLock<KernelSpec> = OnceLock::new();
    SPEC.get_or_init(|| KernelSpec {
        name: "split_k_sum".to_string(),
        tile_m: 1,
        tile_n: 4 * QUADS_PER_GROUP as u32,
        tile_k: 0,
        workgroup: [QUADS_PER_GROUP as u32, 16],
        thread_tile: [1, 4],
        vector_width: 4,
        wgsl: Cow::Owned(format!(
            "{WGSL_PRELUDE}{}",
            include_str!("../../shaders/split_k_sum.wgsl")
        )),
        opencl: Some(Cow::Owned(format!(
            "{OPENCL_PRELUDE}{}",
            include_str!("../../kernels_cl/split_k_sum.cl")
        ))),
        buffers: 0,
        prefetch: false,
        group_m: 0,
        split_k: 1,
        stream_k: 0,
    })
}

/// The launch that sums `slices` packed m×n partial products into C (row stride `ldc`) with α
/// and β: one workgroup per 16 quads of C, the grid folded into x and y under `max_groups` per
/// dimension; `Err` with the workgroups needed where even the folded grid is over the limit.
pub fn split_k_sum_dispatch(
    (m, n, slices): (usize, usize, usize),
    ldc: usize,
    (alpha, beta): (f32, f32),
    max_groups: u32,
) -> Result<Dispatch, u64> {
    let quads = m as u64 * (n as u64).div_ceil(4);
    let groups = quads.div_ceil(QUADS_PER_GROUP);
    let x = groups.min(max_groups.max(1) as u64);
    let y = groups.div_ceil(x.max(1));
    if y > max_groups as u64 {
        return Err(groups);
    }
    Ok(Dispatch {
        params: Params {
            m: m as u32,
            n: n as u32,
            k: slices as u32,
            lda: n as u32,
            ldb: 0,
            ldc: ldc as u32,
            alpha,
            beta,
            stride_a: (m * n) as u32,
            stride_b: 0,
            stride_c: 0,
            first_batch: 0,
        },
        groups: [x as u32, y as u32, 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every quad of C gets a workgroup's thread, and no more workgroups than a row of 16 quads
    /// short, however the grid is folded.
    #[test]
    fn the_folded_grid_covers_every_quad_of_c() {
        for (m, n, max) in [(1, 1, 65535), (64, 64, 65535), (3, 70, 2), (1000, 9, 20)] {
            let d = split_k_sum_dispatch((m, n, 5), n + 1, (1.0, 0.0), max).unwrap();
            let [x, y, z] = d.groups.map(u64::from);
            assert!(x <= max as u64 && y <= max as u64 && z == 1);
            let quads = (m * n.div_ceil(4)) as u64;
            let groups = quads.div_ceil(QUADS_PER_GROUP);
            assert!(
                x * y >= groups,
                "{m}x{n}: {x}x{y} workgroups for {quads} quads"
            );
            assert!(
                x * y < groups + x,
                "{m}x{n}: a whole row of workgroups too many"
            );
            assert_eq!((d.params.k, d.params.stride_a), (5, (m * n) as u32));
        }
        let over = split_k_sum_dispatch((1 << 20, 64, 2), 64, (1.0, 0.0), 100);
        assert_eq!(over, Err(1 << 20));
    }
}
