//! Guardrails reads an AdmissionReview straight into kube's typed request
//! (`src/admission/envelope.rs`) instead of going through kube's own deserialisation. Every review
//! in the fixtures (the fidelity corpus, the requests recorded from the real Argo CD, Argo
//! Rollouts and kube-apiserver, the Kubernetes and Kubewarden examples) must read the same both
//! ways, but for `managedFields`, which Guardrails skips unread. And every answer and audit record
//! Guardrails writes for them (with sonic-rs, `json::write_answer`) must be the bytes serde_json
//! would write.

mod common {
    pub mod engine;
}

use std::path::{Path, PathBuf};

use std::time::Duration;

use guardrails::admission::{Request, into_review, parse_review};
use guardrails::audit::AuditRecord;
use guardrails::json::write_answer;
use guardrails::respond::validate_review;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::Value;
use serde_json::value::RawValue;

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// Every AdmissionReview with a request in the fixtures, as bytes.
fn reviews() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    json_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
        &mut files,
    );
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let value: Value = serde_json::from_slice(&bytes).ok()?;
            (value["kind"] == "AdmissionReview" && value["request"].is_object())
                .then_some((path, bytes))
        })
        .collect()
}

/// What kube reads, without `managedFields`.
fn kube_reads(bytes: &[u8]) -> Request {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(bytes).unwrap();
    let mut request: Request = review.try_into().unwrap();
    for object in [&mut request.object, &mut request.old_object]
        .into_iter()
        .flatten()
    {
        object.metadata.managed_fields = None;
    }
    request
}

#[test]
fn every_review_in_the_fixtures_reads_as_kube_reads_it() {
    let reviews = reviews();
    // argo-writes, argo-recorded, rollouts-recorded, admission examples.
    assert!(reviews.len() > 300, "{} reviews found", reviews.len());
    let mut with_managed_fields = 0;
    for (path, bytes) in &reviews {
        let ours = parse_review(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let kube = kube_reads(bytes);
        assert_eq!(
            serde_json::to_value(&ours).unwrap(),
            serde_json::to_value(&kube).unwrap(),
            "{}",
            path.display()
        );
        assert_eq!(ours.types, kube.types, "{}", path.display());
        for (mine, theirs) in [
            (&ours.object, &kube.object),
            (&ours.old_object, &kube.old_object),
        ] {
            assert_eq!(
                mine.as_ref().map(|o| &o.types),
                theirs.as_ref().map(|o| &o.types),
                "{}",
                path.display()
            );
        }
        with_managed_fields +=
            usize::from(String::from_utf8_lossy(bytes).contains("managedFields"));
    }
    // The recorded requests carry what the API server sends, managedFields included.
    assert!(with_managed_fields > 100, "{with_managed_fields}");
}

/// `value` written by Guardrails' writer and by serde_json.
fn both_ways<T: serde::Serialize>(value: &T) -> (String, String) {
    let mut ours = Vec::new();
    write_answer(&mut ours, value).unwrap();
    (
        String::from_utf8(ours).unwrap(),
        serde_json::to_string(value).unwrap(),
    )
}

#[test]
fn every_answer_and_audit_record_is_written_as_serde_json_writes_it() {
    let engine = common::engine::engine();
    let mut denied = 0;
    for (path, bytes) in reviews() {
        let reviewed =
            validate_review(&engine, &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        denied += usize::from(!reviewed.response.allowed);
        let (ours, theirs) = both_ways(&reviewed.answer());
        assert_eq!(ours, theirs, "answer to {}", path.display());
        // The borrowed answer is what kube's own review of the response writes.
        let kubes = serde_json::to_string(&into_review(reviewed.response.clone())).unwrap();
        assert_eq!(theirs, kubes, "answer to {}", path.display());
        let mut record = AuditRecord::new(&reviewed, Duration::from_micros(1234));
        let same_as_derived = |record: &AuditRecord| {
            let mut line = Vec::new();
            record.write(&mut line).unwrap();
            let theirs = serde_json::to_string(record).unwrap();
            assert_eq!(
                String::from_utf8(line).unwrap(),
                theirs,
                "audit record of {}",
                path.display()
            );
        };
        same_as_derived(&record);
        // With the request quoted, or said to be left out.
        let quoted = RawValue::from_string(String::from_utf8(bytes.clone()).unwrap()).unwrap();
        record.request = Some(&quoted);
        same_as_derived(&record);
        record.request = None;
        record.request_omitted = Some("request of 9 bytes exceeds the 1 byte limit \"x\"".into());
        same_as_derived(&record);
    }
    // Denials carry the long texts: messages, reasons, annotations.
    assert!(denied > 50, "{denied} denials");
}

#[test]
fn every_character_is_escaped_as_serde_json_escapes_it() {
    let mut every: String = (0u32..0x80).filter_map(char::from_u32).collect();
    every.push_str("é€😀\u{2028}\u{2029}\u{feff}\u{7f}\\\"/");
    // Long enough for the writer's wide steps, with the odd bytes at every offset.
    let long: String = (0..40)
        .map(|i| format!("{}{every}", "x".repeat(i)))
        .collect();
    // Short strings (the writer copies a plain one of up to 64 bytes as it is), each odd
    // character alone, inside, and last of 64 and of 65 bytes.
    let short: Vec<String> = every
        .chars()
        .flat_map(|odd| {
            let fill = |bytes: usize| "x".repeat(bytes - odd.len_utf8());
            [
                odd.to_string(),
                format!("a{odd}b"),
                format!("{}{odd}", fill(64)),
                format!("{}{odd}", fill(65)),
            ]
        })
        .chain(["x".repeat(64), "x".repeat(65)])
        .collect();
    let texts = [every.as_str(), long.as_str(), "", "plain"]
        .into_iter()
        .chain(short.iter().map(String::as_str));
    for text in texts {
        let (ours, theirs) = both_ways(&text);
        assert_eq!(ours, theirs);
        let (ours, theirs) = both_ways(&std::collections::BTreeMap::from([(text, [text])]));
        assert_eq!(ours, theirs);
    }
}
