//! Every WGSL kernel parses, validates, specialises for each combination of its overrides
//! (transposes, batch offsets, whole tiles, a stream-K member's fixup pass), and compiles to SPIR-V,
//! with naga alone (no GPU); every kernel's source is its language's prelude plus a body that
//! redefines none of it; the Rust uniform matches the prelude's `struct Params`.

use std::path::{Path, PathBuf};
use tilegemm::kernel::{catalogue, split_k_sum, KernelSpec, Params, OPENCL_PRELUDE, WGSL_PRELUDE};

/// Every kernel with sources: the catalogue's GEMMs and the split-K summing pass.
fn every_kernel() -> impl Iterator<Item = &'static KernelSpec> {
    catalogue().iter().chain([split_k_sum()])
}

/// The kernel whose file is `name` in shaders/ and kernels_cl/.
fn kernel_of_file(name: &str) -> &'static KernelSpec {
    every_kernel()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("{name} is neither in the catalogue nor the split-K sum"))
}
use tilegemm::GemmProblem;

/// Compiles `source` for every combination of the prelude's overrides, and of
/// `STREAM_K_FIXUP` too where `stream_k` (a stream-K member).
fn compile_every_specialisation(name: &str, source: &str, stream_k: bool) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let flags = naga::valid::ValidationFlags::all();
    let info = naga::valid::Validator::new(flags, naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    // Every combination of the overrides, as the bits of 0..16 (0..32 for stream-K).
    let all = [
        "TRANS_A",
        "TRANS_B",
        "BATCHED",
        "WHOLE_TILES",
        "STREAM_K_FIXUP",
    ];
    let overrides = &all[..if stream_k { 5 } else { 4 }];
    for bits in 0..1u32 << overrides.len() {
        let flags: Vec<f64> = (0..overrides.len())
            .map(|i| (bits >> i & 1) as f64)
            .collect();
        let mut constants = naga::back::PipelineConstants::default();
        for (name, &flag) in overrides.iter().zip(&flags) {
            constants.insert(name.to_string(), flag);
        }
        let entry = Some((naga::ShaderStage::Compute, "main"));
        let (specialised, specialised_info) =
            naga::back::pipeline_constants::process_overrides(&module, &info, entry, &constants)
                .unwrap_or_else(|e| panic!("{name} {flags:?}: {e}"));
        let options = naga::back::spv::Options::default();
        let pipeline = naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: "main".to_string(),
        };
        let words =
            naga::back::spv::write_vec(&specialised, &specialised_info, &options, Some(&pipeline))
                .unwrap_or_else(|e| panic!("{name} {flags:?}: {e}"));
        assert!(words.len() > 100, "{name}: suspiciously small SPIR-V");
    }
}

/// The kernel bodies of `dir` with extension `ext`, (name, text), the prelude left out.
fn bodies(dir: &str, ext: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    let bodies: Vec<(String, String)> = files
        .iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(path).unwrap())
        })
        .filter(|(name, _)| name != "prelude")
        .collect();
    assert!(
        bodies.len() >= 3,
        "expected tile16, tile20 and tile24 in {dir:?}"
    );
    bodies
}

/// Names of the functions `source` defines at the start of a line: WGSL `fn NAME(`, OpenCL C
/// `inline … NAME(` and `void NAME(`.
fn defined_functions(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|line| {
            let signature = ["fn ", "inline ", "void "]
                .iter()
                .find_map(|start| line.strip_prefix(start))?;
            let name = signature.split('(').next()?.split_whitespace().last()?;
            Some(name.trim_start_matches('*').to_string())
        })
        .collect()
}

#[test]
fn every_kernel_compiles_for_every_specialisation() {
    for kernel in every_kernel() {
        compile_every_specialisation(&kernel.name, &kernel.wgsl, kernel.stream_k > 0);
    }
}

#[test]
fn every_file_in_shaders_is_a_valid_kernel() {
    for (name, body) in bodies("shaders", "wgsl") {
        let source = format!("{WGSL_PRELUDE}{body}");
        compile_every_specialisation(&name, &source, false);
        let spec = kernel_of_file(&name);
        assert_eq!(
            spec.wgsl, source,
            "{name}: the catalogue embeds prelude + body"
        );
    }
}

#[test]
fn every_file_in_kernels_cl_is_a_kernel_beside_its_wgsl_twin() {
    for (name, body) in bodies("kernels_cl", "cl") {
        let spec = kernel_of_file(&name);
        assert_eq!(
            spec.opencl.as_deref(),
            Some(format!("{OPENCL_PRELUDE}{body}").as_str())
        );
        assert!(
            body.contains("void gemm(GEMM_ARGS) {\n"),
            "{name}.cl: gemm(GEMM_ARGS)"
        );
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("shaders/{name}.wgsl"))
                .exists(),
            "kernels_cl/{name}.cl has no WGSL twin"
        );
    }
}

