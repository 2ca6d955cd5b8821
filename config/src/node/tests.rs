use super::*;
use crate::load::load;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

const GOOD: &str = r#"
[node]
listen = "127.0.0.1:0"
request_timeout = "5s"
[region]
id = "eu"
[database]
url = "postgres://app@127.0.0.1:5432/db"
[[assertion.keys]]
kid = "eu-1"
key_file = "a.key"
[credentials]
key_file = "c.key"
"#;

#[test]
fn loads_and_resolves_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    write(dir.path(), "node.toml", GOOD.as_bytes());
    let cfg: NodeConfig = load(&dir.path().join("node.toml"), &Vec::new()).unwrap();
    assert_eq!(cfg.region.id.as_str(), "eu");
    assert_eq!(cfg.node.request_timeout, Duration::from_secs(5));
    assert_eq!(cfg.assertion.keys[0].key_file, dir.path().join("a.key"));
    assert_eq!(cfg.database.pool_size, 16);
}

#[test]
fn every_problem_is_reported_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 8]);
    write(dir.path(), "c.key", &[2; 31]);
    let text = GOOD.replace("postgres://app@", "mysql://app@");
    write(dir.path(), "node.toml", text.as_bytes());
    let err = load::<NodeConfig>(&dir.path().join("node.toml"), &Vec::new()).unwrap_err();
    let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "database.url",
            "assertion.keys[0].key_file",
            "credentials.key_file"
        ]
    );
    assert!(err.to_string().contains("node.toml: database.url:"));
}

#[test]
fn clear_text_to_a_remote_database_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    write(dir.path(), "ca.pem", b"a ca");
    let node = |url: &str, owner: &str, extra: &str| {
        let text = GOOD.replace(
            "url = \"postgres://app@127.0.0.1:5432/db\"",
            &format!("url = \"{url}\"\nowner_url = \"{owner}\"\n{extra}"),
        );
        write(dir.path(), "node.toml", text.as_bytes());
        load::<NodeConfig>(&dir.path().join("node.toml"), &Vec::new())
    };
    // A password no path or message could contain by chance (a temp dir named `.tmpw…`
    // once made a check for "pw" fail).
    let clear = "postgres://app:s3cret-Zq9@db.eu.internal/db?sslmode=disable";
    let err = node(clear, clear, "").unwrap_err();
    let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["database.url", "database.owner_url"]);
    let text = err.to_string();
    assert!(
        text.contains("database.allow_insecure_transport = true"),
        "{text}"
    );
    assert!(text.contains("db.eu.internal"), "{text}");
    assert!(!text.contains("s3cret-Zq9"), "{text}");
    assert!(node(clear, clear, "allow_insecure_transport = true").is_ok());
    // The default for a remote host is verify-full, which needs the CA file.
    let err = node("postgres://app@db.eu.internal/db", clear, "").unwrap_err();
    assert!(
        err.problems[0].message.contains("needs sslrootcert"),
        "{err}"
    );
    let ca = dir.path().join("ca.pem");
    let verified = format!(
        "postgres://app@db.eu.internal/db?sslrootcert={}",
        ca.display()
    );
    assert!(node(&verified, &verified, "").is_ok());
    let missing = "postgres://app@db.eu.internal/db?sslrootcert=/nonexistent/ca.pem";
    let err = node(missing, &verified, "").unwrap_err();
    assert_eq!(err.problems[0].key, "database.url");
    assert!(
        err.problems[0].message.contains("/nonexistent/ca.pem"),
        "{err}"
    );
    // Loopback in clear needs no switch.
    let local = "postgres://app@127.0.0.1/db?sslmode=disable";
    assert!(node(local, local, "").is_ok());
}

