//! Unit tests for `src/policy_reports/` (kept apart so `src/` holds only shipped code): what a
//! decided request becomes, how results fold and merge within their bounds, the report object.

use super::*;
use crate::authoring::synth::Synthetic;
use crate::config::Config;
use crate::decide::Engine;
use crate::policy::PolicyStore;
use crate::vocabulary::Action;

/// The shipped policies, with `prod-gitops-drift` rolled out in audit mode (as a new policy would
/// be): another team's image change in prod then has an enforced match and an audited one.
fn engine() -> Engine {
    let sources: Vec<(&str, String)> = crate::policy::EMBEDDED_POLICIES
        .iter()
        .map(|&(name, text)| match name {
            "drift.cedar" => (name, format!("@enforcement(\"audit\")\n{text}")),
            _ => (name, text.to_string()),
        })
        .collect();
    Engine::new(
        PolicyStore::from_sources(
            sources.iter().map(|(name, text)| (*name, text.as_str())),
            "test",
        )
        .expect("the shipped policies, drift in audit mode"),
        Config::embedded().expect("embedded config"),
        None,
    )
}

/// A Deployment in `namespace`, tracked by Argo CD, with `image`.
fn deployment(namespace: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": namespace, "uid": "d0c5-1d",
            "annotations": {"argocd.argoproj.io/tracking-id": "web:apps/Deployment:payments-prod/web"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    })
}

/// `user` (in `groups`) changes the image of `web` in `namespace`.
fn set_image(namespace: &str, user: &str, groups: &[&str], dry_run: bool) -> Reviewed {
    let body = Synthetic {
        object: Some(deployment(namespace, "nginx:1.27")),
        old_object: Some(deployment(namespace, "nginx:1.26")),
        operation: "UPDATE".into(),
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        dry_run,
        uid: "req-1".into(),
        ..Synthetic::default()
    }
    .admission_review()
    .expect("a review");
    crate::respond::validate_review(&engine(), body.to_string().as_bytes()).expect("a review")
}

const DANA: (&str, &[&str]) = ("dana@example.com", &["storefront-devs"]);
const BOB: (&str, &[&str]) = ("bob@example.com", &["payments-devs"]);

fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// A result of `policy` for `action` on Deployment `name`, at `seconds`.
fn result(policy: &str, action: &str, name: &str, status: Status, seconds: i64) -> ReportResult {
    ReportResult {
        policy: policy.into(),
        rule: action.into(),
        result: status,
        message: format!("{policy} at {seconds}"),
        source: SOURCE.into(),
        timestamp: at(seconds),
        resources: vec![ObjectReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "payments-prod".into(),
            name: name.into(),
            uid: None,
        }],
        properties: BTreeMap::new(),
    }
}

/// `team-owns-namespace` denials of `scale` on Deployments `names`, at `seconds`.
fn denials(seconds: i64, names: &[&str]) -> Vec<ReportResult> {
    names
        .iter()
        .map(|name| result("team-owns-namespace", "scale", name, Status::Fail, seconds))
        .collect()
}

#[test]
fn a_denied_write_with_an_audit_match_becomes_a_fail_and_a_warn_result() {
    let (user, groups) = DANA;
    let reviewed = set_image("payments-prod", user, groups, false);
    assert!(!reviewed.response.allowed);
    let observation = observation(&reviewed, at(1_700_000_000)).expect("an observation");
    assert_eq!(observation.namespace, "payments-prod");
    assert_eq!(
        observation.resource,
        ObjectReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "payments-prod".into(),
            name: "web".into(),
            uid: Some("d0c5-1d".into()),
        }
    );
    assert_eq!(observation.principal, "dana@example.com");
    assert_eq!(observation.teams, ["storefront"]);

    let results = results(&observation);
    let by_policy: BTreeMap<&str, &ReportResult> =
        results.iter().map(|r| (r.policy.as_str(), r)).collect();
    let denied = by_policy["team-owns-namespace"];
    assert_eq!(denied.result, Status::Fail);
    assert_eq!(denied.rule, Action::ChangeImage.as_str());
    assert_eq!(denied.source, "guardrails");
    assert!(
        denied.message.contains("another team"),
        "{}",
        denied.message
    );
    assert_eq!(denied.timestamp, at(1_700_000_000));
    assert_eq!(denied.properties["mode"], "enforce");
    assert_eq!(denied.properties["principal"], "dana@example.com");
    assert_eq!(denied.properties["teams"], "storefront");
    assert_eq!(denied.properties["operation"], "UPDATE");
    assert_eq!(denied.properties["requestUid"], "req-1");
    assert!(!denied.properties.contains_key("user"), "user = principal");
    let audited = by_policy["prod-gitops-drift"];
    assert_eq!(audited.result, Status::Warn);
    assert_eq!(audited.properties["mode"], "audit");
    assert_eq!(audited.properties["declared"], "audit");
}

