//! `sha256:<hex>` fingerprints of exactly the bytes that were read: what `/readyz` and `check`
//! report, and what the reloaders compare with the disk.

/// `sha256:<hex>` over (name, contents) pairs in name order, so the same files hash the same
/// whether they come from a directory or the binary.
pub fn sources_hash<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = sources.into_iter().collect();
    sorted.sort_unstable();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for (name, text) in sorted {
        // Lengths keep ("ab", "c") and ("a", "bc") apart.
        context.update(&(name.len() as u64).to_le_bytes());
        context.update(name.as_bytes());
        context.update(&(text.len() as u64).to_le_bytes());
        context.update(text.as_bytes());
    }
    hex_digest(context.finish())
}

/// `sha256:<hex>` of byte strings in order, each length-prefixed (the certificate files).
pub fn parts_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part);
    }
    hex_digest(context.finish())
}

/// `sha256:<hex>` of one text (the config file).
pub fn text_hash(text: &str) -> String {
    hex_digest(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

fn hex_digest(digest: ring::digest::Digest) -> String {
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}
