//! Unit tests for `src/reload.rs`: which changes are held back until they are stable.

use super::*;
use crate::config::Config;
use crate::policy::PolicyStore;

fn engine(policies: &[(&str, &str)], config: &str) -> Engine {
    let mut sources: Vec<(&str, &str)> = EMBEDDED_POLICIES.to_vec();
    sources.retain(|(name, _)| !policies.iter().any(|(n, _)| n == name));
    sources.extend(
        policies
            .iter()
            .copied()
            .filter(|(_, text)| !text.is_empty()),
    );
    let store = PolicyStore::from_sources(sources, "test").unwrap();
    Engine::new(store, Config::from_yaml(config, "test").unwrap(), None)
}

const TEAMS: &str = "teams:\n  platform:\n    groups: [platform]\n  payments:\n    groups: [payments]\nnamespaces:\n  payments-prod: {team: payments, environment: prod}\n";

#[test]
fn nothing_taken_away_is_not_held() {
    let old = engine(&[], TEAMS);
    assert_eq!(takes_away(&old, &engine(&[], TEAMS)), None);
    // More is never held.
    let more = format!("{TEAMS}  payments-dev: {{team: payments, environment: dev}}\n");
    assert_eq!(takes_away(&old, &engine(&[], &more)), None);
}

#[test]
fn a_config_that_lost_teams_or_namespaces_is_held() {
    let old = engine(&[], TEAMS);
    let no_namespaces = TEAMS.split("namespaces:").next().unwrap();
    let (label, reason) = takes_away(&old, &engine(&[], no_namespaces)).unwrap();
    assert_eq!(label, "fewer-namespaces");
    assert!(reason.contains("1 before, 0 now"), "{reason}");
    let (label, _) = takes_away(&old, &engine(&[], "{}")).unwrap();
    assert_eq!(label, "fewer-teams");
    let looser = format!("mode: audit\n{TEAMS}");
    let (label, _) = takes_away(&old, &engine(&[], &looser)).unwrap();
    assert_eq!(label, "looser-mode");
}

#[test]
fn a_policy_file_gone_or_cut_short_is_held() {
    let old = engine(&[], TEAMS);
    // Removing drift.cedar: its policies come from nowhere now.
    let (label, reason) = takes_away(&old, &engine(&[("drift.cedar", "")], TEAMS)).unwrap();
    assert_eq!(label, "policy-file-removed");
    assert!(reason.contains("drift.cedar"), "{reason}");
    // Cut short: the first policy of argocd.cedar only.
    let argocd = EMBEDDED_POLICIES
        .iter()
        .find(|(name, _)| *name == "argocd.cedar")
        .unwrap()
        .1;
    let first = &argocd[..argocd.find(";\n").unwrap() + 2];
    let (label, _) = takes_away(&old, &engine(&[("argocd.cedar", first)], TEAMS)).unwrap();
    assert_eq!(label, "fewer-policies");
}

#[test]
fn empty_files_are_errors_not_empty_sets() {
    let mut sources: Vec<(&str, &str)> = EMBEDDED_POLICIES.to_vec();
    sources.push(("extra.cedar", " \n"));
    let error = PolicyStore::from_sources(sources, "dir").unwrap_err();
    assert!(error.to_string().contains("extra.cedar"), "{error}");
    let mut sources: Vec<(&str, &str)> = EMBEDDED_POLICIES.to_vec();
    sources.push(("extra.cedar", "// nothing here yet\n"));
    assert!(PolicyStore::from_sources(sources, "dir").is_ok());
    assert!(Config::from_yaml("\n", "c.yaml").is_err());
    assert!(Config::from_yaml("{}", "c.yaml").is_ok());
}
