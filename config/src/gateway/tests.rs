//! Tests of the whole gateway config: loading, defaults, and that every problem names its key.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::load::{from_str, load};
use audit::DEFAULT_AUDIT_TIMEOUT;
use residency_core::RegionId;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

const GOOD: &str = r#"
[listen]
public = "127.0.0.1:0"
admin = "127.0.0.1:0"

[[issuers]]
issuer = "https://idp.test/"
audience = "api"
jwks_file = "jwks.json"

[directory]
source = "file"
path = "directory.toml"

[[regions]]
id = "eu"
upstreams = ["http://127.0.0.1:8542"]
assertion = { kid = "eu-1", key_file = "eu.key" }

[[regions]]
id = "us"
upstreams = ["http://127.0.0.1:8541", "http://127.0.0.1:8540/"]
assertion = { kid = "us-1", key_file = "us.key" }
"#;

fn dir_with_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "jwks.json", b"{\"keys\":[]}");
    write(dir.path(), "directory.toml", b"");
    write(dir.path(), "eu.key", &[1; 32]);
    write(dir.path(), "us.key", &[2; 32]);
    dir
}

fn load_text(dir: &Path, text: &str) -> Result<GatewayConfig, crate::ConfigError> {
    write(dir, "gateway.toml", text.as_bytes());
    load(&dir.join("gateway.toml"), &Vec::new())
}

fn problem_keys(dir: &Path, text: &str) -> Vec<String> {
    load_text(dir, text)
        .unwrap_err()
        .problems
        .into_iter()
        .map(|p| p.key)
        .collect()
}

