//! `[[regions]]`: the residency regions and the region nodes that serve them.

use std::path::PathBuf;

use serde::Deserialize;

use crate::assertion::AssertionKeyConfig;
use crate::load::check_file;
use crate::Problem;
use residency_core::RegionId;

/// `[[regions]]`: one residency region and the region nodes that serve it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEntry {
    /// Region id, e.g. `eu`.
    pub id: RegionId,
    /// Human name, e.g. `Europe`.
    #[serde(default)]
    pub display_name: String,
    /// Where the data physically lives, e.g. `Frankfurt, DE`.
    #[serde(default)]
    pub location: String,
    /// Base URLs of the region's nodes (`http://host:port` or `https://host:port`, one
    /// scheme per region); requests go to these only.
    pub upstreams: Vec<String>,
    /// The key the gateway signs this region's internal assertions with.
    pub assertion: AssertionKeyConfig,
    /// PEM certificates of the CA(s) that sign the region's node certificates. Required for
    /// `https` upstreams: no system or bundled roots are ever trusted for nodes.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain the gateway presents to the region's nodes (mTLS); set together
    /// with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

impl RegionEntry {
    /// Whether the region's nodes are reached over TLS (all upstreams share one scheme).
    #[must_use]
    pub fn uses_tls(&self) -> bool {
        self.upstreams
            .first()
            .is_some_and(|u| u.trim_start().to_ascii_lowercase().starts_with("https://"))
    }
}

/// Every problem of `[[regions]]`: at least one, ids unique, upstreams well-formed with one
/// scheme per region, TLS files present, assertion keys valid.
pub(super) fn validate(regions: &[RegionEntry]) -> Vec<Problem> {
    let mut out = Vec::new();
    if regions.is_empty() {
        out.push(Problem::new("regions", "at least one region is required"));
    }
    for (i, r) in regions.iter().enumerate() {
        let prefix = format!("regions[{i}]");
        if regions[..i].iter().any(|o| o.id == r.id) {
            out.push(Problem::new(
                format!("{prefix}.id"),
                format!("region {} is configured twice", r.id),
            ));
        }
        if r.upstreams.is_empty() {
            out.push(Problem::new(
                format!("{prefix}.upstreams"),
                "at least one upstream url is required",
            ));
        }
        for (j, u) in r.upstreams.iter().enumerate() {
            check_upstream(&format!("{prefix}.upstreams[{j}]"), u, &mut out);
        }
        check_upstream_tls(&prefix, r, &mut out);
        out.extend(r.assertion.validate(&format!("{prefix}.assertion")));
    }
    out
}

fn check_upstream(key: &str, raw: &str, out: &mut Vec<Problem>) {
    match url::Url::parse(raw) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host().is_none() => {
            out.push(Problem::new(
                key,
                "must be an http or https url with a host",
            ));
        }
        Ok(u) if u.path() != "/" || u.query().is_some() || u.fragment().is_some() => {
            out.push(Problem::new(
                key,
                "must be a base url without path, query or fragment",
            ));
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            out.push(Problem::new(key, "must not carry credentials"));
        }
        Ok(_) => {}
        Err(e) => out.push(Problem::new(key, format!("not a url: {e}"))),
    }
}

/// One scheme per region; `https` needs `ca_file`; TLS settings without `https` upstreams and
/// half a client certificate are refused, so nobody believes TLS is on when it is not.
fn check_upstream_tls(prefix: &str, r: &RegionEntry, out: &mut Vec<Problem>) {
    let https = r.uses_tls();
    let mixed = r.upstreams.iter().any(|u| {
        let lower = u.trim_start().to_ascii_lowercase();
        lower.starts_with("https://") != https
    });
    if mixed {
        out.push(Problem::new(
            format!("{prefix}.upstreams"),
            "all upstreams of a region must use the same scheme (http or https)",
        ));
    }
    match (&r.ca_file, https) {
        (None, true) => out.push(Problem::new(
            format!("{prefix}.ca_file"),
            "required for https upstreams: the pem ca certificate that signed the region's node certificates (no system roots are used)",
        )),
        (Some(f), true) => check_file(&format!("{prefix}.ca_file"), f, out),
        (Some(_), false) => out.push(Problem::new(
            format!("{prefix}.ca_file"),
            "set only with https upstreams",
        )),
        (None, false) => {}
    }
    if !https && (r.client_cert_file.is_some() || r.client_key_file.is_some()) {
        out.push(Problem::new(
            format!("{prefix}.client_cert_file"),
            "set only with https upstreams",
        ));
        return;
    }
    match (&r.client_cert_file, &r.client_key_file) {
        (Some(c), Some(k)) => {
            check_file(&format!("{prefix}.client_cert_file"), c, out);
            check_file(&format!("{prefix}.client_key_file"), k, out);
        }
        (Some(_), None) => out.push(Problem::new(
            format!("{prefix}.client_key_file"),
            "required with client_cert_file",
        )),
        (None, Some(_)) => out.push(Problem::new(
            format!("{prefix}.client_cert_file"),
            "required with client_key_file",
        )),
        (None, None) => {}
    }
}
