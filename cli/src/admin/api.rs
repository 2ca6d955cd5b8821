//! The admin API client: where the endpoint and token come from, one call, and how a refusal
//! or an unreachable gateway becomes a [`CliError`].

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_core::wire::ProblemDetails;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::AdminOpts;

/// Time one admin call may take (provisioning included).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a command failed; each maps to one exit code ([`crate::exit`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum CliError {
    /// No usable admin URL or token, or a request this CLI cannot build (64).
    #[error("{0}")]
    Config(String),
    /// The gateway's admin API is unreachable (69).
    #[error("{0}")]
    Unavailable(String),
    /// The gateway answered with a body this CLI does not understand (76).
    #[error("{0}")]
    Protocol(String),
    /// The admin API answered with a problem.
    #[error("{0}")]
    Refused(String),
    /// A value the admin API would refuse: it does not fit the API's own request type, so it
    /// is not sent.
    #[error("{0}")]
    Invalid(String),
}

impl CliError {
    pub(super) fn exit(&self) -> ExitCode {
        match self {
            Self::Refused(_) | Self::Invalid(_) => ExitCode::from(1),
            Self::Config(_) => ExitCode::from(crate::exit::CONFIG),
            Self::Unavailable(_) => ExitCode::from(crate::exit::UNAVAILABLE),
            Self::Protocol(_) => ExitCode::from(crate::exit::PROTOCOL),
        }
    }
}

/// The admin API endpoint and token.
pub(super) struct AdminApi {
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminApi {
    pub(super) fn new(opts: &AdminOpts) -> Result<Self, CliError> {
        let stack = read_stack(&opts.stack);
        let from_stack = |key: &str| {
            stack
                .as_ref()
                .ok()
                .and_then(|s| s["admin"][key].as_str().map(str::to_owned))
        };
        let missing = |what: &str, flag: &str| {
            let why = match &stack {
                Ok(_) => format!("{} has no admin.{what}", opts.stack.display()),
                Err(e) => e.clone(),
            };
            CliError::Config(format!(
                "no admin {what}: pass {flag} (or set its environment variable), or run \
                 `residency up` to write a stack.json ({why})"
            ))
        };
        let base = opts
            .admin_url
            .clone()
            .or_else(|| from_stack("url"))
            .ok_or_else(|| missing("url", "--admin-url"))?;
        let token = opts
            .admin_token
            .clone()
            .or_else(|| from_stack("token"))
            .ok_or_else(|| missing("token", "--admin-token"))?;
        if !base.starts_with("http://") {
            return Err(CliError::Config(format!(
                "admin url {base:?} must start with http:// (the admin listener is plain http on a private address)"
            )));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Calls the admin API with a typed body and reads the typed answer; a problem answer
    /// becomes [`CliError::Refused`] with its detail.
    pub(super) async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, CliError> {
        Self::send(
            &self.client,
            &self.base,
            Some(&self.token),
            method,
            path,
            body,
        )
        .await
    }

    /// `POST` of `body` to `path` on the gateway's **public** listener at `base` (an
    /// `http://` URL), without any credential: the admin token never goes there.
    pub(super) async fn public<B: Serialize, R: DeserializeOwned>(
        base: &str,
        path: &str,
        body: &B,
    ) -> Result<R, CliError> {
        if !base.starts_with("http://") {
            return Err(CliError::Config(format!(
                "public url {base:?}: this cli submits over http:// only (a local stack); \
                 use an https client such as curl for a deployed gateway"
            )));
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self::send(
            &client,
            base.trim_end_matches('/'),
            None,
            Method::POST,
            path,
            Some(body),
        )
        .await
    }

    async fn send<B: Serialize, R: DeserializeOwned>(
        client: &Client<HttpConnector, Full<Bytes>>,
        base: &str,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, CliError> {
        let url = format!("{base}{path}");
        let mut req = Request::builder().method(method.clone()).uri(&url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(
                    serde_json::to_vec(b)
                        .map_err(|e| CliError::Config(format!("cannot encode the request: {e}")))?,
                )
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| CliError::Config(format!("invalid admin url {url:?}: {e}")))?;
        // With a token this is the admin API; without, the public listener (signups).
        let what = if token.is_some() {
            "the admin api"
        } else {
            "the gateway's public listener"
        };
        let unreachable = |e: &dyn std::fmt::Display| {
            CliError::Unavailable(format!(
                "cannot reach {what} at {base}: {e} (is the gateway running? `residency up` starts one)"
            ))
        };
        let resp = tokio::time::timeout(TIMEOUT, client.request(req))
            .await
            .map_err(|_| unreachable(&"timed out"))?
            .map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        // A 204 (a withdrawn ownership offer) has no body: read it as JSON `null`.
        let body = if status == http::StatusCode::NO_CONTENT && body.is_empty() {
            Bytes::from_static(b"null")
        } else {
            body
        };
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                CliError::Protocol(format!(
                    "{method} {path}: {what} at {base} answered {} with a body this cli does not understand ({e}); are the cli and the gateway the same version?",
                    status.as_u16()
                ))
            });
        }
        let problem = serde_json::from_slice::<ProblemDetails>(&body).ok();
        let detail = problem.as_ref().map_or("no detail", |p| p.detail.as_str());
        let mut msg = format!("{method} {path}: {} {detail}", status.as_u16());
        if let Some(t) = problem
            .as_ref()
            .and_then(|p| p.extra.get("tenant_id"))
            .and_then(Value::as_str)
        {
            msg.push_str(&format!(
                " (tenant {t} is kept; retry with `residency tenants provision {t}`)"
            ));
        }
        let kind = problem.as_ref().map_or("", |p| {
            p.type_uri.trim_start_matches("urn:residency:problem:")
        });
        let org_token = token.is_some_and(|t| t.starts_with("rog_"));
        match (status.as_u16(), kind) {
            (403, "platform_admin_required") => msg.push_str(
                " (an organization token cannot do this; ask the platform admin, who holds the gateway's admin token)",
            ),
            (403, "org_admin_required" | "org_owner_required") => msg.push_str(
                " (this organization token's role is too low; ask an owner of the organization for a token with that role)",
            ),
            (404, _) if org_token => msg.push_str(
                " (an organization token sees only its own organization: another organization's objects are not found either)",
            ),
            _ => {}
        }
        if let Some(p) = &problem {
            msg.push_str(&format!(" [request {}]", p.request_id));
        }
        Err(CliError::Refused(msg))
    }
}

fn read_stack(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not json: {e}", path.display()))
}
