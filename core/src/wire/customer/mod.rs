//! The customer API (`/v1`) of a region node, as the gateway's clients see it: one module per
//! resource with its response type and the request bodies a client sends, and the list
//! envelope [`Page`].
//!
//! Timestamps are RFC 3339 strings, ids are UUIDs (connectors and configurations are named by
//! text keys). Free-form JSON (`definition`, `input`, `value`, an audit event's `detail`) is
//! data, not contract.

mod account;
mod audit_events;
mod configurations;
mod connections;
mod connectors;
mod executions;
mod members;
mod ownership;
mod roles;
mod webhooks;
mod workflows;

pub use account::{Me, Usage, UsageCounts};
pub use audit_events::AuditEvent;
pub use configurations::{Configuration, PutConfiguration};
pub use connections::{ActionResult, Connection, CreateConnection, InvokeAction, UpdateConnection};
pub use connectors::Connector;
pub use executions::{Execution, ExecutionLog};
pub use members::{CreateMember, Member, UpdateMember};
pub use ownership::{CreateOwnershipTransfer, OwnershipTransfer, TransferStatus};
pub use roles::{CreateRole, Role, UpdateRole};
pub use webhooks::{
    CreateWebhook, CreatedWebhook, UpdateWebhook, Webhook, WebhookAttempt, WebhookDelivery,
    WebhookEvent, DELIVERY_HEADER, EVENT_HEADER, EVENT_TYPES, SECRET_PREFIX, SIGNATURE_HEADER,
};
pub use workflows::{CreateWorkflow, RunWorkflow, UpdateWorkflow, Workflow};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One page of a list: `items` in the list's order and the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page (at most `limit`).
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A JSON object of free-form data.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;
