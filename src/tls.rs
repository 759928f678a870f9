//! TLS: rustls server configuration from PEM files, and the development certificate for `--dev`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no PEM certificate found in {0}")]
    NoCertificate(String),
    #[error("cannot parse the private key in {path}: {message}")]
    Key { path: String, message: String },
    #[error("certificate and key do not make a usable TLS configuration: {0}")]
    Config(String),
    #[error("cannot generate a development certificate: {0}")]
    Generate(String),
}

/// A certificate chain and key in PEM, with the CA that signed it (for clients to trust).
#[derive(Debug, Clone)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build the server config, advertising HTTP/2 and HTTP/1.1 through ALPN.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: &str,
) -> Result<ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate(origin.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(origin.to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| TlsError::Key {
        path: origin.to_string(),
        message: error.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

pub fn load_server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    server_config(
        &cert_pem,
        &key_pem,
        &format!("{} / {}", cert.display(), key.display()),
    )
}

/// Reload the serving certificate when `cert` or `key` change; an unreadable or mismatched pair
/// keeps the certificate already in use.
pub fn watch_certificate(
    cert: PathBuf,
    key: PathBuf,
    config: axum_server::tls_rustls::RustlsConfig,
    metrics: Arc<crate::metrics::Metrics>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let mut dirs = vec![crate::reload::parent_dir(&cert)];
    let key_dir = crate::reload::parent_dir(&key);
    if !dirs.contains(&key_dir) {
        dirs.push(key_dir);
    }
    crate::reload::watch_dirs(&dirs, "TLS certificate", move || {
        match load_server_config(&cert, &key) {
            Ok(new_config) => {
                config.reload_from_config(Arc::new(new_config));
                metrics.record_tls_reload(true);
                tracing::info!(cert = %cert.display(), "reloaded the TLS certificate");
            }
            Err(error) => {
                metrics.record_tls_reload(false);
                tracing::error!(%error, "TLS certificate reload failed; keeping the current certificate");
            }
        }
    })
}

/// A throwaway CA and a serving certificate signed by it for `names` (DNS names or IPs).
pub fn generate(names: &[String], common_name: &str) -> Result<PemPair, TlsError> {
    generate_valid_for(names, common_name, 365)
}

/// Like `generate`, valid from yesterday (clock skew) for `days`.
pub fn generate_valid_for(
    names: &[String],
    common_name: &str,
    days: i64,
) -> Result<PemPair, TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let now = jiff::Timestamp::now();
    let date = |timestamp: jiff::Timestamp| {
        let d = jiff::tz::Offset::UTC.to_datetime(timestamp).date();
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let not_before = date(now - jiff::SignedDuration::from_hours(24));
    let not_after = date(now + jiff::SignedDuration::from_hours(24 * days.max(1)));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{common_name} CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;

    let mut leaf_params = CertificateParams::new(names.to_vec()).map_err(err)?;
    leaf_params.not_before = not_before;
    leaf_params.not_after = not_after;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca).map_err(err)?;
    Ok(PemPair {
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        ca_pem: ca.pem(),
    })
}

/// The `--dev` certificate: valid for localhost and the loopback addresses.
pub fn generate_dev() -> Result<PemPair, TlsError> {
    generate(
        &["localhost".into(), "127.0.0.1".into(), "::1".into()],
        "guardrails-dev",
    )
}

#[cfg(test)]
#[path = "unit_tests/tls_tests.rs"]
mod tests;
