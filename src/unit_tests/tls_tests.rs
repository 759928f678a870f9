//! Unit tests for `src/tls.rs` (kept apart so `src/` holds only shipped code).

use super::*;

#[test]
fn dev_certificate_builds_a_server_config() {
    let pair = generate_dev().unwrap();
    let config = server_config(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes(), "dev").unwrap();
    assert_eq!(config.alpn_protocols[0], b"h2");
    assert!(pair.ca_pem.contains("BEGIN CERTIFICATE"));
}

#[test]
fn garbage_is_a_clear_error() {
    let error = server_config(b"nope", b"nope", "x.pem").unwrap_err();
    assert!(matches!(error, TlsError::NoCertificate(_)), "{error}");
    let pair = generate_dev().unwrap();
    let error = server_config(pair.cert_pem.as_bytes(), b"nope", "k.pem").unwrap_err();
    assert!(matches!(error, TlsError::Key { .. }), "{error}");
}

#[test]
fn unreadable_files_name_the_path() {
    let error = load_server_config(
        Path::new("/nonexistent/c.pem"),
        Path::new("/nonexistent/k.pem"),
    )
    .unwrap_err();
    assert!(error.to_string().contains("/nonexistent/c.pem"), "{error}");
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let (one, other) = (generate_dev().unwrap(), generate_dev().unwrap());
    let error =
        server_config(one.cert_pem.as_bytes(), other.key_pem.as_bytes(), "pair").unwrap_err();
    assert!(matches!(error, TlsError::Config(_)), "{error}");
}

/// A self-signed certificate for localhost valid between two dates, and its key.
fn dated(from: (i32, u8, u8), until: (i32, u8, u8)) -> (String, String) {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn certificates_outside_their_validity_are_refused() {
    for (dates, words) in [
        (((2020, 1, 1), (2021, 1, 1)), "expired at 2021-01-01"),
        (
            ((2999, 1, 1), (3000, 1, 1)),
            "is not valid yet (from 2999-01-01",
        ),
    ] {
        let (cert, key) = dated(dates.0, dates.1);
        let error = server_config(cert.as_bytes(), key.as_bytes(), "c.pem").unwrap_err();
        assert!(matches!(error, TlsError::Validity { .. }), "{error}");
        assert!(error.to_string().contains(words), "{error}");
        // As a client CA bundle alone it is refused too; next to a valid CA it is skipped.
        let pair = generate_dev().unwrap();
        let alone = server_config_with_client_ca(
            pair.cert_pem.as_bytes(),
            pair.key_pem.as_bytes(),
            Some((cert.as_bytes(), "ca.pem")),
            "pair",
        );
        assert!(matches!(alone, Err(TlsError::ClientCa { .. })));
        let bundle = format!("{cert}{}", pair.ca_pem);
        assert!(
            server_config_with_client_ca(
                pair.cert_pem.as_bytes(),
                pair.key_pem.as_bytes(),
                Some((bundle.as_bytes(), "ca.pem")),
                "pair",
            )
            .is_ok()
        );
    }
}
