//! The kernel catalogue: each GPU kernel is a tiling (its parameters) plus its source, embedded in
//! the binary so `tilegemm` runs from any directory.

use std::borrow::Cow;

/// One WGSL GEMM kernel. Every kernel binds A, B (read), C (read-write) and the problem's parameters
/// (uniform) at bindings 0–3, exposes `main`, and takes the overrides `TRANS_A` and `TRANS_B`.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpec {
    pub name: String,
    /// Rows (M) and columns (N) of C computed by one workgroup.
    pub tile_m: u32,
    pub tile_n: u32,
    /// Depth of the K slab staged in workgroup memory per step.
    pub tile_k: u32,
    /// Workgroup size, x (along N) by y (along M).
    pub workgroup: [u32; 2],
    /// Outputs per thread, rows by columns.
    pub thread_tile: [u32; 2],
    /// Width of global loads, in floats.
    pub vector_width: u32,
    /// WGSL source.
    pub source: Cow<'static, str>,
}

impl KernelSpec {
    /// Threads per workgroup.
    pub fn invocations(&self) -> u32 {
        self.workgroup[0] * self.workgroup[1]
    }

    /// Workgroup memory of the two staged slabs, bytes.
    pub fn workgroup_memory_bytes(&self) -> u32 {
        4 * self.tile_k * (self.tile_m + self.tile_n)
    }

    /// Workgroups to dispatch for an m×n output: (along N, along M).
    pub fn dispatch(&self, m: usize, n: usize) -> (u64, u64) {
        (
            (n as u64).div_ceil(self.tile_n as u64),
            (m as u64).div_ceil(self.tile_m as u64),
        )
    }
}

/// A hand-written seed kernel: square tile, thread tile, vector width.
fn seed_kernel(
    name: &str,
    tile: u32,
    per_thread: u32,
    vector_width: u32,
    source: &'static str,
) -> KernelSpec {
    let side = tile / per_thread;
    KernelSpec {
        name: name.to_string(),
        tile_m: tile,
        tile_n: tile,
        tile_k: tile,
        workgroup: [side, side],
        thread_tile: [per_thread, per_thread],
        vector_width,
        source: Cow::Borrowed(source),
    }
}

/// The seed project's three tilings, in WGSL.
pub fn wgsl_kernels() -> Vec<KernelSpec> {
    vec![
        seed_kernel("tile16", 16, 1, 1, include_str!("../shaders/tile16.wgsl")),
        seed_kernel("tile20", 20, 2, 1, include_str!("../shaders/tile20.wgsl")),
        seed_kernel("tile24", 24, 2, 4, include_str!("../shaders/tile24.wgsl")),
    ]
}

/// The kernel every GPU backend offers and the selector's baseline (the seed's rollback target).
pub const BASELINE_KERNEL: &str = "tile16";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_tilings_match_the_design_table() {
        let kernels = wgsl_kernels();
        let summary: Vec<_> = kernels
            .iter()
            .map(|k| (k.name.as_str(), k.tile_m, k.workgroup, k.thread_tile))
            .collect();
        assert_eq!(
            summary,
            [
                ("tile16", 16, [16, 16], [1, 1]),
                ("tile20", 20, [10, 10], [2, 2]),
                ("tile24", 24, [12, 12], [2, 2]),
            ]
        );
        for k in &kernels {
            let wgsize = format!("@workgroup_size({}, {}, 1)", k.workgroup[0], k.workgroup[1]);
            assert!(
                k.source.contains(&wgsize),
                "{} must declare {wgsize}",
                k.name
            );
        }
    }

    #[test]
    fn dispatch_covers_ragged_edges() {
        let tile24 = &wgsl_kernels()[2];
        assert_eq!(tile24.dispatch(1, 1), (1, 1));
        assert_eq!(tile24.dispatch(25, 48), (2, 2));
        assert_eq!(tile24.dispatch(0, 5), (1, 0));
    }
}
