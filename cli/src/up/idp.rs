//! The dev identity provider, served by `up` itself on loopback over plain HTTP:
//!
//! - `GET /.well-known/jwks.json`: the public half of `keys/jwt.pem`, which the gateway
//!   fetches through its `jwks_url` (so the URL path, its cache and refresh are exercised);
//! - `POST /token {"tenant_id", "role"?, "sub"?}`: an ES256 JWT (`iss`, `aud`, `kid`,
//!   `exp` = 1 h) for that tenant, for demos and scripts;
//! - `POST /keys/rotate` (dev only, for the soak): generates a new ES256 key with a new `kid`,
//!   publishes it in the JWKS next to the keys already there and signs new tokens with it;
//!   answers `{"kid", "kids"}` (the signing kid, every published kid);
//! - `POST /keys/retire` (dev only): unpublishes every key but the signing one; same answer.
//!
//! Rotated keys live in memory only: a restarted `up` signs with `keys/jwt.pem` again.
//!
//! It signs a token for any tenant id it is given: that is its job in a dev stack, and the
//! reason it listens on 127.0.0.1 only. Real deployments configure their own issuer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use residency_http::{Problem, RequestId};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Lifetime of issued tokens, in seconds.
pub(super) const TOKEN_TTL_SECS: u64 = 3600;
/// The subject of tokens that name none: the owner member every demo tenant has.
pub(super) const DEFAULT_SUBJECT: &str = "demo-owner";
const MAX_BODY: usize = 16 * 1024;

/// The answer of `POST /token`.
#[derive(Debug, Serialize)]
struct TokenResponse {
    /// The signed JWT.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// The token's lifetime, in seconds.
    expires_in: u64,
}

/// One signing key: its header (with the `kid`), private half and published public half.
struct SigningKey {
    key: EncodingKey,
    header: Header,
    jwk: Jwk,
}

impl SigningKey {
    fn new(pem: &[u8], kid: &str) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ec_pem(pem)?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)?;
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        Ok(Self { key, header, jwk })
    }
}

/// The published keys; the last one signs.
struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
    jwks: Bytes,
    /// Keys generated so far by rotation (numbers new `kid`s).
    rotations: u32,
}

impl KeyRing {
    fn publish(&mut self) -> anyhow::Result<()> {
        let set = JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        self.jwks = Bytes::from(serde_json::to_vec(&set)?);
        Ok(())
    }

    fn signing(&self) -> Arc<SigningKey> {
        Arc::clone(self.keys.last().expect("at least one key"))
    }

    fn state(&self) -> KeyState {
        KeyState {
            kid: self.signing().header.kid.clone().unwrap_or_default(),
            kids: self
                .keys
                .iter()
                .filter_map(|k| k.header.kid.clone())
                .collect(),
        }
    }
}

/// The answer of `POST /keys/rotate` and `POST /keys/retire`.
#[derive(Debug, Serialize)]
pub(super) struct KeyState {
    /// The `kid` new tokens carry.
    kid: String,
    /// Every published `kid`, oldest first.
    kids: Vec<String>,
}

/// Signs demo tokens.
pub(super) struct TokenIssuer {
    ring: RwLock<KeyRing>,
    base_kid: String,
    issuer: String,
    audience: String,
}

impl TokenIssuer {
    /// An issuer signing with the PKCS#8 PEM `pem` under `kid`.
    ///
    /// # Errors
    /// When the key is not an EC P-256 key.
    pub(super) fn new(pem: &[u8], kid: &str, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let mut ring = KeyRing {
            keys: vec![Arc::new(SigningKey::new(pem, kid)?)],
            jwks: Bytes::new(),
            rotations: 0,
        };
        ring.publish()?;
        Ok(Self {
            ring: RwLock::new(ring),
            base_kid: kid.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// The JWKS document: every published key.
    fn jwks(&self) -> Bytes {
        self.ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .jwks
            .clone()
    }

    /// Generates a new key under a new `kid`, publishes it next to the current ones and signs
    /// new tokens with it.
    ///
    /// # Errors
    /// When key generation or encoding fails.
    pub(super) fn rotate(&self) -> anyhow::Result<KeyState> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        let n = ring.rotations + 1;
        let kid = format!("{}-r{n}", self.base_kid);
        ring.keys.push(Arc::new(SigningKey::new(
            pair.serialize_pem().as_bytes(),
            &kid,
        )?));
        ring.rotations = n;
        ring.publish()?;
        Ok(ring.state())
    }

    /// Unpublishes every key but the signing one.
    ///
    /// # Errors
    /// When encoding the JWKS fails.
    pub(super) fn retire(&self) -> anyhow::Result<KeyState> {
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        let keep = ring.signing();
        ring.keys = vec![keep];
        ring.publish()?;
        Ok(ring.state())
    }

    /// A token for `tenant`, as `sub`, with `role` when given.
    ///
    /// # Errors
    /// When signing fails.
    pub(super) fn token(
        &self,
        tenant: Uuid,
        sub: &str,
        role: Option<&str>,
    ) -> anyhow::Result<String> {
        let now = residency_core::assertion::now_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "tenant_id": tenant,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_TTL_SECS,
        });
        if let Some(r) = role {
            claims["role"] = Value::String(r.to_owned());
        }
        let signing = self
            .ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .signing();
        Ok(jsonwebtoken::encode(
            &signing.header,
            &claims,
            &signing.key,
        )?)
    }

