//! End to end (real gateway, real region nodes, real Postgres): the gateway serves the customer
//! API's OpenAPI document at `GET /openapi.json` without a credential; it is OpenAPI 3.1, it
//! is exactly the document the node generates, it lists every `/v1` route of the node's router
//! and nothing else; and real answers through the gateway, successes and errors, have a
//! documented status and conform to the documented schema (a NUL character included: a 400,
//! never a 500).

use http::{Method, StatusCode};
use integration_tests::gateway::Stack;
use integration_tests::Response;
use serde_json::{json, Value};

/// Every `/v1` route of `residency_region_node::api::router`, as method and OpenAPI path.
const ROUTES: [(&str, &str); 47] = [
    ("get", "/v1/me"),
    ("get", "/v1/usage"),
    ("get", "/v1/connectors"),
    ("get", "/v1/connectors/{id}"),
    ("get", "/v1/connections"),
    ("post", "/v1/connections"),
    ("get", "/v1/connections/{id}"),
    ("patch", "/v1/connections/{id}"),
    ("delete", "/v1/connections/{id}"),
    ("post", "/v1/connections/{id}/actions/{action}/invoke"),
    ("get", "/v1/workflows"),
    ("post", "/v1/workflows"),
    ("get", "/v1/workflows/{id}"),
    ("patch", "/v1/workflows/{id}"),
    ("delete", "/v1/workflows/{id}"),
    ("post", "/v1/workflows/{id}/runs"),
    ("get", "/v1/executions"),
    ("get", "/v1/executions/{id}"),
    ("post", "/v1/executions/{id}/cancel"),
    ("post", "/v1/executions/{id}/retry"),
    ("get", "/v1/configurations"),
    ("get", "/v1/configurations/{key}"),
    ("put", "/v1/configurations/{key}"),
    ("delete", "/v1/configurations/{key}"),
    ("get", "/v1/members"),
    ("post", "/v1/members"),
    ("get", "/v1/members/{id}"),
    ("patch", "/v1/members/{id}"),
    ("delete", "/v1/members/{id}"),
    ("get", "/v1/roles"),
    ("post", "/v1/roles"),
    ("get", "/v1/roles/{id}"),
    ("patch", "/v1/roles/{id}"),
    ("delete", "/v1/roles/{id}"),
    ("get", "/v1/audit-events"),
    ("get", "/v1/ownership-transfers"),
    ("post", "/v1/ownership-transfers"),
    ("delete", "/v1/ownership-transfers/{id}"),
    ("post", "/v1/ownership-transfers/{id}/accept"),
    ("post", "/v1/ownership-transfers/{id}/decline"),
    ("get", "/v1/webhooks"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks/{id}"),
    ("patch", "/v1/webhooks/{id}"),
    ("delete", "/v1/webhooks/{id}"),
    ("get", "/v1/webhooks/{id}/deliveries"),
    ("post", "/v1/webhooks/{id}/ping"),
];

#[tokio::test]
async fn the_gateway_serves_the_customer_openapi_document_listing_every_route() {
    let s = Stack::start().await;
    let r = s.get("/openapi.json", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers.contains_key("x-request-id"));
    assert_eq!(
        r.text,
        residency_region_node::api::openapi::customer_json(),
        "the gateway serves the document the node generates"
    );
    let doc = &r.json;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);

    // Only GET: any other method is the customer API's route check (404), not the document.
    let r = integration_tests::Http::default()
        .send(
            Method::POST,
            &format!("{}/openapi.json", s.public),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    s.stop().await;
}

/// Real answers through the gateway have a documented status and conform to its schema.
#[tokio::test]
async fn answers_through_the_gateway_conform_to_the_document() {
    let s = Stack::start().await;
    let doc: Value =
        serde_json::from_str(&residency_region_node::api::openapi::customer_json()).unwrap();
    let tenant = s.create_tenant("contract", "eu", "scale").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let token = s.idp.token(&tid, "owner-contract", "owner");
    let call = |method: Method, path: String, body: Option<Value>| {
        let (token, public) = (token.clone(), s.public.clone());
        async move {
            integration_tests::Http::default()
                .send(
                    method,
                    &format!("{public}{path}"),
                    &[("authorization", &format!("Bearer {token}"))],
                    body.as_ref(),
                )
                .await
        }
    };
    let check = |template: &str, method: &str, r: &Response| {
        conforms_to_operation(&doc, template, method, r);
    };

    let r = call(
        Method::POST,
        "/v1/connections".into(),
        Some(json!({"connector_id": "notion", "name": "n", "credentials": {"k": "v"}})),
    )
    .await;
    check("/v1/connections", "post", &r);
    let cid = r.json["id"].as_str().unwrap().to_owned();
    let r = call(
        Method::POST,
        "/v1/workflows".into(),
        Some(
            json!({"name": "w", "definition": {"steps": [{"id": "page", "type": "action", "connection_id": cid, "action": "create_page"}]}, "connection_id": cid}),
        ),
    )
    .await;
    check("/v1/workflows", "post", &r);
    let wid = r.json["id"].as_str().unwrap().to_owned();
    let r = call(Method::POST, format!("/v1/workflows/{wid}/runs"), None).await;
    check("/v1/workflows/{id}/runs", "post", &r);
    let eid = r.json["id"].as_str().unwrap().to_owned();
    let r = call(
        Method::PUT,
        "/v1/configurations/ui.theme".into(),
        Some(json!({"value": "dark"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    check("/v1/configurations/{key}", "put", &r);
    let r = call(
        Method::POST,
        "/v1/members".into(),
        Some(json!({"subject": "dev-1", "email": "dev@contract.test", "role": "developer"})),
    )
    .await;
    check("/v1/members", "post", &r);
    let mid = r.json["id"].as_str().unwrap().to_owned();
    let r = call(
        Method::POST,
        "/v1/roles".into(),
        Some(json!({"name": "release", "based_on": "viewer", "add": ["workflows.run"]})),
    )
    .await;
    check("/v1/roles", "post", &r);
    let rid = r.json["id"].as_str().unwrap().to_owned();

    for (template, path) in [
        ("/v1/me", "/v1/me".to_owned()),
        ("/v1/usage", "/v1/usage".to_owned()),
        ("/v1/connectors", "/v1/connectors".to_owned()),
        ("/v1/connectors/{id}", "/v1/connectors/notion".to_owned()),
        ("/v1/connections", "/v1/connections?limit=1".to_owned()),
        ("/v1/connections/{id}", format!("/v1/connections/{cid}")),
        ("/v1/workflows", "/v1/workflows".to_owned()),
        ("/v1/workflows/{id}", format!("/v1/workflows/{wid}")),
        ("/v1/executions", "/v1/executions".to_owned()),
        ("/v1/executions/{id}", format!("/v1/executions/{eid}")),
        ("/v1/configurations", "/v1/configurations".to_owned()),
        (
            "/v1/configurations/{key}",
            "/v1/configurations/ui.theme".to_owned(),
        ),
        ("/v1/members", "/v1/members".to_owned()),
        ("/v1/members/{id}", format!("/v1/members/{mid}")),
        ("/v1/roles", "/v1/roles".to_owned()),
        ("/v1/roles/{id}", format!("/v1/roles/{rid}")),
        ("/v1/audit-events", "/v1/audit-events?limit=2".to_owned()),
        (
            "/v1/ownership-transfers",
            "/v1/ownership-transfers".to_owned(),
        ),
        // Errors: a missing row, a bad limit, a bad cursor.
        (
            "/v1/workflows/{id}",
            format!("/v1/workflows/{}", uuid::Uuid::now_v7()),
        ),
        ("/v1/workflows", "/v1/workflows?limit=0".to_owned()),
        ("/v1/roles", "/v1/roles?cursor=nope".to_owned()),
    ] {
        let r = call(Method::GET, path, None).await;
        check(template, "get", &r);
    }
    let r = call(
        Method::PATCH,
        format!("/v1/workflows/{wid}"),
        Some(json!({"connection_id": null, "enabled": false})),
    )
    .await;
    check("/v1/workflows/{id}", "patch", &r);
    assert!(r.json["connection_id"].is_null());
    let r = call(Method::POST, format!("/v1/workflows/{wid}/runs"), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    check("/v1/workflows/{id}/runs", "post", &r);
    let r = call(Method::POST, format!("/v1/executions/{eid}/cancel"), None).await;
    check("/v1/executions/{id}/cancel", "post", &r);
    let r = call(Method::POST, format!("/v1/executions/{eid}/retry"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    check("/v1/executions/{id}/retry", "post", &r);
    // Not enabled on the connection: refused before any call.
    let r = call(
        Method::POST,
        format!("/v1/connections/{cid}/actions/create_page/invoke"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    check("/v1/connections/{id}/actions/{action}/invoke", "post", &r);
    // A workflow step still uses the connection: refused.
    let r = call(Method::DELETE, format!("/v1/connections/{cid}"), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    check("/v1/connections/{id}", "delete", &r);
    let r = call(
        Method::PATCH,
        format!("/v1/workflows/{wid}"),
        Some(json!({"definition": {"steps": []}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = call(Method::DELETE, format!("/v1/connections/{cid}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    check("/v1/connections/{id}", "delete", &r);
    let r = call(Method::POST, "/v1/roles".into(), Some(json!({"name": 5}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    check("/v1/roles", "post", &r);
    let r = s.get("/v1/me", &[]).await;
    check("/v1/me", "get", &r);

    // A NUL character, which Postgres text and jsonb cannot hold, is refused before the
    // database, never a 500: in a body or a query parameter a 422 naming it, in a path key a
    // 404 like a missing key. A path that does not decode is a 400, as problem+json.
    let nul = "a\u{0}b";
    let r = call(
        Method::POST,
        "/v1/workflows".into(),
        Some(json!({"name": nul, "definition": {}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.json["field"], "name", "{r:?}");
    check("/v1/workflows", "post", &r);
    let r = call(
        Method::PUT,
        "/v1/configurations/k".into(),
        Some(json!({"value": {"x": nul}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    check("/v1/configurations/{key}", "put", &r);
    for (template, path, status) in [
        (
            "/v1/connectors/{id}",
            "/v1/connectors/a%00b",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/audit-events",
            "/v1/audit-events?actor=a%00b",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // Not UTF-8 once percent-decoded.
        (
            "/v1/connections/{id}",
            "/v1/connections/%FF",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/configurations/{key}",
            "/v1/configurations/%C3%28",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = call(Method::GET, path.to_owned(), None).await;
        assert_eq!(r.status, status, "{path}: {r:?}");
        check(template, "get", &r);
    }
    s.stop().await;
}

/// `r` has a status documented for the operation, the documented media type, and a body that
/// conforms to the documented schema.
fn conforms_to_operation(doc: &Value, template: &str, method: &str, r: &Response) {
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "{method} {template} is not documented");
    let status = r.status.as_str();
    let mut response = &op["responses"][status];
    assert!(
        response.is_object(),
        "{method} {template}: {status} is not documented: {r:?}"
    );
    if let Some(name) = response["$ref"].as_str() {
        let name = name.strip_prefix("#/components/responses/").unwrap();
        response = &doc["components"]["responses"][name];
    }
    let Some(content) = response["content"].as_object() else {
        assert!(
            r.text.is_empty(),
            "{method} {template}: {status} has no body: {r:?}"
        );
        return;
    };
    let media = r.headers["content-type"].to_str().unwrap();
    let schema = &content
        .get(media)
        .unwrap_or_else(|| panic!("{method} {template}: {status} is not {media}: {r:?}"))["schema"];
    if let Err(why) = conforms(doc, schema, &r.json, "$") {
        panic!("{method} {template}: {status}: {why}: {r:?}");
    }
}

/// A small JSON Schema check covering what the document uses: `$ref`, `type` (one or a list),
/// `required`, `properties`, `items`, `oneOf`, `format` (uuid, date-time); no length or
/// pattern checks.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        return conforms(doc, &doc["components"]["schemas"][name], v, at);
    }
    if let Some(one_of) = schema["oneOf"].as_array() {
        let matching = one_of
            .iter()
            .filter(|s| conforms(doc, s, v, at).is_ok())
            .count();
        return if matching == 1 {
            Ok(())
        } else {
            Err(format!("{at}: {matching} oneOf alternatives match"))
        };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types
        .iter()
        .any(|t| *t == kind || (*t == "number" && kind == "integer"))
    {
        return Err(format!("{at}: a {kind}, documented as {types:?}"));
    }
    match v {
        Value::String(s) => match schema["format"].as_str() {
            Some("uuid") if uuid::Uuid::parse_str(s).is_err() => {
                Err(format!("{at}: {s:?} is not a uuid"))
            }
            Some("date-time") if chrono::DateTime::parse_from_rfc3339(s).is_err() => {
                Err(format!("{at}: {s:?} is not a date-time"))
            }
            _ => Ok(()),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| conforms(doc, &schema["items"], item, &format!("{at}[{i}]"))),
        Value::Object(map) => {
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                if !map.contains_key(name) {
                    return Err(format!("{at}: required {name} is missing"));
                }
            }
            let props = schema["properties"].as_object();
            for (name, value) in map {
                if let Some(p) = props.and_then(|p| p.get(name)) {
                    conforms(doc, p, value, &format!("{at}.{name}"))?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
