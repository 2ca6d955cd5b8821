//! The customer API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the `residency_core::wire::customer` types.
//!
//! Paths are the public ones (`/v1/...`), as a client reaches them through the gateway: the
//! document describes the gateway's authentication (a bearer JWT or an API key) and the
//! refusals the gateway adds in front of every node (400, 401, 403, 404, 429, 502, 503, 504;
//! 413 for bodies). Every error is `application/problem+json` ([`residency_core::wire::ProblemDetails`], schema `Problem`).
//! `/internal`, `/healthz`, `/readyz` and `/metrics` are not part of it.
//!
//! The document is checked in at `docs/openapi/customer.json` (the gateway serves that file at
//! `GET /openapi.json`); the test below fails when it is not current.

use residency_core::wire::customer::{
    AuditEvent, Configuration, Connection, Connector, CreateConnection, CreateMember,
    CreateOwnershipTransfer, CreateRole, CreateWebhook, CreateWorkflow, CreatedWebhook, Execution,
    ExecutionLog, Me, Member, OwnershipTransfer, Page as PageOf, PutConfiguration, Role,
    RunWorkflow, TransferStatus, UpdateConnection, UpdateMember, UpdateRole, UpdateWebhook,
    UpdateWorkflow, Usage, UsageCounts, Webhook, WebhookAttempt, WebhookDelivery, WebhookEvent,
    Workflow,
};
use residency_core::wire::ProblemDetails;
use residency_http::PROBLEM_JSON;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use standard::Standard;

use super::{
    account, audit_events, configurations, connections, executions, members, ownership, roles,
    webhooks, workflows,
};

/// The customer API document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Residency Gateway customer API",
        description = "The customer API of Residency Gateway. Every request is authenticated at \
                       the gateway and served by a node of the tenant's home region only. Lists \
                       are keyset-paginated (`limit`, `cursor`, answering `items` and \
                       `next_cursor`); every error is RFC 9457 `application/problem+json` whose \
                       `instance` and `request_id` equal the `x-request-id` response header.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        account::me,
        account::usage,
        connections::create,
        connections::update,
        connections::invoke,
        workflows::create,
        workflows::update,
        workflows::run,
        executions::cancel,
        executions::retry,
        configurations::put,
        members::create,
        members::update,
        roles::create,
        roles::update,
        ownership::list,
        ownership::create,
        ownership::accept,
        ownership::decline,
        ownership::cancel,
        webhooks::create,
        webhooks::update,
        webhooks::ping,
        webhooks::deliveries,
    ),
    components(schemas(
        ProblemDetails,
        PageOf<Connector>,
        PageOf<Connection>,
        PageOf<Workflow>,
        PageOf<Execution>,
        PageOf<Configuration>,
        PageOf<Member>,
        PageOf<Role>,
        PageOf<AuditEvent>,
        PageOf<OwnershipTransfer>,
        PageOf<Webhook>,
        PageOf<WebhookDelivery>,
        Me,
        Usage,
        UsageCounts,
        Connector,
        Connection,
        CreateConnection,
        UpdateConnection,
        Workflow,
        CreateWorkflow,
        UpdateWorkflow,
        RunWorkflow,
        Execution,
        ExecutionLog,
        Configuration,
        PutConfiguration,
        Member,
        CreateMember,
        UpdateMember,
        Role,
        CreateRole,
        UpdateRole,
        AuditEvent,
        OwnershipTransfer,
        CreateOwnershipTransfer,
        TransferStatus,
        Webhook,
        CreatedWebhook,
        CreateWebhook,
        UpdateWebhook,
        WebhookDelivery,
        WebhookAttempt,
        WebhookEvent,
    )),
    modifiers(&Gateway),
    security(("bearer" = []), ("api_key" = [])),
    tags(
        (name = "account", description = "The caller and its tenant"),
        (name = "connectors", description = "The shared connector catalogue"),
        (name = "connections", description = "Connections to connectors; credentials are write-only"),
        (name = "workflows", description = "Workflow definitions and runs"),
        (name = "executions", description = "Runs of workflows"),
        (name = "configurations", description = "Key to JSON settings"),
        (name = "members", description = "People with a role in this customer"),
        (name = "roles", description = "System and custom roles"),
        (name = "audit", description = "The append-only audit trail"),
        (name = "ownership", description = "Handing a customer's ownership to another member"),
        (name = "webhooks", description = "Signed event deliveries to the customer's https endpoints, from its home region only"),
    ),
)]
pub(crate) struct CustomerApi;

/// The refusals of the gateway in front of every operation, and the problem+json body of
/// every error response.
struct Gateway;