    /// The token `body` asks for, or the problem with the request.
    fn issue(&self, body: &[u8]) -> Result<TokenResponse, Box<Problem>> {
        let bad = |field: &str, m: &str| {
            Box::new(
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("{field}: {m}"),
                )
                .with_field(field),
            )
        };
        let v: Value =
            serde_json::from_slice(body).map_err(|_| bad("body", "must be a JSON object"))?;
        let tenant = v
            .get("tenant_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| bad("tenant_id", "must be a uuid"))?;
        let text = |field: &str| -> Result<Option<&str>, Box<Problem>> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if (1..=256).contains(&s.len()) => Ok(Some(s.as_str())),
                Some(_) => Err(bad(field, "must be a string of 1-256 bytes")),
            }
        };
        let role = text("role")?;
        let sub = text("sub")?.unwrap_or(DEFAULT_SUBJECT);
        let token = self.token(tenant, sub, role).map_err(|_| {
            Box::new(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "signing failed",
            ))
        })?;
        Ok(TokenResponse {
            access_token: token,
            token_type: "Bearer",
            expires_in: TOKEN_TTL_SECS,
        })
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// `problem` as problem+json, under a fresh request id (the IdP is not behind the gateway).
fn problem(problem: &Problem) -> Response<Full<Bytes>> {
    problem.render(RequestId::new().header_value())
}

async fn handle(issuer: Arc<TokenIssuer>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/.well-known/jwks.json") => {
            reply(StatusCode::OK, "application/json", issuer.jwks())
        }
        (&Method::POST, path @ ("/keys/rotate" | "/keys/retire")) => {
            let state = if path == "/keys/rotate" {
                issuer.rotate()
            } else {
                issuer.retire()
            };
            match state.and_then(|s| Ok(serde_json::to_vec(&s)?)) {
                Ok(v) => reply(StatusCode::OK, "application/json", Bytes::from(v)),
                Err(_) => problem(&Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "key rotation failed",
                )),
            }
        }
        (&Method::POST, "/token") => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return problem(&Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "body too large",
                    ))
                }
            };
            match issuer.issue(&body).and_then(|t| {
                serde_json::to_vec(&t).map_err(|_| {
                    Box::new(Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "encoding failed",
                    ))
                })
            }) {
                Ok(v) => reply(StatusCode::OK, "application/json", Bytes::from(v)),
                Err(p) => problem(&p),
            }
        }
        (_, "/.well-known/jwks.json" | "/token" | "/keys/rotate" | "/keys/retire") => {
            problem(&Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            ))
        }
        _ => problem(&Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        )),
    }
}

