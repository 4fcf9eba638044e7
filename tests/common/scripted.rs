//! A scripted GPU for tests of ranking, policies and rollback without discovering devices: each
//! kernel's behaviour is in its name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tilegemm::reference::reference_gemm;
use tilegemm::{
    Backend, BackendKind, Capabilities, DeviceInfo, DeviceType, Error, GemmProblem, Transpose,
};

/// Every scripted kernel:
/// - `broken` never runs (a device error);
/// - `wrong` is off by one everywhere;
/// - `good` and `tile16` are right;
/// - `hungry` is right, but the device refuses its allocation above [`HUNGRY_LIMIT`] elements of C;
/// - `trans_broken` is right with A as stored and fails (a device error) with op(A) = Aᵀ;
/// - `crawl` is right and, on a device with a [`Speed`], computes 4× slower than `tile16`;
/// - `unbuildable` fails to compile (a compiler log), `hang` never finishes (a time-out);
/// - `lost` loses the device: it and every kernel called after it fail (`DeviceLost`).
pub const KERNELS: [&str; 10] = [
    "broken",
    "wrong",
    "good",
    "tile16",
    "hungry",
    "trans_broken",
    "crawl",
    "unbuildable",
    "hang",
    "lost",
];

/// Elements of C above which `hungry` runs out of memory.
pub const HUNGRY_LIMIT: usize = 64 * 64;

/// A GPU that offers `offered` of [`KERNELS`] and counts the calls of each.
pub struct ScriptedGpu {
    info: DeviceInfo,
    capabilities: Capabilities,
    offered: Vec<&'static str>,
    calls: Mutex<HashMap<String, usize>>,
    speed: Option<Speed>,
    lost: AtomicBool,
}

/// How fast a simulated device is: every call sleeps for `fixed + bytes ÷ bandwidth + flops ÷ rate`
/// and reports `flops ÷ rate` as its kernel time. Problems over 2·128³ flops or 2¹⁶ elements of C
/// are not computed (C keeps its values): only their time is simulated.
#[derive(Clone, Copy, Debug)]
pub struct Speed {
    /// Kernel GFLOPS.
    pub gflops: f64,
    /// Host↔device bytes per second, both ways.
    pub bytes_per_second: f64,
    /// Seconds of every call.
    pub fixed_seconds: f64,
}

impl ScriptedGpu {
    /// Offers the first four kernels: broken, wrong, good, tile16.
    pub fn new() -> Self {
        Self::offering(&KERNELS[..4])
    }

    /// Offers exactly `offered`.
    pub fn offering(offered: &[&'static str]) -> Self {
        Self::named("Scripted GPU", offered)
    }

    /// A device called `name` offering `offered`.
    pub fn named(name: &str, offered: &[&'static str]) -> Self {
        ScriptedGpu {
            offered: offered.to_vec(),
            info: DeviceInfo::new(
                BackendKind::Wgpu,
                "vulkan",
                name,
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
            speed: None,
            lost: AtomicBool::new(false),
        }
    }

    /// The same device with driver `driver` (its key changes, its class does not).
    pub fn with_driver(mut self, driver: &str) -> Self {
        self.info = DeviceInfo::new(
            self.info.backend,
            &self.info.api,
            &self.info.name,
            driver,
            self.info.device_type,
        );
        self
    }

    /// The same device, simulated at `speed` and timing its kernels.
    pub fn with_speed(mut self, speed: Speed) -> Self {
        self.speed = Some(speed);
        self.capabilities.timestamp_query = true;
        self
    }

    /// How often `kernel` was called (probes included).
    pub fn calls(&self, kernel: &str) -> usize {
        self.calls.lock().unwrap().get(kernel).copied().unwrap_or(0)
    }

    fn device_error(&self, message: &str) -> Error {
        Error::Device {
            device: self.info.name.clone(),
            message: message.to_string(),
            source: None,
        }
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
        self.gemm_timed(kernel, problem, a, b, c).map(|_| ())
    }

    fn gemm_timed(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> tilegemm::Result<Option<f64>> {
        let kernel_seconds = self.speed.map(|speed| {
            let extents = problem.extents().expect("checked by the caller");
            let c_up = if problem.beta != 0.0 { extents.c } else { 0 };
            let bytes = 4.0 * (extents.a + extents.b + extents.c + c_up) as f64;
            let speedup = match kernel {
                "good" => 4.0,
                "crawl" => 0.25,
                _ => 1.0,
            };
            let kernel_seconds = problem.flops() / (speedup * speed.gflops * 1e9);
            std::thread::sleep(std::time::Duration::from_secs_f64(
                speed.fixed_seconds + bytes / speed.bytes_per_second + kernel_seconds,
            ));
            kernel_seconds
        });
        let large =
            problem.flops() > 2.0 * 128.0 * 128.0 * 128.0 || problem.m * problem.n > 1 << 16;
        if kernel_seconds.is_some() && large {
            *self.calls.lock().unwrap().entry(kernel.into()).or_default() += 1;
            return Ok(kernel_seconds);
        }
        self.compute(kernel, problem, a, b, c)?;
        Ok(kernel_seconds)
    }
}

impl ScriptedGpu {
    fn compute(
        &self,
        kernel: &str,
        problem: &GemmProblem,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> tilegemm::Result<()> {
        *self.calls.lock().unwrap().entry(kernel.into()).or_default() += 1;
        if kernel == "lost" {
            self.lost.store(true, Ordering::SeqCst);
        }
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::DeviceLost {
                device: self.info.name.clone(),
                message: format!("running {kernel}: device removed (scripted)"),
                source: None,
            });
        }
        match kernel {
            "broken" => return Err(self.device_error("device lost (scripted)")),
            "unbuildable" => {
                return Err(Error::KernelBuild {
                    kernel: kernel.into(),
                    device: self.info.name.clone(),
                    log: "<source>:12:5: error: use of undeclared identifier 'acc' (scripted)"
                        .into(),
                })
            }
            "hang" => {
                return Err(Error::Timeout {
                    device: self.info.name.clone(),
                    seconds: 60.0,
                })
            }
            "trans_broken" if problem.trans_a == Transpose::Yes => {
                return Err(self.device_error("pipeline for Aᵀ lost (scripted)"))
            }
            "hungry" if problem.m * problem.n > HUNGRY_LIMIT => {
                return Err(Error::OutOfMemory {
                    device: self.info.name.clone(),
                    bytes: (problem.m * problem.n * 4) as u64,
                    what: "C".into(),
                    source: None,
                })
            }
            _ => {}
        }
        let exact = reference_gemm(problem, a, b, c)?;
        let offset = if kernel == "wrong" { 1.0 } else { 0.0 };
        let (n, ldc) = (problem.n, problem.ldc());
        let last = problem.m * n - 1;
        for (row, (row_out, row_exact)) in c.chunks_mut(ldc).zip(exact.chunks(n.max(1))).enumerate()
        {
            for (col, out) in row_out.iter_mut().enumerate() {
                match row_exact.get(col) {
                    Some(_) if kernel == "lazy" && row * n + col == last => {}
                    Some(value) => *out = *value as f32 + offset,
                    None if kernel == "sloppy" => *out = 0.0,
                    None => {}
                }
            }
        }
        Ok(())
    }
}
