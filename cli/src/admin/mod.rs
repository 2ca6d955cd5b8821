//! `residency tenants|orgs|keys|domains|signups ...`: the gateway's admin API from a terminal.
//!
//! The admin URL and token come from `--admin-url` / `--admin-token` (or
//! `RESIDENCY_ADMIN_URL` / `RESIDENCY_ADMIN_TOKEN`), else from the `admin` section of
//! `--stack` (default `.residency/stack.json`, written by `residency up`). Output is a table or
//! `key: value` lines for people, the API's JSON with `--json` for scripts.
//!
//! Exit codes (sysexits, as every `residency` command: see `main.rs`): 0 done, 1 the admin
//! API refused (its problem detail is printed, naming the field), 2 invalid command line
//! (clap, with the possible values), 64 no usable admin URL or token (flags, environment,
//! stack.json), 69 the gateway is unreachable, 76 the gateway answered something this CLI
//! does not understand.
//!
//! Request bodies are built from, and answers read into, the admin API's own types
//! (`residency_core::wire::admin`), so the CLI and the gateway cannot disagree on a field.
//! Tiers and statuses are the core enums as clap possible values, regions well-formed
//! [`residency_core::RegionId`]s ([`crate::values`]); a value that still does not fit those
//! types (an `--org-id` that is not a UUID) is refused before sending, with exit 1 as the API
//! would; every other value rule (configured regions, lengths, limits) is left to the API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};
use http::Method;
use residency_core::wire::admin::{
    ApiKey, CreateApiKey, CreateOrgToken, CreateOrganization, CreateTenant, CreatedApiKey,
    CreatedOrgToken, LimitsPatch, List, OrgToken, Organization, Owner, Page, Reprovision,
    SettableStatus, Tenant, TenantHistoryEntry, UpdateTenant,
};
use residency_core::{RegionId, TenantStatus, Tier};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

mod api;
mod domains;
mod moves;
mod org_audit;
mod org_ownership;
mod regions;
mod render;
mod signups;
#[cfg(test)]
mod tests;

use api::{AdminApi, CliError};
pub(crate) use domains::{domains, DomainsArgs, DOMAINS_EXAMPLES};
pub(crate) use regions::{regions, RegionsArgs, REGIONS_EXAMPLES};
use render::{object_lines, table};
pub(crate) use signups::{signups, SignupsArgs};

