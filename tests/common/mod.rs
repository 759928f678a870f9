//! The helpers as `benches/decide.rs` and `examples/bench_inputs.rs` include them (`#[path]` to
//! this file), under the names `benches/support/bodies.rs` uses. The tests do not use this file:
//! each declares the submodules it uses (`mod common { pub mod review; … }`), so that a helper
//! no test uses is reported as dead code.

pub mod engine;
pub mod envelope;
pub mod fixtures;
pub mod json;
pub mod objects;
pub mod review;

use serde_json::Value;

pub use engine::engine;
pub use envelope::wrap_request;
pub use fixtures::fixture;
pub use objects::{app_to, syncing, with};
pub use review::Review;

pub const PAYMENTS_DEV: review::User = review::User::PaymentsDev;
pub const CONTROLLER: review::User = review::User::Controller;

impl Review {
    pub fn delete(old: &Value) -> Self {
        Self::new("DELETE", None, Some(old))
    }
}
