//! The real `region-node` binary: config errors name the file and key (exit 64), and SIGTERM
//! drains an in-flight request before exiting 0.

use std::process::Stdio;
use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::{binary, write_node_config, Http, RegionDb};
use residency_core::assertion::{now_secs, AssertionKey, Signer};
use residency_core::{RegionId, TenantId};
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `region-node serve` child on a fresh config of its own.
struct Served {
    child: tokio::process::Child,
    port: u16,
    key: AssertionKey,
    _dir: tempfile::TempDir,
}

/// Spawns `region-node serve` for `db` as `region` on a free port, with `RUST_LOG=log` and
/// `env` set, stdout to `stdout` and stderr piped; killed when dropped.
fn serve(db: &RegionDb, region: &str, log: &str, stdout: Stdio, env: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (path, key) = write_node_config(dir.path(), db, region, &format!("127.0.0.1:{port}"), 2);
    let child = tokio::process::Command::new(binary("region-node"))
        .args(["serve", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .env("RUST_LOG", log)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Served {
        child,
        port,
        key,
        _dir: dir,
    }
}

/// Waits until the node on `port` accepts connections and its `/readyz` answers 200. The
/// deadline is a hang guard, not a speed assertion.
async fn until_ready(http: &Http, port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ok = tokio::time::timeout(Duration::from_secs(1), async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await
        .unwrap_or(false);
        if ok
            && http
                .send(
                    Method::GET,
                    &format!("http://127.0.0.1:{port}/readyz"),
                    &[],
                    None,
                )
                .await
                .status
                == StatusCode::OK
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node binary never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM to `child`.
fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let db = RegionDb::create("eu").await;
    let Served {
        mut child,
        port,
        key,
        _dir,
    } = serve(&db, "eu", "warn", Stdio::null(), &[]);
    let http = Http::default();
    let base = format!("http://127.0.0.1:{port}");
    until_ready(&http, port).await;
    let t = Uuid::new_v4();
    let signer = Signer::new(RegionId::new("eu").unwrap(), &key, 60);
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

    sigterm(&child);
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
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sigterm_works_when_the_log_pipes_are_closed() {
    let db = RegionDb::create("us").await;
    let Served {
        mut child,
        port,
        _dir,
        ..
    } = serve(&db, "us", "info", Stdio::piped(), &[]);
    // The supervisor goes away: nobody reads the node's logs any more.
    drop(child.stdout.take());
    drop(child.stderr.take());
    until_ready(&Http::default(), port).await;
    sigterm(&child);
    // A hang guard well above the 5 s drain grace, not a speed assertion.
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("node ignored SIGTERM with closed log pipes")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Runs `region-node serve` for `db` with `database.url` replaced by `url`, expecting it to
/// refuse to start; returns its stderr. The timeout is a hang guard (a node that does not
/// refuse serves forever), not a speed assertion.
async fn refused_start(db: &RegionDb, url: &str) -> String {
    let Served {
        child, port, _dir, ..
    } = serve(
        db,
        "eu",
        "warn",
        Stdio::null(),
        &[("RESIDENCY__DATABASE__URL", url)],
    );
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
