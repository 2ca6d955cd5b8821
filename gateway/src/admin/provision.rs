//! Internal calls to a tenant's home region node, on a healthy upstream of that region only,
//! with a system assertion (`role = "system"`, `sub = "system:<actor>"`, `tid` = the tenant)
//! signed with the region's key: provisioning (`POST /internal/v1/provision`) and the role
//! check behind API-key creation (`POST /internal/v1/roles/check`).
//!
//! The provisioning endpoint is idempotent (201 created, 200 already there), so a failed
//! attempt is simply retried. Failures are reported without internal detail: 503 when no
//! upstream of the region can be reached (or it timed out), 502 when the node answered with an
//! error.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_core::assertion::now_secs;
use residency_core::headers::{ASSERTION, REQUEST_ID};
use residency_core::wire::provision::{
    KeyRevoked, KeyRevokedRecorded, Owner, ProvisionRequest, ProvisionResponse, RoleCheckRequest,
    RoleCheckResponse, KEY_REVOKED_PATH, PROVISION_PATH, ROLE_CHECK_PATH,
};
use residency_core::wire::ProblemDetails;
use residency_core::{RegionId, TenantId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::AdminError;
use crate::proxy::upstream::Regions;

/// One kind of internal call: where it goes, how it is named in messages, and the problem
/// kind of a refusal.
#[derive(Clone, Copy)]
pub(crate) struct NodeCall {
    /// The node's path.
    pub(crate) path: &'static str,
    /// How the call is named in messages ("the move's copy").
    pub(crate) what: &'static str,
    /// The problem kind of a node's refusal.
    pub(crate) kind: &'static str,
}

/// Calls region nodes' provisioning endpoint.
pub(crate) struct Provisioner {
    timeout: Duration,
    connect_timeout: Duration,
    /// Recorded as the assertion's subject `system:<actor>`.
    actor: String,
}

impl Provisioner {
    /// A provisioner; each call uses a client of the home region's TLS settings (CA and
    /// client certificate) without a pool, since provisioning is rare.
    #[must_use]
    pub(crate) fn new(timeout: Duration, connect_timeout: Duration, actor: String) -> Self {
        Self {
            timeout,
            connect_timeout,
            actor,
        }
    }

    /// How long one internal call may take (`admin.provision_timeout`).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Provisions `tenant` (named `name`) in `region`, trying each available upstream of that
    /// region once.
    ///
    /// # Errors
    /// [`AdminError::Unavailable`] when no upstream of the region could be reached in time,
    /// [`AdminError::BadGateway`] when the node answered with an error.
    pub(crate) async fn provision(
        &self,
        regions: &Regions,
        region: &RegionId,
        tenant: TenantId,
        name: &str,
        owner: Option<&Owner>,
        request_id: &HeaderValue,
    ) -> Result<(), AdminError> {
        let body = ProvisionRequest {
            name: name.to_owned(),
            owner: owner.cloned(),
        };
        let call = NodeCall {
            path: PROVISION_PATH,
            what: "provisioning",
            kind: "provisioning_failed",
        };
        let (status, answer): (_, ProvisionResponse) = self
            .call(regions, region, tenant, &call, &body, request_id)
            .await?;
        tracing::info!(tenant = %tenant, region = %region, status = status.as_u16(), created = answer.created, "tenant provisioned");
        Ok(())
    }

    /// Whether the role `name` exists for `tenant` on its home region's node (system or
    /// custom), asked at [`ROLE_CHECK_PATH`]. A tenant not (yet) provisioned there has no
    /// roles.
    ///
    /// # Errors
    /// As [`Provisioner::provision`]: 503 when the region cannot be reached, 502 when the node
    /// answers with an error or an unexpected body.
    pub(crate) async fn role_exists(
        &self,
        regions: &Regions,
        region: &RegionId,
        tenant: TenantId,
        name: &str,
        request_id: &HeaderValue,
    ) -> Result<bool, AdminError> {
        let call = NodeCall {
            path: ROLE_CHECK_PATH,
            what: "the role check",
            kind: "role_check_failed",
        };
        let body = RoleCheckRequest {
            name: name.to_owned(),
        };
        let (_, answer): (_, RoleCheckResponse) = self
            .call(regions, region, tenant, &call, &body, request_id)
            .await?;
        Ok(answer.exists)
    }

    /// Records a revoked API key in `tenant`'s home region ([`KEY_REVOKED_PATH`]): its audit
    /// event and the `api_key.revoked` webhook event. Idempotent on the node.
    ///
    /// # Errors
    /// As [`Provisioner::provision`].
    pub(crate) async fn key_revoked(
        &self,
        regions: &Regions,
        region: &RegionId,
        tenant: TenantId,
        body: &KeyRevoked,
        request_id: &HeaderValue,
    ) -> Result<KeyRevokedRecorded, AdminError> {
        let call = NodeCall {
            path: KEY_REVOKED_PATH,
            what: "the key revocation event",
            kind: "key_revocation_event_failed",
        };
        let (_, answer) = self
            .call(regions, region, tenant, &call, body, request_id)
            .await?;
        Ok(answer)
    }

    /// A tenant move's internal call (`residency_core::wire::moves::node`) on `region`, as
    /// [`Provisioner::call`].
    ///
    /// # Errors
    /// 503 when the region cannot be reached, 502 when its node refuses.
    pub(crate) async fn move_call<B: Serialize, R: DeserializeOwned>(
        &self,
        regions: &Regions,
        region: &RegionId,
        tenant: TenantId,
        call: &NodeCall,
        body: &B,
        request_id: &HeaderValue,
    ) -> Result<R, AdminError> {
        let (_, answer) = self
            .call(regions, region, tenant, call, body, request_id)
            .await?;
        Ok(answer)
    }

    /// Whether a node of `region` answers `GET /readyz` with 200 now (each available
    /// upstream tried once): a move checks its target and source this way before it records
    /// anything, rather than trusting the last periodic health check.
    ///
    /// # Errors
    /// 503 naming the region when none does.
    pub(crate) async fn ready(
        &self,
        regions: &Regions,
        region: &RegionId,
        which: &str,
    ) -> Result<(), AdminError> {
        let unavailable = AdminError::Unavailable {
            detail: format!(
                "the {which} region {region} has no healthy node; nothing was changed, retry later"
            ),
            retry_after: 5,
            tenant_id: None,
        };
        let Some(region) = regions.get(region) else {
            return Err(unavailable);
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(region.tls().connector(self.connect_timeout));
        for _ in 0..region.upstreams().len() {
            let Some(upstream) = region.pick() else {
                break;
            };
            let Ok(uri) = upstream.uri_for(Some(&http::uri::PathAndQuery::from_static("/readyz")))
            else {
                continue;
            };
            let Ok(req) = Request::builder()
                .method(Method::GET)
                .uri(uri)
                .body(Full::new(Bytes::new()))
            else {
                continue;
            };
            match tokio::time::timeout(self.timeout, client.request(req)).await {
                Ok(Ok(resp)) if resp.status() == StatusCode::OK => return Ok(()),
                Ok(Err(_)) => region.eject(upstream),
                _ => {}
            }
        }
        Err(unavailable)
    }

    /// POSTs `body` to `call.path` on one healthy upstream of `region` with a system
    /// assertion for `tenant`, trying each available upstream of that region (never another
    /// region's) once. Returns the first successful answer, parsed (a 502 when it is not of
    /// the contract's shape).
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        regions: &Regions,
        region: &RegionId,
        tenant: TenantId,
        call: &NodeCall,
        body: &B,
        request_id: &HeaderValue,
    ) -> Result<(StatusCode, R), AdminError> {
        let (status, bytes) = self
            .send(regions, region, tenant, call, body, request_id)
            .await?;
        let answer = serde_json::from_slice(&bytes).map_err(|e| {
            tracing::warn!(tenant = %tenant, error = %e, "{} answer not understood", call.what);
            AdminError::BadGateway {
                kind: call.kind,
                detail: format!(
                    "the home region node answered {} without an answer",
                    call.what
                ),
                tenant_id: None,
            }
        })?;
        Ok((status, answer))
    }

    /// [`Provisioner::call`] before parsing: the status and body of the first success.
    async fn send<B: Serialize>(
        &self,
        regions: &Regions,
        region: &RegionId,
        tenant: TenantId,
        call: &NodeCall,
        body: &B,
        request_id: &HeaderValue,
    ) -> Result<(StatusCode, Bytes), AdminError> {
        let NodeCall { path, what, kind } = *call;
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
        let body = Bytes::from(
            serde_json::to_vec(body)
                .map_err(|e| AdminError::Internal(format!("{what} body: {e}")))?,
        );
        let unavailable = |detail: String| AdminError::Unavailable {
            detail,
            retry_after: region.retry_after_secs(),
            tenant_id: None,
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(region.tls().connector(self.connect_timeout));
        let mut last = unavailable(format!(
            "no healthy node in region {} for {what}; retry later",
            region.id()
        ));
        for _ in 0..region.upstreams().len() {
            let Some(upstream) = region.pick() else {
                break;
            };
            let uri = upstream
                .uri_for(Some(&http::uri::PathAndQuery::from_static(path)))
                .map_err(|e| AdminError::Internal(format!("{what} uri: {e}")))?;
            let req = Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header(CONTENT_TYPE, "application/json")
                .header(ASSERTION, assertion.clone())
                .header(REQUEST_ID, request_id.clone())
                .body(Full::new(body.clone()))
                .map_err(|e| AdminError::Internal(format!("{what} request: {e}")))?;
            let call = async {
                let resp = client.request(req).await?;
                let status = resp.status();
                let bytes = resp.into_body().collect().await?.to_bytes();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, bytes))
            };
            match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok((status, bytes))) if status.is_success() => return Ok((status, bytes)),
                Ok(Ok((status, bytes))) => {
                    // The node's problem detail is client-safe by construction; keep it short.
                    let detail = serde_json::from_slice::<ProblemDetails>(&bytes)
                        .map(|p| p.detail.chars().take(200).collect::<String>())
                        .unwrap_or_default();
                    tracing::warn!(tenant = %tenant, region = %region.id(), status = status.as_u16(), "{what} refused by the node");
                    return Err(AdminError::BadGateway {
                        kind,
                        detail: format!(
                            "the home region node answered {} to {what}{}{detail}",
                            status.as_u16(),
                            if detail.is_empty() { "" } else { ": " },
                        ),
                        tenant_id: None,
                    });
                }
                Ok(Err(e)) => {
                    region.eject(upstream);
                    tracing::warn!(tenant = %tenant, region = %region.id(), error = %e, "{what} call failed; upstream ejected");
                    last = unavailable(format!(
                        "the home region {} could not be reached for {what}; retry later",
                        region.id()
                    ));
                }
                Err(_) => {
                    tracing::warn!(tenant = %tenant, region = %region.id(), "{what} call timed out");
                    last = unavailable(format!(
                        "the home region {} did not answer {what} in time; retry later",
                        region.id()
                    ));
                }
            }
        }
        Err(last)
    }
}
