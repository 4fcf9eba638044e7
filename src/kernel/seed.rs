//! The seed project's three hand-written tilings, each in WGSL (`shaders/`) and OpenCL C
//! (`kernels_cl/`): the same algorithm in both, so a backend comparison compares APIs. Each file
//! holds only its tiling; its source is the language's prelude followed by the file.

use super::spec::{KernelSpec, OPENCL_PRELUDE, WGSL_PRELUDE};
use std::borrow::Cow;

/// A seed kernel: square tile, outputs per thread along each side, vector width, its two bodies.
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
        wgsl: Cow::Owned(format!("{WGSL_PRELUDE}{wgsl}")),
        opencl: Some(Cow::Owned(format!("{OPENCL_PRELUDE}{opencl}"))),
        buffers: 1,
        prefetch: false,
        group_m: 0,
        split_k: 1,
        stream_k: 0,
    }
}

/// tile16, tile20 and tile24, in the design table's order.
pub(super) fn kernels() -> Vec<KernelSpec> {
    vec![
        seed_kernel(
            "tile16",
            16,
            1,
            1,
            include_str!("../../shaders/tile16.wgsl"),
            include_str!("../../kernels_cl/tile16.cl"),
        ),
        seed_kernel(
            "tile20",
            20,
            2,
            1,
            include_str!("../../shaders/tile20.wgsl"),
            include_str!("../../kernels_cl/tile20.cl"),
        ),
        seed_kernel(
            "tile24",
            24,
            2,
            4,
            include_str!("../../shaders/tile24.wgsl"),
            include_str!("../../kernels_cl/tile24.cl"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_tilings_match_the_design_table() {
        let kernels = kernels();
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
}
