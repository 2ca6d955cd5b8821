//! The demo data: one organization with a customer in every region × tier, each provisioned
//! on its home node and active in the directory, with members, a connection, a workflow with
//! one run, configurations, and an API key for `scale` and `enterprise` customers.
//!
//! Idempotent: organization and tenants are found by domain and name before anything is
//! created; provisioning is idempotent on the node; a tenant's content is written once,
//! with the `demo.seeded` configuration written last as the marker; a saved API key is
//! reused while the directory still holds it unrevoked.
//!
//! Seeding talks to the nodes directly with assertions minted from the region keys (as the
//! gateway does), so it needs neither the gateway nor a token.

use http::{HeaderName, HeaderValue, Method, StatusCode};
use residency_core::assertion::{now_secs, AssertionKey, Signer};
use residency_core::headers;
use residency_core::wire::customer::{
    Connection, CreateConnection, CreateMember, CreateWorkflow, JsonObject, PutConfiguration,
    RunWorkflow, Workflow,
};
use residency_core::wire::provision::{Owner, ProvisionRequest, PROVISION_PATH};
use residency_core::{split_api_key, TenantStatus, Tier};
use residency_core::{RegionId, TenantId};
use residency_directory::{NewTenant, Store, TenantFilter, TenantPatch};
use serde_json::{json, Value};
use uuid::Uuid;

use super::configs::{assertion_kid, describe};
use super::http::{Http, Reply};
use super::material::{self, Material};
use super::state::State;

/// Who the directory's history records for the stack's own changes.
pub(super) const ACTOR: &str = "system:residency-up";
/// The demo organization's domain.
pub(super) const ORG_DOMAIN: &str = "demo-partner.example";
/// Every tier, in display order.
pub(super) const TIERS: [Tier; 4] = [Tier::Starter, Tier::Growth, Tier::Scale, Tier::Enterprise];
/// The per-minute quota override given to enterprise demo customers ("custom" quota).
pub(super) const ENTERPRISE_QUOTA: u32 = 5000;

/// One seeded customer.
#[derive(Debug, Clone)]
pub(super) struct DemoTenant {
    /// Tenant id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Home region.
    pub region: RegionId,
    /// Tier.
    pub tier: Tier,
    /// Demo API key plaintext (scale and enterprise only).
    pub api_key: Option<String>,
}

/// Where a region's node is and how to sign for it.
pub(super) struct NodeTarget {
    /// Region id.
    pub region: RegionId,
    /// Base URL (`http://127.0.0.1:port`).
    pub url: String,
    /// Signs assertions for the region.
    pub signer: Signer,
}

impl NodeTarget {
    /// A target for `region` at `url`, signing with its assertion key.
    ///
    /// # Errors
    /// When the key cannot be read.
    pub(super) fn new(m: &Material, region: &RegionId, url: String) -> anyhow::Result<Self> {
        let secret = std::fs::read(m.dir.join(material::assertion_key(region)))?;
        let key = AssertionKey::new(&assertion_kid(region), "HS256", secret)?;
        Ok(Self {
            region: region.clone(),
            url,
            signer: Signer::new(region.clone(), &key, 60),
        })
    }

    async fn call(
        &self,
        http: &Http,
        tenant: Uuid,
        (sub, role): (&str, &str),
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let tenant = TenantId::from_uuid(tenant);
        // Provisioning needs a system-scoped assertion, which only `mint_system` writes.
        let (token, _) = if (sub, role) == SYSTEM {
            self.signer.mint_system(tenant, SYSTEM_ACTOR, now_secs())?
        } else {
            self.signer.mint(tenant, sub, role, now_secs())?
        };
        let hdr = vec![(
            HeaderName::from_static(headers::ASSERTION),
            HeaderValue::from_str(&token)?,
        )];
        http.json(method, &format!("{}{path}", self.url), &hdr, body)
            .await
    }
}

/// A customer API body as the JSON the node client sends.
fn wire<T: serde::Serialize>(body: &T) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(body)?)
}

/// Demo data written as a JSON object literal (free-form fields of the contract).
fn object(v: Value) -> anyhow::Result<JsonObject> {
    Ok(serde_json::from_value(v)?)
}

