//! Authentication phase: turns the request's credential into an [`AuthContext`] or an
//! [`AuthError`], before the directory or any upstream is consulted.
//!
//! Credentials: `Authorization: Bearer <JWT>` ([`jwt`], keys from [`jwks`], results cached by
//! [`cache`]), or an API key in `Authorization: ApiKey <key>` / `x-api-key` ([`api_key`]).
//! The tenant id comes only from the verified credential, never from a header, path, query or
//! body.
//!
//! This module does not decide where a request goes; the directory does.

pub mod api_key;
pub mod cache;
pub mod jwks;
pub mod jwt;
pub mod remote;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use residency_core::assertion::is_reserved_identity;
use residency_core::TenantId;

/// Which kind of credential established an [`AuthContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A bearer JWT from a configured issuer.
    Jwt,
    /// An API key from the directory.
    ApiKey,
}

impl CredentialKind {
    /// The kind as logs name it: `jwt` or `api_key`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
        }
    }
}

/// Who is calling, as established from a verified credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    /// The kind of credential that was verified.
    pub kind: CredentialKind,
    /// The tenant (customer).
    pub tenant: TenantId,
    /// The subject: the JWT's subject claim, or `apikey:<id>`.
    pub subject: String,
    /// The role claim, or the key's role; empty lets the region node use the member record.
    pub role: String,
    /// When the credential stops being valid, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl AuthContext {
    /// Whether an API key (not a JWT) established this context.
    #[must_use]
    pub(crate) fn is_api_key(&self) -> bool {
        self.kind == CredentialKind::ApiKey
    }

    /// Whether this context names an identity reserved for the platform itself: the system
    /// role or a `system:` subject (internal calls), from any credential; or, from a JWT, an
    /// `apikey:` subject (API keys' own identities, which a JWT must not impersonate).
    #[must_use]
    pub(crate) fn is_reserved(&self) -> bool {
        is_reserved_identity(&self.subject, &self.role)
            || (self.kind == CredentialKind::Jwt
                && self.subject.starts_with(api_key::SUBJECT_PREFIX))
    }
}

/// A credential as found on the request, not yet verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A bearer JWT.
    Bearer(&'a str),
    /// An API key.
    ApiKey(&'a str),
}

/// Why a credential was refused. Every variant maps to 401.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No credential on the request.
    #[error("missing credential")]
    Missing,
    /// The `Authorization` header is not `Bearer` or `ApiKey`, or not visible ASCII.
    #[error("unsupported authorization scheme")]
    Scheme,
    /// Not a compact JWS, or an algorithm this gateway does not know (including `none`).
    #[error("malformed token")]
    Malformed,
    /// The token header has no `kid`.
    #[error("token has no key id")]
    MissingKid,
    /// The `iss` claim names no configured issuer.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The token's `alg` is not on the issuer's allow-list.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The `kid` names no key of the issuer, even after a refetch.
    #[error("unknown key id")]
    UnknownKid,
    /// The key named by `kid` is for another algorithm family or `alg`.
    #[error("key does not match algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// Wrong `iss` or `aud`, or a required claim is missing or has the wrong type.
    #[error("invalid claims")]
    InvalidClaims,
    /// The tenant claim is missing or not a UUID.
    #[error("tenant claim missing or not a uuid")]
    BadTenantClaim,
    /// The API key is malformed, unknown, or its hash does not match.
    #[error("invalid api key")]
    InvalidApiKey,
    /// The API key was revoked or has expired.
    #[error("api key revoked or expired")]
    ApiKeyRevoked,
}

impl AuthError {
    /// A bounded label for `residency_gateway_auth_failures_total`.
    #[must_use]
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Scheme => "scheme",
            Self::Malformed => "malformed",
            Self::MissingKid => "missing_kid",
            Self::UnknownIssuer => "unknown_issuer",
            Self::AlgorithmNotAllowed => "alg_not_allowed",
            Self::UnknownKid => "unknown_kid",
            Self::KeyMismatch => "key_mismatch",
            Self::InvalidSignature => "invalid_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::InvalidClaims => "invalid_claims",
            Self::BadTenantClaim => "bad_tenant_claim",
            Self::InvalidApiKey => "invalid_api_key",
            Self::ApiKeyRevoked => "api_key_revoked",
        }
    }

    /// The explanation shown to the client: precise enough to fix a client, vague about keys.
    #[must_use]
    pub(crate) fn client_detail(&self) -> &'static str {
        match self {
            Self::Missing => "a bearer token or api key is required",
            Self::Scheme => "use 'Authorization: Bearer <token>' or 'Authorization: ApiKey <key>'",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::BadTenantClaim => "the token does not name a valid tenant",
            Self::InvalidApiKey | Self::ApiKeyRevoked => "the api key is not valid",
            _ => "the token could not be verified",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3: no error code when no credential came).
    #[must_use]
    pub(crate) fn www_authenticate(&self) -> HeaderValue {
        match self {
            Self::Missing | Self::Scheme => HeaderValue::from_static("Bearer realm=\"residency\""),
            _ => HeaderValue::from_static("Bearer realm=\"residency\", error=\"invalid_token\""),
        }
    }
}

