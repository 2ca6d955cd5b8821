//! End-to-end tests of the request-smuggling guard (SPEC §5: "request smuggling (CL+TE) →
//! 400"): a real gateway on 127.0.0.1:0 in front of a fake region node, spoken to over a raw
//! `TcpStream` so the exact bytes on the wire are under the test's control.
//!
//! Every request carries a valid API key of a routable tenant, so without the guard each one
//! would reach the node; the node counts only requests whose body arrived complete.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use residency_gateway::Listeners;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "0190a5c4-0000-7000-8000-00000000051e";

fn api_key() -> String {
    format!("rk_smug0001_{}", "s".repeat(40))
}

/// Requests that reached the fake node with a complete body: `"{method} {path} {body}"`.
type Seen = Arc<Mutex<Vec<String>>>;

/// A fake region node: answers `"{method} {path} {body length}"`, records complete requests.
async fn fake_node() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Seen::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let record = Arc::clone(&record);
                    async move {
                        let line = format!("{} {}", req.method(), req.uri().path());
                        // The gateway's active health checks are not proxied requests.
                        if req.uri().path() == "/readyz" {
                            return Ok(Response::new(Full::new(Bytes::new())));
                        }
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        match req.into_body().collect().await {
                            Ok(body) => {
                                let body = body.to_bytes();
                                let text = String::from_utf8_lossy(&body).into_owned();
                                record.lock().unwrap().push(format!("{line} {text}"));
                                *resp.body_mut() =
                                    Full::new(Bytes::from(format!("{line} {}", body.len())));
                            }
                            Err(_) => *resp.status_mut() = http::StatusCode::BAD_REQUEST,
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

/// Variations of the gateway's config.
#[derive(Default)]
struct Options {
    /// Lines for `[limits]`.
    limits: &'static str,
    /// Serve HTTPS with a fresh self-signed certificate for `localhost`.
    tls: bool,
}

struct Gateway {
    addr: String,
    /// The certificate when serving HTTPS.
    cert: Option<CertificateDer<'static>>,
    node: Seen,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    async fn start_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = opts.tls.then(|| {
            let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            std::fs::write(dir.path().join("cert.pem"), key.cert.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), key.signing_key.serialize_pem()).unwrap();
            key.cert.der().clone()
        });
        let tls = if opts.tls {
            "[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n"
        } else {
            ""
        };
        let (node_url, node) = fake_node().await;
        // No identity provider is needed: every request uses the tenant's API key.
        std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
        std::fs::write(dir.path().join("eu.key"), [5u8; 32]).unwrap();
        std::fs::write(
            dir.path().join("directory.toml"),
            format!(
                r#"
[[tenants]]
id = "{TENANT}"
region = "eu"
tier = "scale"
status = "active"
[[api_keys]]
id = "key-smug-1"
tenant = "{TENANT}"
prefix = "smug0001"
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

{tls}
[[issuers]]
issuer = "https://idp.test/"
audience = "residency-api"
jwks_file = "jwks.json"

[directory]
source = "file"
path = "directory.toml"

[limits]
{limits}

[[regions]]
id = "eu"
upstreams = ["{node_url}"]
assertion = {{ kid = "eu-1", key_file = "eu.key" }}
"#,
                limits = opts.limits,
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
            cert,
            node,
            shutdown,
            task,
            _dir: dir,
        }
    }

    fn node_requests(&self) -> Vec<String> {
        self.node.lock().unwrap().clone()
    }

    /// Writes `fragments` in order on one connection and reads until the gateway closes it.
    async fn exchange(&self, fragments: &[&[u8]]) -> Vec<Answer> {
        exchange_on(TcpStream::connect(&self.addr).await.unwrap(), fragments).await
    }

    /// A TLS connection to the gateway offering only the ALPN protocol `alpn`.
    async fn tls_connect(&self, alpn: &[u8]) -> TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert.clone().expect("started with tls"))
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(&self.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        tls
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("gateway drained in time")
            .unwrap()
            .unwrap();
    }
}

/// Writes `fragments` in order on `stream` and reads until the gateway closes it.
async fn exchange_on<S>(mut stream: S, fragments: &[&[u8]]) -> Vec<Answer>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for f in fragments {
        stream.write_all(f).await.unwrap();
        stream.flush().await.unwrap();
    }
    let mut raw = Vec::new();
    // A guard against a hang, not a timing assertion: every exchange ends with the gateway
    // closing the connection.
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the gateway closed the connection");
    if let Err(e) = read {
        // A TLS peer that closes without close_notify; what was read is what counts.
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    parse_answers(&raw)
}

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body).expect("problem+json body")
    }
}

