//! The node's health listener (`node.health`): plain HTTP beside an mTLS main listener, so
//! kubelet probes and scrapers reach `/healthz`, `/readyz` and `/metrics` without a client
//! certificate, while the main listener keeps refusing clients that have none. Nothing else is
//! served there: no customer route, no internal route (404 problem+json).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::https::Https;
use integration_tests::tls_postgres::{ca, leaf};
use integration_tests::{binary, write_node_config, Http, RegionDb};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[tokio::test]
async fn the_health_port_answers_without_a_client_certificate_and_serves_nothing_else() {
    let db = RegionDb::create("eu").await;
    let dir = tempfile::tempdir().unwrap();
    let (main_port, health_port) = (free_port(), free_port());
    let (path, _key) =
        write_node_config(dir.path(), &db, "eu", &format!("127.0.0.1:{main_port}"), 2);
    // The node serves mTLS: a server certificate and the CA its clients' certificates chain to.
    let (ca_pem, issuer) = ca("node health test ca");
    let (cert, key) = leaf(&["localhost"], &issuer, false);
    let (client_cert, client_key) = leaf(&["gateway"], &issuer, true);
    for (name, text) in [
        ("ca.pem", ca_pem.as_str()),
        ("node.pem", &cert),
        ("node.key", &key),
        ("client.pem", &client_cert),
        ("client.key", &client_key),
    ] {
        write(dir.path(), name, text);
    }
    let toml = std::fs::read_to_string(&path).unwrap().replace(
        "shutdown_grace = \"5s\"",
        &format!("shutdown_grace = \"5s\"\nhealth = \"127.0.0.1:{health_port}\""),
    );
    write(
        dir.path(),
        "node.toml",
        &format!(
            "{toml}\n[tls]\ncert_file = \"node.pem\"\nkey_file = \"node.key\"\n\
             client_ca_file = \"ca.pem\"\n"
        ),
    );
    let mut child = tokio::process::Command::new(binary("region-node"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let http = Http::default();
    let health = |p: &str| format!("http://127.0.0.1:{health_port}{p}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "region-node exited ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let up = tokio::net::TcpStream::connect(("127.0.0.1", health_port))
            .await
            .is_ok();
        if up {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the health port never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Probes need no certificate.
    let r = http.send(Method::GET, &health("/healthz"), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = http.send(Method::GET, &health("/readyz"), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = http.send(Method::GET, &health("/metrics"), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.text.contains("# TYPE"), "{}", r.text);

    // Nothing else: not the customer API, not the internal API, not a made-up path.
    for (method, p) in [
        (Method::GET, "/v1/me"),
        (Method::GET, "/v1/workflows"),
        (Method::POST, "/internal/v1/provision"),
        (Method::POST, "/internal/v1/roles/check"),
        (Method::GET, "/openapi.json"),
        (Method::GET, "/nothing"),
    ] {
        let r = http.send(method.clone(), &health(p), &[], None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {p}: {r:?}");
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{method} {p}"
        );
        assert_eq!(r.json["status"], 404, "{method} {p}: {}", r.text);
    }
    let r = http
        .send(Method::POST, &health("/healthz"), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{r:?}");

    // The main listener still requires a client certificate: refused without one, served
    // with one.
    let main = format!("https://localhost:{main_port}/readyz");
    let anonymous = Https::new(&dir.path().join("ca.pem"), None);
    let refused = anonymous.send(Method::GET, &main, &[], None).await;
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );
    let with_cert = Https::new(
        &dir.path().join("ca.pem"),
        Some((
            &dir.path().join("client.pem"),
            &dir.path().join("client.key"),
        )),
    );
    let r = with_cert.send(Method::GET, &main, &[], None).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

/// The health address must not be the main one.
#[tokio::test]
async fn a_health_address_equal_to_the_main_one_is_a_config_error() {
    let db = RegionDb::create("eu").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (path, _key) = write_node_config(dir.path(), &db, "eu", &format!("127.0.0.1:{port}"), 2);
    let toml = std::fs::read_to_string(&path).unwrap().replace(
        "shutdown_grace = \"5s\"",
        &format!("shutdown_grace = \"5s\"\nhealth = \"127.0.0.1:{port}\""),
    );
    write(dir.path(), "node.toml", &toml);
    let out = tokio::process::Command::new(binary("region-node"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("node.toml: node.health: must differ from node.listen"),
        "{err}"
    );
}
