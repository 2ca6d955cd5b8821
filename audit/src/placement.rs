//! Placement: compares the rows each region database holds with the directory's home regions.
//!
//! Pure: it takes the per-table counts read by [`crate::scan`] and the directory's tenants and
//! returns violations and per-tenant summaries, so every rule is unit-tested without Postgres.
//!
//! Rules:
//! - rows of a tenant whose directory home is another region: `misplaced_rows` (one per table),
//!   unless a move of that tenant between this region and its home explains them
//!   ([`MoveInFlight::explains`]: copying, verifying, flipped or purging; never once it is
//!   `done`, `failed` or `rolled_back`);
//! - rows of a tenant the directory does not know: `orphan_rows` (one per table);
//! - an `active` or `suspended` tenant (one that has been provisioned) without its row in the
//!   `tenants` table of its home region: `missing_home_record`; when its home region is not
//!   among the audited regions at all: `home_region_not_audited`.
//!
//! A region that could not be scanned, or whose `tenants` table could not be counted
//! completely, yields no `missing_home_record`: absence cannot be proven there, and the report
//! already says why (exit 2, or an `unauditable_table` / `auditor_blind` violation).

use std::collections::{BTreeMap, HashMap};

use residency_core::RegionId;
use residency_core::{TenantEntry, TenantStatus};

use crate::input::MoveInFlight;
use crate::report::{TenantPlacement, Violation, ViolationKind};
use crate::scan::TableScan;

/// The table holding each tenant's home record.
pub(crate) const HOME_TABLE: &str = "tenants";

/// The scan of one region for placement, or `None` when it could not be scanned.
pub(crate) struct RegionTables<'a> {
    pub id: &'a RegionId,
    pub tables: Option<&'a [TableScan]>,
}

/// The status as written in config and JSON.
#[must_use]
pub(crate) fn status_str(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Provisioning => "provisioning",
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
        TenantStatus::Moving => "moving",
        TenantStatus::Deleted => "deleted",
    }
}

