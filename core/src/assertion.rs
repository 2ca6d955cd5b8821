//! The internal assertion: a short-lived compact JWS that the gateway mints after it has
//! authenticated a request, and that a region node verifies before serving it.
//!
//! Claims: `iss` = [`ISSUER`], `aud` = region id, `tid` (tenant), `sub`, `role`, `scp`
//! ([`Scope`]), `iat`, `exp` with `exp - iat` at most [`MAX_TTL_SECS`]. There is deliberately no per-request claim, so the
//! gateway can cache one assertion per verified credential and re-mint about once a minute; the
//! request id travels in `x-request-id` instead.
//!
//! Keys are per region and named by `kid`. Internal assertions use HMAC (`HS256`/`HS384`/
//! `HS512`) with a secret of at least 32 bytes: the gateway and the region share the secret and
//! nothing else can mint. The algorithm is pinned by the key, never taken from the token.
//!
//! Customer and system assertions are told apart by their `scp` claim, not by a role name:
//! [`Signer::mint`] only ever writes `scp = "customer"` and refuses the reserved identities
//! (role [`SYSTEM_ROLE`], subjects starting with [`SYSTEM_SUBJECT_PREFIX`]), while
//! [`Signer::mint_system`], called only by the gateway's admin provisioner, writes
//! `scp = "system"`. Whatever a customer's credential claims, the request path can therefore
//! never produce an assertion that a node's `/internal` endpoints accept.
//!
//! Which keys a process holds is configuration: `residency_config::assertion` reads
//! `[[assertion.keys]]` and loads each into an [`AssertionKey`].

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{RegionId, TenantId};

/// The `iss` of every internal assertion.
pub const ISSUER: &str = "residency-gateway";
/// The longest lifetime an assertion may have, in seconds.
pub const MAX_TTL_SECS: u64 = 60;
/// Clock skew tolerated between gateway and node, in seconds.
pub(crate) const LEEWAY_SECS: u64 = 5;
/// The smallest accepted HMAC secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The role name of internal system calls; reserved, never a customer role.
pub const SYSTEM_ROLE: &str = "system";
/// The subject prefix of internal system calls (`system:<actor>`); reserved.
pub const SYSTEM_SUBJECT_PREFIX: &str = "system:";

/// Whether `role`/`subject` is an identity reserved for internal system calls.
#[must_use]
pub fn is_reserved_identity(subject: &str, role: &str) -> bool {
    role == SYSTEM_ROLE || subject.starts_with(SYSTEM_SUBJECT_PREFIX)
}

/// What an assertion may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// A customer request forwarded by the gateway: only the customer API (`/v1`).
    Customer,
    /// An internal call of the gateway's admin API (provisioning): only `/internal`.
    System,
}

/// The claims of an internal assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// The region the request is meant for.
    pub aud: String,
    /// The tenant, taken by the gateway from the verified credential only.
    pub tid: Uuid,
    /// The authenticated subject (user id, API key id, or `system:*` for internal calls).
    pub sub: String,
    /// The role from the credential, or empty to let the node use the member record.
    #[serde(default)]
    pub role: String,
    /// What the assertion may be used for. Required: an assertion without it is malformed.
    pub scp: Scope,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

impl AssertionClaims {
    /// The tenant as a typed id.
    #[must_use]
    pub fn tenant(&self) -> TenantId {
        TenantId::from_uuid(self.tid)
    }
}

/// Why an assertion was refused or a key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssertionError {
    /// No assertion header on the request.
    #[error("missing assertion")]
    Missing,
    /// Not a compact JWS, or no `kid`, or undecodable claims.
    #[error("malformed assertion")]
    Malformed,
    /// The `kid` names no key this node holds.
    #[error("unknown assertion key")]
    UnknownKey,
    /// The token's `alg` differs from the key's algorithm.
    #[error("assertion algorithm does not match its key")]
    AlgorithmMismatch,
    /// Bad signature, wrong issuer, or a lifetime over [`MAX_TTL_SECS`].
    #[error("invalid assertion")]
    Invalid,
    /// The assertion has expired.
    #[error("expired assertion")]
    Expired,
    /// The assertion is addressed to another region.
    #[error("assertion is for region {audience}")]
    Misdirected {
        /// The region the assertion names.
        audience: String,
    },
    /// A customer assertion was asked for a reserved identity (role `system` or a
    /// `system:` subject).
    #[error("reserved identity in a customer assertion")]
    Reserved,
    /// A key could not be loaded.
    #[error("{0}")]
    Key(String),
}

