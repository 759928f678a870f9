//! Unit tests for `src/admission.rs` (kept apart so `src/` holds only shipped code).

use super::*;

const MINIMAL: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"x","namespace":"n","operation":"DELETE","userInfo":{"username":"a"},"object":null,"oldObject":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"}}}}"#;

#[test]
fn parses_a_delete_with_null_object() {
    let request = parse_review(MINIMAL.as_bytes()).unwrap();
    assert_eq!(request.uid, "u1");
    assert!(request.object.is_none());
    assert!(request.old_object.is_some());
    assert_eq!(request.types.api_version, "admission.k8s.io/v1");
}

#[test]
fn rejects_garbage_and_wrong_envelopes() {
    assert!(matches!(
        parse_review(b"not json"),
        Err(EnvelopeError::Malformed(_))
    ));
    assert!(matches!(
        parse_review(br#"{"apiVersion":"v1","kind":"Pod"}"#),
        Err(EnvelopeError::WrongKind(_))
    ));
    assert!(matches!(
        parse_review(br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview"}"#),
        Err(EnvelopeError::UnsupportedVersion(_))
    ));
    assert_eq!(
        parse_review(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).err(),
        Some(EnvelopeError::MissingRequest)
    );
    let no_uid = MINIMAL.replace(r#""uid":"u1""#, r#""uid":"""#);
    assert_eq!(
        parse_review(no_uid.as_bytes()).err(),
        Some(EnvelopeError::MissingUid)
    );
}

#[test]
fn a_body_that_is_not_utf8_is_refused_with_where() {
    let mut body = MINIMAL.as_bytes().to_vec();
    let at = MINIMAL.find("\"x\"").unwrap() + 1;
    body[at] = 0xff;
    assert_eq!(
        parse_review(&body).err(),
        Some(EnvelopeError::Malformed(format!(
            "the body is not UTF-8 (invalid byte at offset {at})"
        )))
    );
    // UTF-8 beyond ASCII in strings is fine.
    let accented = MINIMAL.replace(r#""username":"a""#, r#""username":"zoë""#);
    assert_eq!(
        parse_review(accented.as_bytes())
            .unwrap()
            .user_info
            .username
            .as_deref(),
        Some("zoë")
    );
}

#[test]
fn counts_skip_strings_and_escapes_and_bounds_do_not() {
    let body = br#"{"a":[1,2,{"b":"x,y{z}[\":"}],"c":{}}"#;
    // {a:[1,2,{b}]} c:{} -> containers 4, elements/members after the first: 3 commas.
    let exact = JsonCounts {
        values: 8,
        objects: 3,
        members: 3,
    };
    assert_eq!(count_json(body), exact);
    // The string holds one `,`, one `{`, one `[` and one `:`.
    assert_eq!(
        bound_json(body),
        JsonCounts {
            values: 11,
            objects: 4,
            members: 4
        }
    );
    // A string ending in an escaped quote, or a body cut inside a string or an escape.
    assert_eq!(count_json(br#"["\"",{}]"#).objects, 1);
    assert_eq!(count_json(br#"["{"#).objects, 0);
    assert_eq!(count_json(br#"["\"#).values, 2);
}

#[test]
fn small_bodies_are_bounded_and_large_ones_counted() {
    // Past 255 bytes, so the bound adds up more than one block.
    let small = format!(r#"{{"s":"{}","o":{{}}}}"#, "{,:".repeat(100));
    assert_eq!(
        count_for_limits(small.as_bytes()),
        bound_json(small.as_bytes())
    );
    assert_eq!(bound_json(small.as_bytes()).objects, 102);
    let large = format!(
        r#"{{"s":"{}","o":{{}}}}"#,
        "{,:".repeat(BOUNDED_BODY_BYTES / 3 + 1)
    );
    let exact = count_for_limits(large.as_bytes());
    assert_eq!(exact, count_json(large.as_bytes()));
    assert_eq!(
        exact,
        JsonCounts {
            values: 4,
            objects: 2,
            members: 2
        }
    );
    // The largest bounded body cannot exceed a limit, however its strings are filled.
    let full = format!(r#""{}""#, "{".repeat(BOUNDED_BODY_BYTES - 2));
    assert_eq!(check_counts(&count_for_limits(full.as_bytes())), Ok(()));
}

#[test]
fn too_many_values_or_objects_are_refused_before_parsing() {
    let values = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES));
    assert!(matches!(
        parse_review(values.as_bytes()),
        Err(EnvelopeError::TooComplex(message)) if message.contains("JSON values")
    ));
    let objects = format!("[{}{{}}]", "{},".repeat(MAX_JSON_OBJECTS));
    assert!(matches!(
        parse_review(objects.as_bytes()),
        Err(EnvelopeError::TooComplex(message)) if message.contains("JSON objects")
    ));
}

/// MINIMAL with `object` as its old object.
fn with_old_object(object: &serde_json::Value) -> String {
    MINIMAL.replace(
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"}}"#,
        &object.to_string(),
    )
}

#[test]
fn objects_are_built_as_kube_would_deserialise_them() {
    for object in [
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"replicas": 2}}),
        serde_json::json!({"metadata": {"name": "no-type"}, "data": {"k": "v"}}),
        serde_json::json!({"kind": "OnlyKind", "spec": {}}),
        serde_json::json!({"apiVersion": "v1", "kind": 5, "spec": {}}),
        serde_json::json!({"apiVersion": 5, "kind": "WrongType"}),
        serde_json::json!({}),
    ] {
        let request = parse_review(with_old_object(&object).as_bytes()).unwrap();
        let ours = request.old_object.unwrap();
        let kube: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&ours).unwrap(),
            serde_json::to_value(&kube).unwrap(),
            "{object}"
        );
        assert_eq!(ours.types, kube.types, "{object}");
        assert_eq!(ours.data, kube.data, "{object}");
    }
    let request = parse_review(with_old_object(&serde_json::Value::Null).as_bytes()).unwrap();
    assert_eq!(request.old_object, None);
    for not_an_object in [serde_json::json!(5), serde_json::json!(["a"])] {
        let Err(EnvelopeError::Malformed(message)) =
            parse_review(with_old_object(&not_an_object).as_bytes())
        else {
            panic!("{not_an_object} is not an object");
        };
        assert!(
            message.contains("expected a Kubernetes object"),
            "{message}"
        );
    }
}

#[test]
fn the_envelope_is_read_as_kube_reads_it() {
    let ours = parse_review(MINIMAL.as_bytes()).unwrap();
    let review: AdmissionReview<DynamicObject> = serde_json::from_str(MINIMAL).unwrap();
    let kube: Request = review.try_into().unwrap();
    assert_eq!(
        serde_json::to_value(&ours).unwrap(),
        serde_json::to_value(&kube).unwrap()
    );
    assert_eq!(ours.types, kube.types);
    // Every optional field, and a response (not read).
    let full = MINIMAL
        .replace(
            r#""name":"x","namespace":"n""#,
            r#""subResource":"scale","requestKind":{"group":"apps","version":"v1","kind":"Scale"},"requestResource":{"group":"apps","version":"v1","resource":"deployments"},"requestSubResource":"scale","name":"x","namespace":"n","dryRun":true,"options":{"kind":"DeleteOptions","apiVersion":"meta.k8s.io/v1"}"#,
        )
        .replace(
            r#""userInfo":{"username":"a"}"#,
            r#""userInfo":{"username":"a","uid":"1","groups":["g"],"extra":{"k":["v"]}}"#,
        );
    let ours = parse_review(full.as_bytes()).unwrap();
    let review: AdmissionReview<DynamicObject> = serde_json::from_str(&full).unwrap();
    let kube: Request = review.try_into().unwrap();
    assert_eq!(
        serde_json::to_value(&ours).unwrap(),
        serde_json::to_value(&kube).unwrap()
    );
    assert!(ours.dry_run);
    assert_eq!(ours.sub_resource.as_deref(), Some("scale"));
    // A field of the wrong type is refused, as kube refuses it.
    let wrong = MINIMAL.replace(r#""operation":"DELETE""#, r#""operation":5"#);
    assert!(serde_json::from_str::<AdmissionReview<DynamicObject>>(&wrong).is_err());
    assert!(matches!(
        parse_review(wrong.as_bytes()),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn long_rejected_values_are_quoted_short() {
    let body = MINIMAL.replace(
        r#""operation":"DELETE""#,
        &format!(r#""operation":"{}""#, "X".repeat(100_000)),
    );
    let Err(EnvelopeError::Malformed(message)) = parse_review(body.as_bytes()) else {
        panic!("expected a malformed review");
    };
    assert!(message.len() < 400, "{message}");
    assert!(
        message.contains("100004 bytes") || message.contains("bytes)"),
        "{message}"
    );
    assert_eq!(quote_limited("short", 10), "short");
    assert_eq!(quote_limited("ééééé", 2), "éé… (10 bytes)");
}

#[test]
fn v1beta1_is_accepted_and_other_versions_are_not() {
    let beta = MINIMAL.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
    assert_eq!(
        parse_review(beta.as_bytes()).unwrap().types.api_version,
        "admission.k8s.io/v1beta1"
    );
    let v2 = MINIMAL.replace("admission.k8s.io/v1", "admission.k8s.io/v2");
    assert!(matches!(
        parse_review(v2.as_bytes()),
        Err(EnvelopeError::UnsupportedVersion(_))
    ));
}

#[test]
fn managed_fields_are_left_out_and_the_rest_of_the_metadata_kept() {
    let body = MINIMAL.replace(
        r#""metadata":{"name":"x"}"#,
        r#""metadata":{"name":"x","labels":{"app":"web"},"managedFields":[{"manager":"kubectl","operation":"Apply","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{}}}}}]}"#,
    );
    let request = parse_review(body.as_bytes()).unwrap();
    let metadata = &request.old_object.unwrap().metadata;
    assert_eq!(metadata.managed_fields, None);
    assert_eq!(
        metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str),
        Some("web")
    );
    assert_eq!(metadata.name.as_deref(), Some("x"));
}

#[test]
fn an_answer_writes_what_kubes_review_writes() {
    let request = parse_review(MINIMAL.as_bytes()).unwrap();
    let beta = parse_review(
        MINIMAL
            .replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
            .as_bytes(),
    )
    .unwrap();
    // From a request (v1, v1beta1), and without one (a body that never parsed).
    for response in [
        AdmissionResponse::from(&*request),
        AdmissionResponse::from(&*beta).deny("no"),
        AdmissionResponse::invalid("not a review"),
    ] {
        assert_eq!(
            serde_json::to_string(&Answer::new(&response)).unwrap(),
            serde_json::to_string(&into_review(response.clone())).unwrap()
        );
    }
    assert_eq!(
        Answer::new(&AdmissionResponse::from(&*beta)).api_version,
        "admission.k8s.io/v1beta1"
    );
}
