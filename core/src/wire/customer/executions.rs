//! `/v1/executions`: runs of workflows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::JsonObject;

/// An execution (a run of a workflow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Execution {
    /// Its id.
    pub id: Uuid,
    /// The workflow run.
    pub workflow_id: Uuid,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// What started it (`api`).
    pub trigger: String,
    /// The run's input.
    #[schema(value_type = Object)]
    pub input: JsonObject,
    /// The subject that started it.
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// When a worker first started it; `null` while it has not.
    #[serde(default)]
    #[schema(required = true)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished; `null` while queued or running.
    #[schema(required = true)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed or stopped (the failing step and its reason); `null` otherwise. Never
    /// carries a credential.
    #[serde(default)]
    #[schema(required = true)]
    pub error: Option<String>,
    /// Its log lines, in order: only in the answers of `GET /v1/executions/{id}` and
    /// `POST /v1/workflows/{id}/runs`, and only for a caller with `executions.logs.read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<ExecutionLog>>,
}

/// One log line of an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionLog {
    /// Position, from 1.
    pub seq: i32,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// Text.
    pub message: String,
}
