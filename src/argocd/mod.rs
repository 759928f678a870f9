//! Argo CD's own RBAC, offline: which `p`/`g` policy lines allow a user (and their groups) an
//! Argo CD API request, decided as argocd-server v3.6.2 decides it. Pure: it takes text and
//! returns values; the CLI (`guardrails argocd`) reads the files.
//!
//! - `glob`, `regex`: the two match modes of `res`, `act` and `obj`.

pub mod glob;
pub mod regex;
