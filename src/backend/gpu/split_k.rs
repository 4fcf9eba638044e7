//! Split-K: a kernel whose `split_k` is S runs a GEMM with little output and a long K as S slices
//! of K, so that a 64×64 output, one workgroup otherwise, keeps S workgroups busy.
//!
//! Pass 1 is a strided batch: slice s of K is product s, A and B advanced by s slices, its partial
//! m×n product written to slice s of a workspace (α = 1, β = 0); a last, shorter slice is a launch
//! of its own with the same strides. Pass 2 ([`split_k_sum`]) sums the slices into C with the
//! problem's α and β, each quad of C by 16 threads and a halving in workgroup memory. No atomics
//! (WGSL has none for floats): the sum runs in a fixed order, so a result repeats bit for bit. A
//! batch runs its products whole (no split).

use super::{padded_bytes, GpuBackend, GpuRuntime};
use crate::error::{Error, Result};
use crate::kernel::{
    split_k_sum, split_k_sum_dispatch, Dispatch, KernelSpec, Params, Specialisation,
};
use crate::problem::{Extents, GemmProblem, Transpose};

/// The most floats a split-K workspace holds (64 MiB): a kernel cuts K into fewer slices where its
/// output is large (a 4096×4096 output in 128 slices would want 8 GiB), and runs whole where one
/// slice of the output fills it, where its tiles alone fill a GPU and a split would not pay.
pub(crate) const WORKSPACE_ELEMENTS: usize = 1 << 24;

/// How one problem is cut into slices of K.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SplitPlan {
    problem: GemmProblem,
    /// Depth of every full slice.
    slab: usize,
    /// Full slices.
    full: usize,
    /// Depth of the last, shorter slice (0: none).
    rest: usize,
}

impl SplitPlan {
    /// `problem` (a single GEMM, k > 0) cut into at most `splits` slices of equal depth but the last,
    /// and no more than [`WORKSPACE_ELEMENTS`] hold.
    pub(crate) fn new(problem: &GemmProblem, splits: u32) -> Self {
        let fitting = (WORKSPACE_ELEMENTS / (problem.m * problem.n).max(1)).max(1);
        let splits = (splits.max(1) as usize).min(fitting);
        let slab = problem.k.div_ceil(splits).max(1);
        SplitPlan {
            problem: *problem,
            slab,
            full: problem.k / slab,
            rest: problem.k % slab,
        }
    }

    /// Slices written to the workspace.
    pub(crate) fn slices(&self) -> usize {
        self.full + (self.rest > 0) as usize
    }

    /// Floats of the workspace: one m×n partial product per slice.
    pub(super) fn workspace_elements(&self) -> usize {
        self.slices() * self.problem.m * self.problem.n
    }

    /// Depth of K of every full slice.
    pub(crate) fn slab(&self) -> usize {
        self.slab
    }

    /// The launches of pass 1: the full slices as a batch, then the short one, each slice's A and
    /// B a slab further along K than the last's.
    fn partial_dispatches(&self, spec: &KernelSpec, max_layers: u32) -> Vec<Dispatch> {
        let p = &self.problem;
        let (m, n, slab) = (p.m, p.n, self.slab);
        let stride_a = if p.trans_a.is_transposed() {
            slab * p.lda()
        } else {
            slab
        };
        let stride_b = if p.trans_b.is_transposed() {
            slab
        } else {
            slab * p.ldb()
        };
        let slices = GemmProblem::new(m, n, slab)
            .with_transpose(p.trans_a, p.trans_b)
            .with_leading_dims(p.lda(), p.ldb(), n)
            .with_batch(self.full, stride_a, stride_b, m * n);
        // Set the strides whatever the count: a single full slice still strides to the short one.
        let strided = |params: Params| Params {
            stride_a: stride_a as u32,
            stride_b: stride_b as u32,
            stride_c: (m * n) as u32,
            ..params
        };
        let mut launches: Vec<Dispatch> = spec
            .dispatches(&slices, max_layers)
            .map(|d| Dispatch {
                params: strided(d.params),
                ..d
            })
            .collect();
        if self.rest > 0 {
            let (groups_x, groups_y) = spec.dispatch(m, n);
            launches.push(Dispatch {
                params: strided(Params {
                    k: self.rest as u32,
                    first_batch: self.full as u32,
                    ..Params::of(&slices)
                }),
                groups: [groups_x as u32, groups_y as u32, 1],
            });
        }
        launches
    }

