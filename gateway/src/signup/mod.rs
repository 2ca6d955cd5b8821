//! The signup pipeline: `POST /v1/signups` on the **public** listener, answered by the
//! gateway itself before any routing (the admin listener stays private; the customer API
//! `/v1/…` to region nodes is not involved). No credential; rate-limited per client IP
//! (the connection's peer address, IPv6 by /64; behind a load balancer that does not keep it,
//! every client shares the balancer's address). The limit is this process's (a local GCRA
//! limiter, not Redis): N gateway replicas allow up to N times `per_ip_per_min`.
//!
//! 1. The email's syntax (422 naming `email` otherwise: nothing is stored), then its domain
//!    against the personal-mail blocklist ([`blocklist`]) → `rejected`.
//! 2. Duplicates: an organization with the email's domain exists → `rejected` (a company
//!    has one organization; its owner adds people, a second one would split its customers);
//!    a signup of the same domain waits for review → `manual_review` (probably a colleague:
//!    a person decides, rejecting could turn away the real applicant).
//! 3. Classification ([`classify`]): the rules classifier, or the LLM when configured; any
//!    failure → `manual_review` with the reason, never a 5xx.
//! 4. Outcome: industry unknown → `manual_review`; a regulated industry (healthcare,
//!    finance, government) or a website not on the email's domain → `provisional` (an
//!    organization with reduced limits until reviewed); else `approved` (an organization on
//!    the Free plan with the applicant as owner). Each with its reasons, stored with its
//!    audit trail (`signups`, `signup_events`).

pub(crate) mod blocklist;
pub(crate) mod classify;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use residency_config::gateway::GatewayConfig;
use residency_core::wire::admin::{Classification, Signup, SignupStatus, SubmitSignup};
use residency_core::TenantId;
use residency_directory::{NewSignup, Store, StoreError};
use residency_http::Problem;
use serde_json::json;

use crate::ratelimit::local::LocalLimiter;
use blocklist::Blocklist;
use classify::{Applicant, Classifier, Llm, Rules, REGULATED};

/// The public path of the signup route.
pub(crate) const SIGNUP_PATH: &str = "/v1/signups";
/// Largest signup body.
const MAX_SIGNUP_BODY: usize = 16 * 1024;
/// The actor of signup events written by the pipeline.
const PIPELINE_ACTOR: &str = "signup:pipeline";

/// The signup service, shared by the public listener's connections.
pub(crate) struct Signups {
    store: Store,
    blocklist: Blocklist,
    classifier: Box<dyn Classifier>,
    limiter: LocalLimiter,
    per_ip_per_min: u32,
}

