//! Backend and kernel comparison: every (backend, kernel) of this host on square problems,
//! end to end (host slices in and out). Sizes stay small enough for lavapipe.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tilegemm::verify::fill_random;
use tilegemm::{Engine, GemmProblem};

fn compare_backends(c: &mut Criterion) {
    let engine = Engine::new();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut group = c.benchmark_group("gemm");
    group.sample_size(10);
    for size in [64usize, 128, 256] {
        let problem = GemmProblem::new(size, size, size);
        let mut a = vec![0.0; size * size];
        let mut b = vec![0.0; size * size];
        fill_random(&mut rng, &mut a);
        fill_random(&mut rng, &mut b);
        let mut out = vec![0.0; size * size];
        group.throughput(Throughput::Elements(problem.flops() as u64));
        for backend in engine.backends() {
            for kernel in backend.kernels_for(&problem) {
                let id = format!(
                    "{}/{}/{}",
                    backend.info().backend,
                    backend.info().api,
                    kernel
                );
                group.bench_with_input(BenchmarkId::new(id, size), &problem, |bench, problem| {
                    bench.iter(|| backend.gemm(&kernel, problem, &a, &b, &mut out).unwrap())
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, compare_backends);
criterion_main!(benches);
