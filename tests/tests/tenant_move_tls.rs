//! A move's target node pulls from an https source node: trusted through `[moves]
//! peer_ca_file` only, with a client certificate when the source requires one (mTLS); without
//! the CA an https source is refused (422), with the wrong one the handshake fails (502).

use std::path::Path;

use http::{Method, StatusCode};
use integration_tests::tls_postgres::{ca, leaf};
use integration_tests::{write_node_config, Http, RegionDb};
use residency_core::assertion::{now_secs, Signer};
use residency_core::{RegionId, TenantId};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Starts a node from `dir`'s config plus `extra` TOML, on a bound listener (connections
/// queue until it serves, so no readiness wait is needed for the first call).
async fn serve(
    dir: &Path,
    db: &RegionDb,
    region: &str,
    extra: &str,
    shutdown: &CancellationToken,
) -> (std::net::SocketAddr, Signer) {
    let (path, key) = write_node_config(dir, db, region, "127.0.0.1:0", 2);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    let cfg: residency_config::node::NodeConfig =
        residency_config::load::load(&path, &Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(residency_region_node::run(cfg, listener, shutdown.clone()));
    (addr, Signer::new(RegionId::new(region).unwrap(), &key, 60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_node_pulls_from_an_https_source_with_mtls() {
    let (us_db, eu_db) = tokio::join!(RegionDb::create("us"), RegionDb::create("eu"));
    let (ca_pem, issuer) = ca("move test ca");
    let (other_ca_pem, _) = ca("another ca");
    let files = tempfile::tempdir().unwrap();
    let f = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca_file = f("ca.pem", &ca_pem);
    let other_ca = f("other.pem", &other_ca_pem);
    let (cert, key) = leaf(&["localhost"], &issuer, false);
    let (server_cert, server_key) = (f("us.pem", &cert), f("us.key", &key));
    let (cert, key) = leaf(&["eu-node"], &issuer, true);
    let (client_cert, client_key) = (f("eu-client.pem", &cert), f("eu-client.key", &key));

    // The source (us) serves https and requires a client certificate of the CA.
    let shutdown = CancellationToken::new();
    let us_dir = tempfile::tempdir().unwrap();
    let (us_addr, us_signer) = serve(
        us_dir.path(),
        &us_db,
        "us",
        &format!(
            "\n[tls]\ncert_file = \"{server_cert}\"\nkey_file = \"{server_key}\"\nclient_ca_file = \"{ca_file}\"\n"
        ),
        &shutdown,
    )
    .await;
    let t = Uuid::new_v4();
    let us = integration_tests::connect(&us_db.admin_db_url).await;
    us.execute(
        "INSERT INTO tenants (tenant_id, name, region, frozen) VALUES ($1, 'acme', 'us', true)",
        &[&t],
    )
    .await
    .unwrap();

    let targets = [
        (
            format!("\n[moves]\npeer_ca_file = \"{ca_file}\"\nclient_cert_file = \"{client_cert}\"\nclient_key_file = \"{client_key}\"\n"),
            StatusCode::OK,
        ),
        (String::new(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            format!("\n[moves]\npeer_ca_file = \"{other_ca}\"\nclient_cert_file = \"{client_cert}\"\nclient_key_file = \"{client_key}\"\n"),
            StatusCode::BAD_GATEWAY,
        ),
        (format!("\n[moves]\npeer_ca_file = \"{ca_file}\"\n"), StatusCode::BAD_GATEWAY),
    ];
    let http = Http::default();
    for (extra, expected) in targets {
        let dir = tempfile::tempdir().unwrap();
        let (eu_addr, eu_signer) = serve(dir.path(), &eu_db, "eu", &extra, &shutdown).await;
        let move_id = Uuid::new_v4();
        let tenant = TenantId::from_uuid(t);
        let export = us_signer
            .mint_system(tenant, &format!("move-export:{move_id}"), now_secs())
            .unwrap()
            .0;
        let admin = eu_signer
            .mint_system(tenant, "admin:test", now_secs())
            .unwrap()
            .0;
        let body = json!({
            "move_id": move_id,
            "source": {"region": "us", "url": format!("https://localhost:{}", us_addr.port())},
            "export_token": export,
            "table": "tenants",
            "limit": 10,
        });
        let r = http
            .send(
                Method::POST,
                &format!("http://{eu_addr}/internal/v1/moves/copy"),
                &[("x-residency-assertion", &admin)],
                Some(&body),
            )
            .await;
        assert_eq!(r.status, expected, "{extra}: {r:?}");
        if expected == StatusCode::OK {
            assert_eq!(r.json["rows"], 1, "{r:?}");
            let eu = integration_tests::connect(&eu_db.admin_db_url).await;
            let region: String = eu
                .query_one("SELECT region FROM tenants WHERE tenant_id = $1", &[&t])
                .await
                .unwrap()
                .get(0);
            assert_eq!(region, "eu");
        }
    }
    shutdown.cancel();
}
