//! The admin API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types of `residency_core::wire` (the same types the handlers
//! parse and answer with). Served without a token at `GET /openapi.json` (it carries no
//! data, like `/healthz`) and checked into `docs/openapi/admin.json`; a test fails when the
//! two differ (`RESIDENCY_BLESS_OPENAPI=1 cargo test -p residency-gateway openapi` rewrites
//! the file).
//!
//! Errors are `application/problem+json` bodies of the `Problem` schema; the reusable
//! responses below name what each status means on this API, and each operation lists only
//! the statuses its handler returns.

use std::sync::LazyLock;

use residency_core::wire::ProblemDetails;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToResponse};

use super::{
    audit, domains, keys, moves, org_audit, org_ownership, org_tokens, orgs, signups, tenants,
};

/// The security scheme name of the admin token in the document.
pub(crate) const ADMIN_TOKEN: &str = "admin_token";

/// The document as `GET /openapi.json` serves it and `docs/openapi/admin.json` holds it:
/// pretty JSON with a trailing newline.
pub(crate) fn document() -> &'static str {
    static DOC: LazyLock<String> = LazyLock::new(|| {
        let mut text = AdminApiDoc::openapi()
            .to_pretty_json()
            .expect("the generated document serializes");
        text.push('\n');
        text
    });
    &DOC
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Residency Gateway admin API",
        description = "Organizations, tenants (customers) provisioned in their home region, \
                       API keys, custom domains, regions, the residency audit and the signup review queue. \
                       Every `/admin/v1` call needs `Authorization: Bearer <token>`: the platform admin \
                       token (everything), or an organization token (`rog_…`: its own organization's \
                       customers, keys and domains; another organization's objects answer 404; moves, \
                       regions, the audit and signups answer 403 `platform_admin_required`); errors are \
                       RFC 9457 `application/problem+json`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::healthz,
        super::readyz,
        super::metrics_page,
        super::openapi_json,
        orgs::create_org,
        orgs::list_orgs,
        orgs::get_org,
        org_tokens::create,
        org_tokens::list,
        org_tokens::revoke,
        org_audit::search,
        org_ownership::offer,
        org_ownership::list,
        org_ownership::accept,
        org_ownership::decline,
        org_ownership::cancel,
        signups::list,
        signups::get,
        signups::approve,
        signups::reject,
        tenants::create_tenant,
        tenants::list_tenants,
        tenants::get_tenant,
        tenants::update_tenant,
        tenants::provision_tenant,
        tenants::history,
        moves::start,
        moves::get,
        moves::list,
        moves::resume,
        moves::abort,
        keys::create,
        keys::list,
        keys::revoke,
        domains::add,
        domains::list,
        domains::verify_domain,
        domains::remove,
        domains::get_domain,
        super::regions,
        audit::audit,
    ),
    components(
        schemas(ProblemDetails),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            TooManyRequests,
            Internal,
            NotImplemented,
            BadGateway,
            Unavailable,
            GatewayTimeout,
        )
    ),
    modifiers(&AdminToken),
    tags(
        (name = "operations", description = "Probes, metrics and this document; no token."),
        (name = "organizations", description = "SaaS partners owning tenants."),
        (name = "tenants", description = "Customers, provisioned on their home region's node."),
        (name = "moves", description = "Live tenant moves between regions: planned, frozen, copied node to node, verified, flipped, purged."),
        (name = "api-keys", description = "Tenant API keys (scale and enterprise tiers)."),
        (name = "domains", description = "Customers' custom domains: hostname, certificate reference, verification state."),
        (name = "regions", description = "Configured regions and their upstreams' health."),
        (name = "audit", description = "The placement and posture audit."),
        (name = "signups", description = "The signup review queue (platform admin only); submissions arrive on the public listener (`POST /v1/signups`)."),
    )
)]
struct AdminApiDoc;

/// Adds the admin token's bearer scheme.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The gateway's platform admin token (`admin.token_file` or `admin.token`), an organization admin token (`rog_<prefix>_<secret>`, `POST /admin/v1/organizations/{id}/tokens`), or a JWT of a configured issuer with `org_id` and `org_role` claims",
                    ))
                    .build(),
            ),
        );
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    }
}

// The reusable error responses: each wraps the `Problem` schema. They are never built as
// values (handlers answer with `AdminError`); they exist for the document only.

/// Malformed input: JSON syntax, an id that is not a UUID, an unknown or repeated query
/// parameter, a bad cursor. `field` names it.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct BadRequest(ProblemDetails);

/// No admin token, or not the gateway's (`WWW-Authenticate: Bearer`).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct Unauthorized(ProblemDetails);

/// A rule forbids the operation (`tier_forbids_api_keys`).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct Forbidden(ProblemDetails);

/// No such resource.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct NotFound(ProblemDetails);

/// The request conflicts with the resource's state (`domain_taken`,
/// `tenant_move_required`, `tenant_not_updatable`, `tenant_not_provisionable`).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct Conflict(ProblemDetails);

/// The body exceeds the admin API's 64 KiB.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct PayloadTooLarge(ProblemDetails);

/// The body is not sent as `application/json`.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct UnsupportedMediaType(ProblemDetails);

