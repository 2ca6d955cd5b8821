//! The local connector sandbox of `residency up`: one loopback HTTP server standing in for
//! every connector of the catalogue, so the demo workflow (and any workflow a developer
//! writes) runs end to end without reaching Slack or HubSpot. Every node's
//! `[connectors.<id>] base_url` points at `http://127.0.0.1:<port>/<id>`.
//!
//! It answers every call `200` with a plausible JSON body (`ok`, an id, the connector and
//! path, what it received) and prints one line per call: method, path and the body's size.
//! It never prints headers, so the connection's credential stays out of the terminal.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The connectors of the catalogue (region migration `0002_connector_catalogue.sql`).
pub(super) const CONNECTORS: [&str; 10] = [
    "slack",
    "hubspot",
    "gmail",
    "notion",
    "salesforce",
    "github",
    "jira",
    "stripe",
    "google_sheets",
    "zendesk",
];

/// Largest request body read.
const MAX_BODY: usize = 1024 * 1024;

/// The base URL of `connector` in the sandbox on `port`.
#[must_use]
pub(super) fn base_url(port: u16, connector: &str) -> String {
    format!("http://127.0.0.1:{port}/{connector}")
}

/// Serves the sandbox on `listener` until `shutdown`.
pub(super) fn serve(listener: TcpListener, shutdown: CancellationToken) {
    let calls = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let (calls, shutdown) = (Arc::clone(&calls), shutdown.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let calls = Arc::clone(&calls);
                    async move { Ok::<_, Infallible>(answer(&calls, req).await) }
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

async fn answer(calls: &AtomicU64, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let received: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let connector = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    println!(
        "connector sandbox: {method} {path} ({} bytes) → 200",
        body.len()
    );
    let out = json!({
        "ok": true,
        "id": format!("sbx-{n}"),
        "ts": format!(
            "{}.{n:06}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
        ),
        "connector": connector,
        "path": path,
        "sandbox": true,
        "received": received,
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
