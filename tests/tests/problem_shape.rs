//! End to end (real gateway, real region node, real Postgres): the three services that answer
//! clients — the gateway's public listener, its admin API and a region node — render the same
//! error kind in the same RFC 9457 shape: one `type` scheme (`urn:residency:problem:<kind>`),
//! `title`, `status`, `detail`, and `instance` == `request_id` == the `x-request-id` header,
//! whether the client sent the id or the service generated it.

use http::{Method, StatusCode};
use integration_tests::gateway::{Stack, ADMIN_TOKEN};
use integration_tests::Response;
use serde_json::Value;

/// The members every problem carries, with the header it must agree with.
fn assert_shape(who: &str, r: &Response, status: StatusCode, kind: &str) {
    assert_eq!(r.status, status, "{who}: {r:?}");
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{who}: {r:?}"
    );
    assert_eq!(
        r.json["type"],
        format!("urn:residency:problem:{kind}"),
        "{who}: {r:?}"
    );
    assert_eq!(
        r.json["title"],
        status.canonical_reason().unwrap(),
        "{who}: {r:?}"
    );
    assert_eq!(r.json["status"], status.as_u16(), "{who}: {r:?}");
    assert!(
        r.json["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{who}: {r:?}"
    );
    let header = r.headers["x-request-id"].to_str().unwrap();
    assert!(!header.is_empty(), "{who}: {r:?}");
    assert_eq!(r.json["request_id"], header, "{who}: request_id: {r:?}");
    assert_eq!(r.json["instance"], header, "{who}: instance: {r:?}");
}

/// The top-level member names of a problem body, sorted.
fn members(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn gateway_admin_and_node_render_the_same_problem_shape() {
    let s = Stack::start().await;
    let tenant = s.create_tenant("shape", "eu", "scale").await;
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let token = s.idp.token(&tid, "owner-shape", "owner");
    let auth = format!("Bearer {token}");
    let missing = "0190a5c4-0000-7000-8000-00000000dead";
    let http = integration_tests::Http::default();

    for sent in [None, Some("shape-req.1")] {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(id) = sent {
            headers.push(("x-request-id", id));
        }

        // The gateway's public listener itself: nothing is served outside /v1.
        let public = http
            .send(Method::GET, &format!("{}/nope", s.public), &headers, None)
            .await;
        assert_shape(
            "gateway public",
            &public,
            StatusCode::NOT_FOUND,
            "not_found",
        );

        // The admin API.
        let mut admin_headers = headers.clone();
        let admin_auth = format!("Bearer {ADMIN_TOKEN}");
        admin_headers.push(("authorization", &admin_auth));
        let admin = http
            .send(
                Method::GET,
                &format!("{}/admin/v1/tenants/{missing}", s.admin),
                &admin_headers,
                None,
            )
            .await;
        assert_shape("admin api", &admin, StatusCode::NOT_FOUND, "not_found");

        // A region node, reached through the gateway (the node's answer is passed through).
        let mut node_headers = headers.clone();
        node_headers.push(("authorization", &auth));
        let node = http
            .send(
                Method::GET,
                &format!("{}/v1/workflows/{missing}", s.public),
                &node_headers,
                None,
            )
            .await;
        assert_shape("region node", &node, StatusCode::NOT_FOUND, "not_found");

        if let Some(id) = sent {
            for (who, r) in [
                ("gateway public", &public),
                ("admin api", &admin),
                ("region node", &node),
            ] {
                assert_eq!(
                    r.json["request_id"], id,
                    "{who}: the client's id is kept: {r:?}"
                );
            }
        }
        assert_eq!(members(&public.json), members(&node.json), "{node:?}");
        assert_eq!(members(&public.json), members(&admin.json), "{admin:?}");
    }
    s.stop().await;
}
