//! Custom domains in memory: hostname → tenant, and the certificate new handshakes on that
//! hostname get.
//!
//! Filled by the same sources as the tenant cache (the directory file at start; the Postgres
//! directory's full loads and `NOTIFY` re-reads), read by the request path
//! ([`Domains::tenant_of`]: one dashmap probe, no I/O) and by the TLS resolver
//! ([`Domains::cert`]: one probe and an `Arc` clone). Only `active` domains answer either.
//!
//! Certificates are loaded when a domain becomes active or changes (never during a
//! handshake), from `<tls.domains_dir>/<cert_ref>/tls.crt` and `tls.key` with the public
//! listener's loader ([`ReloadingCert`]), and re-read when their files change
//! ([`Domains::spawn_reloader`]). A certificate that cannot be loaded leaves the domain
//! without one (handshakes get the default certificate; the tenant check still applies) and
//! is retried on every reload tick.
//!
//! Ordering: every row carries its directory version (it only grows, removal included: a
//! removed domain is a row in state `removed`), so an older read never replaces a newer one;
//! read tickets ([`super::cache::Cache::read_ticket`]) order "row gone" (an operator's
//! `DELETE`) against reads that still saw it, and let a full load sweep rows it did not see.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use residency_core::domain::DomainState;
use residency_core::TenantId;
use residency_http::tls_reload::ReloadingCert;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// Where custom domain certificates are read from (`tls.domains_dir`).
#[derive(Debug, Clone)]
pub(crate) struct CertDir {
    /// The directory holding one sub-directory per `cert_ref`.
    pub(crate) dir: PathBuf,
    /// The provider certificates are checked with.
    pub(crate) provider: Arc<CryptoProvider>,
}

impl CertDir {
    /// `(tls.crt, tls.key)` of `cert_ref`. The caller checked `cert_ref` is one plain path
    /// segment ([`residency_core::domain::is_cert_ref`]; the directory's CHECK too).
    pub(crate) fn files(&self, cert_ref: &str) -> (PathBuf, PathBuf) {
        let base = self.dir.join(cert_ref);
        (base.join("tls.crt"), base.join("tls.key"))
    }

    fn load(&self, hostname: &str, cert_ref: &str) -> Option<Arc<ReloadingCert>> {
        let (cert, key) = self.files(cert_ref);
        match ReloadingCert::load(&cert, &key, Arc::clone(&self.provider)) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(hostname, error = %e, "custom domain certificate not loaded; serving the default certificate");
                None
            }
        }
    }
}

/// A domain as a source read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DomainRow {
    /// Lowercase hostname.
    pub(crate) hostname: String,
    /// Owner.
    pub(crate) tenant: TenantId,
    /// Certificate directory name.
    pub(crate) cert_ref: String,
    /// Only `active` rows are served.
    pub(crate) state: DomainState,
    /// Directory version (0 for the file directory).
    pub(crate) version: i64,
}

impl From<&residency_core::wire::admin::Domain> for DomainRow {
    fn from(d: &residency_core::wire::admin::Domain) -> Self {
        Self {
            hostname: d.hostname.clone(),
            tenant: d.tenant_id,
            cert_ref: d.cert_ref.clone(),
            state: d.state,
            version: d.version,
        }
    }
}

#[derive(Debug)]
struct Slot {
    row: DomainRow,
    /// The latest read ticket that saw the row.
    seen: u64,
    cert: Option<Arc<ReloadingCert>>,
}

/// The custom domains this gateway knows, by lowercase hostname.
#[derive(Debug, Default)]
pub struct Domains {
    map: DashMap<String, Slot, foldhash::fast::RandomState>,
    certs: OnceLock<CertDir>,
}

impl Domains {
    /// Sets where certificates come from (once, at start) and loads those of the active
    /// domains already known.
    pub(crate) fn set_cert_dir(&self, dir: CertDir) {
        if self.certs.set(dir).is_ok() {
            self.load_missing();
        }
    }

    /// Where certificates come from, when `tls.domains_dir` is set.
    #[must_use]
    pub(crate) fn cert_dir(&self) -> Option<&CertDir> {
        self.certs.get()
    }

    /// The tenant whose active custom domain `hostname` (lowercase) is.
    #[must_use]
    pub fn tenant_of(&self, hostname: &str) -> Option<TenantId> {
        let slot = self.map.get(hostname)?;
        (slot.row.state == DomainState::Active).then_some(slot.row.tenant)
    }

    /// The certificate of the active custom domain `hostname` (lowercase), when loaded.
    #[must_use]
    pub(crate) fn cert(&self, hostname: &str) -> Option<Arc<CertifiedKey>> {
        let slot = self.map.get(hostname)?;
        if slot.row.state != DomainState::Active {
            return None;
        }
        slot.cert.as_ref().map(|c| c.current())
    }

