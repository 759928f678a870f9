//! `guardrails test`: run policy test files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::authoring::test_files::{self, CaseResult};
use crate::config::Config;
use crate::decide::Engine;
use crate::policy::PolicyStore;

/// Run the policy test files in DIR/tests against the policies in DIR; non-zero exit on any
/// failure.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    policy_dir: super::PolicyDirArgs,
    /// Configuration for cases whose file names none (default: the embedded example).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Test files to run instead of DIR/tests: one file, or a directory of them (e.g. a
    /// corpus of recorded AdmissionReviews).
    #[arg(long, value_name = "FILE|DIR")]
    tests: Option<PathBuf>,
    /// Run only the cases whose name contains PATTERN.
    #[arg(long, value_name = "PATTERN")]
    run: Option<String>,
    /// `text`, `json` (one report object) or `junit` (JUnit XML, for CI test reports).
    #[arg(long, value_enum, default_value_t = TestOutput::Text)]
    output: TestOutput,
    /// Fail when a forbid policy is matched by no case (listed either way; not checked with --run).
    #[arg(long)]
    fail_uncovered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestOutput {
    Text,
    Json,
    Junit,
}

/// Everything a run found, as `--output json` prints it.
#[derive(Debug, serde::Serialize)]
struct Report {
    /// Where the policies came from and their hash.
    policies: String,
    policy_hash: String,
    passed: usize,
    failed: usize,
    cases: Vec<CaseResult>,
    /// Forbid policies no case matched (empty with --run).
    uncovered: Vec<String>,
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let dir = args.policy_dir.resolve();
    let load = || match &dir {
        Some(dir) => PolicyStore::load_dir(dir),
        None => PolicyStore::embedded(),
    };
    let policies = load()?;
    let (source, policy_hash) = (policies.source.clone(), policies.hash.clone());
    let forbids: Vec<String> = policies
        .policies_meta()
        .filter(|meta| meta.forbid)
        .map(|meta| meta.id.clone())
        .collect();
    let default_config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    let files = match &args.tests {
        Some(file) if file.is_file() => vec![file.to_path_buf()],
        Some(tests_dir) => test_files::files_in(tests_dir)?,
        None => match &dir {
            Some(dir) => test_files::files_in(&dir.join("tests"))?,
            None => bail!(
                "the policies built into the binary carry no test files: give a policy folder, or --tests"
            ),
        },
    };
    let default_engine = Engine::new(policies, default_config, None);
    let mut cases = Vec::new();
    for path in files {
        let file = test_files::load(&path)?;
        let filter = args.run.as_deref();
        cases.extend(match &file.config {
            Some(relative) => {
                let config_path = path.parent().unwrap_or(Path::new(".")).join(relative);
                let engine = Engine::new(load()?, Config::load(&config_path)?, None);
                test_files::run_file(&engine, &path, &file, filter)
            }
            None => test_files::run_file(&default_engine, &path, &file, filter),
        });
    }
    let failed = cases.iter().filter(|case| !case.passed()).count();
    let matched: BTreeSet<&str> = cases
        .iter()
        .flat_map(|case| case.policies.iter().map(String::as_str))
        .collect();
    let mut uncovered: Vec<String> = match args.run {
        Some(_) => Vec::new(),
        None => forbids
            .into_iter()
            .filter(|id| !matched.contains(id.as_str()))
            .collect(),
    };
    uncovered.sort();
    let report = Report {
        policies: source,
        policy_hash,
        passed: cases.len() - failed,
        failed,
        cases,
        uncovered,
    };
    match args.output {
        TestOutput::Text => print_text(&report)?,
        TestOutput::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        TestOutput::Junit => out!("{}", junit(&report)),
    }
    if report.failed > 0 {
        bail!("{} policy test(s) failed", report.failed);
    }
    if args.fail_uncovered && !report.uncovered.is_empty() {
        bail!(
            "{} forbid polic(ies) matched by no case (--fail-uncovered): {}",
            report.uncovered.len(),
            report.uncovered.join(", ")
        );
    }
    Ok(())
}

fn print_text(report: &Report) -> anyhow::Result<()> {
    outln!("policies {} {}", report.policies, report.policy_hash);
    for result in &report.cases {
        if result.passed() {
            outln!("PASS {}: {}", result.file, result.name);
        } else {
            outln!("FAIL {}: {}", result.file, result.name);
            for failure in &result.failures {
                outln!("     {failure}");
            }
        }
    }
    if !report.uncovered.is_empty() {
        outln!(
            "no case matched: {} (a forbid no test shows denying anything)",
            report.uncovered.join(", ")
        );
    }
    outln!("{} passed, {} failed", report.passed, report.failed);
    Ok(())
}

/// JUnit XML: one `testsuite` per test file, one `testcase` per case.
fn junit(report: &Report) -> String {
    let mut files: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for case in &report.cases {
        files.entry(case.file.as_str()).or_default().push(case);
    }
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"guardrails test\" tests=\"{}\" failures=\"{}\">\n",
        report.cases.len(),
        report.failed
    );
    for (file, cases) in files {
        let failures = cases.iter().filter(|case| !case.passed()).count();
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
            escape(file),
            cases.len()
        ));
        for case in cases {
            let name = escape(&case.name);
            let classname = escape(file);
            if case.passed() {
                xml.push_str(&format!(
                    "    <testcase classname=\"{classname}\" name=\"{name}\"/>\n"
                ));
            } else {
                let text = escape(&case.failures.join("\n"));
                let first = escape(case.failures.first().map_or("", String::as_str));
                xml.push_str(&format!(
                    "    <testcase classname=\"{classname}\" name=\"{name}\">\n      <failure message=\"{first}\">{text}</failure>\n    </testcase>\n"
                ));
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Text as XML attribute or element content.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // XML 1.0 has no way to write other control characters.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => escaped.push('\u{FFFD}'),
            c => escaped.push(c),
        }
    }
    escaped
}
