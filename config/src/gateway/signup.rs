//! `[signup]`: the public signup pipeline (`POST /v1/signups` on the public listener,
//! answered by the gateway itself; the review queue is on the admin API). Without the
//! section the route does not exist (404 like any other path).
//!
//! ```toml
//! [signup]
//! per_ip_per_min = 10                 # submissions per client IP per minute (GCRA)
//! blocked_domains = ["example-mail.com", "mailbox.*"]  # added to the built-in personal-mail list
//!
//! [signup.llm]                        # optional: classify with an OpenAI-compatible API
//! url = "https://api.openai.com/v1/chat/completions"
//! model = "gpt-4o-mini"
//! api_key = "…"                       # or RESIDENCY__SIGNUP__LLM__API_KEY
//! timeout = "5s"
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;
use crate::Problem;

/// The default submissions per client IP per minute.
pub const DEFAULT_SIGNUPS_PER_IP_PER_MIN: u32 = 10;

/// `[signup]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupConfig {
    /// Submissions per client IP per minute, 1-10000.
    #[serde(default = "default_per_ip")]
    pub per_ip_per_min: u32,
    /// Email domains refused in addition to the built-in personal-mail list: a domain
    /// (`example.com`) or a family (`name.*`: every domain whose first label is `name`).
    #[serde(default)]
    pub blocked_domains: Vec<String>,
    /// The optional LLM classifier; the built-in rules classify without it.
    #[serde(default)]
    pub llm: Option<LlmConfig>,
}

/// `[signup.llm]`: an OpenAI-compatible chat-completions endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// The chat-completions URL (https; plain http for a loopback host only).
    pub url: String,
    /// The model name.
    pub model: String,
    /// The bearer key; absent for an endpoint without one.
    #[serde(default)]
    pub api_key: Option<Secret<String>>,
    /// The whole call's bound, 100ms-60s (default 5s); past it the signup goes to review.
    #[serde(default = "default_llm_timeout", with = "crate::duration::serde_str")]
    pub timeout: Duration,
}

fn default_per_ip() -> u32 {
    DEFAULT_SIGNUPS_PER_IP_PER_MIN
}

fn default_llm_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Whether `entry` is a blocked-domain entry: a lowercase domain, or `name.*`.
#[must_use]
pub fn is_blocked_domain_entry(entry: &str) -> bool {
    let body = entry.strip_suffix(".*").unwrap_or(entry);
    !body.is_empty()
        && body.len() <= 253
        && !body.starts_with('.')
        && !body.ends_with('.')
        && !body.contains("..")
        && body
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
}

impl SignupConfig {
    /// Every problem of `[signup]`.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if !(1..=10_000).contains(&self.per_ip_per_min) {
            out.push(Problem::new(
                "signup.per_ip_per_min",
                "must be between 1 and 10000",
            ));
        }
        for (i, d) in self.blocked_domains.iter().enumerate() {
            if !is_blocked_domain_entry(d) {
                out.push(Problem::new(
                    format!("signup.blocked_domains[{i}]"),
                    "must be a lowercase domain (example.com) or a family (name.*)",
                ));
            }
        }
        if let Some(llm) = &self.llm {
            if let Err(why) = super::check_remote_url(&llm.url) {
                out.push(Problem::new("signup.llm.url", why));
            }
            if llm.model.trim().is_empty() || llm.model.len() > 200 {
                out.push(Problem::new("signup.llm.model", "must be 1-200 characters"));
            }
            if llm.timeout < Duration::from_millis(100) || llm.timeout > Duration::from_secs(60) {
                out.push(Problem::new(
                    "signup.llm.timeout",
                    "must be between 100ms and 60s",
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_bounds_are_checked_by_key() {
        let cfg: SignupConfig = toml::from_str(
            "per_ip_per_min = 0\nblocked_domains = [\"ok.com\", \"fam.*\", \"Bad.com\"]\n\
             [llm]\nurl = \"http://10.0.0.1/x\"\nmodel = \"\"\ntimeout = \"10ms\"\n",
        )
        .unwrap();
        let keys: Vec<String> = cfg.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "signup.per_ip_per_min",
                "signup.blocked_domains[2]",
                "signup.llm.url",
                "signup.llm.model",
                "signup.llm.timeout"
            ]
        );
    }
}
