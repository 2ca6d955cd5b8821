//! Connector actions over HTTP, with a connection's decrypted credentials.
//!
//! Each catalogue action has a method, a path template below its connector's base URL
//! (`{name}` segments are filled from the input and removed from it) and a credential
//! placement (`bearer`, `basic`, `header:<name>`, `query:<name>`). The base URL is the
//! catalogue's unless `[connectors.<id>] base_url` overrides it. Every call has a timeout.
//!
//! The credential leaves this module only inside the request it is placed in: the outcome
//! (status and body) is scrubbed of every credential string before anyone sees it, so a
//! service that echoes a token back does not leak it into outputs, logs or API answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{DefaultServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_config::node::ConnectorConfig;
use serde_json::{Map, Value};

/// Largest answer body read from a connector.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// One catalogue action, as stored (`connector_actions` + `connectors.base_url`).
#[derive(Debug, Clone)]
pub(crate) struct ActionSpec {
    /// Connector id.
    pub(crate) connector: String,
    /// Action name.
    pub(crate) action: String,
    /// HTTP method.
    pub(crate) method: String,
    /// Path template.
    pub(crate) path: String,
    /// Credential placement.
    pub(crate) placement: String,
    /// The catalogue's base URL.
    pub(crate) base_url: String,
}

/// The answer of a call: status and body (JSON, or `{"text": …}` for anything else),
/// scrubbed of the credential.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// HTTP status.
    pub(crate) status: u16,
    /// Body.
    pub(crate) body: Value,
}

/// Why a call failed. Messages never carry the credential.
#[derive(Debug, Clone)]
pub(crate) enum CallError {
    /// The input does not fit the action (a path parameter is missing).
    Input(String),
    /// The connection's credentials do not fit the placement.
    Credentials(String),
    /// No base URL for the connector.
    NoBaseUrl(String),
    /// Connect or I/O failure.
    Unreachable(String),
    /// No answer within the timeout.
    Timeout(Duration),
    /// A non-2xx answer.
    Status(Answer),
}

impl CallError {
    /// Whether a retry may help (network trouble, timeouts, 429 and 5xx).
    pub(crate) fn retryable(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Timeout(_) => true,
            Self::Status(a) => a.status == 429 || a.status >= 500,
            _ => false,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Input(s) => write!(f, "input: {s}"),
            Self::Credentials(s) => write!(f, "credentials: {s}"),
            Self::NoBaseUrl(c) => write!(f, "connector {c} has no base url configured"),
            Self::Unreachable(s) => write!(f, "connector unreachable: {s}"),
            Self::Timeout(d) => write!(f, "no answer within {}s", d.as_secs_f64()),
            Self::Status(a) => write!(f, "connector answered {}", a.status),
        }
    }
}

/// The HTTP client of connector calls, built once at start.
pub(crate) struct Connectors {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    overrides: BTreeMap<String, String>,
    /// Upper bound of every call (`worker.call_timeout`).
    pub(crate) call_timeout: Duration,
}

impl Connectors {
    /// The client: the platform's roots for https connectors; base URL overrides from
    /// `[connectors]`.
    ///
    /// # Errors
    /// When the TLS client config cannot be built.
    pub(crate) fn new(
        overrides: &BTreeMap<String, ConnectorConfig>,
        call_timeout: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let config = crate::tls::client_config(None, "connectors")?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = HttpsConnector::new(
            http,
            Arc::new(config),
            false,
            Arc::new(DefaultServerNameResolver::default()),
        );
        Ok(Arc::new(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.clone(), v.base_url.clone()))
                .collect(),
            call_timeout,
        }))
    }

    /// Calls `spec` with `input` and the connection's `credentials`, within `timeout` (capped
    /// at `worker.call_timeout`).
    ///
    /// # Errors
    /// [`CallError`]; a non-2xx answer is [`CallError::Status`].
    pub(crate) async fn call(
        &self,
        spec: &ActionSpec,
        credentials: &Map<String, Value>,
        input: &Value,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        let secrets = secrets(credentials);
        let base = self
            .overrides
            .get(&spec.connector)
            .unwrap_or(&spec.base_url);
        if base.is_empty() {
            return Err(CallError::NoBaseUrl(spec.connector.clone()));
        }
        let mut fields = input.as_object().cloned().unwrap_or_default();
        let path = fill_path(&spec.path, &mut fields)?;
        let method = Method::from_bytes(spec.method.as_bytes())
            .map_err(|_| CallError::Input(format!("bad method {}", spec.method)))?;
        let body_allowed = !matches!(method, Method::GET | Method::DELETE);
        let mut req = Request::builder()
            .method(method)
            .header(ACCEPT, "application/json");
        let placement = spec.placement.as_str();
        // Built in its own scope: the serializer is not `Send` and must not live across the
        // call's await.
        let query = {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            if !body_allowed {
                for (k, v) in &fields {
                    query.append_pair(k, &super::template::text(v));
                }
            }
            if let Some(param) = placement.strip_prefix("query:") {
                query.append_pair(param, secret(credentials)?);
            } else if placement == "bearer" {
                req = req.header(
                    AUTHORIZATION,
                    sensitive(&format!("Bearer {}", secret(credentials)?))?,
                );
            } else if placement == "basic" {
                let user = str_field(credentials, "username")?;
                let pass = str_field(credentials, "password")?;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                req = req.header(AUTHORIZATION, sensitive(&format!("Basic {token}"))?);
            } else if let Some(name) = placement.strip_prefix("header:") {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| CallError::Credentials("bad header placement".into()))?;
                req = req.header(name, sensitive(secret(credentials)?)?);
            } else {
                return Err(CallError::Credentials(format!(
                    "unknown placement {placement}"
                )));
            }
            query.finish()
        };
        let uri = format!(
            "{}{path}{}{query}",
            base.trim_end_matches('/'),
            if query.is_empty() { "" } else { "?" }
        );
        let body = if body_allowed {
            req = req.header(CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(&Value::Object(fields)).unwrap_or_default())
        } else {
            Bytes::new()
        };
        let req = req
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| CallError::Input(scrub(&e.to_string(), &secrets)))?;
        let timeout = timeout.min(self.call_timeout);
        let call = async {
            let resp = self.client.request(req).await?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        let (status, raw) = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(CallError::Unreachable(scrub(&error_chain(&*e), &secrets))),
            Err(_) => return Err(CallError::Timeout(timeout)),
        };
        let text = scrub(&String::from_utf8_lossy(&raw), &secrets);
        let body = match serde_json::from_str::<Value>(&text) {
            Ok(v) => v,
            Err(_) if text.is_empty() => Value::Object(Map::new()),
            Err(_) => serde_json::json!({ "text": truncate(&text, 2000) }),
        };
        let answer = Answer { status, body };
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(CallError::Status(answer))
        }
    }
}