#[test]
fn every_catalogue_source_holds_its_prelude_once_and_nothing_of_it_twice() {
    for kernel in catalogue() {
        let name = &kernel.name;
        assert!(kernel.wgsl.starts_with(WGSL_PRELUDE), "{name}");
        assert_eq!(kernel.wgsl.matches(WGSL_PRELUDE).count(), 1, "{name}");
        assert_eq!(kernel.wgsl.matches("struct Params {").count(), 1, "{name}");
        // A, B, C and the uniform; a stream-K member's partial tiles too.
        let bindings = if kernel.stream_k > 0 { 5 } else { 4 };
        assert_eq!(kernel.wgsl.matches("@binding(").count(), bindings, "{name}");
        // Every kernel enters its product of a batch first, in both languages.
        assert!(
            kernel.wgsl.contains(") {\n    enter_batch(group.z);\n"),
            "{name}"
        );
        let opencl = kernel.opencl.as_deref().expect("every kernel has OpenCL C");
        assert!(opencl.starts_with(OPENCL_PRELUDE), "{name}");
        assert_eq!(opencl.matches(OPENCL_PRELUDE).count(), 1, "{name}");
        let signature = if kernel.stream_k > 0 {
            "void gemm(GEMM_ARGS, __global float4* restrict partials) {\n    ENTER_BATCH();\n"
        } else {
            "void gemm(GEMM_ARGS) {\n    ENTER_BATCH();\n"
        };
        assert!(opencl.contains(signature), "{name}");
    }
}

#[test]
fn no_kernel_redefines_a_prelude_function() {
    let wgsl_helpers = defined_functions(WGSL_PRELUDE);
    let cl_helpers = defined_functions(OPENCL_PRELUDE);
    for helper in ["elem_a", "quad_a", "quad_b", "store", "store4"] {
        assert!(wgsl_helpers.iter().any(|h| h == helper), "{wgsl_helpers:?}");
    }
    for helper in ["elem", "quad", "store"] {
        assert!(cl_helpers.iter().any(|h| h == helper), "{cl_helpers:?}");
    }
    let check = |name: &str, body: &str, helpers: &[String]| {
        let defined = defined_functions(body);
        assert!(!defined.is_empty(), "{name}: no function found in its body");
        let twice: Vec<_> = defined.iter().filter(|f| helpers.contains(f)).collect();
        assert!(
            twice.is_empty(),
            "{name} redefines {twice:?} of its prelude"
        );
    };
    for (name, body) in bodies("shaders", "wgsl") {
        check(&name, &body, &wgsl_helpers);
    }
    for kernel in every_kernel() {
        let body = kernel
            .wgsl
            .strip_prefix(WGSL_PRELUDE)
            .expect("prelude first");
        check(&kernel.name, body, &wgsl_helpers);
    }
    for (name, body) in bodies("kernels_cl", "cl") {
        check(&name, &body, &cl_helpers);
    }
}

#[test]
fn params_match_the_prelude_struct_field_for_field() {
    let fields: Vec<&str> = WGSL_PRELUDE
        .split("struct Params {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("the prelude declares struct Params")
        .split(',')
        .filter_map(|field| field.split(':').next())
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .collect();
    assert_eq!(std::mem::size_of::<Params>(), 4 * fields.len());
    assert_eq!(std::mem::size_of::<Params>(), 48);

    let problem = GemmProblem::new(3, 5, 7)
        .with_scalars(0.25, -0.5)
        .with_leading_dims(11, 13, 17)
        .with_batch(4, 0, 100, 60);
    let params = Params {
        first_batch: 2,
        ..Params::of(&problem)
    };
    let words: &[u32] = bytemuck::cast_slice(bytemuck::bytes_of(&params));
    for (field, word) in fields.iter().zip(words) {
        let expected = match *field {
            "m" => 3,
            "n" => 5,
            "k" => 7,
            "lda" => 11,
            "ldb" => 13,
            "ldc" => 17,
            "alpha" => 0.25f32.to_bits(),
            "beta" => (-0.5f32).to_bits(),
            "stride_a" => 0,
            "stride_b" => 100,
            "stride_c" => 60,
            "first_batch" => 2,
            other => panic!("the prelude's Params has a field `{other}` the test does not know"),
        };
        assert_eq!(*word, expected, "Params.{field} is out of place");
    }
}
