//! Who is calling the admin API, extracted once per request by [`super::authorize`]:
//!
//! - [`Principal::Platform`]: the platform admin token (`admin.token_file`), the super-admin;
//! - [`Principal::Org`]: an organization admin token (`rog_<prefix>_<secret>`, created with
//!   `POST /admin/v1/organizations/{id}/tokens`), looked up in the directory **on every
//!   admin request** (by its public prefix, hash compared in constant time): the admin API is
//!   not the hot path, and a lookup per request makes a revocation effective at once on every
//!   gateway without a cache to invalidate; or a JWT of one of the gateway's `[[issuers]]`
//!   carrying `org_id` (UUID) and `org_role` (`owner`, `admin`, `member`) claims, verified
//!   by the public path's verifier (the organization must exist).
//!
//! What each route needs is [`access`] (one table, by route template and method):
//! placement (moves, regions, the audit), creating organizations and the signup review
//! queue are platform-only (403 `platform_admin_required`); reads need an organization's
//! `member`, writes to customers, keys and domains its `admin` (403 `org_admin_required`),
//! the organization's tokens its `owner` (403 `org_owner_required`). Which objects an org
//! principal reaches is decided by the handlers through [`Principal::sees_org`] and
//! [`super::tenants::existing`]: another organization's object answers 404 exactly like a
//! nonexistent one, and lists are filtered to the caller's organization.

use http::Method;
use residency_core::wire::admin::OrgRole;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AdminError;

/// The caller of an admin request.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// The platform admin token.
    Platform {
        /// `admin:<token name>`.
        actor: String,
    },
    /// An organization credential: an organization admin token, or a JWT of a configured
    /// issuer carrying `org_id` and `org_role`.
    Org {
        /// The organization.
        org_id: Uuid,
        /// The credential's role there.
        role: OrgRole,
        /// Who the history records: `org:<org id>:token:<token id>` or
        /// `org:<org id>:jwt:<subject>`.
        actor: String,
        /// The person's email: the verified `email` claim of a JWT (`None` for an
        /// organization token, which is not a person).
        email: Option<String>,
    },
}

impl Principal {
    /// Who the directory history records: `admin:<name>`, `org:<org id>:token:<token id>`
    /// or `org:<org id>:jwt:<subject>`.
    pub(crate) fn actor(&self) -> String {
        match self {
            Self::Platform { actor } | Self::Org { actor, .. } => actor.clone(),
        }
    }

    /// The organization an org principal is confined to (`None`: the platform sees all).
    pub(crate) fn org(&self) -> Option<Uuid> {
        match self {
            Self::Platform { .. } => None,
            Self::Org { org_id, .. } => Some(*org_id),
        }
    }

    /// Whether this principal may see objects of organization `org` (`None`: objects that
    /// belong to no organization, which only the platform sees).
    pub(crate) fn sees_org(&self, org: Option<Uuid>) -> bool {
        match self.org() {
            None => true,
            Some(mine) => org == Some(mine),
        }
    }