#[test]
fn loads_with_spec_defaults_and_resolved_paths() {
    let dir = dir_with_files();
    let cfg = load_text(dir.path(), GOOD).unwrap();
    assert_eq!(cfg.limits.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(cfg.limits.max_header_bytes, 16 * 1024);
    assert_eq!(cfg.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(cfg.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(cfg.limits.park_idle_after, Duration::from_secs(1));
    assert_eq!(cfg.limits.max_connection_age, Duration::from_secs(3600));
    assert_eq!(cfg.limits.max_connections_per_ip, 256);
    assert_eq!(cfg.claims, ClaimNames::default());
    assert_eq!(cfg.claims.tenant, "tenant_id");
    assert_eq!(cfg.issuers[0].algorithms, ["ES256"]);
    assert_eq!(cfg.issuers[0].leeway, Duration::from_secs(5));
    assert_eq!(
        cfg.issuers[0].jwks_file.as_deref(),
        Some(dir.path().join("jwks.json").as_path())
    );
    assert_eq!(cfg.regions[1].assertion.key_file, dir.path().join("us.key"));
    assert!(matches!(
        &cfg.directory,
        DirectorySource::File { path } if path == &dir.path().join("directory.toml")
    ));
}

#[test]
fn a_fourth_region_is_config_only() {
    let dir = dir_with_files();
    write(dir.path(), "sa.key", &[3; 32]);
    let text = format!(
        "{GOOD}\n[[regions]]\nid = \"sa\"\nupstreams = [\"http://10.0.0.1:80\"]\n\
         assertion = {{ kid = \"sa-1\", key_file = \"sa.key\" }}\n"
    );
    let cfg = load_text(dir.path(), &text).unwrap();
    assert_eq!(cfg.regions.len(), 3);
    assert_eq!(cfg.regions[2].id.as_str(), "sa");
}

#[test]
fn issuer_problems_name_their_keys() {
    let dir = dir_with_files();
    let text = GOOD.replace(
        "jwks_file = \"jwks.json\"",
        "jwks_file = \"missing.json\"\nalgorithms = [\"HS256\", \"none\", \"ES256\"]\n\
         leeway = \"31s\"\njwks_cooldown = \"1s\"",
    );
    assert_eq!(
        problem_keys(dir.path(), &text),
        [
            "issuers[0].jwks_file",
            "issuers[0].algorithms[0]",
            "issuers[0].algorithms[1]",
            "issuers[0].leeway",
            "issuers[0].jwks_cooldown",
        ]
    );
}

#[test]
fn jwks_source_must_be_exactly_one() {
    let dir = dir_with_files();
    let both = GOOD.replace(
        "jwks_file = \"jwks.json\"",
        "jwks_file = \"jwks.json\"\njwks_url = \"http://127.0.0.1:1/jwks\"",
    );
    assert_eq!(problem_keys(dir.path(), &both), ["issuers[0].jwks_file"]);
    let url = GOOD.replace(
        "jwks_file = \"jwks.json\"",
        "jwks_url = \"http://127.0.0.1:1/jwks\"",
    );
    assert!(load_text(dir.path(), &url).is_ok());
}

#[test]
fn region_problems_name_their_keys() {
    let dir = dir_with_files();
    let text = GOOD
        .replace("http://127.0.0.1:8542", "https://127.0.0.1:8542")
        .replace("\"http://127.0.0.1:8540/\"", "\"http://127.0.0.1:8540/v1\"")
        .replace("id = \"us\"", "id = \"eu\"")
        .replace("us.key", "short.key");
    write(dir.path(), "short.key", &[1; 8]);
    assert_eq!(
        problem_keys(dir.path(), &text),
        [
            "regions[0].ca_file",
            "regions[1].id",
            "regions[1].upstreams[1]",
            "regions[1].assertion.key_file",
        ]
    );
}

#[test]
fn https_upstreams_need_a_ca_one_scheme_and_whole_client_certs() {
    let dir = dir_with_files();
    write(dir.path(), "ca.pem", b"pem");
    write(dir.path(), "client.pem", b"pem");
    write(dir.path(), "client.key", b"pem");
    let https = GOOD.replace(
        "upstreams = [\"http://127.0.0.1:8542\"]",
        "upstreams = [\"https://127.0.0.1:8542\"]\nca_file = \"ca.pem\"\n\
         client_cert_file = \"client.pem\"\nclient_key_file = \"client.key\"",
    );
    let cfg = load_text(dir.path(), &https).unwrap();
    assert!(cfg.regions[0].uses_tls());
    assert!(!cfg.regions[1].uses_tls());
    assert_eq!(cfg.regions[0].ca_file, Some(dir.path().join("ca.pem")));
    assert_eq!(
        cfg.regions[0].client_key_file,
        Some(dir.path().join("client.key"))
    );
    // Mixed schemes, a missing CA file and half a client pair are refused by key.
    let bad = GOOD
        .replace(
            "upstreams = [\"http://127.0.0.1:8542\"]",
            "upstreams = [\"https://127.0.0.1:8542\"]\nca_file = \"nope.pem\"\n\
             client_cert_file = \"client.pem\"",
        )
        .replace("\"http://127.0.0.1:8540/\"", "\"https://127.0.0.1:8540/\"");
    let problems = load_text(dir.path(), &bad).unwrap_err();
    let keys: Vec<&str> = problems.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "regions[0].ca_file",
            "regions[0].client_key_file",
            "regions[1].upstreams",
        ],
        "{problems}"
    );
    // TLS settings on an http region would suggest TLS that is not there.
    let http_with_ca = GOOD.replace(
        "upstreams = [\"http://127.0.0.1:8542\"]",
        "upstreams = [\"http://127.0.0.1:8542\"]\nca_file = \"ca.pem\"",
    );
    assert_eq!(
        problem_keys(dir.path(), &http_with_ca),
        ["regions[0].ca_file"]
    );
    let e = load_text(
        dir.path(),
        &GOOD.replace("http://127.0.0.1:8542", "https://127.0.0.1:8542"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("regions[0].ca_file: required for https upstreams"),
        "{e}"
    );
}

#[test]
fn audit_section_names_every_region_and_refuses_the_app_role() {
    let dir = dir_with_files();
    let good = format!(
        "{GOOD}\n[audit]\n[audit.regions.eu]\n\
         database_url = \"postgres://eu_auditor:s3cret@db/eu?sslmode=require\"\napp_role = \"eu_app\"\n\
         [audit.regions.us]\n\
         database_url = \"postgres://us_auditor@db/us?sslmode=require\"\napp_role = \"us_app\"\n"
    );
    let cfg = load_text(dir.path(), &good).unwrap();
    let audit = cfg.audit.unwrap();
    assert_eq!(audit.timeout, DEFAULT_AUDIT_TIMEOUT);
    let eu = &audit.regions[&RegionId::new("eu").unwrap()];
    assert_eq!(eu.app_role, "eu_app");
    assert!(!format!("{eu:?}").contains("s3cret"));
    let bad = format!(
        "{GOOD}\n[audit]\ntimeout = \"0s\"\n[audit.regions.eu]\n\
         database_url = \"postgres://eu_app@db/eu?sslmode=require\"\napp_role = \"eu_app\"\n\
         [audit.regions.sa]\n\
         database_url = \"mysql://x@db/sa\"\napp_role = \"Bad\"\n"
    );
    assert_eq!(
        problem_keys(dir.path(), &bad),
        [
            "audit.timeout",
            "audit.regions.us",
            "audit.regions.eu.database_url",
            "audit.regions.sa",
            "audit.regions.sa.app_role",
            "audit.regions.sa.database_url",
        ]
    );
}

#[test]
fn postgres_directory_loads_with_defaults_and_masks_the_password() {
    let dir = dir_with_files();
    let text = GOOD.replace(
        "source = \"file\"\npath = \"directory.toml\"",
        "source = \"postgres\"\nurl = \"postgres://d:s3cret@127.0.0.1/dir\"",
    );
    let cfg = load_text(dir.path(), &text).unwrap();
    let DirectorySource::Postgres {
        url,
        max_stale,
        negative_ttl,
        timeout,
        negative_entries,
        allow_insecure_transport,
        mode,
        capacity,
    } = &cfg.directory
    else {
        panic!("postgres source expected");
    };
    assert_eq!(url.expose().as_str(), "postgres://d:s3cret@127.0.0.1/dir");
    assert_eq!(*max_stale, Duration::from_secs(600));
    assert_eq!(*negative_ttl, Duration::from_secs(5));
    assert_eq!(*timeout, Duration::from_secs(2));
    assert_eq!(*negative_entries, 100_000);
    assert!(!allow_insecure_transport);
    assert_eq!((*mode, *capacity), (DirectoryMode::Full, None));
    assert_eq!(cfg.directory.bounded_capacity(), None);
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
}

#[test]
fn clear_text_to_a_remote_directory_or_audit_database_is_refused_unless_allowed() {
    let dir = dir_with_files();
    let text = |allow_dir: &str, allow_audit: &str| {
        GOOD.replace(
            "source = \"file\"\npath = \"directory.toml\"",
            &format!(
                "source = \"postgres\"\nurl = \"postgres://d_reader:pw1@dir.internal/d?sslmode=disable\"\n{allow_dir}"
            ),
        ) + &format!(
            "\n[admin]\ntoken = \"admin-token-0123456789abcdef\"\n\
             directory_url = \"postgres://d_writer:pw2@dir.internal/d?sslmode=disable\"\n\
             [audit]\n{allow_audit}\n[audit.regions.eu]\n\
             database_url = \"postgres://eu_auditor:pw3@db.eu/eu?sslmode=disable\"\napp_role = \"eu_app\"\n\
             [audit.regions.us]\n\
             database_url = \"postgres://us_auditor@127.0.0.1/us\"\napp_role = \"us_app\"\n"
        )
    };
    assert_eq!(
        problem_keys(dir.path(), &text("", "")),
        [
            "directory.url",
            "audit.regions.eu.database_url",
            "admin.directory_url"
        ]
    );
    let e = load_text(dir.path(), &text("", ""))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("directory.allow_insecure_transport = true"),
        "{e}"
    );
    assert!(e.contains("audit.allow_insecure_transport = true"), "{e}");
    assert!(
        !e.contains("pw1") && !e.contains("pw2") && !e.contains("pw3"),
        "{e}"
    );
    let allowed = text(
        "allow_insecure_transport = true",
        "allow_insecure_transport = true",
    );
    assert!(load_text(dir.path(), &allowed).is_ok());
}

#[test]
fn postgres_directory_problems_name_their_keys() {
    let dir = dir_with_files();
    let text = GOOD.replace(
        "source = \"file\"\npath = \"directory.toml\"",
        "source = \"postgres\"\nurl = \"mysql://x@h/d\"\nmax_stale = \"25h\"\n\
         negative_ttl = \"0s\"\ntimeout = \"31s\"\nnegative_entries = 0",
    );
    assert_eq!(
        problem_keys(dir.path(), &text),
        [
            "directory.url",
            "directory.max_stale",
            "directory.negative_ttl",
            "directory.timeout",
            "directory.negative_entries",
        ]
    );
    let unknown = GOOD.replace(
        "source = \"file\"\npath = \"directory.toml\"",
        "source = \"postgres\"\nurl = \"postgres://h/d\"\nmax_stail = \"1m\"",
    );
    assert!(load_text(dir.path(), &unknown).is_err());
}

#[test]
fn the_admin_writes_through_its_own_directory_role() {
    let dir = dir_with_files();
    write(dir.path(), "admin.token", b"0123456789abcdef0123\n");
    let pg = GOOD.replace(
        "source = \"file\"\npath = \"directory.toml\"",
        "source = \"postgres\"\nurl = \"postgres://d_reader:r3ader@127.0.0.1/dir\"",
    );
    let with_admin = |extra: &str| format!("{pg}\n[admin]\ntoken_file = \"admin.token\"\n{extra}");
    // Enabled admin api, postgres directory, no writer: refused, naming the key.
    let err = load_text(dir.path(), &with_admin("")).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].key, "admin.directory_url");
    assert!(err
        .to_string()
        .contains("gateway.toml: admin.directory_url: required"));
    // The writer is its own role.
    let cfg = load_text(
        dir.path(),
        &with_admin("directory_url = \"postgres://d_writer:wr1ter@127.0.0.1/dir\"\n"),
    )
    .unwrap();
    assert_eq!(
        cfg.admin
            .directory_url
            .as_ref()
            .map(|u| u.expose().as_str()),
        Some("postgres://d_writer:wr1ter@127.0.0.1/dir")
    );
    assert!(!format!("{cfg:?}").contains("wr1ter"));
    // ... and comes from the environment like the reader.
    write(dir.path(), "gateway.toml", with_admin("").as_bytes());
    let env = vec![(
        "RESIDENCY__ADMIN__DIRECTORY_URL".to_owned(),
        "postgres://d_writer:wr1ter@127.0.0.1/dir".to_owned(),
    )];
    assert!(load::<GatewayConfig>(&dir.path().join("gateway.toml"), &env).is_ok());
    for (bad, why) in [
        (
            "postgres://d_reader:x@127.0.0.1/dir",
            "must name another role than directory.url",
        ),
        ("mysql://w@h/d", "must be a postgres:// url"),
        ("postgres://127.0.0.1/dir", "must name its role"),
    ] {
        let err = load_text(
            dir.path(),
            &with_admin(&format!("directory_url = \"{bad}\"\n")),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("admin.directory_url: {why}")),
            "{bad}: {err}"
        );
        assert!(!err.contains(":x@"), "{err}");
    }
    // No token (admin api refuses everything) or no admin listener: no writer needed.
    assert!(load_text(dir.path(), &pg).is_ok());
    let no_listener = with_admin("").replace("admin = \"127.0.0.1:0\"\n", "");
    assert!(load_text(dir.path(), &no_listener).is_ok());
    // A file directory has no writer.
    let file = format!("{GOOD}\n[admin]\ndirectory_url = \"postgres://w@h/d\"\n");
    assert_eq!(problem_keys(dir.path(), &file), ["admin.directory_url"]);
}

