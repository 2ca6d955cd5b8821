//! Mints the internal assertion the gateway would send for one tenant, from a `residency up`
//! stack's `stack.json` (its region's `assertion.key_file`), so benchmarks and scripts can call
//! a region node directly the way the gateway does (SPEC §4).
//!
//! `mint-assertion STACK_JSON REGION TENANT_ID [SUBJECT] [ROLE]` prints the token (valid for
//! the 60 s an assertion may live). The subject defaults to `demo-owner`, the owner member of
//! every demo tenant; the role defaults to empty, so the node takes it from the member record,
//! as it does for a dev JWT without a role claim.

use anyhow::Context;
use residency_core::assertion::{now_secs, AssertionKey, Signer, MAX_TTL_SECS};
use residency_core::{RegionId, TenantId};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [stack, region, tenant, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: mint-assertion STACK_JSON REGION TENANT_ID [SUBJECT] [ROLE]");
    };
    let subject = rest.first().map_or("demo-owner", String::as_str);
    let role = rest.get(1).map_or("", String::as_str);
    let text = std::fs::read_to_string(stack).with_context(|| format!("reading {stack}"))?;
    let json: serde_json::Value = serde_json::from_str(&text).context("parsing stack.json")?;
    let entry = json["regions"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == region.as_str()))
        .with_context(|| format!("no region {region:?} in {stack}"))?;
    let field = |name: &str| {
        entry["assertion"][name]
            .as_str()
            .with_context(|| format!("regions[{region}].assertion.{name} missing"))
    };
    let base = std::path::Path::new(stack)
        .parent()
        .unwrap_or_else(|| std::path::Path::new("."));
    let key_file = base.join(field("key_file")?);
    let secret =
        std::fs::read(&key_file).with_context(|| format!("reading {}", key_file.display()))?;
    let key = AssertionKey::new(field("kid")?, field("alg")?, secret)?;
    let region = RegionId::new(region).map_err(anyhow::Error::msg)?;
    let tenant: TenantId = tenant
        .parse()
        .map_err(|e| anyhow::anyhow!("tenant id: {e}"))?;
    let (token, _exp) =
        Signer::new(region, &key, MAX_TTL_SECS).mint(tenant, subject, role, now_secs())?;
    println!("{token}");
    Ok(())
}
