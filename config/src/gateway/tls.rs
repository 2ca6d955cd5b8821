//! `[tls]`: the certificate and key of the public listener.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::load::check_file;
use crate::Problem;

/// `[tls]`: certificate and key of the public listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the files' modification time and length are checked; a change reloads the
    /// pair without dropping connections (`SIGHUP` reloads too). `"0s"`: only on `SIGHUP`.
    #[serde(
        default = "default_reload_interval",
        with = "crate::duration::serde_str"
    )]
    pub reload_interval: Duration,
    /// Certificates of customers' custom domains: a domain whose `cert_ref` is `acme` is
    /// served with `<domains_dir>/acme/tls.crt` and `tls.key` (a mounted cert-manager Secret
    /// has that layout), re-read when they change (checked every `reload_interval`). Private
    /// keys never go into the directory database. Without it, custom domains are still
    /// enforced (a request on a customer's hostname needs that customer's credential) but
    /// never get their own certificate and never verify as `active`.
    #[serde(default)]
    pub domains_dir: Option<PathBuf>,
}

/// Ten seconds: rotation shows up well within a minute without stat-ing files constantly.
pub(crate) fn default_reload_interval() -> Duration {
    Duration::from_secs(10)
}

impl TlsConfig {
    /// Both files must be readable; `domains_dir`, when set, must be a directory.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        check_file("tls.cert_file", &self.cert_file, &mut out);
        check_file("tls.key_file", &self.key_file, &mut out);
        if let Some(dir) = &self.domains_dir {
            if !dir.is_dir() {
                out.push(Problem::new(
                    "tls.domains_dir",
                    format!("{} is not a readable directory", dir.display()),
                ));
            }
        }
        out
    }
}