fn expect(reply: &Reply, ok: &[StatusCode], what: &str) -> anyhow::Result<()> {
    if ok.contains(&reply.status) {
        Ok(())
    } else {
        anyhow::bail!("{what}: node answered {} {}", reply.status, reply.body)
    }
}

fn tenant_name(region: &RegionId, tier: Tier) -> String {
    let (place, _) = describe(region);
    let tier = tier.as_str();
    let mut t = tier.chars();
    let tier = t
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + t.as_str())
        .unwrap_or_default();
    format!("Demo {place} {tier}")
}

/// Seeds everything and returns the demo tenants (region-major, tier-minor order).
///
/// # Errors
/// Directory or node errors, naming the step.
pub(super) async fn seed(
    store: &Store,
    nodes: &[NodeTarget],
    http: &Http,
    state: &mut State,
) -> anyhow::Result<Vec<DemoTenant>> {
    let org = match store
        .list_orgs(None, 1000)
        .await?
        .into_iter()
        .find(|o| o.domain == ORG_DOMAIN)
    {
        Some(o) => o,
        None => store
            .create_org(ACTOR, "Demo Partner", ORG_DOMAIN, "free")
            .await
            .map_err(|e| anyhow::anyhow!("creating the demo organization: {e}"))?,
    };
    let existing = store
        .list_tenants(&TenantFilter {
            org_id: Some(org.id),
            limit: 10_000,
            ..TenantFilter::default()
        })
        .await?;
    let mut out = Vec::new();
    for node in nodes {
        for tier in TIERS {
            let name = tenant_name(&node.region, tier);
            let record = match existing
                .iter()
                .find(|t| t.name == name && t.region == node.region.as_str())
            {
                Some(t) => t.clone(),
                None => store
                    .create_tenant(
                        ACTOR,
                        &NewTenant {
                            org_id: Some(org.id),
                            name: name.clone(),
                            region: node.region.clone(),
                            tier,
                            rate_limit_per_min: (tier == Tier::Enterprise)
                                .then_some(ENTERPRISE_QUOTA),
                        },
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("creating tenant {name}: {e}"))?,
            };
            let id = record.id;
            provision(node, http, id, &name).await?;
            if record.status != TenantStatus::Active {
                store
                    .update_tenant(
                        ACTOR,
                        id,
                        &TenantPatch {
                            status: Some(TenantStatus::Active),
                            ..TenantPatch::default()
                        },
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("activating tenant {name}: {e}"))?;
            }
            content(node, http, id, &name).await?;
            let api_key = if tier.allows_api_keys() {
                Some(api_key(store, state, id).await?)
            } else {
                None
            };
            out.push(DemoTenant {
                id,
                name,
                region: node.region.clone(),
                tier,
                api_key,
            });
        }
    }
    Ok(out)
}

const SYSTEM_ACTOR: &str = "residency-up";
const SYSTEM: (&str, &str) = ("system:residency-up", "system");
const OWNER: (&str, &str) = ("demo-owner", "owner");

fn slug(name: &str) -> String {
    name.to_ascii_lowercase().replace(' ', "-")
}

async fn provision(node: &NodeTarget, http: &Http, id: Uuid, name: &str) -> anyhow::Result<()> {
    let body = serde_json::to_value(ProvisionRequest {
        name: name.to_owned(),
        owner: Some(Owner {
            subject: OWNER.0.to_owned(),
            email: format!("owner@{}.example", slug(name)),
            display_name: Some("Demo Owner".to_owned()),
        }),
    })?;
    let r = node
        .call(http, id, SYSTEM, Method::POST, PROVISION_PATH, Some(&body))
        .await?;
    expect(
        &r,
        &[StatusCode::CREATED, StatusCode::OK],
        &format!("provisioning {name}"),
    )
}

