//! `[tls]`: the certificate and key of the public listener.

use std::path::PathBuf;

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
}

impl TlsConfig {
    /// Both files must be readable.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        check_file("tls.cert_file", &self.cert_file, &mut out);
        check_file("tls.key_file", &self.key_file, &mut out);
        out
    }
}