#[test]
fn only_namespaced_non_dry_run_requests_with_matches_are_observed() {
    let (user, groups) = BOB;
    // Bob owns payments-dev, and nothing there is prod: no match.
    assert!(observation(&set_image("payments-dev", user, groups, false), at(1)).is_none());
    // Bob's own prod Deployment still drifts from Git (audit): observed.
    let drift = observation(&set_image("payments-prod", user, groups, false), at(1)).unwrap();
    assert_eq!(
        results(&drift)
            .iter()
            .map(|r| (r.policy.as_str(), r.result))
            .collect::<Vec<_>>(),
        [("prod-gitops-drift", Status::Warn)]
    );
    // A dry run changes nothing.
    assert!(observation(&set_image("payments-prod", user, groups, true), at(1)).is_none());

    // A Namespace's own write (cluster-scoped) is not reported.
    let namespace = |labels: Value| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments-prod", "labels": labels}});
    let body = Synthetic {
        object: Some(namespace(json!({"guardrails.io/environment": "dev"}))),
        old_object: Some(namespace(json!({"guardrails.io/environment": "prod"}))),
        operation: "UPDATE".into(),
        user: "dana@example.com".into(),
        groups: vec!["storefront-devs".into()],
        uid: "ns-1".into(),
        ..Synthetic::default()
    }
    .admission_review()
    .expect("a review");
    let reviewed = crate::respond::validate_review(&engine(), body.to_string().as_bytes()).unwrap();
    assert!(
        !reviewed.outcome.as_ref().unwrap().matches.is_empty(),
        "the relabel matches a policy"
    );
    assert!(observation(&reviewed, at(1)).is_none());
}

#[test]
fn a_delegated_request_names_the_person_and_the_user_who_sent_it() {
    let mut observation =
        observation(&set_image("payments-prod", DANA.0, DANA.1, false), at(5)).unwrap();
    observation.user = "system:serviceaccount:argocd:argocd-server".into();
    observation.sub_resource = Some("scale".into());
    let result = &results(&observation)[0];
    assert_eq!(result.properties["principal"], "dana@example.com");
    assert_eq!(
        result.properties["user"],
        "system:serviceaccount:argocd:argocd-server"
    );
    assert_eq!(result.properties["subResource"], "scale");
}

#[test]
fn modes_map_to_results() {
    assert_eq!(Status::of(Mode::Enforce), Status::Fail);
    assert_eq!(Status::of(Mode::Warn), Status::Warn);
    assert_eq!(Status::of(Mode::Audit), Status::Warn);
}

#[test]
fn one_result_per_policy_action_and_object_the_newest_wins() {
    let mut pending = Pending::new(10, 100);
    let folded = pending.add(
        "payments-prod",
        vec![result("p", "scale", "web", Status::Warn, 10)],
    );
    assert_eq!(
        folded,
        Folded {
            kept: 1,
            evicted: 0,
            dropped: 0
        }
    );
    pending.add(
        "payments-prod",
        vec![result("p", "scale", "web", Status::Fail, 20)],
    );
    // An older result for the same key (an observation that came late) does not overwrite.
    pending.add(
        "payments-prod",
        vec![result("p", "scale", "web", Status::Warn, 15)],
    );
    let waiting = pending.get("payments-prod");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].result, Status::Fail);
    assert_eq!(waiting[0].timestamp, at(20));
    // Another action, policy or object is another result.
    pending.add(
        "payments-prod",
        vec![
            result("p", "restart", "web", Status::Warn, 21),
            result("q", "scale", "web", Status::Warn, 21),
            result("p", "scale", "api", Status::Warn, 21),
        ],
    );
    assert_eq!(pending.get("payments-prod").len(), 4);
    assert_eq!(pending.len(), 4);
    assert_eq!(pending.namespaces(), 1);
}

