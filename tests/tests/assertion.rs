//! The node refuses everything without a valid gateway assertion for its own region.

use http::{Method, StatusCode};
use integration_tests::{Node, NodeOptions, RegionDb};
use residency_core::assertion::{now_secs, AssertionKey, Signer};
use residency_core::{RegionId, TenantId};
use uuid::Uuid;

fn mint(key: &AssertionKey, region: &str, tenant: Uuid, role: &str, at: u64) -> String {
    Signer::new(RegionId::new(region).unwrap(), key, 60)
        .mint(TenantId::from_uuid(tenant), "user-1", role, at)
        .unwrap()
        .0
}

/// A validly signed assertion with `scp = customer` that names the system role and a
/// `system:` subject: what a customer credential claiming `role = system` would have turned
/// into before the gateway refused reserved identities. Built by hand because the signer
/// refuses to mint it.
fn customer_scoped_system_assertion(node: &Node, tenant: Uuid) -> String {
    let secret = std::fs::read(node.dir.path().join("assertion.key")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(node.key().kid().to_owned());
    let now = now_secs();
    let claims = serde_json::json!({
        "iss": "residency-gateway", "aud": "eu", "tid": tenant, "sub": "system:x",
        "role": "system", "scp": "customer", "iat": now, "exp": now + 60,
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap()
}

#[tokio::test]
async fn assertions_are_checked_before_anything_else() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let t = Uuid::new_v4();
    node.provision(t, "acme").await;
    let me = |headers: Vec<(&'static str, String)>| {
        let node = &node;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            node.raw(Method::GET, "/v1/me", &h, None).await
        }
    };
    let good = node.assertion(t, "user-1", "owner");
    assert_eq!(
        me(vec![("x-residency-assertion", good)]).await.status,
        StatusCode::OK
    );

    // Missing.
    let r = me(vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.json["status"], 401);
    assert_eq!(
        r.json["request_id"],
        r.headers["x-request-id"].to_str().unwrap()
    );
    // A customer's bearer token sent straight to a node is not an assertion.
    let r = me(vec![(
        "authorization",
        "Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig".into(),
    )])
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Bad signature: same kid, other secret.
    let forged = AssertionKey::new("eu-test", "HS256", vec![7; 32]).unwrap();
    let r = me(vec![(
        "x-residency-assertion",
        mint(&forged, "eu", t, "owner", now_secs()),
    )])
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Expired.
    let r = me(vec![(
        "x-residency-assertion",
        mint(node.key(), "eu", t, "owner", now_secs() - 300),
    )])
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json["detail"].as_str().unwrap().contains("expired"));
    // Another region's audience: 421, whether or not the node holds that key.
    let r = me(vec![(
        "x-residency-assertion",
        mint(node.key(), "us", t, "owner", now_secs()),
    )])
    .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    let other = AssertionKey::new("us-1", "HS256", vec![3; 32]).unwrap();
    let r = me(vec![(
        "x-residency-assertion",
        mint(&other, "us", t, "owner", now_secs()),
    )])
    .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    // A customer's own JWT sent as the assertion (its `aud` is the public API audience, not a
    // region): 401, not 421. So is an assertion for a region this deployment does not have.
    let idp_jwt = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImlkcC0xIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLyIsImF1ZCI6InJlc2lkZW5jeS1hcGkiLCJzdWIiOiJ1IiwidGVuYW50X2lkIjoieCJ9.c2ln";
    let r = me(vec![("x-residency-assertion", idp_jwt.into())]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = me(vec![(
        "x-residency-assertion",
        mint(node.key(), "mars", t, "owner", now_secs()),
    )])
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    // Unknown kid for this region.
    let unknown = AssertionKey::new("eu-9", "HS256", vec![3; 32]).unwrap();
    let r = me(vec![(
        "x-residency-assertion",
        mint(&unknown, "eu", t, "owner", now_secs()),
    )])
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Garbage and alg=none.
    let r = me(vec![("x-residency-assertion", "not.a.jws".into())]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let none = "eyJhbGciOiJub25lIiwia2lkIjoiZXUtdGVzdCJ9.eyJpc3MiOiJyZXNpZGVuY3ktZ2F0ZXdheSIsImF1ZCI6ImV1In0.";
    assert_eq!(
        me(vec![("x-residency-assertion", none.into())])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Spoofed tenant headers next to a valid assertion change nothing.
    let other_tenant = Uuid::new_v4().to_string();
    let r = me(vec![
        (
            "x-residency-assertion",
            node.assertion(t, "user-1", "owner"),
        ),
        ("x-tenant-id", other_tenant.clone()),
    ])
    .await;
    assert_eq!(r.json["tenant_id"], t.to_string());
    let r = node
        .raw(
            Method::GET,
            &format!("/v1/me?tenant_id={other_tenant}"),
            &[("x-residency-assertion", &node.assertion(t, "u", "owner"))],
            None,
        )
        .await;
    assert_eq!(r.json["tenant_id"], t.to_string());

    // Tenant not provisioned in this region: 404.
    let r = node
        .call(Method::GET, "/v1/me", Uuid::new_v4(), "u", "owner", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // System assertions cannot use the customer API; customer ones cannot provision, not even
    // when they name the system role and a `system:` subject (the review's attack: only the
    // scope claim, which the gateway's request path never writes, opens `/internal`).
    let forged_system = customer_scoped_system_assertion(&node, t);
    let r = node
        .raw(
            Method::POST,
            "/internal/v1/provision",
            &[("x-residency-assertion", &forged_system)],
            Some(&serde_json::json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let r = node
        .call(Method::GET, "/v1/me", t, "system:x", "system", None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = node
        .call(
            Method::POST,
            "/internal/v1/provision",
            Uuid::new_v4(),
            "u",
            "owner",
            Some(&serde_json::json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Health needs no credential; metrics count refusals by bounded reason.
    assert_eq!(
        node.raw(Method::GET, "/healthz", &[], None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        node.raw(Method::GET, "/readyz", &[], None).await.status,
        StatusCode::OK
    );
    let m = node.raw(Method::GET, "/metrics", &[], None).await;
    assert!(
        m.text.contains("residency_node_assertion_failures_total"),
        "{}",
        m.text
    );
    assert!(m.text.contains("residency_node_misdirected_requests_total"));
    assert!(!m.text.contains(&t.to_string()), "tenant id in metrics");
}
