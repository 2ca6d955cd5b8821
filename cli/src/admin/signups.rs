//! `residency signups submit|list|get|approve|reject`: `submit` posts to the gateway's
//! **public** listener (`POST /v1/signups`, no credential: the admin token is never sent
//! there); the others are the review queue on the admin API (platform admin token).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use residency_core::wire::admin::{Page, ReviewSignup, Signup, SubmitSignup};
use serde_json::Value;

use super::api::{AdminApi, CliError};
use super::{finish, query, seg, shown, AdminOpts, Output, NO_BODY};

/// `residency signups ...`
#[derive(Args, Debug)]
pub(crate) struct SignupsArgs {
    #[command(flatten)]
    opts: AdminOpts,
    #[command(subcommand)]
    cmd: SignupsCmd,
}

#[derive(Subcommand, Debug)]
enum SignupsCmd {
    /// Submit a signup to the gateway's public listener; prints its outcome and reasons.
    Submit {
        /// The public listener's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "RESIDENCY_PUBLIC_URL")]
        public_url: String,
        /// Work email (its domain becomes the organization's).
        #[arg(long)]
        email: String,
        /// Company name.
        #[arg(long)]
        company: String,
        /// Company website.
        #[arg(long)]
        website: Option<String>,
        /// What the company does and needs.
        #[arg(long)]
        description: Option<String>,
    },
    /// List signups, oldest first (`--status manual_review` is the review queue).
    List {
        /// approved, provisional, manual_review or rejected.
        #[arg(long)]
        status: Option<String>,
        /// Page size (1-500).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue from a previous page's next cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one signup with its audit trail.
    Get {
        /// Signup id.
        id: String,
    },
    /// Approve a signup waiting for review (creates its organization on the Free plan).
    Approve {
        /// Signup id.
        id: String,
        /// Why (stored with the signup).
        #[arg(long)]
        note: String,
    },
    /// Reject a signup waiting for review.
    Reject {
        /// Signup id.
        id: String,
        /// Why (stored with the signup).
        #[arg(long)]
        note: String,
    },
}

const SIGNUP_FIELDS: &[&str] = &[
    "id",
    "email",
    "company",
    "status",
    "reasons",
    "classifier",
    "org_id",
    "review_note",
    "reviewed_by",
    "created_at",
];
const SIGNUP_COLUMNS: &[&str] = &["id", "email", "company", "status", "created_at"];

/// Runs `residency signups ...`.
pub(crate) async fn signups(args: SignupsArgs) -> ExitCode {
    finish(run(&args).await, &args.opts)
}

async fn run(args: &SignupsArgs) -> Result<Output, CliError> {
    if let SignupsCmd::Submit {
        public_url,
        email,
        company,
        website,
        description,
    } = &args.cmd
    {
        let body = SubmitSignup {
            email: email.clone(),
            company: company.clone(),
            website: website.clone(),
            description: description.clone(),
        };
        let v: Value = AdminApi::public(public_url, "/v1/signups", &body).await?;
        return Ok(Output::Object(v, &["id", "status", "reasons"]));
    }
    let api = AdminApi::new(&args.opts)?;
    match &args.cmd {
        SignupsCmd::Submit { .. } => unreachable!("answered above"),
        SignupsCmd::List {
            status,
            limit,
            cursor,
        } => {
            let q = query(&[
                ("status", status.clone()),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor.clone()),
            ]);
            let page: Page<Signup> = api
                .call(Method::GET, &format!("/admin/v1/signups{q}"), NO_BODY)
                .await?;
            Ok(Output::Table(shown(&page), SIGNUP_COLUMNS))
        }
        SignupsCmd::Get { id } => {
            let v: Value = api
                .call(
                    Method::GET,
                    &format!("/admin/v1/signups/{}", seg(id)),
                    NO_BODY,
                )
                .await?;
            Ok(Output::Object(v, SIGNUP_FIELDS))
        }
        SignupsCmd::Approve { id, note } | SignupsCmd::Reject { id, note } => {
            let action = if matches!(args.cmd, SignupsCmd::Approve { .. }) {
                "approve"
            } else {
                "reject"
            };
            let s: Signup = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/signups/{}/{action}", seg(id)),
                    Some(&ReviewSignup { note: note.clone() }),
                )
                .await?;
            Ok(Output::Object(shown(&s), SIGNUP_FIELDS))
        }
    }
}
