//! TLS to Postgres against a real TLS-only cluster (`hostssl` lines only, a server
//! certificate for `localhost` from a test CA): a region database is bootstrapped, migrated
//! and served by a node over `verify-full`; a wrong CA, a wrong host name, clear text, a
//! server without TLS and a missing client certificate fail with errors that say so.

use http::{Method, StatusCode};
use integration_tests::tls_postgres::TlsPostgres;
use integration_tests::{Node, NodeOptions, RegionDb};
use residency_pg::Target;
use uuid::Uuid;

async fn error_of(url: &str) -> String {
    match Target::parse(url).unwrap().connect().await {
        Ok(_) => panic!("{url} connected"),
        Err(e) => {
            eprintln!("{e}");
            e.to_string()
        }
    }
}

async fn is_tls(url: &str) -> bool {
    let (client, conn) = Target::parse(url).unwrap().connect().await.unwrap();
    tokio::spawn(conn);
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_node_serves_from_a_tls_only_cluster_with_verify_full() {
    let pg = TlsPostgres::start();
    let admin = pg.admin_url(&pg.verify_full());
    // Bootstrap and migrations run over TLS too; the role URLs keep the TLS parameters.
    let db = RegionDb::create_on(&admin, "eu").await;
    assert!(db.app_url.contains("sslmode=verify-full"), "{}", db.app_url);
    assert!(is_tls(&db.app_url).await);

    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let t = Uuid::new_v4();
    node.provision(t, "acme").await;
    let r = node
        .call(Method::GET, "/v1/members", t, "u", "owner", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["items"].as_array().map(Vec::len), Some(1), "{r:?}");

    // Every connection the node's pool holds is encrypted.
    let (client, conn) = Target::parse(&admin).unwrap().connect().await.unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.usename = $1",
            &[&db.roles[1]],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.get::<_, bool>(0)));
    node.stop().await;
}

#[tokio::test]
async fn wrong_ca_wrong_host_clear_text_and_missing_client_certs_fail_clearly() {
    let pg = TlsPostgres::start();
    let port = pg.port;
    let ca = pg.ca_file.display();

    let e = error_of(&format!(
        "postgres://postgres:hunter2@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        pg.other_ca_file.display()
    ))
    .await;
    assert!(e.contains("unknown CA"), "{e}");
    assert!(
        e.contains(&format!(
            "postgres://postgres:***@localhost:{port}/postgres"
        )),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");

    // The certificate names localhost, not 127.0.0.1.
    let by_ip = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let e = error_of(&format!("{by_ip}?sslmode=verify-full&sslrootcert={ca}")).await;
    assert!(e.contains("wrong host name"), "{e}");
    // verify-ca checks the chain only; require checks nothing but still encrypts.
    assert!(is_tls(&format!("{by_ip}?sslmode=verify-ca&sslrootcert={ca}")).await);
    assert!(is_tls(&format!("{by_ip}?sslmode=require")).await);

    let e = error_of(&pg.admin_url("sslmode=disable")).await;
    assert!(e.contains("refuses connections without TLS"), "{e}");
    assert!(e.contains("sslmode disable"), "{e}");

    // A role whose pg_hba line asks for a client certificate: refused without, served with.
    let (client, conn) = Target::parse(&pg.admin_url(&pg.verify_full()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("CREATE ROLE certuser LOGIN")
        .await
        .unwrap();
    let as_certuser = format!(
        "postgres://certuser@localhost:{port}/postgres?{}",
        pg.verify_full()
    );
    let e = error_of(&as_certuser).await;
    assert!(e.contains("certificate"), "{e}");
    let (cert, key) = pg.client_cert("certuser");
    let with_cert = format!(
        "{as_certuser}&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    );
    assert!(is_tls(&with_cert).await);
}

#[tokio::test]
async fn a_server_without_tls_is_named_as_such() {
    let pg = TlsPostgres::start();
    // A Postgres without TLS answers the SSLRequest with a single `N`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        s.read_exact(&mut request).await.unwrap();
        s.write_all(b"N").await.unwrap();
        let _ = s.read(&mut [0u8; 1]).await;
    });
    let e = error_of(&format!(
        "postgres://app:pw@localhost:{port}/db?{}",
        pg.verify_full()
    ))
    .await;
    assert!(e.contains("the server has no TLS"), "{e}");
    assert!(
        e.contains(&format!("postgres://app:***@localhost:{port}/db")),
        "{e}"
    );
}

/// Writes `contents` the way a rotation does: a new file renamed over the old one.
fn rotate(path: &std::path::Path, contents: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Connects with `target` until `ok(result)` holds or 10 s pass (files are looked at, at
/// most once a second, at the next connection attempt).
async fn until(target: &Target, want_ok: bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = target.connect().await;
        let last = match &r {
            Ok(_) => "connected".to_owned(),
            Err(e) => e.to_string(),
        };
        if r.is_ok() == want_ok {
            if let Ok((_, conn)) = r {
                tokio::spawn(conn);
            }
            return last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {last} after 10 s (wanted ok = {want_ok})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn rotated_sslrootcert_sslcert_and_sslkey_files_are_used_by_new_connections() {
    let pg = TlsPostgres::start();
    let dir = tempfile::tempdir().unwrap();

    // The CA file starts as a CA that did not sign the server: refused. Rotating the file to
    // the right CA lets the *same* target connect, without building it again.
    let ca = dir.path().join("root.pem");
    std::fs::copy(&pg.other_ca_file, &ca).unwrap();
    let target =
        Target::parse(&pg.admin_url(&format!("sslmode=verify-full&sslrootcert={}", ca.display())))
            .unwrap();
    let e = until(&target, false).await;
    assert!(e.contains("unknown CA"), "{e}");
    rotate(&ca, &std::fs::read(&pg.ca_file).unwrap());
    until(&target, true).await;
    let (open, conn) = target.connect().await.unwrap();
    tokio::spawn(conn);

    // Rotated back: new connections are refused again; the open one keeps its session.
    rotate(&ca, &std::fs::read(&pg.other_ca_file).unwrap());
    let e = until(&target, false).await;
    assert!(e.contains("unknown CA"), "{e}");
    assert_eq!(
        open.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    // A broken CA file keeps the last good CA set (reported in the log, not here).
    rotate(&ca, &std::fs::read(&pg.ca_file).unwrap());
    until(&target, true).await;
    rotate(&ca, b"not a certificate");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_kept, conn) = target.connect().await.expect("the last good CA stays");
    tokio::spawn(conn);

    // The client certificate: a self-signed pair the server does not trust is refused; the
    // pair from the server's CA, rotated into the same files, is accepted.
    let (client, conn) = Target::parse(&pg.admin_url(&pg.verify_full()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("CREATE ROLE certuser LOGIN")
        .await
        .unwrap();
    let stranger = rcgen::generate_simple_self_signed(vec!["certuser".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&cert, stranger.cert.pem()).unwrap();
    std::fs::write(&key, stranger.signing_key.serialize_pem()).unwrap();
    let target = Target::parse(&format!(
        "postgres://certuser@localhost:{}/postgres?{}&sslcert={}&sslkey={}",
        pg.port,
        pg.verify_full(),
        cert.display(),
        key.display()
    ))
    .unwrap();
    until(&target, false).await;
    let (good_cert, good_key) = pg.client_cert("certuser");
    rotate(&key, &std::fs::read(good_key).unwrap());
    rotate(&cert, &std::fs::read(good_cert).unwrap());
    until(&target, true).await;
}
