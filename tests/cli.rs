//! The `tilegemm` binary: JSON shapes, exit codes, and one-line errors instead of panics.

mod common;

use std::process::{Command, Output};

fn tilegemm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tilegemm"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Our own error lines: the Vulkan driver may print its own warnings on stderr too.
fn error_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("error: ") && !l.contains("XDG_RUNTIME_DIR"))
        .map(String::from)
        .collect()
}

#[test]
fn devices_json_lists_cpu_and_wgpu() {
    let out = tilegemm(&["devices", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for device in &list {
        for field in [
            "backend",
            "name",
            "device_type",
            "driver",
            "api",
            "limits",
            "features",
            "kernels",
        ] {
            assert!(device.get(field).is_some(), "missing {field} in {device}");
        }
    }
    assert_eq!(list[0]["backend"], "cpu");
    assert_eq!(list[0]["kernels"][0], "native");
    let wgpu: Vec<_> = list.iter().filter(|d| d["backend"] == "wgpu").collect();
    if common::wgpu_required() {
        assert!(!wgpu.is_empty(), "no wgpu device listed: {}", stderr(&out));
        assert!(wgpu.iter().any(|d| d["api"] == "vulkan"));
        let kernels: Vec<&str> = wgpu[0]["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(kernels[..3], ["tile16", "tile20", "tile24"]);
        assert!(kernels.contains(&"rb128x128x8_8x8"), "{kernels:?}");
    }
}

#[test]
fn without_vulkan_the_cpu_backend_still_runs_and_says_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_tilegemm"))
        .args(["devices", "--json"])
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("WGPU_BACKEND", "vulkan")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["backend"], "cpu");
    assert!(list.iter().all(|d| d["backend"] != "wgpu"), "{list:?}");
    assert!(
        stderr(&out).contains("wgpu unavailable"),
        "{}",
        stderr(&out)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_tilegemm"))
        .args(["run", "--shape", "33x65x17"])
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("WGPU_BACKEND", "vulkan")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("native on cpu"));
}

#[test]
fn verify_json_reports_every_pair_and_passes() {
    let out = tilegemm(&[
        "verify",
        "--shapes",
        "7x13x5,1x1x1",
        "--alpha",
        "0.5",
        "--beta",
        "2",
        "--trans-b",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let pairs = if common::wgpu_required() { 4 } else { 1 };
    assert!(reports.len() >= 2 * pairs, "{reports:?}");
    for r in &reports {
        for field in [
            "backend",
            "device",
            "kernel",
            "m",
            "n",
            "k",
            "max_rel_error",
            "pass",
        ] {
            assert!(r.get(field).is_some(), "missing {field} in {r}");
        }
        assert_eq!(r["pass"], true, "{r}");
        assert_eq!(r["trans_b"], true);
        assert!(r["max_rel_error"].as_f64().unwrap() < 1e-4);
    }
}

#[test]
fn run_prints_time_gflops_and_error() {
    let out = tilegemm(&[
        "run",
        "--shape",
        "64x48x32",
        "--backend",
        "cpu",
        "--reps",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("GFLOPS") && text.contains("max_rel_error") && text.contains("pass"),
        "{text}"
    );
}

#[test]
fn report_compares_the_arms_of_an_ab_policy() {
    let json = std::env::temp_dir().join(format!("tilegemm-report-{}.json", std::process::id()));
    let out = tilegemm(&[
        "report",
        "--shapes",
        "33x17x9,20x20x20",
        "--calls",
        "4",
        "--policy",
        "ab:adaptive,baseline",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("A/B: A = adaptive, B = baseline"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).unwrap();
    let arms = report["telemetry"]["arms"].as_array().unwrap();
    assert_eq!(arms.len(), 4, "two arms at two shapes: {arms:?}");
    for arm in arms {
        assert_eq!(arm["gflops"]["count"], 2, "{arm}");
    }
    let calls: u64 = report["telemetry"]["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, 8);
    assert_eq!(report["telemetry"]["selection_latency_us"]["count"], 8);
    // Where tile16 exists (lavapipe, PoCL), the baseline arm ran it for all of its four calls, on
    // whichever device ranked first at each shape (lavapipe's and PoCL's ranks may differ by shape).
    if common::wgpu_required() {
        let tile16_calls: u64 = report["telemetry"]["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kernel"] == "tile16")
            .map(|k| k["calls"].as_u64().unwrap())
            .sum();
        assert_eq!(tile16_calls, 4, "{report}");
    }
}

#[test]
fn an_unknown_policy_is_refused_with_the_reason() {
    let out = tilegemm(&["run", "--shape", "8", "--policy", "fixed:nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no device offers kernel 'nope'"),
        "{}",
        stderr(&out)
    );
    let out = tilegemm(&["run", "--shape", "8", "--policy", "fastest"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown policy"), "{}", stderr(&out));
}

#[test]
fn bad_arguments_exit_nonzero_with_one_line() {
    for args in [
        vec!["run", "--shape", "3x4"],
        vec!["run", "--shape", "8", "--backend", "metal"],
        vec!["verify", "--shapes", "axbxc"],
    ] {
        let out = tilegemm(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn impossible_problems_exit_2_with_the_reason() {
    for (args, reason) in [
        (
            vec!["run", "--shape", "8", "--kernel", "tile99"],
            "unknown kernel 'tile99'",
        ),
        (
            vec!["verify", "--shapes", "8", "--device", "no such device"],
            "no device matches",
        ),
        (
            vec![
                "run",
                "--shape",
                "8",
                "--backend",
                "wgpu",
                "--kernel",
                "native",
            ],
            "native",
        ),
        // A fixed kernel the selected backend does not offer.
        (
            vec![
                "run",
                "--shape",
                "8",
                "--backend",
                "cpu",
                "--policy",
                "fixed:tile16",
            ],
            "no device offers kernel 'tile16'",
        ),
        // 480 GB of operands: refused before anything is allocated.
        (
            vec!["run", "--shape", "100000x100000x100000"],
            "out of memory",
        ),
    ] {
        let out = tilegemm(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{args:?}: {}", stderr(&out));
        assert!(errors[0].contains(reason), "{args:?}: {errors:?}");
        assert!(!stderr(&out).contains("panicked"));
    }
}

#[cfg(feature = "ocl")]
#[test]
fn without_an_opencl_platform_the_ocl_build_still_runs_and_says_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_tilegemm"))
        .args(["devices", "--json"])
        .env("OCL_ICD_VENDORS", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list.iter().all(|d| d["backend"] != "ocl"));
    assert!(stderr(&out).contains("ocl unavailable"), "{}", stderr(&out));
}

#[cfg(feature = "ocl")]
#[test]
fn devices_json_lists_opencl_devices() {
    let out = tilegemm(&["devices", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let ocl: Vec<_> = list.iter().filter(|d| d["backend"] == "ocl").collect();
    if common::ocl_required() {
        assert!(!ocl.is_empty(), "{}", stderr(&out));
        assert_eq!(ocl[0]["api"], "opencl");
        // The whole catalogue: the seed tilings and the generated family, in OpenCL C too.
        let catalogue: Vec<&str> = tilegemm::kernel::catalogue()
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(ocl[0]["kernels"], serde_json::json!(catalogue));
        assert_eq!(ocl[0]["features"]["timestamp_query"], true);
    }
}

/// Durations and paddings the library cannot take are refused by the parser: one clear line,
/// exit 2, no panic.
#[test]
fn impossible_numbers_on_the_command_line_are_refused() {
    for args in [
        vec![
            "bench",
            "--pause",
            "inf",
            "--backend",
            "cpu",
            "--sizes",
            "8",
        ],
        vec![
            "bench",
            "--max-seconds",
            "nan",
            "--backend",
            "cpu",
            "--sizes",
            "8",
        ],
        vec![
            "tune",
            "--budget",
            "inf",
            "--backend",
            "cpu",
            "--shapes",
            "8",
        ],
        vec!["tune", "--budget=-1", "--backend", "cpu", "--shapes", "8"],
        vec![
            "verify",
            "--ld-pad",
            "18446744073709551615",
            "--backend",
            "cpu",
        ],
    ] {
        let out = tilegemm(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(error_lines(&out).len(), 1, "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
    }
}

#[test]
fn help_documents_the_environment_and_exit_codes() {
    let out = tilegemm(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "TILEGEMM_CACHE",
        "TILEGEMM_FONT",
        "WGPU_BACKEND",
        "RUST_LOG",
        "Exit status",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
    let run_help = String::from_utf8_lossy(&tilegemm(&["run", "--help"]).stdout).to_string();
    assert!(run_help.contains("rb128x64x16_8x4_p"), "{run_help}");
}

/// With no HOME, XDG_CACHE_HOME or TILEGEMM_CACHE, tilegemm keeps nothing between runs instead of
/// writing into a temporary folder every user of the host shares.
#[test]
fn without_a_home_nothing_is_written_to_a_shared_folder() {
    let tmp = std::env::temp_dir().join(format!("tilegemm-nohome-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tilegemm"))
        .args([
            "run",
            "--shape",
            "65x67x63",
            "--backend",
            "cpu",
            "--reps",
            "3",
        ])
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("TILEGEMM_CACHE")
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let written: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(written.is_empty(), "{written:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Output paths are checked before anything is measured: one line, exit 2, at once.
#[test]
fn unusable_output_paths_are_refused_before_measuring() {
    let file = std::env::temp_dir().join(format!("tilegemm-not-a-folder-{}", std::process::id()));
    std::fs::write(&file, "x").unwrap();
    let inside = file.join("out.json");
    let under_file = file.join("dbs");
    for args in [
        vec![
            "bench",
            "--backend",
            "cpu",
            "--sizes",
            "8",
            "--json",
            inside.to_str().unwrap(),
        ],
        vec![
            "bench",
            "--backend",
            "cpu",
            "--sizes",
            "8",
            "--plot",
            "/nonexistent/dir/c.svg",
        ],
        vec![
            "tune",
            "--backend",
            "cpu",
            "--shapes",
            "8",
            "--out",
            under_file.to_str().unwrap(),
        ],
    ] {
        let started = std::time::Instant::now();
        let out = tilegemm(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(error_lines(&out).len(), 1, "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("[1/"),
            "nothing measured: {}",
            stderr(&out)
        );
        assert!(started.elapsed().as_secs() < 30);
    }
    std::fs::remove_file(&file).unwrap();
}

/// Four `tune` processes writing one folder at once lose none of each other's rows (the issue
/// found 6 of 8 new shapes lost, every process exiting 0).
#[test]
fn concurrent_tune_processes_lose_no_rows() {
    let dir = std::env::temp_dir().join(format!("tilegemm-tune4-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let children: Vec<_> = (0..4)
        .map(|i| {
            let shapes = format!("{}x9x9,{}x9x9", 20 + i, 40 + i);
            Command::new(env!("CARGO_BIN_EXE_tilegemm"))
                .args([
                    "tune",
                    "--backend",
                    "cpu",
                    "--shapes",
                    &shapes,
                    "--reps",
                    "3",
                ])
                .args(["--max-seconds", "0.2", "--no-train", "--out"])
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let databases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tuning.json"))
        .collect();
    assert_eq!(databases.len(), 1, "{databases:?}");
    let db = tilegemm::select::db::TuningDb::read_file(&databases[0]).unwrap();
    let mut shapes: Vec<usize> = db.rows.iter().map(|r| r.m).collect();
    shapes.sort();
    assert_eq!(shapes, [20, 21, 22, 23, 40, 41, 42, 43]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without a session runtime folder (containers, CI), the Vulkan loader's libwayland would print
/// "error: XDG_RUNTIME_DIR is invalid or not set" at every start: tilegemm gives it a private one.
#[test]
fn no_loader_noise_about_a_missing_runtime_folder() {
    let cache = common::temp_dir("runtime-folder");
    let out = Command::new(env!("CARGO_BIN_EXE_tilegemm"))
        .args(["devices"])
        .env_remove("XDG_RUNTIME_DIR")
        .env("TILEGEMM_CACHE", &cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("XDG_RUNTIME_DIR"),
        "{}",
        stderr(&out)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.join("runtime"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

/// `devices --emit` writes every kernel's sources as the catalogue holds them (OpenCL left out
/// here: its program binaries are checked in `correctness.rs`, and building them all takes PoCL
/// twenty seconds).
#[test]
fn devices_emit_writes_every_kernels_sources() {
    let dir = common::temp_dir("emit");
    let out = Command::new(env!("CARGO_BIN_EXE_tilegemm"))
        .args(["devices", "--emit"])
        .arg(&dir)
        .env("OCL_ICD_VENDORS", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    if common::wgpu_required() {
        for spec in tilegemm::kernel::catalogue() {
            let wgsl = std::fs::read_to_string(dir.join(format!("{}.wgsl", spec.name))).unwrap();
            assert_eq!(wgsl, spec.wgsl);
            let opencl = std::fs::read_to_string(dir.join(format!("{}.cl", spec.name))).ok();
            assert_eq!(opencl.as_deref(), spec.opencl.as_deref());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
