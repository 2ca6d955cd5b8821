//! The pool against a raw TCP node whose connections the test counts and controls.

use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::proxy::tls::NodeTls;

type TestPool = Pool<Empty<Bytes>>;

/// How the test node answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `hello`, keep-alive.
    Hello,
    /// `hello`, then closes the connection after the first answer.
    HelloThenClose,
    /// A 1 MiB body (so a client can stop reading half-way).
    Large,
    /// `hello` in two chunks (`transfer-encoding: chunked`).
    Chunked,
}

/// A node on 127.0.0.1 that counts the connections it accepted.
struct Node {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Node {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let reply: Vec<u8> = match answer {
                                Answer::Hello | Answer::HelloThenClose => {
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()
                                }
                                Answer::Chunked => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n".to_vec(),
                                Answer::Large => {
                                    let mut r = b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".to_vec();
                                    r.resize(r.len() + 1_048_576, b'x');
                                    r
                                }
                            };
                            if sock.write_all(&reply).await.is_err() {
                                return;
                            }
                            if matches!(answer, Answer::HelloThenClose) {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, accepted }
    }

    fn pool(&self, max_idle: usize) -> Arc<TestPool> {
        let connector = NodeTls::plain().unwrap().connector(Duration::from_secs(2));
        let origin: Uri = format!("http://{}/", self.addr).parse().unwrap();
        Arc::new(Pool::new(connector, origin, max_idle))
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn get(node: &Node) -> Request<Empty<Bytes>> {
    Request::get("/v1/me")
        .header(http::header::HOST, node.addr.to_string())
        .body(Empty::new())
        .unwrap()
}

async fn body_of(resp: Response<UpstreamBody<Empty<Bytes>>>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// One GET through `pool`, read to its end: the body.
async fn fetch(pool: &Arc<TestPool>, node: &Node) -> Bytes {
    body_of(pool.send(get(node)).await.unwrap()).await
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_is_parked_after_its_body_and_used_again() {
    let node = Node::start(Answer::Hello).await;
    let pool = node.pool(8);
    for _ in 0..5 {
        let resp = pool.send(get(&node)).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(body_of(resp).await, "hello");
        assert_eq!(
            pool.parked(),
            1,
            "the connection waits for the next request"
        );
    }
    assert_eq!(node.accepted(), 1, "five requests on one connection");
}

#[tokio::test(flavor = "current_thread")]
async fn a_chunked_body_read_to_its_end_parks_its_connection() {
    let node = Node::start(Answer::Chunked).await;
    let pool = node.pool(8);
    for _ in 0..3 {
        assert_eq!(fetch(&pool, &node).await, "hello");
    }
    assert_eq!(node.accepted(), 1);
    assert_eq!(pool.parked(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_requests_open_connections_and_all_come_back() {
    let node = Node::start(Answer::Hello).await;
    let pool = node.pool(8);
    let sends = (0..3).map(|_| pool.send(get(&node)));
    let responses = futures_util::future::try_join_all(sends).await.unwrap();
    assert_eq!(node.accepted(), 3, "no parked connection to share");
    for resp in responses {
        assert_eq!(body_of(resp).await, "hello");
    }
    assert_eq!(pool.parked(), 3);
    assert_eq!(fetch(&pool, &node).await, "hello");
    assert_eq!(node.accepted(), 3, "a parked connection served the fourth");
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_the_node_closed_while_parked_is_not_used() {
    let node = Node::start(Answer::HelloThenClose).await;
    let pool = node.pool(8);
    assert_eq!(fetch(&pool, &node).await, "hello");
    // The node has closed it by now or will have: either the pool notices the close when it
    // takes the connection, or the request bounces off it unsent and goes on a new one.
    for round in 2..=4 {
        assert_eq!(fetch(&pool, &node).await, "hello");
        assert_eq!(node.accepted(), round);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_dropped_half_way_takes_its_connection_with_it() {
    let node = Node::start(Answer::Large).await;
    let pool = node.pool(8);
    let resp = pool.send(get(&node)).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    drop(body);
    assert_eq!(
        pool.parked(),
        0,
        "the rest of the body is still on that connection"
    );
    assert_eq!(fetch(&pool, &node).await.len(), 1_048_576);
    assert_eq!(node.accepted(), 2);
    assert_eq!(pool.parked(), 1, "a body read to its end parks");
}

#[tokio::test(flavor = "current_thread")]
async fn a_pool_of_size_zero_parks_nothing() {
    let node = Node::start(Answer::Hello).await;
    let pool = node.pool(0);
    for _ in 0..2 {
        assert_eq!(fetch(&pool, &node).await, "hello");
    }
    assert_eq!(pool.parked(), 0);
    assert_eq!(node.accepted(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_connection_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let connector = NodeTls::plain().unwrap().connector(Duration::from_secs(2));
    let pool: TestPool = Pool::new(connector, format!("http://{addr}/").parse().unwrap(), 8);
    let req = Request::get("/").body(Empty::new()).unwrap();
    let err = Arc::new(pool).send(req).await.unwrap_err();
    assert!(matches!(err, SendError::Connect(_)), "{err:?}");
}
