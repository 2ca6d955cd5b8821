//! One delivery attempt on the wire: the signature, the TLS client, the connection to an
//! address [`super::target`] allowed (never a fresh lookup: the address checked is the address
//! connected to), and one HTTP/1.1 POST whose answer's status is all that is kept.
//!
//! Every error is a client-safe sentence: it lands in the customer's delivery log, so it never
//! holds a resolved address, a TLS library message or the receiver's body.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use residency_config::node::webhooks::WebhooksConfig;
use residency_core::wire::customer::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use uuid::Uuid;

use super::target::Target;

/// What one request carries.
pub(crate) struct Signed<'a> {
    /// `Residency-Signature`.
    pub(crate) signature: &'a str,
    /// `Residency-Event`.
    pub(crate) event_type: &'a str,
    /// `Residency-Delivery`.
    pub(crate) delivery: Uuid,
    /// The JSON body, as signed.
    pub(crate) body: &'a Bytes,
}

/// The most of a receiver's answer read (and then ignored).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Signs `body` sent at unix time `t`: `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
#[must_use]
pub(crate) fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// The TLS client of `https` targets: `webhooks.ca_file`, else the platform's roots.
pub(crate) fn tls_connector(cfg: &WebhooksConfig) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let ca_file = cfg.ca_file.as_deref().map(|p| ("webhooks.ca_file", p));
    let config = crate::tls::client_config(ca_file, "webhooks")?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Connects to the first address that accepts: only addresses the rules allowed.
pub(crate) async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut refused = false;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
            Err(_) => {}
        }
    }
    Err(if refused {
        "connection refused".to_owned()
    } else {
        "could not connect".to_owned()
    })
}

pub(crate) fn request(t: &Target, d: &Signed<'_>) -> Result<Request<Full<Bytes>>, String> {
    let path = match t.url.query() {
        Some(q) => format!("{}?{q}", t.url.path()),
        None => t.url.path().to_owned(),
    };
    let host = match (t.url.host_str(), t.url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => t.host.clone(),
    };
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("residency-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header(SIGNATURE_HEADER, d.signature)
        .header(EVENT_HEADER, d.event_type)
        .header(DELIVERY_HEADER, d.delivery.to_string())
        .body(Full::new(d.body.clone()))
        .map_err(|_| "the url cannot be requested".to_owned())
}

/// One HTTP/1.1 request on `io`; the answer's status (its body is read, bounded, and dropped).
pub(crate) async fn exchange<I>(io: I, req: Request<Full<Bytes>>) -> Result<u16, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|_| "the http exchange failed".to_owned())?;
    let driver = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|_| "the receiver closed the connection without an answer".to_owned());
    let out = match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let _ = Limited::new(r.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            Ok(status)
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
}