#[test]
fn admin_token_comes_from_a_file_or_the_environment() {
    let dir = dir_with_files();
    write(dir.path(), "admin.token", b"0123456789abcdef0123\n");
    let text = format!("{GOOD}\n[admin]\ntoken_file = \"admin.token\"\ntoken_name = \"ops\"\n");
    let cfg = load_text(dir.path(), &text).unwrap();
    assert_eq!(
        cfg.admin.token_file.as_deref(),
        Some(dir.path().join("admin.token").as_path())
    );
    assert_eq!(cfg.admin.token_name, "ops");
    assert_eq!(cfg.admin.provision_timeout, Duration::from_secs(10));

    write(dir.path(), "gateway.toml", GOOD.as_bytes());
    let env = vec![(
        "RESIDENCY__ADMIN__TOKEN".to_owned(),
        "from-the-environment-0123".to_owned(),
    )];
    let cfg: GatewayConfig = load(&dir.path().join("gateway.toml"), &env).unwrap();
    assert_eq!(
        cfg.admin.token.as_ref().map(|t| t.expose().as_str()),
        Some("from-the-environment-0123")
    );
    assert!(!format!("{cfg:?}").contains("from-the-environment"));
}

#[test]
fn admin_and_health_check_problems_name_their_keys() {
    let dir = dir_with_files();
    write(dir.path(), "short.token", b"short");
    let text = format!(
        "{GOOD}\n[admin]\ntoken_file = \"short.token\"\ntoken_name = \"Ops Team\"\n\
         provision_timeout = \"0s\"\n[health_check]\ninterval = \"1s\"\ntimeout = \"1s\"\n\
         unhealthy_threshold = 0\n"
    );
    assert_eq!(
        problem_keys(dir.path(), &text),
        [
            "admin.token_file",
            "admin.token_name",
            "admin.provision_timeout",
            "health_check.timeout",
            "health_check.unhealthy_threshold",
        ]
    );
    let both =
        format!("{GOOD}\n[admin]\ntoken_file = \"missing.token\"\ntoken = \"0123456789abcdef0\"\n");
    assert_eq!(problem_keys(dir.path(), &both), ["admin.token"]);
    let cfg = load_text(dir.path(), GOOD).unwrap();
    assert!(cfg.health_check.enabled);
    assert_eq!(cfg.health_check.interval, Duration::from_secs(2));
    assert_eq!(cfg.health_check.unhealthy_threshold, 2);
}

