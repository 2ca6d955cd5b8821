//! End-to-end tests of the gateway's HTTP/2 abuse limits and connection lifetimes: a real
//! gateway on 127.0.0.1:0 (plain TCP, HTTP/2 by prior knowledge) in front of a fake region node.
//!
//! Most tests speak raw HTTP/2 frames, so they can do what a well-behaved client library will
//! not: ignore `SETTINGS_MAX_CONCURRENT_STREAMS`, reset streams as fast as they open them, send
//! malformed requests in bulk, or stop halfway through a header block. Nothing waits on time:
//! each test reads frames until the gateway answers or closes (with a deadline against a hang),
//! and the node reports arrivals on a channel.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use residency_gateway::Listeners;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "0190a5c4-0000-7000-8000-0000000002f2";
const MAX_STREAMS: u32 = 4;

fn api_key() -> String {
    format!("rk_h2lim001_{}", "h".repeat(40))
}

/// The fake node's view: requests served, requests in flight (and the most at once), and a
/// gate for `/slow`: each arrival is reported on a channel and waits for a permit.
#[derive(Clone)]
struct Node {
    served: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

async fn fake_node() -> (String, Node, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let node = Node {
        served: Arc::default(),
        in_flight: Arc::default(),
        max_in_flight: Arc::default(),
        gate: Arc::new(Semaphore::new(0)),
    };
    let state = node.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (state, arrived) = (state.clone(), arrived.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (state, arrived) = (state.clone(), arrived.clone());
                    async move {
                        if req.uri().path() != "/readyz" {
                            let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            state.max_in_flight.fetch_max(now, Ordering::SeqCst);
                            if req.uri().path() == "/v1/slow" {
                                let _ = arrived.send(());
                                state.gate.acquire().await.unwrap().forget();
                            }
                            state.in_flight.fetch_sub(1, Ordering::SeqCst);
                            state.served.fetch_add(1, Ordering::SeqCst);
                        }
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
    (url, node, arrivals)
}

struct Gateway {
    addr: String,
    node: Node,
    arrivals: mpsc::UnboundedReceiver<()>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start() -> Self {
        Self::start_with("").await
    }

    /// A gateway with `limits` (TOML lines) added to its `[limits]` section.
    async fn start_with(limits: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (node_url, node, arrivals) = fake_node().await;
        std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
        std::fs::write(dir.path().join("eu.key"), [6u8; 32]).unwrap();
        std::fs::write(
            dir.path().join("directory.toml"),
            format!(
                r#"
[[tenants]]
id = "{TENANT}"
region = "eu"
tier = "enterprise"
status = "active"
[[api_keys]]
id = "key-h2-1"
tenant = "{TENANT}"
prefix = "h2lim001"
hash = "{}"
"#,
                residency_gateway::auth::api_key::hash_hex(&api_key())
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("gateway.toml"),
            format!(
                r#"
[listen]
public = "127.0.0.1:0"

[[issuers]]
issuer = "https://idp.test/"
audience = "residency-api"
jwks_file = "jwks.json"

[directory]
source = "file"
path = "directory.toml"

[limits]
h2_max_concurrent_streams = {MAX_STREAMS}
{limits}

[[regions]]
id = "eu"
upstreams = ["{node_url}"]
assertion = {{ kid = "eu-1", key_file = "eu.key" }}
"#
            ),
        )
        .unwrap();
        let cfg =
            residency_config::load::load(&dir.path().join("gateway.toml"), &Vec::new()).unwrap();
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(residency_gateway::run(
            cfg,
            Listeners {
                public,
                admin: None,
            },
            shutdown.clone(),
        ));
        Self {
            addr,
            node,
            arrivals,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// One ordinary request over a fresh HTTP/2 connection: the gateway is still serving.
    async fn still_serves(&self) {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let req = Request::get(format!("http://{}/v1/me", self.addr))
            .header("x-api-key", api_key())
            .body(Full::default())
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .expect("answer in time")
            .unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), StatusCode::OK);
    }

    async fn stop(mut self) {
        self.node.gate.add_permits(1000);
        self.arrivals.close();
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("gateway drained in time")
            .unwrap()
            .unwrap();
    }
}

// ----- raw HTTP/2 -----

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const NO_ERROR: u32 = 0x0;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | u8::try_from(v).unwrap());
        return;
    }
    out.push(first | u8::try_from(max).unwrap());
    v -= max;
    while v >= 128 {
        out.push(u8::try_from(v % 128).unwrap() | 0x80);
        v /= 128;
    }
    out.push(u8::try_from(v).unwrap());
}

fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A header block: `GET` with `:scheme http`, `path`, `:authority gw`, then `fields` as
/// literals without indexing.
fn request_block(path: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http (static table)
    hpack_int(&mut b, 0x00, 4, 4); // :path, literal value
    hpack_str(&mut b, path.as_bytes());
    hpack_int(&mut b, 0x00, 4, 1); // :authority, literal value
    hpack_str(&mut b, b"gw");
    for (name, value) in fields {
        b.push(0x00);
        hpack_str(&mut b, name.as_bytes());
        hpack_str(&mut b, value.as_bytes());
    }
    b
}

struct RawH2 {
    rd: OwnedReadHalf,
    /// `None` while a flood is being written by its own task.
    wr: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
}

impl RawH2 {
    /// Connects and sends the client preface with empty settings.
    async fn connect(addr: &str) -> Self {
        Self::handshake(TcpStream::connect(addr).await.unwrap()).await
    }

