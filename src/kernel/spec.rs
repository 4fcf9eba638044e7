//! What a kernel is to the backends: its tiling ([`KernelSpec`]), the prelude its source starts
//! from in each language ([`WGSL_PRELUDE`], [`OPENCL_PRELUDE`]), and the uniform a WGSL kernel
//! reads ([`Params`]): the binding layout, written once per language and once in Rust.

use crate::problem::{GemmProblem, Transpose};
use std::borrow::Cow;

/// The start of every WGSL kernel: `struct Params`, the overrides of a [`Specialisation`], bindings
/// 0–3 (A and B as `array<vec4<f32>>`, C as `array<f32>`, the uniform), and the guarded loads
/// (`elem_a`, `quad_a`, …) and stores (`store`, `store4`) every access goes through.
pub const WGSL_PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// The start of every OpenCL C kernel: `TRANS_A`/`TRANS_B`/`BATCHED`/`WHOLE_TILES` defaults and the
/// guarded helpers `elem`, `quad` (vload4) and `store`.
pub const OPENCL_PRELUDE: &str = include_str!("../../kernels_cl/prelude.cl");

/// One GEMM tiling and its sources, so the same algorithm runs on every API.
///
/// A stream-K member (`stream_k` > 0) also binds a fourth buffer, its partial tiles: WGSL
/// `partials` at binding 4, OpenCL a last argument `partials`; and it is built twice, for its
/// tiles and for their sum (`STREAM_K_FIXUP`).
///
/// WGSL: [`WGSL_PRELUDE`] (bindings 0–3: A, B, C and the problem's [`Params`]; the overrides
/// `TRANS_A`, `TRANS_B`, `BATCHED` and `WHOLE_TILES`: a [`Specialisation`]), then the tiling's
/// workgroup tiles and entry point `main`, which first calls `enter_batch(group.z)`.
/// OpenCL C: [`OPENCL_PRELUDE`], then `gemm(GEMM_ARGS)` (the seed's signature plus leading
/// dimensions and batch strides), which first calls `ENTER_BATCH()`, built with
/// `-D TRANS_A=0|1 -D TRANS_B=0|1 -D BATCHED=0|1 -D WHOLE_TILES=0|1`.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpec {
    /// The catalogue's key: unique, and stable across versions (tuning data is stored under it).
    pub name: String,
    /// Rows of C (along M) computed by one workgroup.
    pub tile_m: u32,
    /// Columns of C (along N) computed by one workgroup.
    pub tile_n: u32,
    /// Depth of the K slab staged in workgroup memory per step.
    pub tile_k: u32,
    /// Workgroup size, x (along N) by y (along M).
    pub workgroup: [u32; 2],
    /// Outputs per thread, rows by columns.
    pub thread_tile: [u32; 2],
    /// Width of global loads, in floats.
    pub vector_width: u32,
    /// WGSL source, starting with [`WGSL_PRELUDE`].
    pub wgsl: Cow<'static, str>,
    /// OpenCL C source, starting with [`OPENCL_PRELUDE`], where the tiling has one.
    pub opencl: Option<Cow<'static, str>>,
    /// Copies of each staged slab in workgroup memory (2 when double-buffered).
    pub buffers: u32,
    /// Whether the next slab's global loads are issued before this one is computed.
    pub prefetch: bool,
    /// Tile-rows per band of the grouped workgroup order (0: row-major order).
    pub group_m: u32,
    /// Slices K is cut into, each a workgroup layer writing partial products that a second pass
    /// sums into C (1: all of K in one pass). See `backend::gpu::split_k`.
    pub split_k: u32,
    /// Workgroups of a stream-K member's persistent grid, each taking an equal share of every
    /// tile's slabs in turn (0: one workgroup per tile). See `backend::gpu::stream_k`.
    pub stream_k: u32,
}

/// The kernels' revision: bump it when a change to a prelude, a seed shader or the generator
/// changes what a kernel costs, so tuning rows measured before are dropped instead of trusted
/// (revision 1: the kernels as measured on 2026-11-22/23; the one-prelude refactor was measured
/// unchanged, `benchmarks/NOTES.md`; revision 2: single GEMMs without batch offsets, unguarded
/// whole tiles).
pub const KERNEL_REVISION: u32 = 2;

