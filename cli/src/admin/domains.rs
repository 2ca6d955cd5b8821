//! `residency domains add|list|verify|remove`: customers' custom domains through the admin
//! API (the hostname, the name of its certificate under the gateway's `tls.domains_dir`, and
//! the verification state).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use residency_core::wire::admin::{AddDomain, Domain, Page};

use super::api::{AdminApi, CliError};
use super::{finish, seg, shown, AdminOpts, Output, NO_BODY};

const DOMAIN_FIELDS: &[&str] = &[
    "hostname",
    "tenant_id",
    "cert_ref",
    "state",
    "reason",
    "verified_at",
];
const DOMAIN_COLUMNS: &[&str] = &["hostname", "cert_ref", "state", "verified_at", "reason"];

/// `residency domains --help` examples.
pub(crate) const DOMAINS_EXAMPLES: &str = "\
Examples:
  residency domains add <tenant-id> api.customer.example   # certificate in <domains_dir>/api.customer.example/
  residency domains add <tenant-id> api.customer.example --cert-ref customer-2026
  residency domains list <tenant-id>
  residency domains verify <tenant-id> api.customer.example  # after the certificate was issued or renewed
  residency domains remove <tenant-id> api.customer.example";

/// `residency domains ...`
#[derive(Args, Debug)]
pub(crate) struct DomainsArgs {
    #[command(flatten)]
    opts: AdminOpts,
    #[command(subcommand)]
    cmd: DomainsCmd,
}

#[derive(Subcommand, Debug)]
enum DomainsCmd {
    /// Register a hostname for a customer; its certificate is checked at once (active,
    /// pending until the certificate is there, or failed with the reason).
    Add {
        /// Customer id.
        tenant: String,
        /// The hostname, e.g. api.customer.example.
        hostname: String,
        /// The certificate's directory under the gateway's tls.domains_dir (holding tls.crt
        /// and tls.key); default: the hostname.
        #[arg(long)]
        cert_ref: Option<String>,
    },
    /// List a customer's hostnames.
    List {
        /// Customer id.
        tenant: String,
    },
    /// Check a hostname's certificate again (after it was issued or renewed).
    Verify {
        /// Customer id.
        tenant: String,
        /// The hostname.
        hostname: String,
    },
    /// Remove a hostname (effective on every gateway within a second).
    Remove {
        /// Customer id.
        tenant: String,
        /// The hostname.
        hostname: String,
    },
}

/// Runs `residency domains ...`.
pub(crate) async fn domains(args: DomainsArgs) -> ExitCode {
    finish(run(&args).await, &args.opts)
}

async fn run(args: &DomainsArgs) -> Result<Output, CliError> {
    let api = AdminApi::new(&args.opts)?;
    let base = |tenant: &str| format!("/admin/v1/tenants/{}/domains", seg(tenant));
    match &args.cmd {
        DomainsCmd::Add {
            tenant,
            hostname,
            cert_ref,
        } => {
            let body = AddDomain {
                hostname: hostname.clone(),
                cert_ref: cert_ref.clone(),
            };
            let d: Domain = api.call(Method::POST, &base(tenant), Some(&body)).await?;
            Ok(Output::Object(shown(&d), DOMAIN_FIELDS))
        }
        DomainsCmd::List { tenant } => {
            let page: Page<Domain> = api.call(Method::GET, &base(tenant), NO_BODY).await?;
            Ok(Output::Table(shown(&page), DOMAIN_COLUMNS))
        }
        DomainsCmd::Verify { tenant, hostname } => {
            let path = format!("{}/{}/verify", base(tenant), seg(hostname));
            let d: Domain = api.call(Method::POST, &path, NO_BODY).await?;
            Ok(Output::Object(shown(&d), DOMAIN_FIELDS))
        }
        DomainsCmd::Remove { tenant, hostname } => {
            let path = format!("{}/{}", base(tenant), seg(hostname));
            let d: Domain = api.call(Method::DELETE, &path, NO_BODY).await?;
            Ok(Output::Object(
                shown(&d),
                &["hostname", "tenant_id", "state"],
            ))
        }
    }
}
