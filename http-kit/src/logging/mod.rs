//! The one log set-up of every Residency binary (`residency-gateway`, `region-node`): a
//! `tracing` subscriber writing to standard output, filtered by `RUST_LOG` (default `info`),
//! in one of two [`LogFormat`]s chosen by `--log-format` or [`FORMAT_ENV`] (the flag wins).
//!
//! - `text` (the default): one human-readable line per event, the enclosing spans' fields
//!   before the message.
//! - `json`: one JSON object per line: `timestamp` (RFC 3339), `level`, `target`, the event's
//!   fields with `message` at the top level, and `span`: the current span's name and fields
//!   (on the gateway's public path, the request span: `request_id`, `method`, `route`, and
//!   after authentication `tenant`, `region`, `credential`).
//!
//! What is never logged (tokens, API keys, assertions) is decided where events are emitted,
//! not here: this module formats only what it is given.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

#[cfg(feature = "otlp")]
pub mod otlp;

/// The target of spans that are logged but never exported as traces (health probes and
/// scrapes: one trace per check would drown the real ones).
pub const UNTRACED_TARGET: &str = "residency::untraced";

/// The environment variable naming the log format when `--log-format` is absent.
pub const FORMAT_ENV: &str = "RESIDENCY_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name accepted by [`FromStr`] and passed on the command line (`text`, `json`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}; expected text or json"
            )),
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` (an [`EnvFilter`] directive, default `info`)
/// over `format`, written to standard output. Call once, first thing in `main`, before the
/// config is loaded (so that loading problems could be logged too).
///
/// A failed log write is dropped silently: reporting it with `eprintln!` would panic when
/// standard error is a closed pipe.
///
/// # Panics
/// When a global subscriber is already installed (a second call).
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        // Colours only on a terminal: a file or a log collector gets plain text.
        .with_ansi(ansi(format))
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            // The event's fields (with `message`) at the top level, not under `fields`.
            .flatten_event(true)
            .with_current_span(true)
            // The current span carries what a line needs; the whole list would repeat it.
            .with_span_list(false)
            .init(),
    }
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

fn ansi(format: LogFormat) -> bool {
    format == LogFormat::Text && std::io::stdout().is_terminal()
}

/// [`init`], plus the OTLP span exporter when `otlp` is given ([`otlp`]): the log lines keep
/// `RUST_LOG` as their filter, and the exporter gets its own (the spans of the Residency
/// crates at `debug` and above, no events), so the request spans are exported even when the
/// log lines leave them out. Without `otlp` this is exactly [`init`]. Call inside the tokio
/// runtime and keep the guard until the end of `main` (dropping it flushes the last spans).
///
/// # Errors
/// The exporter cannot be built (the message names `tracing.otlp_endpoint`).
///
/// # Panics
/// When a global subscriber is already installed (a second call).
#[cfg(feature = "otlp")]
pub fn init_with_otlp(
    format: LogFormat,
    otlp: Option<&otlp::Otlp>,
) -> Result<Option<otlp::OtlpGuard>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let Some(cfg) = otlp else {
        init(format);
        return Ok(None);
    };
    let (tracer, guard) = otlp::tracer(cfg)?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi(format))
        .log_internal_errors(false);
    let fmt: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = match format {
        LogFormat::Text => fmt.with_filter(env_filter()).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(env_filter())
            .boxed(),
    };
    let spans = tracing_subscriber::filter::filter_fn(|m| {
        m.is_span() && m.target().starts_with("residency") && m.target() != UNTRACED_TARGET
    })
    .with_max_level_hint(tracing::Level::DEBUG);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(spans);
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Ok(Some(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_unknown_ones_are_refused_by_name() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!(LogFormat::default(), LogFormat::Text);
        let err = "JSON".parse::<LogFormat>().unwrap_err();
        assert!(
            err.contains("\"JSON\"") && err.contains("text or json"),
            "{err}"
        );
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(f.as_str().parse(), Ok(f));
        }
    }
}