/// Where the admin API is and how to format answers; accepted before or after the action.
#[derive(Args, Debug, Clone)]
pub(crate) struct AdminOpts {
    /// The gateway's admin API base URL, e.g. http://127.0.0.1:8480 (default: from --stack).
    #[arg(long, env = "RESIDENCY_ADMIN_URL", global = true)]
    admin_url: Option<String>,
    /// Admin bearer token (default: from --stack). Prefer the environment variable: command
    /// lines are visible to other users.
    #[arg(
        long,
        env = "RESIDENCY_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    admin_token: Option<String>,
    /// The local stack's description, written by `residency up`.
    #[arg(long, default_value = ".residency/stack.json", global = true)]
    stack: PathBuf,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// `residency tenants ...`
#[derive(Args, Debug)]
pub(crate) struct TenantsArgs {
    #[command(flatten)]
    opts: AdminOpts,
    #[command(subcommand)]
    cmd: TenantsCmd,
}

#[derive(Subcommand, Debug)]
enum TenantsCmd {
    /// Create a customer in its home region (provisioned there, then active).
    Create {
        /// Customer name.
        #[arg(long)]
        name: String,
        /// Home region id (one of the gateway's regions: `residency regions`), e.g. eu.
        #[arg(long, value_parser = crate::values::region)]
        region: RegionId,
        /// Commercial tier.
        #[arg(long, value_parser = crate::values::tier())]
        tier: Tier,
        /// Owning organization id.
        #[arg(long)]
        org_id: Option<String>,
        /// Subject (JWT `sub`) of the first owner member.
        #[arg(long, requires = "owner_email")]
        owner_subject: Option<String>,
        /// Email of the first owner member.
        #[arg(long, requires = "owner_subject")]
        owner_email: Option<String>,
        /// Per-minute request limit overriding the tier's.
        #[arg(long)]
        rate_limit: Option<u32>,
    },
    /// List customers (filters combine).
    List {
        /// Only this region.
        #[arg(long, value_parser = crate::values::region)]
        region: Option<RegionId>,
        /// Only this tier.
        #[arg(long, value_parser = crate::values::tier())]
        tier: Option<Tier>,
        /// Only this status.
        #[arg(long, value_parser = crate::values::status())]
        status: Option<TenantStatus>,
        /// Only this organization.
        #[arg(long)]
        org_id: Option<String>,
        /// Page size (1-500).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue from a previous page's next cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one customer.
    Get {
        /// Customer id.
        id: String,
    },
    /// Change name, tier, status (active|suspended) or rate limit.
    #[command(group(
        ArgGroup::new("change")
            .args(["name", "tier", "status", "rate_limit", "default_rate_limit"])
            .required(true)
            .multiple(true)
    ))]
    Update {
        /// Customer id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New tier.
        #[arg(long, value_parser = crate::values::tier())]
        tier: Option<Tier>,
        /// Suspend (refused with 403) or reactivate.
        #[arg(long, value_parser = crate::values::settable_status())]
        status: Option<SettableStatus>,
        /// New per-minute limit override.
        #[arg(long, conflicts_with = "default_rate_limit")]
        rate_limit: Option<u32>,
        /// Drop the override: back to the tier's limit.
        #[arg(long)]
        default_rate_limit: bool,
    },
    /// Retry provisioning of a customer left `provisioning` (idempotent).
    Provision {
        /// Customer id.
        id: String,
    },
    /// Show a customer's change history.
    History {
        /// Customer id.
        id: String,
    },
    /// Move a customer and its data to another region (plan, freeze writes, copy node to
    /// node, verify, flip, purge), with a progress bar per table and a summary; exit 1 unless
    /// it ends `done`.
    #[command(after_help = MOVE_EXAMPLES)]
    Move {
        /// Customer id.
        id: String,
        /// Target region.
        #[arg(long, required_unless_present_any = ["resume", "abort"], value_parser = crate::values::region)]
        to: Option<RegionId>,
        /// Show the plan (tables, rows, estimated bytes) and change nothing.
        #[arg(long, conflicts_with_all = ["resume", "abort"])]
        dry_run: bool,
        /// Continue the customer's move in flight from its record.
        #[arg(long, conflicts_with = "abort")]
        resume: bool,
        /// Abort the customer's move in flight (before its flip): roll it back.
        #[arg(long)]
        abort: bool,
    },
}

/// `residency orgs ...`
#[derive(Args, Debug)]
pub(crate) struct OrgsArgs {
    #[command(flatten)]
    opts: AdminOpts,
    #[command(subcommand)]
    cmd: OrgsCmd,
}

#[derive(Subcommand, Debug)]
enum OrgsCmd {
    /// Create an organization.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Unique lowercase domain.
        #[arg(long)]
        domain: String,
        /// Plan (default free).
        #[arg(long)]
        plan: Option<String>,
    },
    /// List organizations.
    List {
        /// Page size (1-500).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue from a previous page's next cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// An organization's audit events across every region, newest first (platform admin,
    /// or any role of the organization).
    Audit(org_audit::AuditQuery),
    /// The organization's ownership transfer: the owner offers it to an email, the recipient
    /// accepts or declines with their own identity-provider JWT.
    Ownership {
        #[command(subcommand)]
        cmd: org_ownership::OwnershipCmd,
    },
    /// An organization's admin tokens (platform admin, or the organization's owner).
    Tokens {
        #[command(subcommand)]
        cmd: OrgTokensCmd,
    },
}

#[derive(Subcommand, Debug)]
enum OrgTokensCmd {
    /// Create a token with a role (owner, admin or member); the secret is shown once.
    Create {
        /// Organization id.
        org: String,
        /// Token name.
        #[arg(long)]
        name: String,
        /// owner, admin or member.
        #[arg(long)]
        role: String,
    },
    /// List the organization's tokens (never the secrets).
    List {
        /// Organization id.
        org: String,
    },
    /// Revoke a token (effective at once on every gateway).
    Revoke {
        /// Organization id.
        org: String,
        /// Token id.
        token_id: String,
    },
}

/// `residency keys ...`
#[derive(Args, Debug)]
pub(crate) struct KeysArgs {
    #[command(flatten)]
    opts: AdminOpts,
    #[command(subcommand)]
    cmd: KeysCmd,
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Create an API key (scale and enterprise tiers only); the key is shown once.
    Create {
        /// Customer id.
        tenant: String,
        /// Key name.
        #[arg(long)]
        name: String,
        /// Role granted to requests made with the key: a system or custom role of the customer
        /// (default: developer).
        #[arg(long)]
        role: Option<String>,
    },
    /// List a customer's keys (never the secrets).
    List {
        /// Customer id.
        tenant: String,
    },
    /// Revoke a key (effective at once).
    Revoke {
        /// Customer id.
        tenant: String,
        /// Key id.
        key_id: String,
    },
}

