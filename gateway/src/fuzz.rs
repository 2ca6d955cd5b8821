//! Entry points of the fuzz targets in `fuzz/` (`cargo fuzz`; see the README's Testing
//! section). Each takes arbitrary bytes, runs one parser of the public path the way the gateway
//! runs it, and panics only when an invariant breaks. Not part of the gateway's API.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use residency_config::gateway::{ClaimNames, IssuerConfig};

use crate::auth::jwt::JwtVerifier;
use crate::auth::{extract, Credential};

/// The request-smuggling guard's framing (heads, chunk lines, trailers) over `data`: the
/// first byte picks ALPN `h2` or not, the next eight are the sizes the bytes arrive in.
pub fn smuggle_framing(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (cuts, body) = rest.split_at(rest.len().min(8));
    let cuts = if cuts.is_empty() { &[255u8][..] } else { cuts };
    crate::listener::smuggle::fuzz_framing(body, cuts, mode & 1 == 1);
}

/// Credential extraction from the request headers (`Authorization`, `X-Api-Key`) and the
/// API-key format: never a panic; an extracted credential is a substring of a header.
pub fn credentials(data: &[u8]) {
    let mut headers = HeaderMap::new();
    let (a, b) = data.split_at(data.len() / 2);
    if let Ok(v) = HeaderValue::from_bytes(a) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(b) {
        headers.insert("x-api-key", v);
    }
    match extract(&headers) {
        Ok(Credential::Bearer(t)) => {
            assert!(!t.is_empty() && a.windows(t.len()).any(|w| w == t.as_bytes()))
        }
        Ok(Credential::ApiKey(k)) => {
            assert!(!k.is_empty());
            if let Some((prefix, secret)) = residency_core::split_api_key(k) {
                assert!(k.contains(prefix) && k.contains(secret));
            }
        }
        Err(_) => {}
    }
}

const ISSUER: &str = "https://idp.fuzz.test/";
const AUDIENCE: &str = "residency-api";
const KID: &str = "fuzz-1";

/// A JWT verifier trusting one ES256 key, and that key, to sign what the fuzzer makes.
pub struct Jwt {
    rt: tokio::runtime::Runtime,
    verifier: JwtVerifier,
    key: EcdsaKeyPair,
}

impl Jwt {
    /// A fresh key, its JWKS in a temporary file, and the verifier over it.
    ///
    /// # Panics
    /// When the key or the file cannot be made.
    #[must_use]
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = key.public_key().as_ref();
        let jwks = serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        }]});
        let path =
            std::env::temp_dir().join(format!("residency-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&path, jwks.to_string()).unwrap();
        let cfg = IssuerConfig {
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            jwks_file: Some(path),
            jwks_url: None,
            ca_file: None,
            algorithms: vec!["ES256".to_owned()],
            leeway: Duration::from_secs(5),
            jwks_refresh: Duration::from_secs(300),
            jwks_cooldown: Duration::from_secs(30),
            jwks_timeout: Duration::from_secs(5),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let verifier = rt
            .block_on(JwtVerifier::load(&[cfg], ClaimNames::default()))
            .unwrap();
        Self { rt, verifier, key }
    }

    /// Any token text: nothing the fuzzer makes up carries a valid signature of the key, so
    /// every one is refused, and none panics.
    pub fn token(&self, token: &[u8]) {
        let Ok(token) = std::str::from_utf8(token) else {
            return;
        };
        let r = self.rt.block_on(self.verifier.verify(token));
        assert!(r.is_err(), "an unsigned token was accepted: {token:?}");
    }

    /// `header` and `claims` as the fuzzer made them, signed with the trusted key: whatever
    /// the JSON holds, an accepted token yields a context that keeps the claims' rules (tenant
    /// from the tenant claim, subject 1–256 bytes, role ≤ 64 bytes).
    pub fn signed(&self, header: &[u8], claims: &[u8]) {
        let signing_input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let sig = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .unwrap();
        let token = format!("{signing_input}.{}", B64.encode(sig.as_ref()));
        if let Ok(v) = self.rt.block_on(self.verifier.verify(&token)) {
            let parsed: serde_json::Value = serde_json::from_slice(claims).unwrap();
            // The same UUID (its text may be upper case, braced or a URN: one tenant).
            let claimed = parsed["tenant_id"].as_str().and_then(|t| t.parse().ok());
            assert_eq!(claimed, Some(v.ctx.tenant));
            assert!(!v.ctx.subject.is_empty() && v.ctx.subject.len() <= 256);
            assert!(v.ctx.role.len() <= 64);
            assert_eq!(parsed["iss"], ISSUER);
        }
    }
}

impl Default for Jwt {
    fn default() -> Self {
        Self::new()
    }
}