    /// Whether this principal may hand out tokens with `role` (an org principal never one
    /// above its own).
    pub(crate) fn may_grant(&self, role: OrgRole) -> bool {
        match self {
            Self::Platform { .. } => true,
            Self::Org { role: mine, .. } => role <= *mine,
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The platform admin only.
    Platform,
    /// The platform, or an organization principal with at least this role.
    Org(OrgRole),
}

/// What `method` on the route template `route` needs. Unknown routes are platform-only.
pub(crate) fn access(route: &str, method: &Method) -> Access {
    let read = *method == Method::GET || *method == Method::HEAD;
    match route {
        "/admin/v1/organizations" if read => Access::Org(OrgRole::Member),
        "/admin/v1/organizations/{id}" => Access::Org(OrgRole::Member),
        // The organization-wide audit search is a read (every org role).
        "/admin/v1/organizations/{id}/audit-events" if read => Access::Org(OrgRole::Member),
        // Ownership: the owner offers and withdraws; anyone of the organization may read the
        // offers; accepting and declining need the recipient's own JWT, which the handler
        // checks (`org_ownership.rs`), whatever its role.
        "/admin/v1/organizations/{id}/ownership-transfers" if read => Access::Org(OrgRole::Member),
        "/admin/v1/organizations/{id}/ownership-transfers"
        | "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}" => {
            Access::Org(OrgRole::Owner)
        }
        "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/accept"
        | "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/decline" => {
            Access::Org(OrgRole::Member)
        }
        "/admin/v1/organizations/{id}/tokens"
        | "/admin/v1/organizations/{id}/tokens/{token_id}" => Access::Org(OrgRole::Owner),
        "/admin/v1/tenants"
        | "/admin/v1/tenants/{id}"
        | "/admin/v1/tenants/{id}/provision"
        | "/admin/v1/tenants/{id}/history"
        | "/admin/v1/tenants/{id}/api-keys"
        | "/admin/v1/tenants/{id}/api-keys/{key_id}"
        | "/admin/v1/tenants/{id}/domains"
        | "/admin/v1/tenants/{id}/domains/{hostname}"
        | "/admin/v1/tenants/{id}/domains/{hostname}/verify"
        | "/admin/v1/domains/{hostname}" => {
            if read {
                Access::Org(OrgRole::Member)
            } else {
                Access::Org(OrgRole::Admin)
            }
        }
        // Organizations are created by the platform (or a signup); moves, regions, the
        // placement audit and the signup review queue are placement and platform matters.
        _ => Access::Platform,
    }
}

/// Refuses `p` on a route needing `need`.
///
/// # Errors
/// 403 `platform_admin_required`, `org_admin_required` or `org_owner_required`.
pub(crate) fn check(p: &Principal, need: Access) -> Result<(), AdminError> {
    match (p, need) {
        (Principal::Platform { .. }, _) => Ok(()),
        (Principal::Org { .. }, Access::Platform) => Err(AdminError::Forbidden {
            kind: "platform_admin_required",
            detail:
                "this endpoint needs the platform admin token; organization tokens cannot use it"
                    .into(),
        }),
        (Principal::Org { role, .. }, Access::Org(need)) if *role >= need => Ok(()),
        (Principal::Org { role, .. }, Access::Org(need)) => Err(role_required(*role, need)),
    }
}

/// 403 naming the role needed.
pub(crate) fn role_required(have: OrgRole, need: OrgRole) -> AdminError {
    AdminError::Forbidden {
        kind: match need {
            OrgRole::Owner => "org_owner_required",
            OrgRole::Admin | OrgRole::Member => "org_admin_required",
        },
        detail: format!(
            "this needs the organization role {} or above; this token has {}",
            need.as_str(),
            have.as_str()
        ),
    }
}

/// Authenticates an organization token against the directory.
///
/// # Errors
/// 401 for an unknown, revoked or wrong token; 503 when the directory cannot answer.
pub(crate) async fn org_token(
    store: &residency_directory::Store,
    presented: &str,
) -> Result<Principal, AdminError> {
    let invalid = AdminError::Unauthorized("the admin token is not valid");
    let Some((prefix, _)) = residency_directory::keys::split_org_token(presented) else {
        return Err(invalid);
    };
    let Some(entry) = store.org_token_by_prefix(prefix).await? else {
        return Err(invalid);
    };
    let hash = residency_directory::keys::hash(presented);
    if !bool::from(hash.as_bytes().ct_eq(entry.hash.as_bytes())) || entry.revoked {
        return Err(invalid);
    }
    Ok(Principal::Org {
        org_id: entry.org_id,
        role: entry.role,
        actor: format!("org:{}:token:{}", entry.org_id, entry.id),
        email: None,
    })
}

/// Authenticates a JWT of a configured issuer carrying `org_id` and `org_role` (the gateway's
/// JWT verifier: signature, issuer, audience, expiry); the organization must exist.
///
/// When the organization has an owner of record (`owner_email`: its signup's applicant, or
/// whoever accepted its ownership), the `owner` role belongs to that person: a JWT whose
/// `email` claim is the owner of record is `owner` whatever its `org_role`, and any other
/// JWT claiming `owner` is taken as `admin`. That is what makes an accepted ownership
/// transfer swap the roles without waiting for the identity provider's claims to change.
///
/// # Errors
/// 401 for a token that does not verify or has no valid organization claims, or names an
/// organization that does not exist; 503 when the directory cannot answer.
pub(crate) async fn org_jwt(
    jwt: &crate::auth::jwt::JwtVerifier,
    store: &residency_directory::Store,
    presented: &str,
) -> Result<Principal, AdminError> {
    let claims = jwt.verify_org(presented).await.map_err(|e| {
        tracing::debug!(error = ?e, "admin jwt refused");
        AdminError::Unauthorized("the admin token is not valid")
    })?;
    let Some(org) = store
        .org(residency_core::OrgId::from_uuid(claims.org))
        .await?
    else {
        return Err(AdminError::Unauthorized("the admin token is not valid"));
    };
    let role = owner_of_record(
        claims.role,
        claims.email.as_deref(),
        org.owner_email.as_deref(),
    );
    Ok(Principal::Org {
        org_id: claims.org,
        role,
        actor: format!("org:{}:jwt:{}", claims.org, claims.subject),
        email: claims.email,
    })
}

/// The role of a JWT claiming `claimed`, for a person with `email`, in an organization whose
/// owner of record is `owner` (see [`org_jwt`]).
pub(crate) fn owner_of_record(
    claimed: OrgRole,
    email: Option<&str>,
    owner: Option<&str>,
) -> OrgRole {
    match owner {
        None => claimed,
        Some(owner) if email.is_some_and(|e| e.eq_ignore_ascii_case(owner)) => OrgRole::Owner,
        Some(_) if claimed == OrgRole::Owner => OrgRole::Admin,
        Some(_) => claimed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(role: OrgRole) -> Principal {
        Principal::Org {
            org_id: Uuid::nil(),
            role,
            actor: "org:test".into(),
            email: None,
        }
    }

    #[test]
    fn roles_are_ordered_and_checked() {
        let get = Method::GET;
        let post = Method::POST;
        assert!(check(&org(OrgRole::Member), access("/admin/v1/tenants", &get)).is_ok());
        let e = check(&org(OrgRole::Member), access("/admin/v1/tenants", &post)).unwrap_err();
        assert_eq!(e.problem().kind, "org_admin_required");
        let e = check(
            &org(OrgRole::Admin),
            access("/admin/v1/organizations/{id}/tokens", &get),
        )
        .unwrap_err();
        assert_eq!(e.problem().kind, "org_owner_required");
        for platform in [
            "/admin/v1/regions",
            "/admin/v1/audit",
            "/admin/v1/moves/{move_id}",
            "/admin/v1/tenants/{id}/move",
            "/admin/v1/signups",
        ] {
            let e = check(&org(OrgRole::Owner), access(platform, &get)).unwrap_err();
            assert_eq!(e.problem().kind, "platform_admin_required", "{platform}");
        }
        let e = check(
            &org(OrgRole::Owner),
            access("/admin/v1/organizations", &post),
        )
        .unwrap_err();
        assert_eq!(e.problem().kind, "platform_admin_required");
        assert!(!org(OrgRole::Admin).may_grant(OrgRole::Owner));
        // The owner of record holds `owner`; anyone else claiming it is an admin.
        let owner = Some("new@acme.test");
        assert_eq!(
            owner_of_record(OrgRole::Member, Some("NEW@acme.test"), owner),
            OrgRole::Owner
        );
        assert_eq!(
            owner_of_record(OrgRole::Owner, Some("old@acme.test"), owner),
            OrgRole::Admin
        );
        assert_eq!(owner_of_record(OrgRole::Owner, None, owner), OrgRole::Admin);
        assert_eq!(
            owner_of_record(OrgRole::Member, None, owner),
            OrgRole::Member
        );
        assert_eq!(owner_of_record(OrgRole::Owner, None, None), OrgRole::Owner);
        assert!(org(OrgRole::Admin).may_grant(OrgRole::Admin));
    }
}
