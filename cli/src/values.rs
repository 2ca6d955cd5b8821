//! Typed command-line values: tiers and statuses are the core enums
//! ([`residency_core::Tier`], [`residency_core::TenantStatus`],
//! [`residency_core::wire::admin::SettableStatus`]) offered as clap possible values, so
//! `--help` lists them (`[possible values: …]`) and a typo is refused by clap (exit 2) with
//! the list, before anything is sent. The lists are the enums' own `ALL` and `as_str`
//! (clap is no dependency of `residency-core`).
//!
//! A region is configured data, not code: any id the core [`RegionId`] accepts may be
//! configured, so `--region` is parsed as a `RegionId` (a malformed id is refused by clap
//! with the rule) and whether it is configured is the gateway's answer
//! (`residency regions` lists them).

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use residency_core::wire::admin::SettableStatus;
use residency_core::{RegionId, TenantStatus, Tier};

/// `--tier`: starter, growth, scale or enterprise, each with its default quota in `--help`.
pub(crate) fn tier() -> impl TypedValueParser<Value = Tier> {
    let values = Tier::ALL.map(|t| {
        let keys = if t.allows_api_keys() {
            ", API keys"
        } else {
            ""
        };
        PossibleValue::new(t.as_str()).help(format!(
            "{} requests/min by default{keys}",
            t.default_rate_per_min()
        ))
    });
    PossibleValuesParser::new(values).map(|s| pick(&Tier::ALL, &s, |t| t.as_str()))
}

/// `--status` of a filter: every status.
pub(crate) fn status() -> impl TypedValueParser<Value = TenantStatus> {
    PossibleValuesParser::new(TenantStatus::ALL.map(TenantStatus::as_str))
        .map(|s| pick(&TenantStatus::ALL, &s, |t| t.as_str()))
}

/// `--status` of an update: only what an update may set.
pub(crate) fn settable_status() -> impl TypedValueParser<Value = SettableStatus> {
    PossibleValuesParser::new(SettableStatus::ALL.map(SettableStatus::as_str))
        .map(|s| pick(&SettableStatus::ALL, &s, |t| t.as_str()))
}

/// `--region`/`--to`: a well-formed region id (whether it is configured is the gateway's
/// answer).
pub(crate) fn region(raw: &str) -> Result<RegionId, String> {
    RegionId::new(raw)
        .map_err(|e| format!("{e} (the configured regions are listed by `residency regions`)"))
}

/// The variant named `name`. The parser accepted only these names, so one matches; the
/// first variant stands in for the impossible miss rather than a panic.
fn pick<T: Copy>(all: &[T], name: &str, as_str: impl Fn(T) -> &'static str) -> T {
    all.iter()
        .copied()
        .find(|v| as_str(*v) == name)
        .unwrap_or(all[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn parse<T: Clone + Send + Sync + 'static>(
        parser: impl TypedValueParser<Value = T>,
        raw: &str,
    ) -> Result<T, clap::Error> {
        Command::new("t")
            .arg(Arg::new("v").long("v").value_parser(parser))
            .try_get_matches_from(["t", "--v", raw])
            .map(|m| {
                m.get_one::<T>("v")
                    .cloned()
                    .unwrap_or_else(|| unreachable!())
            })
    }

    #[test]
    fn every_core_variant_parses_by_its_wire_name_and_nothing_else() {
        for t in Tier::ALL {
            assert_eq!(parse(tier(), t.as_str()).unwrap(), t);
        }
        for s in TenantStatus::ALL {
            assert_eq!(parse(status(), s.as_str()).unwrap(), s);
        }
        for s in SettableStatus::ALL {
            assert_eq!(parse(settable_status(), s.as_str()).unwrap(), s);
        }
        let e = parse(tier(), "platinum").unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(
            e.to_string().contains("starter, growth, scale, enterprise"),
            "{e}"
        );
        assert!(parse(settable_status(), "deleted").is_err());
        assert!(parse(status(), "Active").is_err());
    }

    #[test]
    fn regions_are_well_formed_ids() {
        assert_eq!(region("eu-de").unwrap().as_str(), "eu-de");
        let e = region("EU").unwrap_err();
        assert!(
            e.contains("a-z, 0-9") && e.contains("residency regions"),
            "{e}"
        );
    }
}
