//! What the gateway's rate-limit test files share: a generated identity provider and a fake
//! region node that counts what reaches it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::net::TcpListener;

/// The audience every test token carries.
pub(crate) const AUDIENCE: &str = "residency-api";

/// A generated ES256 identity provider key and its JWKS.
pub(crate) struct Idp {
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    /// The JWKS document to serve or write for the gateway.
    pub jwks: String,
}

impl Idp {
    /// A new key of `issuer`, published under `kid`.
    pub(crate) fn generate(issuer: &str, kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        Self {
            issuer: issuer.to_owned(),
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks: json!({ "keys": [jwk] }).to_string(),
        }
    }

    /// A developer's token for `tenant`, valid for ten minutes.
    pub(crate) fn token(&self, tenant: &str) -> String {
        let now = residency_core::assertion::now_secs();
        let claims = json!({
            "iss": self.issuer, "aud": AUDIENCE, "sub": "user-1", "tenant_id": tenant,
            "role": "developer", "iat": now, "exp": now + 600,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// A fake region node that answers 200 and counts what reaches it.
pub(crate) async fn fake_node() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    // The gateway's active health checks are not proxied requests.
                    if req.uri().path() != "/readyz" {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, hits)
}
