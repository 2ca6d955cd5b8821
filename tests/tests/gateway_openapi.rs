//! End to end: the admin listener serves its OpenAPI 3.1 document at `GET /openapi.json`
//! without a token, the document is the checked-in `docs/openapi/admin.json`, it lists every
//! route the admin router has (no more, no less), and real answers carry what its schemas
//! require.

use std::collections::BTreeSet;

use http::{Method, StatusCode};
use integration_tests::gateway::Stack;
use serde_json::Value;

/// Every route of the admin listener, as the router serves it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/admin/v1/organizations"),
    ("get", "/admin/v1/organizations"),
    ("get", "/admin/v1/organizations/{id}"),
    ("post", "/admin/v1/organizations/{id}/tokens"),
    ("get", "/admin/v1/organizations/{id}/tokens"),
    ("delete", "/admin/v1/organizations/{id}/tokens/{token_id}"),
    ("get", "/admin/v1/signups"),
    ("get", "/admin/v1/signups/{id}"),
    ("post", "/admin/v1/signups/{id}/approve"),
    ("post", "/admin/v1/signups/{id}/reject"),
    ("post", "/admin/v1/tenants"),
    ("get", "/admin/v1/tenants"),
    ("get", "/admin/v1/tenants/{id}"),
    ("patch", "/admin/v1/tenants/{id}"),
    ("post", "/admin/v1/tenants/{id}/provision"),
    ("get", "/admin/v1/tenants/{id}/history"),
    ("post", "/admin/v1/tenants/{id}/move"),
    ("get", "/admin/v1/tenants/{id}/moves"),
    ("get", "/admin/v1/moves/{move_id}"),
    ("post", "/admin/v1/moves/{move_id}/resume"),
    ("post", "/admin/v1/moves/{move_id}/abort"),
    ("post", "/admin/v1/tenants/{id}/api-keys"),
    ("get", "/admin/v1/tenants/{id}/api-keys"),
    ("delete", "/admin/v1/tenants/{id}/api-keys/{key_id}"),
    ("post", "/admin/v1/tenants/{id}/domains"),
    ("get", "/admin/v1/tenants/{id}/domains"),
    ("delete", "/admin/v1/tenants/{id}/domains/{hostname}"),
    ("post", "/admin/v1/tenants/{id}/domains/{hostname}/verify"),
    ("get", "/admin/v1/domains/{hostname}"),
    ("get", "/admin/v1/regions"),
    ("get", "/admin/v1/audit"),
    ("get", "/admin/v1/organizations/{id}/audit-events"),
    ("post", "/admin/v1/organizations/{id}/ownership-transfers"),
    ("get", "/admin/v1/organizations/{id}/ownership-transfers"),
    (
        "delete",
        "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}",
    ),
    (
        "post",
        "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/accept",
    ),
    (
        "post",
        "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/decline",
    ),
];

/// The properties a component schema requires.
fn required(doc: &Value, schema: &str) -> Vec<String> {
    doc["components"]["schemas"][schema]["required"]
        .as_array()
        .unwrap_or_else(|| panic!("schema {schema} has required members"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_admin_listener_serves_its_openapi_document() {
    let s = Stack::start().await;
    let r = s.ops("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK, "no token needed: {r:?}");
    assert_eq!(r.headers["content-type"], "application/json");
    let doc = &r.json;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Residency Gateway admin API");
    assert!(!doc["info"]["version"].as_str().unwrap().is_empty());
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/openapi/admin.json"
    ))
    .unwrap();
    assert!(
        r.text == checked_in,
        "the served document is docs/openapi/admin.json"
    );

    // Exactly the router's routes.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| !matches!(m.as_str(), "parameters" | "summary" | "description"))
                .map(|m| (m.clone(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    // The list is the router's: every /admin/v1 route answers 401 without a token (an
    // unrouted path is 404, a wrong method 405), the others answer without one.
    let any = uuid::Uuid::nil().to_string();
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id}", &any)
            .replace("{key_id}", &any)
            .replace("{token_id}", &any)
            .replace("{hostname}", "api.example.com")
            .replace("{move_id}", &any);
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = s.admin_as(None, method.clone(), &concrete, None).await;
        if path.starts_with("/admin/v1/") {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}: {r:?}");
            let op = &doc["paths"][*path][method.as_str().to_lowercase()];
            assert_eq!(
                op["security"][0]["admin_token"],
                Value::Array(vec![]),
                "{method} {path}"
            );
            for member in required(doc, "Problem") {
                assert!(!r.json[&member].is_null(), "{method} {path}: {member}");
            }
        } else {
            assert!(
                !matches!(
                    r.status,
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
                ),
                "{method} {path}: {r:?}"
            );
        }
    }

    // Real answers carry every member their schemas require.
    let t = s.create_tenant("openapi", "eu", "scale").await;
    for member in required(doc, "Tenant") {
        assert!(t.get(&member).is_some(), "Tenant.{member}: {t}");
    }
    // The optional re-provisioning body: empty or `null`, as documented.
    let again = format!("/admin/v1/tenants/{}/provision", t["id"].as_str().unwrap());
    let r = s.admin(Method::POST, &again, Some(&Value::Null)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["id"], t["id"]);
    let key = s
        .create_api_key(t["id"].as_str().unwrap(), "k", "developer")
        .await;
    for member in required(doc, "ApiKey") {
        assert!(key.get(&member).is_some(), "ApiKey.{member}: {key}");
    }
    assert!(key["api_key"].is_string(), "{key}");
    let domain = s
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{}/domains", t["id"].as_str().unwrap()),
            Some(&serde_json::json!({"hostname": "api.openapi.example"})),
        )
        .await;
    assert_eq!(domain.status, StatusCode::CREATED, "{domain:?}");
    for member in required(doc, "Domain") {
        assert!(
            domain.json.get(&member).is_some(),
            "Domain.{member}: {domain:?}"
        );
    }
    let regions = s.admin(Method::GET, "/admin/v1/regions", None).await;
    for region in regions.json["items"].as_array().unwrap() {
        for member in required(doc, "Region") {
            assert!(region.get(&member).is_some(), "Region.{member}: {region}");
        }
    }
    s.stop().await;
}