impl KernelSpec {
    /// A fingerprint of what decides this kernel's speed: its name, tiling parameters and
    /// [`KERNEL_REVISION`] (FNV-1a, stable across builds and platforms). Tuning rows carry it.
    pub fn fingerprint(&self) -> u64 {
        let parameters = [
            self.tile_m,
            self.tile_n,
            self.tile_k,
            self.workgroup[0],
            self.workgroup[1],
            self.thread_tile[0],
            self.thread_tile[1],
            self.vector_width,
            self.buffers,
            self.prefetch as u32,
            self.group_m,
            KERNEL_REVISION,
        ];
        // A split count of 1 and no stream-K grid add nothing: fingerprints from before stay valid.
        let split = (self.split_k > 1).then_some(self.split_k);
        let stream = (self.stream_k > 0).then_some(self.stream_k);
        let bytes = self.name.bytes().chain(
            parameters
                .iter()
                .chain(split.iter())
                .chain(stream.iter())
                .flat_map(|p| p.to_le_bytes()),
        );
        bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// The member whose rate this kernel shares: for a split-K member (`<member>_sk<slices>`,
    /// see [`super::SPLIT_K`]) the member it cuts K for, for a stream-K member
    /// (`<member>_streamk<groups>`, [`super::STREAM_K`]) the member it schedules, else the kernel
    /// itself.
    pub fn whole_name(&self) -> &str {
        let (suffix, count) = if self.stream_k > 0 {
            ("_streamk", self.stream_k)
        } else {
            ("_sk", self.split_k)
        };
        match self.name.rsplit_once(suffix) {
            Some((member, n)) if count > 1 && n == count.to_string() => member,
            _ => &self.name,
        }
    }

    /// Threads per workgroup.
    pub fn invocations(&self) -> u32 {
        self.workgroup[0] * self.workgroup[1]
    }

    /// Workgroup memory of the staged slabs of A and B, bytes.
    pub fn workgroup_memory_bytes(&self) -> u32 {
        4 * self.tile_k * (self.tile_m + self.tile_n) * self.buffers
    }

    /// Whether `problem` is whole tiles of this kernel with 16-byte aligned rows: M, N and K
    /// multiples of the tile, the leading dimensions (and, in a batch, the strides) of A and B
    /// multiples of 4 floats. Every access of a kernel that stays inside its tiles then lies inside
    /// the operands, A's and B's quads on 16-byte boundaries (buffers start aligned).
    pub fn whole_tiles(&self, problem: &GemmProblem) -> bool {
        let strides_aligned =
            problem.batch == 1 || (problem.stride_a() | problem.stride_b()).is_multiple_of(4);
        problem.m.is_multiple_of(self.tile_m as usize)
            && problem.n.is_multiple_of(self.tile_n as usize)
            && problem.k.is_multiple_of(self.tile_k as usize)
            && (problem.lda() | problem.ldb()).is_multiple_of(4)
            && strides_aligned
    }

    /// Workgroups to dispatch for an m×n output: (along N, along M).
    pub fn dispatch(&self, m: usize, n: usize) -> (u64, u64) {
        (
            (n as u64).div_ceil(self.tile_n as u64),
            (m as u64).div_ceil(self.tile_m as u64),
        )
    }

    /// The launches of `problem`, whose grid the caller has checked against the device along x
    /// and y: one layer of workgroups per product of the batch, in launches of at most
    /// `max_layers` layers.
    pub fn dispatches(
        &self,
        problem: &GemmProblem,
        max_layers: u32,
    ) -> impl Iterator<Item = Dispatch> {
        let (groups_x, groups_y) = self.dispatch(problem.m, problem.n);
        let params = Params::of(problem);
        let batch = problem.batch as u32;
        (0..batch)
            .step_by(max_layers.max(1) as usize)
            .map(move |first| Dispatch {
                params: Params {
                    first_batch: first,
                    ..params
                },
                groups: [
                    groups_x as u32,
                    groups_y as u32,
                    (batch - first).min(max_layers.max(1)),
                ],
            })
    }
}

/// What one program of a kernel is built for: the transposes (WGSL overrides `TRANS_A`, `TRANS_B`;
/// OpenCL `-D TRANS_A=…`), whether it runs more than one product (`BATCHED`: a single GEMM's
/// program leaves out the per-product offsets, which cost rb128x64x16_8x4_p 9–14% on an H100,
/// `benchmarks/NOTES.md` v8), and whether every access may go unguarded (`WHOLE_TILES`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Specialisation {
    /// A is stored transposed.
    pub trans_a: Transpose,
    /// B is stored transposed.
    pub trans_b: Transpose,
    /// Workgroup layers are products of a strided batch (or split-K's slices).
    pub batched: bool,
    /// The problem is whole tiles of the kernel, 16-byte aligned ([`KernelSpec::whole_tiles`]):
    /// loads and stores go unguarded (WGSL override and OpenCL macro `WHOLE_TILES`).
    pub whole_tiles: bool,
    /// A stream-K member's second pass, which sums the partial tiles into C (WGSL override and
    /// OpenCL macro `STREAM_K_FIXUP`; stream-K members only).
    pub fixup: bool,
}

