//! TLS: rustls server configuration from PEM files, and the development certificate for `--dev`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: String,
        // Not a `source`: the message already says it (no repeat under `{:#}`).
        cause: std::io::Error,
    },
    #[error("no PEM certificate found in {0}")]
    NoCertificate(String),
    #[error("cannot parse the private key in {path}: {message}")]
    Key { path: String, message: String },
    #[error("certificate and key do not make a usable TLS configuration: {0}")]
    Config(String),
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    #[error("cannot use the client CA in {path}: {message}")]
    ClientCa { path: String, message: String },
    #[error("the certificate in {origin} {message}")]
    Validity { origin: String, message: String },
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
    server_config_with_client_ca(cert_pem, key_pem, None, origin)
}

/// Like `server_config`; with `client_ca` = (PEM, origin), every client must present a
/// certificate signed by one of those CAs (mutual TLS), checked by webpki.
pub fn server_config_with_client_ca(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca: Option<(&[u8], &str)>,
    origin: &str,
) -> Result<ServerConfig, TlsError> {
    checked_server_config(cert_pem, key_pem, client_ca, origin).map(|(config, _)| config)
}

/// `server_config_with_client_ca`, with when the certificate expires (Unix seconds).
fn checked_server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca: Option<(&[u8], &str)>,
    origin: &str,
) -> Result<(ServerConfig, i64), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate(origin.to_string()))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::NoCertificate(origin.to_string()));
    };
    let (_, not_after) = validity(leaf, origin)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| TlsError::Key {
        path: origin.to_string(),
        message: error.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((ca_pem, ca_origin)) => {
            builder.with_client_cert_verifier(client_verifier(ca_pem, ca_origin)?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, not_after))
}

/// When a certificate is valid (Unix seconds), refusing one that is not valid now: a server
/// that starts with it, or switches to it, fails every handshake.
pub fn validity(cert: &CertificateDer<'_>, origin: &str) -> Result<(i64, i64), TlsError> {
    let invalid = |message: String| TlsError::Validity {
        origin: origin.to_string(),
        message,
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|error| invalid(format!("cannot be parsed: {error}")))?;
    let not_before = parsed.validity().not_before.timestamp();
    let not_after = parsed.validity().not_after.timestamp();
    let now = jiff::Timestamp::now().as_second();
    let at =
        |t: i64| jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |t| t.to_string());
    if now < not_before {
        return Err(invalid(format!(
            "is not valid yet (from {})",
            at(not_before)
        )));
    }
    if now > not_after {
        return Err(invalid(format!("expired at {}", at(not_after))));
    }
    Ok((not_before, not_after))
}

/// A verifier that requires a client certificate chaining to a CA in `ca_pem`.
fn client_verifier(
    ca_pem: &[u8],
    origin: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let error = |message: String| TlsError::ClientCa {
        path: origin.to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let mut outdated = Vec::new();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| error(e.to_string()))?;
        // A bundle often keeps the old CA next to the new one during a rotation.
        match validity(&cert, origin) {
            Ok(_) => roots.add(cert).map_err(|e| error(e.to_string()))?,
            Err(why) => outdated.push(why.to_string()),
        }
    }
    if roots.is_empty() {
        return Err(error(if outdated.is_empty() {
            "no PEM certificate found".into()
        } else {
            format!("no CA certificate is valid now: {}", outdated.join("; "))
        }));
    }
    for why in outdated {
        tracing::warn!(%why, "a client CA certificate is not used");
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| error(e.to_string()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        path: path.display().to_string(),
        cause,
    })
}

pub fn load_server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    ServingCertificate::Files {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    }
    .load(None)
}

/// Where the serving certificate comes from: files (reloaded when they change) or memory
/// (`--dev`).
#[derive(Debug, Clone)]
pub enum ServingCertificate {
    Files { cert: PathBuf, key: PathBuf },
    Memory(PemPair),
}

