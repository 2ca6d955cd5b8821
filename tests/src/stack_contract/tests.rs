//! The checker against a valid document and against each rule broken on its own. (The shared
//! Python checker is run by `.ci/run` on a live stack.json, never from the tests.)

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::check;

/// A stack directory with the files a valid stack.json refers to.
struct Stack {
    dir: tempfile::TempDir,
    doc: Value,
}

const FILES: [&str; 5] = [
    "tls/ca.pem",
    "keys/jwt.pem",
    "keys/us-assertion.key",
    "keys/eu-assertion.key",
    "keys/apac-assertion.key",
];

fn region(id: &str, port: u16) -> Value {
    json!({
        "id": id,
        "display_name": id.to_uppercase(),
        "node_url": format!("https://127.0.0.1:{port}"),
        "database_url": format!("postgres://rg_{id}_owner:secret@127.0.0.1:5432/rg_{id}"),
        "app_database_url": format!("postgres://rg_{id}_app:secret@127.0.0.1:5432/rg_{id}"),
        "auditor_database_url": format!("postgres://rg_{id}_auditor:s@127.0.0.1:5432/rg_{id}"),
        "assertion": { "alg": "HS256", "kid": format!("{id}-1"), "key_file": format!("keys/{id}-assertion.key") },
    })
}

impl Stack {
    /// A document as `residency up` writes it (including fields beyond the contract).
    fn valid() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for f in FILES {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "dev material").unwrap();
        }
        let doc = json!({
            "gateway": { "url": "https://127.0.0.1:8443", "ca_cert": "tls/ca.pem" },
            "admin": { "url": "http://127.0.0.1:8480", "token": "0123456789abcdef" },
            "jwt": {
                "issuer": "http://127.0.0.1:8444", "audience": "residency-gateway", "alg": "ES256",
                "kid": "dev-1", "private_key_pem": "keys/jwt.pem",
                "jwks_url": "http://127.0.0.1:8444/.well-known/jwks.json",
                "tenant_claim": "tenant_id", "role_claim": "role",
                "token_url": "http://127.0.0.1:8444/token",
            },
            "directory": { "database_url": "postgresql://rg_dir:secret@127.0.0.1:5432/rg_directory" },
            "node_tls": { "ca_cert": "tls/ca.pem", "client_cert": "tls/gw.pem", "client_key": "tls/gw.key" },
            "regions": [region("us", 8541), region("eu", 8542), region("apac", 8543)],
            "demo_tenants": [
                { "id": "0195f3a0-0000-7000-8000-000000000001", "name": "Us Starter", "region": "us", "tier": "starter" },
                { "id": "0195f3a0-0000-7000-8000-000000000002", "name": "Eu Growth", "region": "eu", "tier": "growth" },
                { "id": "0195f3a0-0000-7000-8000-000000000003", "name": "Apac Scale", "region": "apac", "tier": "scale", "api_key": "rk_live_apac" },
                { "id": "0195f3a0-0000-7000-8000-000000000004", "name": "Eu Enterprise", "region": "eu", "tier": "enterprise", "api_key": "rk_live_eu" },
            ],
        });
        Self { dir, doc }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("stack.json")
    }

    /// Writes the document and checks it.
    fn problems(&self) -> Vec<String> {
        self.write(&serde_json::to_vec_pretty(&self.doc).unwrap());
        check(&self.path()).err().unwrap_or_default()
    }

    fn write(&self, bytes: &[u8]) {
        std::fs::write(self.path(), bytes).unwrap();
    }

    /// Applies `edit` and returns the problems; asserts one of them contains `expected`.
    fn broken(mut self, edit: impl FnOnce(&mut Value), expected: &str) -> Vec<String> {
        edit(&mut self.doc);
        let problems = self.problems();
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "expected a problem containing {expected:?}, got {problems:?}"
        );
        problems
    }
}

