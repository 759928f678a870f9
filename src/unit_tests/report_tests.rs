use super::*;

fn line(
    uid: &str,
    principal: &str,
    teams: &[&str],
    env: &str,
    allowed: bool,
    matches: &str,
) -> String {
    let teams: Vec<String> = teams.iter().map(|t| format!("{t:?}")).collect();
    format!(
        r#"{{"time":"2026-12-0{uid}T10:00:00Z","uid":"{uid}","user":"system:serviceaccount:argocd:argocd-server","principal":"{principal}","teams":[{}],"kind":"Application","namespace":"argocd","name":"app-{uid}","allowed":{allowed},"matches":[{matches}],"placement":{{"namespaces":["payments-{env}"],"teams":["payments"],"environments":["{env}"]}}}}"#,
        teams.join(",")
    )
}

const SYNC_AUDIT: &str = r#"{"policy":"prod-sync-platform-only","action":"sync","reason":"r","declared":"enforce","effective":"audit"}"#;
const DRIFT: &str = r#"{"policy":"prod-gitops-drift","action":"scale","reason":"r","declared":"audit","effective":"audit"}"#;
const SYNC_DENIED: &str = r#"{"policy":"prod-sync-platform-only","action":"sync","reason":"r","declared":"enforce","effective":"enforce"}"#;

fn log() -> String {
    [
        line(
            "1",
            "bob@example.com",
            &["payments"],
            "prod",
            true,
            SYNC_AUDIT,
        ),
        line(
            "2",
            "bob@example.com",
            &["payments"],
            "prod",
            false,
            SYNC_DENIED,
        ),
        line(
            "3",
            "dana@example.com",
            &["storefront"],
            "prod",
            true,
            DRIFT,
        ),
        line("4", "dana@example.com", &["storefront"], "dev", true, ""),
        "guardrails: development certificate for localhost (a banner, not a record)".into(),
        "{not json".into(),
    ]
    .join("\n")
}

#[test]
fn declared_enforce_matches_are_would_be_denials_grouped_by_person() {
    let reading = read_audit_log(log().as_bytes(), &ReportOptions::default());
    assert_eq!(reading.records, 4);
    assert_eq!(
        reading.would_deny, 2,
        "the audit-declared drift match does not count"
    );
    assert_eq!(reading.denied, 1);
    assert_eq!(reading.invalid.len(), 1, "{:?}", reading.invalid);
    let rows = group(
        &reading.facts,
        &[GroupBy::Policy, GroupBy::Person, GroupBy::Environment],
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].key["person"], "bob@example.com",
        "the delegated person, not argocd-server"
    );
    assert_eq!(rows[0].key["environment"], "prod");
    assert_eq!(
        (rows[0].requests, rows[0].denied, rows[0].objects),
        (2, 1, 2)
    );
}

#[test]
fn as_enforced_counts_every_match_and_the_range_selects_records() {
    let options = ReportOptions {
        as_enforced: true,
        ..ReportOptions::default()
    };
    let reading = read_audit_log(log().as_bytes(), &options);
    assert_eq!(reading.would_deny, 3);
    let rows = group(&reading.facts, &[GroupBy::Team]);
    let teams: Vec<(&str, usize)> = rows
        .iter()
        .map(|r| (r.key["team"].as_str(), r.requests))
        .collect();
    assert_eq!(teams, [("payments", 2), ("storefront", 1)]);

    let now: jiff::Timestamp = "2026-12-04T00:00:00Z".parse().unwrap_or_default();
    let options = ReportOptions {
        since: parse_time("2026-12-02T00:00:00Z", now).ok(),
        until: parse_time("1d", now).ok(),
        as_enforced: true,
    };
    let reading = read_audit_log(log().as_bytes(), &options);
    assert_eq!(reading.records, 1, "only record 2 is in [Dec 2, Dec 3)");
    assert!(parse_time("soon", now).is_err());
}

#[test]
fn tables_align_and_markdown_escapes_pipes() {
    let facts = vec![Fact {
        uid: "u".into(),
        object: "o".into(),
        person: "a|b".into(),
        team: "t".into(),
        namespace: "n".into(),
        environment: "e".into(),
        policy: "p".into(),
        action: "sync".into(),
        denied: false,
    }];
    let rows = group(&facts, &[GroupBy::Person]);
    assert_eq!(
        render_text(&rows, &[GroupBy::Person]),
        "PERSON  REQUESTS  DENIED  OBJECTS\na|b     1         0       1\n"
    );
    assert_eq!(
        render_markdown(&rows, &[GroupBy::Person]),
        "| PERSON | REQUESTS | DENIED | OBJECTS |\n|---|---|---|---|\n| a\\|b | 1 | 0 | 1 |\n"
    );
}