impl Signups {
    /// The service when `[signup]` is configured.
    ///
    /// # Errors
    /// When the directory url or the LLM settings cannot be used.
    pub(crate) fn from_config(cfg: &GatewayConfig) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(sc) = &cfg.signup else {
            return Ok(None);
        };
        let url = cfg
            .admin
            .directory_url
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("signup: needs admin.directory_url"))?;
        let store =
            Store::lazy(url.expose()).map_err(|e| anyhow::anyhow!("admin.directory_url: {e}"))?;
        let classifier: Box<dyn Classifier> = match &sc.llm {
            Some(llm) => Box::new(Llm::new(llm)?),
            None => Box::new(Rules),
        };
        Ok(Some(Arc::new(Self {
            store,
            blocklist: Blocklist::new(&sc.blocked_domains),
            classifier,
            limiter: LocalLimiter::new(Duration::from_secs(60)),
            per_ip_per_min: sc.per_ip_per_min,
        })))
    }

    /// Answers one `POST /v1/signups` from `ip`.
    pub(crate) async fn handle(
        &self,
        ip: Option<IpAddr>,
        content_type: Option<&HeaderValue>,
        body: hyper::body::Incoming,
        request_id: &HeaderValue,
    ) -> Response<Full<Bytes>> {
        let key = ip.map_or([0; 16], bucket_key);
        let bucket = TenantId::from_uuid(uuid::Uuid::from_bytes(key));
        let decision = self.limiter.check_at(
            bucket,
            self.per_ip_per_min,
            self.limiter.clock(Instant::now()),
        );
        if !decision.allowed() {
            metrics::counter!(crate::metrics::SIGNUPS_TOTAL, "outcome" => "rate_limited")
                .increment(1);
            let mut resp = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many signups from this address; retry later",
            )
            .render(request_id);
            crate::ratelimit::insert_headers(resp.headers_mut(), &decision);
            return resp;
        }
        let json_type = content_type
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json_type {
            return Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            )
            .render(request_id);
        }
        let bytes = match Limited::new(body, MAX_SIGNUP_BODY).collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => {
                return Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the signup body exceeds 16 KiB",
                )
                .render(request_id)
            }
        };
        let outcome = match residency_http::json::parse::<SubmitSignup>(&bytes) {
            Ok(b) => self.submit(b).await,
            Err(residency_http::json::JsonError::Syntax(why)) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("body: not valid json ({why})"),
            )
            .with_field("body")),
            Err(residency_http::json::JsonError::Shape { field, detail }) => {
                Err(invalid(&field, &detail))
            }
        };
        match outcome {
            Ok(s) => {
                metrics::counter!(crate::metrics::SIGNUPS_TOTAL, "outcome" => s.status.as_str())
                    .increment(1);
                let body = json!({ "id": s.id, "status": s.status, "reasons": s.reasons });
                let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
                *resp.status_mut() = StatusCode::CREATED;
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp
            }
            Err(p) => p.render(request_id),
        }
    }

    /// Runs the pipeline on `b` and stores the outcome.
    ///
    /// # Errors
    /// 422 naming the field for input that is not a signup; 503 when the directory cannot
    /// be reached.
    pub(crate) async fn submit(&self, b: SubmitSignup) -> Result<Signup, Problem> {
        let email = b.email.trim().to_owned();
        let domain = email_domain(&email)
            .ok_or_else(|| invalid("email", "must be an email address (local@domain.tld)"))?;
        let company = b.company.trim().to_owned();
        if company.is_empty() || company.chars().count() > 200 {
            return Err(invalid("company", "must be 1-200 characters"));
        }
        let website = b.website.unwrap_or_default().trim().to_owned();
        if website.chars().count() > 500 {
            return Err(invalid("website", "must be at most 500 characters"));
        }
        let description = b.description.unwrap_or_default();
        if description.chars().count() > 4000 {
            return Err(invalid("description", "must be at most 4000 characters"));
        }
        let applicant = Applicant {
            company: company.clone(),
            website: website.clone(),
            description: description.clone(),
        };
        let mut new = NewSignup {
            email,
            domain: domain.clone(),
            company,
            website,
            description,
            status: SignupStatus::ManualReview,
            reasons: Vec::new(),
            classification: None,
            classifier: String::new(),
        };
        self.decide(&mut new, &applicant)
            .await
            .map_err(unavailable)?;
        self.store
            .create_signup(PIPELINE_ACTOR, &new)
            .await
            .map_err(unavailable)
    }

    /// Steps 1-4: sets `new`'s status, reasons and classification.
    async fn decide(&self, new: &mut NewSignup, a: &Applicant) -> Result<(), StoreError> {
        if let Some(entry) = self.blocklist.blocks(&new.domain) {
            new.status = SignupStatus::Rejected;
            new.reasons.push(format!(
                "{} is a personal email provider (blocklist entry {entry}); sign up with your work email",
                new.domain
            ));
            return Ok(());
        }
        if self.store.org_domain_taken(&new.domain).await? {
            new.status = SignupStatus::Rejected;
            new.reasons.push(format!(
                "an organization with the domain {} already exists; ask its owner for access",
                new.domain
            ));
            return Ok(());
        }
        let pending = self.store.signup_pending_for(&new.domain).await?;
        new.classifier = self.classifier.name().to_owned();
        let classification = match self.classifier.classify(a).await {
            Ok(c) => Some(c),
            Err(why) => {
                tracing::info!(classifier = self.classifier.name(), error = %why, "signup classification failed; queued for review");
                new.reasons.push(format!("classification failed: {why}"));
                None
            }
        };
        let (status, reasons) = outcome(&new.domain, &a.website, classification.as_ref(), pending);
        new.status = status;
        new.reasons.extend(reasons);
        new.classification = classification;
        Ok(())
    }
}

/// The limiter bucket of a client address: an IPv4 address (as v4-mapped IPv6), or an IPv6
/// address's /64 (one subscriber's usual allocation: rotating through it buys nothing).
fn bucket_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_ipv6_mapped().octets(),
            None => {
                let mut k = v6.octets();
                k[8..].fill(0);
                k
            }
        },
    }
}

