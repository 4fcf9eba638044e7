//! `tilegemm devices`: every backend and device found, with limits, features and kernels.

use anyhow::Context;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use tilegemm::select::db::TuningDb;
use tilegemm::{Backend, BackendKind, Engine};

pub fn devices_command(as_json: bool, emit: Option<&Path>) -> anyhow::Result<ExitCode> {
    let engine = Engine::new();
    super::report_unavailable(&engine);
    if let Some(dir) = emit {
        emit_kernels(&engine, dir)?;
    }
    if as_json {
        let list: Vec<_> = engine
            .backends()
            .iter()
            .map(|b| device_json(b.as_ref()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    for backend in engine.backends() {
        let info = backend.info();
        let caps = backend.capabilities();
        println!(
            "{} ({}) {} — {:?}, driver {}",
            info.backend, info.api, info.name, info.device_type, info.driver
        );
        if info.backend != BackendKind::Cpu {
            let features: Vec<&str> = [
                (caps.shader_f16, "shader_f16"),
                (caps.subgroups, "subgroups"),
                (caps.timestamp_query, "timestamp_query"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            println!(
                "    limits: buffer {}, binding {}, workgroup memory {}, {} threads per workgroup; features: {}",
                mib(caps.max_buffer_bytes),
                mib(caps.max_binding_bytes),
                mib(caps.max_workgroup_memory_bytes as u64),
                caps.max_workgroup_invocations,
                if features.is_empty() { "none".to_string() } else { features.join(", ") }
            );
        }
        println!("    kernels: {}", backend.kernels().join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the sources of every GPU device's kernels into `dir`, and each device's program
/// binaries, where its API hands them back, into a folder named after the device's key.
fn emit_kernels(engine: &Engine, dir: &Path) -> anyhow::Result<()> {
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::create_dir_all(path.parent().unwrap_or(dir))
            .and_then(|_| std::fs::write(path, bytes))
            .with_context(|| format!("writing {}", path.display()))
    };
    for backend in engine.backends() {
        let info = backend.info();
        if info.backend == BackendKind::Cpu {
            continue;
        }
        let device_dir = dir.join(TuningDb::file_stem(&info.key));
        for kernel in backend.kernels() {
            if let Some(spec) = tilegemm::kernel::find(&kernel) {
                write(&dir.join(format!("{kernel}.wgsl")), spec.wgsl.as_bytes())?;
                if let Some(opencl) = &spec.opencl {
                    write(&dir.join(format!("{kernel}.cl")), opencl.as_bytes())?;
                }
            }
            match backend.kernel_binary(&kernel) {
                Ok(Some(binary)) if binary.starts_with(b"//") => {
                    // PTX text, handed back with C string terminators (NVIDIA's OpenCL ends it
                    // with two NULs), which ptxas reads as an early end of file.
                    let text_end = binary
                        .iter()
                        .rposition(|&byte| byte != 0)
                        .map_or(0, |i| i + 1);
                    let text = &binary[..text_end];
                    write(&device_dir.join(format!("{kernel}.ptx")), text)?;
                }
                Ok(Some(binary)) => write(&device_dir.join(format!("{kernel}.bin")), &binary)?,
                Ok(None) => {}
                Err(e) => eprintln!("{}: {kernel}: {e}", info.name),
            }
        }
    }
    eprintln!("kernels written to {}", dir.display());
    Ok(())
}

fn device_json(backend: &dyn Backend) -> serde_json::Value {
    let info = backend.info();
    let caps = backend.capabilities();
    json!({
        "backend": info.backend,
        "api": info.api,
        "name": info.name,
        "device_type": info.device_type,
        "driver": info.driver,
        "key": info.key,
        "vendor_id": info.vendor_id,
        "device_id": info.device_id,
        "limits": {
            "max_buffer_bytes": caps.max_buffer_bytes,
            "max_binding_bytes": caps.max_binding_bytes,
            "max_workgroup_memory_bytes": caps.max_workgroup_memory_bytes,
            "max_workgroup_invocations": caps.max_workgroup_invocations,
            "max_workgroups_per_dimension": caps.max_workgroups_per_dimension,
        },
        "features": {
            "shader_f16": caps.shader_f16,
            "subgroups": caps.subgroups,
            "timestamp_query": caps.timestamp_query,
        },
        "kernels": backend.kernels(),
    })
}

/// A byte count in MiB or KiB; "unlimited" from 1 TiB up.
fn mib(bytes: u64) -> String {
    if bytes >= 1 << 40 {
        "unlimited".to_string()
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}
