//! Parking of idle HTTP/1 keep-alive connections on the gateway's public listener
//! (`limits.park_idle_after`): a connection with nothing in flight for that long gives back
//! hyper's buffers and keeps only its socket; the client sees nothing of it. A real gateway
//! process (its `residency_gateway_connections_parked` gauge tells when a connection is
//! parked) in front of a real node, driven over raw TCP and TLS streams, so each step controls
//! exactly which bytes are on the wire.

use std::net::SocketAddr;
use std::time::Duration;

use integration_tests::directory::DirectoryDb;
use integration_tests::https::Https;
use integration_tests::process::{
    region_toml, signal, until, GatewayOptions, GatewayProcess, NodeProcess,
};
use integration_tests::{Http, RegionDb};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

const HOST: &str = "gateway.test";

/// A gateway process (plain, or TLS with a certificate for [`HOST`]) before one eu node.
struct Setup {
    gw: GatewayProcess,
    _node: NodeProcess,
    /// A client trusting the CA of the gateway's certificate, with TLS.
    https: Option<Https>,
    tenant: String,
    token: String,
    _dbs: (DirectoryDb, RegionDb),
    _certs: tempfile::TempDir,
}

impl Setup {
    async fn start(limits: &str, tls: bool) -> Self {
        let (dir, db) = tokio::join!(DirectoryDb::create(), RegionDb::create("eu"));
        let node = NodeProcess::start(&db, "eu", &[]).await;
        let certs = tempfile::tempdir().unwrap();
        let (https, extra) = if tls {
            let (ca_pem, ca) = integration_tests::tls_postgres::ca("parking test ca");
            let (cert, key) = integration_tests::tls_postgres::leaf(&[HOST], &ca, false);
            let (c, k) = (certs.path().join("gw.pem"), certs.path().join("gw.key"));
            std::fs::write(&c, cert).unwrap();
            std::fs::write(&k, key).unwrap();
            let ca_file = certs.path().join("ca.pem");
            std::fs::write(&ca_file, ca_pem).unwrap();
            let extra = format!(
                "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                c.display(),
                k.display()
            );
            (Some(Https::new(&ca_file, None)), extra)
        } else {
            (None, String::new())
        };
        let gw = GatewayProcess::start(&GatewayOptions {
            directory_url: &dir.reader_url,
            writer_url: &dir.writer_url,
            regions: region_toml("eu", &[node.addr()], &node.key_file()),
            limits,
            extra: &extra,
            jwks: None,
        })
        .await;
        let name = format!("park{}", &Uuid::new_v4().simple().to_string()[..8]);
        let tenant = gw.create_tenant(&name, "eu", 100_000).await;
        let token = gw.idp.token(&tenant, "user-1", "developer");
        Self {
            gw,
            _node: node,
            https,
            tenant,
            token,
            _dbs: (dir, db),
            _certs: certs,
        }
    }

    fn public(&self) -> SocketAddr {
        self.gw.public
    }

    /// The parked-connections gauge.
    async fn parked(&self) -> u64 {
        let r = Http::default()
            .send(
                http::Method::GET,
                &format!("http://{}/metrics", self.gw.admin),
                &[],
                None,
            )
            .await;
        r.text
            .lines()
            .find_map(|l| l.strip_prefix("residency_gateway_connections_parked "))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    }

    async fn until_parked(&self, n: u64, what: &str) {
        until(what, Duration::from_secs(10), || async {
            (self.parked().await == n).then_some(())
        })
        .await;
    }

    fn request(&self) -> String {
        format!(
            "GET /v1/me HTTP/1.1\r\nhost: {HOST}\r\nauthorization: Bearer {}\r\n\r\n",
            self.token
        )
    }

    /// Asks for `/v1/me` on `s` and checks the answer names the tenant.
    async fn me<S: AsyncRead + AsyncWrite + Unpin>(&self, s: &mut S) {
        s.write_all(self.request().as_bytes()).await.unwrap();
        let mut pending = Vec::new();
        let (status, _, body) = response(s, &mut pending).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["tenant_id"], self.tenant.as_str(), "{body}");
        assert!(pending.is_empty());
    }

    async fn tls(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let https = self.https.as_ref().expect("a TLS setup");
        let addr = self.public();
        https
            .tls_stream((&addr.ip().to_string(), addr.port()), HOST)
            .await
            .unwrap()
    }
}

