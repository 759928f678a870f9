//! Rotating the certificate files of a running server (as cert-manager or a Secret update does):
//! the next handshake sees the new certificate; a broken pair keeps the old one.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::engine;
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
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for cert in CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if &served_certificate(addr, cas).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the rotated certificate was never served");
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = state.metrics.encode().unwrap();
        if metrics.contains(r#"guardrails_tls_certificate_reloads_total{result="failure"}"#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failed reload was never recorded:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served_certificate(addr, &[&first, &second, &third]).await,
        leaf(&second)
    );
    handle.stop();
}