#[test]
fn a_namespace_keeps_its_newest_results_and_counts_the_evicted() {
    let mut pending = Pending::new(3, 100);
    let names = ["a", "b", "c", "d", "e"];
    let mut evicted = 0;
    for (i, name) in names.iter().enumerate() {
        evicted += pending
            .add("payments-prod", denials(i as i64, &[name]))
            .evicted;
    }
    assert_eq!(evicted, 2);
    let kept: Vec<&str> = pending
        .get("payments-prod")
        .iter()
        .map(|r| r.resources[0].name.as_str())
        .collect();
    assert_eq!(kept, ["c", "d", "e"]);
    assert_eq!(pending.len(), 3);
}

#[test]
fn beyond_the_total_bound_new_results_are_dropped_but_updates_still_land() {
    let mut pending = Pending::new(10, 4);
    pending.add("a", denials(1, &["1", "2", "3"]));
    let folded = pending.add("b", denials(2, &["1", "2", "3"]));
    assert_eq!(
        folded,
        Folded {
            kept: 1,
            evicted: 0,
            dropped: 2
        }
    );
    assert_eq!(pending.len(), 4);
    // Updating a waiting result takes no room.
    let folded = pending.add("a", denials(3, &["1"]));
    assert_eq!(
        folded,
        Folded {
            kept: 1,
            evicted: 0,
            dropped: 0
        }
    );
    assert_eq!(pending.get("a").len(), 3);
    // A namespace whose every result was dropped is not left waiting, empty.
    assert_eq!(pending.add("c", denials(4, &["1"])).dropped, 1);
    assert_eq!(pending.namespaces(), 2);
}

#[test]
fn the_longest_waiting_namespaces_are_written_first_a_bounded_number_at_a_time() {
    let mut pending = Pending::new(10, 100);
    for namespace in ["c", "a", "b"] {
        pending.add(namespace, denials(1, &["x"]));
    }
    // A later change to `c` does not move it back in the line.
    pending.add("c", denials(2, &["y"]));
    let taken = pending.take(2);
    let names: Vec<&str> = taken.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["c", "a"]);
    assert_eq!(taken[0].1.len(), 2);
    assert_eq!(pending.namespaces(), 1);
    assert_eq!(pending.len(), 1);
    // What could not be written goes back, behind the others.
    let (namespace, results) = taken.into_iter().next().unwrap();
    pending.add(&namespace, results);
    let names: Vec<String> = pending.take(10).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["b", "c"]);
    assert!(pending.is_empty());
}

#[test]
fn merging_keeps_one_result_per_key_the_newest_and_at_most_max_results() {
    let existing = vec![
        result("p", "scale", "web", Status::Warn, 10),
        result("p", "scale", "old", Status::Warn, 1),
        result("q", "scale", "web", Status::Fail, 30),
        result("p", "scale", "tie", Status::Warn, 7),
    ];
    let pending = vec![
        result("p", "scale", "web", Status::Fail, 20),
        // Older than what another replica already wrote: the report's one stays.
        result("q", "scale", "web", Status::Warn, 25),
        // Same time: the waiting one wins.
        result("p", "scale", "tie", Status::Fail, 7),
        result("r", "sync", "web", Status::Warn, 40),
    ];
    let merged = merge(existing.clone(), pending.clone(), 10);
    let view: Vec<(&str, &str, Status, i64)> = merged
        .iter()
        .map(|r| {
            (
                r.policy.as_str(),
                r.resources[0].name.as_str(),
                r.result,
                r.timestamp.seconds,
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("p", "old", Status::Warn, 1),
            ("p", "tie", Status::Fail, 7),
            ("p", "web", Status::Fail, 20),
            ("q", "web", Status::Fail, 30),
            ("r", "web", Status::Warn, 40),
        ]
    );
    // Bounded: the oldest go.
    let bounded = merge(existing, pending, 3);
    let times: Vec<i64> = bounded.iter().map(|r| r.timestamp.seconds).collect();
    assert_eq!(times, [20, 30, 40]);
}

#[test]
fn the_report_has_the_crd_fields_a_summary_and_reads_back() {
    let results = vec![
        result("p", "scale", "web", Status::Fail, 1),
        result("q", "scale", "web", Status::Warn, 2),
        result("r", "scale", "web", Status::Warn, 3),
    ];
    let object = report("payments-prod", &results, Some("42"));
    assert_eq!(object["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(object["kind"], "PolicyReport");
    assert_eq!(object["metadata"]["name"], "guardrails");
    assert_eq!(object["metadata"]["namespace"], "payments-prod");
    assert_eq!(object["metadata"]["resourceVersion"], "42");
    assert_eq!(
        object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "guardrails"
    );
    assert_eq!(
        object["summary"],
        json!({"pass": 0, "fail": 1, "warn": 2, "error": 0, "skip": 0})
    );
    let first = &object["results"][0];
    assert_eq!(first["result"], "fail");
    assert_eq!(first["timestamp"], json!({"seconds": 1, "nanos": 0}));
    assert_eq!(
        first["resources"][0],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "payments-prod", "name": "web"})
    );
    assert!(report("ns", &[], None)["metadata"]["resourceVersion"].is_null());

    // What Guardrails wrote reads back; entries in a shape it does not know are left out.
    let mut read = object.clone();
    read["results"]
        .as_array_mut()
        .unwrap()
        .push(json!({"policy": "from-elsewhere", "result": "maybe"}));
    assert_eq!(existing_results(&read), results);
    assert!(existing_results(&json!({})).is_empty());
}

#[test]
fn echoed_names_are_cut() {
    assert_eq!(cut("abcdef", 3), "abc");
    assert_eq!(cut("äöü", 2), "äö");
    assert_eq!(cut("ab", 3), "ab");
}

#[test]
fn a_timestamp_keeps_seconds_and_nanos() {
    let at: Timestamp = jiff::Timestamp::new(1_700_000_000, 123_456_789)
        .unwrap()
        .into();
    assert_eq!(
        at,
        Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789
        }
    );
}

