//! API keys: `rk_<prefix>_<secret>` where the prefix (12 characters of `[a-z0-9]`) is public
//! and indexed, and the secret is 256 random bits in base64url. Only the lowercase hex
//! SHA-256 of the whole key is stored; the plaintext is shown once, at creation.

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A freshly generated key.
pub struct GeneratedKey {
    /// The full key, shown to the caller once.
    pub plaintext: String,
    /// The public prefix.
    pub prefix: String,
    /// Hex SHA-256 of `plaintext`.
    pub hash: String,
}

/// Hex SHA-256 of a key, as stored.
#[must_use]
pub fn hash(key: &str) -> String {
    hex::encode(digest(&SHA256, key.as_bytes()))
}

/// Generates a new key.
///
/// # Errors
/// When the system RNG fails.
pub fn generate() -> anyhow::Result<GeneratedKey> {
    generate_with("rk")
}

/// The kind tag of organization admin tokens: `rog_<prefix>_<secret>`.
pub const ORG_TOKEN_KIND: &str = "rog";

/// Splits an organization admin token into its public prefix and secret, or `None` when it
/// does not have the `rog_<prefix>_<secret>` shape.
#[must_use]
pub fn split_org_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(ORG_TOKEN_KIND)?.strip_prefix('_')?;
    let (prefix, secret) = rest.split_once('_')?;
    let prefix_ok = (8..=32).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (prefix_ok && !secret.is_empty()).then_some((prefix, secret))
}

/// Generates a new secret shaped `<kind>_<prefix>_<secret>` (API keys: `rk`, organization
/// admin tokens: [`ORG_TOKEN_KIND`]).
///
/// # Errors
/// When the system RNG fails.
pub fn generate_with(kind: &str) -> anyhow::Result<GeneratedKey> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let rng = SystemRandom::new();
    let mut raw = [0u8; 12 + 32];
    rng.fill(&mut raw)
        .map_err(|_| anyhow::anyhow!("system random generator failed"))?;
    // 252 = 7 * 36 keeps the modulo unbiased; rejected bytes are rare and redrawn.
    let mut prefix = String::with_capacity(12);
    let mut pool = raw[..12].to_vec();
    while prefix.len() < 12 {
        for b in &pool {
            if *b < 252 && prefix.len() < 12 {
                prefix.push(char::from(ALPHABET[usize::from(*b % 36)]));
            }
        }
        rng.fill(&mut pool)
            .map_err(|_| anyhow::anyhow!("system random generator failed"))?;
    }
    let secret = URL_SAFE_NO_PAD.encode(&raw[12..]);
    let plaintext = format!("{kind}_{prefix}_{secret}");
    Ok(GeneratedKey {
        hash: hash(&plaintext),
        plaintext,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_match_the_gateway_format() {
        let k = generate().unwrap();
        let (prefix, secret) = residency_core::split_api_key(&k.plaintext).unwrap();
        assert_eq!(prefix, k.prefix);
        assert!(secret.len() >= 32);
        assert_eq!(k.hash, hash(&k.plaintext));
        assert_eq!(k.hash.len(), 64);
        assert_ne!(generate().unwrap().plaintext, k.plaintext);
    }

    #[test]
    fn org_tokens_split_into_their_public_prefix() {
        let t = generate_with(ORG_TOKEN_KIND).unwrap();
        assert_eq!(split_org_token(&t.plaintext).unwrap().0, t.prefix);
        assert!(split_org_token(&generate().unwrap().plaintext).is_none());
        assert!(split_org_token("rog_short_x").is_none());
        assert!(split_org_token("rog_abcdefghijkl_").is_none());
    }
}
