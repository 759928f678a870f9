//! README's "The walkthrough, as commands", run as written in an empty folder with the built
//! `guardrails` first on PATH: init, check, test, serve in audit mode, a recorded request, report,
//! enforce, replay.

use std::path::Path;
use std::process::Command;

fn walkthrough() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let marker = "<!-- walkthrough: run by tests/walkthrough.rs -->\n```sh\n";
    let start = readme.find(marker).expect("the walkthrough block") + marker.len();
    let end = readme[start..].find("\n```").expect("its end") + start;
    readme[start..end].to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let script = walkthrough();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let binary = Path::new(env!("CARGO_BIN_EXE_guardrails"));
    let path = format!(
        "{}:{}",
        binary.parent().expect("the binary's folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("PORT", free_port().to_string())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "{stdout}\n{stderr}\n--- serve.log\n{log}"
    );
    let answer: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("answer.json")).expect("the answer"),
    )
    .expect("JSON");
    assert_eq!(
        answer["response"]["allowed"], true,
        "audit mode allows: {answer}"
    );
    for expected in [
        "2 passed, 0 failed",
        "1 of 1 request(s) would be denied",
        "prod-scale-platform-only  payments  bob@example.com",
        "replayed 1 requests: 1 newly denied",
        "CI stops here",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}\n{stderr}"
        );
    }
}