    /// Applies `row` as read by the read with ticket `read`, unless a newer version is held.
    /// The certificate is (re)loaded here, off the handshake path, when the domain becomes
    /// active or its `cert_ref` changes.
    pub(crate) fn apply(&self, row: DomainRow, read: u64) {
        let keep_cert = self.map.get(&row.hostname).and_then(|s| {
            (s.row.state == DomainState::Active && s.row.cert_ref == row.cert_ref)
                .then(|| s.cert.clone())
                .flatten()
        });
        let cert = match (&keep_cert, row.state, self.certs.get()) {
            (Some(_), _, _) | (None, _, None) => keep_cert,
            (None, DomainState::Active, Some(dir)) => dir.load(&row.hostname, &row.cert_ref),
            (None, _, Some(_)) => None,
        };
        let mut slot = self
            .map
            .entry(row.hostname.clone())
            .or_insert_with(|| Slot {
                row: row.clone(),
                seen: read,
                cert: None,
            });
        slot.seen = slot.seen.max(read);
        if slot.row.version <= row.version {
            slot.row = row;
            slot.cert = if slot.row.state == DomainState::Active {
                cert
            } else {
                None
            };
        }
    }

    /// A re-read with ticket `read` found no row for `hostname` (deleted in the database):
    /// it goes, unless a later read saw it.
    pub(crate) fn evict(&self, hostname: &str, read: u64) {
        self.map.remove_if(hostname, |_, s| s.seen < read);
    }

    /// After a full load that started with ticket `load`: drops every domain no read since
    /// then has seen. Returns how many.
    pub(crate) fn sweep_unseen(&self, load: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, s| s.seen >= load);
        before - self.map.len()
    }

    /// Domains held (any state).
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Loads the certificates of active domains that have none (set at start, or a load
    /// failed before), and reloads those whose files changed.
    fn load_missing(&self) {
        let Some(dir) = self.certs.get() else { return };
        let todo: Vec<(String, String, Option<Arc<ReloadingCert>>)> = self
            .map
            .iter()
            .filter(|s| s.row.state == DomainState::Active)
            .map(|s| (s.key().clone(), s.row.cert_ref.clone(), s.cert.clone()))
            .collect();
        for (hostname, cert_ref, cert) in todo {
            match cert {
                Some(c) => match c.reload_if_changed() {
                    None => {}
                    Some(Ok(())) => tracing::info!(hostname, "custom domain certificate reloaded"),
                    Some(Err(e)) => {
                        tracing::error!(hostname, error = %e, "custom domain certificate reload failed; keeping the previous one")
                    }
                },
                None => {
                    let Some(loaded) = dir.load(&hostname, &cert_ref) else {
                        continue;
                    };
                    if let Some(mut s) = self.map.get_mut(&hostname) {
                        if s.row.state == DomainState::Active
                            && s.row.cert_ref == cert_ref
                            && s.cert.is_none()
                        {
                            s.cert = Some(loaded);
                        }
                    }
                }
            }
        }
    }

    /// Every `interval` (none when zero), reloads changed certificate files and retries the
    /// ones that could not be loaded, until `shutdown`. File I/O runs on a blocking thread.
    pub(crate) fn spawn_reloader(
        self: &Arc<Self>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        if interval.is_zero() {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let this = Arc::clone(&this);
                        let _ = tokio::task::spawn_blocking(move || this.load_missing()).await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, tenant: TenantId, state: DomainState, version: i64) -> DomainRow {
        DomainRow {
            hostname: host.into(),
            tenant,
            cert_ref: host.into(),
            state,
            version,
        }
    }

    #[test]
    fn only_active_domains_answer_and_older_reads_lose() {
        let d = Domains::default();
        let (a, b) = (
            TenantId::from_uuid(uuid::Uuid::now_v7()),
            TenantId::from_uuid(uuid::Uuid::now_v7()),
        );
        d.apply(row("api.a.example", a, DomainState::Pending, 1), 1);
        assert_eq!(d.tenant_of("api.a.example"), None);
        d.apply(row("api.a.example", a, DomainState::Active, 2), 2);
        assert_eq!(d.tenant_of("api.a.example"), Some(a));
        // An older read arriving late changes nothing.
        d.apply(row("api.a.example", a, DomainState::Pending, 1), 1);
        assert_eq!(d.tenant_of("api.a.example"), Some(a));
        d.apply(row("api.a.example", a, DomainState::Removed, 3), 3);
        assert_eq!(d.tenant_of("api.a.example"), None);
        d.apply(row("api.a.example", b, DomainState::Active, 4), 4);
        assert_eq!(d.tenant_of("api.a.example"), Some(b));
        assert_eq!(d.tenant_of("API.a.example"), None, "keys are lowercase");
        // A deletion read before a later read that saw the row does not evict it.
        d.evict("api.a.example", 3);
        assert_eq!(d.tenant_of("api.a.example"), Some(b));
        d.evict("api.a.example", 5);
        assert_eq!(d.tenant_of("api.a.example"), None);
    }

    #[test]
    fn a_full_load_sweeps_what_it_did_not_see() {
        let d = Domains::default();
        let a = TenantId::from_uuid(uuid::Uuid::now_v7());
        d.apply(row("old.a.example", a, DomainState::Active, 1), 1);
        d.apply(row("kept.a.example", a, DomainState::Active, 1), 1);
        d.apply(row("kept.a.example", a, DomainState::Active, 1), 5);
        assert_eq!(d.sweep_unseen(5), 1);
        assert_eq!(d.tenant_of("old.a.example"), None);
        assert_eq!(d.tenant_of("kept.a.example"), Some(a));
    }
}