/// The bytes one load reads, read once, so what is fingerprinted is what is parsed.
struct CertificateInputs {
    cert: Result<Vec<u8>, TlsError>,
    key: Result<Vec<u8>, TlsError>,
    client_ca: Option<(PathBuf, Result<Vec<u8>, TlsError>)>,
}

impl CertificateInputs {
    fn fingerprint(&self) -> String {
        let part = |bytes: &Result<Vec<u8>, TlsError>| match bytes {
            Ok(bytes) => bytes.clone(),
            Err(error) => format!("unreadable: {error}").into_bytes(),
        };
        let mut parts = vec![part(&self.cert), part(&self.key)];
        if let Some((_, ca)) = &self.client_ca {
            parts.push(part(ca));
        }
        crate::fingerprint::parts_hash(parts.iter().map(Vec::as_slice))
    }
}

/// A server configuration and when its certificate stops being valid (Unix seconds).
pub struct LoadedCertificate {
    pub config: ServerConfig,
    pub not_after: i64,
    /// Of the bytes it was built from: the watcher's first check compares with this, so a change
    /// between start-up and the watch is not missed.
    fingerprint: String,
}

impl ServingCertificate {
    /// Build the server config, requiring client certificates from `client_ca` if given.
    pub fn load(&self, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
        self.load_with_expiry(client_ca).map(|loaded| loaded.config)
    }

    /// Like `load`, with when the certificate expires.
    pub fn load_with_expiry(
        &self,
        client_ca: Option<&Path>,
    ) -> Result<LoadedCertificate, TlsError> {
        self.build(self.read(client_ca))
    }

    fn read(&self, client_ca: Option<&Path>) -> CertificateInputs {
        let (cert, key) = match self {
            Self::Files { cert, key } => (read(cert), read(key)),
            Self::Memory(pair) => (
                Ok(pair.cert_pem.clone().into_bytes()),
                Ok(pair.key_pem.clone().into_bytes()),
            ),
        };
        CertificateInputs {
            cert,
            key,
            client_ca: client_ca.map(|path| (path.to_path_buf(), read(path))),
        }
    }

    fn build(&self, inputs: CertificateInputs) -> Result<LoadedCertificate, TlsError> {
        let origin = match self {
            Self::Files { cert, key } => format!("{} / {}", cert.display(), key.display()),
            Self::Memory(_) => "dev".to_string(),
        };
        let fingerprint = inputs.fingerprint();
        let (cert, key) = (inputs.cert?, inputs.key?);
        let client_ca = match inputs.client_ca {
            Some((path, pem)) => Some((path.display().to_string(), pem?)),
            None => None,
        };
        let (config, not_after) = checked_server_config(
            &cert,
            &key,
            client_ca
                .as_ref()
                .map(|(origin, pem)| (pem.as_slice(), origin.as_str())),
            &origin,
        )?;
        Ok(LoadedCertificate {
            config,
            not_after,
            fingerprint,
        })
    }

    fn files(&self) -> Vec<&Path> {
        match self {
            Self::Files { cert, key } => vec![cert, key],
            Self::Memory(_) => Vec::new(),
        }
    }
}

/// What `/readyz` says about the serving certificate.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// When the certificate in use expires.
    pub not_after: Option<String>,
    #[serde(skip)]
    pub not_after_unix: Option<i64>,
    /// Of the files the certificate in use was built from.
    #[serde(skip)]
    fingerprint: Option<String>,
    pub reloads_succeeded: u64,
    pub reloads_failed: u64,
    /// The error of the latest reload if it failed (cleared by the next success).
    pub last_error: Option<String>,
}

/// The server configuration in use; a reload swaps it, and the next handshake uses the new one.
#[derive(Clone)]
pub struct ReloadableTls {
    config: Arc<ArcSwap<ServerConfig>>,
    status: Arc<std::sync::Mutex<CertificateStatus>>,
}