/// A well-formed value that is not acceptable; `field` names it.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct Unprocessable(ProblemDetails);

/// An audit is already running (`Retry-After`).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct TooManyRequests(ProblemDetails);

/// A gateway bug; the detail says nothing more.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct Internal(ProblemDetails);

/// The gateway reads a directory file: the admin API needs the Postgres directory.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct NotImplemented(ProblemDetails);

/// The home region's node answered an internal call with an error; `tenant_id` names a
/// tenant the operation left behind.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct BadGateway(ProblemDetails);

/// The directory database or the home region cannot be reached now (`Retry-After`);
/// `tenant_id` names a tenant the operation left behind, to retry with.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct Unavailable(ProblemDetails);

/// The audit did not finish in time.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct GatewayTimeout(ProblemDetails);

/// The refusals of an operation without a body on one resource named by its id (a read, a
/// list hanging off it, a revocation): 400 for an id that is not a UUID, 401, 404, 500, 501
/// and 503; 403 for an organization token without the role or on a platform-only route.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum ByIdRefusals {
    #[response(status = 400)]
    BadRequest(#[ref_response] BadRequest),
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(status = 403)]
    Forbidden(#[ref_response] Forbidden),
    #[response(status = 404)]
    NotFound(#[ref_response] NotFound),
    #[response(status = 500)]
    Internal(#[ref_response] Internal),
    #[response(status = 501)]
    NotImplemented(#[ref_response] NotImplemented),
    #[response(status = 503)]
    Unavailable(#[ref_response] Unavailable),
}

/// The refusals of an operation with a JSON body on one resource named by its id (create
/// under it, update, an action): 400 for an id that is not a UUID or a body that is not JSON,
/// 401, 404, 413 for a body over the limit, 415 for another content type, 422 naming the
/// field, 500, 501 and 503.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum BodyRefusals {
    #[response(status = 400)]
    BadRequest(#[ref_response] BadRequest),
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(status = 403)]
    Forbidden(#[ref_response] Forbidden),
    #[response(status = 404)]
    NotFound(#[ref_response] NotFound),
    #[response(status = 413)]
    PayloadTooLarge(#[ref_response] PayloadTooLarge),
    #[response(status = 415)]
    UnsupportedMediaType(#[ref_response] UnsupportedMediaType),
    #[response(status = 422)]
    Unprocessable(#[ref_response] Unprocessable),
    #[response(status = 500)]
    Internal(#[ref_response] Internal),
    #[response(status = 501)]
    NotImplemented(#[ref_response] NotImplemented),
    #[response(status = 503)]
    Unavailable(#[ref_response] Unavailable),
}

/// The refusals of a keyset-paginated list (`limit`, `cursor` and filters in the query):
/// 400 for a malformed query, 401, 422 for a value out of range, 500, 501 and 503.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum ListRefusals {
    #[response(status = 400)]
    BadRequest(#[ref_response] BadRequest),
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(status = 403)]
    Forbidden(#[ref_response] Forbidden),
    #[response(status = 422)]
    Unprocessable(#[ref_response] Unprocessable),
    #[response(status = 500)]
    Internal(#[ref_response] Internal),
    #[response(status = 501)]
    NotImplemented(#[ref_response] NotImplemented),
    #[response(status = 503)]
    Unavailable(#[ref_response] Unavailable),
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi/admin.json");

    #[test]
    fn openapi_document_is_current() {
        let generated = document();
        if std::env::var_os("RESIDENCY_BLESS_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(std::path::Path::new(FILE).parent().unwrap()).unwrap();
            std::fs::write(FILE, generated).unwrap();
            return;
        }
        let checked_in = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi/admin.json is not the document the admin API generates; regenerate \
             it with `RESIDENCY_BLESS_OPENAPI=1 cargo test -p residency-gateway openapi` and \
             commit the result"
        );
    }

    #[test]
    fn openapi_document_is_3_1_and_documents_every_admin_route() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let paths = doc["paths"].as_object().unwrap();
        for route in super::super::ROUTES {
            let ops = paths[*route].as_object().unwrap();
            for (method, op) in ops {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{ ADMIN_TOKEN: [] }]),
                    "{method} {route} needs the admin token"
                );
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {route} documents its 401"
                );
                // A body is refused with 413 over the limit and 422 for a wrong shape; a
                // required JSON body (`Body`) with 415 under another content type (an
                // optional one is read whatever its type). Schemathesis found an operation
                // that did not document its 415.
                if op["requestBody"].is_object() {
                    let mut expected = vec!["413", "422"];
                    if op["requestBody"]["required"] == true {
                        expected.push("415");
                    }
                    for status in expected {
                        assert!(
                            op["responses"][status].is_object(),
                            "{method} {route} takes a body and documents no {status}"
                        );
                    }
                }
            }
        }
        for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
            assert!(paths[open]["get"]["security"].is_null(), "{open}");
        }
        assert_eq!(paths.len(), super::super::ROUTES.len() + 4);
        let problem = &doc["components"]["schemas"]["Problem"]["properties"];
        for member in [
            "type",
            "title",
            "status",
            "detail",
            "instance",
            "request_id",
            "field",
        ] {
            assert!(problem[member].is_object(), "Problem.{member}");
        }
    }
}
