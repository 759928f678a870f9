//! Reading a policy directory and fingerprinting what was read.

use std::collections::BTreeMap;
use std::path::Path;

use super::{PolicyError, SCHEMA_FILE};

/// The files `load_dir` reads from `dir`, by name: the schema and every `*.cedar` file (symlinks
/// followed, as in a mounted ConfigMap; subdirectories and dangling links skipped).
pub fn read_sources(dir: &Path) -> Result<BTreeMap<String, String>, PolicyError> {
    let read_error = |source| PolicyError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_file() && (name.ends_with(".cedar") || name == SCHEMA_FILE) {
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
                path: path.clone(),
                source,
            })?;
            files.insert(name.to_string(), text);
        }
    }
    Ok(files)
}

/// `sha256:<hex>` over (name, contents) pairs in name order, so the same files hash the same
/// whether they come from a directory or the binary.
pub fn sources_hash<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = sources.into_iter().collect();
    sorted.sort_unstable();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for (name, text) in sorted {
        // Lengths keep ("ab", "c") and ("a", "bc") apart.
        context.update(&(name.len() as u64).to_le_bytes());
        context.update(name.as_bytes());
        context.update(&(text.len() as u64).to_le_bytes());
        context.update(text.as_bytes());
    }
    hex_digest(context.finish())
}

/// `sha256:<hex>` of one text (the config file).
pub fn text_hash(text: &str) -> String {
    hex_digest(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

pub(crate) fn hex_digest(digest: ring::digest::Digest) -> String {
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}
