//! `[tracing]`: optional OpenTelemetry span export over OTLP/HTTP, the same section in the
//! gateway's and the region node's config.
//!
//! ```toml
//! [tracing]                                # absent or no otlp_endpoint: nothing exported
//! otlp_endpoint = "http://127.0.0.1:4318"  # the collector's OTLP/HTTP base URL (http only);
//!                                          # spans go to <otlp_endpoint>/v1/traces
//! service_name = "residency-gateway"       # default: the binary's name
//! sample_ratio = 1.0                       # 0..=1, the fraction of new traces recorded
//! ```
//!
//! Each key can be set by `RESIDENCY__TRACING__<KEY>`. The export interval is the standard
//! `OTEL_BSP_SCHEDULE_DELAY` (milliseconds, default 5000).

use serde::Deserialize;

use crate::Problem;

/// `[tracing]` of the gateway and node configs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL (`http://host:4318`); absent: tracing is off.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans; absent: the binary's name.
    pub service_name: Option<String>,
    /// The fraction of new traces recorded (0..=1); absent: 1.
    pub sample_ratio: Option<f64>,
}

impl TracingConfig {
    /// Every problem of `[tracing]`.
    pub(crate) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(url) = &self.otlp_endpoint {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "http" && u.host().is_some() => {
                    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty()
                    {
                        out.push(Problem::new(
                            "tracing.otlp_endpoint",
                            "must be a base URL without credentials, query or fragment",
                        ));
                    }
                }
                Ok(_) => out.push(Problem::new(
                    "tracing.otlp_endpoint",
                    "must be an http:// URL with a host (OTLP/HTTP to a collector on a trusted network; https is not supported)",
                )),
                Err(e) => out.push(Problem::new(
                    "tracing.otlp_endpoint",
                    format!("not a URL: {e}"),
                )),
            }
        }
        if let Some(name) = &self.service_name {
            if name.trim().is_empty() {
                out.push(Problem::new("tracing.service_name", "must not be empty"));
            }
        }
        if let Some(r) = self.sample_ratio {
            if !(0.0..=1.0).contains(&r) {
                out.push(Problem::new(
                    "tracing.sample_ratio",
                    "must be between 0 and 1",
                ));
            }
        }
        if self.otlp_endpoint.is_none()
            && (self.service_name.is_some() || self.sample_ratio.is_some())
        {
            out.push(Problem::new(
                "tracing.otlp_endpoint",
                "is required when tracing.service_name or tracing.sample_ratio is set",
            ));
        }
        out
    }

    /// The endpoint and settings when tracing is on; `default_service` names the binary.
    #[must_use]
    pub fn otlp(&self, default_service: &str) -> Option<TracingSettings> {
        self.otlp_endpoint.as_ref().map(|endpoint| TracingSettings {
            endpoint: endpoint.clone(),
            service_name: self
                .service_name
                .clone()
                .unwrap_or_else(|| default_service.to_owned()),
            sample_ratio: self.sample_ratio.unwrap_or(1.0),
        })
    }
}

/// Validated `[tracing]` with its defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The collector's base URL.
    pub endpoint: String,
    /// `service.name`.
    pub service_name: String,
    /// 0..=1.
    pub sample_ratio: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(t: &TracingConfig) -> Vec<String> {
        t.validate().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn off_by_default_and_a_valid_section_has_no_problem() {
        let off = TracingConfig::default();
        assert!(off.validate().is_empty());
        assert_eq!(off.otlp("x"), None);
        let on = TracingConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            service_name: None,
            sample_ratio: Some(0.5),
        };
        assert!(on.validate().is_empty());
        let s = on.otlp("residency-gateway").unwrap();
        assert_eq!(s.service_name, "residency-gateway");
        assert!((s.sample_ratio - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn bad_values_are_named_by_key() {
        for (cfg, key) in [
            (
                TracingConfig {
                    otlp_endpoint: Some("https://collector:4318".into()),
                    ..Default::default()
                },
                "tracing.otlp_endpoint",
            ),
            (
                TracingConfig {
                    otlp_endpoint: Some("not a url".into()),
                    ..Default::default()
                },
                "tracing.otlp_endpoint",
            ),
            (
                TracingConfig {
                    otlp_endpoint: Some("http://c:4318".into()),
                    sample_ratio: Some(1.5),
                    ..Default::default()
                },
                "tracing.sample_ratio",
            ),
            (
                TracingConfig {
                    otlp_endpoint: Some("http://c:4318".into()),
                    service_name: Some(" ".into()),
                    ..Default::default()
                },
                "tracing.service_name",
            ),
            (
                TracingConfig {
                    sample_ratio: Some(0.1),
                    ..Default::default()
                },
                "tracing.otlp_endpoint",
            ),
        ] {
            let problems = keys(&cfg);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0], key);
        }
    }
}
