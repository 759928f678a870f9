//! A minimal OpenID Connect issuer on loopback, so that people reach argocd-server by their email
//! (as with SSO), which Argo CD puts in `/operation/initiatedBy/username`.
//!
//! Argo CD's local accounts cannot carry such names: they are declared as `accounts.<name>` keys of
//! argocd-cm, where a ConfigMap key allows no `@` and Argo CD splits the key on `.`. So the test
//! plays the identity provider: argocd-server fetches this issuer's discovery document and keys
//! (go-oidc) and verifies the ID tokens handed to the CLI's `--auth-token`, exactly as it does for
//! tokens from Dex, Okta or Google. Only discovery and keys are served: nobody logs in
//! interactively.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

/// The OAuth2 client id argocd-server is configured with; the CLI's one is the tokens' audience.
pub const CLIENT_ID: &str = "argo-cd";
pub const CLI_CLIENT_ID: &str = "argo-cd-cli";

pub struct Issuer {
    /// `http://127.0.0.1:<port>`, the `issuer` of the discovery document and of every token.
    pub url: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Issuer {
    /// Bind a loopback port (held from now on: no other process can take it) and serve discovery
    /// and keys from a thread for the rest of the test binary's life.
    pub fn start() -> Result<Issuer, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| e.to_string())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| e.to_string())?;
        // An uncompressed P-256 point: 0x04, x, y.
        let point = key.public_key().as_ref().to_vec();
        let keys = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "e2e",
            "x": b64url(&point[1..33]), "y": b64url(&point[33..65]),
        }]});
        let discovery = json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}/auth"),
            "token_endpoint": format!("{url}/token"),
            "jwks_uri": format!("{url}/keys"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid", "email", "groups"],
            "claims_supported": ["sub", "email", "groups"],
        });
        std::thread::Builder::new()
            .name("e2e-oidc".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = serve(stream, &discovery, &keys);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Issuer { url, key, rng })
    }

    /// A signed ID token for `email` (also its subject, which Argo CD's RBAC matches) in `groups`,
    /// valid for an hour.
    pub fn token(&self, email: &str, groups: &[&str]) -> String {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "e2e"});
        let claims = json!({
            "iss": self.url,
            "sub": email,
            "aud": CLI_CLIENT_ID,
            "email": email,
            "email_verified": true,
            "groups": groups,
            "iat": now,
            "nbf": now - 60,
            "exp": now + 3600,
            "jti": format!("e2e-{now}-{}", SERIAL.fetch_add(1, Ordering::Relaxed)),
        });
        let signed = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&self.rng, signed.as_bytes())
            .expect("ECDSA signing");
        format!("{signed}.{}", b64url(signature.as_ref()))
    }
}

/// Answer one HTTP/1.x request: the discovery document, the keys, or 404.
fn serve(mut stream: TcpStream, discovery: &Value, keys: &Value) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match path {
        "/.well-known/openid-configuration" => ("200 OK", discovery.to_string()),
        "/keys" => ("200 OK", keys.to_string()),
        _ => ("404 Not Found", "{}".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
