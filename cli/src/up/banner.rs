//! What `up` prints once the stack answers: endpoints, files, and copy-paste examples. No
//! secret is printed: examples read the admin token and API keys from their files.

use std::path::{Path, PathBuf};

use residency_core::RegionId;
use residency_core::Tier;

use super::configs::Ports;
use super::material;
use super::seed::DemoTenant;
use super::stack_json::{admin_url, gateway_url};

/// `dir` relative to the working directory when it is inside it, so examples stay short.
fn shown(dir: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| dir.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// How the user invoked this binary, for the audit example.
fn me() -> String {
    std::env::args()
        .next()
        .filter(|a| a.contains('/'))
        .unwrap_or_else(|| "residency".to_owned())
}

/// Prints the endpoints and examples.
pub(super) fn print(dir: &Path, ports: &Ports, regions: &[RegionId], tenants: &[DemoTenant]) {
    let d = shown(dir).display().to_string();
    let gw = gateway_url(ports);
    let admin = admin_url(ports);
    let ca = format!("{d}/{}", material::CA_CERT);
    let token_url = format!("http://127.0.0.1:{}/token", ports.idp);
    println!();
    println!("Residency Gateway local stack is up.");
    println!();
    println!("  gateway         {gw}   (TLS; trust {ca})");
    println!(
        "  admin API       {admin}   (bearer token in {d}/{})",
        material::ADMIN_TOKEN
    );
    println!("  dev IdP         {token_url}   (JWKS at /.well-known/jwks.json)");
    for (r, p) in regions.iter().zip(&ports.nodes) {
        println!(
            "  node {:<10} {}   (mTLS: client cert {d}/{}; needs a gateway assertion)",
            r.as_str(),
            super::configs::node_url(*p),
            material::GATEWAY_CLIENT_CERT,
        );
    }
    println!(
        "  connectors      http://127.0.0.1:{}/<connector>   (local sandbox every workflow calls)",
        ports.sandbox
    );
    println!("  stack.json      {d}/stack.json   (logs in {d}/logs/)");
    println!();
    println!(
        "  {:<38} {:<6} {:<10} id",
        "demo customer", "region", "tier"
    );
    for t in tenants {
        println!(
            "  {:<38} {:<6} {:<10} {}",
            t.name,
            t.region,
            t.tier.as_str(),
            t.id
        );
    }
    println!();
    println!("Try it (needs curl and jq):");
    println!();
    println!("  # one call per region with a token from the dev IdP; note x-residency-region");
    for r in regions {
        if let Some(t) = tenants.iter().find(|t| &t.region == r) {
            println!(
                "  curl -si --cacert {ca} {gw}/v1/me -H \"authorization: Bearer $(curl -s -X POST {token_url} -d '{{\"tenant_id\":\"{}\"}}' | jq -r .access_token)\"",
                t.id
            );
        }
    }
    if let Some(t) = tenants
        .iter()
        .find(|t| t.tier == Tier::Scale && t.api_key.is_some())
    {
        println!();
        println!("  # with the demo API key of {} ({})", t.name, t.region);
        println!(
            "  curl -si --cacert {ca} {gw}/v1/workflows -H \"x-api-key: $(jq -r '.demo_tenants[] | select(.id==\"{}\") | .api_key' {d}/stack.json)\"",
            t.id
        );
    }
    println!();
    println!("  # create a customer in the EU through the admin API");
    println!(
        "  curl -s -X POST {admin}/admin/v1/tenants -H \"authorization: Bearer $(cat {d}/{})\" -H 'content-type: application/json' -d '{{\"name\":\"Acme GmbH\",\"region\":\"eu\",\"tier\":\"growth\"}}'",
        material::ADMIN_TOKEN
    );
    println!();
    println!("  # prove every customer's data is in its home region and isolation is on");
    println!("  {} audit --stack {d}/stack.json", me());
    println!();
    println!("Ctrl-C stops everything; data is kept for the next `up` (--fresh starts over).");
}
