//! The kernel catalogue: every GPU kernel is a tiling (its parameters, [`KernelSpec`]) plus its
//! sources, embedded in the binary so `tilegemm` runs from any directory.
//!
//! - `spec`: [`KernelSpec`], the prelude of each language ([`WGSL_PRELUDE`], [`OPENCL_PRELUDE`]:
//!   binding layout, guarded loads and stores) and the uniform [`Params`] every WGSL kernel reads;
//! - `seed`: the seed project's tilings (tile16, tile20, tile24) in WGSL and OpenCL C;
//! - `family`: the register-blocked family for modern GPUs, generated in WGSL and OpenCL C from
//!   parameter sets ([`FAMILY`], [`TileParams`]), its split-K members ([`SPLIT_K`]) and its
//!   stream-K members ([`STREAM_K`]).
//! - `split_k_sum`: the split-K members' summing pass ([`split_k_sum`]), launched by the backends
//!   after a member's slices; not a GEMM, so not in the catalogue.
//!
//! The catalogue is built once per process (the family's WGSL is generated then) and shared by
//! every device: [`catalogue`], [`find`].

mod family;
mod seed;
mod spec;
mod split_k_sum;

pub use family::{Language, Staging, TileParams, FAMILY, SPLIT_K, STREAM_K};
pub use spec::{
    Dispatch, KernelSpec, Params, Specialisation, KERNEL_REVISION, OPENCL_PRELUDE, WGSL_PRELUDE,
};
pub use split_k_sum::{split_k_sum, split_k_sum_dispatch};

use std::sync::OnceLock;

/// Every kernel: the seed's three tilings, then the register-blocked family.
pub fn catalogue() -> &'static [KernelSpec] {
    static CATALOGUE: OnceLock<Vec<KernelSpec>> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let mut all = seed::kernels();
        all.extend(family::kernels());
        all
    })
}

/// The catalogue entry named `name`.
pub fn find(name: &str) -> Option<&'static KernelSpec> {
    catalogue().iter().find(|k| k.name == name)
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
    fn the_prior_names_catalogued_kernels() {
        for kernel in PRIOR_GPU_KERNELS {
            assert!(find(kernel).is_some(), "{kernel} is not in the catalogue");
        }
    }

    #[test]
    fn names_are_unique_and_the_catalogue_is_built_once() {
        let mut names: Vec<&str> = catalogue().iter().map(|k| k.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), catalogue().len());
        assert!(std::ptr::eq(catalogue(), catalogue()));
    }

    #[test]
    fn dispatch_covers_ragged_edges() {
        let tile24 = find("tile24").unwrap();
        assert_eq!(tile24.dispatch(1, 1), (1, 1));
        assert_eq!(tile24.dispatch(25, 48), (2, 2));
        assert_eq!(tile24.dispatch(0, 5), (1, 0));
    }
}
