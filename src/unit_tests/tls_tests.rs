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