impl ReloadableTls {
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config: Arc::new(ArcSwap::from_pointee(config)),
            status: Arc::default(),
        }
    }

    /// With the expiry known, for `/readyz` and the metric.
    pub fn loaded(loaded: LoadedCertificate, metrics: &crate::metrics::Metrics) -> Self {
        let tls = Self::new(loaded.config);
        tls.set_expiry(loaded.not_after, metrics);
        tls.update_status(|status| status.fingerprint = Some(loaded.fingerprint));
        tls
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    pub fn replace(&self, config: ServerConfig) {
        self.config.store(Arc::new(config));
    }

    pub fn status(&self) -> Arc<std::sync::Mutex<CertificateStatus>> {
        self.status.clone()
    }

    fn set_expiry(&self, not_after: i64, metrics: &crate::metrics::Metrics) {
        metrics.tls_certificate_expiry.set(not_after);
        self.update_status(|status| {
            status.not_after_unix = Some(not_after);
            status.not_after = jiff::Timestamp::from_second(not_after)
                .ok()
                .map(|t| t.to_string());
        });
    }

    fn update_status(&self, change: impl FnOnce(&mut CertificateStatus)) {
        let mut status = crate::sync::lock(&self.status);
        change(&mut status);
    }
}

/// Keeps the serving certificate (and client CA) in step with their files.
struct CertificateFollower {
    certificate: ServingCertificate,
    client_ca: Option<PathBuf>,
    tls: ReloadableTls,
    metrics: Arc<crate::metrics::Metrics>,
    /// The fingerprint of what was last loaded or tried: the same bytes are not tried again.
    last: String,
}

impl crate::reload::watch::Follow for CertificateFollower {
    fn targets(&self) -> Vec<crate::reload::watch::Target> {
        self.certificate
            .files()
            .into_iter()
            .chain(self.client_ca.as_deref())
            .map(|file| crate::reload::watch::Target::File(file.to_path_buf()))
            .collect()
    }

    fn check(&mut self) -> Option<std::time::Duration> {
        let inputs = self.certificate.read(self.client_ca.as_deref());
        let fingerprint = inputs.fingerprint();
        if fingerprint == self.last {
            return None;
        }
        self.last = fingerprint;
        match self.certificate.build(inputs) {
            Ok(loaded) => {
                self.tls.replace(loaded.config);
                self.tls.set_expiry(loaded.not_after, &self.metrics);
                self.tls
                    .update_status(|status| status.fingerprint = Some(loaded.fingerprint));
                self.tls.update_status(|status| {
                    status.reloads_succeeded += 1;
                    status.last_error = None;
                });
                self.metrics.record_tls_reload(true);
                tracing::info!(not_after = loaded.not_after, "reloaded the TLS certificate");
            }
            Err(error) => {
                self.metrics.record_tls_reload(false);
                self.tls.update_status(|status| {
                    status.reloads_failed += 1;
                    status.last_error = Some(error.to_string());
                });
                tracing::error!(%error, "TLS certificate reload failed; keeping the current certificate");
            }
        }
        None
    }
}

/// Reload the serving certificate (and client CA) however their files change, and every
/// `options.interval`; an unreadable, mismatched, expired or not yet valid set keeps the
/// configuration in use. `None` when nothing comes from a file.
pub fn watch_certificate(
    certificate: ServingCertificate,
    client_ca: Option<PathBuf>,
    tls: ReloadableTls,
    metrics: Arc<crate::metrics::Metrics>,
    options: crate::reload::watch::WatchOptions,
) -> notify::Result<Option<crate::reload::watch::Following>> {
    if certificate.files().is_empty() && client_ca.is_none() {
        return Ok(None);
    }
    // What is in use; unknown (a config built elsewhere) means the first check loads the files.
    let last = {
        let status = tls.status();
        let status = crate::sync::lock(&status);
        status.fingerprint.clone().unwrap_or_default()
    };
    let follower = CertificateFollower {
        certificate,
        client_ca,
        tls,
        metrics,
        last,
    };
    crate::reload::watch::follow(follower, "TLS certificate", options).map(Some)
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
    let ca = generate_ca(&format!("{common_name} CA"), days)?;
    issue(names, common_name, days, &ca)
}

