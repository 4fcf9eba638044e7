//! The kernel catalogue: each GPU kernel is a tiling (its parameters) plus its source, embedded in
//! the binary so `tilegemm` runs from any directory.

use std::borrow::Cow;

/// One GEMM tiling and its sources, so the same algorithm runs on every API.
///
/// WGSL: binds A, B (read), C (read-write) and the problem's parameters (uniform) at bindings 0–3,
/// exposes `main`, and takes the overrides `TRANS_A` and `TRANS_B`.
/// OpenCL C: `gemm(M, N, K, alpha, A, B, beta, C, lda, ldb, ldc)` (the seed's signature plus leading
/// dimensions), built with `-D TRANS_A=0|1 -D TRANS_B=0|1`.
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
    pub wgsl: Cow<'static, str>,
    /// OpenCL C source, where the tiling has one.
    pub opencl: Option<Cow<'static, str>>,
    /// Copies of each staged slab in workgroup memory (2 when double-buffered).
    pub buffers: u32,
    /// Whether the next slab's global loads are issued before this one is computed.
    pub prefetch: bool,
    /// Tile-rows per band of the grouped workgroup order (0: row-major order).
    pub group_m: u32,
}

impl KernelSpec {
    /// Threads per workgroup.
    pub fn invocations(&self) -> u32 {
        self.workgroup[0] * self.workgroup[1]
    }

    /// Workgroup memory of the staged slabs of A and B, bytes.
    pub fn workgroup_memory_bytes(&self) -> u32 {
        4 * self.tile_k * (self.tile_m + self.tile_n) * self.buffers
    }

    /// Workgroups to dispatch for an m×n output: (along N, along M).
    pub fn dispatch(&self, m: usize, n: usize) -> (u64, u64) {
        (
            (n as u64).div_ceil(self.tile_n as u64),
            (m as u64).div_ceil(self.tile_m as u64),
        )
    }
}

/// A hand-written seed kernel: square tile, thread tile, vector width, its two sources.
fn seed_kernel(
    name: &str,
    tile: u32,
    per_thread: u32,
    vector_width: u32,
    wgsl: &'static str,
    opencl: &'static str,
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
        wgsl: Cow::Borrowed(wgsl),
        opencl: Some(Cow::Borrowed(opencl)),
        buffers: 1,
        prefetch: false,
        group_m: 0,
    }
}

/// Every kernel: the seed's three tilings, then the register-blocked family ([`crate::family`]),
/// built once per process (the family's WGSL is generated).
pub fn catalogue() -> &'static [KernelSpec] {
    static CATALOGUE: std::sync::OnceLock<Vec<KernelSpec>> = std::sync::OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let mut all = seed_kernels();
        all.extend(crate::family::family_kernels());
        all
    })
}

/// The catalogue entry named `name`.
pub fn find(name: &str) -> Option<&'static KernelSpec> {
    catalogue().iter().find(|k| k.name == name)
}

/// The seed project's three tilings, in WGSL and OpenCL C.
pub fn seed_kernels() -> Vec<KernelSpec> {
    vec![
        seed_kernel(
            "tile16",
            16,
            1,
            1,
            include_str!("../shaders/tile16.wgsl"),
            include_str!("../kernels_cl/tile16.cl"),
        ),
        seed_kernel(
            "tile20",
            20,
            2,
            1,
            include_str!("../shaders/tile20.wgsl"),
            include_str!("../kernels_cl/tile20.cl"),
        ),
        seed_kernel(
            "tile24",
            24,
            2,
            4,
            include_str!("../shaders/tile24.wgsl"),
            include_str!("../kernels_cl/tile24.cl"),
        ),
    ]
}

/// The kernel every GPU backend offers and the selector's baseline (the seed's rollback target).
pub const BASELINE_KERNEL: &str = "tile16";

/// The prior's first choice on a GPU: the family member with the best median across 1400³–8192³
/// on the H200 (benchmarks/NOTES.md); tile24 and the baseline follow where it cannot run.
pub const PRIOR_GPU_KERNELS: [&str; 3] = ["rb128x64x16_8x4_p", "tile24", BASELINE_KERNEL];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_tilings_match_the_design_table() {
        let kernels = seed_kernels();
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
            assert!(k.wgsl.contains(&wgsize), "{} must declare {wgsize}", k.name);
            let cl_size = format!(
                "reqd_work_group_size({}, {}, 1)",
                k.workgroup[0], k.workgroup[1]
            );
            let opencl = k.opencl.as_deref().unwrap();
            assert!(
                opencl.contains(&cl_size),
                "{}.cl must declare {cl_size}",
                k.name
            );
        }
    }

    #[test]
    fn the_prior_names_catalogued_kernels() {
        let names: Vec<&str> = catalogue().iter().map(|k| k.name.as_str()).collect();
        for kernel in PRIOR_GPU_KERNELS {
            assert!(names.contains(&kernel), "{kernel} is not in the catalogue");
        }
    }

    #[test]
    fn dispatch_covers_ragged_edges() {
        let tile24 = &catalogue()[2];
        assert_eq!(tile24.dispatch(1, 1), (1, 1));
        assert_eq!(tile24.dispatch(25, 48), (2, 2));
        assert_eq!(tile24.dispatch(0, 5), (1, 0));
    }
}
