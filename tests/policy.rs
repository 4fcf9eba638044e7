//! Policies, rollback and telemetry of the engine, on a scripted device beside the real CPU backend:
//! its kernels fail to run (`broken`), give wrong results (`wrong`) or compute correctly.

mod common;

use common::scripted::ScriptedGpu;
use common::{cpu_backend, measurement, temp_dir};
use std::path::Path;
use std::sync::Arc;
use tilegemm::reference::{max_relative_error, reference_gemm};
use tilegemm::select::calibration::CalibrationMode;
use tilegemm::select::db::{DataSource, TuningDb};
use tilegemm::select::guard::PROBE_SHAPE;
use tilegemm::verify::{random_inputs, tolerance, verify_seeded, VerifyCase};
use tilegemm::{
    Backend, BackendKind, Engine, EngineOptions, Error, GemmProblem, Policy, Target, Transpose,
};

const SIZE: usize = 40;

/// Measurements ranking broken > wrong > good > tile16 on the scripted GPU, the CPU last.
fn databases(gpu: &ScriptedGpu, dir: &Path) {
    let mut db = TuningDb::new(gpu.info());
    for (kernel, gflops) in [
        ("broken", 1000.0),
        ("wrong", 900.0),
        ("good", 800.0),
        ("tile16", 100.0),
    ] {
        db.record(&measurement(gpu, kernel, SIZE, gflops));
    }
    db.save(dir).unwrap();
    let cpu = cpu_backend();
    let mut cpu_db = TuningDb::new(cpu.info());
    cpu_db.record(&measurement(cpu.as_ref(), "native", SIZE, 10.0));
    cpu_db.save(dir).unwrap();
}

fn engine_with(name: &str, policy: Policy, validate: bool) -> (Engine, Arc<ScriptedGpu>) {
    let gpu = Arc::new(ScriptedGpu::new());
    let dir = temp_dir(name);
    databases(&gpu, &dir);
    let engine = Engine::with_backends(
        vec![cpu_backend(), gpu.clone()],
        EngineOptions {
            policy,
            selector_data: vec![DataSource::Folder(dir)],
            validate,
            calibration: CalibrationMode::Off,
            ..EngineOptions::default()
        },
    );
    (engine, gpu)
}

/// Runs one 40³ GEMM through the engine and checks its result; returns the kernel that ran.
fn gemm_checked(engine: &Engine) -> String {
    let problem = GemmProblem::new(SIZE, SIZE, SIZE).with_scalars(0.5, 2.0);
    let (a, b, c_in) = random_inputs(&problem, &mut rand::rng());
    let mut c = c_in.clone();
    let ran = engine.gemm(&problem, &a, &b, &mut c).unwrap();
    let exact = reference_gemm(&problem, &a, &b, &c_in).unwrap();
    let error = max_relative_error(&problem, &c, &exact);
    assert!(
        error < tolerance(SIZE),
        "{ran:?} gave a wrong result: {error:e}"
    );
    ran.kernel
}

#[test]
fn failing_kernels_are_disabled_and_the_call_falls_back_with_the_reason_recorded() {
    let (engine, gpu) = engine_with("rollback", Policy::Adaptive, true);
    assert_eq!(gemm_checked(&engine), "good");
    assert_eq!(gemm_checked(&engine), "good");
    assert_eq!(
        gpu.calls("broken"),
        1,
        "a disabled kernel is not tried again"
    );
    let wrong_calls = gpu.calls("wrong");
    assert_eq!(wrong_calls, 1, "only the validation probe ran 'wrong'");

    let report = engine.telemetry();
    assert_eq!(report.fallbacks_total, 2);
    assert_eq!(report.fallbacks[0].kernel, "broken");
    assert!(report.fallbacks[0].reason.contains("device lost"));
    assert_eq!(report.fallbacks[1].kernel, "wrong");
    assert!(
        report.fallbacks[1].reason.contains("failed validation"),
        "{}",
        report.fallbacks[1].reason
    );
    let good = report.kernels.iter().find(|k| k.kernel == "good").unwrap();
    assert_eq!((good.calls, good.failures), (2, 0));
    assert!(good.gflops.mean > 0.0);
    let broken = report
        .kernels
        .iter()
        .find(|k| k.kernel == "broken")
        .unwrap();
    assert_eq!((broken.calls, broken.failures), (0, 1));
    assert_eq!(report.selection_latency_us.count, 2);
    let disabled: Vec<String> = engine.disabled().into_iter().map(|d| d.kernel).collect();
    assert_eq!(disabled, ["broken", "wrong"]);
}

