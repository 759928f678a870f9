//! What the kubelet would do with the chart's pods, without a kubelet: lay out a pod's mounted
//! ConfigMaps and Secrets under a directory, point its container args there, check them with the
//! real CLI parser and run the real binary with them; and a stand-in for the Job controller and
//! kubelet that runs the chart's pre-install/pre-upgrade check Job that way and writes its outcome
//! into the Job's status, as Helm waits for.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use crate::cluster::{Cluster, http_get};
use crate::common::process::{listens, on_free_ports};

/// The container args of `pod_spec`'s first container, with every path under a volume mount moved
/// under `root`, where the mounted files are written: ConfigMap data from `configmap(name)`, Secret
/// data from `secret(name)` (file name -> contents). Fails on a mount without a volume, a volume
/// whose ConfigMap or Secret does not exist, or a container that overrides the image's entrypoint.
pub fn materialize(
    pod_spec: &Value,
    root: &Path,
    configmap: &dyn Fn(&str) -> Option<Value>,
    secret: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Result<Vec<String>, String> {
    let container = &pod_spec["containers"][0];
    if !container["command"].is_null() {
        return Err(format!(
            "the container overrides the entrypoint: {container}"
        ));
    }
    let volumes = pod_spec["volumes"].as_array().cloned().unwrap_or_default();
    let mut args: Vec<String> = container["args"]
        .as_array()
        .ok_or_else(|| format!("a container without args: {container}"))?
        .iter()
        .map(|a| a.as_str().map(str::to_string).ok_or(format!("arg {a}")))
        .collect::<Result<_, _>>()?;
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let (name, path) = (
            mount["name"].as_str().unwrap_or_default(),
            mount["mountPath"].as_str().unwrap_or_default(),
        );
        let volume = volumes
            .iter()
            .find(|v| v["name"] == name)
            .ok_or_else(|| format!("volumeMount {name} has no volume"))?;
        let files: BTreeMap<String, String> = if let Some(cm) = volume["configMap"]["name"].as_str()
        {
            let object =
                configmap(cm).ok_or_else(|| format!("ConfigMap {cm} (volume {name}) missing"))?;
            serde_json::from_value(object["data"].clone())
                .map_err(|e| format!("ConfigMap {cm} data: {e}"))?
        } else if let Some(s) = volume["secret"]["secretName"].as_str() {
            secret(s).ok_or_else(|| format!("Secret {s} (volume {name}) missing"))?
        } else {
            return Err(format!("volume {name}: neither a ConfigMap nor a Secret"));
        };
        let dir = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (file, contents) in files {
            std::fs::write(dir.join(&file), contents).map_err(|e| format!("{file}: {e}"))?;
        }
        let moved = dir.display().to_string();
        for arg in args.iter_mut() {
            if let Some(rest) = arg.strip_prefix(path) {
                *arg = format!("{moved}{rest}");
            } else if let Some((flag, value)) = arg.split_once('=')
                && let Some(rest) = value.strip_prefix(path)
            {
                *arg = format!("{flag}={moved}{rest}");
            }
        }
    }
    Ok(args)
}

/// Parse container args as the image's entrypoint (`guardrails`) would.
pub fn parse_args(args: &[String]) -> Result<guardrails::cli::Cli, String> {
    let mut argv = vec!["guardrails".to_string()];
    argv.extend(args.iter().cloned());
    guardrails::cli::Cli::try_parse_from(&argv).map_err(|e| format!("{argv:?}: {e}"))
}

/// The value of `--flag=value` among args.
pub fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")))
}

/// Run `guardrails serve` with the chart's args (listeners moved to free loopback ports, others
/// if one was taken meanwhile) until `/readyz` answers 200, then stop it. Returns its log on
/// failure.
pub fn serve_until_ready(c: &Cluster, args: &[String], log: &Path) -> Result<(), String> {
    on_free_ports(2, |ports| serve_once(c, args, log, ports))
}

