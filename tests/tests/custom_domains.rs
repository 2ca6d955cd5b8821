//! End to end: customers' custom domains on a TLS gateway with a Postgres directory and real
//! region nodes. A rustls client chooses the SNI and the `Host` header: each customer's
//! hostname gets its own certificate (verified against the test CA for that name), anything
//! else the default one; a customer's hostname serves only that customer's credentials (403
//! otherwise), SNI and `Host` naming different hostnames is 421; adding and removing take
//! effect within a second, through the admin API and through `NOTIFY` from another writer.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use integration_tests::gateway::{Stack, StackOptions, DEFAULT_HOST, WITHIN};
use residency_core::domain::DomainState;
use residency_directory::DomainVerdict;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{json, Value};

/// Accepts any server certificate (the test compares it byte for byte instead), checking only
/// the handshake signatures: for SNIs the default certificate does not name.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How the client checks the server's certificate.
#[derive(Clone, Copy)]
enum Trust {
    /// Against the test CA, for the SNI name (a real client).
    Ca,
    /// Not at all (the presented certificate is compared by the test).
    Any,
}

/// One request's outcome.
#[derive(Debug)]
struct Answer {
    leaf: CertificateDer<'static>,
    status: StatusCode,
    json: Value,
}

/// A TLS connection to the gateway with `sni` (none: the client sends none, as for an IP
/// address), then `GET /v1/me` with `host` and `auth` headers.
async fn call(
    s: &Stack,
    sni: Option<&str>,
    trust: Trust,
    host: &str,
    auth: &[(&str, &str)],
) -> Result<Answer, String> {
    let tls = s.tls.as_ref().unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut cfg = match trust {
        Trust::Ca => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pem_der(&tls.ca_pem)).unwrap();
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Any => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_owned()).unwrap(),
        None => ServerName::IpAddress(s.public_addr.ip().into()),
    };
    let tcp = tokio::net::TcpStream::connect(s.public_addr)
        .await
        .map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(Method::GET)
        .uri("/v1/me")
        .header("host", host);
    for (k, v) in auth {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok(Answer {
        leaf,
        status,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

fn pem_der(pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn cert_der(s: &Stack, cert_ref: &str) -> CertificateDer<'static> {
    let dir = &s.tls.as_ref().unwrap().domains_dir;
    pem_der(&std::fs::read_to_string(dir.join(cert_ref).join("tls.crt")).unwrap())
}

fn default_der(s: &Stack) -> CertificateDer<'static> {
    pem_der(&std::fs::read_to_string(s.files.path().join("gateway.pem")).unwrap())
}

fn bearer(s: &Stack, tenant: &str) -> String {
    format!("Bearer {}", s.idp.token(tenant, "user-1", "developer"))
}

async fn add(
    s: &Stack,
    tenant: &str,
    hostname: &str,
    cert_ref: &str,
) -> integration_tests::Response {
    s.admin(
        Method::POST,
        &format!("/admin/v1/tenants/{tenant}/domains"),
        Some(&json!({"hostname": hostname, "cert_ref": cert_ref})),
    )
    .await
}

async fn tls_stack() -> Stack {
    Stack::start_with(StackOptions {
        tls: true,
        ..StackOptions::default()
    })
    .await
}

#[tokio::test]
async fn each_customer_hostname_gets_its_certificate_and_serves_only_its_customer() {
    let s = tls_stack().await;
    let tls = s.tls.as_ref().unwrap();
    let a = s.create_tenant("dom-a", "eu", "scale").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = s.create_tenant("dom-b", "us", "scale").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tls.install_cert("a-tls", &["api.a.test"]);
    tls.install_cert("b-tls", &["api.b.test"]);

    let r = add(&s, &a, "API.A.test", "a-tls").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(
        (&r.json["hostname"], &r.json["state"], &r.json["tenant_id"]),
        (&json!("api.a.test"), &json!("active"), &json!(a))
    );
    let r = add(&s, &b, "api.b.test", "b-tls").await;
    assert_eq!(
        (r.status, &r.json["state"]),
        (StatusCode::CREATED, &json!("active")),
        "{r:?}"
    );

    // Attack: taking another customer's hostname; the answer names nobody.
    let taken = add(&s, &b, "api.a.test", "b-tls").await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{taken:?}");
    assert!(!taken.json.to_string().contains(&a), "{taken:?}");
    let again = add(&s, &a, "api.a.test", "a-tls").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json["detail"], taken.json["detail"]);
    // Not a hostname, or the gateway's own.
    for bad in [
        "*.a.test",
        "10.1.2.3",
        "api.a.test.",
        "localhost",
        DEFAULT_HOST,
    ] {
        let r = add(&s, &a, bad, "a-tls").await;
        assert_eq!(
            (r.status, &r.json["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!("hostname")),
            "{bad}: {r:?}"
        );
    }
    let list = s
        .admin(Method::GET, &format!("/admin/v1/tenants/{a}/domains"), None)
        .await;
    // Which customer holds a hostname (any case); unknown ones are 404.
    let owner = s
        .admin(Method::GET, "/admin/v1/domains/API.a.test", None)
        .await;
    assert_eq!(
        (owner.status, &owner.json["tenant_id"]),
        (StatusCode::OK, &json!(a)),
        "{owner:?}"
    );
    let none = s
        .admin(Method::GET, "/admin/v1/domains/nobody.test", None)
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{none:?}");
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1, "{list:?}");

    // Each SNI gets its certificate, valid for that name under the test CA.
    for (host, cert_ref) in [("api.a.test", "a-tls"), ("api.b.test", "b-tls")] {
        let got = s
            .until(
                "the custom domain certificate is served",
                WITHIN,
                || async { call(&s, Some(host), Trust::Ca, host, &[]).await.ok() },
            )
            .await;
        assert_eq!(got.leaf, cert_der(&s, cert_ref), "{host}");
    }
    // An unknown SNI, or none, gets the default certificate.
    for sni in [Some("other.test"), None] {
        let got = call(&s, sni, Trust::Any, DEFAULT_HOST, &[]).await.unwrap();
        assert_eq!(got.leaf, default_der(&s), "{sni:?}");
    }

    // A's credentials on A's hostname: served.
    let (ta, tb) = (bearer(&s, &a), bearer(&s, &b));
    let ok = call(
        &s,
        Some("api.a.test"),
        Trust::Ca,
        "api.a.test",
        &[("authorization", &ta)],
    )
    .await
    .unwrap();
    assert_eq!(
        (ok.status, &ok.json["tenant_id"]),
        (StatusCode::OK, &json!(a)),
        "{ok:?}"
    );
    let key_a = s.create_api_key(&a, "k", "developer").await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_b = s.create_api_key(&b, "k", "developer").await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = call(
        &s,
        Some("api.a.test"),
        Trust::Ca,
        "api.a.test",
        &[("x-api-key", &key_a)],
    )
    .await
    .unwrap();
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");

    // Attack: B's token or key on A's hostname (by SNI and Host, or by Host alone without SNI).
    for (sni, auth) in [
        (Some("api.a.test"), ("authorization", tb.as_str())),
        (Some("api.a.test"), ("x-api-key", key_b.as_str())),
        (None, ("authorization", tb.as_str())),
    ] {
        let r = call(&s, sni, Trust::Any, "api.a.test", &[auth])
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{sni:?} {r:?}");
        assert_eq!(
            r.json["type"],
            "urn:residency:problem:domain_tenant_mismatch"
        );
        let text = r.json.to_string();
        assert!(!text.contains(&a) && !text.contains(&b), "{text}");
    }
    // Attack: a connection made for A's hostname carrying a request for B's, or the default
    // name's connection carrying one for B's: 421, before any credential counts.
    for (sni, host, auth) in [
        (Some("api.a.test"), "api.b.test", &tb),
        (Some("api.a.test"), "api.b.test", &ta),
        (Some(DEFAULT_HOST), "api.b.test", &tb),
        (Some("api.b.test"), "localhost", &tb),
    ] {
        let r = call(&s, sni, Trust::Any, host, &[("authorization", auth)])
            .await
            .unwrap();
        assert_eq!(
            r.status,
            StatusCode::MISDIRECTED_REQUEST,
            "{sni:?} {host} {r:?}"
        );
        assert_eq!(r.json["type"], "urn:residency:problem:misdirected_request");
    }
    // Everyone still works on the default name.
    for t in [&ta, &tb] {
        let r = call(
            &s,
            Some(DEFAULT_HOST),
            Trust::Ca,
            DEFAULT_HOST,
            &[("authorization", t)],
        )
        .await
        .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
    // The registration is in A's history, with the actor.
    let h = s
        .admin(Method::GET, &format!("/admin/v1/tenants/{a}/history"), None)
        .await;
    assert!(
        h.json["items"].as_array().unwrap().iter().any(|e| {
            e["actor"] == "admin:test" && e["detail"]["domain"]["hostname"] == "api.a.test"
        }),
        "{h:?}"
    );

    // Removal through the admin API: within a second the default certificate and no check.
    let r = s
        .admin(
            Method::DELETE,
            &format!("/admin/v1/tenants/{a}/domains/api.a.test"),
            None,
        )
        .await;
    assert_eq!(
        (r.status, &r.json["state"]),
        (StatusCode::OK, &json!("removed")),
        "{r:?}"
    );
    s.until(
        "a removed domain gets the default certificate",
        WITHIN,
        || async {
            let got = call(
                &s,
                Some("api.a.test"),
                Trust::Any,
                "api.a.test",
                &[("authorization", &tb)],
            )
            .await
            .ok()?;
            (got.leaf == default_der(&s) && got.status == StatusCode::OK).then_some(())
        },
    )
    .await;
    let r = s
        .admin(
            Method::DELETE,
            &format!("/admin/v1/tenants/{a}/domains/api.a.test"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let gone = s
        .admin(Method::GET, "/admin/v1/domains/api.a.test", None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{gone:?}");

    // Removal by another writer (another replica's admin API): through NOTIFY.
    let written = std::time::Instant::now();
    s.store
        .remove_domain("admin:elsewhere", b.parse().unwrap(), "api.b.test")
        .await
        .unwrap();
    s.until(
        "a domain removed elsewhere stops within a second",
        WITHIN,
        || async {
            let got = call(
                &s,
                Some("api.b.test"),
                Trust::Any,
                "api.b.test",
                &[("authorization", &ta)],
            )
            .await
            .ok()?;
            (got.leaf == default_der(&s) && got.status == StatusCode::OK).then_some(())
        },
    )
    .await;
    // A figure for the report, not an assertion.
    eprintln!("removal elsewhere effective after {:?}", written.elapsed());
    // And added elsewhere: served within a second, without a restart.
    let written = std::time::Instant::now();
    s.store
        .add_domain(
            "admin:elsewhere",
            a.parse().unwrap(),
            "api.b.test",
            "b-tls",
            &DomainVerdict {
                state: DomainState::Active,
                reason: String::new(),
            },
        )
        .await
        .unwrap();
    s.until(
        "a domain added elsewhere is served within a second",
        WITHIN,
        || async {
            let got = call(
                &s,
                Some("api.b.test"),
                Trust::Ca,
                "api.b.test",
                &[("authorization", &tb)],
            )
            .await
            .ok()?;
            (got.status == StatusCode::FORBIDDEN).then_some(())
        },
    )
    .await;
    eprintln!("addition elsewhere effective after {:?}", written.elapsed());
    s.stop().await;
}

#[tokio::test]
async fn a_domain_is_active_only_once_its_certificate_is_good() {
    let s = tls_stack().await;
    let tls = s.tls.as_ref().unwrap();
    let a = s.create_tenant("verify-a", "eu", "scale").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = s.create_tenant("verify-b", "eu", "scale").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // No certificate yet: pending, neither served nor enforced.
    let r = add(&s, &a, "shop.a.test", "shop").await;
    assert_eq!(
        (r.status, &r.json["state"]),
        (StatusCode::CREATED, &json!("pending")),
        "{r:?}"
    );
    let tb = bearer(&s, &b);
    let got = call(
        &s,
        Some("shop.a.test"),
        Trust::Any,
        "shop.a.test",
        &[("authorization", &tb)],
    )
    .await
    .unwrap();
    assert_eq!(
        (got.leaf == default_der(&s), got.status),
        (true, StatusCode::OK)
    );

    // A certificate for another name: failed, with the reason.
    tls.install_cert("shop", &["www.a.test"]);
    let verify = format!("/admin/v1/tenants/{a}/domains/shop.a.test/verify");
    let r = s.admin(Method::POST, &verify, None).await;
    assert_eq!(
        (r.status, &r.json["state"]),
        (StatusCode::OK, &json!("failed")),
        "{r:?}"
    );
    assert!(
        r.json["reason"].as_str().unwrap().contains("www.a.test"),
        "{r:?}"
    );
    let got = call(
        &s,
        Some("shop.a.test"),
        Trust::Any,
        "shop.a.test",
        &[("authorization", &tb)],
    )
    .await
    .unwrap();
    assert_eq!(got.status, StatusCode::OK);

    // The right certificate: active, served and enforced.
    tls.install_cert("shop", &["shop.a.test"]);
    let r = s.admin(Method::POST, &verify, None).await;
    assert_eq!(
        (r.status, &r.json["state"]),
        (StatusCode::OK, &json!("active")),
        "{r:?}"
    );
    assert!(r.json["verified_at"].is_string());
    s.until("a verified domain is served", WITHIN, || async {
        let got = call(
            &s,
            Some("shop.a.test"),
            Trust::Ca,
            "shop.a.test",
            &[("authorization", &tb)],
        )
        .await
        .ok()?;
        (got.status == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    // Only the owner verifies or removes it.
    let r = s
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{b}/domains/shop.a.test/verify"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = s
        .admin(
            Method::DELETE,
            &format!("/admin/v1/tenants/{b}/domains/shop.a.test"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    s.stop().await;
}

/// The `residency` binary's `domains` commands against the same stack (a blocking child
/// process, hence the multi-thread runtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_lists_verifies_and_removes_domains() {
    let s = tls_stack().await;
    let tls = s.tls.as_ref().unwrap();
    let a = s.create_tenant("cli-dom", "eu", "scale").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let residency = |args: &[&str]| {
        std::process::Command::new(integration_tests::binary("residency"))
            .args(args)
            .env("RESIDENCY_ADMIN_URL", &s.admin)
            .env(
                "RESIDENCY_ADMIN_TOKEN",
                integration_tests::gateway::ADMIN_TOKEN,
            )
            .env_remove("RUST_LOG")
            .output()
            .expect("run residency")
    };
    let json = |out: std::process::Output| -> Value {
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    };
    let added = json(residency(&[
        "domains",
        "add",
        &a,
        "cli.a.test",
        "--cert-ref",
        "cli",
        "--json",
    ]));
    assert_eq!(added["state"], "pending", "{added}");
    tls.install_cert("cli", &["cli.a.test"]);
    let verified = json(residency(&[
        "domains",
        "verify",
        &a,
        "cli.a.test",
        "--json",
    ]));
    assert_eq!(verified["state"], "active", "{verified}");
    let table = residency(&["domains", "list", &a]);
    let text = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        text.starts_with("HOSTNAME") && text.contains("cli.a.test") && text.contains("active"),
        "{text}"
    );
    // A refusal exits 1 with the API's detail.
    let taken = residency(&["domains", "add", &a, "cli.a.test"]);
    assert_eq!(taken.status.code(), Some(1), "{taken:?}");
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("409"),
        "{taken:?}"
    );
    let removed = json(residency(&[
        "domains",
        "remove",
        &a,
        "cli.a.test",
        "--json",
    ]));
    assert_eq!(removed["state"], "removed");
    let empty = residency(&["domains", "list", &a]);
    assert!(
        String::from_utf8_lossy(&empty.stdout).contains("(none)"),
        "{empty:?}"
    );
    s.stop().await;
}
