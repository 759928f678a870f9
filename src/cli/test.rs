//! `guardrails test`: run policy test files.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::config::Config;
use crate::decide::Engine;
use crate::policy::PolicyStore;

/// Run the policy test files in DIR/tests against the policies in DIR; non-zero exit on any
/// failure.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Policy directory (its `tests/` holds the test files).
    #[arg(default_value = "policies")]
    dir: PathBuf,
    /// Configuration for cases whose file names none (default: the embedded example).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Test files to run instead of DIR/tests: one file, or a directory of them (e.g. a
    /// corpus of recorded AdmissionReviews).
    #[arg(long, value_name = "FILE|DIR")]
    tests: Option<PathBuf>,
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let TestArgs { dir, config, tests } = args;
    let (dir, config, tests) = (dir.as_path(), config.as_deref(), tests.as_deref());
    use crate::authoring::test_files;
    let policies = PolicyStore::load_dir(dir)?;
    let default_config = match config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    let files = match tests {
        Some(file) if file.is_file() => vec![file.to_path_buf()],
        Some(tests_dir) => test_files::files_in(tests_dir)?,
        None => test_files::files_in(&dir.join("tests"))?,
    };
    let default_engine = Engine::new(policies, default_config, None);
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in files {
        let file = test_files::load(&path)?;
        let results = match &file.config {
            Some(relative) => {
                let config_path = path.parent().unwrap_or(Path::new(".")).join(relative);
                let engine = Engine::new(
                    PolicyStore::load_dir(dir)?,
                    Config::load(&config_path)?,
                    None,
                );
                test_files::run_file(&engine, &path, &file)
            }
            None => test_files::run_file(&default_engine, &path, &file),
        };
        for result in results {
            if result.passed() {
                passed += 1;
                outln!("PASS {}: {}", result.file, result.name);
            } else {
                failed += 1;
                outln!("FAIL {}: {}", result.file, result.name);
                for failure in &result.failures {
                    outln!("     {failure}");
                }
            }
        }
    }
    outln!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} policy test(s) failed");
    }
    Ok(())
}
