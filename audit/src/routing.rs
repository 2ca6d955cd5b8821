//! Routing evidence from Prometheus text: the gateway's requests per region
//! (`residency_gateway_requests_total{region=...}`) and the refused misroutes a region node counted
//! (`residency_node_misdirected_requests_total`, requests whose assertion named another region, answered
//! 421). Pure parsing; fetching the pages is the caller's business (the CLI does it when the
//! gateway and nodes are reachable).

use std::collections::BTreeMap;

/// The gateway counter of answered requests, labelled by `region`.
pub const GATEWAY_REQUESTS: &str = "residency_gateway_requests_total";
/// The node counter of requests refused because they were meant for another region.
pub const NODE_MISROUTES: &str = "residency_node_misdirected_requests_total";

/// Sums every sample of `metric` per value of `label` (samples without the label are left
/// out). Values that are not finite non-negative numbers are ignored.
#[must_use]
pub fn sum_by_label(text: &str, metric: &str, label: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (labels, value) in samples(text, metric) {
        if let Some(v) = label_value(labels, label) {
            *out.entry(v.to_owned()).or_insert(0) += value;
        }
    }
    out
}

/// As [`sum_by_label`], counting only the samples whose label `only.0` is `only.1` (e.g. the
/// 5xx answers per region: `("status_class", "5xx")`).
#[must_use]
pub fn sum_by_label_where(
    text: &str,
    metric: &str,
    label: &str,
    only: (&str, &str),
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (labels, value) in samples(text, metric) {
        if label_value(labels, only.0) != Some(only.1) {
            continue;
        }
        if let Some(v) = label_value(labels, label) {
            *out.entry(v.to_owned()).or_insert(0) += value;
        }
    }
    out
}

/// Sums every sample of `metric`; `None` when the page has no sample of it.
#[must_use]
pub fn sum(text: &str, metric: &str) -> Option<u64> {
    let mut found = false;
    let mut total = 0u64;
    for (_, v) in samples(text, metric) {
        found = true;
        total = total.saturating_add(v);
    }
    found.then_some(total)
}

/// `(labels inside the braces, value)` of each sample line of `metric`.
fn samples<'a>(text: &'a str, metric: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.trim().strip_prefix(metric)?;
        let (labels, value) = if let Some(after) = rest.strip_prefix('{') {
            let end = after.rfind('}')?;
            (&after[..end], after[end + 1..].trim())
        } else if rest.starts_with(' ') {
            ("", rest.trim())
        } else {
            // Another metric sharing the prefix (e.g. `_bucket`).
            return None;
        };
        let value = value.split_whitespace().next()?;
        let v: f64 = value.parse().ok()?;
        // Counters are integral; the float form is Prometheus' text format.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = (v.is_finite() && v >= 0.0).then_some(v as u64)?;
        Some((labels, n))
    })
}

fn label_value<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let end = after.find('"')?;
        if key.trim().trim_start_matches(',').trim() == name {
            return Some(&after[..end]);
        }
        rest = after[end + 1..].trim_start_matches(',');
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP residency_gateway_requests_total Requests answered
# TYPE residency_gateway_requests_total counter
residency_gateway_requests_total{region="eu",status_class="2xx"} 10
residency_gateway_requests_total{region="eu",status_class="4xx"} 2
residency_gateway_requests_total{status_class="4xx",region="us"} 5
residency_gateway_requests_total{region="none",status_class="4xx"} 7
residency_gateway_requests_total_other{region="eu"} 100
residency_node_misdirected_requests_total 3
"#;

    #[test]
    fn sums_per_region() {
        let m = sum_by_label(PAGE, GATEWAY_REQUESTS, "region");
        assert_eq!(m.get("eu"), Some(&12));
        assert_eq!(m.get("us"), Some(&5));
        assert_eq!(m.get("none"), Some(&7));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn sums_per_region_of_one_status_class() {
        let m = sum_by_label_where(PAGE, GATEWAY_REQUESTS, "region", ("status_class", "4xx"));
        assert_eq!(m.get("eu"), Some(&2));
        assert_eq!(m.get("us"), Some(&5));
        assert_eq!(m.get("none"), Some(&7));
        let m = sum_by_label_where(PAGE, GATEWAY_REQUESTS, "region", ("status_class", "5xx"));
        assert!(m.is_empty());
    }

    #[test]
    fn sums_unlabelled_and_reports_absence() {
        assert_eq!(sum(PAGE, NODE_MISROUTES), Some(3));
        assert_eq!(sum("", NODE_MISROUTES), None);
        assert_eq!(
            sum(
                "residency_node_misdirected_requests_total NaN\n",
                NODE_MISROUTES
            ),
            None
        );
    }
}
