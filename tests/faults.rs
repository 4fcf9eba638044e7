//! Failures by kind, recovery by kind: a scripted device beside the real CPU injects each fault
//! (a kernel that will not compile, a device error, a time-out, out of memory, a lost device),
//! and every call still returns the reference's result, the fault recorded with its reason, and
//! the kernel disabled, kept, or its whole device dropped, as the kind of fault says.

mod common;

use common::cpu_backend;
use common::scripted::ScriptedGpu;
use std::sync::Arc;
use tilegemm::reference::{max_relative_error, reference_gemm};
use tilegemm::select::calibration::CalibrationMode;
use tilegemm::verify::{random_inputs, tolerance};
use tilegemm::{Backend, Engine, EngineOptions, Error, GemmProblem, Policy};

/// An engine over the CPU and a scripted GPU offering `offered`, which runs `first` when it can.
fn engine(offered: &[&'static str], first: &str) -> (Engine, Arc<ScriptedGpu>) {
    let gpu = Arc::new(ScriptedGpu::offering(offered));
    let engine = Engine::with_backends(
        vec![cpu_backend(), gpu.clone()],
        EngineOptions {
            policy: Policy::Fixed(first.into()),
            selector_data: vec![],
            calibration: CalibrationMode::Off,
            validate: false,
            ..EngineOptions::default()
        },
    );
    (engine, gpu)
}

/// One call of `problem` through `engine`, checked against the reference; the kernel that ran.
fn checked_call(engine: &Engine, problem: &GemmProblem) -> String {
    let (a, b, c_in) = random_inputs(problem, &mut rand::rng());
    let mut c = c_in.clone();
    let ran = engine.gemm(problem, &a, &b, &mut c).unwrap();
    let want = reference_gemm(problem, &a, &b, &c_in).unwrap();
    let error = max_relative_error(problem, &c, &want);
    assert!(error < tolerance(problem.k), "{ran:?}: {error:e}");
    ran.kernel
}

fn problem() -> GemmProblem {
    GemmProblem::new(40, 40, 24).with_scalars(0.5, 2.0)
}

/// The one fallback recorded so far: (kernel, disabled, reason).
fn only_fallback(engine: &Engine) -> (String, bool, String) {
    let report = engine.telemetry();
    assert_eq!(report.fallbacks_total, 1, "{:?}", report.fallbacks);
    let event = &report.fallbacks[0];
    (event.kernel.clone(), event.disabled, event.reason.clone())
}

#[test]
fn a_kernel_that_fails_to_compile_is_disabled_with_the_compiler_log() {
    let (engine, gpu) = engine(&["unbuildable", "good"], "unbuildable");
    assert_ne!(checked_call(&engine, &problem()), "unbuildable");
    let (kernel, disabled, reason) = only_fallback(&engine);
    assert_eq!((kernel.as_str(), disabled), ("unbuildable", true));
    assert!(reason.contains("undeclared identifier 'acc'"), "{reason}");
    assert_eq!(engine.disabled()[0].kernel, "unbuildable");
    checked_call(&engine, &problem());
    assert_eq!(gpu.calls("unbuildable"), 1, "not tried again");
    assert!(engine.lost_devices().is_empty());
}

#[test]
fn a_time_out_disables_the_kernel_and_the_device_keeps_working() {
    let (engine, gpu) = engine(&["hang", "good"], "hang");
    assert_ne!(checked_call(&engine, &problem()), "hang");
    let (kernel, disabled, reason) = only_fallback(&engine);
    assert_eq!((kernel.as_str(), disabled), ("hang", true));
    assert!(reason.contains("no result after 60 s"), "{reason}");
    // The device's other kernels still run.
    engine.set_policy(Policy::Fixed("good".into())).unwrap();
    assert_eq!(checked_call(&engine, &problem()), "good");
    assert_eq!(gpu.calls("hang"), 1);
    assert!(engine.lost_devices().is_empty());
}

#[test]
fn out_of_memory_falls_back_and_keeps_the_kernel() {
    let (engine, gpu) = engine(&["hungry", "good"], "hungry");
    let large = GemmProblem::new(80, 80, 16);
    assert_ne!(checked_call(&engine, &large), "hungry");
    let (kernel, disabled, reason) = only_fallback(&engine);
    assert_eq!((kernel.as_str(), disabled), ("hungry", false));
    assert!(reason.contains("out of memory"), "{reason}");
    assert_eq!(checked_call(&engine, &problem()), "hungry", "still in use");
    assert_eq!(gpu.calls("hungry"), 2);
}

#[test]
fn a_lost_device_is_dropped_and_every_call_falls_back() {
    let (engine, gpu) = engine(&["lost", "good", "tile16"], "lost");
    assert_eq!(checked_call(&engine, &problem()), "native");
    let (kernel, disabled, reason) = only_fallback(&engine);
    assert_eq!((kernel.as_str(), disabled), ("lost", true));
    assert!(reason.contains("was lost"), "{reason}");
    let lost = engine.lost_devices();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].0, gpu.info().key);
    // No kernel of the lost device is tried again, whatever the policy asks for.
    for policy in [
        Policy::Adaptive,
        Policy::Fixed("good".into()),
        Policy::Baseline,
    ] {
        engine.set_policy(policy).unwrap();
        assert_eq!(checked_call(&engine, &problem()), "native");
    }
    let calls: usize = ["lost", "good", "tile16"]
        .iter()
        .map(|k| gpu.calls(k))
        .sum();
    assert_eq!(calls, 1, "only the call that lost the device");
    assert_eq!(engine.telemetry().fallbacks_total, 1);
}

/// A kernel named in the target runs as asked (no fallback): its device's loss is the error.
#[test]
fn a_named_kernel_on_a_lost_device_says_so() {
    let (engine, _) = engine(&["lost", "good"], "lost");
    checked_call(&engine, &problem());
    let target = tilegemm::Target {
        kernel: Some("good".into()),
        ..Default::default()
    };
    let (a, b, c_in) = random_inputs(&problem(), &mut rand::rng());
    let mut c = c_in.clone();
    let refused = engine.gemm_on(&target, &problem(), &a, &b, &mut c);
    assert!(
        matches!(&refused, Err(Error::DeviceLost { .. })),
        "{refused:?}"
    );
    assert_eq!(c, c_in, "C untouched");
}