/// One launch of a kernel: the uniform (OpenCL: the arguments) and the grid of workgroups, x along
/// N, y along M, z the products of the batch from `params.first_batch` on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dispatch {
    /// What the kernel reads.
    pub params: Params,
    /// Workgroups along x, y and z.
    pub groups: [u32; 3],
}

/// The problem as a WGSL kernel reads it at binding 3: field for field the prelude's
/// `struct Params` (a test parses the prelude and checks the order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of op(A) and of C.
    pub m: u32,
    /// Columns of op(B) and of C.
    pub n: u32,
    /// Depth of the product: columns of op(A), rows of op(B).
    pub k: u32,
    /// Row stride of A as stored, in elements.
    pub lda: u32,
    /// Row stride of B as stored, in elements.
    pub ldb: u32,
    /// Row stride of C, in elements.
    pub ldc: u32,
    /// α, the scale of op(A)·op(B).
    pub alpha: f32,
    /// β, the scale of the incoming C (0: C is not read).
    pub beta: f32,
    /// Elements from one product's A to the next (0: one A for every product).
    pub stride_a: u32,
    /// Elements from one product's B to the next (0: one B for every product).
    pub stride_b: u32,
    /// Elements from one product's C to the next.
    pub stride_c: u32,
    /// The product that workgroup layer 0 computes.
    pub first_batch: u32,
}

impl Params {
    /// The uniform of `problem` from its first product, whose sizes the backend has checked to
    /// fit in u32 (a batch's strides too, where it has more than one product).
    pub fn of(problem: &GemmProblem) -> Self {
        // A single product never moves by its strides: they may be anything.
        let stride = |s: usize| if problem.batch > 1 { s as u32 } else { 0 };
        Params {
            m: problem.m as u32,
            n: problem.n as u32,
            k: problem.k as u32,
            lda: problem.lda() as u32,
            ldb: problem.ldb() as u32,
            ldc: problem.ldc() as u32,
            alpha: problem.alpha,
            beta: problem.beta,
            stride_a: stride(problem.stride_a()),
            stride_b: stride(problem.stride_b()),
            stride_c: stride(problem.stride_c()),
            first_batch: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_carry_the_leading_dimensions_and_scalars() {
        let problem = GemmProblem::new(5, 6, 7)
            .with_scalars(0.5, 2.0)
            .with_leading_dims(9, 10, 11);
        let expected = Params {
            m: 5,
            n: 6,
            k: 7,
            lda: 9,
            ldb: 10,
            ldc: 11,
            alpha: 0.5,
            beta: 2.0,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
            first_batch: 0,
        };
        assert_eq!(Params::of(&problem), expected);
        let batched = problem.with_batch(3, 0, 70, 66);
        let strides = Params::of(&batched);
        assert_eq!(
            (strides.stride_a, strides.stride_b, strides.stride_c),
            (0, 70, 66)
        );
    }

    #[test]
    fn a_batch_over_the_grid_limit_runs_in_several_launches() {
        let spec = crate::kernel::find("tile16").unwrap();
        let problem = GemmProblem::new(20, 40, 3).with_packed_batch(5);
        let launches: Vec<Dispatch> = spec.dispatches(&problem, 2).collect();
        let layers: Vec<(u32, u32)> = launches
            .iter()
            .map(|d| (d.params.first_batch, d.groups[2]))
            .collect();
        assert_eq!(layers, [(0, 2), (2, 2), (4, 1)]);
        assert!(launches.iter().all(|d| d.groups[..2] == [3, 2]));
        assert_eq!(spec.dispatches(&problem.with_packed_batch(0), 2).count(), 0);
    }
}
