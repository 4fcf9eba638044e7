//! The CPU backend: the `gemm` crate's multithreaded SIMD kernels. The fallback on every host and
//! usually the right choice for tiny problems.

use super::Backend;
use crate::device::{BackendKind, Capabilities, DeviceInfo, DeviceType};
use crate::error::{Error, Result};
use crate::problem::{op_strides, scale_c, GemmProblem};

/// The one kernel the CPU backend offers.
pub const NATIVE_KERNEL: &str = "native";

/// Multiply-adds a product must have before waking the thread pool pays: on a 2-core Xeon one
/// core does 96³–192³ at 150–160 GFLOPS while two (through rayon) do 67–155, and two win from
/// 256³ (232 against 165).
const MIN_MACS_FOR_THREADS: f64 = 2.0 * 160.0 * 160.0 * 160.0;

/// How many of `available` threads `macs` multiply-adds are worth: one, or every one. Once the
/// pool is awake more threads cost little: on a 16-core Xeon 16 threads beat 2, 4 and 8 at 192³,
/// 256³ and 384³ (398 / 414 / 523 GFLOPS against at most 225 / 346 / 426; 8 won only at 512³,
/// 643 against 573), where a ramp of one thread per 160³ gave 256³ four.
fn threads_worth(macs: f64, available: usize) -> usize {
    if macs < MIN_MACS_FOR_THREADS {
        1
    } else {
        available.max(1)
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
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
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
        let threads = threads_worth(problem.flops() / 2.0, self.threads).min(problem.batch);
        let share_batch = product_threads == 1 && threads > 1;
        if !share_batch {
            // Large products (or little work): one after the other, each on as many cores as
            // it is worth.
            let parallelism = if product_threads > 1 {
                gemm::Parallelism::Rayon(product_threads)
            } else {
                gemm::Parallelism::None
            };
            for index in 0..problem.batch {
                let (a_at, b_at, c_at) = problem.offsets(index);
                let (a, b, c) = (
                    a[a_at..].as_ptr(),
                    b[b_at..].as_ptr(),
                    c[c_at..].as_mut_ptr(),
                );
                // SAFETY: check_lengths proved every product lies inside the slices, and C
                // (borrowed mutably) does not alias A or B.
                unsafe { raw_product(&single, a, b, c, parallelism) };
            }
            return Ok(());
        }
        // Small products: the batch shared among threads, each product on one core.
        let c_start = SendPtr(c.as_mut_ptr());
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let single = &single;
                scope.spawn(move || {
                    let c_start = c_start;
                    for index in (thread..problem.batch).step_by(threads) {
                        let (a_at, b_at, c_at) = problem.offsets(index);
                        // SAFETY: check_lengths proved every product lies inside the slices, and
                        // extents() that no two products' C elements overlap, so threads write
                        // disjoint elements.
                        unsafe {
                            let c = c_start.0.add(c_at);
                            raw_product(
                                single,
                                a[a_at..].as_ptr(),
                                b[b_at..].as_ptr(),
                                c,
                                gemm::Parallelism::None,
                            )
                        };
                    }
                });
            }
        });
        Ok(())
    }
}

/// C's base pointer, sent to the threads that each write their own products of a batch.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the threads given it write disjoint elements (the batch's C matrices never overlap).
unsafe impl Send for SendPtr {}

/// `single` through the `gemm` crate on operands at these addresses.
///
/// # Safety
/// Every element `single` addresses from each pointer must be valid, C's for writing, and C must
/// not alias A or B.
unsafe fn raw_product(
    single: &GemmProblem,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    parallelism: gemm::Parallelism,
) {
    let (a_rs, a_cs) = op_strides(single.trans_a, single.lda());
    let (b_rs, b_cs) = op_strides(single.trans_b, single.ldb());
    // The crate computes dst := alpha·dst + beta·lhs·rhs, so our β is its alpha and our α its beta;
    // with read_dst false it never reads C (β = 0 overwrites NaN, as BLAS does).
    gemm::gemm(
        single.m,
        single.n,
        single.k,
        c,
        1,
        single.ldc() as isize,
        single.beta != 0.0,
        a,
        a_cs,
        a_rs,
        b,
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
    use super::threads_worth;

    #[test]
    fn threads_are_one_below_the_threshold_and_every_core_above() {
        let macs = |n: f64| n * n * n;
        assert_eq!(threads_worth(macs(128.0), 16), 1);
        assert_eq!(threads_worth(macs(192.0), 16), 1);
        assert_eq!(threads_worth(macs(256.0), 16), 16);
        assert_eq!(threads_worth(macs(256.0), 2), 2);
        assert_eq!(threads_worth(macs(4096.0), 1), 1);
        assert_eq!(threads_worth(macs(4096.0), 0), 1);
    }
}
