//! A long-lived process stays flat: random small shapes through one default engine, resident
//! memory compared between half the calls and the end. By half, the bounded caches are full (shapes
//! up to 48 fall in some 16,000 decision buckets, the decision cache keeps 1,024), so what follows is
//! the steady state. A short run in CI; the full one is
//! `cargo test --release --all-features --test soak -- --ignored` (100,000 calls).

mod common;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use tilegemm::{Engine, GemmProblem};

/// Resident set size of this process, bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `calls` GEMMs of random shapes up to 48 on each side through a default engine; (calls per
/// second, RSS after `warm_up` calls, RSS at the end).
fn soak(calls: usize, warm_up: usize) -> (f64, u64, u64) {
    let engine = Engine::new();
    let mut rng = SmallRng::seed_from_u64(42);
    let (a, b) = (vec![0.5f32; 48 * 48], vec![0.25f32; 48 * 48]);
    let mut c = vec![0.0f32; 48 * 48];
    let mut warm = 0;
    let started = Instant::now();
    for call in 0..calls {
        if call == warm_up {
            warm = rss_bytes();
        }
        let (m, n, k) = (
            rng.random_range(1..=48),
            rng.random_range(1..=48),
            rng.random_range(1..=48),
        );
        let problem = GemmProblem::new(m, n, k);
        engine.gemm(&problem, &a, &b, &mut c).unwrap();
        assert_eq!(c[0], 0.125 * k as f32, "{m}x{n}x{k}");
    }
    let rate = calls as f64 / started.elapsed().as_secs_f64();
    (rate, warm, rss_bytes())
}

#[test]
fn a_short_soak_stays_flat() {
    let (rate, warm, end) = soak(6_000, 3_000);
    eprintln!("{rate:.0} calls/s, RSS {} → {} MB", warm >> 20, end >> 20);
    // Allocator noise at this size is a few MB; unbounded caches grew by ~1.8 KB per shape.
    assert!(end <= warm + (16 << 20), "RSS {warm} → {end}");
    assert!(engine_caches_are_bounded());
}

/// The decision cache never holds more than its bound, however many shapes went through.
fn engine_caches_are_bounded() -> bool {
    let engine = Engine::new();
    let (a, b) = (vec![1.0f32; 64 * 64], vec![1.0f32; 64 * 64]);
    let mut c = vec![0.0f32; 64 * 64];
    for m in 1..=64 {
        for n in 1..=64 {
            engine
                .gemm(&GemmProblem::new(m, n, 1), &a, &b, &mut c)
                .unwrap();
        }
    }
    engine.selector().cached_decisions() <= tilegemm::select::decisions::DEFAULT_CAPACITY
}

#[test]
#[ignore = "the full soak: cargo test --release --all-features --test soak -- --ignored"]
fn soak_100k_calls_stays_flat() {
    let (rate, warm, end) = soak(100_000, 10_000);
    eprintln!(
        "{rate:.0} calls/s, RSS after 10,000 calls {} MB, after 100,000 {} MB",
        warm >> 20,
        end >> 20
    );
    assert!(end as f64 <= warm as f64 * 1.10, "RSS {warm} → {end}");
}
