//! API key verification: `rk_<prefix>_<secret>` looked up by its public prefix in the
//! directory, then the SHA-256 of the whole key compared in constant time with the stored
//! hash. Revoked or expired keys are refused.
//!
//! Verified keys are not cached here: the directory cache holds the key records (kept current
//! by `NOTIFY`), a probe and one SHA-256 are cheap, and a revocation must take effect at once.

use aws_lc_rs::digest::{digest, SHA256};
use residency_core::split_api_key;
use subtle::ConstantTimeEq;

use super::{AuthContext, AuthError, CredentialKind};
use crate::directory::{ApiKeyRecord, Directory, DirectoryError};

/// How long, in seconds, a context made from an API key counts as valid; it bounds the
/// assertion minted from it, which is not reused anyway.
const CONTEXT_TTL_SECS: u64 = 60;
/// The start of the subject of every request made with an API key: `apikey:<key id>`.
pub(crate) const SUBJECT_PREFIX: &str = "apikey:";

/// Verifies an API key against the directory. The outer error is the directory failing to
/// answer (503), the inner one a refused key (401).
///
/// # Errors
/// [`DirectoryError::DirectoryDown`] when the key is not cached and the directory is down.
/// Inner: [`AuthError::InvalidApiKey`] for a malformed, unknown or wrong key,
/// [`AuthError::ApiKeyRevoked`] for a revoked or expired one.
pub fn verify(
    key: &str,
    directory: &Directory,
    now: u64,
) -> Result<Result<AuthContext, AuthError>, DirectoryError> {
    let Some((prefix, _secret)) = split_api_key(key) else {
        return Ok(Err(AuthError::InvalidApiKey));
    };
    Ok(match directory.api_key(prefix)? {
        Some(record) => check(key, &record, now),
        None => Err(AuthError::InvalidApiKey),
    })
}

fn check(key: &str, record: &ApiKeyRecord, now: u64) -> Result<AuthContext, AuthError> {
    let hash = digest(&SHA256, key.as_bytes());
    if !bool::from(hash.as_ref().ct_eq(&record.hash)) {
        return Err(AuthError::InvalidApiKey);
    }
    if record.revoked || record.expires_at.is_some_and(|e| e <= now) {
        return Err(AuthError::ApiKeyRevoked);
    }
    Ok(AuthContext {
        kind: CredentialKind::ApiKey,
        tenant: record.tenant,
        subject: format!("{SUBJECT_PREFIX}{}", record.id),
        role: record.role.clone(),
        expires_at: now + CONTEXT_TTL_SECS,
    })
}

/// Lowercase hex SHA-256 of `key`, as stored in the directory.
#[must_use]
pub fn hash_hex(key: &str) -> String {
    hex::encode(digest(&SHA256, key.as_bytes()))
}