#[test]
fn serve_takes_the_policy_report_flags_within_their_bounds() {
    use clap::Parser;
    let serve = |extra: &[&str]| {
        let mut args = vec!["guardrails", "serve", "--dev"];
        args.extend(extra);
        crate::cli::Cli::try_parse_from(args).map(|cli| match cli.command {
            crate::cli::Command::Serve(serve) => serve,
            _ => unreachable!("serve"),
        })
    };
    let defaults = serve(&[]).expect("defaults");
    assert!(!defaults.policy_reports);
    assert_eq!(
        defaults.policy_reports_interval,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(defaults.policy_reports_max_results, DEFAULT_MAX_RESULTS);
    let set = serve(&[
        "--policy-reports",
        "--policy-reports-interval=500ms",
        "--policy-reports-max-results=500",
    ])
    .expect("in bounds");
    assert!(set.policy_reports);
    assert_eq!(
        set.policy_reports_interval,
        std::time::Duration::from_millis(500)
    );
    assert_eq!(set.policy_reports_max_results, MAX_RESULTS_LIMIT);
    for refused in [
        "--policy-reports-interval=0",
        "--policy-reports-interval=0s",
        "--policy-reports-max-results=0",
        "--policy-reports-max-results=501",
        "--policy-reports-max-results=many",
    ] {
        assert!(serve(&[refused]).is_err(), "{refused}");
    }
}

#[test]
fn a_deleted_namespace_is_told_from_a_missing_crd_or_rbac() {
    use super::writer::Failure;
    let status = |code: u16, reason: &str, details: Value| -> kube::Error {
        kube::Error::Api(Box::new(
            serde_json::from_value(json!({
                "status": "Failure", "code": code, "reason": reason,
                "message": "m", "details": details,
            }))
            .expect("a Status"),
        ))
    };
    // NamespaceLifecycle: create in a namespace that does not exist, or is being deleted.
    assert_eq!(
        Failure::from(status(
            404,
            "NotFound",
            json!({"name": "gone", "kind": "namespaces"})
        )),
        Failure::NamespaceGone
    );
    assert_eq!(
        Failure::from(status(
            403,
            "Forbidden",
            json!({"name": "guardrails", "group": "wgpolicyk8s.io", "kind": "policyreports",
                   "causes": [{"reason": "NamespaceTerminating", "message": "namespace gone is being terminated", "field": "metadata.namespace"}]})
        )),
        Failure::NamespaceGone
    );
    // Another replica first.
    assert_eq!(
        Failure::from(status(409, "Conflict", json!({"name": "guardrails"}))),
        Failure::Conflict
    );
    assert_eq!(
        Failure::from(status(409, "AlreadyExists", json!({"name": "guardrails"}))),
        Failure::Conflict
    );
    // No CRD, no RBAC: errors, retried.
    for error in [
        status(404, "NotFound", json!({})),
        status(
            403,
            "Forbidden",
            json!({"name": "guardrails", "group": "wgpolicyk8s.io", "kind": "policyreports"}),
        ),
    ] {
        assert!(matches!(Failure::from(error), Failure::Error(_)));
    }
}