/// Step 4 (with step 2's pending duplicate): the outcome and its reasons.
fn outcome(
    domain: &str,
    website: &str,
    c: Option<&Classification>,
    pending_duplicate: bool,
) -> (SignupStatus, Vec<String>) {
    let mut reasons = Vec::new();
    if pending_duplicate {
        reasons.push(format!(
            "another signup with the domain {domain} is waiting for review"
        ));
        return (SignupStatus::ManualReview, reasons);
    }
    let Some(c) = c else {
        return (SignupStatus::ManualReview, reasons);
    };
    if c.industry == "unknown" {
        reasons.push("the company's industry could not be classified".to_owned());
        return (SignupStatus::ManualReview, reasons);
    }
    let mut provisional = false;
    if REGULATED.contains(&c.industry.as_str()) {
        provisional = true;
        reasons.push(format!(
            "{} is a regulated industry: reduced limits until a platform admin reviews it",
            c.industry
        ));
    }
    match website_host(website) {
        Some(host) if host == domain || host.ends_with(&format!(".{domain}")) => {}
        Some(host) => {
            provisional = true;
            reasons.push(format!(
                "the website {host} is not on the email's domain {domain}"
            ));
        }
        None => {
            provisional = true;
            reasons.push("no website to match against the email's domain".to_owned());
        }
    }
    if provisional {
        (SignupStatus::Provisional, reasons)
    } else {
        reasons.push(format!(
            "{} company on its own domain: approved on the Free plan",
            c.industry
        ));
        (SignupStatus::Approved, reasons)
    }
}

/// The lowercase host of a website given as a URL or a bare host name.
fn website_host(website: &str) -> Option<String> {
    if website.is_empty() {
        return None;
    }
    let with_scheme = if website.contains("://") {
        website.to_owned()
    } else {
        format!("https://{website}")
    };
    let url = url::Url::parse(&with_scheme).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    Some(host.strip_prefix("www.").unwrap_or(&host).to_owned())
}

/// The lowercase domain of a syntactically valid email address.
fn email_domain(email: &str) -> Option<String> {
    if email.len() > 320 {
        return None;
    }
    let (local, domain) = email.rsplit_once('@')?;
    let local_ok = (1..=64).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&c));
    let domain = domain.to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_lowercase()));
    (local_ok && domain_ok).then_some(domain)
}

fn invalid(field: &str, detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        format!("{field}: {detail}"),
    )
    .with_field(field.to_owned())
}

fn unavailable(e: StoreError) -> Problem {
    tracing::warn!(error = %e, "signup: directory unavailable");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "signups cannot be recorded right now; retry later",
    )
    .with_retry_after(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket_key(a), bucket_key(b));
        assert_ne!(bucket_key(a), bucket_key(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(bucket_key(v4), bucket_key(mapped));
    }

    #[test]
    fn email_syntax() {
        assert_eq!(email_domain("a.b+c@Acme.COM").as_deref(), Some("acme.com"));
        for bad in [
            "",
            "a",
            "@acme.com",
            "a@",
            "a@acme",
            "a..b@acme.com",
            "a@-x.com",
            "a b@acme.com",
            "a@acme.c0m",
        ] {
            assert_eq!(email_domain(bad), None, "{bad}");
        }
    }

    #[test]
    fn outcomes() {
        let c = |industry: &str| Classification {
            industry: industry.into(),
            ..Classification::default()
        };
        let s = |d, w, c: Option<&Classification>, p| outcome(d, w, c, p).0;
        assert_eq!(
            s(
                "acme.com",
                "https://www.acme.com/x",
                Some(&c("software")),
                false
            ),
            SignupStatus::Approved
        );
        assert_eq!(
            s("acme.com", "acme.com", Some(&c("healthcare")), false),
            SignupStatus::Provisional
        );
        assert_eq!(
            s("acme.com", "other.io", Some(&c("software")), false),
            SignupStatus::Provisional
        );
        assert_eq!(
            s("acme.com", "", Some(&c("software")), false),
            SignupStatus::Provisional
        );
        assert_eq!(
            s("acme.com", "acme.com", Some(&c("unknown")), false),
            SignupStatus::ManualReview
        );
        assert_eq!(
            s("acme.com", "acme.com", None, false),
            SignupStatus::ManualReview
        );
        assert_eq!(
            s("acme.com", "acme.com", Some(&c("software")), true),
            SignupStatus::ManualReview
        );
    }
}
