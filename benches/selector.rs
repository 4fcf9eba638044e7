//! Selection latency: a decision made from the databases and model (uncached), and the same
//! decision served from the selector's cache.

use criterion::{criterion_group, criterion_main, Criterion};
use tilegemm::select::calibration::CalibrationMode;
use tilegemm::select::db::user_dir;
use tilegemm::select::Selector;
use tilegemm::{Engine, GemmProblem, Target};

fn selection_latency(c: &mut Criterion) {
    let engine = Engine::new();
    let selector = Selector::from_sources(
        engine.backends(),
        &Selector::default_sources(),
        user_dir().map_or(CalibrationMode::InMemory, CalibrationMode::Cached),
    );
    let target = Target::default();
    let problem = GemmProblem::new(700, 300, 500);
    c.bench_function("select/uncached", |b| {
        b.iter(|| selector.select(&target, &problem).unwrap())
    });
    selector.select_cached(&target, &problem).unwrap();
    c.bench_function("select/cached", |b| {
        b.iter(|| selector.select_cached(&target, &problem).unwrap())
    });
}

criterion_group!(benches, selection_latency);
criterion_main!(benches);
