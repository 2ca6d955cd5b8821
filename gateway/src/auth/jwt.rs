//! JWT verification against the configured issuers.
//!
//! Order of checks, each a refusal before any upstream is contacted: header parses (an unknown
//! `alg`, including `none`, does not), `kid` present, issuer known (chosen by an unverified peek
//! at `iss`, then verified for real), `alg` on the issuer's allow-list (asymmetric only, so
//! HS/RS confusion is impossible), key known for `kid` (one refetch after the cool-down) and of
//! the same family and `alg`, signature, then `exp` (required, numeric), `nbf`, `iss`, `aud`
//! with the issuer's leeway, then the tenant claim must be a UUID.
//!
//! Caching of verified tokens lives in [`super::cache`]; this module always does the full work
//! and returns the context with the key that verified it ([`Verified::signed`]), so the cache
//! can drop the token when that key leaves the key set.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use residency_config::gateway::{ClaimNames, IssuerConfig};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::cache::Verified;
use super::jwks::{Jwks, JwksError, Source};
use super::remote::Remote;
use super::{AuthContext, AuthError, CredentialKind};

/// The organization claims of a verified admin JWT ([`JwtVerifier::verify_org`]).
#[derive(Debug, Clone)]
pub(crate) struct OrgClaims {
    /// `org_id`.
    pub(crate) org: uuid::Uuid,
    /// `org_role`.
    pub(crate) role: residency_core::wire::admin::OrgRole,
    /// The subject.
    pub(crate) subject: String,
    /// The `email` claim, if the identity provider sends one.
    pub(crate) email: Option<String>,
}

/// The longest token accepted, in bytes.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// One configured issuer with its keys.
struct Issuer {
    name: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    refresh: Duration,
    jwks: Arc<Jwks>,
}

/// Verifies JWTs of every configured issuer.
pub(crate) struct JwtVerifier {
    issuers: Vec<Issuer>,
    claims: ClaimNames,
}

impl JwtVerifier {
    /// Loads every issuer's keys.
    ///
    /// # Errors
    /// [`JwksError`] when a key file cannot be loaded or an algorithm name is unknown.
    pub(crate) async fn load(
        configs: &[IssuerConfig],
        claims: ClaimNames,
    ) -> Result<Self, JwksError> {
        let mut issuers = Vec::with_capacity(configs.len());
        for cfg in configs {
            let ca_file = cfg.ca_file.as_deref();
            let source = match (&cfg.jwks_file, &cfg.jwks_url, cfg.discovery_url()) {
                (Some(path), _, _) => Source::File(path.clone()),
                (None, Some(url), _) => Source::Remote(Remote::jwks(url, ca_file)?),
                (None, None, Some(url)) => {
                    Source::Remote(Remote::discovery(&cfg.issuer, &url, ca_file)?)
                }
                (None, None, None) => return Err(JwksError::Fetch("no jwks source".to_owned())),
            };
            let jwks = Jwks::load(source, cfg.jwks_cooldown, cfg.jwks_timeout).await?;
            let algorithms = cfg
                .algorithms
                .iter()
                .map(|a| a.parse::<Algorithm>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JwksError::Parse(format!("algorithm: {e}")))?;
            issuers.push(Issuer {
                name: cfg.issuer.clone(),
                audience: cfg.audience.clone(),
                algorithms,
                leeway: cfg.leeway.as_secs(),
                refresh: cfg.jwks_refresh,
                jwks: Arc::new(jwks),
            });
        }
        Ok(Self { issuers, claims })
    }

    /// Starts the background refresh of every URL key set until `shutdown`.
    pub(crate) fn spawn_refresh(&self, shutdown: CancellationToken) {
        for issuer in &self.issuers {
            Arc::clone(&issuer.jwks).spawn_refresh(issuer.refresh, shutdown.clone());
        }
    }

