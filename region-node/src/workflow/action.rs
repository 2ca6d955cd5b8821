//! Resolving one action of one connection for a call: the checks shared by the worker's
//! `action` steps and `POST /v1/connections/{id}/actions/{action}/invoke`.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::connector::ActionSpec;
use crate::crypto::CredentialCipher;
use crate::db::tenant_tx::Tx;
use crate::error::ApiError;
use crate::rbac::Permission;

/// An action ready to call: what to call and with which (decrypted) credentials.
pub(crate) struct Ready {
    /// The action.
    pub(crate) spec: ActionSpec,
    /// The connection's credentials, decrypted. Never logged, never returned.
    pub(crate) credentials: Map<String, Value>,
}

/// Checks, inside the caller's (or the run's) tenant transaction, that the principal holds
/// `connections.use`, that the connection exists for this tenant (RLS: another tenant's is
/// invisible, a 404 like a missing one), that `action` is an action of its connector
/// (`post_message`, or qualified `slack.post_message`) and that it is enabled on the
/// connection; then decrypts the credentials.
///
/// # Errors
/// 403 without `connections.use` or for an action not enabled; 404 for the connection or
/// an unknown action.
pub(crate) async fn ready(
    tx: &Tx<'_>,
    cipher: &CredentialCipher,
    connection: Uuid,
    action: &str,
) -> Result<Ready, ApiError> {
    tx.require(Permission::ConnectionsUse)?;
    let row = tx
        .query_opt(
            "SELECT c.connector_id, c.enabled_actions, c.credentials, k.base_url \
             FROM connections c JOIN connectors k ON k.id = c.connector_id WHERE c.id = $1",
            &[&connection],
        )
        .await?
        .ok_or(ApiError::NotFound("connection"))?;
    let connector: String = row.get("connector_id");
    let name = match action.split_once('.') {
        Some((c, a)) if c == connector => a,
        Some((c, _)) => {
            return Err(ApiError::Forbidden(format!(
                "action {action} is of connector {c}, but the connection is to {connector}"
            )))
        }
        None => action,
    };
    let spec = tx
        .query_opt(
            "SELECT method, path, placement FROM connector_actions \
             WHERE connector_id = $1 AND action = $2",
            &[&connector, &name],
        )
        .await?
        .ok_or(ApiError::NotFound("action"))?;
    let enabled: Vec<String> = row.get("enabled_actions");
    if !enabled.iter().any(|a| a == name) {
        return Err(ApiError::Forbidden(format!(
            "action {connector}.{name} is not enabled on this connection"
        )));
    }
    let blob: Vec<u8> = row.get("credentials");
    let plain = cipher
        .open(tx.tenant(), connection, &blob)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("connection credentials: {e}")))?;
    let credentials: Map<String, Value> = serde_json::from_slice(&plain).map_err(|_| {
        ApiError::Unexpected(anyhow::anyhow!(
            "connection credentials are not a json object"
        ))
    })?;
    Ok(Ready {
        spec: ActionSpec {
            connector: connector.clone(),
            action: name.to_owned(),
            method: spec.get("method"),
            path: spec.get("path"),
            placement: spec.get("placement"),
            base_url: row.get("base_url"),
        },
        credentials,
    })
}

/// Checks at `POST`/`PATCH /v1/workflows` that an action step's connection exists for this
/// tenant and that its action is one of the connector's (whether it is enabled is checked
/// when the step runs, so enabling it later needs no edit of the workflow).
///
/// # Errors
/// 422 naming `field`.
pub(crate) async fn check_step(
    tx: &Tx<'_>,
    field: &str,
    connection: Option<Uuid>,
    action: &str,
) -> Result<(), ApiError> {
    let Some(connection) = connection else {
        return Err(ApiError::invalid(
            format!("{field}.connection_id"),
            "required: the step names no connection and the workflow has none",
        ));
    };
    let connector: String = tx
        .query_opt(
            "SELECT connector_id FROM connections WHERE id = $1",
            &[&connection],
        )
        .await?
        .ok_or_else(|| ApiError::invalid(format!("{field}.connection_id"), "no such connection"))?
        .get(0);
    let name = match action.split_once('.') {
        Some((c, a)) if c == connector => a,
        Some((c, _)) => {
            return Err(ApiError::invalid(
                format!("{field}.action"),
                format!("{c} is not the connection's connector ({connector})"),
            ))
        }
        None => action,
    };
    let known = tx
        .query_opt(
            "SELECT 1 FROM connector_actions WHERE connector_id = $1 AND action = $2",
            &[&connector, &name],
        )
        .await?;
    if known.is_none() {
        return Err(ApiError::invalid(
            format!("{field}.action"),
            format!("{connector} has no action {name:?}"),
        ));
    }
    Ok(())
}