#[test]
fn moves_peer_files_are_checked_and_come_in_pairs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    write(dir.path(), "ca.pem", b"a ca");
    write(dir.path(), "client.pem", b"a cert");
    let node = |moves: &str| {
        write(
            dir.path(),
            "node.toml",
            format!("{GOOD}\n[moves]\n{moves}").as_bytes(),
        );
        load::<NodeConfig>(&dir.path().join("node.toml"), &Vec::new())
            .map(|c| c.moves)
            .map_err(|e| e.problems.iter().map(|p| p.key.clone()).collect::<Vec<_>>())
    };
    let ok = node("peer_ca_file = \"ca.pem\"").unwrap();
    assert_eq!(ok.peer_ca_file, Some(dir.path().join("ca.pem")));
    assert_eq!(
        node("peer_ca_file = \"missing.pem\"").unwrap_err(),
        ["moves.peer_ca_file"]
    );
    assert_eq!(
        node("peer_ca_file = \"ca.pem\"\nclient_cert_file = \"client.pem\"").unwrap_err(),
        ["moves.client_cert_file"]
    );
    assert_eq!(
        node("client_cert_file = \"client.pem\"\nclient_key_file = \"client.pem\"").unwrap_err(),
        ["moves.peer_ca_file"]
    );
}

#[test]
fn bad_region_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "node.toml",
        GOOD.replace("id = \"eu\"", "id = \"EU!\"").as_bytes(),
    );
    let err = load::<NodeConfig>(&dir.path().join("node.toml"), &Vec::new()).unwrap_err();
    assert_eq!(err.problems[0].key, "region.id");
}

#[test]
fn env_override_applies() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    write(dir.path(), "node.toml", GOOD.as_bytes());
    let env = vec![("RESIDENCY__DATABASE__POOL_SIZE".to_owned(), "3".to_owned())];
    let cfg: NodeConfig = load(&dir.path().join("node.toml"), &env).unwrap();
    assert_eq!(cfg.database.pool_size, 3);
}

#[test]
fn debug_output_never_shows_a_database_password() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    let text = GOOD.replace(
        "url = \"postgres://app@127.0.0.1:5432/db\"",
        "url = \"postgres://app:app-s3cret@127.0.0.1:5432/db\"\n\
         owner_url = \"postgres://own:owner-s3cret@127.0.0.1:5432/db\"",
    );
    write(dir.path(), "node.toml", text.as_bytes());
    let cfg: NodeConfig = load(&dir.path().join("node.toml"), &Vec::new()).unwrap();
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("s3cret"), "a password in {debug}");
    assert!(
        debug.contains("postgres://app:***@127.0.0.1:5432/db"),
        "{debug}"
    );
}

#[test]
fn limits_default_to_the_old_constants_and_bad_values_name_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    write(dir.path(), "node.toml", GOOD.as_bytes());
    let cfg: NodeConfig = load(&dir.path().join("node.toml"), &Vec::new()).unwrap();
    assert_eq!(cfg.limits.max_connections, 4096);
    assert_eq!(cfg.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(cfg.limits.h2_max_concurrent_streams, 256);

    let set = format!(
        "{GOOD}[limits]\nmax_connections = 9\nheader_read_timeout = \"2s\"\n\
         h2_max_concurrent_streams = 7\n"
    );
    write(dir.path(), "node.toml", set.as_bytes());
    let cfg: NodeConfig = load(&dir.path().join("node.toml"), &Vec::new()).unwrap();
    assert_eq!(cfg.limits.max_connections, 9);
    assert_eq!(cfg.limits.header_read_timeout, Duration::from_secs(2));
    assert_eq!(cfg.limits.h2_max_concurrent_streams, 7);

    for (line, key) in [
        ("max_connections = 0", "limits.max_connections"),
        ("header_read_timeout = \"0s\"", "limits.header_read_timeout"),
        (
            "h2_max_concurrent_streams = 0",
            "limits.h2_max_concurrent_streams",
        ),
    ] {
        write(
            dir.path(),
            "node.toml",
            format!("{GOOD}[limits]\n{line}\n").as_bytes(),
        );
        let err = load::<NodeConfig>(&dir.path().join("node.toml"), &Vec::new()).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, [key], "{line}");
        assert!(
            err.to_string().contains(&format!("node.toml: {key}: ")),
            "{err}"
        );
    }
}

#[test]
fn identifiers() {
    assert!(is_simple_identifier("rg_eu_app"));
    assert!(!is_simple_identifier("Robert'); drop"));
    assert!(!is_simple_identifier(""));
}