#[test]
fn without_the_validation_probe_a_wrong_kernel_goes_unnoticed() {
    // The control for the test above: the probe is what catches 'wrong'.
    let (engine, _) = engine_with("no-probe", Policy::Adaptive, false);
    let problem = GemmProblem::new(SIZE, SIZE, SIZE);
    let (a, b, mut c) = random_inputs(&problem, &mut rand::rng());
    let ran = engine.gemm(&problem, &a, &b, &mut c).unwrap();
    assert_eq!(ran.kernel, "wrong");
}

#[test]
fn baseline_runs_tile16_and_fixed_runs_the_named_kernel() {
    let (engine, gpu) = engine_with("baseline", Policy::Baseline, true);
    assert_eq!(gemm_checked(&engine), "tile16");
    assert_eq!(gpu.calls("broken"), 0);

    engine.set_policy(Policy::Fixed("good".into())).unwrap();
    assert_eq!(gemm_checked(&engine), "good");

    // A fixed kernel that fails rolls back to the adaptive ranking.
    engine.set_policy(Policy::Fixed("broken".into())).unwrap();
    assert_eq!(gemm_checked(&engine), "good");

    assert!(matches!(
        engine.set_policy(Policy::Fixed("nonexistent".into())),
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        engine.policy().as_ref(),
        &Policy::Fixed("broken".into()),
        "a refused policy leaves the old one"
    );
}

#[test]
fn ab_alternates_the_arms_and_compares_them_per_shape() {
    let policy: Policy = "ab:fixed:good,baseline".parse().unwrap();
    let (engine, _) = engine_with("ab", policy, true);
    let kernels: Vec<String> = (0..6).map(|_| gemm_checked(&engine)).collect();
    assert_eq!(
        kernels,
        ["good", "tile16", "good", "tile16", "good", "tile16"]
    );
    let report = engine.telemetry();
    let rows = report.ab_comparison("fixed:good", "baseline");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].shape, "40x40x40");
    assert_eq!((rows[0].a.count, rows[0].b.count), (3, 3));
    assert!(rows[0].b_over_a > 0.0);
}

#[test]
fn a_named_kernel_runs_as_asked_and_its_error_is_returned() {
    let (engine, gpu) = engine_with("explicit", Policy::Adaptive, true);
    let problem = GemmProblem::new(SIZE, SIZE, SIZE).with_scalars(1.0, 1.0);
    let (a, b, mut c) = random_inputs(&problem, &mut rand::rng());
    let before = c.clone();
    let target = Target {
        kernel: Some("broken".into()),
        ..Target::default()
    };
    let err = engine
        .gemm_on(&target, &problem, &a, &b, &mut c)
        .unwrap_err();
    assert!(matches!(err, Error::Device { .. }), "{err}");
    assert_eq!(c, before, "C untouched");
    assert!(
        engine.disabled().is_empty(),
        "an explicit request disables nothing"
    );
    assert_eq!(engine.telemetry().fallbacks_total, 0);
    assert_eq!(gpu.calls("broken"), 1);
}

#[test]
fn when_every_candidate_fails_the_first_error_is_returned() {
    let gpu = Arc::new(ScriptedGpu::new());
    let engine = Engine::with_backends(
        vec![gpu.clone()],
        EngineOptions {
            policy: Policy::Fixed("broken".into()),
            selector_data: vec![],
            calibration: CalibrationMode::Off,
            ..EngineOptions::default()
        },
    );
    let target = Target::default();
    let problem = GemmProblem::new(SIZE, SIZE, SIZE);
    let (a, b, mut c) = random_inputs(&problem, &mut rand::rng());
    // 'broken' fails its probe; the rest of the ranking saves the call.
    let ran = engine.gemm_on(&target, &problem, &a, &b, &mut c).unwrap();
    assert_ne!(ran.kernel, "broken");

    // A device with nothing but failing kernels: the first failure, then a clear refusal.
    let only_broken = Target {
        backend: Some(BackendKind::Wgpu),
        ..Target::default()
    };
    let engine = Engine::with_backends(
        vec![Arc::new(ScriptedGpu::offering(&["broken"]))],
        EngineOptions {
            selector_data: vec![],
            calibration: CalibrationMode::Off,
            ..EngineOptions::default()
        },
    );
    let err = engine
        .gemm_on(&only_broken, &problem, &a, &b, &mut c)
        .unwrap_err();
    assert!(
        matches!(err, Error::Device { .. }),
        "the probe's own error: {err}"
    );
    let err = engine
        .gemm_on(&only_broken, &problem, &a, &b, &mut c)
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(m) if m.contains("disabled")),
        "{err}"
    );
}