fn serve_once(c: &Cluster, args: &[String], log: &Path, ports: &[u16]) -> Result<(), String> {
    let probe = format!("127.0.0.1:{}", ports[1]);
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                format!("--listen=127.0.0.1:{}", ports[0])
            } else if a.starts_with("--probe-listen=") {
                format!("--probe-listen={probe}")
            } else {
                a.clone()
            }
        })
        .collect();
    let file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(env!("CARGO_BIN_EXE_guardrails"))
        .args(&args)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| e.to_string())?;
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!(
                "guardrails exited ({status})\nargs: {args:?}\n--- log\n{}",
                log_text()
            ));
        }
        // The probe port is its own (not another process's that took it meanwhile) and ready.
        let ready = if listens(child.0.id(), ports[1]) {
            http_get(&probe, "/readyz")
        } else {
            Err(format!("not listening on {probe}"))
        };
        match ready {
            Ok((200, _)) => return Ok(()),
            result if std::time::Instant::now() > deadline => {
                return Err(format!(
                    "not ready after 20 s: {result:?}\nargs: {args:?}\n--- log\n{}",
                    log_text()
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One run of a Job's container.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub job: String,
    pub args: Vec<String>,
    pub success: bool,
    pub output: String,
}

/// Stands in for the Job controller and the kubelet in one namespace: every new Job there has its
/// container run (mounted ConfigMaps read from the API server, args parsed by the real CLI, the
/// real binary executed) and its status set to Complete or Failed.
pub struct JobRunner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    runs: Arc<Mutex<Vec<JobRun>>>,
}

impl JobRunner {
    pub fn start(c: &'static Cluster, namespace: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, runs, namespace) = (stop.clone(), runs.clone(), namespace.to_string());
            std::thread::spawn(move || {
                let mut seen = HashSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let out = c.kubectl(&["get", "jobs", "-n", &namespace, "-o", "json"]);
                    let jobs = if out.success { out.json() } else { json!({}) };
                    for job in jobs["items"].as_array().into_iter().flatten() {
                        let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
                        if !seen.insert(uid.to_string()) {
                            continue;
                        }
                        let run = run_job(c, &namespace, job);
                        runs.lock().expect("job runs").push(run);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            stop,
            thread: Some(thread),
            runs,
        }
    }

    pub fn runs(&self) -> Vec<JobRun> {
        self.runs.lock().expect("job runs").clone()
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_job(c: &Cluster, namespace: &str, job: &Value) -> JobRun {
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
    let root = c.run_dir.join("jobs").join(uid);
    let out = c.kubectl(&["get", "configmaps", "-n", namespace, "-o", "json"]);
    let configmaps = if out.success { out.json() } else { json!({}) };
    let configmap = |cm: &str| -> Option<Value> {
        configmaps["items"]
            .as_array()?
            .iter()
            .find(|item| item["metadata"]["name"] == cm)
            .cloned()
    };
    let no_secret = |_: &str| None;
    let (args, success, output) = match materialize(
        &job["spec"]["template"]["spec"],
        &root,
        &configmap,
        &no_secret,
    )
    .and_then(|args| parse_args(&args).map(|_| args))
    {
        Err(error) => (Vec::new(), false, error),
        Ok(args) => match Command::new(env!("CARGO_BIN_EXE_guardrails"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) => (
                args,
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ),
            Err(e) => (args, false, e.to_string()),
        },
    };
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let condition = |kind: &str, reason: &str| {
        json!({"type": kind, "status": "True", "reason": reason, "message": "e2e job runner",
               "lastProbeTime": now, "lastTransitionTime": now})
    };
    let status = if success {
        json!({"status": {
            "startTime": now, "completionTime": now, "succeeded": 1, "active": 0, "ready": 0,
            "conditions": [condition("SuccessCriteriaMet", "CompletionsReached"),
                           condition("Complete", "CompletionsReached")],
        }})
    } else {
        json!({"status": {
            "startTime": now, "failed": 1, "active": 0, "ready": 0,
            "conditions": [condition("FailureTarget", "BackoffLimitExceeded"),
                           condition("Failed", "BackoffLimitExceeded")],
        }})
    };
    let patched = c.kubectl(&[
        "patch",
        "job",
        &name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    let output = if patched.success {
        output
    } else {
        format!("{output}\n(could not set the Job's status: {patched})")
    };
    JobRun {
        job: name,
        args,
        success: success && patched.success,
        output,
    }
}

/// A fresh directory under the run directory.
pub fn scratch(c: &Cluster, name: &str) -> PathBuf {
    let dir = c.run_dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
