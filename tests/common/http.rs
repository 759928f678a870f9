//! HTTP clients for a server whose certificate a test made.

use std::time::Duration;

use super::tls::tls_client_config;

/// A client trusting the CAs in `ca_pem` that speaks HTTP/1.1 only, or offers HTTP/2 first (and
/// so speaks HTTP/2 with Guardrails), giving up on a request after `timeout`. Plain `http://`
/// URLs work too (the probe port).
pub fn client(ca_pem: &str, http1_only: bool, timeout: Duration) -> reqwest::Client {
    let mut config = tls_client_config(ca_pem);
    config.alpn_protocols = if http1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(timeout);
    if http1_only {
        builder.http1_only()
    } else {
        builder
    }
    .build()
    .unwrap()
}
