//! The signup pipeline (issue 17, item 2), end to end against real Postgres: `POST
//! /v1/signups` on the public listener (no credential), every outcome with its reasons, each
//! blocklisted personal-mail family, duplicates, the review queue, the LLM classifier
//! against a local fake OpenAI-compatible server (timeout, invalid JSON, a schema breach, a
//! valid answer), and the per-IP rate limit.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use integration_tests::gateway::{Stack, StackOptions};
use integration_tests::Response;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use uuid::Uuid;

fn domain(prefix: &str) -> String {
    format!("{prefix}{}.com", Uuid::new_v4().simple())
}

async fn submit(
    s: &Stack,
    email: &str,
    company: &str,
    website: &str,
    description: &str,
) -> Response {
    s.post_public(
        "/v1/signups",
        &json!({"email": email, "company": company, "website": website, "description": description}),
    )
    .await
}

fn reasons(r: &Response) -> String {
    r.json["reasons"].to_string()
}

async fn org_with_domain(s: &Stack, domain: &str) -> Option<Value> {
    let orgs = s
        .admin(Method::GET, "/admin/v1/organizations?limit=500", None)
        .await;
    orgs.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["domain"] == domain)
        .cloned()
}

#[tokio::test]
async fn every_signup_outcome_with_the_rules_classifier_and_the_review_queue() {
    let s = Stack::start_with(StackOptions {
        signup: Some(
            "[signup]\nper_ip_per_min = 1000\nblocked_domains = [\"corp-mail.example\", \"mymail.*\"]\n",
        ),
        ..StackOptions::default()
    })
    .await;

    // 1. Syntax first (nothing stored), then one address per blocklisted family.
    for bad in ["not-an-email", "a@b", "@acme.com", "a..b@acme.com"] {
        let r = submit(&s, bad, "Acme", "", "").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {r:?}");
        assert_eq!(r.json["field"], "email");
    }
    for provider in [
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "outlook.de",
        "hotmail.com",
        "hotmail.co.uk",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.fr",
        "ymail.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "gmx.de",
        "gmx.net",
        "web.de",
        "yandex.ru",
        "yandex.com",
        "mail.ru",
        "qq.com",
        "163.com",
        "126.com",
        "zoho.com",
        "tutanota.com",
        "fastmail.fm",
        "hey.com",
        // Added in the config: a domain and a family.
        "corp-mail.example",
        "mymail.io",
    ] {
        let r = submit(
            &s,
            &format!("jane@{provider}"),
            "Acme Software",
            "https://acme.com",
            "SaaS",
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{provider}: {r:?}");
        assert_eq!(r.json["status"], "rejected", "{provider}: {r:?}");
        assert!(
            reasons(&r).contains("personal email provider"),
            "{provider}: {r:?}"
        );
    }

    // Approved: a software company on its own domain → an organization on the Free plan
    // with the applicant as owner.
    let d1 = domain("acme");
    let r = submit(
        &s,
        &format!("jane@{d1}"),
        "Acme Software",
        &format!("https://www.{d1}/"),
        "A SaaS platform in Rust on Postgres; we need SSO and webhooks",
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json["status"], "approved", "{r:?}");
    let approved_id = r.json["id"].as_str().unwrap().to_owned();
    let org = org_with_domain(&s, &d1).await.expect("an organization");
    assert_eq!(org["plan"], "free");
    assert_eq!(org["owner_email"], format!("jane@{d1}").as_str());
    assert_eq!(org["provisional"], false);
    let full = s
        .admin(
            Method::GET,
            &format!("/admin/v1/signups/{approved_id}"),
            None,
        )
        .await;
    assert_eq!(full.json["classifier"], "rules", "{full:?}");
    assert_eq!(full.json["classification"]["industry"], "software");
    assert_eq!(
        full.json["classification"]["tech_stack"],
        json!(["rust", "postgres"])
    );
    assert_eq!(
        full.json["classification"]["integration_needs"],
        json!(["sso", "webhooks"])
    );
    assert_eq!(full.json["org_id"], org["id"]);
    assert_eq!(full.json["events"][0]["event"], "submitted");
    assert_eq!(full.json["events"][0]["actor"], "signup:pipeline");

    // 2. The same domain as an existing organization: rejected.
    let r = submit(&s, &format!("joe@{d1}"), "Acme Again", &d1, "SaaS software").await;
    assert_eq!(r.json["status"], "rejected", "{r:?}");
    assert!(reasons(&r).contains("already exists"), "{r:?}");

    // Provisional: a regulated industry → an organization with reduced limits.
    let d2 = domain("clinic");
    let r = submit(
        &s,
        &format!("ann@{d2}"),
        "Care Clinics",
        &d2,
        "Patient records for clinics",
    )
    .await;
    assert_eq!(r.json["status"], "provisional", "{r:?}");
    assert!(reasons(&r).contains("regulated"), "{r:?}");
    let provisional_id = r.json["id"].as_str().unwrap().to_owned();
    let org2 = org_with_domain(&s, &d2)
        .await
        .expect("a provisional organization");
    assert_eq!(org2["provisional"], true);
    // Its reduced limits: one starter customer.
    let customer = |tier: &str| json!({"name": format!("care-{tier}"), "region": "eu", "tier": tier, "org_id": org2["id"]});
    let r = s
        .admin(Method::POST, "/admin/v1/tenants", Some(&customer("scale")))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(
        r.json["type"],
        "urn:residency:problem:provisional_org_limit"
    );
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(&customer("starter")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(&customer("starter")),
        )
        .await;
    assert_eq!(
        r.json["type"], "urn:residency:problem:provisional_org_limit",
        "{r:?}"
    );

    // Manual review: nothing to classify; then a pending duplicate of it.
    let d3 = domain("zyx");
    let r = submit(&s, &format!("bo@{d3}"), "Zyx", &d3, "").await;
    assert_eq!(r.json["status"], "manual_review", "{r:?}");
    assert!(
        reasons(&r).contains("industry could not be classified"),
        "{r:?}"
    );
    let first = r.json["id"].as_str().unwrap().to_owned();
    let r = submit(
        &s,
        &format!("al@{d3}"),
        "Zyx Software",
        &d3,
        "SaaS software platform",
    )
    .await;
    assert_eq!(r.json["status"], "manual_review", "{r:?}");
    assert!(reasons(&r).contains("waiting for review"), "{r:?}");
    let second = r.json["id"].as_str().unwrap().to_owned();
    assert!(org_with_domain(&s, &d3).await.is_none());

    // The review queue.
    let q = s
        .admin(Method::GET, "/admin/v1/signups?status=manual_review", None)
        .await;
    let ids: Vec<&str> = q.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()], "{q:?}");
    let r = s
        .admin(
            Method::POST,
            &format!("/admin/v1/signups/{first}/approve"),
            Some(&json!({"note": "called them, real company"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["status"], "approved");
    assert_eq!(r.json["review_note"], "called them, real company");
    assert_eq!(r.json["reviewed_by"], "admin:test");
    let org3 = org_with_domain(&s, &d3).await.expect("created on approval");
    assert_eq!(
        (org3["plan"].as_str(), org3["owner_email"].as_str()),
        (Some("free"), Some(format!("bo@{d3}").as_str()))
    );
    let r = s
        .admin(
            Method::POST,
            &format!("/admin/v1/signups/{second}/reject"),
            Some(&json!({"note": "duplicate of the approved one"})),
        )
        .await;
    assert_eq!(r.json["status"], "rejected", "{r:?}");
    let r = s
        .admin(
            Method::POST,
            &format!("/admin/v1/signups/{first}/reject"),
            Some(&json!({"note": "changed my mind"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.json["type"], "urn:residency:problem:signup_not_pending");
    // Approving a provisional signup lifts the reduced limits.
    let r = s
        .admin(
            Method::POST,
            &format!("/admin/v1/signups/{provisional_id}/approve"),
            Some(&json!({"note": "checked their licence"})),
        )
        .await;
    assert_eq!(r.json["status"], "approved", "{r:?}");
    assert_eq!(
        org_with_domain(&s, &d2).await.unwrap()["provisional"],
        false
    );
    let trail = s
        .admin(
            Method::GET,
            &format!("/admin/v1/signups/{provisional_id}"),
            None,
        )
        .await;
    let events: Vec<&str> = trail.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["submitted", "approved"], "{trail:?}");
    let r = s
        .admin(Method::POST, "/admin/v1/tenants", Some(&customer("scale")))
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "reviewed: full limits: {r:?}"
    );
    // The review queue needs the platform token.
    let r = s
        .admin_as(None, Method::GET, "/admin/v1/signups", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    s.stop().await;
}

/// A fake OpenAI-compatible chat-completions server: the applicant's description picks the
/// behaviour (`SLEEP`: answers after 3 s; `INVALID`: content that is not JSON; `EXTRA`: JSON
/// with a field outside the schema; anything else: a valid logistics answer). It requires
/// the configured bearer key.
async fn fake_llm() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let authorized = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        == Some("Bearer test-llm-key");
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let user = v["messages"][1]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let content = if user.contains("SLEEP") {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        r#"{"industry":"logistics","tech_stack":[],"integration_needs":[]}"#
                            .to_owned()
                    } else if user.contains("INVALID") {
                        "sure! the industry is logistics".to_owned()
                    } else if user.contains("EXTRA") {
                        r#"{"industry":"logistics","tech_stack":[],"integration_needs":[],"approve":true}"#.to_owned()
                    } else {
                        r#"{"industry":"logistics","tech_stack":["go"],"integration_needs":["webhooks"]}"#.to_owned()
                    };
                    let answer = json!({"model": v["model"], "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]});
                    let status = if authorized {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    };
                    let mut resp = http::Response::new(Full::new(Bytes::from(answer.to_string())));
                    *resp.status_mut() = status;
                    Ok::<_, Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn llm_failures_go_to_review_valid_answers_are_used_and_ips_are_rate_limited() {
    let llm = fake_llm().await;
    let per_ip = 6;
    let cfg = format!(
        "[signup]\nper_ip_per_min = {per_ip}\n[signup.llm]\nurl = \"http://{llm}/v1/chat/completions\"\n\
         model = \"test-model\"\napi_key = \"test-llm-key\"\ntimeout = \"500ms\"\n"
    );
    let s = Stack::start_with(StackOptions {
        signup: Some(Box::leak(cfg.into_boxed_str())),
        ..StackOptions::default()
    })
    .await;
    let mut sent = 0;

    let d = domain("ship");
    let r = submit(&s, &format!("li@{d}"), "Ship It", &d, "We move containers").await;
    sent += 1;
    assert_eq!(r.json["status"], "approved", "{r:?}");
    let full = s
        .admin(
            Method::GET,
            &format!("/admin/v1/signups/{}", r.json["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(full.json["classifier"], "llm");
    assert_eq!(
        full.json["classification"],
        json!({"industry": "logistics", "tech_stack": ["go"], "integration_needs": ["webhooks"]})
    );

    for (marker, why) in [
        ("SLEEP", "did not answer within"),
        ("INVALID", "does not match the schema"),
        ("EXTRA", "does not match the schema"),
    ] {
        let d = domain("llm");
        let r = submit(&s, &format!("li@{d}"), "Ship It", &d, marker).await;
        sent += 1;
        assert_eq!(r.status, StatusCode::CREATED, "{marker}: {r:?}");
        assert_eq!(r.json["status"], "manual_review", "{marker}: {r:?}");
        assert!(reasons(&r).contains(why), "{marker}: {r:?}");
        assert!(org_with_domain(&s, &d).await.is_none());
    }

    // Per client IP: the configured number, then 429 with Retry-After (requests refused for
    // their input count too: the limit comes first).
    let refused = loop {
        let r = submit(&s, "nope", "x", "", "").await;
        sent += 1;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            break r;
        }
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
        assert!(
            sent <= 3 * per_ip,
            "no 429 after {sent} signups from one address"
        );
    };
    assert!(sent > per_ip, "refused after only {sent}");
    assert_eq!(refused.json["type"], "urn:residency:problem:rate_limited");
    assert!(refused.headers.contains_key("retry-after"), "{refused:?}");

    s.stop().await;
}
