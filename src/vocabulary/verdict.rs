//! What Guardrails answered a request with, as one value: the response, the audit log and the
//! metrics all take it as this type, and its wire name is written in one place.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Allowed, no policy matched.
    Allow,
    /// Allowed with a Kubernetes warning (a policy in warn mode matched).
    AllowWarn,
    /// Allowed, a match recorded only (a policy in audit mode matched).
    AllowAudit,
    /// Denied by an enforced policy (or Cedar's default deny).
    Deny,
    /// A resource Guardrails does not decide: allowed, and said so.
    Unsupported,
    /// Guardrails could not decide (an internal error, or the audit log refusing changes).
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 6] = [
        Verdict::Allow,
        Verdict::AllowWarn,
        Verdict::AllowAudit,
        Verdict::Deny,
        Verdict::Unsupported,
        Verdict::Error,
    ];

    /// The name in the `decision` audit annotation, the audit log and the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::AllowWarn => "allow-warn",
            Verdict::AllowAudit => "allow-audit",
            Verdict::Deny => "deny",
            Verdict::Unsupported => "unsupported",
            Verdict::Error => "error",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[path = "../unit_tests/verdict_tests.rs"]
mod tests;
