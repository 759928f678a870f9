//! Benchmark inputs and a profiling loop (see BENCHMARKS.md).
//!
//! `bench_inputs write DIR [POLICIES]` writes DIR/bodies/<name>.json (the three served bodies and
//! the generated-team ones), and, with POLICIES > 0, DIR/policies/ (the shipped schema and
//! policies plus POLICIES generated ones) and DIR/config.yaml (the example config plus the
//! generated teams).
//!
//! `bench_inputs run STAGE BODY ITERATIONS [POLICIES]` runs one stage (`value`: a plain
//! `serde_json::Value` parse, `parse`, `decide`, `parse-decide`, `review`: parse, decide, build
//! and serialise the response; `answer`: `review` and the audit record, written as the server writes them) on
//! one body in a loop, for `valgrind --tool=callgrind` or `perf`.
//! Instruction counts from callgrind are repeatable where wall-clock figures on a shared machine
//! are not.

#[path = "../benches/support/bodies.rs"]
mod bodies;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../benches/support/generate.rs"]
mod generate;

use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use guardrails::audit::AuditRecord;
use guardrails::config::Config;
use guardrails::decide::Engine;
use guardrails::policy::PolicyStore;
use guardrails::{admission, decide, respond};

// The allocator the server uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn all_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut all = bodies::bodies();
    all.extend(bodies::generated_bodies("t00", "t01"));
    all
}

fn engine(policies: usize) -> Result<Engine, String> {
    if policies == 0 {
        return Ok(common::engine());
    }
    let sources = generate::sources(policies);
    let store = PolicyStore::from_sources(
        sources.iter().map(|(n, t)| (n.as_str(), t.as_str())),
        "(generated)",
    )
    .map_err(|e| e.to_string())?;
    let config =
        Config::from_yaml(&generate::config(policies), "(generated)").map_err(|e| e.to_string())?;
    Ok(Engine::new(store, config, None))
}

fn write(dir: &Path, policies: usize) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(dir.join("bodies")).map_err(io)?;
    for (name, body) in all_bodies() {
        std::fs::write(dir.join("bodies").join(format!("{name}.json")), body).map_err(io)?;
    }
    if policies > 0 {
        std::fs::create_dir_all(dir.join("policies")).map_err(io)?;
        for (name, text) in generate::sources(policies) {
            std::fs::write(dir.join("policies").join(name), text).map_err(io)?;
        }
        std::fs::write(dir.join("config.yaml"), generate::config(policies)).map_err(io)?;
    }
    Ok(())
}

fn run(stage: &str, body_name: &str, iterations: u64, policies: usize) -> Result<(), String> {
    let mut engine = engine(policies)?;
    // `*-first` stages: every request as if seen for the first time (nothing remembered).
    let stage = match stage.strip_suffix("-first") {
        Some(stage) => {
            engine.decisions = guardrails::decide::DecisionCache::new(0);
            stage
        }
        None => stage,
    };
    let body = all_bodies()
        .into_iter()
        .find(|(name, _)| *name == body_name)
        .map(|(_, body)| body)
        .ok_or_else(|| format!("no body {body_name}"))?;
    let request = admission::parse_review(&body).map_err(|e| e.to_string())?;
    measured_loop(stage, &engine, &body, &request, iterations)
}

/// The measured part alone (`scripts/instructions.sh` counts only inside this function).
#[inline(never)]
fn measured_loop(
    stage: &str,
    engine: &Engine,
    body: &[u8],
    request: &admission::Request,
    iterations: u64,
) -> Result<(), String> {
    for _ in 0..iterations {
        match stage {
            "value" => {
                black_box(
                    serde_json::from_slice::<serde_json::Value>(black_box(body))
                        .map_err(|e| e.to_string())?,
                );
            }
            "parse" => {
                black_box(admission::parse_review(black_box(body)).map_err(|e| e.to_string())?);
            }
            "decide" => {
                black_box(decide::decide(engine, black_box(request)).map_err(|e| e.to_string())?);
            }
            "parse-decide" => {
                let request =
                    admission::parse_review(black_box(body)).map_err(|e| e.to_string())?;
                black_box(decide::decide(engine, &request).map_err(|e| e.to_string())?);
            }
            "review" => {
                let reviewed =
                    respond::validate_review(engine, black_box(body)).map_err(|e| e.to_string())?;
                black_box(serde_json::to_vec(&reviewed.answer()).map_err(|e| e.to_string())?);
            }
            "answer" => {
                let reviewed =
                    respond::validate_review(engine, black_box(body)).map_err(|e| e.to_string())?;
                // Written as the server writes them.
                let record = AuditRecord::new(&reviewed, Duration::from_micros(40));
                let mut line = Vec::with_capacity(1024);
                record.write(&mut line).map_err(|e| e.to_string())?;
                let mut answer = Vec::with_capacity(1024);
                guardrails::json::write_answer(&mut answer, &reviewed.answer())
                    .map_err(|e| e.to_string())?;
                black_box((line, answer));
            }
            other => return Err(format!("unknown stage {other}")),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize| -> Result<usize, String> {
        args.get(index)
            .map_or(Ok(0), |n| n.parse().map_err(|e| format!("{n}: {e}")))
    };
    let result = match args.first().map(String::as_str) {
        Some("write") if args.len() >= 2 => {
            number(2).and_then(|policies| write(Path::new(&args[1]), policies))
        }
        Some("run") if args.len() >= 4 => number(3).and_then(|iterations| {
            number(4).and_then(|policies| run(&args[1], &args[2], iterations as u64, policies))
        }),
        _ => Err(
            "usage: bench_inputs write DIR [POLICIES] | run STAGE BODY ITERATIONS [POLICIES]"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