    /// Pass 2 as a GEMM, for the cost model: [`sum_problem`] of this plan's slices.
    pub(crate) fn reduce_problem(&self) -> GemmProblem {
        sum_problem(&self.problem, self.slices())
    }
}

/// The sum of `slices` partial products of `problem` into C as a GEMM, for the cost model:
/// product i is row i of C (n×1) ← α · (the n×S matrix of row i's partial rows) · (S ones) + β ·
/// row i. The sums [`split_k_sum`] computes, priced as the batched GEMM that computed them before
/// it (an upper bound of its cost).
pub(crate) fn sum_problem(problem: &GemmProblem, slices: usize) -> GemmProblem {
    let p = problem;
    GemmProblem::new(p.n, 1, slices)
        .with_transpose(Transpose::Yes, Transpose::No)
        .with_scalars(p.alpha, p.beta)
        .with_leading_dims(p.m * p.n, 1, 1)
        .with_batch(p.m, p.n, 0, p.ldc())
}

impl<R: GpuRuntime> GpuBackend<R> {
    /// Queues `problem` with the split-K `spec` on (A, B, C), which span `extents`: pass 1 into
    /// the workspace, pass 2 into C. With `timed`, the kernel seconds of both passes.
    pub(super) fn enqueue_split_k(
        &self,
        program: &R::Program,
        spec: &KernelSpec,
        problem: &GemmProblem,
        extents: &Extents,
        [a, b, c]: [&R::Buffer; 3],
        timed: bool,
    ) -> Result<Option<f64>> {
        let plan = SplitPlan::new(problem, spec.split_k);
        let summer = split_k_sum();
        let summer_program = self.program(summer, Specialisation::default())?;
        let max_groups = self.max_layers();
        let sum = split_k_sum_dispatch(
            (problem.m, problem.n, plan.slices()),
            problem.ldc(),
            (problem.alpha, problem.beta),
            max_groups,
        )
        .map_err(|groups| Error::DeviceLimit {
            device: self.runtime.info().name.clone(),
            limit: "workgroups of the split-K sum (x times y)",
            required: groups,
            available: max_groups as u64 * max_groups as u64,
        })?;
        // One call at a time through the workspace: pass 1 of a second call queued between this
        // call's passes would overwrite the partials before they are summed.
        let mut workspace = self.workspace.lock().unwrap_or_else(|e| e.into_inner());
        let partials = self.reuse(
            &mut workspace,
            padded_bytes(plan.workspace_elements()),
            "the split-K workspace",
        )?;
        let partials = &*partials;
        let partial_extents = Extents {
            c: plan.workspace_elements(),
            ..*extents
        };
        let sum_extents = Extents {
            a: plan.workspace_elements(),
            b: plan.workspace_elements(),
            ..*extents
        };
        let passes = [
            (
                program,
                spec,
                &partial_extents,
                [a, b, partials],
                plan.partial_dispatches(spec, max_groups),
            ),
            (
                &summer_program,
                summer,
                &sum_extents,
                [partials, partials, c],
                vec![sum],
            ),
        ];
        let mut seconds = Some(0.0);
        for (program, spec, extents, buffers, dispatches) in passes {
            let ran = self.launch_all(program, spec, dispatches, extents, &buffers, timed)?;
            seconds = seconds.zip(ran).map(|(sum, s)| sum + s);
        }
        Ok(seconds)
    }
}

