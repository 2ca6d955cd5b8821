//! The Prometheus recorder every Residency binary installs (feature `metrics`): one
//! `residency_` prefix, a `# HELP` line for every declared metric, explicit buckets for every
//! `_seconds` histogram, `residency_build_info`, and the exporter's upkeep run periodically.
//!
//! Each binary declares its metrics once, as a table of [`Declared`] (`gateway/src/metrics.rs`,
//! `region-node/src/metrics.rs`); [`install`] describes them to the recorder, so the help text
//! lives next to the name and cannot drift from it. Tests and the Grafana dashboard check
//! against the same tables.
//!
//! Upkeep: the exporter keeps histogram samples in memory until a render or
//! [`PrometheusHandle::run_upkeep`] drains them into buckets; without a scraper they would
//! grow without bound. [`install`] starts one plain thread per process (not a task: tests run
//! many tokio runtimes in one process and the recorder outlives each of them) that runs the
//! upkeep every [`UPKEEP_INTERVAL`].

use std::time::Duration;

use metrics::{KeyName, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The one prefix of every metric of every Residency binary.
pub const PREFIX: &str = "residency_";
/// `residency_build_info{component, version, git_sha}` = 1.
pub const BUILD_INFO: &str = "residency_build_info";
/// How often the upkeep thread drains histogram samples.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Latency buckets in seconds, for every `_seconds` histogram: the gateway adds tens of
/// microseconds, nodes and their databases take milliseconds, a slow upstream seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The Prometheus type of a declared metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations into [`DURATION_BUCKETS`]; the name ends in `_seconds`.
    Histogram,
}

/// One metric a binary records: its full name, type and `# HELP` text.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    /// Full name, starting with [`PREFIX`].
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// One line for `# HELP`.
    pub help: &'static str,
}

/// Names one binary (the `component` label of `residency_build_info`).
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    /// `gateway` or `node`.
    pub component: &'static str,
    /// The crate version (`env!("CARGO_PKG_VERSION")` of the binary).
    pub version: &'static str,
}

/// The commit the binary was built from: `RESIDENCY_GIT_SHA` at build time (the Dockerfile
/// passes it), `unknown` otherwise.
#[must_use]
pub fn git_sha() -> &'static str {
    option_env!("RESIDENCY_GIT_SHA").unwrap_or("unknown")
}

/// Builds the recorder: buckets for every `_seconds` histogram, every metric of `declared`
/// described, `residency_build_info` set to 1. Does not install it (see [`install`]).
#[must_use]
pub fn recorder(
    declared: &[Declared],
    build: BuildInfo,
) -> metrics_exporter_prometheus::PrometheusRecorder {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DURATION_BUCKETS)
        // Static, non-empty bucket list: cannot fail.
        .expect("non-empty bucket list")
        .build_recorder();
    // Described on this recorder directly (not through the global one), so the help text is
    // there even when another recorder was installed first.
    for d in declared {
        let help = SharedString::const_str(d.help);
        let key = KeyName::from_const_str(d.name);
        match d.kind {
            Kind::Counter => recorder.describe_counter(key, None, help),
            Kind::Gauge => recorder.describe_gauge(key, None, help),
            Kind::Histogram => recorder.describe_histogram(key, None, help),
        }
    }
    recorder.describe_gauge(
        KeyName::from_const_str(BUILD_INFO),
        None,
        SharedString::const_str(
            "Always 1; the labels name the component, its version and the commit it was built from",
        ),
    );
    metrics::with_local_recorder(&recorder, || {
        metrics::gauge!(
            BUILD_INFO,
            "component" => build.component,
            "version" => build.version,
            "git_sha" => git_sha()
        )
        .set(1.0);
    });
    recorder
}

/// Builds the recorder ([`recorder`]), installs it as the process-wide one and starts the
/// upkeep thread. Call once per process (the binaries keep the handle in a `OnceLock`).
///
/// Another recorder may already be installed (an embedding process); then the returned
/// handle renders only `residency_build_info` and the embedder's recorder gets the metrics.
#[must_use]
pub fn install(declared: &[Declared], build: BuildInfo) -> PrometheusHandle {
    let recorder = recorder(declared, build);
    let handle = recorder.handle();
    let _ = metrics::set_global_recorder(recorder);
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms drain only when scraped");
    }
    handle
}

/// Names in `declared` that break the conventions: no [`PREFIX`], a counter not ending in
/// `_total`, a histogram not ending in `_seconds`, an empty help text, a duplicate.
#[must_use]
pub fn violations(declared: &[Declared]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, d) in declared.iter().enumerate() {
        if !d.name.starts_with(PREFIX) {
            out.push(format!("{}: no {PREFIX} prefix", d.name));
        }
        if d.kind == Kind::Counter && !d.name.ends_with("_total") {
            out.push(format!("{}: a counter must end in _total", d.name));
        }
        if d.kind == Kind::Histogram && !d.name.ends_with("_seconds") {
            out.push(format!("{}: a histogram must end in _seconds", d.name));
        }
        if d.help.trim().is_empty() {
            out.push(format!("{}: no help text", d.name));
        }
        if declared[..i].iter().any(|o| o.name == d.name) {
            out.push(format!("{}: declared twice", d.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARED: &[Declared] = &[
        Declared {
            name: "residency_test_requests_total",
            kind: Kind::Counter,
            help: "Requests",
        },
        Declared {
            name: "residency_test_duration_seconds",
            kind: Kind::Histogram,
            help: "Time taken",
        },
    ];

    #[test]
    fn the_page_has_help_buckets_and_build_info() {
        let recorder = recorder(
            DECLARED,
            BuildInfo {
                component: "test",
                version: "1.2.3",
            },
        );
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("residency_test_requests_total").increment(1);
            metrics::histogram!("residency_test_duration_seconds").record(0.003);
        });
        let page = handle.render();
        assert!(
            page.contains("# HELP residency_test_requests_total Requests"),
            "{page}"
        );
        assert!(page.contains("# TYPE residency_test_duration_seconds histogram"));
        assert!(page.contains("residency_test_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(page.contains("# HELP residency_build_info "));
        let info = format!(
            "residency_build_info{{component=\"test\",version=\"1.2.3\",git_sha=\"{}\"}} 1",
            git_sha()
        );
        assert!(page.contains(&info), "{page}");
    }

    #[test]
    fn conventions_are_checked() {
        assert!(violations(DECLARED).is_empty());
        let bad = [
            Declared {
                name: "node_requests",
                kind: Kind::Counter,
                help: "",
            },
            Declared {
                name: "residency_x",
                kind: Kind::Histogram,
                help: "x",
            },
        ];
        let v = violations(&bad);
        assert_eq!(v.len(), 4, "{v:?}");
    }
}
