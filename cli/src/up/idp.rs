//! The dev identity provider, served by `up` itself on loopback over plain HTTP:
//!
//! - `GET /.well-known/jwks.json`: the public half of `keys/jwt.pem`, which the gateway
//!   fetches through its `jwks_url` (so the URL path, its cache and refresh are exercised);
//! - `POST /token {"tenant_id", "role"?, "sub"?}`: an ES256 JWT (`iss`, `aud`, `kid`,
//!   `exp` = 1 h) for that tenant, for demos and scripts.
//!
//! It signs a token for any tenant id it is given: that is its job in a dev stack, and the
//! reason it listens on 127.0.0.1 only. Real deployments configure their own issuer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

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

/// Signs demo tokens.
pub(super) struct TokenIssuer {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
    jwks: Bytes,
}

impl TokenIssuer {
    /// An issuer signing with the PKCS#8 PEM `pem` under `kid`.
    ///
    /// # Errors
    /// When the key is not an EC P-256 key.
    pub(super) fn new(pem: &[u8], kid: &str, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ec_pem(pem)?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)?;
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        let jwks = Bytes::from(serde_json::to_vec(&JwkSet { keys: vec![jwk] })?);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        Ok(Self {
            key,
            header,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            jwks,
        })
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
        Ok(jsonwebtoken::encode(&self.header, &claims, &self.key)?)
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
            reply(StatusCode::OK, "application/json", issuer.jwks.clone())
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
        (_, "/.well-known/jwks.json" | "/token") => problem(&Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        )),
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
        let set: JwkSet = serde_json::from_slice(&iss.jwks).unwrap();
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
