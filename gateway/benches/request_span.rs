//! Micro-benchmark of what the logs add to every request on the public path (issue 16): the
//! `request` span with its fields (request id, method, route template; tenant, credential and
//! region recorded later) and the route template alone.
//!
//! `cargo bench -p residency-gateway --bench request_span`
//!
//! - `span_filtered_out`: the process's subscriber at `RUST_LOG=warn` (the span is `info`):
//!   what every request pays when request logging is off;
//! - `span_json_info`: the JSON subscriber at `info` writing to a sink: the span is built and
//!   its fields formatted (no event is written inside it here);
//! - `route_template_last`: the template lookup for a path matching the last template (the
//!   worst case of the linear scan), `route_template_unmatched` for a path matching none.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Request};
use residency_gateway::bench::{request_span, route_template};
use tracing_subscriber::EnvFilter;

fn parts() -> http::request::Parts {
    let (parts, ()) =
        Request::get("/v1/workflows/0190a5c4-0000-7000-8000-00000000c1a1/runs?page_size=50")
            .body(())
            .unwrap()
            .into_parts();
    parts
}

fn bench(c: &mut Criterion) {
    let id = HeaderValue::from_static("0190a5c4-1111-7000-8000-0000000000aa");
    let parts = parts();
    let warn = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(warn, || {
        c.bench_function("span_filtered_out", |b| {
            b.iter(|| drop(black_box(request_span(black_box(&id), black_box(&parts)))));
        });
    });
    let json = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .finish();
    tracing::subscriber::with_default(json, || {
        c.bench_function("span_json_info", |b| {
            b.iter(|| drop(black_box(request_span(black_box(&id), black_box(&parts)))));
        });
    });
    c.bench_function("route_template_last", |b| {
        b.iter(|| route_template(black_box("/v1/workflows/w-123/runs")));
    });
    c.bench_function("route_template_unmatched", |b| {
        b.iter(|| route_template(black_box("/v1/nothing/here/at/all")));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