    /// Connects from the local address `from` (any of 127.0.0.0/8 on loopback).
    async fn connect_from(from: IpAddr, addr: &str) -> Self {
        Self::handshake(connect_from(from, addr).await).await
    }

    async fn handshake(stream: TcpStream) -> Self {
        let (rd, mut wr) = stream.into_split();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        wr.write_all(&hello).await.unwrap();
        Self {
            rd,
            wr: Some(wr),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let wr = self.wr.as_mut().expect("not flooding");
        wr.write_all(bytes).await.unwrap();
    }

    /// Writes `bytes` from another task while this one reads: the gateway may end the
    /// connection before the flood is through, and its `GOAWAY` must still be read.
    fn flood(&mut self, bytes: Vec<u8>) {
        let mut wr = self.wr.take().expect("one flood at a time");
        tokio::spawn(async move {
            // The gateway closing mid-flood is the expected outcome, not an error.
            let _ = wr.write_all(&bytes).await;
        });
    }

    /// The next frame from the gateway (settings and pings are acknowledged on the way, as
    /// any client does), or `None` once it has closed the connection.
    async fn next(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let (kind, flags) = (f[3], f[4]);
                    let id = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    if kind == SETTINGS && flags & ACK == 0 {
                        if let Some(wr) = self.wr.as_mut() {
                            let _ = wr.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                        }
                    }
                    if kind == PING && flags & ACK == 0 {
                        if let Some(wr) = self.wr.as_mut() {
                            let _ = wr.write_all(&frame(PING, ACK, 0, &f[9..])).await;
                        }
                    }
                    return Some((kind, flags, id, f[9..].to_vec()));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            // A guard against a hang, not a timing assertion.
            let n = tokio::time::timeout(Duration::from_secs(10), self.rd.read(&mut chunk))
                .await
                .expect("the gateway answered in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a `/v1/slow` request on stream 1 and waits until the node holds it.
    async fn slow_request_held(&mut self, gw: &mut Gateway) {
        let block = request_block("/v1/slow", &[("x-api-key", &api_key())]);
        self.send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
            .await;
        gw.arrivals.recv().await.unwrap();
    }

    /// Reads until the gateway's first `SETTINGS`: the connection is being served.
    async fn served(&mut self) {
        while let Some((kind, _, _, _)) = self.next().await {
            if kind == SETTINGS {
                return;
            }
        }
        panic!("connection closed before the gateway's settings");
    }

    /// Reads until the gateway closes the connection, failing on a response or a `GOAWAY`
    /// with an error code.
    async fn closed(&mut self) {
        while let Some((kind, _, id, payload)) = self.next().await {
            assert_ne!(kind, HEADERS, "a response on stream {id}");
            if kind == GOAWAY {
                assert_eq!(u32_of(&payload[4..]), NO_ERROR, "goaway code");
            }
        }
    }

    /// Reads until the gateway sends `GOAWAY`; returns its error code.
    async fn goaway(&mut self) -> u32 {
        while let Some((kind, _, _, payload)) = self.next().await {
            if kind == GOAWAY {
                return u32::from_be_bytes(payload[4..8].try_into().unwrap());
            }
        }
        panic!("connection closed without GOAWAY");
    }
}

/// A TCP connection to `addr` from the local address `from`.
async fn connect_from(from: IpAddr, addr: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// Whether a response header block is exactly `:status 431`, as a literal on the static
/// `:status` name (any indexing mode), the value plain or Huffman-coded.
fn is_status_431(block: &[u8]) -> bool {
    matches!(block, [0x48 | 0x08 | 0x18, rest @ ..]
        if rest == [0x03, b'4', b'3', b'1'] || rest == [0x83, 0x69, 0x90, 0xff])
}

fn u32_of(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().unwrap())
}

#[tokio::test]
async fn streams_over_the_limit_are_refused_and_the_others_served() {
    let mut gw = Gateway::start().await;
    let mut h2 = RawH2::connect(&gw.addr).await;
    let key = api_key();
    let block = request_block("/v1/slow", &[("x-api-key", &key)]);
    // Six streams at once, ignoring the advertised limit of four.
    let ids = [1u32, 3, 5, 7, 9, 11];
    let mut burst = Vec::new();
    for id in ids {
        burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
    }
    h2.send(&burst).await;
    let mut refused = Vec::new();
    while refused.len() < 2 {
        let (kind, _, id, payload) = h2.next().await.expect("connection open");
        assert!(
            kind != HEADERS && kind != GOAWAY,
            "unexpected frame {kind} on {id}"
        );
        if kind == RST_STREAM {
            assert_eq!(u32_of(&payload), REFUSED_STREAM, "stream {id}");
            refused.push(id);
        }
    }
    assert_eq!(refused, [9, 11], "the streams over the limit");
    for _ in 0..MAX_STREAMS {
        gw.arrivals.recv().await.unwrap();
    }
    gw.node.gate.add_permits(ids.len());
    let mut done = Vec::new();
    while done.len() < 4 {
        let (kind, flags, id, payload) = h2.next().await.expect("connection open");
        if kind == HEADERS {
            assert_eq!(payload.first(), Some(&0x88), "stream {id}: :status 200");
        }
        if (kind == DATA || kind == HEADERS) && flags & END_STREAM != 0 {
            done.push(id);
        }
        assert_ne!(kind, RST_STREAM, "stream {id} reset");
    }
    done.sort_unstable();
    assert_eq!(done, [1, 3, 5, 7]);
    assert_eq!(gw.node.served.load(Ordering::SeqCst), 4);
    assert_eq!(gw.node.max_in_flight.load(Ordering::SeqCst), 4);
    drop(h2);
    gw.still_serves().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_client_library_over_the_limit_is_queued_and_all_requests_are_served() {
    let mut gw = Gateway::start().await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let get = |path: &str| {
        Request::get(format!("http://{}{path}", gw.addr))
            .header("x-api-key", api_key())
            .body(Full::default())
            .unwrap()
    };
    // A first request, so the client has the gateway's settings before the burst.
    let first = client.request(get("/v1/me")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let burst: Vec<_> = (0..10).map(|_| client.request(get("/v1/slow"))).collect();
    let burst = tokio::spawn(futures_util::future::join_all(burst));
    for _ in 0..MAX_STREAMS {
        gw.arrivals.recv().await.unwrap();
    }
    gw.node.gate.add_permits(10);
    let responses = tokio::time::timeout(Duration::from_secs(10), burst)
        .await
        .expect("all answered in time")
        .unwrap();
    for resp in responses {
        let resp = resp.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    assert_eq!(gw.node.served.load(Ordering::SeqCst), 11);
    assert!(gw.node.max_in_flight.load(Ordering::SeqCst) <= MAX_STREAMS as usize);
    gw.stop().await;
}

#[tokio::test]
async fn rapid_reset_ends_the_connection_with_enhance_your_calm() {
    let gw = Gateway::start().await;
    let mut h2 = RawH2::connect(&gw.addr).await;
    // No credential: a stream that does get served is a 401, never a node call.
    let block = request_block("/v1/me", &[]);
    let mut flood = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
        flood.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    h2.flood(flood);
    assert_eq!(h2.goaway().await, ENHANCE_YOUR_CALM);
    assert_eq!(gw.node.served.load(Ordering::SeqCst), 0);
    gw.still_serves().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_flood_of_malformed_streams_ends_the_connection_with_enhance_your_calm() {
    let gw = Gateway::start().await;
    let mut h2 = RawH2::connect(&gw.addr).await;
    // `:method` only: no `:scheme`, no `:path`. Each one is a stream error the gateway must
    // answer with a reset of its own ("MadeYouReset"); past the limit it stops answering.
    let block = [0x82u8];
    let mut flood = Vec::new();
    for i in 0..1000u32 {
        flood.extend(frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, &block));
    }
    h2.flood(flood);
    assert_eq!(h2.goaway().await, ENHANCE_YOUR_CALM);
    gw.still_serves().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_header_list_over_the_limit_gets_431_and_no_node_call() {
    let gw = Gateway::start().await;
    let mut h2 = RawH2::connect(&gw.addr).await;
    let key = api_key();
    let big = "a".repeat(20 * 1024);
    let block = request_block("/v1/me", &[("x-api-key", &key), ("x-big", &big)]);
    // Frames are at most 16 KiB by default: HEADERS, then CONTINUATION.
    let (first, rest) = block.split_at(16 * 1024);
    let mut req = frame(HEADERS, END_STREAM, 1, first);
    req.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
    h2.send(&req).await;
    loop {
        let (kind, _, id, payload) = h2.next().await.expect("connection open");
        assert_ne!(kind, GOAWAY, "connection refused instead of the stream");
        if kind == HEADERS && id == 1 {
            assert!(is_status_431(&payload), "status 431 in {payload:?}");
            break;
        }
        if kind == RST_STREAM && id == 1 {
            panic!("stream reset ({}) instead of a 431", u32_of(&payload));
        }
    }
    assert_eq!(gw.node.served.load(Ordering::SeqCst), 0);
    drop(h2);
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_connection_gets_goaway_and_is_closed_after_the_idle_timeout() {
    let gw = Gateway::start_with(r#"idle_timeout = "1s""#).await;
    let mut h2 = RawH2::connect(&gw.addr).await;
    h2.served().await;
    // No request: the gateway says goodbye on its own, then closes.
    assert_eq!(h2.goaway().await, NO_ERROR);
    h2.closed().await;
    gw.still_serves().await;
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // hyper's own header-read timer must not be what closes it.
    let gw = Gateway::start_with("idle_timeout = \"1s\"\nheader_read_timeout = \"60s\"").await;
    let stream = TcpStream::connect(&gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("/v1/me")
        .header("host", "gw")
        .header("x-api-key", api_key())
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    // The connection is kept alive after the response, then closed by the gateway.
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the gateway closed the idle connection in time")
        .unwrap()
        .unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_connection_past_its_max_age_gets_goaway_and_its_in_flight_request_completes() {
    let mut gw = Gateway::start_with(r#"max_connection_age = "1s""#).await;
    let mut h2 = RawH2::connect(&gw.addr).await;
    h2.slow_request_held(&mut gw).await;
    // The request is held at the node while the connection reaches its age.
    assert_eq!(h2.goaway().await, NO_ERROR);
    gw.node.gate.add_permits(1);
    loop {
        let (kind, flags, id, payload) = h2.next().await.expect("connection open");
        assert_ne!(kind, RST_STREAM, "stream {id} reset");
        if kind == HEADERS {
            assert_eq!((id, payload.first()), (1, Some(&0x88)), ":status 200");
        }
        if (kind == DATA || kind == HEADERS) && flags & END_STREAM != 0 {
            assert_eq!(id, 1);
            break;
        }
        if kind == GOAWAY {
            // The final GOAWAY names stream 1 as processed.
            assert_eq!(u32_of(&payload) & 0x7fff_ffff, 1, "last stream id");
            assert_eq!(u32_of(&payload[4..]), NO_ERROR);
        }
    }
    h2.closed().await;
    assert_eq!(gw.node.served.load(Ordering::SeqCst), 1);
    gw.stop().await;
}

/// Sends `bytes` (an unfinished header block) and waits for the gateway to close the
/// connection; it may not do so before `header_read_timeout` (1 s here).
async fn closed_after_the_header_read_timeout(gw: &Gateway, bytes: &[u8]) {
    let mut h2 = RawH2::connect(&gw.addr).await;
    h2.served().await;
    let sent = Instant::now();
    h2.send(bytes).await;
    h2.closed().await;
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "closed before the header read timeout: {:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn an_unfinished_h2_header_block_closes_the_connection_after_the_header_read_timeout() {
    let gw = Gateway::start_with(r#"header_read_timeout = "1s""#).await;
    let key = api_key();
    let block = request_block("/v1/me", &[("x-api-key", &key)]);
    // HEADERS without END_HEADERS, and no CONTINUATION ever.
    closed_after_the_header_read_timeout(&gw, &frame(HEADERS, END_STREAM, 1, &block)).await;
    // HEADERS, then a CONTINUATION without END_HEADERS.
    let (first, rest) = block.split_at(block.len() / 2);
    let mut two = frame(HEADERS, END_STREAM, 1, first);
    two.extend(frame(CONTINUATION, 0, 1, rest));
    closed_after_the_header_read_timeout(&gw, &two).await;
    // A complete HEADERS frame header whose payload stops halfway.
    let whole = frame(HEADERS, END_STREAM | END_HEADERS, 1, &block);
    closed_after_the_header_read_timeout(&gw, &whole[..9 + block.len() / 2]).await;
    // Half a frame header.
    closed_after_the_header_read_timeout(&gw, &whole[..4]).await;
    assert_eq!(gw.node.served.load(Ordering::SeqCst), 0);
    gw.still_serves().await;
    gw.stop().await;
}

#[tokio::test]
async fn with_one_address_at_its_connection_cap_a_new_client_is_still_served() {
    const PER_IP: usize = 3;
    let gw = Gateway::start_with(&format!(
        "max_connections = {}\nmax_connections_per_ip = {PER_IP}",
        PER_IP + 1
    ))
    .await;
    let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut idle = Vec::new();
    for _ in 0..PER_IP {
        let mut h2 = RawH2::connect_from(here, &gw.addr).await;
        h2.served().await;
        idle.push(h2);
    }
    // One more from the same address is closed at once, without a settings frame.
    let mut over = RawH2::connect_from(here, &gw.addr).await;
    if let Some((kind, ..)) = over.next().await {
        panic!("a connection over the per-address cap was served (frame {kind})");
    }
    // Another client is served although 127.0.0.1 holds all it may.
    let stream = connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), &gw.addr).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("http://{}/v1/me", gw.addr))
        .header("x-api-key", api_key())
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("the other client was answered in time")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The idle connections at the cap are still open.
    for h2 in &mut idle {
        h2.send(&frame(PING, 0, 0, &[7; 8])).await;
        loop {
            let (kind, flags, _, payload) = h2.next().await.expect("connection open");
            if kind == PING && flags & ACK != 0 {
                assert_eq!(payload, [7; 8]);
                break;
            }
        }
    }
    drop(idle);
    gw.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_longer_than_the_idle_timeout_keeps_its_connection() {
    let mut gw = Gateway::start_with(r#"idle_timeout = "1s""#).await;
    let mut busy = RawH2::connect(&gw.addr).await;
    busy.slow_request_held(&mut gw).await;
    // A clock without sleeping: a connection opened after the request arrived is closed for
    // idleness, so the request has now been in flight for longer than the idle timeout.
    let mut clock = RawH2::connect(&gw.addr).await;
    assert_eq!(clock.goaway().await, NO_ERROR);
    clock.closed().await;
    gw.node.gate.add_permits(1);
    loop {
        let (kind, flags, id, payload) = busy.next().await.expect("connection open");
        assert_ne!(kind, GOAWAY, "goaway with a request in flight");
        assert_ne!(kind, RST_STREAM, "stream {id} reset");
        if kind == HEADERS {
            assert_eq!(payload.first(), Some(&0x88), ":status 200");
        }
        if (kind == DATA || kind == HEADERS) && flags & END_STREAM != 0 {
            break;
        }
    }
    // Idle again once the response is out.
    assert_eq!(busy.goaway().await, NO_ERROR);
    busy.closed().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_connection_past_its_max_age_is_dropped_when_a_request_outlasts_the_grace_time() {
    let mut gw = Gateway::start_with("max_connection_age = \"1s\"\nshutdown_grace = \"1s\"").await;
    let mut h2 = RawH2::connect(&gw.addr).await;
    h2.slow_request_held(&mut gw).await;
    assert_eq!(h2.goaway().await, NO_ERROR);
    // The node never answers: the connection is dropped once the grace time is over.
    h2.closed().await;
    assert_eq!(gw.node.served.load(Ordering::SeqCst), 0);
    gw.stop().await;
}

/// An upload refused before its body was read (declared length over the limit; a bad
/// credential) is answered with a complete response, and the stream is then reset with
/// `NO_ERROR` at most (RFC 9113 §8.1: the client stops sending and keeps the answer). A
/// `CANCEL` reset instead makes clients such as curl report a failed request rather than the
/// 413 or 401.
#[tokio::test]
async fn an_upload_refused_before_its_body_is_answered_without_a_stream_error() {
    let gw = Gateway::start().await;
    for (stream, credential, length, status) in [
        (1, api_key(), "999999999", b"413"),
        (3, "rk_h2lim001_wrong".to_owned(), "4096", b"401"),
    ] {
        let mut h2 = RawH2::connect(&gw.addr).await;
        let block = request_block(
            "/v1/workflows",
            &[("x-api-key", &credential), ("content-length", length)],
        );
        let mut req = frame(HEADERS, END_HEADERS, stream, &block);
        req.extend(frame(DATA, 0, stream, &[b'a'; 1024]));
        h2.send(&req).await;
        let (mut answered, mut complete) = (false, false);
        while let Some((kind, flags, id, payload)) = h2.next().await {
            if id != stream {
                continue;
            }
            match kind {
                HEADERS => {
                    // The status may be Huffman-coded in the head; the problem body below
                    // names it in plain text.
                    answered = true;
                    complete |= flags & END_STREAM != 0;
                }
                DATA => {
                    let text = String::from_utf8_lossy(&payload);
                    assert!(
                        text.contains(&format!(
                            "\"status\":{}",
                            std::str::from_utf8(status).unwrap()
                        )),
                        "{text}"
                    );
                    complete |= flags & END_STREAM != 0;
                }
                RST_STREAM => {
                    assert_eq!(
                        u32_of(&payload),
                        NO_ERROR,
                        "stream reset with an error (answered: {answered}, complete: {complete})"
                    );
                    assert!(complete, "reset before the whole answer");
                    break;
                }
                _ => {}
            }
            if complete {
                break;
            }
        }
        assert!(
            answered && complete,
            "no complete answer on stream {stream}"
        );
        // The reset that ends the unread upload goes out when the answer is done, before the
        // acknowledgement of a PING sent now (frames are ordered on the connection).
        h2.send(&frame(PING, 0, 0, &[7; 8])).await;
        while let Some((kind, flags, id, payload)) = h2.next().await {
            if kind == RST_STREAM && id == stream {
                assert_eq!(
                    u32_of(&payload),
                    NO_ERROR,
                    "stream reset with an error after the answer"
                );
            }
            if kind == PING && flags & ACK != 0 {
                break;
            }
        }
    }
    assert_eq!(gw.node.served.load(Ordering::SeqCst), 0);
    gw.stop().await;
}