#[test]
fn tls_reload_interval_defaults_to_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    for f in ["n.pem", "n.key"] {
        write(dir.path(), f, b"pem");
    }
    let tls = "[tls]\ncert_file = \"n.pem\"\nkey_file = \"n.key\"\n";
    for (extra, want) in [("", 10_000), ("reload_interval = \"500ms\"\n", 500)] {
        write(
            dir.path(),
            "node.toml",
            format!("{GOOD}{tls}{extra}").as_bytes(),
        );
        let cfg: NodeConfig = load(&dir.path().join("node.toml"), &Vec::new()).unwrap();
        let got = cfg.tls.unwrap().reload_interval;
        assert_eq!(got, Duration::from_millis(want));
    }
}

#[test]
fn the_health_listener_is_optional_and_must_not_be_the_main_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    write(dir.path(), "node.toml", GOOD.as_bytes());
    let cfg: NodeConfig = load(&dir.path().join("node.toml"), &Vec::new()).unwrap();
    assert_eq!(cfg.node.health, None);
    let with = |health: &str| {
        let text = GOOD
            .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:8080\"")
            .replace("[region]", &format!("health = \"{health}\"\n[region]"));
        write(dir.path(), "node.toml", text.as_bytes());
        load::<NodeConfig>(&dir.path().join("node.toml"), &Vec::new())
    };
    let cfg = with("0.0.0.0:8081").unwrap();
    assert_eq!(cfg.node.health, Some("0.0.0.0:8081".parse().unwrap()));
    let err = with("127.0.0.1:8080").unwrap_err();
    assert_eq!(err.problems[0].key, "node.health");
    assert!(
        err.to_string().contains("must differ from node.listen"),
        "{err}"
    );
}

#[test]
fn tracing_section_is_shared_with_the_gateway_and_checked_by_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    let on = format!(
        "{GOOD}[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\nservice_name = \"eu-node\"\n"
    );
    write(dir.path(), "node.toml", on.as_bytes());
    let cfg: NodeConfig = load(&dir.path().join("node.toml"), &Vec::new()).unwrap();
    let t = cfg.tracing.otlp("region-node").unwrap();
    assert_eq!(t.service_name, "eu-node");
    assert!((t.sample_ratio - 1.0).abs() < f64::EPSILON);

    let bad = format!("{GOOD}[tracing]\notlp_endpoint = \"http://c:4318\"\nsample_ratio = -0.1\n");
    write(dir.path(), "node.toml", bad.as_bytes());
    let err = load::<NodeConfig>(&dir.path().join("node.toml"), &Vec::new()).unwrap_err();
    let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["tracing.sample_ratio"]);
    assert!(
        err.to_string()
            .contains("node.toml: tracing.sample_ratio: "),
        "{err}"
    );
}

#[test]
fn webhooks_default_on_and_safe_and_bad_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.key", &[1; 32]);
    write(dir.path(), "c.key", &[2; 32]);
    write(dir.path(), "node.toml", GOOD.as_bytes());
    let cfg: NodeConfig = load(&dir.path().join("node.toml"), &Vec::new()).unwrap();
    let w = &cfg.webhooks;
    assert!(w.enabled && !w.allow_http && !w.allow_private_targets);
    assert_eq!(
        (w.max_attempts, w.backoff_base),
        (8, Duration::from_secs(5))
    );

    let text = format!(
        "{GOOD}\n[webhooks]\nmax_attempts = 0\nbackoff_base = \"10s\"\nbackoff_cap = \"1s\"\n\
         attempt_timeout = \"0s\"\nconcurrency = 0\nca_file = \"missing.pem\"\n"
    );
    write(dir.path(), "node.toml", text.as_bytes());
    let err = load::<NodeConfig>(&dir.path().join("node.toml"), &Vec::new()).unwrap_err();
    let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "webhooks.max_attempts",
            "webhooks.backoff_cap",
            "webhooks.attempt_timeout",
            "webhooks.concurrency",
            "webhooks.ca_file"
        ]
    );
}