#[test]
fn the_admin_listener_has_its_own_limits() {
    let dir = dir_with_files();
    let cfg = load_text(dir.path(), GOOD).unwrap();
    assert_eq!(cfg.admin.max_connections, 1024);
    assert_eq!(cfg.admin.header_read_timeout, Duration::from_secs(10));
    assert_eq!(cfg.admin.max_header_bytes, 16 * 1024);
    assert_eq!(cfg.admin.h2_max_concurrent_streams, 200);
    assert_eq!(cfg.admin.idle_timeout, Duration::from_secs(60));
    assert_eq!(cfg.admin.max_connection_age, Duration::from_secs(3600));
    let text = format!(
        "{GOOD}\n[admin]\nmax_connections = 3\nheader_read_timeout = \"1s\"\n\
         max_header_bytes = 9000\nh2_max_concurrent_streams = 4\n"
    );
    let cfg = load_text(dir.path(), &text).unwrap();
    assert_eq!(cfg.admin.max_connections, 3);
    assert_eq!(cfg.admin.header_read_timeout, Duration::from_secs(1));
    assert_eq!(cfg.admin.max_header_bytes, 9000);
    assert_eq!(cfg.admin.h2_max_concurrent_streams, 4);
    assert_eq!(
        cfg.limits.max_connections, 10_000,
        "[limits] is the public listener's"
    );
    for (line, key) in [
        ("max_connections = 0", "admin.max_connections"),
        ("header_read_timeout = \"0s\"", "admin.header_read_timeout"),
        ("max_header_bytes = 1024", "admin.max_header_bytes"),
        (
            "h2_max_concurrent_streams = 0",
            "admin.h2_max_concurrent_streams",
        ),
        ("idle_timeout = \"0s\"", "admin.idle_timeout"),
        ("max_connection_age = \"0s\"", "admin.max_connection_age"),
    ] {
        let err = load_text(dir.path(), &format!("{GOOD}\n[admin]\n{line}\n")).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, [key], "{line}");
        assert!(
            err.to_string().contains(&format!("gateway.toml: {key}: ")),
            "{err}"
        );
    }
}