impl AssertionError {
    /// A bounded label for metrics.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_kid",
            Self::AlgorithmMismatch => "alg_mismatch",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Misdirected { .. } => "misdirected",
            Self::Reserved => "reserved",
            Self::Key(_) => "key",
        }
    }
}

/// Whether `alg` is an algorithm internal assertions use: `HS256`, `HS384` or `HS512`.
#[must_use]
pub fn is_supported_algorithm(alg: &str) -> bool {
    parse_alg(alg).is_some()
}

fn parse_alg(alg: &str) -> Option<Algorithm> {
    match alg {
        "HS256" => Some(Algorithm::HS256),
        "HS384" => Some(Algorithm::HS384),
        "HS512" => Some(Algorithm::HS512),
        _ => None,
    }
}

/// A loaded assertion key: `kid`, algorithm and secret.
#[derive(Clone)]
pub struct AssertionKey {
    kid: String,
    alg: Algorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("AssertionKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl AssertionKey {
    /// Builds a key from a secret.
    ///
    /// # Errors
    /// [`AssertionError::Key`] for an unsupported algorithm or a short secret.
    pub fn new(kid: &str, alg: &str, secret: Vec<u8>) -> Result<Self, AssertionError> {
        let alg = parse_alg(alg)
            .ok_or_else(|| AssertionError::Key(format!("unsupported algorithm {alg:?}")))?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AssertionError::Key(format!(
                "assertion secret for kid {kid:?} is shorter than {MIN_SECRET_BYTES} bytes"
            )));
        }
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            secret,
        })
    }

    /// The key id.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints assertions for one region with one key.
pub struct Signer {
    region: RegionId,
    header: Header,
    key: EncodingKey,
    ttl_secs: u64,
}

impl Signer {
    /// A signer for `region`; `ttl_secs` is clamped to [`MAX_TTL_SECS`].
    #[must_use]
    pub fn new(region: RegionId, key: &AssertionKey, ttl_secs: u64) -> Self {
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        Self {
            region,
            header,
            key: EncodingKey::from_secret(&key.secret),
            ttl_secs: ttl_secs.clamp(1, MAX_TTL_SECS),
        }
    }

    /// The region this signer mints for.
    #[must_use]
    pub fn region(&self) -> &RegionId {
        &self.region
    }

    /// Mints a customer assertion issued at `now` (seconds since the epoch). Returns the token
    /// and its expiry, so callers can cache it until shortly before then.
    ///
    /// # Errors
    /// [`AssertionError::Reserved`] for a reserved identity ([`is_reserved_identity`]): a
    /// customer assertion can never carry one. [`AssertionError::Key`] if signing fails (it does
    /// not with a valid HMAC key).
    pub fn mint(
        &self,
        tenant: TenantId,
        subject: &str,
        role: &str,
        now: u64,
    ) -> Result<(String, u64), AssertionError> {
        if is_reserved_identity(subject, role) {
            return Err(AssertionError::Reserved);
        }
        self.sign(tenant, subject, role, Scope::Customer, now)
    }

    /// Mints a system assertion for the internal endpoints of this region's nodes, acting for
    /// `actor` (subject `system:<actor>`, role [`SYSTEM_ROLE`], scope [`Scope::System`]). Only
    /// the gateway's admin provisioner calls this.
    ///
    /// # Errors
    /// [`AssertionError::Key`] if signing fails.
    pub fn mint_system(
        &self,
        tenant: TenantId,
        actor: &str,
        now: u64,
    ) -> Result<(String, u64), AssertionError> {
        let subject = format!("{SYSTEM_SUBJECT_PREFIX}{actor}");
        self.sign(tenant, &subject, SYSTEM_ROLE, Scope::System, now)
    }

