//! The policy author's tools, above the request path and never on it: reviews synthesised from
//! manifests (`synth`, for `eval -f` and test files), policy test files (`test_files`, for
//! `guardrails test`), re-deciding an audit log (`replay`) and a decision explained in text
//! (`explain`, for `eval`).

pub mod argocd_writes;
pub mod explain;
pub mod replay;
pub mod report;
pub mod synth;
pub mod test_files;