/// An error and its sources, `: `-joined (hyper's own message is only "client error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A header value marked sensitive (hyper keeps it out of its own debug output).
fn sensitive(s: &str) -> Result<HeaderValue, CallError> {
    let mut v = HeaderValue::from_str(s)
        .map_err(|_| CallError::Credentials("the credential is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

fn str_field<'c>(c: &'c Map<String, Value>, key: &str) -> Result<&'c str, CallError> {
    c.get(key).and_then(Value::as_str).ok_or_else(|| {
        CallError::Credentials(format!("the connection's credentials have no {key}"))
    })
}

/// The credential of a token placement: `access_token`, `token` or `api_key`, first found.
fn secret(c: &Map<String, Value>) -> Result<&str, CallError> {
    ["access_token", "token", "api_key"]
        .iter()
        .find_map(|k| c.get(*k).and_then(Value::as_str))
        .ok_or_else(|| {
            CallError::Credentials(
                "the connection's credentials have no access_token, token or api_key".into(),
            )
        })
}

/// Every string of the credentials worth scrubbing (short ones would scrub ordinary words).
pub(crate) fn secrets(c: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = c
        .values()
        .filter_map(Value::as_str)
        .filter(|s| s.len() >= 6)
        .map(str::to_owned)
        .collect();
    if let (Some(u), Some(p)) = (
        c.get("username").and_then(Value::as_str),
        c.get("password").and_then(Value::as_str),
    ) {
        out.push(base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
    }
    out
}

/// `s` with every secret replaced by `[redacted]`.
pub(crate) fn scrub(s: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(s.to_owned(), |acc, k| acc.replace(k.as_str(), "[redacted]"))
}

/// At most `max` characters of `s`, with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The path with each `{name}` replaced by the percent-encoded input field `name`, which is
/// removed from the input.
fn fill_path(template: &str, fields: &mut Map<String, Value>) -> Result<String, CallError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| CallError::Input("bad path template".into()))?;
        let name = &after[..end];
        let v = fields
            .remove(name)
            .ok_or_else(|| CallError::Input(format!("{name} is required by the action's path")))?;
        let text = super::template::text(&v);
        if text.is_empty() {
            return Err(CallError::Input(format!("{name} must not be empty")));
        }
        // A dot segment would walk the path up on the connector's host.
        if text == "." || text == ".." {
            return Err(CallError::Input(format!("{name} must not be . or ..")));
        }
        out.extend(
            url::form_urlencoded::byte_serialize(text.as_bytes()).map(|s| s.replace('+', "%20")),
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_parameters_are_taken_from_the_input_and_encoded() {
        let mut f = json!({"owner": "a b", "repo": "../x", "title": "t"})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            fill_path("/repos/{owner}/{repo}/issues", &mut f).unwrap(),
            "/repos/a%20b/..%2Fx/issues"
        );
        assert_eq!(f.len(), 1);
        assert!(matches!(
            fill_path("/deals/{deal_id}", &mut f),
            Err(CallError::Input(_))
        ));
        let mut dots = json!({"deal_id": ".."}).as_object().cloned().unwrap();
        assert!(matches!(
            fill_path("/deals/{deal_id}", &mut dots),
            Err(CallError::Input(_))
        ));
    }

    #[test]
    fn scrubbing_and_truncation() {
        let c = json!({"access_token": "xoxb-secret-1", "username": "u", "password": "pw-123456"});
        let s = secrets(c.as_object().unwrap());
        assert_eq!(
            scrub("echo xoxb-secret-1 and pw-123456", &s),
            "echo [redacted] and [redacted]"
        );
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
