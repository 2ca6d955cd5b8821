//! The guard as hyper drives it: a scripted client stream delivered in arbitrary fragments,
//! read through the guard with arbitrary buffer sizes.

use std::collections::VecDeque;
use std::task::Waker;

use http_body_util::BodyExt;
use proptest::prelude::*;

use super::*;

/// A client stream that yields its fragments one read at a time, then EOF.
struct Script {
    fragments: VecDeque<Vec<u8>>,
}

impl AsyncRead for Script {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(front) = this.fragments.front_mut() {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                this.fragments.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// How reading through the guard ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    /// Pending with a stalled guard (after a stand-in head).
    Stalled,
    Error(io::ErrorKind),
}

fn guarded(fragments: Vec<Vec<u8>>) -> Guarded<Script> {
    let script = Script {
        fragments: fragments.into(),
    };
    let limits = GuardLimits {
        max_header_bytes: 8 * 1024,
        header_read_timeout: Duration::from_secs(10),
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    guard(script, (), Mode::Http1, limits, peer).0
}

/// Reads everything hyper would get, `read_size` bytes at a time.
fn drain(g: &mut Guarded<Script>, read_size: usize) -> (Vec<u8>, End) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut chunk = vec![0u8; read_size];
    loop {
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut *g).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return (out, End::Eof),
            Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
            Poll::Ready(Err(e)) => return (out, End::Error(e.kind())),
            Poll::Pending => {
                assert_eq!(g.phase, Phase::Stalled, "pending only when stalled");
                return (out, End::Stalled);
            }
        }
    }
}

/// Splits `bytes` at the given (sorted, deduplicated) cut points.
fn fragment(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        if p > at {
            out.push(bytes[at..p].to_vec());
            at = p;
        }
    }
    out
}

#[test]
fn valid_pipelined_requests_pass_unchanged() {
    let input = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n\
                  POST /a HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello\
                  POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n"
        .to_vec();
    let mut g = guarded(vec![input.clone()]);
    assert_eq!(drain(&mut g, 7), (input, End::Eof));
    assert_eq!(g.framing.requests(), 3);
    assert_eq!(g.shared.refused.load(Ordering::Relaxed), 0);
}

#[test]
fn a_refused_head_is_replaced_by_the_stand_in_and_nothing_after_it_is_read() {
    let good = b"GET /first HTTP/1.1\r\n\r\n".to_vec();
    let mut input = good.clone();
    input.extend_from_slice(
        b"POST / HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    );
    let mut g = guarded(vec![input]);
    let (out, end) = drain(&mut g, 64);
    let mut expected = good;
    expected.extend_from_slice(STAND_IN_HEAD);
    assert_eq!(out, expected);
    assert_eq!(end, End::Stalled);
    assert_eq!(
        g.shared.refusal_for(2),
        Some(Refusal::LengthAndTransferEncoding)
    );
    assert_eq!(g.shared.refusal_for(1), None);
}

#[test]
fn a_refused_chunk_fails_the_read_after_the_valid_bytes() {
    let valid = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n".to_vec();
    let mut input = valid.clone();
    input.extend_from_slice(b"4x\r\nwxyz\r\n0\r\n\r\n");
    let mut g = guarded(vec![input]);
    let (out, end) = drain(&mut g, 1024);
    assert_eq!(out, valid);
    assert_eq!(end, End::Error(io::ErrorKind::InvalidData));
    assert_eq!(g.shared.refusal_for(1), Some(Refusal::InvalidChunk));
}

#[test]
fn an_unfinished_head_at_eof_is_dropped() {
    let mut g = guarded(vec![
        b"GET / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-enc".to_vec()
    ]);
    assert_eq!(drain(&mut g, 64), (Vec::new(), End::Eof));
}

#[test]
fn an_oversized_head_passes_through_for_hyper_to_refuse() {
    let mut input = format!("GET / HTTP/1.1\r\nx-big: {}\r\n", "a".repeat(9000)).into_bytes();
    input.extend_from_slice(b"content-length: 1\r\ntransfer-encoding: chunked\r\n\r\nX");
    let mut g = guarded(fragment(&input, &[100, 5000, 8191, 8192, 8193]));
    assert_eq!(drain(&mut g, 4096), (input, End::Eof));
    assert!(
        g.buf.len() <= INITIAL_BUFFER,
        "the buffer grown for the head shrinks back"
    );
}

const PREFACE_BYTES: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn poll_protocol_now(g: &mut Guarded<Script>) -> Protocol {
    let mut cx = Context::from_waker(Waker::noop());
    match g.poll_protocol(&mut cx) {
        Poll::Ready(Ok(p)) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_first_bytes_tell_the_protocol_and_stay_for_hyper() {
    let preface = PREFACE_BYTES.to_vec();
    let (a, b) = preface.split_at(5);
    let mut g = guarded(vec![a.to_vec(), b.to_vec(), b"frames".to_vec()]);
    assert_eq!(poll_protocol_now(&mut g), Protocol::Http2);
    let mut all = preface.clone();
    all.extend_from_slice(b"frames");
    assert_eq!(drain(&mut g, 7), (all, End::Eof));

    for first in [&b"GE"[..], b"PRX", b"PRI * HTTP/1.1"] {
        let mut input = first.to_vec();
        input.extend_from_slice(b"T / HTTP/1.1\r\n\r\n");
        let mut g = guarded(vec![first.to_vec(), input[first.len()..].to_vec()]);
        assert_eq!(poll_protocol_now(&mut g), Protocol::Http1, "{first:?}");
        let (out, _) = drain(&mut g, 64);
        if first != b"PRI * HTTP/1.1" {
            assert_eq!(out, input, "{first:?}");
        }
    }
    // A client that closes at once: HTTP/1, and hyper sees the end.
    let mut g = guarded(Vec::new());
    assert_eq!(poll_protocol_now(&mut g), Protocol::Http1);
    assert_eq!(drain(&mut g, 64), (Vec::new(), End::Eof));
}

/// Reads exactly `n` bytes through the guard, as hyper would.
fn read_exactly(g: &mut Guarded<Script>, n: usize) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    while out.len() < n {
        let mut chunk = vec![0u8; n - out.len()];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut *g).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => out.extend_from_slice(buf.filled()),
            other => panic!("{other:?} after {} bytes", out.len()),
        }
    }
    out
}

