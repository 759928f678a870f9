//! Policy directories to load, check and serve.

use std::path::Path;

/// A copy of the shipped policy directory (schema, policies, their tests and manifests) with
/// `extra` files added (name relative to it, contents).
pub fn policies(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::create_dir_all(dir.path().join("tests/manifests")).unwrap();
    for sub in ["", "tests", "tests/manifests"] {
        for entry in std::fs::read_dir(shipped.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    for (name, contents) in extra {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    dir
}
