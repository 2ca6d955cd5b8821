//! Optional OpenTelemetry trace export over OTLP/HTTP (JSON bodies, plain `http://` through
//! hyper: the deployment is a collector on the same host or network), and W3C trace context
//! (`traceparent`, `tracestate`) on requests.
//!
//! Off unless a binary's `[tracing] otlp_endpoint` is set; then [`super::init_with_otlp`]
//! installs a `tracing-opentelemetry` layer next to the log formatter, with its own filter:
//! the spans (never the events) of the Residency crates, `debug` and above, so the gateway's
//! `request` span is exported even when `RUST_LOG` keeps it out of the log lines. Spans are
//! sent in batches by a task on the tokio runtime (every 5 s by default;
//! `OTEL_BSP_SCHEDULE_DELAY` in milliseconds overrides it) and flushed when the
//! [`OtlpGuard`] is dropped.
//!
//! [`enabled`] is false until then, and the request paths check it first: with tracing off
//! no header is parsed and no context is attached.

use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    span_processor_with_async_runtime::BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context headers: removed from every request the gateway forwards (a client's
/// header never reaches a region node) and, with tracing on, replaced by the gateway's own
/// span context (whose `tracestate` carries on a valid client one, parsed and re-serialized).
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Where and how spans are exported (a binary's `[tracing]` section).
#[derive(Debug, Clone, PartialEq)]
pub struct Otlp {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to
    /// `<endpoint>/v1/traces`.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The fraction of new traces recorded, 0..=1 (by trace id).
    pub sample_ratio: f64,
    /// Whether a remote parent's sampled flag decides (true on the region node, which trusts
    /// the gateway's decision); false on the gateway, where the flag comes from a client and
    /// only `sample_ratio` decides.
    pub follow_parent: bool,
}

/// Flushes and stops the exporter when dropped (at the end of `main`).
#[must_use = "dropping the guard stops the exporter"]
#[derive(Debug)]
pub struct OtlpGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        // An unreachable collector loses the last batch: nothing else to do at exit.
        let _ = self.provider.shutdown();
    }
}

/// True once an OTLP exporter is installed.
#[must_use]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Builds the tracer (must run inside a tokio runtime: the batch task is spawned on it).
pub(super) fn tracer(cfg: &Otlp) -> Result<(opentelemetry_sdk::trace::Tracer, OtlpGuard), String> {
    let endpoint = format!("{}/v1/traces", cfg.endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("tracing.otlp_endpoint: cannot build the exporter: {e}"))?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let ratio = Sampler::TraceIdRatioBased(cfg.sample_ratio);
    let sampler = if cfg.follow_parent {
        Sampler::ParentBased(Box::new(ratio))
    } else {
        ratio
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("residency");
    ENABLED.store(true, Ordering::Relaxed);
    Ok((tracer, OtlpGuard { provider }))
}

/// With tracing on, makes a valid incoming `traceparent` the parent of `span` (which must
/// not have been entered yet). An invalid or absent one is ignored: `span` starts a trace.
pub fn adopt_parent(span: &tracing::Span, headers: &HeaderMap) {
    if !enabled() || !headers.contains_key(TRACE_HEADERS[0]) {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        // Fails only for a span the OTel layer does not see (filtered out): nothing to join.
        let _ = span.set_parent(cx);
    }
}

/// Replaces the trace context headers by `span`'s context (with tracing on; the headers are
/// only removed when it is off or `span` is not exported).
pub fn forward_context(span: &tracing::Span, headers: &mut HeaderMap) {
    for h in TRACE_HEADERS {
        headers.remove(h);
    }
    if !enabled() {
        return;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}
