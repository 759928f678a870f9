//! `guardrails serve` as a process on loopback ports, with clients for its TLS and probe ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running `guardrails serve`, killed when dropped. stderr goes to `log`.
pub struct Guardrails {
    child: Child,
    pub port: u16,
    pub probes: u16,
    pub log: PathBuf,
}

impl Guardrails {
    /// `serve --listen … --probe-listen … ARGS` (ARGS pick the certificate: `--dev` or files);
    /// returns once both ports accept connections.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        let (port, probes) = (free_port(), free_port());
        let log = dir.join(format!("guardrails-{port}.log"));
        let child = Command::new(assert_cmd::cargo::cargo_bin("guardrails"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--probe-listen")
            .arg(format!("127.0.0.1:{probes}"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut served = Self {
            child,
            port,
            probes,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", probes)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        {
            assert!(
                served.child.try_wait().unwrap().is_none(),
                "guardrails exited: {}",
                served.log()
            );
            assert!(Instant::now() < deadline, "guardrails never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// GET `path` on the probe port within `within`: status and body.
    pub async fn probe(&self, path: &str, within: Duration) -> (u16, String) {
        // Plain HTTP; reqwest still wants a TLS configuration to build.
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(within)
            .build()
            .unwrap();
        let response = client
            .get(format!("http://127.0.0.1:{}{path}", self.probes))
            .send()
            .await
            .unwrap_or_else(|error| panic!("{path} not answered within {within:?}: {error}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    pub async fn readyz(&self) -> (u16, Value) {
        let (status, body) = self.probe("/readyz", Duration::from_secs(5)).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    /// The sum of every series of `name` on `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.probe("/metrics", Duration::from_secs(5)).await;
        metric_sum(&text, name)
    }
}

impl Drop for Guardrails {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of every series of `name` in a Prometheus text exposition (`name` alone, or with
/// labels: `name{a="b"}` matches that series only).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            *series == name
                || series
                    .strip_prefix(name)
                    .is_some_and(|labels| labels.starts_with('{'))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

/// A client trusting the CAs in `ca_pem`, giving up after `timeout`.
pub fn client(ca_pem: &str, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(super::tls_client_config(ca_pem))
        .timeout(timeout)
        .build()
        .unwrap()
}

/// POST `body` to `/validate` within `within`: the AdmissionReview answered.
pub async fn validate(client: &reqwest::Client, served: &Guardrails, body: Vec<u8>) -> Value {
    let response = client
        .post(served.url("/validate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("/validate answered in time");
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}