/// Removes the field at a JSON pointer.
fn remove(doc: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = doc.pointer_mut(parent).unwrap();
    match parent {
        Value::Object(o) => {
            o.remove(key).unwrap();
        }
        Value::Array(a) => {
            a.remove(key.parse().unwrap());
        }
        _ => panic!("{pointer} has no parent container"),
    }
}

fn set(doc: &mut Value, pointer: &str, v: Value) {
    *doc.pointer_mut(pointer).unwrap() = v;
}

#[test]
fn a_valid_document_passes() {
    let s = Stack::valid();
    assert_eq!(s.problems(), Vec::<String>::new());
}

#[test]
fn absolute_paths_are_used_as_they_are() {
    let s = Stack::valid();
    let mut doc = s.doc.clone();
    let abs = s.dir.path().join("keys/jwt.pem");
    set(
        &mut doc,
        "/jwt/private_key_pem",
        json!(abs.to_str().unwrap()),
    );
    let s = Stack { doc, ..s };
    assert_eq!(s.problems(), Vec::<String>::new());
}

#[test]
fn relative_paths_are_relative_to_the_file_not_the_working_directory() {
    // Cargo.toml exists in the test's working directory (the crate) but not beside stack.json.
    assert!(Path::new("Cargo.toml").is_file());
    Stack::valid().broken(
        |d| set(d, "/jwt/private_key_pem", json!("Cargo.toml")),
        "jwt.private_key_pem: file not found: Cargo.toml",
    );
}

#[test]
fn a_file_that_is_not_json_or_absent_cannot_be_read() {
    let s = Stack::valid();
    s.write(b"{ not json");
    let problems = check(&s.path()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("cannot read "), "{problems:?}");
    let gone = check(&s.dir.path().join("nope.json")).unwrap_err();
    assert!(gone[0].starts_with("cannot read "), "{gone:?}");
}

#[test]
fn every_required_field_missing_is_named() {
    for (pointer, expected) in [
        ("/gateway/url", "missing field: gateway.url"),
        ("/gateway/ca_cert", "missing field: gateway.ca_cert"),
        ("/admin/url", "missing field: admin.url"),
        ("/admin/token", "missing field: admin.token"),
        ("/jwt/issuer", "missing field: jwt.issuer"),
        ("/jwt/audience", "missing field: jwt.audience"),
        ("/jwt/alg", "missing field: jwt.alg"),
        ("/jwt/kid", "missing field: jwt.kid"),
        ("/jwt/tenant_claim", "missing field: jwt.tenant_claim"),
        ("/jwt/role_claim", "missing field: jwt.role_claim"),
        ("/jwt/private_key_pem", "missing field: jwt.private_key_pem"),
        ("/jwt/jwks_url", "missing field: jwt.jwks_url"),
        (
            "/directory/database_url",
            "missing field: directory.database_url",
        ),
        ("/directory", "missing field: directory.database_url"),
        ("/regions", "missing field: regions"),
        ("/demo_tenants", "missing field: demo_tenants"),
        (
            "/regions/1/id",
            "regions[1].id: expected a non-empty string",
        ),
        ("/regions/1/node_url", "regions[1].node_url"),
        ("/regions/1/database_url", "regions[1].database_url"),
        ("/regions/1/app_database_url", "regions[1].app_database_url"),
        (
            "/regions/1/assertion",
            "regions[1].assertion: expected an object",
        ),
        ("/regions/1/assertion/alg", "regions[1].assertion.alg"),
        ("/regions/1/assertion/kid", "regions[1].assertion.kid"),
        (
            "/regions/1/assertion/key_file",
            "regions[1].assertion.key_file",
        ),
        ("/demo_tenants/0/id", "demo_tenants[0].id: not a UUID"),
        (
            "/demo_tenants/0/name",
            "demo_tenants[0].name: expected a string",
        ),
        ("/demo_tenants/0/tier", "demo_tenants[0].tier"),
        ("/demo_tenants/0/region", "demo_tenants[0].region"),
        (
            "/demo_tenants/2/api_key",
            "demo_tenants[2]: a scale tenant should carry",
        ),
        (
            "/demo_tenants/3/api_key",
            "demo_tenants[3]: a enterprise tenant should",
        ),
    ] {
        Stack::valid().broken(|d| remove(d, pointer), expected);
    }
}