    fn sign(
        &self,
        tenant: TenantId,
        subject: &str,
        role: &str,
        scp: Scope,
        now: u64,
    ) -> Result<(String, u64), AssertionError> {
        let exp = now + self.ttl_secs;
        let claims = AssertionClaims {
            iss: ISSUER.to_owned(),
            aud: self.region.as_str().to_owned(),
            tid: tenant.as_uuid(),
            sub: subject.to_owned(),
            role: role.to_owned(),
            scp,
            iat: now,
            exp,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map(|t| (t, exp))
            .map_err(|e| AssertionError::Key(e.to_string()))
    }
}

/// Verifies assertions addressed to one region.
pub struct Verifier {
    region: RegionId,
    /// The other regions of the deployment: only an assertion addressed to one of them is
    /// misdirected (421); any other audience is simply invalid (401).
    peers: Vec<RegionId>,
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl Verifier {
    /// A verifier for `region` that accepts any of `keys` (several during a key rotation).
    #[must_use]
    pub fn new(region: RegionId, keys: &[AssertionKey]) -> Self {
        let keys = keys
            .iter()
            .map(|k| (k.kid.clone(), (k.alg, DecodingKey::from_secret(&k.secret))))
            .collect();
        Self {
            region,
            peers: Vec::new(),
            keys,
        }
    }

    /// Names the other regions of the deployment, so that an assertion addressed to one of them
    /// is reported as [`AssertionError::Misdirected`]. Without peers, every foreign audience is
    /// [`AssertionError::Invalid`] (or [`AssertionError::UnknownKey`]).
    #[must_use]
    pub fn with_peers(mut self, peers: &[RegionId]) -> Self {
        self.peers = peers
            .iter()
            .filter(|p| **p != self.region)
            .cloned()
            .collect();
        self
    }

    fn is_peer(&self, aud: &str) -> bool {
        self.peers.iter().any(|p| p.as_str() == aud)
    }

    /// Verifies `token` against the current clock.
    ///
    /// # Errors
    /// The [`AssertionError`] naming why the assertion is refused. An assertion addressed to
    /// another configured region ([`Verifier::with_peers`]) yields
    /// [`AssertionError::Misdirected`], even when this node does not hold that region's key:
    /// the request is refused either way, and 421 tells the gateway it misrouted. Any other
    /// token that does not verify (a customer's own JWT sent as the assertion, an unknown
    /// audience) is [`AssertionError::Invalid`], [`AssertionError::UnknownKey`] or
    /// [`AssertionError::Malformed`]: 401.
    pub fn verify(&self, token: &str) -> Result<AssertionClaims, AssertionError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AssertionError::Malformed)?;
        let kid = header.kid.ok_or(AssertionError::Malformed)?;
        let Some((alg, key)) = self.keys.get(&kid) else {
            return Err(self.unknown_key_error(token));
        };
        if header.alg != *alg {
            return Err(AssertionError::AlgorithmMismatch);
        }
        let mut validation = Validation::new(*alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<AssertionClaims>(token, key, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AssertionError::Expired,
                jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::Base64(_)
                | jsonwebtoken::errors::ErrorKind::Utf8(_) => AssertionError::Malformed,
                _ => AssertionError::Invalid,
            },
        )?;
        let claims = data.claims;
        if claims.exp < claims.iat || claims.exp - claims.iat > MAX_TTL_SECS {
            return Err(AssertionError::Invalid);
        }
        if claims.iat > now_secs() + LEEWAY_SECS {
            return Err(AssertionError::Invalid);
        }
        if claims.aud != self.region.as_str() {
            return Err(if self.is_peer(&claims.aud) {
                AssertionError::Misdirected {
                    audience: claims.aud,
                }
            } else {
                AssertionError::Invalid
            });
        }
        Ok(claims)
    }

    fn unknown_key_error(&self, token: &str) -> AssertionError {
        #[derive(Deserialize)]
        struct Aud {
            iss: Option<String>,
            aud: Option<String>,
        }
        // Unverified peek, used only to choose between two refusals.
        let aud = token
            .split('.')
            .nth(1)
            .and_then(|p| {
                use base64_engine::decode_segment;
                decode_segment(p)
            })
            .and_then(|b| serde_json::from_slice::<Aud>(&b).ok())
            .filter(|a| a.iss.as_deref() == Some(ISSUER))
            .and_then(|a| a.aud);
        match aud {
            Some(aud) if self.is_peer(&aud) => AssertionError::Misdirected { audience: aud },
            _ => AssertionError::UnknownKey,
        }
    }
}

/// Minimal base64url (no padding) decoding for the unverified audience peek, so this crate
/// does not need a second base64 dependency beside jsonwebtoken's.
mod base64_engine {
    pub(super) fn decode_segment(s: &str) -> Option<Vec<u8>> {
        fn val(c: u8) -> Option<u32> {
            match c {
                b'A'..=b'Z' => Some(u32::from(c - b'A')),
                b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
                b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
                b'-' => Some(62),
                b'_' => Some(63),
                _ => None,
            }
        }
        if s.len() > 4096 {
            return None;
        }
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        let mut acc = 0u32;
        let mut bits = 0u32;
        for c in s.bytes() {
            acc = (acc << 6) | val(c)?;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push(((acc >> bits) & 0xff) as u8);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests;
