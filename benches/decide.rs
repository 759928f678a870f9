//! The decision path, end to end minus the network: parse the AdmissionReview body, recognise,
//! identify, build entities, run Cedar per action, build and serialise the response; and how the
//! cost of a decision and of loading grows with the number of policies.
//! Results and method: BENCHMARKS.md.

#[path = "support/bodies.rs"]
mod bodies;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/generate.rs"]
mod generate;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use guardrails::config::Config;
use guardrails::decide::{DecisionCache, Engine};
use guardrails::policy::PolicyStore;
use guardrails::respond;

// The allocator the server uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn review_path(c: &mut Criterion) {
    let engine = common::engine();
    let mut group = c.benchmark_group("review");
    for (name, body) in bodies::bodies() {
        group.bench_function(name, |b| {
            b.iter(|| {
                let reviewed =
                    respond::validate_review(&engine, black_box(&body)).expect("valid review");
                black_box(serde_json::to_vec(&reviewed.answer()).expect("serialisable"))
            })
        });
    }
    group.finish();
}

/// The same requests split into stages: a plain `serde_json::Value` parse of the body (what any
/// webhook pays), envelope parsing, deciding (`decide`: a repeat, answered from the decision
/// cache; `decide_first`: seen for the first time, the cache off), and parsing plus deciding.
fn stages(c: &mut Criterion) {
    let engine = common::engine();
    let mut first = common::engine();
    first.decisions = DecisionCache::new(0);
    let mut group = c.benchmark_group("stage");
    for (name, body) in bodies::bodies() {
        group.bench_function(format!("value/{name}"), |b| {
            b.iter(|| {
                black_box(
                    serde_json::from_slice::<serde_json::Value>(black_box(&body)).expect("json"),
                )
            })
        });
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| {
                black_box(guardrails::admission::parse_review(black_box(&body)).expect("valid"))
            })
        });
        let request = guardrails::admission::parse_review(&body).expect("valid");
        group.bench_function(format!("decide/{name}"), |b| {
            b.iter(|| {
                black_box(
                    guardrails::decide::decide(&engine, black_box(&request)).expect("decided"),
                )
            })
        });
        group.bench_function(format!("decide_first/{name}"), |b| {
            b.iter(|| {
                black_box(guardrails::decide::decide(&first, black_box(&request)).expect("decided"))
            })
        });
        group.bench_function(format!("parse_decide/{name}"), |b| {
            b.iter(|| {
                let request = guardrails::admission::parse_review(black_box(&body)).expect("valid");
                black_box(guardrails::decide::decide(&engine, &request).expect("decided"))
            })
        });
    }
    group.finish();
}

fn store(count: usize) -> PolicyStore {
    let sources = generate::sources(count);
    PolicyStore::from_sources(
        sources.iter().map(|(n, t)| (n.as_str(), t.as_str())),
        "(generated)",
    )
    .expect("generated policies are valid")
}

/// An engine that remembers nothing: the curve is what evaluating costs.
fn engine(store: PolicyStore, count: usize) -> Engine {
    let config = Config::from_yaml(&generate::config(count), "(generated)").expect("config");
    let mut engine = Engine::new(store, config, None);
    engine.decisions = DecisionCache::new(0);
    engine
}

/// Decide with the shipped policies plus 10 to 10,000 generated ones (50 teams x 20 rules at
/// 1,000): `sliced` is what Guardrails does, `whole` evaluates every policy for every request
/// (Cedar alone, for comparison; not run at 10,000).
fn policy_count(c: &mut Criterion) {
    let mut group = c.benchmark_group("policies");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for count in [10usize, 100, 1000, 10_000] {
        let teams = count.div_ceil(generate::RULES_PER_TEAM);
        let bodies = bodies::generated_bodies(
            &generate::team(0, teams),
            &generate::team(1.min(teams - 1), teams),
        );
        let mut engines = vec![("sliced", engine(store(count), count))];
        if count <= 1000 {
            engines.push(("whole", engine(store(count).unsliced(), count)));
        }
        for (kind, engine) in &engines {
            for (name, body) in &bodies {
                let request = guardrails::admission::parse_review(body).expect("valid");
                group.bench_with_input(
                    BenchmarkId::new(format!("{kind}/{name}"), count),
                    &request,
                    |b, request| {
                        b.iter(|| {
                            black_box(
                                guardrails::decide::decide(engine, black_box(request))
                                    .expect("decided"),
                            )
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

/// Loading (parse, strict validation, slicing): what start-up and every reload pay.
fn loading(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for count in [10, 1000, 10_000] {
        let sources = generate::sources(count);
        group.bench_with_input(
            BenchmarkId::from_parameter(count),
            &sources,
            |b, sources| {
                b.iter(|| {
                    black_box(
                        PolicyStore::from_sources(
                            sources.iter().map(|(n, t)| (n.as_str(), t.as_str())),
                            "(generated)",
                        )
                        .expect("valid"),
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, review_path, stages, policy_count, loading);
criterion_main!(benches);
