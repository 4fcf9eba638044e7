//! Policies, rollback and telemetry of the engine, on a scripted device beside the real CPU backend:
//! its kernels fail to run (`broken`), give wrong results (`wrong`) or compute correctly.

mod common;

use common::{cpu_backend, measurement, temp_dir};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tilegemm::reference::{max_relative_error, reference_gemm};
use tilegemm::select::db::TuningDb;
use tilegemm::verify::{random_inputs, tolerance};
use tilegemm::{
    Backend, BackendKind, Capabilities, DeviceInfo, DeviceType, Engine, EngineOptions, Error,
    GemmProblem, Policy, Target,
};

/// A GPU that runs `good` and `tile16` correctly, `wrong` with an off-by-one result, and never
/// runs `broken`; it offers `offered` of them. Counts the calls of each kernel.
struct ScriptedGpu {
    info: DeviceInfo,
    capabilities: Capabilities,
    offered: &'static [&'static str],
    calls: Mutex<HashMap<String, usize>>,
}

const KERNELS: [&str; 4] = ["broken", "wrong", "good", "tile16"];

impl ScriptedGpu {
    fn new() -> Self {
        Self::offering(&KERNELS)
    }

    fn offering(offered: &'static [&'static str]) -> Self {
        ScriptedGpu {
            offered,
            info: DeviceInfo::new(
                BackendKind::Wgpu,
                "vulkan",
                "Scripted GPU",
                "test",
                DeviceType::DiscreteGpu,
            ),
            capabilities: Capabilities {
                max_buffer_bytes: 1 << 30,
                max_binding_bytes: 1 << 30,
                max_workgroup_memory_bytes: 1 << 15,
                max_workgroup_invocations: 256,
                max_workgroups_per_dimension: 65535,
                shader_f16: false,
                subgroups: false,
                timestamp_query: false,
            },
            calls: Mutex::new(HashMap::new()),
        }
    }

    fn calls(&self, kernel: &str) -> usize {
        self.calls.lock().unwrap().get(kernel).copied().unwrap_or(0)
    }
}

impl Backend for ScriptedGpu {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn kernels(&self) -> Vec<String> {
        self.offered.iter().map(|k| k.to_string()).collect()
    }

    fn check(&self, kernel: &str, problem: &GemmProblem) -> tilegemm::Result<()> {
        problem.extents()?;
        if self.offered.contains(&kernel) {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no kernel '{kernel}'")))
        }
    }

    fn gemm(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> tilegemm::Result<()> {
        *self.calls.lock().unwrap().entry(kernel.into()).or_default() += 1;
        if kernel == "broken" {
            return Err(Error::Device {
                device: self.info.name.clone(),
                message: "device lost (scripted)".into(),
            });
        }
        let exact = reference_gemm(problem, a, b, c)?;
        let offset = if kernel == "wrong" { 1.0 } else { 0.0 };
        for (out, value) in c.iter_mut().zip(&exact) {
            *out = *value as f32 + offset;
        }
        Ok(())
    }
}

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
            selector_dirs: vec![dir],
            validate,
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
    let disabled: Vec<String> = engine.disabled().into_iter().map(|d| d.1).collect();
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
            selector_dirs: vec![],
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
            selector_dirs: vec![],
            ..EngineOptions::default()
        },
    );
    let err = engine
        .gemm_on(&only_broken, &problem, &a, &b, &mut c)
        .unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err}");
    let err = engine
        .gemm_on(&only_broken, &problem, &a, &b, &mut c)
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(m) if m.contains("disabled")),
        "{err}"
    );
}