/// Splits a connection's bytes into responses (bodies framed by `content-length`, the only
/// framing the gateway uses for these answers).
fn parse_answers(mut raw: &[u8]) -> Vec<Answer> {
    let mut answers = Vec::new();
    while !raw.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = resp.parse(raw).expect("a response head") else {
            panic!("truncated response: {:?}", String::from_utf8_lossy(raw));
        };
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("content-length");
        answers.push(Answer {
            status: resp.code.unwrap(),
            headers,
            body: raw[head..head + len].to_vec(),
        });
        raw = &raw[head + len..];
    }
    answers
}

/// A request head with the tenant's key and `fields` (CRLF-separated) added.
fn head(method_path: &str, fields: &str) -> String {
    let fields = if fields.is_empty() {
        String::new()
    } else {
        format!("{fields}\r\n")
    };
    format!(
        "{method_path} HTTP/1.1\r\nhost: gw\r\nx-api-key: {}\r\n{fields}\r\n",
        api_key()
    )
}

fn assert_refused(answers: &[Answer], case: &str) {
    assert_eq!(answers.len(), 1, "{case}: {answers:?}");
    let a = &answers[0];
    assert_eq!(a.status, 400, "{case}: {a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{case}");
    let p = a.problem();
    assert_eq!(p["status"], 400, "{case}");
    assert_eq!(p["title"], "Bad Request", "{case}");
    assert!(p["type"].as_str().is_some_and(|t| !t.is_empty()), "{case}");
    assert!(
        p["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{case}"
    );
    assert_eq!(p["request_id"].as_str(), a.header("x-request-id"), "{case}");
}

#[tokio::test]
async fn ambiguous_framing_gets_a_400_problem_closes_and_never_reaches_the_node() {
    let gw = Gateway::start().await;
    let smuggled = head("GET /v1/smuggled", "");
    let cases = [
        (
            "CL then TE",
            "content-length: 5\r\ntransfer-encoding: chunked",
            "0\r\n\r\n",
        ),
        (
            "TE then CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 5",
            "0\r\n\r\n",
        ),
        (
            "TE chunked, identity",
            "transfer-encoding: chunked, identity",
            "0\r\n\r\n",
        ),
        (
            "duplicate differing CL",
            "content-length: 5\r\ncontent-length: 27",
            "hello",
        ),
        ("CL list", "content-length: 5, 27", "hello"),
        (
            "TE obfuscated",
            "transfer-encoding: xchunked\r\ncontent-length: 5",
            "hello",
        ),
        (
            "whitespace before colon",
            "transfer-encoding : chunked",
            "0\r\n\r\n",
        ),
        (
            "obs-fold",
            "x-a: 1\r\n transfer-encoding: chunked",
            "0\r\n\r\n",
        ),
    ];
    for (case, fields, body) in cases {
        let req = format!("{}{body}{smuggled}", head("POST /v1/workflows", fields));
        let answers = gw.exchange(&[req.as_bytes()]).await;
        assert_refused(&answers, case);
    }
    assert_eq!(gw.node_requests(), Vec::<String>::new());
    gw.stop().await;
}

#[tokio::test]
async fn a_refusal_after_a_good_request_answers_both_in_order() {
    let gw = Gateway::start().await;
    let good = head("GET /v1/me", "");
    let bad = head(
        "POST /v1/workflows",
        "transfer-encoding: chunked\r\ncontent-length: 3",
    );
    let req = format!("{good}{bad}0\r\n\r\n{}", head("GET /v1/smuggled", ""));
    let answers = gw.exchange(&[req.as_bytes()]).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].text(), "GET /v1/me 0");
    assert_refused(&answers[1..], "after a good request");
    assert_eq!(gw.node_requests(), ["GET /v1/me "]);
    gw.stop().await;
}