#[test]
fn limits_are_checked() {
    let dir = dir_with_files();
    let text = format!("{GOOD}\n[limits]\nmax_header_bytes = 1024\nmax_body_bytes = 0\n");
    assert_eq!(
        problem_keys(dir.path(), &text),
        ["limits.max_body_bytes", "limits.max_header_bytes"]
    );
    let text = format!(
        "{GOOD}\n[limits]\nidle_timeout = \"0s\"\nmax_connection_age = \"0s\"\n\
         park_idle_after = \"0s\"\nmax_connections = 10\nmax_connections_per_ip = 11\n"
    );
    assert_eq!(
        problem_keys(dir.path(), &text),
        [
            "limits.idle_timeout",
            "limits.park_idle_after",
            "limits.max_connection_age",
            "limits.max_connections_per_ip"
        ]
    );
    let zero = format!("{GOOD}\n[limits]\nmax_connections_per_ip = 0\n");
    assert_eq!(
        problem_keys(dir.path(), &zero),
        ["limits.max_connections_per_ip"]
    );
    let equal = format!("{GOOD}\n[limits]\nmax_connections = 8\nmax_connections_per_ip = 8\n");
    assert!(load_text(dir.path(), &equal).is_ok());
}

#[test]
fn rate_limit_defaults_to_local_with_a_full_minute_of_burst() {
    let dir = dir_with_files();
    let cfg = load_text(dir.path(), GOOD).unwrap();
    assert_eq!(cfg.rate_limit.backend, RateLimitBackend::Local);
    assert_eq!(cfg.rate_limit.burst, Duration::from_secs(60));
    assert_eq!(cfg.rate_limit.redis_timeout, Duration::from_millis(50));
    assert_eq!(cfg.rate_limit.redis_key_prefix, "residency:ratelimit:");
    assert!(cfg.rate_limit.redis_url.is_none());
}

#[test]
fn rate_limit_redis_backend_loads() {
    let dir = dir_with_files();
    let text = format!(
        "{GOOD}\n[rate_limit]\nbackend = \"redis\"\nburst = \"10s\"\n\
         redis_url = \"redis://:hunter2@127.0.0.1:6379/0\"\nredis_timeout = \"20ms\"\n\
         redis_key_prefix = \"rl:\"\n"
    );
    let cfg = load_text(dir.path(), &text).unwrap();
    let rl = &cfg.rate_limit;
    assert_eq!(rl.backend, RateLimitBackend::Redis);
    assert_eq!(rl.burst, Duration::from_secs(10));
    assert_eq!(rl.redis_timeout, Duration::from_millis(20));
    assert_eq!(rl.redis_key_prefix, "rl:");
    let url = rl.redis_url.as_ref().unwrap();
    assert_eq!(url.expose().as_str(), "redis://:hunter2@127.0.0.1:6379/0");
    // The password never reaches Debug output (and so never a log of the config).
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("redis://:***@127.0.0.1:6379/0"), "{debug}");
}

#[test]
fn rate_limit_problems_name_their_keys() {
    let dir = dir_with_files();
    let text = format!(
        "{GOOD}\n[rate_limit]\nbackend = \"redis\"\nburst = \"61s\"\nredis_timeout = \"0s\"\n\
         redis_key_prefix = \"\"\n"
    );
    assert_eq!(
        problem_keys(dir.path(), &text),
        [
            "rate_limit.burst",
            "rate_limit.redis_timeout",
            "rate_limit.redis_key_prefix",
            "rate_limit.redis_url",
        ]
    );
    for (url, why) in [
        ("rediss://127.0.0.1:6379/#insecure", "certificate check"),
        ("http://127.0.0.1:6379", "rediss:// (tls) or redis:// url"),
        ("redis://10.0.0.5:6379", "allow_insecure_transport"),
        ("not a url", "not a url"),
    ] {
        let text = format!("{GOOD}\n[rate_limit]\nbackend = \"redis\"\nredis_url = \"{url}\"\n");
        let err = load_text(dir.path(), &text).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "rate_limit.redis_url");
        assert!(err.problems[0].message.contains(why), "{err}");
    }
    let text = format!("{GOOD}\n[rate_limit]\nburst = \"500ms\"\nredis_timeout = \"2s\"\n");
    assert_eq!(
        problem_keys(dir.path(), &text),
        ["rate_limit.burst", "rate_limit.redis_timeout"]
    );
    let text = format!("{GOOD}\n[rate_limit]\nbackend = \"memcached\"\n");
    assert!(load_text(dir.path(), &text).is_err());
}