async fn content(node: &NodeTarget, http: &Http, id: Uuid, name: &str) -> anyhow::Result<()> {
    let marker = "/v1/configurations/demo.seeded";
    let r = node
        .call(http, id, OWNER, Method::GET, marker, None)
        .await?;
    if r.status == StatusCode::OK {
        return Ok(());
    }
    let mail = slug(name);
    for (subject, role) in [("demo-developer", "developer"), ("demo-viewer", "viewer")] {
        let body = wire(&CreateMember {
            subject: subject.to_owned(),
            email: format!("{role}@{mail}.example"),
            display_name: format!("Demo {role}"),
            role: role.to_owned(),
        })?;
        let r = node
            .call(http, id, OWNER, Method::POST, "/v1/members", Some(&body))
            .await?;
        // 409: the member exists from an earlier, interrupted seed.
        expect(
            &r,
            &[StatusCode::CREATED, StatusCode::CONFLICT],
            "adding a member",
        )?;
    }
    let conn = wire(&CreateConnection {
        connector_id: "slack".to_owned(),
        name: "Team Slack".to_owned(),
        enabled_actions: vec!["post_message".to_owned()],
        credentials: object(json!({ "token": "xoxb-demo-not-a-real-token" }))?,
    })?;
    let r = node
        .call(
            http,
            id,
            OWNER,
            Method::POST,
            "/v1/connections",
            Some(&conn),
        )
        .await?;
    expect(&r, &[StatusCode::CREATED], "creating a connection")?;
    let connection: Connection = serde_json::from_value(r.body)?;
    let wf = wire(&CreateWorkflow {
        name: "Announce new deals".to_owned(),
        description: "Posts every new deal to #sales".to_owned(),
        definition: object(json!({
            "trigger": { "type": "api" },
            "steps": [
                { "id": "format", "type": "transform",
                  "output": { "text": "New deal {{trigger.deal}}: {{trigger.amount}} USD" } },
                { "id": "announce", "type": "action", "action": "slack.post_message",
                  "input": { "channel": "#sales", "text": "{{steps.format.output.text}}" },
                  "retries": { "max": 2, "backoff_seconds": 1 } }
            ],
        }))?,
        connection_id: Some(connection.id),
        enabled: true,
    })?;
    let r = node
        .call(http, id, OWNER, Method::POST, "/v1/workflows", Some(&wf))
        .await?;
    expect(&r, &[StatusCode::CREATED], "creating a workflow")?;
    let wf_id = serde_json::from_value::<Workflow>(r.body)?.id;
    let run = wire(&RunWorkflow {
        input: object(json!({ "deal": "ACME-42", "amount": 12000 }))?,
    })?;
    let r = node
        .call(
            http,
            id,
            OWNER,
            Method::POST,
            &format!("/v1/workflows/{wf_id}/runs"),
            Some(&run),
        )
        .await?;
    expect(&r, &[StatusCode::CREATED], "running the workflow")?;
    for (key, value) in [
        (
            "branding",
            json!({ "primary_color": "#0b5fff", "logo": "https://example.com/logo.svg" }),
        ),
        ("notifications", json!({ "email": true, "digest": "daily" })),
        ("demo.seeded", json!(true)),
    ] {
        let r = node
            .call(
                http,
                id,
                OWNER,
                Method::PUT,
                &format!("/v1/configurations/{key}"),
                Some(&wire(&PutConfiguration { value })?),
            )
            .await?;
        expect(
            &r,
            &[StatusCode::OK, StatusCode::CREATED],
            "writing a configuration",
        )?;
    }
    Ok(())
}

async fn api_key(store: &Store, state: &mut State, tenant: Uuid) -> anyhow::Result<String> {
    if let Some(saved) = state.api_key(tenant) {
        let live = store.list_api_keys(tenant).await?;
        let prefix = split_api_key(saved).map(|(p, _)| p.to_owned());
        if live
            .iter()
            .any(|k| Some(&k.prefix) == prefix.as_ref() && k.revoked_at.is_none())
        {
            return Ok(saved.to_owned());
        }
    }
    let (_, plaintext) = store
        .create_api_key(ACTOR, tenant, "demo key (residency up)", "developer", None)
        .await
        .map_err(|e| anyhow::anyhow!("creating a demo api key: {e}"))?;
    state.set_api_key(tenant, plaintext.clone())?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_and_distinct() {
        let eu = RegionId::new("eu").unwrap();
        assert_eq!(tenant_name(&eu, Tier::Scale), "Demo Europe Scale");
        let names: std::collections::HashSet<_> =
            TIERS.iter().map(|t| tenant_name(&eu, *t)).collect();
        assert_eq!(names.len(), 4);
        assert_eq!(slug("Demo Europe Scale"), "demo-europe-scale");
    }
}