#[tokio::test]
async fn a_pipelined_keep_alive_sequence_is_answered_in_order() {
    let gw = Gateway::start().await;
    let sequence = format!(
        "{}hello{}3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: t\r\n\r\n{}",
        head("POST /v1/a", "content-length: 5"),
        head("POST /v1/b", "transfer-encoding: chunked"),
        head("GET /v1/c", "connection: close"),
    );
    // Once in one write, once in 7-byte pieces (heads and chunk lines split anywhere).
    let pieces: Vec<&[u8]> = sequence.as_bytes().chunks(7).collect();
    for fragments in [vec![sequence.as_bytes()], pieces] {
        let answers = gw.exchange(&fragments).await;
        let got: Vec<(u16, String)> = answers.iter().map(|a| (a.status, a.text())).collect();
        assert_eq!(
            got,
            [
                (200, "POST /v1/a 5".to_owned()),
                (200, "POST /v1/b 5".to_owned()),
                (200, "GET /v1/c 0".to_owned()),
            ]
        );
    }
    assert_eq!(
        gw.node_requests(),
        [
            "POST /v1/a hello",
            "POST /v1/b abcde",
            "GET /v1/c ",
            "POST /v1/a hello",
            "POST /v1/b abcde",
            "GET /v1/c ",
        ]
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_invalid_chunk_size_line_gets_a_400_and_the_node_no_complete_request() {
    let gw = Gateway::start().await;
    for (case, body) in [
        ("not hex", "zz\r\nhello\r\n0\r\n\r\n"),
        ("bare LF", "5\nhello\r\n0\r\n\r\n"),
        ("missing data CRLF", "5\r\nhelloXX0\r\n\r\n"),
    ] {
        let req = format!(
            "{}{body}{}",
            head("POST /v1/workflows", "transfer-encoding: chunked"),
            head("GET /v1/smuggled", "")
        );
        let answers = gw.exchange(&[req.as_bytes()]).await;
        assert_refused(&answers, case);
    }
    assert_eq!(gw.node_requests(), Vec::<String>::new());
    gw.stop().await;
}

#[tokio::test]
async fn a_head_with_too_many_fields_is_left_to_hyper_431() {
    let gw = Gateway::start().await;
    let mut fields: Vec<String> = (0..120).map(|i| format!("x-f{i}: {i}")).collect();
    fields.push("content-length: 5\r\ntransfer-encoding: chunked".to_owned());
    let req = format!(
        "{}0\r\n\r\n{}",
        head("POST /v1/workflows", &fields.join("\r\n")),
        head("GET /v1/smuggled", "")
    );
    let answers = gw.exchange(&[req.as_bytes()]).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].status, 431);
    assert_eq!(gw.node_requests(), Vec::<String>::new());
    gw.stop().await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_half_a_head_is_closed_at_the_deadline() {
    let gw = Gateway::start_with(Options {
        limits: "header_read_timeout = \"1s\"",
        ..Options::default()
    })
    .await;
    let half = "POST /v1/workflows HTTP/1.1\r\ncontent-length: 5\r\ntransfer-enc";
    for sent in ["", half] {
        // The client stays connected and silent; only the deadline ends the exchange.
        let answers = gw.exchange(&[sent.as_bytes()]).await;
        assert!(
            answers.iter().all(|a| a.status == 408),
            "{sent:?}: {answers:?}"
        );
    }
    assert_eq!(gw.node_requests(), Vec::<String>::new());
    gw.stop().await;
}

#[tokio::test]
async fn over_tls_http1_is_guarded_and_h2_passes_through() {
    let gw = Gateway::start_with(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    // ALPN http/1.1: inspected like plain TCP.
    let bad = format!(
        "{}0\r\n\r\n{}",
        head(
            "POST /v1/workflows",
            "content-length: 5\r\ntransfer-encoding: chunked"
        ),
        head("GET /v1/smuggled", "")
    );
    let answers = exchange_on(gw.tls_connect(b"http/1.1").await, &[bad.as_bytes()]).await;
    assert_refused(&answers, "tls http/1.1");
    let good = format!(
        "{}5\r\nhello\r\n0\r\n\r\n",
        head(
            "POST /v1/workflows",
            "transfer-encoding: chunked\r\nconnection: close"
        )
    );
    let answers = exchange_on(gw.tls_connect(b"http/1.1").await, &[good.as_bytes()]).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].text(), "POST /v1/workflows 5");

    // ALPN h2: not inspected; requests work.
    let tls = gw.tls_connect(b"h2").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post("https://localhost/v1/workflows")
        .header("x-api-key", api_key())
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "POST /v1/workflows 5");
    drop(sender);
    assert_eq!(
        gw.node_requests(),
        ["POST /v1/workflows hello", "POST /v1/workflows hello"]
    );
    gw.stop().await;
}

#[tokio::test]
async fn over_tls_h2_an_unfinished_header_block_is_closed_at_the_deadline() {
    let gw = Gateway::start_with(Options {
        limits: "header_read_timeout = \"1s\"",
        tls: true,
    })
    .await;
    // Preface, empty SETTINGS, then HEADERS on stream 1 without END_HEADERS (and a header
    // block fragment: `:method GET`), and no CONTINUATION ever.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0, 0, 1, 0x1, 0x1, 0, 0, 0, 1, 0x82]);
    let mut tls = gw.tls_connect(b"h2").await;
    let sent = std::time::Instant::now();
    tls.write_all(&hello).await.unwrap();
    let mut buf = [0u8; 4096];
    loop {
        // A guard against a hang, not a timing assertion.
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("the gateway closed the connection in time");
        match read {
            Ok(0) | Err(_) => break,
            // The gateway's SETTINGS and its acknowledgement of ours.
            Ok(_) => {}
        }
    }
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "closed before the deadline: {:?}",
        sent.elapsed()
    );
    assert_eq!(gw.node_requests(), Vec::<String>::new());
    gw.stop().await;
}
