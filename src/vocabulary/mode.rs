//! Enforcement modes: what a matching forbid does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Ordered from loosest to strictest, so `min` is "the looser of the two".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Allowed; recorded in the audit log and audit annotations only.
    Audit,
    /// Allowed, with a Kubernetes warning shown to the client.
    Warn,
    /// Denied.
    #[default]
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Audit => "audit",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }

    /// What actually happens when a policy in `self` mode matches under the global `mode`.
    pub fn effective(self, global: Mode) -> Mode {
        self.min(global)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "audit" => Ok(Mode::Audit),
            "warn" => Ok(Mode::Warn),
            "enforce" => Ok(Mode::Enforce),
            other => Err(format!(
                "unknown mode {other:?}: expected enforce, warn or audit"
            )),
        }
    }
}

#[cfg(test)]
#[path = "../unit_tests/mode_tests.rs"]
mod tests;
