//! `<dir>/stack.json`: the contract of SPEC §4 that scripts, tests, benchmarks and
//! `residency audit` read. Paths are relative to the file. Beyond the contract, each region
//! carries `auditor_database_url` (the audit's read-only role) and `display_name`, and
//! `node_tls` says how to call the nodes directly: they serve HTTPS signed by `ca_cert` and
//! require a client certificate (`client_cert`, `client_key`: the gateway's).
//!
//! Written `0600` and atomically, last, once the whole stack answers: a reader that finds the
//! file can use every URL in it.

use std::path::Path;

use serde::Serialize;

use super::configs::{assertion_kid, describe, issuer, jwks_url, Ports, AUDIENCE};
use super::databases::Urls;
use super::material::{self, Material};
use super::seed::DemoTenant;

#[derive(Serialize)]
struct Stack<'a> {
    gateway: Gateway,
    admin: Admin<'a>,
    jwt: Jwt,
    directory: Directory<'a>,
    node_tls: NodeTls,
    regions: Vec<Region<'a>>,
    demo_tenants: Vec<Tenant<'a>>,
}

#[derive(Serialize)]
struct NodeTls {
    ca_cert: &'static str,
    client_cert: &'static str,
    client_key: &'static str,
}

#[derive(Serialize)]
struct Gateway {
    url: String,
    ca_cert: &'static str,
}

#[derive(Serialize)]
struct Admin<'a> {
    url: String,
    token: &'a str,
}

#[derive(Serialize)]
struct Jwt {
    issuer: String,
    audience: &'static str,
    alg: &'static str,
    kid: String,
    private_key_pem: &'static str,
    jwks_url: String,
    tenant_claim: &'static str,
    role_claim: &'static str,
    token_url: String,
}

#[derive(Serialize)]
struct Directory<'a> {
    database_url: &'a str,
}

#[derive(Serialize)]
struct Region<'a> {
    id: &'a str,
    display_name: String,
    node_url: String,
    database_url: &'a str,
    app_database_url: &'a str,
    auditor_database_url: &'a str,
    assertion: Assertion,
}

#[derive(Serialize)]
struct Assertion {
    alg: &'static str,
    kid: String,
    key_file: String,
}

#[derive(Serialize)]
struct Tenant<'a> {
    id: String,
    name: &'a str,
    region: &'a str,
    tier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<&'a str>,
}

/// The gateway's public URL.
#[must_use]
pub(super) fn gateway_url(ports: &Ports) -> String {
    format!("https://127.0.0.1:{}", ports.gateway)
}

/// The admin listener's URL.
#[must_use]
pub(super) fn admin_url(ports: &Ports) -> String {
    format!("http://127.0.0.1:{}", ports.admin)
}

/// Renders stack.json.
///
/// # Errors
/// Serialization errors (none in practice).
pub(super) fn render(
    m: &Material,
    ports: &Ports,
    urls: &Urls,
    tenants: &[DemoTenant],
) -> anyhow::Result<Vec<u8>> {
    let stack = Stack {
        gateway: Gateway {
            url: gateway_url(ports),
            ca_cert: material::CA_CERT,
        },
        admin: Admin {
            url: admin_url(ports),
            token: &m.admin_token,
        },
        jwt: Jwt {
            issuer: issuer(ports),
            audience: AUDIENCE,
            alg: "ES256",
            kid: m.jwt_kid.clone(),
            private_key_pem: material::JWT_KEY,
            jwks_url: jwks_url(ports),
            tenant_claim: "tenant_id",
            role_claim: "role",
            token_url: format!("http://127.0.0.1:{}/token", ports.idp),
        },
        directory: Directory {
            database_url: &urls.directory,
        },
        node_tls: NodeTls {
            ca_cert: material::CA_CERT,
            client_cert: material::GATEWAY_CLIENT_CERT,
            client_key: material::GATEWAY_CLIENT_KEY,
        },
        regions: urls
            .regions
            .iter()
            .zip(&ports.nodes)
            .map(|((r, u), port)| Region {
                id: r.as_str(),
                display_name: describe(r).0,
                node_url: super::configs::node_url(*port),
                database_url: &u.owner,
                app_database_url: &u.app,
                auditor_database_url: &u.auditor,
                assertion: Assertion {
                    alg: "HS256",
                    kid: assertion_kid(r),
                    key_file: material::assertion_key(r),
                },
            })
            .collect(),
        demo_tenants: tenants
            .iter()
            .map(|t| Tenant {
                id: t.id.to_string(),
                name: &t.name,
                region: t.region.as_str(),
                tier: t.tier.as_str(),
                api_key: t.api_key.as_deref(),
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&stack)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `bytes` as `<dir>/stack.json`.
///
/// # Errors
/// File system errors.
pub(super) fn write(dir: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    material::write_private(&dir.join("stack.json"), bytes)
}
