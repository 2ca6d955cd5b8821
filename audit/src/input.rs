//! What an audit takes (the regions and the directory's tenants) and what it reports while it
//! runs. Shared by the scan, the posture checks and the sources, so none of them imports the
//! crate root.

use std::fmt;
use std::time::Duration;

use residency_core::wire::moves::MovePhase;
use residency_core::RegionId;
use residency_core::{TenantEntry, TenantId};

use crate::pg::ScanError;
use crate::report::RoutingEvidence;

/// The longest a region's scan may take by default.
pub(crate) const DEFAULT_REGION_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything an audit needs.
#[derive(Debug, Clone)]
pub struct AuditInput {
    /// The regions to audit.
    pub regions: Vec<RegionInput>,
    /// Every tenant the directory knows, with its home region and status.
    pub tenants: Vec<TenantEntry>,
    /// The longest one region's scan may take; past it the region is `failed`.
    pub region_timeout: Duration,
    /// Tenant moves the directory has in flight (not `done` or `rolled_back`): while one is
    /// copying, verifying, flipped or purging, its tenant's rows in its two regions are
    /// expected.
    pub moves: Vec<MoveInFlight>,
}

/// A tenant move in flight, as the directory records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveInFlight {
    /// The tenant.
    pub tenant: TenantId,
    /// Source region.
    pub from: RegionId,
    /// Target region.
    pub to: RegionId,
    /// Its phase.
    pub phase: MovePhase,
}

impl MoveInFlight {
    /// A move as the directory stores it (`None` when a stored region id is not valid).
    #[must_use]
    pub fn from_record(tenant: TenantId, from: &str, to: &str, phase: MovePhase) -> Option<Self> {
        Some(Self {
            tenant,
            from: RegionId::new(from).ok()?,
            to: RegionId::new(to).ok()?,
            phase,
        })
    }

    /// Whether this move explains rows of its tenant in `region`: only in its own two
    /// regions, and only while rows legitimately exist in both (copying, verifying, flipped,
    /// purging). A `failed` move explains nothing: an operator must resume or abort it.
    #[must_use]
    pub fn explains(&self, region: &RegionId) -> bool {
        matches!(
            self.phase,
            MovePhase::Copying | MovePhase::Verifying | MovePhase::Flipped | MovePhase::Purging
        ) && (region == &self.from || region == &self.to)
    }
}

impl AuditInput {
    /// An input with the default timeout.
    #[must_use]
    pub fn new(regions: Vec<RegionInput>, tenants: Vec<TenantEntry>) -> Self {
        Self {
            regions,
            tenants,
            region_timeout: DEFAULT_REGION_TIMEOUT,
            moves: Vec::new(),
        }
    }
}

/// One region to audit.
#[derive(Clone)]
pub struct RegionInput {
    /// Region id.
    pub id: RegionId,
    /// Human name, e.g. `Europe`.
    pub display_name: String,
    /// Where the data lives, e.g. `Frankfurt, DE`.
    pub location: String,
    /// Postgres URL of the region database for the read-only auditor role. Secret: never
    /// printed (see the `Debug` impl and [`DatabaseInfo`](crate::report::DatabaseInfo)).
    pub auditor_url: String,
    /// The application role whose privileges are checked.
    pub app_role: String,
    /// The region's node URLs.
    pub upstreams: Vec<String>,
    /// Gateway figures for the region, when the caller could read them.
    pub routing: Option<RoutingEvidence>,
}

impl fmt::Debug for RegionInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionInput")
            .field("id", &self.id)
            .field("display_name", &self.display_name)
            .field("location", &self.location)
            .field("auditor_url", &"<redacted>")
            .field("app_role", &self.app_role)
            .field("upstreams", &self.upstreams)
            .field("routing", &self.routing)
            .finish()
    }
}

/// What the audit is doing, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// About to connect to a region database.
    Connecting {
        /// Region.
        region: &'a RegionId,
        /// `host:port/database`.
        database: &'a str,
    },
    /// One table's rows were counted.
    TableCounted {
        /// Region.
        region: &'a RegionId,
        /// Table.
        table: &'a str,
        /// Rows counted.
        rows: u64,
        /// Distinct tenants.
        tenants: usize,
        /// Time the count took.
        elapsed: Duration,
        /// Tables counted so far in this region.
        done: usize,
        /// Tables to count in this region.
        of: usize,
    },
    /// A region's scan finished.
    RegionDone {
        /// Region.
        region: &'a RegionId,
        /// Time the scan took.
        elapsed: Duration,
    },
    /// A region could not be audited.
    RegionFailed {
        /// Region.
        region: &'a RegionId,
        /// Why.
        error: &'a ScanError,
    },
}

/// A progress sink that ignores everything.
pub fn no_progress(_: Progress<'_>) {}