/// One read through the guard: the bytes, or empty at the end of the stream.
fn read_once(g: &mut Guarded<Script>) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut chunk = vec![0u8; 4096];
    let mut buf = ReadBuf::new(&mut chunk);
    match Pin::new(&mut *g).poll_read(&mut cx, &mut buf) {
        Poll::Ready(Ok(())) => buf.filled().to_vec(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn parking_happens_only_between_requests_with_nothing_held() {
    let req = b"GET /a HTTP/1.1\r\nhost: a\r\n\r\n".to_vec();
    // Before any request: declined (a first head is under the header-read timeout).
    let mut g = guarded(vec![req.clone(), req.clone()]);
    g.parking().request();
    assert_eq!(read_exactly(&mut g, req.len()), req);
    assert!(!g.take_parked());

    // After one: hyper's next read is an end of stream, and the guard reads on afterwards
    // (the next request, untouched) once taken back.
    g.parking().request();
    assert!(read_once(&mut g).is_empty(), "parked: an end of stream");
    assert!(g.take_parked());
    assert!(!g.take_parked(), "taken once");
    assert_eq!(read_exactly(&mut g, req.len()), req);

    // Half a head held after a request: declined, and the head arrives whole.
    let (half, rest) = req.split_at(10);
    let mut first = req.clone();
    first.extend_from_slice(half);
    let mut g = guarded(vec![first, rest.to_vec()]);
    assert_eq!(read_exactly(&mut g, req.len()), req);
    g.parking().request();
    assert_eq!(read_exactly(&mut g, req.len()), req);
    assert!(!g.take_parked());

    // Inside a body: declined.
    let post = b"POST / HTTP/1.1\r\ncontent-length: 4\r\n\r\n".to_vec();
    let mut g = guarded(vec![post.clone(), b"ab".to_vec(), b"cd".to_vec()]);
    assert_eq!(
        read_exactly(&mut g, post.len() + 2),
        [&post[..], b"ab"].concat()
    );
    g.parking().request();
    assert_eq!(read_exactly(&mut g, 2), b"cd");
    assert!(!g.take_parked());
}

#[test]
fn a_request_that_starts_drops_a_pending_ask_to_park() {
    let req = b"GET /a HTTP/1.1\r\n\r\n".to_vec();
    let script = Script {
        fragments: vec![req.clone(), req.clone()].into(),
    };
    let limits = GuardLimits {
        max_header_bytes: 8 * 1024,
        header_read_timeout: Duration::from_secs(10),
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let (mut g, svc) = guard(script, Ok200, Mode::Http1, limits, peer);
    assert_eq!(read_exactly(&mut g, req.len()), req);
    // Asked to park, then a request is dispatched before hyper reads again: hyper's reads
    // while that request is in flight must not see an end of stream.
    g.parking().request();
    drop(svc.call(Request::new(())));
    assert_eq!(read_exactly(&mut g, req.len()), req);
    assert!(!g.take_parked());
}

/// Bytes hyper had read but not used come first when the guard is read again.
#[test]
fn given_back_bytes_are_read_first() {
    let req = b"GET /a HTTP/1.1\r\n\r\n".to_vec();
    let mut g = guarded(vec![req.clone(), req.clone()]);
    assert_eq!(read_exactly(&mut g, req.len()), req);
    g.give_back(b"GET /b");
    let (out, end) = drain(&mut g, 5);
    assert_eq!(out, [&b"GET /b"[..], &req[..]].concat());
    assert_eq!(end, End::Eof);
}

#[tokio::test]
async fn a_partial_head_times_out() {
    let (mut client, server) = tokio::io::duplex(1024);
    let limits = GuardLimits {
        max_header_bytes: 1024,
        header_read_timeout: Duration::from_millis(50),
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let (mut g, _) = guard(server, (), Mode::Http1, limits, peer);
    tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\nhost:")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    // The client stays connected and silent; only the guard's deadline ends the read.
    let err = tokio::io::AsyncReadExt::read(&mut g, &mut buf)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// An HTTP/2 frame of `kind` with `flags` on stream 1 and a `len`-byte payload.
fn h2_frame(kind: u8, flags: u8, len: u8) -> Vec<u8> {
    let mut f = vec![0, 0, len, kind, flags, 0, 0, 0, 1];
    f.resize(9 + usize::from(len), 0x82);
    f
}

/// An HTTP/2 connection through the guard (by preface on plain TCP, or by ALPN) whose
/// client sent `sent` and then stays connected and silent.
async fn h2_guard(
    mode: Mode,
    sent: &[u8],
) -> (tokio::io::DuplexStream, Guarded<tokio::io::DuplexStream>) {
    let (mut client, server) = tokio::io::duplex(1024);
    let limits = GuardLimits {
        max_header_bytes: 1024,
        header_read_timeout: Duration::from_millis(50),
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let (g, _) = guard(server, (), mode, limits, peer);
    tokio::io::AsyncWriteExt::write_all(&mut client, sent)
        .await
        .unwrap();
    (client, g)
}

/// Reads what the client sent (unchanged), then waits for the guard to end the read.
async fn h2_read_until_timeout(g: &mut Guarded<tokio::io::DuplexStream>, sent: &[u8]) {
    let mut got = vec![0u8; sent.len()];
    tokio::io::AsyncReadExt::read_exact(g, &mut got)
        .await
        .unwrap();
    assert_eq!(got, sent, "the bytes pass unchanged");
    let mut buf = [0u8; 64];
    // A guard against a hang, not a timing assertion.
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(g, &mut buf),
    )
    .await
    .expect("the guard ended the read")
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test]
async fn an_unfinished_h2_header_block_times_out() {
    const HEADERS: u8 = 0x1;
    const CONTINUATION: u8 = 0x9;
    const END_HEADERS: u8 = 0x4;
    let open = [H2_HELLO, &h2_frame(HEADERS, 0, 10)].concat();
    let continued = [
        H2_HELLO,
        &h2_frame(HEADERS, 0, 10),
        &h2_frame(CONTINUATION, 0, 5),
    ]
    .concat();
    let whole = [H2_HELLO, &h2_frame(HEADERS, END_HEADERS, 20)].concat();
    let partial_payload = &whole[..whole.len() - 7];
    let partial_frame_header = &whole[..H2_HELLO.len() + 5];
    for mode in [Mode::Http1, Mode::PassThrough] {
        for sent in [&open[..], &continued, partial_payload, partial_frame_header] {
            let (_client, mut g) = h2_guard(mode, sent).await;
            h2_read_until_timeout(&mut g, sent).await;
        }
    }
}

#[tokio::test]
async fn a_finished_h2_header_block_arms_no_deadline() {
    const HEADERS: u8 = 0x1;
    const CONTINUATION: u8 = 0x9;
    const DATA: u8 = 0x0;
    const END_HEADERS: u8 = 0x4;
    let sent = [
        H2_HELLO,
        &h2_frame(HEADERS, 0, 10),
        &h2_frame(CONTINUATION, END_HEADERS, 5),
        // A body frame received in part is not a header block.
        &h2_frame(DATA, 0, 40)[..20],
    ]
    .concat();
    for mode in [Mode::Http1, Mode::PassThrough] {
        let (_client, mut g) = h2_guard(mode, &sent).await;
        let mut got = vec![0u8; sent.len()];
        tokio::io::AsyncReadExt::read_exact(&mut g, &mut got)
            .await
            .unwrap();
        assert_eq!(got, sent);
        let mut cx = Context::from_waker(Waker::noop());
        let mut chunk = [0u8; 16];
        let mut buf = ReadBuf::new(&mut chunk);
        assert!(Pin::new(&mut g).poll_read(&mut cx, &mut buf).is_pending());
        assert!(
            g.deadline.sleep.is_none(),
            "{mode:?}: no deadline is running"
        );
    }
}

/// A service that answers 200 with a request id, for the wrapper tests.
#[derive(Clone)]
struct Ok200;

impl Service<Request<()>> for Ok200 {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn call(&self, _req: Request<()>) -> Self::Future {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
        resp.headers_mut()
            .insert(REQUEST_ID, HeaderValue::from_static("req-7"));
        std::future::ready(Ok(resp))
    }
}

async fn body_json<B>(resp: Response<B>) -> serde_json::Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn the_service_answers_the_stand_in_and_replaces_a_refused_body() {
    let shared = Arc::new(Shared::default());
    let svc = GuardedService {
        inner: Ok200,
        shared: Arc::clone(&shared),
    };
    // Request 1 is served; request 2 is the stand-in for a refused head.
    shared.refuse(2, Refusal::LengthAndTransferEncoding);
    let first = svc.call(Request::new(())).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(matches!(first.body(), Either::Left(_)));
    let second = svc.call(Request::new(())).await.unwrap();
    assert_eq!(second.status(), 400);
    assert_eq!(second.headers()[CONNECTION], "close");
    assert_eq!(
        second.headers()[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let id = second.headers()[REQUEST_ID].to_str().unwrap().to_owned();
    let problem = body_json(second).await;
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["title"], "Bad Request");
    assert_eq!(
        problem["detail"],
        Refusal::LengthAndTransferEncoding.detail()
    );
    assert_eq!(problem["request_id"], id.as_str());
    assert!(problem["type"].as_str().unwrap().ends_with(":bad_request"));

    // A body refused while request 3 is served: its answer becomes the 400, same request id.
    let third = svc.call(Request::new(()));
    shared.refuse(3, Refusal::InvalidChunk);
    let third = third.await.unwrap();
    assert_eq!(third.status(), 400);
    assert_eq!(third.headers()[REQUEST_ID], "req-7");
    assert_eq!(
        body_json(third).await["detail"],
        Refusal::InvalidChunk.detail()
    );
}

/// One valid request: method, path, extra headers, and a body that is absent, sized or
/// chunked (chunks with optional extensions, optional trailers).
fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    let headers = proptest::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,16}"), 0..6);
    let chunks = proptest::collection::vec(
        (
            proptest::collection::vec(any::<u8>(), 1..40),
            proptest::option::of(";[a-z]{1,5}(=[a-z0-9]{1,5})?"),
        ),
        0..4,
    );
    let trailers = proptest::collection::vec(("x-[a-z]{1,8}", "[!-~]{0,10}"), 0..3);
    let body = prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| Some((Some(b), None))),
        (chunks, trailers).prop_map(|c| Some((None, Some(c)))),
    ];
    (
        prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")],
        "/[a-z0-9/]{0,20}",
        headers,
        body,
        any::<bool>(),
    )
        .prop_map(|(method, path, headers, body, upper)| {
            let mut out = format!("{method} {path} HTTP/1.1\r\nhost: gw\r\n").into_bytes();
            for (k, v) in &headers {
                out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            match body {
                None => out.extend_from_slice(b"\r\n"),
                Some((Some(sized), _)) => {
                    let name = if upper {
                        "Content-Length"
                    } else {
                        "content-length"
                    };
                    out.extend_from_slice(format!("{name}: {}\r\n\r\n", sized.len()).as_bytes());
                    out.extend_from_slice(&sized);
                }
                Some((None, Some((chunks, trailers)))) => {
                    let name = if upper {
                        "Transfer-Encoding: Chunked"
                    } else {
                        "transfer-encoding: chunked"
                    };
                    out.extend_from_slice(format!("{name}\r\n\r\n").as_bytes());
                    for (data, ext) in chunks {
                        let ext = ext.unwrap_or_default();
                        out.extend_from_slice(format!("{:x}{ext}\r\n", data.len()).as_bytes());
                        out.extend_from_slice(&data);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n");
                    for (k, v) in trailers {
                        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                }
                Some((None, None)) => unreachable!("strategy makes one of the two"),
            }
            out
        })
}

/// A head carrying both framings, in any order and spelling, among other fields.
fn cl_and_te_head() -> impl Strategy<Value = Vec<u8>> {
    let cl_name = prop_oneof![
        Just("content-length"),
        Just("Content-Length"),
        Just("CONTENT-LENGTH")
    ];
    let te_name = prop_oneof![
        Just("transfer-encoding"),
        Just("Transfer-Encoding"),
        Just("TRANSFER-encoding")
    ];
    let te_value = prop_oneof![
        Just("chunked"),
        Just("Chunked"),
        Just("chunked, identity"),
        Just("identity, chunked"),
        Just("gzip"),
        Just("chunked\t"),
    ];
    let others = proptest::collection::vec(("x-[a-z]{1,8}", "[a-z0-9]{0,8}"), 0..4);
    (
        cl_name,
        0u32..100_000,
        te_name,
        te_value,
        any::<bool>(),
        others,
        0usize..5,
    )
        .prop_map(|(cl, len, te, tev, te_first, others, at)| {
            let mut fields: Vec<String> = others.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let (a, b) = (format!("{cl}: {len}"), format!("{te}: {tev}"));
            let (first, second) = if te_first { (b, a) } else { (a, b) };
            let at = at.min(fields.len());
            fields.insert(at, second);
            fields.insert(at, first);
            format!(
                "POST /x HTTP/1.1\r\nhost: gw\r\n{}\r\n\r\n",
                fields.join("\r\n")
            )
            .into_bytes()
        })
}

proptest! {
    #[test]
    fn valid_requests_in_any_fragmentation_pass_unchanged(
        requests in proptest::collection::vec(valid_request(), 1..5),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        read_size in 1usize..5000,
    ) {
        let input: Vec<u8> = requests.concat();
        let mut g = guarded(fragment(&input, &cuts));
        let (out, end) = drain(&mut g, read_size);
        prop_assert_eq!(end, End::Eof);
        prop_assert!(out == input, "output differs from input");
        prop_assert_eq!(g.framing.requests(), requests.len() as u64);
        prop_assert_eq!(g.shared.refused.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn cl_and_te_is_always_refused_and_never_reaches_hyper(
        before in proptest::collection::vec(valid_request(), 0..3),
        bad in cl_and_te_head(),
        after in valid_request(),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        read_size in 1usize..5000,
    ) {
        let prefix: Vec<u8> = before.concat();
        let mut input = prefix.clone();
        input.extend_from_slice(&bad);
        input.extend_from_slice(&after);
        let mut g = guarded(fragment(&input, &cuts));
        let (out, end) = drain(&mut g, read_size);
        let mut expected = prefix;
        expected.extend_from_slice(STAND_IN_HEAD);
        prop_assert_eq!(end, End::Stalled);
        prop_assert!(out == expected, "hyper got more than the valid requests and the stand-in");
        prop_assert_eq!(
            g.shared.refusal_for(before.len() as u64 + 1),
            Some(Refusal::LengthAndTransferEncoding)
        );
    }
}

/// A client that sends its fragments, one per read, then waits (a keep-alive client between
/// requests).
struct Waiting {
    fragments: VecDeque<Vec<u8>>,
}

impl AsyncRead for Waiting {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().fragments.pop_front() {
            Some(f) => {
                buf.put_slice(&f);
                Poll::Ready(Ok(()))
            }
            None => Poll::Pending,
        }
    }
}

/// Reads until the guard is pending; what hyper got.
fn until_pending(g: &mut Guarded<Waiting>) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut *g).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => return out,
        }
    }
}

#[tokio::test]
async fn an_idle_connection_holds_no_read_buffer_and_a_partial_head_is_kept() {
    let head = b"GET /v1/me HTTP/1.1\r\nhost: a\r\n\r\n";
    let limits = GuardLimits {
        max_header_bytes: 8 * 1024,
        header_read_timeout: Duration::from_secs(10),
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let io = Waiting {
        fragments: vec![head.to_vec()].into(),
    };
    let (mut g, _) = guard(io, (), Mode::Http1, limits, peer);
    // The whole first request reaches hyper, then the client waits: nothing is buffered, and
    // the buffer is gone.
    assert_eq!(until_pending(&mut g), head);
    assert_eq!(
        g.buf.capacity(),
        0,
        "an idle connection kept its read buffer"
    );
    // A partial head is held (not released to hyper, not dropped) while the client waits.
    g.io.fragments.push_back(head[..10].to_vec());
    assert_eq!(until_pending(&mut g), b"");
    assert!(g.buf.capacity() > 0);
    g.io.fragments.push_back(head[10..].to_vec());
    assert_eq!(until_pending(&mut g), head);
    assert_eq!(g.buf.capacity(), 0);
}
