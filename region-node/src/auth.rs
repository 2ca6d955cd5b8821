//! Verification of the gateway's internal assertion on every non-health request.
//!
//! The tenant, subject and role of a request come from the verified assertion only: never
//! from the path, query, body or any other header. Missing or invalid → 401; addressed to
//! another region → 421; the tenant's existence in this region is checked later, inside the
//! tenant transaction (404).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use residency_core::assertion::{
    is_reserved_identity, AssertionClaims, AssertionError, Scope, SYSTEM_SUBJECT_PREFIX,
};
use residency_core::headers;
use residency_core::wire::moves::node as mv;

use crate::db::tenant_tx::Caller;
use crate::error::{current_request_id, ApiError};
use crate::state::AppState;

/// The role that marks an internal system call (provisioning); reserved for custom roles too.
pub(crate) use residency_core::assertion::SYSTEM_ROLE;

fn verify(state: &AppState, req: &Request) -> Result<AssertionClaims, ApiError> {
    let token = req
        .headers()
        .get(headers::ASSERTION)
        .ok_or(AssertionError::Missing)
        .and_then(|v| v.to_str().map_err(|_| AssertionError::Malformed));
    let result = token.and_then(|t| state.verifier.verify(t));
    match result {
        Ok(claims) => Ok(claims),
        Err(e) => {
            metrics::counter!(crate::metrics::ASSERTION_FAILURES, "reason" => e.metric_label())
                .increment(1);
            match e {
                AssertionError::Misdirected { .. } => {
                    metrics::counter!(crate::metrics::MISDIRECTED).increment(1);
                    Err(ApiError::Misdirected)
                }
                AssertionError::Missing => Err(ApiError::Unauthenticated("missing")),
                AssertionError::Expired => Err(ApiError::Unauthenticated("expired")),
                _ => Err(ApiError::Unauthenticated("invalid")),
            }
        }
    }
}

fn caller(claims: AssertionClaims) -> Caller {
    Caller {
        tenant: claims.tenant(),
        subject: claims.sub,
        role_claim: claims.role,
        request_id: current_request_id().to_string(),
    }
}

/// Middleware for `/v1`: a valid customer assertion for this region.
pub(crate) async fn customer(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let claims = verify(&state, &req)?;
    // The scope decides, not the role name; a customer-scoped assertion with a reserved
    // identity is refused as well (the gateway never mints one).
    if claims.scp != Scope::Customer || is_reserved_identity(&claims.sub, &claims.role) {
        return Err(ApiError::Forbidden(
            "system assertions cannot call the customer api".into(),
        ));
    }
    tracing::Span::current().record("tenant_id", tracing::field::display(claims.tid));
    req.extensions_mut().insert(caller(claims));
    Ok(next.run(req).await)
}

/// Middleware for `/internal`: a valid system assertion for this region.
pub(crate) async fn system(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let claims = verify(&state, &req)?;
    // Only an assertion minted with the system scope (the gateway's admin provisioner) gets
    // here: a customer-scoped one is refused whatever role or subject it names.
    if claims.scp != Scope::System
        || claims.role != SYSTEM_ROLE
        || !claims.sub.starts_with(SYSTEM_SUBJECT_PREFIX)
    {
        return Err(ApiError::Forbidden(
            "internal endpoints need a system assertion".into(),
        ));
    }
    // An export assertion (minted by the admin for a move, handed to the target node) opens
    // the export of that tenant and nothing else: not provisioning, not a purge.
    if claims.sub.starts_with(mv::EXPORT_SUBJECT_PREFIX) && req.uri().path() != mv::EXPORT_PATH {
        return Err(ApiError::Forbidden(
            "an export assertion is good for the move export only".into(),
        ));
    }
    tracing::Span::current().record("tenant_id", tracing::field::display(claims.tid));
    req.extensions_mut().insert(caller(claims));
    Ok(next.run(req).await)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthenticated("missing"))
    }
}