/// Runs `residency tenants ...`.
pub(crate) async fn tenants(args: TenantsArgs) -> ExitCode {
    finish(run_tenants(&args).await, &args.opts)
}

/// Runs `residency orgs ...`.
pub(crate) async fn orgs(args: OrgsArgs) -> ExitCode {
    finish(run_orgs(&args).await, &args.opts)
}

/// Runs `residency keys ...`.
pub(crate) async fn keys(args: KeysArgs) -> ExitCode {
    finish(run_keys(&args).await, &args.opts)
}

/// What a command shows.
enum Output {
    /// One object as `key: value` lines.
    Object(Value, &'static [&'static str]),
    /// A list as a table with these columns.
    Table(Value, &'static [&'static str]),
    /// Pre-rendered text (plus the JSON for `--json`).
    Text(Value, String),
}

fn finish(result: Result<Output, CliError>, opts: &AdminOpts) -> ExitCode {
    match result {
        Err(e) => {
            eprintln!("residency: {e}");
            e.exit()
        }
        Ok(out) => {
            let (json, text) = match out {
                Output::Object(v, fields) => {
                    let t = object_lines(&v, fields);
                    (v, t)
                }
                Output::Table(v, columns) => {
                    let t = table(&v, columns);
                    (v, t)
                }
                Output::Text(v, t) => (v, t),
            };
            if opts.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                );
            } else {
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
    }
}

const TENANT_FIELDS: &[&str] = &[
    "id",
    "name",
    "region",
    "tier",
    "status",
    "rate_limit_per_min",
    "org_id",
    "version",
    "created_at",
    "updated_at",
];
const TENANT_COLUMNS: &[&str] = &[
    "id",
    "name",
    "region",
    "tier",
    "status",
    "rate_limit_per_min",
];
const ORG_FIELDS: &[&str] = &[
    "id",
    "name",
    "domain",
    "plan",
    "owner_email",
    "provisional",
    "created_at",
];
const ORG_TOKEN_COLUMNS: &[&str] = &["id", "name", "role", "prefix", "created_at", "revoked_at"];
const KEY_COLUMNS: &[&str] = &["id", "name", "prefix", "role", "created_at", "revoked_at"];
const HISTORY_COLUMNS: &[&str] = &[
    "at", "actor", "change", "region", "tier", "status", "version",
];

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| {
                format!(
                    "{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A path segment taken from the command line, percent-encoded.
fn seg(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

/// The JSON a typed answer is shown as (tables, `key: value` lines and `--json`).
fn shown<T: Serialize>(answer: &T) -> Value {
    serde_json::to_value(answer).unwrap_or(Value::Null)
}

fn uuid(field: &str, raw: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(raw).map_err(|_| CliError::Invalid(format!("{field}: must be a uuid")))
}

/// A wire enum parsed from its name (`role`), refused before anything is sent.
fn value<T: serde::de::DeserializeOwned>(field: &str, raw: &str) -> Result<T, CliError> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned()))
        .map_err(|e| CliError::Invalid(format!("{field}: {e}")))
}

/// No request body: a GET or DELETE.
const NO_BODY: Option<&()> = None;