/// An engine over the CPU and a scripted GPU offering `offered`, placing calls by `policy`.
fn scripted_engine(offered: &[&'static str], policy: Policy) -> (Engine, Arc<ScriptedGpu>) {
    let gpu = Arc::new(ScriptedGpu::offering(offered));
    let engine = Engine::with_backends(
        vec![cpu_backend(), gpu.clone()],
        EngineOptions {
            policy,
            selector_data: vec![],
            calibration: CalibrationMode::Off,
            ..EngineOptions::default()
        },
    );
    (engine, gpu)
}

fn run(engine: &Engine, problem: &GemmProblem) -> String {
    let (a, b, mut c) = random_inputs(problem, &mut rand::rng());
    engine.gemm(problem, &a, &b, &mut c).unwrap().kernel
}

#[test]
fn a_problem_too_large_for_a_kernel_moves_on_without_disabling_it() {
    let (engine, gpu) = scripted_engine(&["hungry", "good"], Policy::Fixed("hungry".into()));
    // Over the scripted device's memory: the call moves on to the next candidate.
    assert_ne!(run(&engine, &GemmProblem::new(80, 80, 16)), "hungry");
    assert!(engine.disabled().is_empty(), "{:?}", engine.disabled());
    let report = engine.telemetry();
    assert_eq!(report.fallbacks_total, 1);
    let event = &report.fallbacks[0];
    assert_eq!((event.kernel.as_str(), event.disabled), ("hungry", false));
    assert!(event.reason.contains("out of memory"), "{}", event.reason);
    // A problem that fits still runs on it.
    assert_eq!(run(&engine, &GemmProblem::new(40, 40, 16)), "hungry");
    assert_eq!(gpu.calls("hungry"), 3, "one probe and two calls");
}

#[test]
fn a_kernel_that_fails_for_one_transpose_pair_stays_in_use_for_the_others() {
    let (engine, _) = scripted_engine(
        &["trans_broken", "good"],
        Policy::Fixed("trans_broken".into()),
    );
    let transposed = GemmProblem::new(40, 40, 16).with_transpose(Transpose::Yes, Transpose::No);
    assert_ne!(run(&engine, &transposed), "trans_broken");
    let disabled = engine.disabled();
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(
        (disabled[0].kernel.as_str(), disabled[0].transposes),
        ("trans_broken", (Transpose::Yes, Transpose::No))
    );
    assert_eq!(run(&engine, &GemmProblem::new(40, 40, 16)), "trans_broken");
    assert_ne!(
        run(&engine, &transposed),
        "trans_broken",
        "still disabled for Aᵀ"
    );
}

#[test]
fn a_failed_probe_records_its_seed_and_the_seed_reproduces_the_failure() {
    let (engine, gpu) = scripted_engine(&["wrong", "good"], Policy::Fixed("wrong".into()));
    let problem = GemmProblem::new(40, 40, 16).with_scalars(0.5, 2.0);
    assert_ne!(run(&engine, &problem), "wrong");
    let event = engine.telemetry().fallbacks[0].clone();
    let seed = event.probe_seed.expect("the probe's seed is recorded");
    assert!(
        event.reason.contains(&format!("seed {seed}")),
        "{}",
        event.reason
    );

    let probe = VerifyCase {
        shape: PROBE_SHAPE,
        alpha: 0.5,
        beta: 2.0,
        ..VerifyCase::new(PROBE_SHAPE)
    };
    let again = verify_seeded(gpu.as_ref(), "wrong", &probe, seed);
    let error = again.max_rel_error.unwrap();
    assert!(
        event.reason.contains(&format!("max_rel_error {error:.2e}")),
        "the same inputs give the same error: {} vs {error:.2e}",
        event.reason
    );
    let other = verify_seeded(gpu.as_ref(), "wrong", &probe, seed ^ 1);
    assert_ne!(
        other.max_rel_error, again.max_rel_error,
        "other seed, other inputs"
    );
}
