//! API key verification: `rk_<prefix>_<secret>` looked up by its public prefix in the
//! directory, then the SHA-256 of the whole key compared in constant time with the stored
//! hash. Revoked or expired keys are refused.
//!
//! Keys are not cached: a lookup and one SHA-256 are cheap, and a revocation must take effect
//! at once.

use aws_lc_rs::digest::{digest, SHA256};
use residency_config::gateway::split_api_key;
use subtle::ConstantTimeEq;

use super::{AuthContext, AuthError};
use crate::directory::Directory;

/// How long, in seconds, a context made from an API key counts as valid; it bounds the
/// assertion minted from it, which is not reused anyway.
const CONTEXT_TTL_SECS: u64 = 60;

/// Verifies an API key against the directory.
///
/// # Errors
/// [`AuthError::InvalidApiKey`] for a malformed, unknown or wrong key,
/// [`AuthError::ApiKeyRevoked`] for a revoked or expired one.
pub fn verify(key: &str, directory: &Directory, now: u64) -> Result<AuthContext, AuthError> {
    let (prefix, _secret) = split_api_key(key).ok_or(AuthError::InvalidApiKey)?;
    let record = directory.api_key(prefix).ok_or(AuthError::InvalidApiKey)?;
    let hash = digest(&SHA256, key.as_bytes());
    if !bool::from(hash.as_ref().ct_eq(&record.hash)) {
        return Err(AuthError::InvalidApiKey);
    }
    if record.revoked || record.expires_at.is_some_and(|e| e <= now) {
        return Err(AuthError::ApiKeyRevoked);
    }
    Ok(AuthContext {
        tenant: record.tenant,
        subject: format!("apikey:{}", record.id),
        role: record.role.clone(),
        expires_at: now + CONTEXT_TTL_SECS,
    })
}

/// Lowercase hex SHA-256 of `key`, as stored in the directory.
#[must_use]
pub fn hash_hex(key: &str) -> String {
    hex::encode(digest(&SHA256, key.as_bytes()))
}