    /// Verifies `token` fully: its context, bound to the key that verified its signature.
    ///
    /// # Errors
    /// The [`AuthError`] naming the first check that failed.
    pub(crate) async fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let (claims, key) = self.verified_claims(token).await?;
        Ok(Verified::signed(self.context(&claims)?, &key))
    }

    /// Verifies `token` (signature, issuer, audience, expiry) like [`Self::verify`] and
    /// returns an organization admin's identity from it: the `org_id` (a UUID) and
    /// `org_role` (`owner`, `admin` or `member`) claims and the subject. No tenant claim is
    /// needed or read: this is the admin API's credential, not a customer's.
    ///
    /// # Errors
    /// The [`AuthError`] naming the first check that failed; [`AuthError::InvalidClaims`]
    /// without a valid `org_id`, `org_role` or subject.
    pub(crate) async fn verify_org(&self, token: &str) -> Result<OrgClaims, AuthError> {
        let (claims, _) = self.verified_claims(token).await?;
        let org = claims
            .get("org_id")
            .and_then(Value::as_str)
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .ok_or(AuthError::InvalidClaims)?;
        let role = claims
            .get("org_role")
            .and_then(Value::as_str)
            .and_then(residency_core::wire::admin::OrgRole::parse)
            .ok_or(AuthError::InvalidClaims)?;
        let subject = claims
            .get(&self.claims.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or(AuthError::InvalidClaims)?;
        // An email, when the identity provider sends one: who the person is for an
        // organization ownership transfer (never used to find an organization).
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|e| (3..=320).contains(&e.len()) && e.contains('@'))
            .map(str::to_owned);
        Ok(OrgClaims {
            org,
            role,
            subject: subject.to_owned(),
            email,
        })
    }

    async fn verified_claims(
        &self,
        token: &str,
    ) -> Result<
        (
            Map<String, Value>,
            std::sync::Arc<crate::auth::jwks::JwkKey>,
        ),
        AuthError,
    > {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let kid = header.kid.as_deref().ok_or(AuthError::MissingKid)?;
        let issuer = self.issuer_of(token)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let key = match issuer.jwks.get(kid) {
            Some(k) => k,
            None => {
                issuer.jwks.refetch_for_unknown_kid().await;
                issuer.jwks.get(kid).ok_or(AuthError::UnknownKid)?
            }
        };
        if key.family != header.alg.family() || key.alg.is_some_and(|a| a != header.alg) {
            return Err(AuthError::KeyMismatch);
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&issuer.name]);
        validation.set_audience(&[&issuer.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = issuer.leeway;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::InvalidSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAlgorithm => AuthError::KeyMismatch,
                ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_)
                | ErrorKind::InvalidToken => AuthError::Malformed,
                _ => AuthError::InvalidClaims,
            })?;
        Ok((data.claims, key))
    }

    fn issuer_of(&self, token: &str) -> Result<&Issuer, AuthError> {
        #[derive(Deserialize)]
        struct Peek<'a> {
            #[serde(borrow)]
            iss: Option<Cow<'a, str>>,
        }
        // Unverified: used only to choose which issuer's keys and rules apply; the signature
        // and `iss` are then checked against that issuer.
        let payload = token.split('.').nth(1).ok_or(AuthError::Malformed)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::Malformed)?;
        let peek: Peek<'_> = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        let iss = peek.iss.ok_or(AuthError::InvalidClaims)?;
        self.issuers
            .iter()
            .find(|i| i.name == iss)
            .ok_or(AuthError::UnknownIssuer)
    }

    fn context(&self, claims: &Map<String, Value>) -> Result<AuthContext, AuthError> {
        let tenant = claims
            .get(&self.claims.tenant)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or(AuthError::BadTenantClaim)?;
        let subject = claims
            .get(&self.claims.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or(AuthError::InvalidClaims)?;
        let role = match claims.get(&self.claims.role) {
            None | Some(Value::Null) => "",
            Some(Value::String(r)) if r.len() <= 64 => r.as_str(),
            Some(_) => return Err(AuthError::InvalidClaims),
        };
        // `exp` was required and validated as a number by `decode`.
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(AuthError::InvalidClaims)?;
        Ok(AuthContext {
            kind: CredentialKind::Jwt,
            tenant,
            subject: subject.to_owned(),
            role: role.to_owned(),
            expires_at,
        })
    }
}
