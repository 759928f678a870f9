//! `guardrails certs`: a CA and serving certificate for the webhook Service.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::server::tls;

/// Write a serving certificate for the webhook Service signed by a new CA (or, with --ca-cert
/// and --ca-key, by an existing one), and print the base64 CA bundle for the webhook
/// configurations' `caBundle`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// The webhook's Service name.
    #[arg(long)]
    service: String,
    /// The Service's namespace.
    #[arg(long)]
    namespace: String,
    /// Directory to write ca.crt, ca.key (a new CA only), tls.crt and tls.key into (created if
    /// missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Validity of the serving certificate in days.
    #[arg(long, default_value_t = 365)]
    days: i64,
    /// Sign with this CA certificate (PEM) instead of a new CA, so the CA bundle stays the same.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The private key (PEM) of --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// Validity of a new CA in days.
    #[arg(long, default_value_t = 3650, conflicts_with = "ca_cert")]
    ca_days: i64,
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    let ca = match (args.ca_cert, args.ca_key) {
        (Some(cert), Some(key)) => CaSource::Existing { cert, key },
        _ => CaSource::New { days: args.ca_days },
    };
    write_certs(&args.service, &args.namespace, &args.out, args.days, &ca)
}

/// Where `guardrails certs` gets its CA.
pub enum CaSource {
    New { days: i64 },
    Existing { cert: PathBuf, key: PathBuf },
}

pub fn write_certs(
    service: &str,
    namespace: &str,
    out: &Path,
    days: i64,
    ca_source: &CaSource,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    let names = service_names(service, namespace);
    let common_name = format!("{service}.{namespace}.svc");
    let (ca, ca_origin) = load_ca(ca_source, &common_name)?;
    let pair = tls::issue(&names, &common_name, days, &ca)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    if ca_origin.is_none() {
        write_file(out, "ca.key", &ca.key_pem, true)?;
    }
    write_file(out, "ca.crt", &ca.cert_pem, false)?;
    write_file(out, "tls.crt", &pair.cert_pem, false)?;
    write_file(out, "tls.key", &pair.key_pem, true)?;
    eprintln!(
        "wrote {0}/tls.crt, {0}/tls.key for {1} (valid {days} days) signed by {2}; caBundle:",
        out.display(),
        names.join(", "),
        match ca_origin {
            None => format!(
                "a new CA ({0}/ca.crt, key {0}/ca.key: keep it to sign the next pair with --ca-cert/--ca-key)",
                out.display()
            ),
            Some(cert) => format!("the CA of {}", cert.display()),
        }
    );
    outln!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(&ca.cert_pem)
    );
    Ok(())
}

/// The DNS names the serving certificate is valid for: every way in-cluster clients name the
/// Service.
fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A new CA, or the existing one read from its files (with the certificate's path, for the
/// summary).
fn load_ca<'a>(
    ca_source: &'a CaSource,
    common_name: &str,
) -> anyhow::Result<(tls::CaPem, Option<&'a PathBuf>)> {
    Ok(match ca_source {
        CaSource::New { days: ca_days } => (
            tls::generate_ca(&format!("{common_name} CA"), *ca_days)?,
            None,
        ),
        CaSource::Existing { cert, key } => {
            let read = |path: &Path| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            (
                tls::CaPem {
                    cert_pem: read(cert)?,
                    key_pem: read(key)?,
                },
                Some(cert),
            )
        }
    })
}

/// Write `contents` to `out/name`, replacing the file; a private one is readable by its owner
/// only.
fn write_file(out: &Path, name: &str, contents: &str, private: bool) -> anyhow::Result<()> {
    let path = out.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        // Created unreadable by others; an existing file is narrowed below.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
