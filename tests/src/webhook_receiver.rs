//! A local webhook receiver for the suites (`webhooks.rs`, `tenant_move.rs`): hyper
//! `service_fn` on a loopback port, recording every delivery it gets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// A delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `Residency-Signature`.
    pub signature: String,
    /// `Residency-Event`.
    pub event: String,
    /// `Residency-Delivery`.
    pub delivery: String,
    /// The body.
    pub body: Bytes,
}

/// A local webhook receiver: answers `fail_first` 500s per delivery id, then `then`.
#[derive(Clone)]
pub struct Receiver {
    /// Its address.
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Serves on a free loopback port.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(fail_first: usize, then: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let got2 = Arc::clone(&got);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (got, seen) = (Arc::clone(&got2), Arc::clone(&seen));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let (got, seen) = (Arc::clone(&got), Arc::clone(&seen));
                        async move {
                            let h = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let (signature, event, delivery) = (
                                h("residency-signature"),
                                h("residency-event"),
                                h("residency-delivery"),
                            );
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let n = {
                                let mut seen = seen.lock().unwrap();
                                let n = seen.entry(delivery.clone()).or_insert(0);
                                *n += 1;
                                *n
                            };
                            got.lock().unwrap().push(Received {
                                signature,
                                event,
                                delivery,
                                body,
                            });
                            let status = if n <= fail_first { 500 } else { then };
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"receiver body")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, got }
    }

    /// Its URL (plain http).
    #[must_use]
    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/hooks?source=residency",
            self.addr.port()
        )
    }

    /// Every request so far.
    ///
    /// # Panics
    /// When a handler panicked.
    #[must_use]
    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}
