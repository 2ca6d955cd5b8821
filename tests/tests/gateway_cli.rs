//! End to end: the `residency` binary's admin commands (`orgs`, `tenants`, `keys`) and
//! `token` against a real gateway stack ([`integration_tests::gateway`]). The binary runs as a
//! blocking child process, so the tests use a multi-thread runtime to keep the gateway serving.

use std::process::Output;

use base64::Engine;
use http::StatusCode;
use integration_tests::gateway::{Stack, ADMIN_TOKEN, AUDIENCE, ISSUER, KID};
use serde_json::{json, Value};

fn residency(s: &Stack, args: &[&str]) -> Output {
    std::process::Command::new(integration_tests::binary("residency"))
        .args(args)
        .env("RESIDENCY_ADMIN_URL", &s.admin)
        .env("RESIDENCY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("RUST_LOG")
        .output()
        .expect("run residency")
}

fn ok_json(out: &Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_customers_and_keys_through_the_admin_api() {
    let s = Stack::start().await;
    let org = ok_json(&residency(
        &s,
        &[
            "orgs",
            "create",
            "--name",
            "Partner",
            "--domain",
            "cli.example.com",
            "--json",
        ],
    ));
    let org_id = org["id"].as_str().unwrap().to_owned();
    let listed = residency(&s, &["orgs", "list"]);
    assert!(stdout(&listed).contains("cli.example.com"), "{listed:?}");

    let t = ok_json(&residency(
        &s,
        &[
            "tenants",
            "create",
            "--name",
            "cli-co",
            "--region",
            "eu",
            "--tier",
            "scale",
            "--org-id",
            &org_id,
            "--owner-subject",
            "owner-cli",
            "--owner-email",
            "o@cli.test",
            "--json",
        ],
    ));
    assert_eq!(t["status"], "active");
    let id = t["id"].as_str().unwrap().to_owned();

    // People get a table; scripts get JSON.
    let table = residency(&s, &["tenants", "list", "--region", "eu"]);
    let text = stdout(&table);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains(&id) && text.contains("scale"), "{text}");
    let json = ok_json(&residency(
        &s,
        &["tenants", "list", "--json", "--tier", "scale"],
    ));
    assert_eq!(json["items"][0]["id"], id.as_str());

    let key = ok_json(&residency(
        &s,
        &[
            "keys",
            "create",
            &id,
            "--name",
            "ci",
            "--role",
            "developer",
            "--json",
        ],
    ));
    let api_key = key["api_key"].as_str().unwrap().to_owned();
    let r = s.get("/v1/me", &[("x-api-key", &api_key)]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // Without --role: the default role, shown at creation and in the list.
    let plain = residency(&s, &["keys", "create", &id, "--name", "plain"]);
    assert!(plain.status.success(), "{plain:?}");
    assert!(
        stdout(&plain)
            .lines()
            .any(|l| l.contains("role") && l.contains("developer")),
        "{}",
        stdout(&plain)
    );
    let keys = residency(&s, &["keys", "list", &id]);
    assert!(stdout(&keys).contains(key["prefix"].as_str().unwrap()));
    let plain_row = stdout(&keys)
        .lines()
        .find(|l| l.contains("plain"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(plain_row.contains("developer"), "{}", stdout(&keys));
    assert!(!stdout(&keys).contains(&api_key));
    let revoke = residency(&s, &["keys", "revoke", &id, key["id"].as_str().unwrap()]);
    assert!(revoke.status.success(), "{revoke:?}");
    let r = s.get("/v1/me", &[("x-api-key", &api_key)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let upd = residency(&s, &["tenants", "update", &id, "--status", "suspended"]);
    assert!(stdout(&upd).contains("suspended"), "{upd:?}");
    assert_eq!(s.me(&id).await.status, StatusCode::FORBIDDEN);
    let got = ok_json(&residency(&s, &["tenants", "get", &id, "--json"]));
    assert_eq!(got["status"], "suspended");

    // An unknown tier is clap's error with the possible values; exit 2, nothing sent.
    let bad = residency(
        &s,
        &[
            "tenants", "create", "--name", "x", "--region", "eu", "--tier", "platinum",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        stderr(&bad).contains("[possible values: starter"),
        "{bad:?}"
    );
    // The API's refusal is shown with its field; exit 1.
    let bad = residency(
        &s,
        &[
            "tenants", "create", "--name", "x", "--region", "mars", "--tier", "scale",
        ],
    );
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(stderr(&bad).contains("region"), "{bad:?}");
    // The gateway is unreachable: exit 69 (EX_UNAVAILABLE) with a hint.
    let down = std::process::Command::new(integration_tests::binary("residency"))
        .args([
            "tenants",
            "list",
            "--admin-url",
            "http://127.0.0.1:9",
            "--admin-token",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(69), "{down:?}");
    assert!(
        stderr(&down).contains("cannot reach the admin api"),
        "{down:?}"
    );
    let wrong = std::process::Command::new(integration_tests::binary("residency"))
        .args([
            "tenants",
            "list",
            "--admin-url",
            &s.admin,
            "--admin-token",
            "wrong-token-123456789",
        ])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(stderr(&wrong).contains("401"), "{wrong:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mints_a_jwt_the_gateway_accepts_from_a_stack_file() {
    let s = Stack::start().await;
    let t = s.create_tenant("tokens", "us", "growth").await;
    let id = t["id"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&s.idp.pkcs8);
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body.join("\n")
    );
    std::fs::write(dir.path().join("keys/jwt.pem"), pem).unwrap();
    let stack = json!({
        "admin": { "url": s.admin, "token": ADMIN_TOKEN },
        "jwt": { "issuer": ISSUER, "audience": AUDIENCE, "alg": "ES256", "kid": KID,
                 "private_key_pem": "keys/jwt.pem", "tenant_claim": "tenant_id", "role_claim": "role" },
    });
    let stack_path = dir.path().join("stack.json");
    std::fs::write(&stack_path, stack.to_string()).unwrap();
    let stack_arg = stack_path.to_str().unwrap();

    let out = std::process::Command::new(integration_tests::binary("residency"))
        .args([
            "token", "--tenant", id, "--role", "viewer", "--sub", "someone", "--stack", stack_arg,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = stdout(&out).trim().to_owned();
    let r = s
        .get("/v1/me", &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["tenant_id"], id);
    assert_eq!(r.json["role"], "viewer");
    assert_eq!(r.json["subject"], "someone");

    // The admin commands read the same stack file.
    let list = std::process::Command::new(integration_tests::binary("residency"))
        .args(["tenants", "list", "--json", "--stack", stack_arg])
        .env_remove("RESIDENCY_ADMIN_URL")
        .env_remove("RESIDENCY_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(ok_json(&list)["items"][0]["id"], id);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_lists_every_region_with_its_upstreams_health() {
    let s = Stack::start().await;
    let json = ok_json(&residency(&s, &["regions", "--json"]));
    let items = json["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().filter_map(|r| r["id"].as_str()).collect();
    assert!(ids.contains(&"eu") && ids.contains(&"us"), "{json}");
    for r in items {
        let upstreams = r["upstreams"].as_array().unwrap();
        assert!(!upstreams.is_empty(), "{json}");
        assert!(
            upstreams[0]["url"].as_str().unwrap().starts_with("http"),
            "{json}"
        );
    }
    let table = residency(&s, &["regions"]);
    assert!(table.status.success(), "{table:?}");
    let text = stdout(&table);
    assert!(text.starts_with("REGION"), "{text}");
    for r in items {
        let id = r["id"].as_str().unwrap();
        let url = r["upstreams"][0]["url"].as_str().unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{id} (")) && l.contains(url)),
            "{id} {url} not in {text}"
        );
    }
    // The admin token is required, as for every admin command.
    let wrong = std::process::Command::new(integration_tests::binary("residency"))
        .args([
            "regions",
            "--admin-url",
            &s.admin,
            "--admin-token",
            "wrong-token-123456789",
        ])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(stderr(&wrong).contains("401"), "{wrong:?}");
    s.stop().await;
}