/// What the gateway answers for any operation: status, the name of the shared response in
/// `components.responses`, and its description.
const GATEWAY_REFUSALS: [(&str, &str, &str); 9] = [
    (
        "400",
        "BadRequest",
        "A malformed request: a `.` or `..` path segment, or a value the API cannot store (a NUL character)",
    ),
    (
        "401",
        "Unauthenticated",
        "No credential, or an invalid, expired or revoked one",
    ),
    (
        "403",
        "Forbidden",
        "The credential lacks a permission of the operation, names a reserved identity, or its tenant is suspended; or the request is on another customer's custom domain (`domain_tenant_mismatch`)",
    ),
    (
        "404",
        "TenantNotFound",
        "The credential's tenant does not exist (or was deleted)",
    ),
    (
        "421",
        "Misdirected",
        "The TLS server name and the request's host name different hostnames, one of them a customer's custom domain; send the request on a connection made for its host",
    ),
    (
        "429",
        "RateLimited",
        "The tenant's rate limit is exhausted; retry after `Retry-After` seconds",
    ),
    (
        "502",
        "BadGateway",
        "The home region's node could not be reached",
    ),
    (
        "503",
        "Unavailable",
        "The tenant is being provisioned or moved, its region has no healthy node, the directory is unavailable, or the region's database is; retry after `Retry-After` seconds",
    ),
    (
        "504",
        "GatewayTimeout",
        "The home region's node did not answer in time",
    ),
];

/// The gateway's refusal of a body over its size limit, for operations with a body.
const TOO_LARGE: (&str, &str, &str) = ("413", "PayloadTooLarge", "The body is over the size limit");

/// The resources' standard operations (list, get, delete), declared next to each resource.
const STANDARD: [&Standard; 9] = [
    &account::CONNECTORS_DOC,
    &connections::DOC,
    &workflows::DOC,
    &executions::DOC,
    &configurations::DOC,
    &members::DOC,
    &roles::DOC,
    &audit_events::DOC,
    &webhooks::DOC,
];

impl Modify for Gateway {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for resource in STANDARD {
            resource.add_to(doc);
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT of a configured issuer: `Authorization: Bearer <token>`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An API key `rk_<prefix>_<secret>` in `x-api-key` (or `Authorization: ApiKey <key>`)",
            ))),
        );
        for (status, name, description) in GATEWAY_REFUSALS.into_iter().chain([TOO_LARGE]) {
            components
                .responses
                .insert(name.to_owned(), RefOr::T(problem(status, description)));
        }
        for (path, item) in &mut doc.paths.paths {
            for op in standard::operations(item) {
                let body = op.request_body.is_some().then_some(TOO_LARGE);
                let node = node_refusals(path, op);
                let responses = &mut op.responses.responses;
                for (status, description) in node {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::T(problem(status, description)));
                }
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(r) = response {
                        if status.starts_with(['4', '5']) && r.content.is_empty() {
                            *r = problem(status, &r.description);
                        }
                    }
                }
                for (status, name, _) in GATEWAY_REFUSALS.into_iter().chain(body) {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

/// The node's refusals that follow from an operation's shape, unless the operation documents
/// its own: a list (a `limit` parameter) refuses a malformed query or cursor (400) and a bad
/// `limit` or filter (422); a path naming one row refuses a key that names none (404); a
/// required JSON body ([`super::extract::Body`]) is refused when it is not JSON (400), not
/// `application/json` (415) or has an invalid field (422).
fn node_refusals(path: &str, op: &Operation) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let is_list = op.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => p.name == "limit",
        RefOr::Ref(_) => false,
    });
    if is_list {
        out.push((
            "400",
            "A malformed query parameter, or a cursor not from this list",
        ));
        out.push((
            "422",
            "`limit` outside 1-500, or an invalid filter value (`field` names it)",
        ));
    }
    if path.contains('{') {
        out.push((
            "404",
            "Nothing of this key exists for the tenant (another tenant's rows included)",
        ));
    }
    if let Some(body) = &op.request_body {
        out.push(("400", "The body is not valid JSON"));
        out.push(("422", "A field is missing or invalid (`field` names it)"));
        if matches!(body, RefOr::T(b) if b.required == Some(Required::True)) {
            out.push(("415", "The body is not `application/json`"));
        }
    }
    out
}

/// An error response: problem+json, with the headers that go with its status.
fn problem(status: &str, description: &str) -> Response {
    let mut b = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    let integer = || {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(0))
            .build()
    };
    let string = || {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .build()
    };
    if status == "429" || status == "503" {
        b = b.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(integer()))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    if status == "401" {
        b = b.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(string()))
                .description(Some("`Bearer realm=\"residency\"`, with `error=\"invalid_token\"` for a refused credential"))
                .build(),
        );
    }
    b.build()
}

/// The document as checked in: pretty JSON and a final newline.
///
/// # Panics
/// Never: the document is plain data.
#[must_use]
pub fn customer_json() -> String {
    let mut out = CustomerApi::openapi()
        .to_pretty_json()
        .expect("an OpenAPI document serializes");
    out.push('\n');
    out
}

pub(crate) mod standard;
#[cfg(test)]
mod tests;
