//! End to end (real gateway, real region node, real Postgres): regressions for what
//! schemathesis (`.ci/schemathesis`) found. Each test names the input it generated.

use http::{Method, StatusCode};
use integration_tests::gateway::Stack;
use integration_tests::Response;
use serde_json::{json, Value};

/// A 422 problem of `kind` (the node says `invalid`, the admin API `invalid_field`) naming
/// `field`.
fn assert_refused(who: &str, r: &Response, kind: &str, field: &str) {
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{who}: {r:?}");
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{who}: {r:?}"
    );
    assert_eq!(
        r.json["type"],
        format!("urn:residency:problem:{kind}"),
        "{who}: {r:?}"
    );
    assert_eq!(r.json["field"], field, "{who}: {r:?}");
}

/// Postgres `text` and `jsonb` cannot hold U+0000. schemathesis sent
/// `POST /v1/workflows` with `"\u0000"` inside a `definition` member name and got a 500
/// (`22P05 unsupported Unicode escape sequence`); a NUL in a text field did the same
/// (`22021`). Both APIs now refuse a JSON body with a NUL anywhere with a 422 naming the
/// field, before it reaches a handler.
#[tokio::test]
async fn a_nul_character_in_a_json_body_is_a_422_naming_the_field() {
    let s = Stack::start().await;
    let tenant = s.create_tenant("nul", "eu", "scale").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let token = s.idp.token(&tid, "owner-nul", "owner");
    let auth = format!("Bearer {token}");
    let http = integration_tests::Http::default();
    let workflows = format!("{}/v1/workflows", s.public);

    let cases: [(Value, &str); 4] = [
        (
            json!({"name": "wf", "definition": {"a\u{0}b": 1}}),
            "definition",
        ),
        (json!({"name": "w\u{0}f", "definition": {}}), "name"),
        (
            json!({"name": "wf", "definition": {"steps": [{"x": "\u{0}"}]}}),
            "definition.steps[0].x",
        ),
        // An unknown member is ignored by the handler, but the body is refused all the same.
        (
            json!({"name": "wf", "definition": {}, "note\u{0}": true}),
            "body",
        ),
    ];
    for (body, field) in &cases {
        let r = http
            .send(
                Method::POST,
                &workflows,
                &[("authorization", &auth)],
                Some(body),
            )
            .await;
        assert_refused(&format!("customer {body}"), &r, "invalid", field);
    }
    // Nothing was written, and the same bodies without the NUL are accepted.
    let list = http
        .send(Method::GET, &workflows, &[("authorization", &auth)], None)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{list:?}");
    assert_eq!(list.json["items"], json!([]), "{list:?}");
    let ok = http
        .send(
            Method::POST,
            &workflows,
            &[("authorization", &auth)],
            Some(&json!({"name": "wf", "definition": {"ab": 1, "steps": [{"id": "s", "type": "transform", "output": {"x": "\\u0000"}}]}})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{ok:?}");
    assert_eq!(
        ok.json["definition"]["steps"][0]["output"]["x"], "\\u0000",
        "{ok:?}"
    );

    // The admin API: a tenant and an organization name.
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(&json!({"name": "a\u{0}b", "region": "eu", "tier": "growth"})),
        )
        .await;
    assert_refused("admin tenant", &r, "invalid_field", "name");
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/organizations",
            Some(&json!({"name": "a\u{0}b", "domain": "nul.example"})),
        )
        .await;
    assert_refused("admin organization", &r, "invalid_field", "name");
    s.stop().await;
}