/// Finds the credential: `Authorization` first, then `x-api-key`.
///
/// # Errors
/// [`AuthError::Missing`] when there is none, [`AuthError::Scheme`] for another scheme.
pub fn extract(headers: &HeaderMap) -> Result<Credential<'_>, AuthError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let text = value.to_str().map_err(|_| AuthError::Scheme)?;
        let (scheme, rest) = text.split_once(' ').ok_or(AuthError::Scheme)?;
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(AuthError::Scheme);
        }
        return if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Credential::Bearer(rest))
        } else if scheme.eq_ignore_ascii_case("apikey") {
            Ok(Credential::ApiKey(rest))
        } else {
            Err(AuthError::Scheme)
        };
    }
    if let Some(value) = headers.get("x-api-key") {
        let key = value.to_str().map_err(|_| AuthError::InvalidApiKey)?.trim();
        // A header of only white space holds no key (found by the `credentials` fuzz target).
        if key.is_empty() {
            return Err(AuthError::InvalidApiKey);
        }
        return Ok(Credential::ApiKey(key));
    }
    Err(AuthError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn an_api_key_header_of_white_space_is_no_key() {
        let mut m = HeaderMap::new();
        m.insert("x-api-key", HeaderValue::from_static("\t\t "));
        assert_eq!(extract(&m), Err(AuthError::InvalidApiKey));
        assert_eq!(
            extract(&h(&[("x-api-key", "")])),
            Err(AuthError::InvalidApiKey)
        );
    }

    fn ctx(kind: CredentialKind, subject: &str, role: &str) -> AuthContext {
        AuthContext {
            kind,
            tenant: "0190a5c4-0000-7000-8000-0000000000c1".parse().unwrap(),
            subject: subject.into(),
            role: role.into(),
            expires_at: 0,
        }
    }

    /// The reserved-identity check reads the credential kind: a JWT may not name an API key's
    /// identity, an API key's own `apikey:` subject is its identity; the system role and
    /// `system:` subjects are refused from either.
    #[test]
    fn reserved_identities_by_credential_kind() {
        use CredentialKind::{ApiKey, Jwt};
        assert!(ctx(Jwt, "apikey:k1", "developer").is_reserved());
        assert!(!ctx(ApiKey, "apikey:k1", "developer").is_reserved());
        for kind in [Jwt, ApiKey] {
            assert!(ctx(kind, "user-1", "system").is_reserved());
            assert!(ctx(kind, "system:cli", "admin").is_reserved());
            assert!(!ctx(kind, "user-1", "admin").is_reserved());
        }
        assert!(ctx(ApiKey, "apikey:k1", "").is_api_key());
        assert!(!ctx(Jwt, "apikey:k1", "").is_api_key());
    }

    #[test]
    fn extraction() {
        assert_eq!(
            extract(&h(&[("authorization", "Bearer a.b.c")])),
            Ok(Credential::Bearer("a.b.c"))
        );
        assert_eq!(
            extract(&h(&[("authorization", "bearer  a.b.c ")])),
            Ok(Credential::Bearer("a.b.c"))
        );
        assert_eq!(
            extract(&h(&[("authorization", "ApiKey rk_x")])),
            Ok(Credential::ApiKey("rk_x"))
        );
        assert_eq!(
            extract(&h(&[("x-api-key", "rk_y")])),
            Ok(Credential::ApiKey("rk_y"))
        );
        assert_eq!(extract(&h(&[])), Err(AuthError::Missing));
        assert_eq!(
            extract(&h(&[("authorization", "Basic dXNlcjpwYXNz")])),
            Err(AuthError::Scheme)
        );
        assert_eq!(
            extract(&h(&[("authorization", "Bearer ")])),
            Err(AuthError::Scheme)
        );
    }
}