/// Whether `spec` runs `problem` in slices of K: a split-K kernel on a single GEMM (a batch runs
/// its products whole) whose plan has more than one slice.
pub(crate) fn applies(spec: &KernelSpec, problem: &GemmProblem) -> bool {
    spec.split_k > 1 && problem.batch == 1 && SplitPlan::new(problem, spec.split_k).slices() > 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{max_relative_error, reference_gemm};
    use rand::{Rng, SeedableRng};

    /// Large outputs get fewer slices, within the workspace's bound, and none where one slice of
    /// the output fills it: the kernel then runs whole.
    #[test]
    fn the_workspace_bounds_the_slices() {
        let spec = crate::kernel::find("rb64x64x16_4x4_db_sk128").unwrap();
        for (side, slices) in [(64, 128), (1024, 16), (2048, 4), (4096, 1)] {
            let problem = GemmProblem::new(side, side, 65536);
            let plan = SplitPlan::new(&problem, spec.split_k);
            assert_eq!(plan.slices(), slices, "{side}²");
            assert!(plan.workspace_elements() <= WORKSPACE_ELEMENTS);
            assert_eq!(applies(spec, &problem), slices > 1, "{side}²");
        }
        assert!(!applies(
            spec,
            &GemmProblem::new(64, 64, 4096).with_packed_batch(2)
        ));
    }

    /// The two passes, computed by the f64 reference on the plan's own problems and strides, give
    /// the product of the whole problem: every transpose, padded leading dimensions, a short last
    /// slice, α and β.
    #[test]
    fn slices_then_their_sum_compose_to_the_whole_product() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
        for (m, n, k, splits) in [(5, 7, 64, 4), (3, 2, 70, 16), (9, 4, 5, 8), (1, 1, 3, 2)] {
            for (ta, tb) in [
                (Transpose::No, Transpose::No),
                (Transpose::Yes, Transpose::No),
                (Transpose::No, Transpose::Yes),
                (Transpose::Yes, Transpose::Yes),
            ] {
                let plain = GemmProblem::new(m, n, k).with_transpose(ta, tb);
                let problem = plain.with_scalars(0.5, -2.0).with_leading_dims(
                    plain.lda() + 2,
                    plain.ldb() + 1,
                    n + 3,
                );
                let e = problem.extents().unwrap();
                let mut operands = [vec![0.0f32; e.a], vec![0.0f32; e.b], vec![0.0f32; e.c]];
                for x in operands.iter_mut().flatten() {
                    *x = rng.random_range(-1.0..=1.0);
                }
                let [a, b, c] = &operands;
                let want = reference_gemm(&problem, a, b, c).unwrap();

                let plan = SplitPlan::new(&problem, splits);
                assert!(plan.slices() <= splits as usize);
                assert_eq!(plan.full * plan.slab + plan.rest, k);
                let mut partials = vec![0.0f32; plan.workspace_elements()];
                for d in plan.partial_dispatches(crate::kernel::find("tile16").unwrap(), 2) {
                    let p = d.params;
                    for layer in 0..d.groups[2] {
                        let s = (p.first_batch + layer) as usize;
                        let slice = GemmProblem::new(m, n, p.k as usize)
                            .with_transpose(ta, tb)
                            .with_leading_dims(problem.lda(), problem.ldb(), n);
                        let (a_at, b_at) = (s * p.stride_a as usize, s * p.stride_b as usize);
                        let zero = vec![0.0f32; m * n];
                        let r = reference_gemm(&slice, &a[a_at..], &b[b_at..], &zero).unwrap();
                        let out = &mut partials[s * p.stride_c as usize..][..m * n];
                        out.iter_mut().zip(r).for_each(|(o, x)| *o = x as f32);
                    }
                }
                let reduce = plan.reduce_problem();
                let ones = vec![1.0f32; plan.slices()];
                let mut got = c.clone();
                let sums = reference_gemm(&reduce, &partials, &ones, c).unwrap();
                for i in 0..m {
                    for j in 0..n {
                        got[i * problem.ldc() + j] = sums[i * n + j] as f32;
                    }
                }
                let error = max_relative_error(&problem, &got, &want);
                assert!(error < 1e-5, "{problem:?} in {splits}: {error}");
            }
        }
    }
}
