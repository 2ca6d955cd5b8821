//! The transport of a Postgres connection URL: libpq's `sslmode`, `sslrootcert`, `sslcert`
//! and `sslkey` parameters, read without opening anything (`residency-pg` builds the rustls
//! connector from them).
//!
//! Modes: `disable`, `require` (encrypted, certificate not checked; with `sslrootcert` it is
//! `verify-ca`, as in libpq), `verify-ca` (chain checked against `sslrootcert`), `verify-full`
//! (chain and host name). Without `sslmode`, a loopback host or a Unix socket is `disable`
//! and any other host `verify-full`: production URLs are verified unless they say otherwise.
//! `allow` and `prefer` (clear text when the server declines) are refused.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::secret::{ConnectionUrl, Secret};
use crate::Problem;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Clear text.
    Disable,
    /// TLS without checking the server's certificate.
    Require,
    /// TLS; the server's chain must lead to `sslrootcert`.
    VerifyCa,
    /// TLS; chain as `VerifyCa` and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A Postgres URL split into what `tokio-postgres` understands and the TLS settings it does not.
#[derive(Clone)]
pub struct PgUrl {
    /// The URL without `sslrootcert`/`sslcert`/`sslkey`, with `sslmode` as `disable` or
    /// `require` (all `tokio-postgres` knows). Holds the password: never print it.
    pub connect_url: String,
    /// The effective mode.
    pub mode: SslMode,
    /// Whether the URL named its `sslmode` (else it is the default for its host).
    pub mode_given: bool,
    /// `sslrootcert`: the PEM CA file trusted for the server.
    pub root_cert: Option<PathBuf>,
    /// `sslcert` and `sslkey`: the client certificate chain and key (PEM), both or neither.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Hosts the URL connects to (`host` part, `host` and `hostaddr` parameters).
    pub hosts: Vec<String>,
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUrl")
            .field("connect_url", &crate::redact_url(&self.connect_url))
            .field("mode", &self.mode)
            .field("root_cert", &self.root_cert)
            .field("client_cert", &self.client_cert)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// Whether `host` is a Unix socket directory, `localhost` or a loopback address.
#[must_use]
pub fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl PgUrl {
    /// Splits `url` (a `postgres://` URL).
    ///
    /// # Errors
    /// A message without the URL (it may hold a password): not a URL, an unsupported or
    /// unknown `sslmode`, `sslcert` without `sslkey` (or the reverse), a verifying mode
    /// without `sslrootcert`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let mut u = url::Url::parse(url).map_err(|e| format!("not a url: {e}"))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err("must be a postgres:// url".to_owned());
        }
        let mut hosts: Vec<String> = u.host_str().map(str::to_owned).into_iter().collect();
        let (mut mode, mut root_cert, mut cert, mut key) = (None, None, None, None);
        for (k, v) in u.query_pairs() {
            match &*k {
                "sslmode" => mode = Some(v.into_owned()),
                "sslrootcert" => root_cert = Some(PathBuf::from(&*v)),
                "sslcert" => cert = Some(PathBuf::from(&*v)),
                "sslkey" => key = Some(PathBuf::from(&*v)),
                "host" | "hostaddr" => hosts.extend(v.split(',').map(str::to_owned)),
                _ => {}
            }
        }
        if hosts.iter().all(String::is_empty) {
            // libpq's default: the local Unix socket.
            hosts = vec!["/var/run/postgresql".to_owned()];
        }
        let local = hosts.iter().all(|h| h.is_empty() || is_local_host(h));
        let mode_given = mode.is_some();
        let mut mode = match mode.as_deref() {
            None if local => SslMode::Disable,
            None => SslMode::VerifyFull,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(m @ ("allow" | "prefer")) => {
                return Err(format!(
                    "sslmode={m} may fall back to clear text: use disable, require, verify-ca or verify-full"
                ))
            }
            Some(m) => {
                return Err(format!(
                    "unknown sslmode {m:?}: use disable, require, verify-ca or verify-full"
                ))
            }
        };
        if mode == SslMode::Require && root_cert.is_some() {
            mode = SslMode::VerifyCa;
        }
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(format!(
                "sslmode {}{} needs sslrootcert=<PEM CA file>",
                mode.as_str(),
                if mode_given {
                    ""
                } else {
                    " (the default for a non-loopback host)"
                }
            ));
        }
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("sslcert and sslkey go together".to_owned()),
        };
        let mut query = without_tls_params(&u);
        query.push(if mode == SslMode::Disable {
            "sslmode=disable"
        } else {
            "sslmode=require"
        });
        let query = query.join("&");
        u.set_query(Some(&query));
        Ok(Self {
            connect_url: u.into(),
            mode,
            mode_given,
            root_cert,
            client_cert,
            hosts,
        })
    }

    /// The first host this URL would reach in clear text that is not local, if any.
    #[must_use]
    pub fn clear_remote_host(&self) -> Option<&str> {
        if self.mode != SslMode::Disable {
            return None;
        }
        self.hosts
            .iter()
            .find(|h| !h.is_empty() && !is_local_host(h))
            .map(String::as_str)
    }

    /// Refuses clear text to a non-local host unless `allow_insecure`; `allow_key` is the
    /// setting that would allow it, named in the message.
    ///
    /// # Errors
    /// The refusal, naming the host and `allow_key`.
    pub fn check_transport(&self, allow_insecure: bool, allow_key: &str) -> Result<(), String> {
        match self.clear_remote_host() {
            Some(host) if !allow_insecure => Err(format!(
                "would connect in clear text (sslmode=disable) to {host}, which is not a loopback \
                 host: use sslmode=verify-full with sslrootcert, or set {allow_key} = true"
            )),
            _ => Ok(()),
        }
    }
}