#[test]
fn rate_limit_rediss_loads_with_its_tls_files_relative_to_the_config() {
    let dir = dir_with_files();
    for f in ["redis-ca.pem", "redis-client.pem", "redis-client.key"] {
        write(dir.path(), f, b"pem");
    }
    let text = format!(
        "{GOOD}\n[rate_limit]\nbackend = \"redis\"\n\
         redis_url = \"rediss://:hunter2@redis.internal:6380/0\"\n\
         redis_ca_file = \"redis-ca.pem\"\nredis_client_cert_file = \"redis-client.pem\"\n\
         redis_client_key_file = \"redis-client.key\"\n"
    );
    let cfg = load_text(dir.path(), &text).unwrap();
    let rl = &cfg.rate_limit;
    assert!(rl.redis_uses_tls());
    assert!(!rl.allow_insecure_transport);
    assert_eq!(
        rl.redis_ca_file.as_deref(),
        Some(&*dir.path().join("redis-ca.pem"))
    );
    assert_eq!(
        rl.redis_client_cert_file.as_deref(),
        Some(&*dir.path().join("redis-client.pem"))
    );
    assert_eq!(
        rl.redis_client_key_file.as_deref(),
        Some(&*dir.path().join("redis-client.key"))
    );
    // Without a CA file the platform's trust store is used: no problem either.
    let text =
        format!("{GOOD}\n[rate_limit]\nbackend = \"redis\"\nredis_url = \"rediss://r:6380\"\n");
    assert!(load_text(dir.path(), &text)
        .unwrap()
        .rate_limit
        .redis_uses_tls());
}

#[test]
fn plain_redis_is_for_loopback_unless_insecure_transport_is_allowed() {
    let dir = dir_with_files();
    let section = |url: &str, extra: &str| {
        format!("{GOOD}\n[rate_limit]\nbackend = \"redis\"\nredis_url = \"{url}\"\n{extra}")
    };
    for url in [
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.2:6379",
        "redis://localhost:6379",
        "redis://LOCALHOST",
        "redis://[::1]:6379",
    ] {
        let cfg = load_text(dir.path(), &section(url, "")).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(!cfg.rate_limit.redis_uses_tls(), "{url}");
    }
    for url in [
        "redis://:pw-in-clear@10.0.0.5:6379/0",
        "redis://redis.internal:6379",
        "redis://localhost.example.com",
        "redis://[2001:db8::1]:6379",
    ] {
        let err = load_text(dir.path(), &section(url, "")).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{url}: {err}");
        assert_eq!(err.problems[0].key, "rate_limit.redis_url");
        assert!(err.problems[0].message.contains("rediss://"), "{err}");
        // The refusal names the key, never the password.
        assert!(!err.to_string().contains("pw-in-clear"), "{err}");
        let allowed = section(url, "allow_insecure_transport = true\n");
        let cfg = load_text(dir.path(), &allowed).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(cfg.rate_limit.allow_insecure_transport);
    }
}

#[test]
fn rate_limit_tls_files_need_rediss_a_whole_pair_and_readable_files() {
    let dir = dir_with_files();
    write(dir.path(), "redis-client.pem", b"pem");
    let files = "redis_ca_file = \"ca.pem\"\nredis_client_cert_file = \"redis-client.pem\"\n\
                 redis_client_key_file = \"k.pem\"\n";
    // Without TLS, TLS files would only make someone believe it is on.
    for url in ["redis://127.0.0.1:6379", ""] {
        let url = if url.is_empty() {
            String::new()
        } else {
            format!("redis_url = \"{url}\"\n")
        };
        let text = format!("{GOOD}\n[rate_limit]\n{url}{files}");
        let err = load_text(dir.path(), &text).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rate_limit.redis_ca_file",
                "rate_limit.redis_client_cert_file",
                "rate_limit.redis_client_key_file"
            ],
            "{err}"
        );
        assert!(
            err.problems.iter().all(|p| p.message.contains("rediss://")),
            "{err}"
        );
    }
    // With TLS: the missing files are named, by key and path.
    let text = format!("{GOOD}\n[rate_limit]\nredis_url = \"rediss://127.0.0.1:6380\"\n{files}");
    let err = load_text(dir.path(), &text).unwrap_err();
    let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "rate_limit.redis_ca_file",
            "rate_limit.redis_client_key_file"
        ],
        "{err}"
    );
    assert!(err.problems[0].message.contains("ca.pem"), "{err}");
    assert!(err.problems[1].message.contains("k.pem"), "{err}");
    // Half a client pair.
    let half = |key: &str| {
        format!("{GOOD}\n[rate_limit]\nredis_url = \"rediss://127.0.0.1:6380\"\n{key} = \"redis-client.pem\"\n")
    };
    assert_eq!(
        problem_keys(dir.path(), &half("redis_client_cert_file")),
        ["rate_limit.redis_client_key_file"]
    );
    assert_eq!(
        problem_keys(dir.path(), &half("redis_client_key_file")),
        ["rate_limit.redis_client_cert_file"]
    );
}

