//! `deploy/grafana/residency.json`: the dashboard parses, and every metric its queries use is
//! one the gateway or the node declares (`gateway/src/metrics.rs`, `region-node/src/metrics.rs`),
//! with the right type for how it is queried: a rename cannot silently leave a panel empty.

use std::collections::BTreeSet;
use std::path::PathBuf;

use residency_gateway::metrics::{Declared, Kind, BUILD_INFO};

fn dashboard() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/residency.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `expr` (panel targets) and `definition` (template variable queries) in the dashboard.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The identifiers of `expr` that look like metric names of ours (label values in quotes are
/// not names).
fn metric_names(expr: &str) -> Vec<String> {
    let mut quoted = false;
    let expr: String = expr
        .chars()
        .map(|c| {
            if c == '"' {
                quoted = !quoted;
            }
            if quoted {
                ' '
            } else {
                c
            }
        })
        .collect();
    let expr = expr.as_str();
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("residency_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |e| start + e);
        if boundary {
            out.push(expr[start..end].to_owned());
        }
        i = end;
    }
    out
}

fn declared() -> Vec<Declared> {
    let mut all: Vec<Declared> = residency_gateway::metrics::DECLARED.to_vec();
    all.extend_from_slice(residency_region_node::metrics::DECLARED);
    all
}

/// The declared metric a sample name belongs to: itself, or a histogram's `_bucket`, `_sum`
/// or `_count` series.
fn resolve<'a>(name: &str, declared: &'a [Declared]) -> Result<Option<&'a Declared>, String> {
    if name == BUILD_INFO {
        return Ok(None);
    }
    if let Some(d) = declared.iter().find(|d| d.name == name) {
        if d.kind == Kind::Histogram {
            return Err(format!(
                "{name} is a histogram: query its _bucket, _sum or _count series"
            ));
        }
        return Ok(Some(d));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(d) = declared
                .iter()
                .find(|d| d.name == base && d.kind == Kind::Histogram)
            {
                return Ok(Some(d));
            }
        }
    }
    Err(format!("{name} is not a declared metric"))
}

#[test]
fn every_metric_in_the_dashboard_is_declared() {
    let declared = declared();
    let mut all = Vec::new();
    exprs(&dashboard(), &mut all);
    assert!(all.len() >= 10, "the dashboard has {} queries", all.len());
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for expr in &all {
        let names = metric_names(expr);
        if names.is_empty() {
            problems.push(format!("`{expr}` uses no residency_ metric"));
        }
        for name in names {
            match resolve(&name, &declared) {
                Ok(Some(d)) => {
                    used.insert(d.name);
                }
                Ok(None) => {}
                Err(why) => problems.push(format!("`{expr}`: {why}")),
            }
        }
        if expr.contains("histogram_quantile") && !expr.contains("_bucket") {
            problems.push(format!(
                "`{expr}`: histogram_quantile needs a _bucket series"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // What the issue asks the dashboard to show.
    for must in [
        "residency_gateway_requests_total",
        "residency_gateway_request_duration_seconds",
        "residency_gateway_upstream_errors_total",
        "residency_gateway_auth_failures_total",
        "residency_gateway_directory_staleness_seconds",
        "residency_gateway_ratelimit_decisions_total",
        "residency_node_request_duration_seconds",
        "residency_node_db_transaction_duration_seconds",
    ] {
        assert!(used.contains(must), "no panel uses {must}");
    }
}

#[test]
fn the_name_scanner_finds_names_and_the_resolver_refuses_renames() {
    assert_eq!(
        metric_names("sum(rate(residency_gateway_requests_total{x=\"residency_no\"}[5m]))"),
        ["residency_gateway_requests_total"]
    );
    let declared = declared();
    assert!(resolve("gateway_requests_total", &declared).is_err());
    assert!(resolve("residency_gateway_requests_total", &declared).is_ok());
    assert!(resolve(
        "residency_gateway_request_duration_seconds_bucket",
        &declared
    )
    .is_ok());
    assert!(resolve("residency_gateway_request_duration_seconds", &declared).is_err());
}