/// schemathesis created a workflow whose `definition` held `1.7976931348623157e+308`
/// (`f64::MAX`). Postgres keeps a `jsonb` number as an exact decimal and gives it back as
/// 309 digits, which serde_json's default (not correctly rounded) float parser refused: the
/// node panicked reading the row back, the gateway answered 502, and from then on every
/// list of the customer's workflows failed the same way. Numbers at the ends of the f64
/// range now come back as they went in.
#[tokio::test]
async fn extreme_json_numbers_are_stored_and_read_back() {
    let s = Stack::start().await;
    let tenant = s.create_tenant("floats", "us", "scale").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let token = s.idp.token(&tid, "owner-floats", "owner");
    let auth = format!("Bearer {token}");
    let http = integration_tests::Http::default();
    let extremes = json!([
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
        -2.448_903_868_421_8e-237
    ]);

    let created = http
        .send(
            Method::POST,
            &format!("{}/v1/workflows", s.public),
            &[("authorization", &auth)],
            Some(&json!({"name": "floats", "definition": {"x": extremes}})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.json["definition"]["x"], extremes, "{created:?}");
    let list = http
        .send(
            Method::GET,
            &format!("{}/v1/workflows", s.public),
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{list:?}");
    assert_eq!(
        list.json["items"][0]["definition"]["x"], extremes,
        "{list:?}"
    );

    let put = http
        .send(
            Method::PUT,
            &format!("{}/v1/configurations/limits", s.public),
            &[("authorization", &auth)],
            Some(&json!({"value": extremes})),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{put:?}");
    let got = http
        .send(
            Method::GET,
            &format!("{}/v1/configurations/limits", s.public),
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(got.json["value"], extremes, "{got:?}");
    s.stop().await;
}

/// The same NUL in a query parameter or a text path segment: `GET /v1/audit-events?actor=%00`,
/// `?action=%00`, `GET /v1/connections?connector_id=%00` and `GET /v1/connectors/%00` were
/// 500s (`22021 invalid byte sequence`). A query parameter with a NUL is now a 422 naming
/// it (like any other parameter value the node refuses); a connector id with one is an unknown connector; any other text Postgres refuses to
/// store is a 400, not a 500.
#[tokio::test]
async fn a_nul_character_in_a_query_or_path_is_refused_not_a_500() {
    let s = Stack::start().await;
    let tenant = s.create_tenant("nulq", "eu", "scale").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let token = s.idp.token(&tid, "owner-nulq", "owner");
    let auth = format!("Bearer {token}");
    for (path, status, field) in [
        (
            "/v1/audit-events?actor=%00",
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor",
        ),
        (
            "/v1/audit-events?action=a%00b",
            StatusCode::UNPROCESSABLE_ENTITY,
            "action",
        ),
        (
            "/v1/connections?connector_id=%00",
            StatusCode::UNPROCESSABLE_ENTITY,
            "connector_id",
        ),
        ("/v1/connectors/%00", StatusCode::NOT_FOUND, ""),
    ] {
        let r = s.get(path, &[("authorization", &auth)]).await;
        assert_eq!(r.status, status, "{path}: {r:?}");
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{path}: {r:?}"
        );
        if !field.is_empty() {
            assert_eq!(r.json["field"], field, "{path}: {r:?}");
        }
    }
    // Without the NUL the same requests answer.
    for path in [
        "/v1/audit-events?actor=x&action=y",
        "/v1/connections?connector_id=slack",
    ] {
        let r = s.get(path, &[("authorization", &auth)]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
    }
    s.stop().await;
}

/// The node's net under both NUL findings: whatever path a NUL takes to Postgres next, the
/// errors Postgres answers with (`22021` for a text parameter, `22P05` for a jsonb escape)
/// are the request's fault and map to a 400, never a 500.
#[tokio::test]
async fn text_postgres_cannot_store_is_a_bad_request() {
    let (client, conn) =
        tokio_postgres::connect(&integration_tests::admin_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let text = client
        .query_one("SELECT $1::text", &[&"a\u{0}b"])
        .await
        .unwrap_err();
    let jsonb = client
        .query_one("SELECT '\"\\u0000\"'::jsonb", &[])
        .await
        .unwrap_err();
    for (what, e, code) in [("text", text, "22021"), ("jsonb", jsonb, "22P05")] {
        assert_eq!(e.code().map(|c| c.code()), Some(code), "{what}: {e}");
        let mapped = residency_region_node::error::from_db(&e);
        assert_eq!(mapped.kind(), "bad_request", "{what}: {mapped:?}");
    }
}

/// serde's derived structs also read the sequence form of a struct: schemathesis sent
/// `PATCH /v1/workflows/{id}` with the body `[null, null]` and got a 200 (an empty patch that
/// bumped the version). Every JSON body of both APIs is an object: a top-level array is a
/// 422 naming `body`, and nothing changes.
#[tokio::test]
async fn a_json_array_body_is_refused_not_read_as_a_struct() {
    let s = Stack::start().await;
    let tenant = s.create_tenant("arrays", "eu", "scale").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let token = s.idp.token(&tid, "owner-arrays", "owner");
    let auth = format!("Bearer {token}");
    let http = integration_tests::Http::default();
    let created = http
        .send(
            Method::POST,
            &format!("{}/v1/workflows", s.public),
            &[("authorization", &auth)],
            Some(&json!({"name": "w", "definition": {}})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let url = format!(
        "{}/v1/workflows/{}",
        s.public,
        created.json["id"].as_str().unwrap()
    );
    let r = http
        .send(
            Method::PATCH,
            &url,
            &[("authorization", &auth)],
            Some(&json!([null, null])),
        )
        .await;
    assert_refused("PATCH /v1/workflows/{id}", &r, "invalid", "body");
    let after = http
        .send(Method::GET, &url, &[("authorization", &auth)], None)
        .await;
    assert_eq!(after.json["version"], created.json["version"], "{after:?}");

    let admin = s
        .admin(
            Method::POST,
            "/admin/v1/organizations",
            Some(&json!(["acme", "acme.example"])),
        )
        .await;
    assert_refused(
        "POST /admin/v1/organizations",
        &admin,
        "invalid_field",
        "body",
    );
    s.stop().await;
}
