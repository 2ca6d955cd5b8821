//! Checks a custom domain's certificate before the directory calls it `active`: present
//! (else `pending`), a pair that loads with the listener's own loader (parses, key matches),
//! in date, and naming the hostname in its subject alternative names, wildcards included
//! (else `failed`, with the reason). Also reads the names of the default certificate, which no
//! customer may register.

use std::path::Path;

use residency_core::domain::DomainState;
use residency_directory::DomainVerdict;
use residency_http::tls_reload::ReloadingCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::directory::domains::CertDir;

fn verdict(state: DomainState, reason: impl Into<String>) -> DomainVerdict {
    DomainVerdict {
        state,
        reason: reason.into(),
    }
}

/// The verdict on `hostname`'s certificate `cert_ref` under `dir` at `now` (Unix seconds).
pub(crate) fn check(
    dir: Option<&CertDir>,
    hostname: &str,
    cert_ref: &str,
    now: i64,
) -> DomainVerdict {
    let Some(dir) = dir else {
        return verdict(
            DomainState::Pending,
            "tls.domains_dir is not configured on this gateway",
        );
    };
    let (cert_file, key_file) = dir.files(cert_ref);
    if !cert_file.is_file() || !key_file.is_file() {
        return verdict(
            DomainState::Pending,
            format!("no certificate yet: {cert_ref}/tls.crt and {cert_ref}/tls.key are not both in tls.domains_dir"),
        );
    }
    let pair =
        match ReloadingCert::load(&cert_file, &key_file, std::sync::Arc::clone(&dir.provider)) {
            Ok(pair) => pair,
            Err(e) => {
                // The message names the file; show it relative to domains_dir.
                let text = e
                    .to_string()
                    .replace(&format!("{}/", dir.dir.display()), "");
                return verdict(
                    DomainState::Failed,
                    format!("unusable certificate or key: {text}"),
                );
            }
        };
    let key = pair.current();
    let Some(leaf) = key.cert.first() else {
        return verdict(
            DomainState::Failed,
            "the certificate file holds no certificate",
        );
    };
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else {
        return verdict(
            DomainState::Failed,
            "the certificate does not parse as x.509",
        );
    };
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return verdict(
            DomainState::Failed,
            format!(
                "the certificate is not valid before {}",
                validity.not_before
            ),
        );
    }
    if now > validity.not_after.timestamp() {
        return verdict(
            DomainState::Failed,
            format!("the certificate expired on {}", validity.not_after),
        );
    }
    let names = dns_names(&cert);
    if !covers(&names, hostname) {
        return verdict(
            DomainState::Failed,
            format!(
                "the certificate does not name {hostname} (its names: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        );
    }
    verdict(DomainState::Active, "")
}

/// The DNS names in a certificate's subject alternative names (lowercase).
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The DNS names of the first certificate in the PEM file `path` (the default certificate);
/// empty when it cannot be read.
pub(crate) fn names_in_pem(path: &Path) -> Vec<String> {
    let Ok(der) = CertificateDer::from_pem_file(path) else {
        return Vec::new();
    };
    X509Certificate::from_der(der.as_ref())
        .map(|(_, c)| dns_names(&c))
        .unwrap_or_default()
}

/// Whether one of `names` matches `hostname` as a TLS client would check it: equal, or a
/// `*.` wildcard standing for exactly one leftmost label.
pub(crate) fn covers(names: &[String], hostname: &str) -> bool {
    names.iter().any(|n| match n.strip_prefix("*.") {
        Some(suffix) => hostname
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => n == hostname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use std::sync::Arc;

    /// A self-signed pair for `names`, valid from `from` to `to` (years), written as
    /// `cert_ref`; with `other_key`, the key file holds a key that does not match.
    fn install(dir: &Path, cert_ref: &str, names: &[&str], years: (i32, i32), other_key: bool) {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        p.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        p.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let cert = p.self_signed(&key).unwrap();
        let d = dir.join(cert_ref);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tls.crt"), cert.pem()).unwrap();
        let key_pem = if other_key {
            KeyPair::generate().unwrap().serialize_pem()
        } else {
            key.serialize_pem()
        };
        std::fs::write(d.join("tls.key"), key_pem).unwrap();
    }

    #[test]
    fn a_certificate_is_active_only_when_present_matching_in_date_and_naming_the_host() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertDir {
            dir: tmp.path().to_owned(),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        };
        let now = chrono::Utc::now().timestamp();
        let state = |cert_ref: &str| check(Some(&dir), "api.a.example", cert_ref, now);
        assert_eq!(
            check(None, "api.a.example", "x", now).state,
            DomainState::Pending
        );
        assert_eq!(state("missing").state, DomainState::Pending);
        install(tmp.path(), "good", &["api.a.example"], (2020, 4000), false);
        assert_eq!(state("good"), verdict(DomainState::Active, ""));
        install(tmp.path(), "wild", &["*.a.example"], (2020, 4000), false);
        assert_eq!(state("wild").state, DomainState::Active);
        install(tmp.path(), "other", &["www.a.example"], (2020, 4000), false);
        let v = state("other");
        assert_eq!(v.state, DomainState::Failed);
        assert!(v.reason.contains("www.a.example"), "{v:?}");
        install(
            tmp.path(),
            "expired",
            &["api.a.example"],
            (2000, 2001),
            false,
        );
        let v = state("expired");
        assert!(
            v.state == DomainState::Failed && v.reason.contains("expired"),
            "{v:?}"
        );
        install(
            tmp.path(),
            "future",
            &["api.a.example"],
            (3000, 4000),
            false,
        );
        let v = state("future");
        assert!(
            v.state == DomainState::Failed && v.reason.contains("not valid before"),
            "{v:?}"
        );
        install(
            tmp.path(),
            "mismatch",
            &["api.a.example"],
            (2020, 4000),
            true,
        );
        let v = state("mismatch");
        assert!(
            v.state == DomainState::Failed && v.reason.contains("does not match"),
            "{v:?}"
        );
        // The reason names the file relative to domains_dir, not the server's paths.
        assert!(
            !v.reason.contains(&tmp.path().display().to_string()),
            "{v:?}"
        );
    }

    #[test]
    fn the_default_certificates_names_are_read_from_its_pem() {
        let tmp = tempfile::tempdir().unwrap();
        install(
            tmp.path(),
            "d",
            &["gw.example", "*.gw.example"],
            (2020, 4000),
            false,
        );
        assert_eq!(
            names_in_pem(&tmp.path().join("d/tls.crt")),
            vec!["gw.example".to_owned(), "*.gw.example".to_owned()]
        );
        assert!(names_in_pem(&tmp.path().join("nothing")).is_empty());
    }

    #[test]
    fn wildcards_cover_one_label() {
        let names = vec!["*.gw.example".to_owned(), "gw.example".to_owned()];
        assert!(covers(&names, "gw.example"));
        assert!(covers(&names, "api.gw.example"));
        assert!(!covers(&names, "a.b.gw.example"));
        assert!(!covers(&names, "gw.example.evil"));
        assert!(!covers(&names, "xgw.example"));
    }
}