/// One response from `s`: status, whether it says `connection: close`, JSON body.
async fn response<S: AsyncRead + Unpin>(s: &mut S, pending: &mut Vec<u8>) -> (u16, bool, Value) {
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "connection closed before a response: {pending:?}");
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(pending[..head_end].to_vec())
        .unwrap()
        .to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let close = head.lines().any(|l| l == "connection: close");
    while pending.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside a body");
        pending.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&pending[head_end..head_end + len]).unwrap_or(Value::Null);
    pending.drain(..head_end + len);
    (status, close, body)
}

/// Whether the server closes `s` (EOF, or a reset) within `within`.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn an_idle_connection_parks_and_serves_its_next_requests_as_before() {
    let t = Setup::start("park_idle_after = \"150ms\"", false).await;
    let mut s = TcpStream::connect(t.public()).await.unwrap();
    t.me(&mut s).await;
    t.until_parked(1, "the idle connection parks").await;

    // The next request wakes it; it parks again once idle.
    t.me(&mut s).await;
    t.until_parked(1, "it parks again").await;

    // Pipelined requests on a parked connection: all answered, in order.
    s.write_all(t.request().repeat(3).as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..3 {
        let (status, close, body) = response(&mut s, &mut pending).await;
        assert_eq!((status, close), (200, false), "pipelined {i}: {body}");
        assert_eq!(body["tenant_id"], t.tenant.as_str());
    }
    t.until_parked(1, "parked after the pipeline").await;

    // Half a head wakes the connection; it is not parked while the guard holds the half
    // (the park timer fires several times meanwhile), and the rest completes the request.
    let req = t.request();
    let (first, rest) = req.split_at(req.len() / 2);
    s.write_all(first.as_bytes()).await.unwrap();
    t.until_parked(0, "half a head wakes it").await;
    // Not a timing assertion: time for the park timer to fire several times, so that a
    // wrong park would happen (and lose the half head) before the rest is sent.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(t.parked().await, 0, "parked while holding half a head");
    s.write_all(rest.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let (status, _, body) = response(&mut s, &mut pending).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant_id"], t.tenant.as_str());
    t.until_parked(1, "parked after the split head").await;

    // A connection that has sent nothing is not parked (its first head is under the
    // header-read timeout) and is served when it sends; a client that closes a parked
    // connection leaves no trace.
    let mut fresh = TcpStream::connect(t.public()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        t.parked().await,
        1,
        "a connection parked before its first request"
    );
    t.me(&mut fresh).await;
    t.until_parked(2, "both parked").await;
    drop(s);
    t.until_parked(1, "a closed parked connection is gone")
        .await;
    drop(fresh);
    t.until_parked(0, "both gone").await;
}

#[tokio::test]
async fn a_parked_tls_connection_is_served_closed_when_idle_and_drained_on_shutdown() {
    let limits = "park_idle_after = \"150ms\"\nidle_timeout = \"2s\"\n\
                  header_read_timeout = \"20s\"\nshutdown_grace = \"30s\"";
    let mut t = Setup::start(limits, true).await;

    // Parked and woken over TLS: the session survives the park.
    let mut a = t.tls().await;
    t.me(&mut a).await;
    t.until_parked(1, "the TLS connection parks").await;
    t.me(&mut a).await;
    t.until_parked(1, "and parks again").await;

    // Closed by the server once idle for `idle_timeout`, parked or not.
    assert!(
        closed_within(&mut a, Duration::from_secs(10)).await,
        "a parked connection outlived idle_timeout"
    );
    t.until_parked(0, "the idle-closed connection is gone")
        .await;

    // Shutdown: a request sent to a parked connection as the drain starts is still answered,
    // with `connection: close`, and the connection then ends. A connection that has sent
    // nothing yet is closed after the drain window (1 s), not held until its header-read
    // timeout (20 s here) or the grace time (30 s).
    let mut b = t.tls().await;
    t.me(&mut b).await;
    t.until_parked(1, "the second connection parks").await;
    let mut unused = t.tls().await;
    signal(t.gw.pid(), Signal::SIGTERM);
    b.write_all(t.request().as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let (status, close, body) = response(&mut b, &mut pending).await;
    assert_eq!((status, close), (200, true), "{body}");
    assert!(closed_within(&mut b, Duration::from_secs(10)).await);
    assert!(
        closed_within(&mut unused, Duration::from_secs(10)).await,
        "a connection without a request kept the drain waiting"
    );
    assert!(t.gw.wait(Duration::from_secs(15)).await.success());
}
