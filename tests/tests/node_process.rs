//! The real `region-node` binary: config errors name the file and key (exit 64), and SIGTERM
//! drains an in-flight request before exiting 0.

use std::process::Stdio;
use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::process::NodeProcess;
use integration_tests::{binary, Http, RegionDb};
use nix::sys::signal::Signal;
use residency_core::assertion::now_secs;
use residency_core::TenantId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

#[tokio::test]
async fn config_errors_name_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "[node]\nlisten = \"127.0.0.1:0\"\n[region]\nid = \"eu\"\n[database]\nurl = \"postgres://app@127.0.0.1/db\"\npool_size = 0\n[[assertion.keys]]\nkid = \"k\"\nkey_file = \"missing.key\"\n[credentials]\nkey_file = \"missing.key\"\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(binary("region-node"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "database.pool_size",
        "assertion.keys[0].key_file",
        "credentials.key_file",
    ] {
        assert!(
            err.contains(&format!("node.toml: {key}:")),
            "{key} not named in: {err}"
        );
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let db = RegionDb::create("eu").await;
    let mut node = NodeProcess::spawn(&db, "eu", "warn", Stdio::null, &[]);
    let (http, port, base) = (Http::default(), node.port, node.base());
    node.until_ready().await;
    let t = Uuid::new_v4();
    let signer = node.signer();
    let sys = signer
        .mint_system(TenantId::from_uuid(t), "test", now_secs())
        .unwrap()
        .0;
    let r = http
        .send(
            Method::POST,
            &format!("{base}/internal/v1/provision"),
            &[("x-residency-assertion", &sys)],
            Some(&serde_json::json!({"name": "acme"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // Start a request and stop half-way through its body.
    let owner = signer
        .mint(TenantId::from_uuid(t), "u", "owner", now_secs())
        .unwrap()
        .0;
    let body = br#"{"value": {"drained": true}}"#;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "PUT /v1/configurations/drain HTTP/1.1\r\nhost: x\r\nx-residency-assertion: {owner}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // let the node start reading the request

    node.signal(Signal::SIGTERM);
    // New connections are refused once the listener closes...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...but the in-flight request completes.
    stream.write_all(&body[10..]).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let status = node.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sigterm_works_when_the_log_pipes_are_closed() {
    let db = RegionDb::create("us").await;
    let mut node = NodeProcess::spawn(&db, "us", "info", Stdio::piped, &[]);
    // The supervisor goes away: nobody reads the node's logs any more.
    let child = node.child.as_mut().unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    node.until_ready().await;
    node.signal(Signal::SIGTERM);
    // A hang guard well above the 5 s drain grace, not a speed assertion.
    let status = node.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
}

/// Runs `region-node serve` for `db` with `database.url` replaced by `url`, expecting it to
/// refuse to start; returns its stderr. The timeout is a hang guard (a node that does not
/// refuse serves forever), not a speed assertion.
async fn refused_start(db: &RegionDb, url: &str) -> String {
    let mut node = NodeProcess::spawn(
        db,
        "eu",
        "warn",
        Stdio::null,
        &[("RESIDENCY__DATABASE__URL", url)],
    );
    let (child, port) = (node.child.take().unwrap(), node.port);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the node did not refuse to start: it is still running")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{err}");
    assert!(!out.status.success(), "exited 0: {err}");
    // It refused before binding: nothing ever listened on its port.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(
        !err.contains(url::Url::parse(url).unwrap().password().unwrap_or("\u{0}")),
        "password echoed: {err}"
    );
    err
}

#[tokio::test]
async fn node_refuses_to_serve_as_a_superuser() {
    let db = RegionDb::create("eu").await;
    let err = refused_start(&db, &db.admin_db_url).await;
    assert!(err.contains("superuser"), "{err}");
}

#[tokio::test]
async fn node_refuses_to_serve_as_a_bypassrls_role() {
    let db = RegionDb::create("eu").await;
    integration_tests::connect(&db.admin_db_url)
        .await
        .batch_execute(&format!("ALTER ROLE \"{}\" BYPASSRLS", db.roles[1]))
        .await
        .unwrap();
    let err = refused_start(&db, &db.app_url).await;
    assert!(err.contains("BYPASSRLS"), "{err}");
    assert!(err.contains(&db.roles[1]), "{err}");
}

#[tokio::test]
async fn node_refuses_to_serve_as_a_role_that_owns_objects() {
    let db = RegionDb::create("eu").await;
    let app = &db.roles[1];
    let admin = integration_tests::connect(&db.admin_db_url).await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE scratch_owned (x int); ALTER TABLE scratch_owned OWNER TO \"{app}\";"
        ))
        .await
        .unwrap();
    let err = refused_start(&db, &db.app_url).await;
    assert!(err.contains("scratch_owned"), "{err}");
    // Any object, not only tables: a function it owns is refused just the same.
    admin
        .batch_execute(&format!(
            "DROP TABLE scratch_owned;
             CREATE FUNCTION scratch_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
             ALTER FUNCTION scratch_fn() OWNER TO \"{app}\";"
        ))
        .await
        .unwrap();
    let err = refused_start(&db, &db.app_url).await;
    assert!(err.contains("scratch_fn"), "{err}");
}
