//! The accept loop against real sockets on loopback, with a raw HTTP/1 client.

use std::time::Instant;

use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::*;

/// `/slow` answers after 300 ms, everything else at once.
async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"done"))))
}

struct Server {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let opts = ServeOptions { limits, tls: None };
    let svc = hyper::service::service_fn(answer);
    let task = tokio::spawn(serve(listener, opts, svc, shutdown.clone()));
    Server {
        addr,
        shutdown,
        task,
    }
}

fn limits() -> Limits {
    Limits {
        max_connections: 1,
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// Writes one request on `s` and reads until the server closes (at most 5 s).
async fn exchange(s: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_to_close(s).await
}

/// What the server sent before it closed (a reset counts as a close).
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_connection_over_the_cap_is_closed_and_the_others_are_served() {
    let server = start(limits()).await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    // The first connection holds the only slot once it has been served a request.
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let mut second = TcpStream::connect(server.addr).await.unwrap();
    // The write may fail once the server has closed; what counts is that nothing is answered.
    let _ = second.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
    let refused = read_to_close(&mut second).await;
    assert_eq!(
        refused, "",
        "the second connection is closed without an answer"
    );

    // The held connection still works, and its slot is free again once it closed.
    assert!(exchange(&mut first, "/").await.starts_with("HTTP/1.1 200"));
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut third = TcpStream::connect(server.addr).await.unwrap();
        if exchange(&mut third, "/").await.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown.cancel();
    server.task.await.unwrap();
}

#[tokio::test]
async fn a_slow_loris_is_closed_after_the_header_read_timeout() {
    let server = start(Limits {
        max_connections: 8,
        ..limits()
    })
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nx-a: ")
        .await
        .unwrap();
    let answer = read_to_close(&mut slow).await;
    let took = started.elapsed();
    assert!(!answer.contains("200"), "{answer}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    // A client that sends its head in time is served.
    let mut quick = TcpStream::connect(server.addr).await.unwrap();
    assert!(exchange(&mut quick, "/").await.starts_with("HTTP/1.1 200"));
    server.shutdown.cancel();
    server.task.await.unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = start(Limits {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Some(Duration::from_millis(300)),
        ..limits()
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    // A slow request counts as in flight: the connection is not idle while it runs.
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = client.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    let rest = read_to_close(&mut client).await;
    let idle = answered.elapsed();
    assert!(!rest.contains("HTTP/1.1"), "{rest}");
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(3),
        "closed after {idle:?} idle"
    );
    server.shutdown.cancel();
    server.task.await.unwrap();
}

#[tokio::test]
async fn the_drain_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let server = start(Limits {
        max_connections: 8,
        shutdown_grace: Duration::from_secs(5),
        ..limits()
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.shutdown.cancel();
    let answer = read_to_close(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    tokio::time::timeout(Duration::from_secs(2), server.task)
        .await
        .expect("serve returns once drained")
        .unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn the_drain_gives_up_after_the_grace_period() {
    let server = start(Limits {
        max_connections: 8,
        shutdown_grace: Duration::from_millis(50),
        ..limits()
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    server.shutdown.cancel();
    server.task.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "serve waited {:?} for a request longer than the grace",
        started.elapsed()
    );
}

/// Sends a keep-alive `GET /` on `s` and reads its whole answer (`done` ends the body).
async fn keep_alive_get(s: &mut TcpStream) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while !out.ends_with(b"done") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until the listener refuses connections (the drain has started).
async fn until_refused(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_request_on_an_idle_keep_alive_connection_during_the_drain_is_answered_and_closes_it() {
    let server = start(Limits {
        max_connections: 8,
        shutdown_grace: Duration::from_secs(5),
        ..limits()
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let first = keep_alive_get(&mut client).await;
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );
    server.shutdown.cancel();
    until_refused(server.addr).await;
    // The client's next request on its idle connection, sent as the drain starts, is not
    // lost: it is answered, and the answer says the connection ends.
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.ends_with("done"), "{answer}");
    tokio::time::timeout(Duration::from_secs(2), server.task)
        .await
        .expect("serve returns once drained")
        .unwrap();
}

#[tokio::test]
async fn the_drain_closes_a_keep_alive_connection_that_stays_idle_after_the_window() {
    let server = start(Limits {
        max_connections: 8,
        shutdown_grace: Duration::from_secs(5),
        // Longer than the window: hyper applies it to an idle keep-alive connection too.
        header_read_timeout: Duration::from_secs(10),
        ..limits()
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    keep_alive_get(&mut client).await;
    let started = Instant::now();
    server.shutdown.cancel();
    assert_eq!(read_to_close(&mut client).await, "");
    let waited = started.elapsed();
    assert!(
        waited >= conn::HTTP1_DRAIN_WINDOW,
        "closed after {waited:?}"
    );
    tokio::time::timeout(Duration::from_secs(2), server.task)
        .await
        .expect("serve returns once drained")
        .unwrap();
}
