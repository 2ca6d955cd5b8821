//! `residency tenants|orgs|keys ...`: the gateway's admin API from a terminal.
//!
//! The admin URL and token come from `--admin-url` / `--admin-token` (or
//! `RESIDENCY_ADMIN_URL` / `RESIDENCY_ADMIN_TOKEN`), else from the `admin` section of
//! `--stack` (default `.residency/stack.json`, written by `residency up`). Output is a table or
//! `key: value` lines for people, the API's JSON with `--json` for scripts. Exit codes: 0 done,
//! 1 the admin API refused (its problem detail is printed, naming the field), 2 could not run
//! (bad arguments, no admin URL or token, gateway unreachable).
//!
//! Validation of values (regions, tiers, statuses) is left to the API, so the CLI never
//! disagrees with the gateway it talks to.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Map, Value};

mod api;
mod render;
#[cfg(test)]
mod tests;

use api::{AdminApi, CliError};
use render::{object_lines, table};

/// Where the admin API is and how to format answers; accepted before or after the action.
#[derive(Args, Debug, Clone)]
pub struct AdminOpts {
    /// Admin API base URL, e.g. http://127.0.0.1:9090 (default: from --stack).
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
pub struct TenantsArgs {
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
        /// Home region id (must be configured in the gateway), e.g. eu.
        #[arg(long)]
        region: String,
        /// starter, growth, scale or enterprise.
        #[arg(long)]
        tier: String,
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
        #[arg(long)]
        region: Option<String>,
        /// Only this tier.
        #[arg(long)]
        tier: Option<String>,
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
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
    Update {
        /// Customer id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New tier.
        #[arg(long)]
        tier: Option<String>,
        /// active or suspended.
        #[arg(long)]
        status: Option<String>,
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
}

/// `residency orgs ...`
#[derive(Args, Debug)]
pub struct OrgsArgs {
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
}

/// `residency keys ...`
#[derive(Args, Debug)]
pub struct KeysArgs {
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
pub async fn tenants(args: TenantsArgs) -> ExitCode {
    finish(run_tenants(&args).await, &args.opts)
}

/// Runs `residency orgs ...`.
pub async fn orgs(args: OrgsArgs) -> ExitCode {
    finish(run_orgs(&args).await, &args.opts)
}

/// Runs `residency keys ...`.
pub async fn keys(args: KeysArgs) -> ExitCode {
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
const ORG_FIELDS: &[&str] = &["id", "name", "domain", "plan", "created_at"];
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
            let mut body = json!({ "name": name, "region": region, "tier": tier });
            if let Some(o) = org_id {
                body["org_id"] = json!(o);
            }
            if let (Some(s), Some(e)) = (owner_subject, owner_email) {
                body["owner"] = json!({ "subject": s, "email": e });
            }
            if let Some(n) = rate_limit {
                body["limits"] = json!({ "rate_limit_per_min": n });
            }
            let v = api
                .call(Method::POST, "/admin/v1/tenants", Some(&body))
                .await?;
            Ok(Output::Object(v, TENANT_FIELDS))
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
                ("region", region.clone()),
                ("tier", tier.clone()),
                ("status", status.clone()),
                ("org_id", org_id.clone()),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor.clone()),
            ]);
            let v = api
                .call(Method::GET, &format!("/admin/v1/tenants{q}"), None)
                .await?;
            Ok(Output::Table(v, TENANT_COLUMNS))
        }
        TenantsCmd::Get { id } => {
            let v = api
                .call(Method::GET, &format!("/admin/v1/tenants/{}", seg(id)), None)
                .await?;
            Ok(Output::Object(v, TENANT_FIELDS))
        }
        TenantsCmd::Update {
            id,
            name,
            tier,
            status,
            rate_limit,
            default_rate_limit,
        } => {
            let mut body = Map::new();
            for (k, v) in [("name", name), ("tier", tier), ("status", status)] {
                if let Some(v) = v {
                    body.insert(k.to_owned(), json!(v));
                }
            }
            if let Some(n) = rate_limit {
                body.insert("limits".into(), json!({ "rate_limit_per_min": n }));
            } else if *default_rate_limit {
                body.insert("limits".into(), json!({ "rate_limit_per_min": null }));
            }
            if body.is_empty() {
                return Err(CliError::CouldNotRun(
                    "nothing to update: pass --name, --tier, --status, --rate-limit or --default-rate-limit".into(),
                ));
            }
            let v = api
                .call(
                    Method::PATCH,
                    &format!("/admin/v1/tenants/{}", seg(id)),
                    Some(&Value::Object(body)),
                )
                .await?;
            Ok(Output::Object(v, TENANT_FIELDS))
        }
        TenantsCmd::Provision { id } => {
            let v = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/tenants/{}/provision", seg(id)),
                    Some(&json!({})),
                )
                .await?;
            Ok(Output::Object(v, TENANT_FIELDS))
        }
        TenantsCmd::History { id } => {
            let v = api
                .call(
                    Method::GET,
                    &format!("/admin/v1/tenants/{}/history", seg(id)),
                    None,
                )
                .await?;
            Ok(Output::Table(v, HISTORY_COLUMNS))
        }
    }
}

async fn run_orgs(args: &OrgsArgs) -> Result<Output, CliError> {
    let api = AdminApi::new(&args.opts)?;
    match &args.cmd {
        OrgsCmd::Create { name, domain, plan } => {
            let mut body = json!({ "name": name, "domain": domain });
            if let Some(p) = plan {
                body["plan"] = json!(p);
            }
            let v = api
                .call(Method::POST, "/admin/v1/organizations", Some(&body))
                .await?;
            Ok(Output::Object(v, ORG_FIELDS))
        }
        OrgsCmd::List { limit, cursor } => {
            let q = query(&[
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor.clone()),
            ]);
            let v = api
                .call(Method::GET, &format!("/admin/v1/organizations{q}"), None)
                .await?;
            Ok(Output::Table(v, ORG_FIELDS))
        }
    }
}

async fn run_keys(args: &KeysArgs) -> Result<Output, CliError> {
    let api = AdminApi::new(&args.opts)?;
    match &args.cmd {
        KeysCmd::Create { tenant, name, role } => {
            let mut body = json!({ "name": name });
            if let Some(r) = role {
                body["role"] = json!(r);
            }
            let v = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/tenants/{}/api-keys", seg(tenant)),
                    Some(&body),
                )
                .await?;
            let text = format!(
                "{}api_key: {}\n\nThe key is shown only now: store it in a secret manager.\n",
                object_lines(&v, &["id", "name", "prefix", "role"]),
                v["api_key"].as_str().unwrap_or_default()
            );
            Ok(Output::Text(v, text))
        }
        KeysCmd::List { tenant } => {
            let v = api
                .call(
                    Method::GET,
                    &format!("/admin/v1/tenants/{}/api-keys", seg(tenant)),
                    None,
                )
                .await?;
            Ok(Output::Table(v, KEY_COLUMNS))
        }
        KeysCmd::Revoke { tenant, key_id } => {
            let v = api
                .call(
                    Method::DELETE,
                    &format!("/admin/v1/tenants/{}/api-keys/{}", seg(tenant), seg(key_id)),
                    None,
                )
                .await?;
            Ok(Output::Object(v, &["id", "name", "prefix", "revoked_at"]))
        }
    }
}
