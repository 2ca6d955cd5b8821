//! Provisioning a tenant on its home region's node: `POST /internal/v1/provision` on a
//! healthy upstream of that region only, with a system assertion (`role = "system"`,
//! `sub = "system:<actor>"`, `tid` = the tenant) signed with the region's key.
//!
//! The node's endpoint is idempotent (201 created, 200 already there), so a failed attempt is
//! simply retried. Failures are reported without internal detail: 503 when no upstream of the
//! region can be reached (or it timed out), 502 when the node answered with an error.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_config::assertion::now_secs;
use residency_config::headers::{ASSERTION, REQUEST_ID};
use residency_config::{RegionId, TenantId};
use serde_json::Value;

use super::AdminError;
use crate::proxy::upstream::Regions;

/// The node's internal provisioning path.
pub const PROVISION_PATH: &str = "/internal/v1/provision";

/// The first owner member, passed through to the node.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// The owner's subject (the `sub` of their tokens).
    pub subject: String,
    /// Their email.
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Calls region nodes' provisioning endpoint.
pub struct Provisioner {
    timeout: Duration,
    connect_timeout: Duration,
    /// Recorded as the assertion's subject `system:<actor>`.
    actor: String,
}

impl Provisioner {
    /// A provisioner; each call uses a client of the home region's TLS settings (CA and
    /// client certificate) without a pool, since provisioning is rare.
    #[must_use]
    pub fn new(timeout: Duration, connect_timeout: Duration, actor: String) -> Self {
        Self {
            timeout,
            connect_timeout,
            actor,
        }
    }

    /// Provisions `tenant` (named `name`) in `region`, trying each available upstream of that
    /// region once.
    ///
    /// # Errors
    /// [`AdminError::Unavailable`] when no upstream of the region could be reached in time,
    /// [`AdminError::BadGateway`] when the node answered with an error.
    pub async fn provision(
        &self,
        regions: &Regions,
        region: &RegionId,
        tenant: TenantId,
        name: &str,
        owner: Option<&Owner>,
        request_id: &HeaderValue,
    ) -> Result<(), AdminError> {
        let region = regions.get(region).ok_or_else(|| AdminError::Unavailable {
            detail: format!("region {region} is not configured in this gateway"),
            retry_after: 60,
            tenant_id: None,
        })?;
        let (assertion, _) = region
            .signer()
            .mint_system(tenant, &self.actor, now_secs())
            .map_err(|e| AdminError::Internal(format!("minting a system assertion: {e}")))?;
        let assertion = HeaderValue::try_from(assertion)
            .map_err(|e| AdminError::Internal(format!("assertion header: {e}")))?;
        let mut body = serde_json::json!({ "name": name });
        if let Some(o) = owner {
            body["owner"] = serde_json::json!({
                "subject": o.subject,
                "email": o.email,
                "display_name": o.display_name.clone().unwrap_or_default(),
            });
        }
        let body = Bytes::from(body.to_string());
        let unavailable = |detail: String| AdminError::Unavailable {
            detail,
            retry_after: region.retry_after_secs(),
            tenant_id: None,
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(region.tls().connector(self.connect_timeout));
        let mut last = unavailable(format!(
            "no healthy node in region {} to provision on; retry later",
            region.id()
        ));
        // Each available upstream at most once; never another region's.
        for _ in 0..region.upstreams().len() {
            let Some(upstream) = region.pick() else {
                break;
            };
            let uri = upstream
                .uri_for(Some(&http::uri::PathAndQuery::from_static(PROVISION_PATH)))
                .map_err(|e| AdminError::Internal(format!("provisioning uri: {e}")))?;
            let req = Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header(CONTENT_TYPE, "application/json")
                .header(ASSERTION, assertion.clone())
                .header(REQUEST_ID, request_id.clone())
                .body(Full::new(body.clone()))
                .map_err(|e| AdminError::Internal(format!("provisioning request: {e}")))?;
            let call = async {
                let resp = client.request(req).await?;
                let status = resp.status();
                let bytes = resp.into_body().collect().await?.to_bytes();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, bytes))
            };
            match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok((status, _))) if status.is_success() => {
                    tracing::info!(tenant = %tenant, region = %region.id(), status = status.as_u16(), "tenant provisioned");
                    return Ok(());
                }
                Ok(Ok((status, bytes))) => {
                    // The node's problem detail is client-safe by construction; keep it short.
                    let detail = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| {
                            v["detail"]
                                .as_str()
                                .map(|d| d.chars().take(200).collect::<String>())
                        })
                        .unwrap_or_default();
                    tracing::warn!(tenant = %tenant, region = %region.id(), status = status.as_u16(), "provisioning refused by the node");
                    return Err(AdminError::BadGateway {
                        detail: format!(
                            "the home region node answered {} to provisioning{}{detail}",
                            status.as_u16(),
                            if detail.is_empty() { "" } else { ": " },
                        ),
                        tenant_id: None,
                    });
                }
                Ok(Err(e)) => {
                    region.eject(upstream);
                    tracing::warn!(tenant = %tenant, region = %region.id(), error = %e, "provisioning call failed; upstream ejected");
                    last = unavailable(format!(
                        "the home region {} could not be reached to provision; retry later",
                        region.id()
                    ));
                }
                Err(_) => {
                    tracing::warn!(tenant = %tenant, region = %region.id(), "provisioning call timed out");
                    last = unavailable(format!(
                        "the home region {} did not answer provisioning in time; retry later",
                        region.id()
                    ));
                }
            }
        }
        Err(last)
    }
}