/// The raw `k=v` segments of `u`'s query except libpq's TLS parameters, as written: a
/// re-encoding would turn `%20` into `+`, which `tokio-postgres` does not read as a space.
#[must_use]
pub fn without_tls_params(u: &url::Url) -> Vec<&str> {
    u.query()
        .unwrap_or_default()
        .split('&')
        .filter(|seg| {
            let key = seg.split('=').next().unwrap_or_default();
            !seg.is_empty() && !matches!(key, "sslmode" | "sslrootcert" | "sslcert" | "sslkey")
        })
        .collect()
}

/// Adds the problems of `url`'s transport under `key`: its TLS parameters, unreadable
/// certificate files, clear text to a non-loopback host unless `allow_insecure` (`allow_key`).
pub(crate) fn check_transport(
    key: &str,
    url: &Secret<ConnectionUrl>,
    allow_insecure: bool,
    allow_key: &str,
    out: &mut Vec<Problem>,
) {
    let is_postgres = url::Url::parse(url.expose())
        .is_ok_and(|u| matches!(u.scheme(), "postgres" | "postgresql"));
    if !is_postgres {
        // The URL check of `key` reports that.
        return;
    }
    match PgUrl::parse(url.expose()) {
        Err(e) => out.push(Problem::new(key, e)),
        Ok(p) => {
            if let Err(e) = p.check_transport(allow_insecure, allow_key) {
                out.push(Problem::new(key, e));
            }
            let files = p
                .root_cert
                .iter()
                .chain(p.client_cert.iter().flat_map(|(c, k)| [c, k]));
            for f in files {
                crate::load::check_file(key, f, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_depend_on_the_host() {
        let local = PgUrl::parse("postgres://app:pw@127.0.0.1:5432/db").unwrap();
        assert_eq!(local.mode, SslMode::Disable);
        assert!(!local.mode_given);
        assert!(local.connect_url.ends_with("?sslmode=disable"));
        assert!(PgUrl::parse("postgres://app@localhost/db").unwrap().mode == SslMode::Disable);
        assert!(PgUrl::parse("postgres://app@[::1]/db").unwrap().mode == SslMode::Disable);
        let e = PgUrl::parse("postgres://app:pw@db.eu.internal/db").unwrap_err();
        assert!(
            e.contains("verify-full (the default for a non-loopback host)"),
            "{e}"
        );
        assert!(!e.contains("pw"), "{e}");
        let remote =
            PgUrl::parse("postgres://app:pw@db.eu.internal/db?sslrootcert=/ca.pem").unwrap();
        assert_eq!(remote.mode, SslMode::VerifyFull);
        assert_eq!(
            remote.root_cert.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert_eq!(
            remote.connect_url,
            "postgres://app:pw@db.eu.internal/db?sslmode=require"
        );
    }

    #[test]
    fn libpq_parameters_are_read_and_stripped() {
        let p = PgUrl::parse(
            "postgresql://u@h:5433/d?application_name=x&sslmode=verify-ca&sslrootcert=%2Fa%20b%2Fca.pem&sslcert=c.pem&sslkey=k.pem",
        )
        .unwrap();
        assert_eq!(p.mode, SslMode::VerifyCa);
        assert_eq!(p.root_cert, Some(PathBuf::from("/a b/ca.pem")));
        assert_eq!(
            p.client_cert,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
        assert_eq!(
            p.connect_url,
            "postgresql://u@h:5433/d?application_name=x&sslmode=require"
        );
        // `require` with a CA file verifies the chain, as in libpq.
        let r = PgUrl::parse("postgres://u@h/d?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(r.mode, SslMode::VerifyCa);
        let r = PgUrl::parse("postgres://u@h/d?sslmode=require").unwrap();
        assert_eq!(r.mode, SslMode::Require);
        // Other parameters pass through as written.
        let o = PgUrl::parse("postgres://u@h/d?options=-c%20a%3Db&sslmode=require").unwrap();
        assert_eq!(
            o.connect_url,
            "postgres://u@h/d?options=-c%20a%3Db&sslmode=require"
        );
    }

    #[test]
    fn bad_parameters_are_refused() {
        for (url, want) in [
            (
                "postgres://u@h/d?sslmode=prefer",
                "may fall back to clear text",
            ),
            (
                "postgres://u@h/d?sslmode=allow",
                "may fall back to clear text",
            ),
            ("postgres://u@h/d?sslmode=verify", "unknown sslmode"),
            ("postgres://u@h/d?sslmode=verify-ca", "needs sslrootcert"),
            (
                "postgres://u@h/d?sslmode=require&sslcert=c.pem",
                "go together",
            ),
            ("mysql://u@h/d", "postgres://"),
        ] {
            let e = PgUrl::parse(url).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
        }
    }

    #[test]
    fn clear_text_to_a_remote_host_needs_the_switch() {
        let p = PgUrl::parse("postgres://u:pw@db.eu.internal/d?sslmode=disable").unwrap();
        assert_eq!(p.clear_remote_host(), Some("db.eu.internal"));
        let e = p
            .check_transport(false, "database.allow_insecure_transport")
            .unwrap_err();
        assert!(e.contains("db.eu.internal"), "{e}");
        assert!(
            e.contains("database.allow_insecure_transport = true"),
            "{e}"
        );
        assert!(p.check_transport(true, "k").is_ok());
        // A remote hostaddr behind a local-looking host name is still remote.
        let p = PgUrl::parse("postgres://u@localhost/d?hostaddr=10.0.0.7&sslmode=disable").unwrap();
        assert_eq!(p.clear_remote_host(), Some("10.0.0.7"));
        let p = PgUrl::parse("postgres://u@localhost/d?host=%2Ftmp").unwrap();
        assert_eq!(p.mode, SslMode::Disable);
        assert_eq!(p.clear_remote_host(), None);
        let p = PgUrl::parse("postgres://u@db/d?sslmode=require").unwrap();
        assert_eq!(p.clear_remote_host(), None);
    }
}
