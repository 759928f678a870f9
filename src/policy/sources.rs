//! Reading a policy directory and fingerprinting what was read.

use std::collections::BTreeMap;
use std::path::Path;

use super::{PolicyError, SCHEMA_FILE};

/// The files `load_dir` reads from `dir`, by name: the schema and every `*.cedar` file (symlinks
/// followed, as in a mounted ConfigMap; subdirectories and dangling links skipped).
pub fn read_sources(dir: &Path) -> Result<BTreeMap<String, String>, PolicyError> {
    let read_error = |cause| PolicyError::Read {
        path: dir.to_path_buf(),
        cause,
    };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_file() && (name.ends_with(".cedar") || name == SCHEMA_FILE) {
            let text = std::fs::read_to_string(&path).map_err(|cause| PolicyError::Read {
                path: path.clone(),
                cause,
            })?;
            files.insert(name.to_string(), text);
        }
    }
    Ok(files)
}