/// Serves the identity provider on `listener` until `shutdown` fires.
pub(super) fn serve(listener: TcpListener, issuer: Arc<TokenIssuer>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let (stream, _peer): (_, SocketAddr) = tokio::select! {
                () = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(pair) => pair,
                    Err(_) => continue,
                },
            };
            let issuer = issuer.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let issuer = issuer.clone();
                    async move { Ok::<_, Infallible>(handle(issuer, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn issuer() -> TokenIssuer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TokenIssuer::new(
            key.serialize_pem().as_bytes(),
            "dev-1",
            "http://idp/",
            "api",
        )
        .unwrap()
    }

    #[test]
    fn tokens_verify_against_the_published_jwks() {
        let iss = issuer();
        let tenant = Uuid::new_v4();
        let out = iss
            .issue(format!(r#"{{"tenant_id":"{tenant}","role":"viewer"}}"#).as_bytes())
            .unwrap();
        // The answer's field names are the OAuth token response's.
        let out = serde_json::to_value(&out).unwrap();
        assert_eq!(out["token_type"], "Bearer");
        assert_eq!(out["expires_in"], TOKEN_TTL_SECS);
        let token = out["access_token"].as_str().unwrap();
        let set: JwkSet = serde_json::from_slice(&iss.jwks()).unwrap();
        assert_eq!(set.keys[0].common.key_id.as_deref(), Some("dev-1"));
        let key = DecodingKey::from_jwk(&set.keys[0]).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["api"]);
        v.set_issuer(&["http://idp/"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some("dev-1"));
        assert_eq!(data.claims["tenant_id"], tenant.to_string());
        assert_eq!(data.claims["role"], "viewer");
        assert_eq!(data.claims["sub"], DEFAULT_SUBJECT);
        let ttl = data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap();
        assert_eq!(ttl, TOKEN_TTL_SECS);
    }

    /// The `kid` of `token`'s header and whether it verifies against the key of that `kid` in
    /// the issuer's current JWKS (false when the JWKS no longer publishes it).
    fn verifies(iss: &TokenIssuer, token: &str) -> (String, bool) {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let set: JwkSet = serde_json::from_slice(&iss.jwks()).unwrap();
        let Some(jwk) = set.find(&kid) else {
            return (kid, false);
        };
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["api"]);
        v.set_issuer(&["http://idp/"]);
        let key = DecodingKey::from_jwk(jwk).unwrap();
        (kid, jsonwebtoken::decode::<Value>(token, &key, &v).is_ok())
    }

    #[test]
    fn rotation_publishes_a_new_kid_next_to_the_old_and_retire_removes_the_old() {
        let iss = issuer();
        let tenant = Uuid::new_v4();
        let old = iss.token(tenant, "u", None).unwrap();
        assert_eq!(verifies(&iss, &old), ("dev-1".to_owned(), true));

        let state = iss.rotate().unwrap();
        assert_eq!(state.kid, "dev-1-r1");
        assert_eq!(state.kids, ["dev-1", "dev-1-r1"]);
        let new = iss.token(tenant, "u", None).unwrap();
        // New tokens carry the new kid; both generations verify while both are published.
        assert_eq!(verifies(&iss, &new), ("dev-1-r1".to_owned(), true));
        assert_eq!(verifies(&iss, &old), ("dev-1".to_owned(), true));

        let state = iss.retire().unwrap();
        assert_eq!(state.kids, ["dev-1-r1"]);
        assert_eq!(verifies(&iss, &new), ("dev-1-r1".to_owned(), true));
        assert_eq!(verifies(&iss, &old), ("dev-1".to_owned(), false));

        // A second rotation gets yet another kid; retire with one key keeps it.
        assert_eq!(iss.rotate().unwrap().kids, ["dev-1-r1", "dev-1-r2"]);
        assert_eq!(iss.retire().unwrap().kids, ["dev-1-r2"]);
        assert_eq!(iss.retire().unwrap().kids, ["dev-1-r2"]);
    }

    #[tokio::test]
    async fn rotation_endpoints_answer_over_http() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        serve(listener, Arc::new(issuer()), stop.clone());
        let call = |method: &'static str, path: &'static str| async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "idp")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        };
        let (status, v) = call("POST", "/keys/rotate").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["kid"], "dev-1-r1");
        let (_, jwks) = call("GET", "/.well-known/jwks.json").await;
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        let (status, v) = call("POST", "/keys/retire").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["kids"], json!(["dev-1-r1"]));
        let (_, jwks) = call("GET", "/.well-known/jwks.json").await;
        assert_eq!(jwks["keys"][0]["kid"], "dev-1-r1");
        let (status, _) = call("GET", "/keys/rotate").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        stop.cancel();
    }

    #[test]
    fn bad_requests_name_the_field() {
        let iss = issuer();
        for (body, field) in [
            (r#"{"tenant_id":"nope"}"#, "tenant_id"),
            (r#"{}"#, "tenant_id"),
            (
                r#"{"tenant_id":"6f1c2a4e-0000-4000-8000-000000000001","role":7}"#,
                "role",
            ),
            ("not json", "body"),
        ] {
            let p = iss.issue(body.as_bytes()).unwrap_err();
            assert_eq!(p.status, StatusCode::BAD_REQUEST);
            assert!(p.detail.starts_with(field), "{}", p.detail);
            assert_eq!(p.field.as_deref(), Some(field));
        }
    }
}
