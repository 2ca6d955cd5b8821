//! Custom domains: a customer's own hostname (`api.acme.example`) served by the gateway with
//! the customer's certificate, for that customer's credentials only.
//!
//! - [`parse_hostname`]: the one rule for a hostname (lowercase DNS name, no wildcard, no IP
//!   address, no trailing dot), used by the admin API, the directory file and the gateway's
//!   request path alike;
//! - [`is_cert_ref`]: the name of a certificate under the gateway's `tls.domains_dir` (one
//!   path segment: never a path out of that directory);
//! - [`DomainState`]: `pending` → `active` | `failed`, and `removed`;
//! - [`DomainEntry`]: a domain in the file directory.

use serde::{Deserialize, Serialize};

use crate::TenantId;

/// Verification state of a custom domain. Only `active` domains get their certificate and
/// the tenant check on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DomainState {
    /// Registered; its certificate is not present (yet).
    Pending,
    /// Its certificate parses, its key matches, it is in date and names the hostname.
    Active,
    /// Its certificate is present but unusable (`reason` says why).
    Failed,
    /// Removed; the hostname may be registered again.
    Removed,
}

impl DomainState {
    /// The lowercase spelling (the directory column's value).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Failed => "failed",
            Self::Removed => "removed",
        }
    }
}

/// What [`parse_hostname`] requires, for error messages.
pub const HOSTNAME_RULE: &str = "must be a dns name of at least two labels (letters, digits and \
     hyphens, 1-63 characters each, at most 253 in all), without a wildcard, a trailing dot \
     or an ip address";

/// A custom domain's hostname, lowercased: at least two labels of `[a-z0-9-]` (1-63 each, no
/// leading or trailing hyphen), at most 253 characters, the last label not all digits (so
/// never an IPv4 address); no wildcard, no trailing dot, no port.
///
/// # Errors
/// [`HOSTNAME_RULE`] when `raw` is not such a name.
pub fn parse_hostname(raw: &str) -> Result<String, &'static str> {
    let host = raw.to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = host.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| label_ok(l))
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(host)
    } else {
        Err(HOSTNAME_RULE)
    }
}

/// What [`is_cert_ref`] requires, for error messages.
pub const CERT_REF_RULE: &str = "must be 1-253 characters of [a-z0-9.-_], starting and ending \
     with a letter or digit, without '..'";

/// Whether `name` can name a certificate directory under `tls.domains_dir`: one path
/// segment of `[a-z0-9._-]` (a Kubernetes Secret name fits), never `.`/`..` or a separator.
#[must_use]
pub fn is_cert_ref(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=253).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-_".contains(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

/// One custom domain in the file directory (`[[domains]]`): always active, its certificate
/// read from `<tls.domains_dir>/<cert_ref>/tls.crt` and `tls.key`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DomainEntry {
    /// The hostname ([`parse_hostname`]).
    pub hostname: String,
    /// The tenant whose hostname it is.
    pub tenant: TenantId,
    /// The certificate's directory under `tls.domains_dir`; the hostname when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ref: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert_eq!(
            parse_hostname("API.Acme.Example").unwrap(),
            "api.acme.example"
        );
        assert_eq!(parse_hostname("a-b.c9.io").unwrap(), "a-b.c9.io");
        for bad in [
            "",
            "localhost",
            "*.acme.example",
            "acme.example.",
            "10.0.0.1",
            "[::1]",
            "acme.example:443",
            "-a.example",
            "a-.example",
            "a..example",
            "a_b.example",
            "exa mple.com",
            &format!("{}.example", "a".repeat(64)),
            &format!("{}.example", ["a"; 127].join(".")),
        ] {
            assert!(parse_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cert_refs_are_one_safe_path_segment() {
        for good in ["api.acme.example", "acme-tls", "a", "x_y.z"] {
            assert!(is_cert_ref(good), "{good}");
        }
        for bad in [
            "", ".", "..", "../etc", "a/b", "a..b", ".hidden", "A", "a-", "a b",
        ] {
            assert!(!is_cert_ref(bad), "{bad}");
        }
    }
}
