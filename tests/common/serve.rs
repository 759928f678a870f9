//! `guardrails serve` as a child process on free loopback ports (started again on others if one
//! was taken meanwhile, see `process`), killed when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{listens, on_free_ports};

/// How to start it.
pub struct Serve<'a> {
    /// `guardrails serve` with its arguments but the listeners: the certificate, limits,
    /// environment; a wrapper such as `prlimit` may come first.
    pub command: Command,
    /// Also a plain-HTTP probe port (`--probe-listen`).
    pub probes: bool,
    /// `--dev`, its CA written to this file (ready only once it is).
    pub dev_ca: Option<&'a Path>,
    /// stderr into this file and stdout discarded; `None`: both piped, to read or to leave unread.
    pub log: Option<&'a Path>,
}

/// A running `guardrails serve`.
pub struct Guardrails {
    pub child: Child,
    /// The TLS port, on 127.0.0.1.
    pub port: u16,
    /// The probe port, on 127.0.0.1, when asked for.
    pub probes: Option<u16>,
    log: Option<PathBuf>,
}

impl Guardrails {
    /// Start it; returns once it listens on its ports (and has written its dev CA).
    pub fn start(serve: Serve) -> Self {
        let ports = if serve.probes { 2 } else { 1 };
        on_free_ports(ports, |ports| Self::attempt(&serve, ports))
            .unwrap_or_else(|error| panic!("guardrails serve did not start: {error}"))
    }

    fn attempt(serve: &Serve, ports: &[u16]) -> Result<Self, String> {
        let mut command = copy(&serve.command);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", ports[0]));
        if let Some(probes) = ports.get(1) {
            command
                .arg("--probe-listen")
                .arg(format!("127.0.0.1:{probes}"));
        }
        if let Some(ca) = serve.dev_ca {
            command.arg("--dev").arg("--dev-ca-out").arg(ca);
        }
        match serve.log {
            Some(log) => command
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap()),
            None => command.stdout(Stdio::piped()).stderr(Stdio::piped()),
        };
        // Owned at once, so that a failed start kills and reaps the process.
        let mut served = Self {
            child: command.spawn().unwrap(),
            port: ports[0],
            probes: ports.get(1).copied(),
            log: serve.log.map(Path::to_path_buf),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = served.child.try_wait().unwrap() {
                return Err(format!("it exited ({status}): {}", served.stderr()));
            }
            let pid = served.child.id();
            let bound = listens(pid, served.port) && served.probes.is_none_or(|p| listens(pid, p));
            let ca_written = serve.dev_ca.is_none_or(|ca| {
                std::fs::read_to_string(ca).is_ok_and(|pem| pem.contains("END CERTIFICATE"))
            });
            if bound && ca_written {
                return Ok(served);
            }
            if Instant::now() > deadline {
                let port = served.port;
                return Err(format!(
                    "not listening after 30 s (--listen 127.0.0.1:{port}): {}",
                    served.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it wrote on stderr: its log file, or the pipe once it has exited.
    fn stderr(&mut self) -> String {
        if let Some(log) = &self.log {
            return std::fs::read_to_string(log).unwrap_or_default();
        }
        let mut text = String::new();
        if matches!(self.child.try_wait(), Ok(Some(_)))
            && let Some(mut pipe) = self.child.stderr.take()
        {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Guardrails {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let stderr = self.stderr();
            let lines: Vec<&str> = stderr.lines().collect();
            eprintln!(
                "--- the last lines of guardrails serve (port {}, probes {:?}):\n{}",
                self.port,
                self.probes,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// Another `Command` like `command` (program, arguments, environment, directory), for each start.
fn copy(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => copy.env(key, value),
            None => copy.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        copy.current_dir(dir);
    }
    copy
}