#[test]
fn claim_names_must_be_distinct_and_non_empty() {
    let dir = dir_with_files();
    let text = format!("{GOOD}\n[claims]\nsubject = \"\"\ntenant = \"role\"\n");
    assert_eq!(
        problem_keys(dir.path(), &text),
        ["claims.subject", "claims.tenant"]
    );
}

#[test]
fn unknown_keys_are_refused() {
    let err = from_str::<GatewayConfig>(
        &GOOD.replace("[listen]", "[listen]\npublik = \"x\""),
        &Vec::new(),
    )
    .unwrap_err();
    assert!(err.message.contains("publik"), "{err:?}");
}

#[test]
fn debug_output_of_a_config_with_every_secret_shows_none() {
    let dir = dir_with_files();
    let text = GOOD.replace(
        "source = \"file\"\npath = \"directory.toml\"",
        "source = \"postgres\"\nurl = \"postgres://d_reader:reader-pw1@127.0.0.1/dir\"",
    ) + "\n[admin]\ntoken = \"admin-token-pw2-0123456789\"\n\
         directory_url = \"postgres://d_writer:writer-pw3@127.0.0.1/dir\"\n\
         [rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://:redis-pw4@127.0.0.1:6379/0\"\n\
         [audit]\n[audit.regions.eu]\n\
         database_url = \"postgres://eu_auditor:audit-pw5@db/eu?sslmode=require\"\napp_role = \"eu_app\"\n\
         [audit.regions.us]\n\
         database_url = \"postgres://us_auditor:audit-pw6@db/us?sslmode=require\"\napp_role = \"us_app\"\n";
    let cfg = load_text(dir.path(), &text).unwrap();
    let debug = format!("{cfg:?}");
    for pw in [
        "reader-pw1",
        "admin-token-pw2",
        "writer-pw3",
        "redis-pw4",
        "audit-pw5",
        "audit-pw6",
    ] {
        assert!(!debug.contains(pw), "{pw} in {debug}");
    }
    // The URLs stay recognisable, without their passwords.
    assert!(
        debug.contains("postgres://d_writer:***@127.0.0.1/dir"),
        "{debug}"
    );
}

#[test]
fn tls_reload_interval_defaults_to_ten_seconds_and_zero_means_sighup_only() {
    let dir = dir_with_files();
    write(dir.path(), "cert.pem", b"pem");
    write(dir.path(), "key.pem", b"pem");
    let tls = "[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n";
    let cfg = load_text(dir.path(), &format!("{tls}{GOOD}")).unwrap();
    let t = cfg.tls.unwrap();
    assert_eq!(t.reload_interval, Duration::from_secs(10));
    assert_eq!(t.cert_file, dir.path().join("cert.pem"));
    let cfg = load_text(
        dir.path(),
        &format!("{tls}reload_interval = \"0s\"\n{GOOD}"),
    )
    .unwrap();
    assert_eq!(cfg.tls.unwrap().reload_interval, Duration::ZERO);
    let cfg = load_text(
        dir.path(),
        &format!("{tls}reload_interval = \"250ms\"\n{GOOD}"),
    )
    .unwrap();
    assert_eq!(cfg.tls.unwrap().reload_interval, Duration::from_millis(250));
    assert!(load_text(
        dir.path(),
        &format!("{tls}reload_interval = \"soon\"\n{GOOD}")
    )
    .is_err());
}

#[test]
fn tls_domains_dir_resolves_relative_to_the_config_and_must_be_a_directory() {
    let dir = dir_with_files();
    write(dir.path(), "cert.pem", b"pem");
    write(dir.path(), "key.pem", b"pem");
    let tls = "[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n";
    let cfg = load_text(dir.path(), &format!("{tls}{GOOD}")).unwrap();
    assert_eq!(cfg.tls.unwrap().domains_dir, None);
    std::fs::create_dir(dir.path().join("domains")).unwrap();
    let cfg = load_text(
        dir.path(),
        &format!("{tls}domains_dir = \"domains\"\n{GOOD}"),
    )
    .unwrap();
    assert_eq!(
        cfg.tls.unwrap().domains_dir,
        Some(dir.path().join("domains"))
    );
    assert_eq!(
        problem_keys(
            dir.path(),
            &format!("{tls}domains_dir = \"cert.pem\"\n{GOOD}")
        ),
        ["tls.domains_dir"]
    );
}

