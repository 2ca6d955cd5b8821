//! End to end (real gateway, real region nodes, real Postgres): what the public listener
//! forwards and to whom. Only the customer API (`/v1/…`) is ever proxied; a node's
//! `/internal/…`, `/metrics`, `/healthz` and `/readyz` are unreachable through the gateway;
//! reserved identities in an external credential are refused at the gateway; and a body over
//! the limit is a 413 whatever its framing, without the node storing a truncated body.

use http::{Method, StatusCode};
use integration_tests::gateway::Stack;
use integration_tests::Response;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn assert_problem(r: &Response, status: StatusCode) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{r:?}"
    );
    assert_eq!(r.json["status"], status.as_u16(), "{r:?}");
    assert_eq!(
        r.json["request_id"].as_str(),
        r.headers["x-request-id"].to_str().ok(),
        "{r:?}"
    );
}

async fn public_call(
    s: &Stack,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> Response {
    integration_tests::Http::default()
        .send(
            method,
            &format!("{}{path}", s.public),
            &[("authorization", &format!("Bearer {token}"))],
            body,
        )
        .await
}

/// The review's attack: a JWT claiming `role = system` and a `system:` subject reached the
/// node's provisioning endpoint through the gateway and got 200; any customer could read the
/// node's `/metrics` (every tenant's route counts).
#[tokio::test]
async fn only_the_customer_api_is_forwarded() {
    let s = Stack::start().await;
    let tenant = s.create_tenant("surface", "eu", "scale").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let customer = s.idp.token(&tid, "owner-surface", "owner");
    let system = s.idp.token(&tid, "system:x", "system");

    for token in [&customer, &system] {
        for (method, path) in [
            (Method::POST, "/internal/v1/provision"),
            (Method::GET, "/metrics"),
            (Method::GET, "/readyz"),
            (Method::GET, "/v1/../internal/v1/provision"),
            (Method::GET, "/v1/%2e%2e/metrics"),
            (Method::GET, "/v1x/me"),
            (Method::GET, "/"),
            (Method::GET, "/internal"),
        ] {
            let r = public_call(&s, method.clone(), path, token, Some(&json!({"name": "x"}))).await;
            assert!(
                r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST,
                "{method} {path}: {r:?}"
            );
            assert_problem(&r, r.status);
            assert!(
                !r.text.contains("# TYPE") && !r.text.contains("node_"),
                "{path} leaked node metrics: {}",
                r.text
            );
        }
    }
    // The node's provisioning endpoint was never called: the tenant still has exactly its one
    // owner member and the audit trail shows no second provisioning.
    let members = public_call(&s, Method::GET, "/v1/members", &customer, None).await;
    assert_eq!(members.status, StatusCode::OK, "{members:?}");
    assert_eq!(members.json["items"].as_array().unwrap().len(), 1);
    // The customer API itself still works, and the gateway's own /healthz answers.
    let me = public_call(&s, Method::GET, "/v1/me", &customer, None).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    let health = s.get("/healthz", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    s.stop().await;
}

/// Reserved identities (role `system`, subjects `system:*` and `apikey:*`) in an external
/// credential are refused by the gateway itself, before any node is called.
#[tokio::test]
async fn reserved_identities_in_a_jwt_are_refused_at_the_gateway() {
    let s = Stack::start().await;
    let tenant = s.create_tenant("reserved", "eu", "scale").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    for (sub, role) in [
        ("user-1", "system"),
        ("system:x", "owner"),
        ("system:x", ""),
        ("apikey:0190aaaa-0000-7000-8000-000000000000", "owner"),
    ] {
        let token = s.idp.token(&tid, sub, role);
        let r = public_call(&s, Method::GET, "/v1/me", &token, None).await;
        assert_problem(&r, StatusCode::FORBIDDEN);
        assert!(
            r.json["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("reserved"),
            "sub {sub:?} role {role:?}: not refused by the gateway: {r:?}"
        );
        assert!(
            r.headers.get("x-residency-region").is_none(),
            "sub {sub:?} role {role:?} reached a region: {r:?}"
        );
    }
    s.stop().await;
}

/// Writes `head` then `body_len` bytes of `fill` in `chunk` sized chunked frames (or as one
/// Content-Length body), and returns the status line and the body of the answer.
async fn raw_upload(s: &Stack, head: &str, body_len: usize, chunked: bool) -> (String, String) {
    let addr = s.public.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let framing = if chunked {
        "transfer-encoding: chunked\r\n".to_owned()
    } else {
        format!("content-length: {body_len}\r\n")
    };
    stream
        .write_all(format!("{head}{framing}connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // A JSON document: {"value": "aaaa…"} padded to body_len bytes.
    let prefix = b"{\"value\": \"";
    let suffix = b"\"}";
    let mut doc = Vec::with_capacity(body_len);
    doc.extend_from_slice(prefix);
    doc.resize(body_len - suffix.len(), b'a');
    doc.extend_from_slice(suffix);
    let writer = async {
        for piece in doc.chunks(64 * 1024) {
            let res = if chunked {
                let mut frame = format!("{:x}\r\n", piece.len()).into_bytes();
                frame.extend_from_slice(piece);
                frame.extend_from_slice(b"\r\n");
                stream.write_all(&frame).await
            } else {
                stream.write_all(piece).await
            };
            // The gateway may answer and close before the whole body is sent.
            if res.is_err() {
                return;
            }
        }
        if chunked {
            let _ = stream.write_all(b"0\r\n\r\n").await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), writer).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut buf),
    )
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// A chunked upload over the 10 MiB default answered 502 while the same size with
/// `Content-Length` answered 413. Both are 413 problem+json, and the node stores nothing.
#[tokio::test]
async fn an_oversized_body_is_413_whatever_its_framing_and_nothing_is_stored() {
    let s = Stack::start().await;
    let tenant = s.create_tenant("bigbody", "eu", "scale").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let token = s.idp.token(&tid, "owner-bigbody", "owner");
    let over = 10 * 1024 * 1024 + 4096;
    for chunked in [true, false] {
        let key = if chunked { "chunked" } else { "sized" };
        let head = format!(
            "PUT /v1/configurations/{key} HTTP/1.1\r\nhost: gateway\r\n\
             authorization: Bearer {token}\r\ncontent-type: application/json\r\n"
        );
        let (status, body) = raw_upload(&s, &head, over, chunked).await;
        assert!(status.starts_with("HTTP/1.1 413"), "{key}: {status} {body}");
        assert!(body.contains("\"status\":413"), "{key}: {body}");
        let got = public_call(
            &s,
            Method::GET,
            &format!("/v1/configurations/{key}"),
            &token,
            None,
        )
        .await;
        assert_eq!(
            got.status,
            StatusCode::NOT_FOUND,
            "{key} was stored: {got:?}"
        );
    }
    s.stop().await;
}
