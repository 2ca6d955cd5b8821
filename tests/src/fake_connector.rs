//! A fake connector service (Slack/HubSpot-like) on a loopback port: records every call
//! (method, path, query, credential headers, body) and answers per path: a JSON body (the
//! default: `{"ok": true, "echo": <body>, "seen_authorization": <the header>}`, so a test can
//! check that the node scrubs a credential echoed back), a status, or a call that blocks until
//! the test releases it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method.
    pub method: String,
    /// Path (with the test's prefix, such as `/slack/chat.postMessage`).
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// `authorization` header.
    pub authorization: Option<String>,
    /// Every header, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Body as JSON (`null` when empty or not JSON).
    pub body: Value,
}

/// How the fake answers a path.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this JSON body.
    Json(Value),
    /// This status with a small JSON error body.
    Status(u16),
    /// Records the call, then waits until [`FakeConnector::release`].
    Block,
}

#[derive(Default)]
struct State {
    calls: Mutex<Vec<Call>>,
    answers: Mutex<HashMap<String, Answer>>,
    release: Notify,
}

/// The fake service.
#[derive(Clone)]
pub struct FakeConnector {
    /// Its address.
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl FakeConnector {
    /// Starts the fake on a free loopback port.
    ///
    /// # Panics
    /// When it cannot bind.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let st = Arc::clone(&st);
                        async move { Ok::<_, Infallible>(answer(&st, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    /// The base URL for a connector id: `http://127.0.0.1:<port>/<connector>`.
    #[must_use]
    pub fn base(&self, connector: &str) -> String {
        format!("http://{}/{connector}", self.addr)
    }

    /// Answers `path` with `answer` from now on.
    ///
    /// # Panics
    /// When a lock is poisoned.
    pub fn answer(&self, path: &str, answer: Answer) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(path.to_owned(), answer);
    }

    /// Releases every blocked call (they answer 200 `{"ok": true}`).
    pub fn release(&self) {
        self.state.release.notify_waiters();
    }

    /// Every call so far.
    ///
    /// # Panics
    /// When a lock is poisoned.
    #[must_use]
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The calls to `path` so far.
    #[must_use]
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }
}

async fn answer(
    st: &State,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let authorization = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        authorization: authorization.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    };
    st.calls.lock().unwrap().push(call);
    let configured = st.answers.lock().unwrap().get(parts.uri.path()).cloned();
    let (status, out) = match configured {
        Some(Answer::Json(v)) => (StatusCode::OK, v),
        Some(Answer::Status(s)) => (
            StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"ok": false, "error": "fake failure", "seen_authorization": authorization}),
        ),
        Some(Answer::Block) => {
            st.release.notified().await;
            (StatusCode::OK, json!({"ok": true}))
        }
        None => (
            StatusCode::OK,
            json!({"ok": true, "echo": body, "seen_authorization": authorization}),
        ),
    };
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap()
}