#[test]
fn the_access_log_is_off_by_default_and_switched_on_by_file_or_environment() {
    let dir = dir_with_files();
    assert!(!load_text(dir.path(), GOOD).unwrap().log.access);
    let on = format!("{GOOD}\n[log]\naccess = true\n");
    assert!(load_text(dir.path(), &on).unwrap().log.access);
    write(dir.path(), "gateway.toml", GOOD.as_bytes());
    let env = vec![("RESIDENCY__LOG__ACCESS".to_owned(), "true".to_owned())];
    let cfg: GatewayConfig = load(&dir.path().join("gateway.toml"), &env).unwrap();
    assert!(cfg.log.access);
    // A wrong type and an unknown key are refused by name.
    let err = from_str::<GatewayConfig>(&format!("{GOOD}\n[log]\naccess = \"yes\"\n"), &Vec::new())
        .unwrap_err();
    assert_eq!(err.key, "log.access", "{err:?}");
    let err =
        from_str::<GatewayConfig>(&format!("{GOOD}\n[log]\nformat = \"json\"\n"), &Vec::new())
            .unwrap_err();
    assert!(err.message.contains("format"), "{err:?}");
}

#[test]
fn bounded_directory_mode_takes_a_validated_capacity() {
    let dir = dir_with_files();
    let text = |extra: &str| {
        GOOD.replace(
            "source = \"file\"\npath = \"directory.toml\"",
            &format!("source = \"postgres\"\nurl = \"postgres://d@127.0.0.1/dir\"\n{extra}"),
        )
    };
    let cfg = load_text(dir.path(), &text("mode = \"bounded\"")).unwrap();
    assert_eq!(cfg.directory.bounded_capacity(), Some(100_000));
    let cfg = load_text(dir.path(), &text("mode = \"bounded\"\ncapacity = 500")).unwrap();
    assert_eq!(cfg.directory.bounded_capacity(), Some(500));
    for bad in [
        "mode = \"bounded\"\ncapacity = 0",
        "mode = \"bounded\"\ncapacity = 200000000",
        "capacity = 500",
    ] {
        assert_eq!(
            problem_keys(dir.path(), &text(bad)),
            ["directory.capacity"],
            "{bad}"
        );
    }
    let err = load_text(dir.path(), &text("mode = \"lazy\"")).unwrap_err();
    assert!(format!("{err}").contains("directory"), "{err}");
}

#[test]
fn tracing_is_off_by_default_and_its_problems_name_their_keys() {
    let dir = dir_with_files();
    let cfg = load_text(dir.path(), GOOD).unwrap();
    assert_eq!(cfg.tracing.otlp("residency-gateway"), None);
    let on = format!("{GOOD}\n[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\n");
    let cfg = load_text(dir.path(), &on).unwrap();
    let t = cfg.tracing.otlp("residency-gateway").unwrap();
    assert_eq!(t.endpoint, "http://127.0.0.1:4318");
    assert_eq!(t.service_name, "residency-gateway");
    for (section, key) in [
        (
            "otlp_endpoint = \"https://collector:4318\"",
            "tracing.otlp_endpoint",
        ),
        (
            "otlp_endpoint = \"http://c:4318\"\nsample_ratio = 1.5",
            "tracing.sample_ratio",
        ),
        ("sample_ratio = 0.5", "tracing.otlp_endpoint"),
    ] {
        let text = format!("{GOOD}\n[tracing]\n{section}\n");
        assert_eq!(problem_keys(dir.path(), &text), [key], "{section}");
    }
    let unknown = format!("{GOOD}\n[tracing]\nendpoint = \"http://c:4318\"\n");
    let err = load_text(dir.path(), &unknown).unwrap_err().to_string();
    assert!(
        err.contains("gateway.toml") && err.contains("tracing") && err.contains("endpoint"),
        "{err}"
    );
}

#[test]
fn public_cores_defaults_to_the_process_runtime_and_is_bounded() {
    let dir = dir_with_files();
    assert_eq!(load_text(dir.path(), GOOD).unwrap().listen.public_cores, 0);
    let two = GOOD.replace(
        "admin = \"127.0.0.1:0\"",
        "admin = \"127.0.0.1:0\"\npublic_cores = 2",
    );
    assert_eq!(load_text(dir.path(), &two).unwrap().listen.public_cores, 2);
    let many = GOOD.replace(
        "admin = \"127.0.0.1:0\"",
        "admin = \"127.0.0.1:0\"\npublic_cores = 1025",
    );
    assert_eq!(problem_keys(dir.path(), &many), ["listen.public_cores"]);
}