/// A certificate authority in PEM: its certificate and its private key.
#[derive(Debug, Clone)]
pub struct CaPem {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Valid from yesterday (clock skew) for `days`, to the day; returns the end.
fn set_validity(params: &mut CertificateParams, days: i64) -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    let day = |timestamp: jiff::Timestamp| jiff::tz::Offset::UTC.to_datetime(timestamp).date();
    let date = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let first = day(now - jiff::SignedDuration::from_hours(24));
    let last = day(now + jiff::SignedDuration::from_hours(24 * days.max(1)));
    params.not_before = date(first);
    params.not_after = date(last);
    jiff::tz::Offset::UTC
        .to_timestamp(last.at(0, 0, 0, 0))
        .unwrap_or(now)
}

/// A new self-signed CA, valid from yesterday for `days`.
pub fn generate_ca(common_name: &str, days: i64) -> Result<CaPem, TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    set_validity(&mut params, days);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().map_err(err)?;
    let ca = rcgen::CertifiedIssuer::self_signed(params, key).map_err(err)?;
    Ok(CaPem {
        cert_pem: ca.pem(),
        key_pem: ca.key().serialize_pem(),
    })
}

/// A serving certificate for `names` (DNS names or IPs), valid from yesterday for `days`, signed by
/// `ca`. Refused when `ca` is not a CA, expires before the new certificate, or has a key that does
/// not match (the new certificate must verify under it).
pub fn issue(
    names: &[String],
    common_name: &str,
    days: i64,
    ca: &CaPem,
) -> Result<PemPair, TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_expiry = check_ca(&ca.cert_pem)?;
    let ca_key = KeyPair::from_pem(&ca.key_pem)
        .map_err(|e| TlsError::Generate(format!("the CA key: {e}")))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| TlsError::Generate(format!("the CA certificate: {e}")))?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
    let not_after = set_validity(&mut params, days);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    if ca_expiry < not_after.as_second() {
        return Err(TlsError::Generate(format!(
            "the CA expires ({}) before the new certificate would ({not_after}): use a smaller \
             --days, or a new CA",
            jiff::Timestamp::from_second(ca_expiry).unwrap_or_default()
        )));
    }
    if let Some(name) = names.first() {
        verify_server_cert(
            cert.der(),
            &ca.cert_pem,
            name,
            rustls::pki_types::UnixTime::now(),
        )
        .map_err(|message| {
            TlsError::Generate(format!(
                "the new certificate for {name} does not verify under the CA: {message}"
            ))
        })?;
    }
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: ca.cert_pem.clone(),
    })
}

/// Refuse a certificate that is not a CA (no basic constraints with `CA:TRUE`): TLS clients take
/// a trust anchor as given, so a serving certificate would sign (and verify) without complaint.
/// Returns when it expires (Unix seconds).
fn check_ca(cert_pem: &str) -> Result<i64, TlsError> {
    let not_a_ca = |why: String| TlsError::Generate(format!("the CA certificate: {why}"));
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| not_a_ca(format!("no PEM certificate ({e})")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| not_a_ca(format!("cannot parse it: {e}")))?;
    match cert.basic_constraints() {
        Ok(Some(constraints)) if constraints.value.ca => Ok(cert.validity().not_after.timestamp()),
        _ => Err(not_a_ca(format!(
            "{} is not a CA (no basic constraints CA:TRUE)",
            cert.subject()
        ))),
    }
}

/// Check `leaf` for `name` against the CA certificates in `ca_pem`, as a TLS client would at `at`.
pub fn verify_server_cert(
    leaf: &CertificateDer<'_>,
    ca_pem: &str,
    name: &str,
    at: rustls::pki_types::UnixTime,
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| e.to_string())?;
    let server_name =
        rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(leaf, &[], &server_name, &[], at)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The `--dev` certificate: valid for localhost and the loopback addresses.
pub fn generate_dev() -> Result<PemPair, TlsError> {
    generate(
        &["localhost".into(), "127.0.0.1".into(), "::1".into()],
        "guardrails-dev",
    )
}

#[cfg(test)]
#[path = "../unit_tests/tls_tests.rs"]
mod tests;