async fn run_tenants(args: &TenantsArgs) -> Result<Output, CliError> {
    let api = AdminApi::new(&args.opts)?;
    match &args.cmd {
        TenantsCmd::Create {
            name,
            region,
            tier,
            org_id,
            owner_subject,
            owner_email,
            rate_limit,
        } => {
            let body = CreateTenant {
                name: name.clone(),
                region: region.to_string(),
                tier: *tier,
                org_id: org_id
                    .as_deref()
                    .map(|o| uuid("org_id", o).map(residency_core::OrgId::from_uuid))
                    .transpose()?,
                owner: match (owner_subject, owner_email) {
                    (Some(s), Some(e)) => Some(Owner {
                        subject: s.clone(),
                        email: e.clone(),
                        display_name: None,
                    }),
                    _ => None,
                },
                limits: rate_limit.map(|n| LimitsPatch {
                    rate_limit_per_min: Some(Some(n)),
                }),
            };
            let t: Tenant = api
                .call(Method::POST, "/admin/v1/tenants", Some(&body))
                .await?;
            Ok(Output::Object(shown(&t), TENANT_FIELDS))
        }
        TenantsCmd::List {
            region,
            tier,
            status,
            org_id,
            limit,
            cursor,
        } => {
            let q = query(&[
                ("region", region.as_ref().map(RegionId::to_string)),
                ("tier", tier.map(|t| t.as_str().to_owned())),
                ("status", status.map(|s| s.as_str().to_owned())),
                ("org_id", org_id.clone()),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor.clone()),
            ]);
            let page: Page<Tenant> = api
                .call(Method::GET, &format!("/admin/v1/tenants{q}"), NO_BODY)
                .await?;
            Ok(Output::Table(shown(&page), TENANT_COLUMNS))
        }
        TenantsCmd::Get { id } => {
            let t: Tenant = api
                .call(
                    Method::GET,
                    &format!("/admin/v1/tenants/{}", seg(id)),
                    NO_BODY,
                )
                .await?;
            Ok(Output::Object(shown(&t), TENANT_FIELDS))
        }
        TenantsCmd::Update {
            id,
            name,
            tier,
            status,
            rate_limit,
            default_rate_limit,
        } => {
            let limits = match (rate_limit, default_rate_limit) {
                (Some(n), _) => Some(Some(*n)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let body = UpdateTenant {
                name: name.clone(),
                tier: *tier,
                status: *status,
                limits: limits.map(|l| LimitsPatch {
                    rate_limit_per_min: Some(l),
                }),
            };
            let t: Tenant = api
                .call(
                    Method::PATCH,
                    &format!("/admin/v1/tenants/{}", seg(id)),
                    Some(&body),
                )
                .await?;
            Ok(Output::Object(shown(&t), TENANT_FIELDS))
        }
        TenantsCmd::Provision { id } => {
            let t: Tenant = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/tenants/{}/provision", seg(id)),
                    Some(&Reprovision::default()),
                )
                .await?;
            Ok(Output::Object(shown(&t), TENANT_FIELDS))
        }
        TenantsCmd::Move {
            id,
            to,
            dry_run,
            resume,
            abort,
        } => {
            let action = match (to, *dry_run, *resume, *abort) {
                (_, _, true, _) => moves::Action::Resume,
                (_, _, _, true) => moves::Action::Abort,
                (Some(to), dry_run, _, _) => moves::Action::Start {
                    to: to.to_string(),
                    dry_run,
                },
                // clap requires --to without --resume or --abort.
                (None, ..) => return Err(CliError::Config("--to is required".into())),
            };
            let (json, text) = moves::run(&api, &seg(id), action, args.opts.json).await?;
            Ok(Output::Text(json, text))
        }
        TenantsCmd::History { id } => {
            let history: List<TenantHistoryEntry> = api
                .call(
                    Method::GET,
                    &format!("/admin/v1/tenants/{}/history", seg(id)),
                    NO_BODY,
                )
                .await?;
            Ok(Output::Table(shown(&history), HISTORY_COLUMNS))
        }
    }
}

async fn run_orgs(args: &OrgsArgs) -> Result<Output, CliError> {
    let api = AdminApi::new(&args.opts)?;
    match &args.cmd {
        OrgsCmd::Create { name, domain, plan } => {
            let body = CreateOrganization {
                name: name.clone(),
                domain: domain.clone(),
                plan: plan.clone(),
            };
            let org: Organization = api
                .call(Method::POST, "/admin/v1/organizations", Some(&body))
                .await?;
            Ok(Output::Object(shown(&org), ORG_FIELDS))
        }
        OrgsCmd::List { limit, cursor } => {
            let q = query(&[
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor.clone()),
            ]);
            let page: Page<Organization> = api
                .call(Method::GET, &format!("/admin/v1/organizations{q}"), NO_BODY)
                .await?;
            Ok(Output::Table(shown(&page), ORG_FIELDS))
        }
        OrgsCmd::Audit(q) => org_audit::run(&api, q).await,
        OrgsCmd::Ownership { cmd } => org_ownership::run(&api, cmd).await,
        OrgsCmd::Tokens { cmd } => run_org_tokens(&api, cmd).await,
    }
}