/// Placement violations and, per region (same order as `regions`), the tenants found there.
pub(crate) fn evaluate(
    directory: &[TenantEntry],
    moves: &[MoveInFlight],
    regions: &[RegionTables<'_>],
) -> (Vec<Violation>, Vec<Vec<TenantPlacement>>) {
    let moving = |e: &TenantEntry, region: &RegionId| {
        moves.iter().any(|m| {
            m.tenant == e.id && m.explains(region) && (m.from == e.region || m.to == e.region)
        })
    };
    // The first entry wins if the directory lists a tenant twice.
    let mut by_id: HashMap<String, &TenantEntry> = HashMap::with_capacity(directory.len());
    for t in directory {
        by_id.entry(t.id.to_string()).or_insert(t);
    }
    let mut violations = Vec::new();
    let mut placements = Vec::with_capacity(regions.len());
    for region in regions {
        let Some(tables) = region.tables else {
            placements.push(Vec::new());
            continue;
        };
        let mut tenants: BTreeMap<&str, TenantPlacement> = BTreeMap::new();
        for table in tables.iter().filter(|t| t.counted) {
            for (tenant, rows) in &table.counts {
                let entry = by_id.get(tenant.as_str()).copied();
                let home = entry.map(|e| &e.region);
                let p = tenants
                    .entry(tenant.as_str())
                    .or_insert_with(|| TenantPlacement {
                        tenant_id: tenant.clone(),
                        name: entry.map(|e| e.name.clone()).filter(|n| !n.is_empty()),
                        home_region: home.cloned(),
                        status: entry.map(|e| status_str(e.status).to_owned()),
                        at_home: home == Some(region.id),
                        rows: 0,
                        tables: BTreeMap::new(),
                    });
                p.rows += rows;
                *p.tables.entry(table.name.clone()).or_default() += rows;
                match entry {
                    None => violations.push(Violation {
                        kind: ViolationKind::OrphanRows,
                        region: region.id.clone(),
                        tenant_id: Some(tenant.clone()),
                        table: Some(table.name.clone()),
                        role: None,
                        detail: format!(
                            "{rows} {} of tenant {tenant} in table {} of region {}: the directory does not know this tenant",
                            plural(*rows),
                            table.name,
                            region.id
                        ),
                    }),
                    Some(e) if &e.region != region.id && !moving(e, region.id) => violations.push(Violation {
                        kind: ViolationKind::MisplacedRows,
                        region: region.id.clone(),
                        tenant_id: Some(tenant.clone()),
                        table: Some(table.name.clone()),
                        role: None,
                        detail: format!(
                            "{rows} {} of tenant {tenant} ({}) in table {} of region {}, but its home region is {}",
                            plural(*rows),
                            status_str(e.status),
                            table.name,
                            region.id,
                            e.region
                        ),
                    }),
                    Some(_) => {}
                }
            }
        }
        placements.push(tenants.into_values().collect());
    }
    for t in directory
        .iter()
        .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
    {
        let id = t.id.to_string();
        let Some(home) = regions.iter().find(|r| r.id == &t.region) else {
            violations.push(Violation {
                kind: ViolationKind::HomeRegionNotAudited,
                region: t.region.clone(),
                tenant_id: Some(id.clone()),
                table: None,
                role: None,
                detail: format!(
                    "tenant {id} ({}) has home region {}, which is not among the audited regions",
                    status_str(t.status),
                    t.region
                ),
            });
            continue;
        };
        let Some(tables) = home.tables else { continue };
        let Some(home_table) = tables.iter().find(|x| x.name == HOME_TABLE && x.counted) else {
            continue;
        };
        if !home_table
            .counts
            .iter()
            .any(|(tenant, n)| *tenant == id && *n > 0)
        {
            violations.push(Violation {
                kind: ViolationKind::MissingHomeRecord,
                region: t.region.clone(),
                tenant_id: Some(id.clone()),
                table: Some(HOME_TABLE.to_owned()),
                role: None,
                detail: format!(
                    "tenant {id} is {} in the directory with home region {}, but has no home record in that region's {HOME_TABLE} table",
                    status_str(t.status),
                    t.region
                ),
            });
        }
    }
    (violations, placements)
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        "row"
    } else {
        "rows"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use residency_core::TenantId;
    use residency_core::Tier;

    const A: &str = "00000000-0000-4000-8000-00000000000a";
    const B: &str = "00000000-0000-4000-8000-00000000000b";
    const X: &str = "00000000-0000-4000-8000-0000000000ff";

    fn tenant(id: &str, region: &str, status: TenantStatus) -> TenantEntry {
        TenantEntry {
            id: id.parse::<TenantId>().expect("uuid"),
            name: format!("t-{}", &id[id.len() - 1..]),
            region: RegionId::new(region).expect("region"),
            tier: Tier::Growth,
            status,
            rate_limit_per_min: None,
        }
    }

    fn table(name: &str, counts: &[(&str, u64)]) -> TableScan {
        TableScan {
            name: name.into(),
            rls_enabled: true,
            rls_forced: true,
            counted: true,
            counts: counts.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect(),
        }
    }

    fn kinds(v: &[Violation]) -> Vec<(ViolationKind, &str, Option<&str>, Option<&str>)> {
        v.iter()
            .map(|v| {
                (
                    v.kind,
                    v.region.as_str(),
                    v.tenant_id.as_deref(),
                    v.table.as_deref(),
                )
            })
            .collect()
    }

    #[test]
    fn clean_placement_has_no_violations() {
        let us = RegionId::new("us").unwrap();
        let eu = RegionId::new("eu").unwrap();
        let dir = [
            tenant(A, "us", TenantStatus::Active),
            tenant(B, "eu", TenantStatus::Suspended),
        ];
        let us_t = [table("tenants", &[(A, 1)]), table("workflows", &[(A, 5)])];
        let eu_t = [table("tenants", &[(B, 1)])];
        let (v, p) = evaluate(
            &dir,
            &[],
            &[
                RegionTables {
                    id: &us,
                    tables: Some(&us_t),
                },
                RegionTables {
                    id: &eu,
                    tables: Some(&eu_t),
                },
            ],
        );
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(p[0].len(), 1);
        assert_eq!(p[0][0].rows, 6);
        assert!(p[0][0].at_home);
        assert_eq!(p[0][0].tables["workflows"], 5);
    }

    #[test]
    fn misplaced_orphan_and_missing_home() {
        let us = RegionId::new("us").unwrap();
        let eu = RegionId::new("eu").unwrap();
        let dir = [
            tenant(A, "us", TenantStatus::Active),
            tenant(B, "eu", TenantStatus::Active),
            // Provisioning tenants need no home record yet.
            tenant(
                "00000000-0000-4000-8000-00000000000c",
                "eu",
                TenantStatus::Provisioning,
            ),
            tenant(
                "00000000-0000-4000-8000-00000000000d",
                "sa",
                TenantStatus::Active,
            ),
        ];
        let us_t = [table("tenants", &[(A, 1)])];
        let eu_t = [
            table("tenants", &[]),
            table("audit_events", &[(A, 2), (X, 1)]),
        ];
        let (v, p) = evaluate(
            &dir,
            &[],
            &[
                RegionTables {
                    id: &us,
                    tables: Some(&us_t),
                },
                RegionTables {
                    id: &eu,
                    tables: Some(&eu_t),
                },
            ],
        );
        assert_eq!(
            kinds(&v),
            vec![
                (
                    ViolationKind::MisplacedRows,
                    "eu",
                    Some(A),
                    Some("audit_events")
                ),
                (
                    ViolationKind::OrphanRows,
                    "eu",
                    Some(X),
                    Some("audit_events")
                ),
                (
                    ViolationKind::MissingHomeRecord,
                    "eu",
                    Some(B),
                    Some("tenants")
                ),
                (
                    ViolationKind::HomeRegionNotAudited,
                    "sa",
                    Some("00000000-0000-4000-8000-00000000000d"),
                    None
                ),
            ]
        );
        assert!(v[0].detail.contains("home region is us"), "{}", v[0].detail);
        assert!(!p[1][0].at_home);
        assert_eq!(p[1][1].home_region, None);
    }

    #[test]
    fn rows_in_both_regions_are_expected_only_while_a_move_copies_verifies_or_purges() {
        use residency_core::wire::moves::MovePhase;
        let (us, eu, apac) = (
            RegionId::new("us").unwrap(),
            RegionId::new("eu").unwrap(),
            RegionId::new("apac").unwrap(),
        );
        let dir = [tenant(A, "us", TenantStatus::Moving)];
        let us_t = [table("tenants", &[(A, 1)])];
        let eu_t = [table("tenants", &[(A, 1)])];
        let apac_t = [table("tenants", &[(A, 1)])];
        let regions = [
            RegionTables {
                id: &us,
                tables: Some(&us_t),
            },
            RegionTables {
                id: &eu,
                tables: Some(&eu_t),
            },
            RegionTables {
                id: &apac,
                tables: Some(&apac_t),
            },
        ];
        let found = |phase: MovePhase| {
            let moves = [MoveInFlight {
                tenant: A.parse().unwrap(),
                from: us.clone(),
                to: eu.clone(),
                phase,
            }];
            let (v, _) = evaluate(&dir, &moves, &regions);
            v.iter()
                .map(|v| v.region.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        for phase in [MovePhase::Copying, MovePhase::Verifying, MovePhase::Purging] {
            // The move's target is expected; a third region never is.
            assert_eq!(found(phase), ["apac"], "{phase:?}");
        }
        for phase in [
            MovePhase::Frozen,
            MovePhase::Failed,
            MovePhase::Done,
            MovePhase::RolledBack,
        ] {
            assert_eq!(found(phase), ["eu", "apac"], "{phase:?}");
        }
        let (v, _) = evaluate(&dir, &[], &regions);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn unscanned_or_uncounted_home_proves_nothing_missing() {
        let us = RegionId::new("us").unwrap();
        let dir = [tenant(A, "us", TenantStatus::Active)];
        let (v, _) = evaluate(
            &dir,
            &[],
            &[RegionTables {
                id: &us,
                tables: None,
            }],
        );
        assert!(v.is_empty(), "{v:?}");
        let mut t = table("tenants", &[]);
        t.counted = false;
        let tables = [t];
        let (v, _) = evaluate(
            &dir,
            &[],
            &[RegionTables {
                id: &us,
                tables: Some(&tables),
            }],
        );
        assert!(v.is_empty(), "{v:?}");
    }
}
