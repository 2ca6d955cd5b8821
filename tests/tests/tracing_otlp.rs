//! OpenTelemetry traces across the gateway and the region node (issue 16, traces), checked
//! with a small OTLP/HTTP receiver inside the test: both processes export to it
//! (`[tracing] otlp_endpoint`, JSON bodies, `OTEL_BSP_SCHEDULE_DELAY=100`), and the test polls
//! what arrived.
//!
//! - a client `traceparent` becomes the parent of the gateway's `request` span; the node's
//!   `request` span is a child of the gateway's, and its `db.transaction` a child of that;
//! - without one, the gateway starts a trace the node joins;
//! - an invalid one is ignored: a new trace, and the node's span has the gateway's as parent;
//! - with tracing off at the gateway, nothing of the gateway is exported, requests work, and
//!   the client's `traceparent` never reaches the node (whose span, exported, is a root).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response as HttpResponse, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use integration_tests::directory::DirectoryDb;
use integration_tests::process::{
    region_toml, until, GatewayOptions, GatewayProcess, NodeProcess, Output,
};
use integration_tests::{Http, RegionDb, Response};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::net::TcpListener;
use uuid::Uuid;

/// One exported span, as the receiver saw it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, Value>,
}

/// A minimal OTLP/HTTP (JSON) receiver: every `POST /v1/traces` body, flattened to spans.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
    bodies: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start() -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rx = Self::default();
        let state = rx.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (rx, addr)
    }

    async fn handle(&self, req: Request<Incoming>) -> HttpResponse<Full<Bytes>> {
        let ok = req.method() == Method::POST && req.uri().path() == "/v1/traces";
        let body = req.into_body().collect().await.unwrap().to_bytes();
        if !ok {
            return HttpResponse::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("OTLP body is not JSON ({e}): {body:?}"));
        let mut out = Vec::new();
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let attributes = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let val = a["value"]
                                .as_object()
                                .and_then(|o| o.values().next().cloned())
                                .unwrap_or(Value::Null);
                            (a["key"].as_str().unwrap_or_default().to_owned(), val)
                        })
                        .collect();
                    out.push(Span {
                        service: service.clone(),
                        name: s["name"].as_str().unwrap_or_default().to_owned(),
                        trace_id: s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                        span_id: s["spanId"].as_str().unwrap_or_default().to_lowercase(),
                        parent_span_id: s["parentSpanId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_lowercase(),
                        attributes,
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(out);
        *self.bodies.lock().unwrap() += 1;
        HttpResponse::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until a span of `service` named `name` with attribute `request_id` = `id`
    /// arrived, and returns it.
    async fn request_span(&self, service: &str, id: &str) -> Span {
        until(
            &format!("the {service} request span of {id}"),
            Duration::from_secs(30),
            || async {
                self.spans().into_iter().find(|s| {
                    s.service == service
                        && s.name == "request"
                        && s.attributes.get("request_id").and_then(Value::as_str) == Some(id)
                })
            },
        )
        .await
    }

    /// Waits until a `db.transaction` span whose parent is `parent` arrived.
    async fn child_named(&self, name: &str, parent: &Span) -> Span {
        until(
            &format!("a {name} span under {}", parent.span_id),
            Duration::from_secs(30),
            || async {
                self.spans()
                    .into_iter()
                    .find(|s| s.name == name && s.parent_span_id == parent.span_id)
            },
        )
        .await
    }
}

const GATEWAY: &str = "residency-gateway";
const NODE: &str = "region-node";

/// A directory, one `eu` node exporting to `rx`, and a gateway exporting to `rx` when
/// `gateway_traces`.
struct Stack {
    gw: GatewayProcess,
    _node: NodeProcess,
    http: Http,
    bearer: String,
    _db: RegionDb,
    _dir: DirectoryDb,
}

impl Stack {
    async fn start(rx: SocketAddr, gateway_traces: bool) -> Self {
        Self::start_with_delay(rx, gateway_traces, "100").await
    }

    /// [`Stack::start`] with the gateway's export interval `delay_ms`.
    async fn start_with_delay(rx: SocketAddr, gateway_traces: bool, delay_ms: &str) -> Self {
        let endpoint = format!("http://{rx}");
        let gateway = gateway_traces.then(|| endpoint.clone());
        Self::start_full(rx, gateway.as_deref(), delay_ms, Output::Inherit).await
    }

    /// The node exports to `rx`; the gateway to `gateway_endpoint` when given, every
    /// `delay_ms`, its output to `output`.
    async fn start_full(
        rx: SocketAddr,
        gateway_endpoint: Option<&str>,
        delay_ms: &str,
        output: Output,
    ) -> Self {
        let endpoint = format!("http://{rx}");
        let dir = DirectoryDb::create().await;
        let db = RegionDb::create("eu").await;
        let node = NodeProcess::spawn(
            &db,
            "eu",
            "warn",
            Stdio::inherit,
            &[
                ("RESIDENCY__TRACING__OTLP_ENDPOINT", &endpoint),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ],
        );
        node.until_ready().await;
        let extra = match gateway_endpoint {
            Some(e) => format!("[tracing]\notlp_endpoint = \"{e}\"\nsample_ratio = 1.0\n"),
            None => String::new(),
        };
        let gw = GatewayProcess::start_with(
            &GatewayOptions {
                directory_url: &dir.reader_url,
                writer_url: &dir.writer_url,
                regions: region_toml("eu", &[node.addr()], &node.key_file()),
                limits: "upstream_timeout = \"5s\"",
                extra: &extra,
                jwks: None,
            },
            &[],
            // The log lines keep the default filter: the request span is exported anyway.
            // The standard OTLP variables point at the receiver too: tracing off must not
            // export even when they are set.
            &[
                ("OTEL_BSP_SCHEDULE_DELAY", delay_ms),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ],
            output,
        )
        .await;
        let tenant = gw
            .create_tenant(
                &format!("otel-{}", &Uuid::new_v4().simple().to_string()[..8]),
                "eu",
                100_000,
            )
            .await;
        let bearer = format!("Bearer {}", gw.idp.token(&tenant, "user-1", "developer"));
        Self {
            gw,
            _node: node,
            http: Http::default(),
            bearer,
            _db: db,
            _dir: dir,
        }
    }

    /// `GET /v1/me` (a tenant transaction on the node) with request id `id` and `extra`
    /// headers; must succeed.
    async fn me(&self, id: &str, extra: &[(&str, &str)]) -> Response {
        let mut headers = vec![
            ("authorization", self.bearer.as_str()),
            ("x-request-id", id),
        ];
        headers.extend_from_slice(extra);
        let r = self
            .http
            .send(
                Method::GET,
                &format!("http://{}/v1/me", self.gw.public),
                &headers,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        r
    }
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The gateway's request span, the node's request span under it and the node's
/// `db.transaction` under that, all in one trace; returns the gateway's span.
async fn one_trace(rx: &Receiver, id: &str) -> (Span, Span) {
    let gw = rx.request_span(GATEWAY, id).await;
    let node = rx.request_span(NODE, id).await;
    assert_eq!(node.trace_id, gw.trace_id, "{node:?} / {gw:?}");
    assert_eq!(
        node.parent_span_id, gw.span_id,
        "the node's request span is a child of the gateway's"
    );
    let tx = rx.child_named("db.transaction", &node).await;
    assert_eq!(tx.service, NODE);
    assert_eq!(tx.trace_id, gw.trace_id);
    assert_eq!(
        tx.attributes.get("db.system").and_then(Value::as_str),
        Some("postgresql"),
        "{tx:?}"
    );
    (gw, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_trace_context_is_joined_started_or_ignored_and_spans_reach_the_collector() {
    let (rx, addr) = Receiver::start().await;
    let s = Stack::start(addr, true).await;

    // A load balancer's probe of the gateway: answered, not traced.
    let probe = s
        .http
        .send(
            Method::GET,
            &format!("http://{}/healthz", s.gw.public),
            &[("x-request-id", "otel-healthz")],
            None,
        )
        .await;
    assert_eq!(probe.status, StatusCode::OK, "{probe:?}");

    // A valid client traceparent: the gateway's request span is its child.
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    s.me("otel-valid", &[("traceparent", &parent)]).await;
    let (gw, _) = one_trace(&rx, "otel-valid").await;
    assert_eq!(gw.trace_id, CLIENT_TRACE, "{gw:?}");
    assert_eq!(gw.parent_span_id, CLIENT_SPAN, "{gw:?}");

    // None: the gateway starts a trace, the node joins it.
    s.me("otel-none", &[]).await;
    let (gw, _) = one_trace(&rx, "otel-none").await;
    assert!(gw.parent_span_id.is_empty(), "a root span: {gw:?}");
    assert_eq!(gw.trace_id.len(), 32);
    assert_ne!(gw.trace_id, CLIENT_TRACE);

    // Invalid (all-zero trace id, and a malformed one): ignored, a new trace; the node's
    // parent is the gateway's span, never the client's.
    for (id, bad) in [
        (
            "otel-zero",
            format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32)),
        ),
        ("otel-garbage", format!("00-{CLIENT_TRACE}-nothex-01")),
    ] {
        s.me(id, &[("traceparent", &bad)]).await;
        let (gw, node) = one_trace(&rx, id).await;
        assert!(gw.parent_span_id.is_empty(), "{id}: a root span: {gw:?}");
        assert_ne!(gw.trace_id, CLIENT_TRACE, "{id}");
        assert_ne!(gw.trace_id, "0".repeat(32), "{id}");
        assert_ne!(node.parent_span_id, CLIENT_SPAN, "{id}");
    }

    // The probes (the gateway's `/healthz` above; the node's `/readyz`, polled by the test
    // and by the gateway's health checks before and during these requests) are not traced: no trace per health check. They
    // ended before the spans above, so their batches have arrived.
    let probes: Vec<Span> = rx
        .spans()
        .into_iter()
        .filter(|sp| {
            sp.attributes
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| matches!(p, "/readyz" | "/healthz" | "/metrics"))
                || sp.attributes.get("request_id").and_then(Value::as_str) == Some("otel-healthz")
        })
        .collect();
    assert!(
        probes.is_empty(),
        "{} probe spans: {:#?}",
        probes.len(),
        probes.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tracing_off_the_gateway_exports_nothing_and_strips_the_client_trace_context() {
    let (rx, addr) = Receiver::start().await;
    let mut s = Stack::start(addr, false).await;
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    s.me(
        "otel-off",
        &[("traceparent", &parent), ("tracestate", "k=v")],
    )
    .await;
    // The node (tracing on) exports its span: a root of its own trace, so the client's
    // traceparent did not reach it.
    let node = rx.request_span(NODE, "otel-off").await;
    assert!(node.parent_span_id.is_empty(), "{node:?}");
    assert_ne!(node.trace_id, CLIENT_TRACE, "{node:?}");
    // The gateway exits (a configured exporter would flush now); nothing of it arrived.
    integration_tests::process::signal(s.gw.pid(), Signal::SIGTERM);
    s.gw.wait(Duration::from_secs(30)).await;
    let from_gateway: Vec<Span> = rx
        .spans()
        .into_iter()
        .filter(|sp| sp.service == GATEWAY)
        .collect();
    assert!(from_gateway.is_empty(), "{from_gateway:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_spans_are_flushed_when_the_gateway_stops() {
    let (rx, addr) = Receiver::start().await;
    // An hour between two exports: only the flush at shutdown can send the span.
    let mut s = Stack::start_with_delay(addr, true, "3600000").await;
    s.me("otel-flush", &[]).await;
    // The node exports every 100 ms: once its span arrived, the request is complete.
    rx.request_span(NODE, "otel-flush").await;
    integration_tests::process::signal(s.gw.pid(), Signal::SIGTERM);
    let status = s.gw.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    let gw: Vec<Span> = rx
        .spans()
        .into_iter()
        .filter(|sp| {
            sp.service == GATEWAY
                && sp.attributes.get("request_id").and_then(Value::as_str) == Some("otel-flush")
        })
        .collect();
    assert_eq!(gw.len(), 1, "the gateway's span, sent at shutdown: {gw:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_logged_and_requests_still_work() {
    let (_rx, addr) = Receiver::start().await;
    // Nothing listens there.
    let dead = format!(
        "http://127.0.0.1:{}",
        integration_tests::process::free_port()
    );
    let s = Stack::start_full(addr, Some(&dead), "100", Output::Capture).await;
    s.me("otel-dead", &[]).await;
    s.me("otel-dead-2", &[]).await;
    let line =
        s.gw.logs
            .until_line("the export failure", |l| {
                l.contains("opentelemetry_sdk") && l.contains("ExportError")
            })
            .await;
    assert!(line.contains("ERROR"), "{line}");
}
