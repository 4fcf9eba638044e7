//! The selector's shipped data, embedded in the binary: every `models/*.json` of the source tree
//! (tuning databases and learned models), minified and deflated by `models/build.rs`, inflated once on
//! first use. `models/` stays the source it is built from.

use std::sync::OnceLock;

/// The deflated archive `models/build.rs` made.
static PACKED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shipped.bin"));

/// Bytes the shipped data adds to the binary.
pub fn packed_bytes() -> usize {
    PACKED.len()
}

/// Every shipped file: (name, JSON text).
pub fn files() -> &'static [(String, String)] {
    static FILES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let archive =
            miniz_oxide::inflate::decompress_to_vec(PACKED).expect("build.rs deflated the archive");
        let mut files = Vec::new();
        let mut rest = archive.as_slice();
        let mut take = || -> Option<String> {
            let (length, tail) = rest.split_first_chunk::<4>()?;
            let length = u32::from_le_bytes(*length) as usize;
            let (part, tail) = tail.split_at_checked(length)?;
            rest = tail;
            String::from_utf8(part.to_vec()).ok()
        };
        while let (Some(name), Some(text)) = (take(), take()) {
            files.push((name, text));
        }
        files
    })
}

/// The shipped file called `name`.
pub fn read(name: &str) -> Option<&'static str> {
    files()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, text)| text.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `models/` is shipped, with the same content.
    #[test]
    fn the_binary_ships_every_file_of_models() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let mut on_disk = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            on_disk += 1;
            let name = path.file_name().unwrap().to_str().unwrap();
            let shipped: serde_json::Value =
                serde_json::from_str(read(name).unwrap_or_else(|| panic!("{name} not shipped")))
                    .unwrap();
            let source: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(shipped, source, "{name}");
        }
        assert_eq!(files().len(), on_disk);
        assert!(packed_bytes() < 2 << 20, "{} bytes", packed_bytes());
    }
}