#[test]
fn a_document_that_is_not_an_object_misses_every_field() {
    let s = Stack::valid();
    s.write(b"[]");
    let problems = check(&s.path()).unwrap_err();
    assert!(problems.contains(&"missing field: gateway.url".to_owned()));
    assert!(problems.contains(&"missing field: demo_tenants".to_owned()));
}

#[test]
fn urls_need_their_scheme_and_a_host() {
    for (pointer, value, expected) in [
        (
            "/gateway/url",
            json!("ftp://127.0.0.1:8443"),
            "gateway.url: not a http/https URL",
        ),
        (
            "/gateway/url",
            json!("127.0.0.1:8443"),
            "gateway.url: not a http/https URL",
        ),
        (
            "/gateway/url",
            json!(8443),
            "gateway.url: not a http/https URL",
        ),
        (
            "/admin/url",
            json!("postgres://127.0.0.1:9090"),
            "admin.url: not a http/https URL",
        ),
        (
            "/jwt/jwks_url",
            json!("/.well-known/jwks.json"),
            "jwt.jwks_url: not a http/https URL",
        ),
        (
            "/directory/database_url",
            json!("http://127.0.0.1:5432/d"),
            "directory.database_url: not a postgres/postgresql URL",
        ),
        (
            "/directory/database_url",
            json!("postgres:///rg_directory"),
            "directory.database_url: not a postgres/postgresql URL",
        ),
        (
            "/regions/0/node_url",
            json!("127.0.0.1:8541"),
            "regions[0].node_url: not a http/https URL",
        ),
        (
            "/regions/0/database_url",
            json!("mysql://o@127.0.0.1/rg_us"),
            "regions[0].database_url: not a postgres/postgresql URL",
        ),
        (
            "/regions/0/app_database_url",
            json!(["postgres://a@h/d"]),
            "regions[0].app_database_url: not a postgres/postgresql URL",
        ),
    ] {
        Stack::valid().broken(|d| set(d, pointer, value), expected);
    }
}

#[test]
fn a_url_with_a_password_is_shown_without_it() {
    let problems = Stack::valid().broken(
        |d| {
            set(
                d,
                "/directory/database_url",
                json!("mysql://dir:hunter2@127.0.0.1/d"),
            )
        },
        "directory.database_url: not a postgres/postgresql URL",
    );
    assert!(
        !problems.iter().any(|p| p.contains("hunter2")),
        "{problems:?}"
    );
}

#[test]
fn an_https_gateway_needs_its_ca_file_and_plain_http_does_not() {
    Stack::valid().broken(
        |d| set(d, "/gateway/ca_cert", json!("tls/missing.pem")),
        "gateway.ca_cert: file not found: tls/missing.pem",
    );
    Stack::valid().broken(
        |d| set(d, "/gateway/ca_cert", json!("")),
        "gateway.ca_cert: expected a path",
    );
    let mut s = Stack::valid();
    set(&mut s.doc, "/gateway/url", json!("http://127.0.0.1:8080"));
    remove(&mut s.doc, "/gateway/ca_cert");
    assert_eq!(s.problems(), Vec::<String>::new());
}

#[test]
fn referenced_files_must_exist() {
    Stack::valid().broken(
        |d| set(d, "/jwt/private_key_pem", json!("keys/nope.pem")),
        "jwt.private_key_pem: file not found: keys/nope.pem",
    );
    Stack::valid().broken(
        |d| set(d, "/jwt/private_key_pem", json!(42)),
        "jwt.private_key_pem: expected a path, got 42",
    );
    Stack::valid().broken(
        |d| set(d, "/regions/2/assertion/key_file", json!("keys/nope.key")),
        "regions[2].assertion.key_file: file not found: keys/nope.key",
    );
    // A directory is not a file.
    Stack::valid().broken(
        |d| set(d, "/regions/2/assertion/key_file", json!("keys")),
        "regions[2].assertion.key_file: file not found: keys",
    );
}

