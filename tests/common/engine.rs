//! The engine `serve` starts with by default.

use guardrails::config::Config;
use guardrails::decide::Engine;
use guardrails::policy::PolicyStore;

/// The shipped policies and the example config, both embedded in the binary.
pub fn engine() -> Engine {
    Engine::new(
        PolicyStore::embedded().unwrap(),
        Config::embedded().unwrap(),
        None,
    )
}
