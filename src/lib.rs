//! Guardrails: a Kubernetes admission webhook that decides changes to Argo CD Applications, Argo
//! Rollouts and Deployments with Cedar policies.
//!
//! The request path, one module per stage:
//! `admission` (envelope) -> `recognize` (actions) -> `identity` (principal) -> `entities`
//! (Cedar entities/context) -> `decide` (Cedar + modes, over a `policy` store and `config`) ->
//! `respond` (AdmissionReview response) -> `audit` (one line per request). `server` and `cli`
//! are thin shells around `respond::review`.

pub mod admission;
pub mod argocd;
pub mod audit;
pub mod authoring;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod decide;
pub mod entities;
pub mod fingerprint;
pub mod identity;
pub mod json;
pub mod metrics;
pub mod mutate;
pub mod namespace_watch;
pub mod policy;
pub mod policy_reports;
pub mod recognize;
pub mod reload;
pub mod respond;
pub mod server;
pub mod sync;
pub mod units;
pub mod vocabulary;

/// The hasher for maps looked up on every request (foldhash, seeded per process): several times
/// cheaper than SipHash on short keys. For maps whose contents a client cannot grow at will
/// (the config's names, metric label sets) or that are bounded and start over when full (the
/// decision cache).
pub type FastHash = foldhash::fast::RandomState;
