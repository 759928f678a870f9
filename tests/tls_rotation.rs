//! Rotating the certificate files of a running server (as cert-manager or a Secret update does):
//! the next handshake sees the new certificate; a broken pair keeps the old one.

mod common {
    pub mod engine;
    pub mod tls;
    pub mod wait;
}

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::engine::engine;
use common::tls::tls_client_config;
use common::wait::eventually;
use guardrails::audit::AuditLog;
use guardrails::reload::watch::WatchOptions;
use guardrails::server::limits::Limits;
use guardrails::server::tls::{self, PemPair};
use guardrails::server::{self, AppState, ServerHandle};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

fn write_pair(dir: &Path, pair: &PemPair) {
    // Write to temporary names and rename, as an atomic Secret update does.
    std::fs::write(dir.join("tls.crt.tmp"), &pair.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key.tmp"), &pair.key_pem).unwrap();
    std::fs::rename(dir.join("tls.key.tmp"), dir.join("tls.key")).unwrap();
    std::fs::rename(dir.join("tls.crt.tmp"), dir.join("tls.crt")).unwrap();
}

fn leaf(pair: &PemPair) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

/// Handshake with a client trusting every CA in `cas`, and return the server's leaf certificate.
async fn served_certificate(addr: SocketAddr, cas: &[&PemPair]) -> CertificateDer<'static> {
    let cas: String = cas.iter().map(|pair| pair.ca_pem.as_str()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client_config(&cas)));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), stream)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

async fn eventually_serves(addr: SocketAddr, cas: &[&PemPair], expected: &CertificateDer<'static>) {
    eventually("the rotated certificate to be served", async || {
        &served_certificate(addr, cas).await == expected
    })
    .await;
}

#[tokio::test]
async fn rotated_certificates_are_served_and_broken_ones_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let first = tls::generate_dev().unwrap();
    write_pair(dir.path(), &first);
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));

    let state = AppState::with_audit(engine(), AuditLog::disabled());
    let config = tls::ReloadableTls::new(tls::load_server_config(&cert, &key).unwrap());
    let _watcher = tls::watch_certificate(
        tls::ServingCertificate::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        None,
        config.clone(),
        state.metrics.clone(),
        WatchOptions::default(),
    )
    .unwrap();
    let handle = ServerHandle::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve_tls(
        listener,
        config,
        server::router(state.clone()),
        Limits::default(),
        state.metrics.clone(),
        handle.clone(),
    ));
    assert_eq!(served_certificate(addr, &[&first]).await, leaf(&first));

    let second = tls::generate_dev().unwrap();
    write_pair(dir.path(), &second);
    eventually_serves(addr, &[&first, &second], &leaf(&second)).await;

    // A broken pair: the key does not belong to the certificate.
    let third = tls::generate_dev().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &third.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    eventually("the failed reload to be recorded", async || {
        let metrics = state.metrics.encode().unwrap();
        metrics.contains(r#"guardrails_tls_certificate_reloads_total{result="failure"}"#)
    })
    .await;
    assert_eq!(
        served_certificate(addr, &[&first, &second, &third]).await,
        leaf(&second)
    );
    handle.stop();
}
