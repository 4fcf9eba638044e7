//! Packs the selector's shipped data — every `models/*.json` (tuning databases and learned models) —
//! into one deflated archive that the library embeds (`src/select/shipped.rs`), so installed and
//! copied binaries and library users get it. Each file is parsed and re-written without whitespace;
//! the archive is a list of (u32 name length, name, u32 text length, text), little-endian.

use std::path::Path;

fn main() {
    let models = Path::new("models");
    println!("cargo:rerun-if-changed=models");
    let mut names: Vec<String> = std::fs::read_dir(models)
        .expect("models/ is part of the source tree")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    let mut archive = Vec::new();
    for name in &names {
        let text = std::fs::read_to_string(models.join(name))
            .unwrap_or_else(|e| panic!("models/{name}: {e}"));
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("models/{name}: {e}"));
        let compact = serde_json::to_string(&value).expect("a parsed value serialises");
        for part in [name.as_bytes(), compact.as_bytes()] {
            archive.extend_from_slice(&(part.len() as u32).to_le_bytes());
            archive.extend_from_slice(part);
        }
    }
    let packed = miniz_oxide::deflate::compress_to_vec(&archive, 9);
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("shipped.bin");
    std::fs::write(out, packed).expect("OUT_DIR is writable");
}