#[test]
fn the_admin_token_is_a_string_of_sixteen_characters() {
    let problems = Stack::valid().broken(
        |d| set(d, "/admin/token", json!("0123456789abcde")),
        "admin.token: expected a string of at least 16 characters",
    );
    assert!(
        !problems.iter().any(|p| p.contains("0123456789abcde")),
        "{problems:?}"
    );
    Stack::valid().broken(
        |d| set(d, "/admin/token", json!(1_234_567_890_123_456_789_u64)),
        "admin.token: expected a string",
    );
}

#[test]
fn jwt_fields_are_non_empty_strings_and_the_alg_is_asymmetric() {
    for key in [
        "issuer",
        "audience",
        "alg",
        "kid",
        "tenant_claim",
        "role_claim",
    ] {
        let pointer = format!("/jwt/{key}");
        let expected = format!("jwt.{key}: expected a non-empty string");
        Stack::valid().broken(|d| set(d, &pointer, json!("")), &expected);
        Stack::valid().broken(|d| set(d, &pointer, json!(7)), &expected);
    }
    Stack::valid().broken(
        |d| set(d, "/jwt/alg", json!("HS256")),
        "jwt.alg: expected an asymmetric algorithm",
    );
    for alg in ["ES256", "ES384", "RS256", "PS256", "EdDSA"] {
        let mut s = Stack::valid();
        set(&mut s.doc, "/jwt/alg", json!(alg));
        assert_eq!(s.problems(), Vec::<String>::new(), "{alg}");
    }
}

#[test]
fn regions_are_a_non_empty_list_of_objects() {
    Stack::valid().broken(
        |d| set(d, "/regions", json!([])),
        "regions: expected a non-empty list",
    );
    Stack::valid().broken(
        |d| set(d, "/regions", json!({ "us": {} })),
        "regions: expected a non-empty list",
    );
    Stack::valid().broken(
        |d| set(d, "/regions/1", json!("eu")),
        "regions[1]: expected an object",
    );
    Stack::valid().broken(
        |d| set(d, "/regions/1/assertion", json!("HS256")),
        "regions[1].assertion: expected an object with alg, kid, key_file",
    );
    Stack::valid().broken(
        |d| set(d, "/regions/1/assertion/kid", json!("")),
        "regions[1].assertion.kid: expected a non-empty string",
    );
    Stack::valid().broken(
        |d| set(d, "/regions/1/id", json!("")),
        "regions[1].id: expected a non-empty string",
    );
}

#[test]
fn us_eu_and_apac_are_all_there() {
    Stack::valid().broken(
        |d| {
            remove(d, "/regions/2");
            // Leave no tenant pointing at the removed region, so only the rule is broken.
            set(d, "/demo_tenants/2/region", json!("us"));
        },
        "regions: missing [\"apac\"]",
    );
    // A fourth region is fine, as long as a demo tenant lives there.
    let mut s = Stack::valid();
    s.doc["regions"].as_array_mut().unwrap().push(json!({
        "id": "ca",
        "node_url": "https://127.0.0.1:8544",
        "database_url": "postgres://o@127.0.0.1/rg_ca",
        "app_database_url": "postgres://a@127.0.0.1/rg_ca",
        "assertion": { "alg": "HS256", "kid": "ca-1", "key_file": "keys/us-assertion.key" },
    }));
    set(&mut s.doc, "/demo_tenants/0/region", json!("ca"));
    let problems = s.problems();
    assert_eq!(
        problems,
        vec!["demo_tenants: no demo tenant in [\"us\"]".to_owned()],
    );
}

