//! Every WGSL kernel parses, validates, specialises for each transpose pair, and compiles to SPIR-V,
//! with naga alone (no GPU).

use tilegemm::kernel::catalogue;

fn compile_every_specialisation(name: &str, source: &str) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let flags = naga::valid::ValidationFlags::all();
    let info = naga::valid::Validator::new(flags, naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    for trans_a in [0.0, 1.0] {
        for trans_b in [0.0, 1.0] {
            let mut constants = naga::back::PipelineConstants::default();
            constants.insert("TRANS_A".to_string(), trans_a);
            constants.insert("TRANS_B".to_string(), trans_b);
            let entry = Some((naga::ShaderStage::Compute, "main"));
            let (specialised, specialised_info) =
                naga::back::pipeline_constants::process_overrides(
                    &module, &info, entry, &constants,
                )
                .unwrap_or_else(|e| panic!("{name} ({trans_a}, {trans_b}): {e}"));
            let options = naga::back::spv::Options::default();
            let pipeline = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: "main".to_string(),
            };
            let words = naga::back::spv::write_vec(
                &specialised,
                &specialised_info,
                &options,
                Some(&pipeline),
            )
            .unwrap_or_else(|e| panic!("{name} ({trans_a}, {trans_b}): {e}"));
            assert!(words.len() > 100, "{name}: suspiciously small SPIR-V");
        }
    }
}

#[test]
fn catalogue_kernels_compile_for_every_transpose_pair() {
    for kernel in catalogue() {
        compile_every_specialisation(&kernel.name, &kernel.wgsl);
    }
}

#[test]
fn every_file_in_shaders_is_valid_and_catalogued() {
    let catalogued: Vec<&str> = catalogue().iter().map(|k| k.name.as_str()).collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            compile_every_specialisation(&name, &std::fs::read_to_string(&path).unwrap());
            assert!(
                catalogued.contains(&name.as_str()),
                "shaders/{name}.wgsl is not in the catalogue"
            );
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected tile16, tile20 and tile24 in {dir:?}");
}

#[test]
fn a_broken_shader_is_rejected() {
    let broken = catalogue()[0]
        .wgsl
        .replace("acc += ", "acc += undefined_name * ");
    assert!(naga::front::wgsl::parse_str(&broken).is_err());
}

#[test]
fn every_file_in_kernels_cl_is_catalogued_beside_its_wgsl_twin() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels_cl");
    let catalogue = catalogue();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cl") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let spec = catalogue.iter().find(|k| k.name == name);
            let spec =
                spec.unwrap_or_else(|| panic!("kernels_cl/{name}.cl is not in the catalogue"));
            assert_eq!(
                spec.opencl.as_deref(),
                Some(std::fs::read_to_string(&path).unwrap().as_str())
            );
            assert!(spec
                .opencl
                .as_deref()
                .unwrap()
                .contains("void gemm(const uint M, const uint N, const uint K, const float alpha"));
        }
    }
}