async fn run_org_tokens(api: &AdminApi, cmd: &OrgTokensCmd) -> Result<Output, CliError> {
    match cmd {
        OrgTokensCmd::Create { org, name, role } => {
            let body = CreateOrgToken {
                name: name.clone(),
                role: value("role", role)?,
            };
            let created: CreatedOrgToken = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/organizations/{}/tokens", seg(org)),
                    Some(&body),
                )
                .await?;
            let v = shown(&created);
            let text = format!(
                "{}\ntoken: {}\n(shown once: store it now; use it as --admin-token / RESIDENCY_ADMIN_TOKEN)\n",
                object_lines(&v, &["id", "org_id", "name", "role", "prefix"]).trim_end(),
                created.secret
            );
            Ok(Output::Text(v, text))
        }
        OrgTokensCmd::List { org } => {
            let page: Page<OrgToken> = api
                .call(
                    Method::GET,
                    &format!("/admin/v1/organizations/{}/tokens", seg(org)),
                    NO_BODY,
                )
                .await?;
            Ok(Output::Table(shown(&page), ORG_TOKEN_COLUMNS))
        }
        OrgTokensCmd::Revoke { org, token_id } => {
            let t: OrgToken = api
                .call(
                    Method::DELETE,
                    &format!(
                        "/admin/v1/organizations/{}/tokens/{}",
                        seg(org),
                        seg(token_id)
                    ),
                    NO_BODY,
                )
                .await?;
            Ok(Output::Object(shown(&t), ORG_TOKEN_COLUMNS))
        }
    }
}

async fn run_keys(args: &KeysArgs) -> Result<Output, CliError> {
    let api = AdminApi::new(&args.opts)?;
    match &args.cmd {
        KeysCmd::Create { tenant, name, role } => {
            let body = CreateApiKey {
                name: name.clone(),
                role: role.clone(),
                expires_at: None,
            };
            let created: CreatedApiKey = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/tenants/{}/api-keys", seg(tenant)),
                    Some(&body),
                )
                .await?;
            let v = shown(&created);
            let text = format!(
                "{}api_key: {}\n\nThe key is shown only now: store it in a secret manager.\n",
                object_lines(&v, &["id", "name", "prefix", "role"]),
                created.api_key
            );
            Ok(Output::Text(v, text))
        }
        KeysCmd::List { tenant } => {
            let page: Page<ApiKey> = api
                .call(
                    Method::GET,
                    &format!("/admin/v1/tenants/{}/api-keys", seg(tenant)),
                    NO_BODY,
                )
                .await?;
            Ok(Output::Table(shown(&page), KEY_COLUMNS))
        }
        KeysCmd::Revoke { tenant, key_id } => {
            let key: ApiKey = api
                .call(
                    Method::DELETE,
                    &format!("/admin/v1/tenants/{}/api-keys/{}", seg(tenant), seg(key_id)),
                    NO_BODY,
                )
                .await?;
            Ok(Output::Object(
                shown(&key),
                &["id", "name", "prefix", "revoked_at"],
            ))
        }
    }
}

/// `residency tenants --help` examples.
pub(crate) const TENANTS_EXAMPLES: &str = "\
Examples:
  residency tenants create --name Acme --region eu --tier scale \\
      --owner-subject alice --owner-email alice@acme.example
  residency tenants list --region eu --status active
  residency tenants list --json | jq -r '.items[].id'
  residency tenants update <id> --status suspended
  residency tenants update <id> --tier enterprise --rate-limit 5000
  residency tenants move <id> --to us --dry-run
  residency tenants history <id>

The admin URL and token come from --admin-url/--admin-token, RESIDENCY_ADMIN_URL/
RESIDENCY_ADMIN_TOKEN, or the stack.json `residency up` writes.";

/// `residency tenants move --help` examples.
const MOVE_EXAMPLES: &str = "\
Examples:
  residency tenants move <id> --to us --dry-run   # the plan: tables, rows, bytes
  residency tenants move <id> --to us             # move it; exit 1 unless it ends done
  residency tenants move <id> --resume            # continue a move that was interrupted
  residency tenants move <id> --abort             # roll back a move before its flip";

/// `residency keys --help` examples.
pub(crate) const KEYS_EXAMPLES: &str = "\
Examples:
  residency keys create <tenant-id> --name ci --role developer   # the key is shown once
  residency keys list <tenant-id>
  residency keys revoke <tenant-id> <key-id>
  curl -H \"x-api-key: rk_...\" https://127.0.0.1:8443/v1/me";