#[test]
fn the_node_connects_as_the_app_role_not_the_owner() {
    Stack::valid().broken(
        |d| {
            let owner = d["regions"][1]["database_url"].clone();
            set(d, "/regions/1/app_database_url", owner);
        },
        "regions[1]: app_database_url must use the app role, not the owner",
    );
}

#[test]
fn demo_tenants_are_a_non_empty_list_of_objects() {
    Stack::valid().broken(
        |d| set(d, "/demo_tenants", json!([])),
        "demo_tenants: expected a non-empty list",
    );
    Stack::valid().broken(
        |d| set(d, "/demo_tenants", json!("none")),
        "demo_tenants: expected a non-empty list",
    );
    Stack::valid().broken(
        |d| d["demo_tenants"].as_array_mut().unwrap().push(json!(1)),
        "demo_tenants[4]: expected an object",
    );
}

#[test]
fn each_demo_tenant_is_well_formed() {
    Stack::valid().broken(
        |d| set(d, "/demo_tenants/1/id", json!("tenant-2")),
        "demo_tenants[1].id: not a UUID: \"tenant-2\"",
    );
    Stack::valid().broken(
        |d| set(d, "/demo_tenants/1/region", json!("mars")),
        "demo_tenants[1].region: \"mars\" is not a region in regions[]",
    );
    Stack::valid().broken(
        |d| set(d, "/demo_tenants/1/tier", json!("gold")),
        "demo_tenants[1].tier: \"gold\" is not one of",
    );
    Stack::valid().broken(
        |d| set(d, "/demo_tenants/1/name", json!(null)),
        "demo_tenants[1].name: expected a string",
    );
    Stack::valid().broken(
        |d| set(d, "/demo_tenants/3/api_key", json!("")),
        "demo_tenants[3]: a enterprise tenant should carry its demo api_key",
    );
    // Other tiers may carry a key too (the valid stack shows they need none); an empty name
    // is still a string.
    let mut s = Stack::valid();
    set(&mut s.doc, "/demo_tenants/0/name", json!(""));
    s.doc["demo_tenants"][1]["api_key"] = json!("rk_live_growth");
    assert_eq!(s.problems(), Vec::<String>::new());
}

#[test]
fn demo_tenants_cover_every_region_and_every_tier() {
    Stack::valid().broken(
        |d| set(d, "/demo_tenants/2/region", json!("eu")),
        "demo_tenants: no demo tenant in [\"apac\"]",
    );
    Stack::valid().broken(
        |d| set(d, "/demo_tenants/1/tier", json!("starter")),
        "demo_tenants: no demo tenant of tier [\"growth\"]",
    );
    Stack::valid().broken(
        |d| remove(d, "/demo_tenants/3"),
        "demo_tenants: no demo tenant of tier [\"enterprise\"]",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let problems = Stack::valid().broken(
        |d| {
            set(d, "/gateway/url", json!("ftp://x"));
            set(d, "/admin/token", json!("short"));
            remove(d, "/jwt/kid");
            set(d, "/demo_tenants/2/api_key", json!(""));
        },
        "gateway.url",
    );
    assert_eq!(problems.len(), 4, "{problems:?}");
}

#[test]
fn explicit_nulls_are_wrong_types_although_the_python_tool_skips_them() {
    for (pointer, expected) in [
        ("/gateway/url", "gateway.url: not a http/https URL: null"),
        ("/admin/token", "admin.token: expected a string"),
        ("/jwt/kid", "jwt.kid: expected a non-empty string"),
        ("/regions", "regions: expected a non-empty list"),
        ("/demo_tenants", "demo_tenants: expected a non-empty list"),
    ] {
        let mut s = Stack::valid();
        set(&mut s.doc, pointer, Value::Null);
        let problems = s.problems();
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{pointer}: {problems:?}"
        );
    }
    // A scale tenant's api_key must be a non-empty string, not merely truthy.
    let mut s = Stack::valid();
    set(&mut s.doc, "/demo_tenants/2/api_key", json!(1));
    assert!(!s.problems().is_empty());
}
