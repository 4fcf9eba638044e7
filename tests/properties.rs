//! Properties over arbitrary input, a fixed number of cases per run: problem validation (any sizes,
//! leading dimensions, slice lengths, transposes and scalars give a typed error with C untouched, or
//! the reference's result), every file loader (arbitrary bytes give an error or a value, never a
//! panic), and the command line's shape parser.

mod common;

use common::cpu_backend;
use proptest::prelude::*;
use tilegemm::reference::{max_relative_error, reference_gemm};
use tilegemm::select::calibration::Calibration;
use tilegemm::select::db::TuningDb;
use tilegemm::select::model::Model;
use tilegemm::verify::tolerance;
use tilegemm::{GemmProblem, Shape, Transpose};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// A GEMM on the CPU backend: either a typed error with C as it was, or the reference's C.
    #[test]
    fn problems_are_validated_or_computed_right(
        (m, n, k) in (0usize..12, 0usize..12, 0usize..12),
        pads in (0usize..3, 0usize..3, 0usize..3),
        short in (0usize..3, 0usize..3, 0usize..3),
        (ta, tb) in (any::<bool>(), any::<bool>()),
        (alpha, beta) in (-2.0f32..2.0, prop_oneof![Just(0.0f32), -2.0f32..2.0]),
        explicit_ld in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut problem = GemmProblem::new(m, n, k)
            .with_transpose(Transpose::from_bool(ta), Transpose::from_bool(tb))
            .with_scalars(alpha, beta);
        if explicit_ld {
            // Leading dimensions around the row lengths: some too short on purpose.
            let (lda, ldb, ldc) = (problem.lda(), problem.ldb(), problem.ldc());
            problem = problem.with_leading_dims(
                (lda + pads.0).saturating_sub(1),
                (ldb + pads.1).saturating_sub(1),
                (ldc + pads.2).saturating_sub(1),
            );
        }
        let spans = problem.extents();
        let (la, lb, lc) = match &spans {
            Ok(e) => (e.a.saturating_sub(short.0 % 2), e.b.saturating_sub(short.1 % 2), e.c.saturating_sub(short.2 % 2)),
            Err(_) => (m * k, k * n, m * n),
        };
        let mut values = seed;
        let mut next = || {
            values = values.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((values >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let a: Vec<f32> = (0..la).map(|_| next()).collect();
        let b: Vec<f32> = (0..lb).map(|_| next()).collect();
        let c0: Vec<f32> = (0..lc).map(|_| next()).collect();
        let mut c = c0.clone();
        let cpu = cpu_backend();
        match cpu.gemm("native", &problem, &a, &b, &mut c) {
            Err(_) => prop_assert_eq!(&c, &c0, "C untouched on error"),
            Ok(()) => {
                let want = reference_gemm(&problem, &a, &b, &c0).unwrap();
                prop_assert!(max_relative_error(&problem, &c, &want) < tolerance(k));
            }
        }
    }

    /// Arbitrary bytes in place of a tuning database, a calibration or a model: an error or a
    /// value, never a panic (nor a hang).
    #[test]
    fn loaders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), json in any::<bool>()) {
        let dir = std::env::temp_dir().join(format!("tilegemm-prop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = if json {
            // Mostly-valid JSON shapes of each file, with the bytes as a string inside.
            format!("{{\"format\": \"tilegemm-tuning-db\", \"version\": 1, \"rows\": {:?}}}", String::from_utf8_lossy(&bytes))
        } else {
            String::from_utf8_lossy(&bytes).to_string()
        };
        let key = "cpu/native/x/1";
        for name in [
            TuningDb::file_name(key),
            Calibration::file_name(key),
            Model::file_name(&[key.to_string()]),
        ] {
            std::fs::write(dir.join(name), &text).unwrap();
        }
        let _ = TuningDb::load(&dir, key);
        let _ = TuningDb::read_file(&dir.join(TuningDb::file_name(key)));
        let _ = Calibration::load(&dir, key);
        let _ = Model::load(&dir, &[key.to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The command line's shape parser: an error or a shape, never a panic; shapes it prints
    /// parse back to themselves.
    #[test]
    fn shapes_parse_or_are_refused(text in "[0-9x]{0,24}", (m, n, k) in (0usize..100_000, 0usize..100_000, 0usize..100_000)) {
        let _ = text.parse::<Shape>();
        let shape = Shape::new(m, n, k);
        prop_assert_eq!(shape.to_string().parse::<Shape>().ok(), Some(shape));
    }
}
