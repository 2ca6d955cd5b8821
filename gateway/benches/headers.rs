//! Micro-benchmark of header hygiene, the first thing done to every request (issue 4).
//!
//! `cargo bench -p residency-gateway --bench headers`
//!
//! - `sanitize_request_typical`: an SDK/browser-like request (11 fields, `connection:
//!   keep-alive`), nothing forbidden but the hop-by-hop `connection`/`keep-alive`;
//! - `sanitize_request_hostile`: the same plus spoofed internal headers (`x-tenant-id`,
//!   `x-residency-*`, `forwarded`, `x-forwarded-*`) and a `Connection`-named header;
//! - `sanitize_response_typical`: a region node's response headers.
//!
//! Each iteration gets a fresh clone of the map (built outside the measurement), because
//! sanitising removes fields.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use residency_gateway::headers::{sanitize_request, sanitize_response};

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

const TYPICAL: &[(&str, &str)] = &[
    ("host", "api.residency.example"),
    ("user-agent", "acme-sdk/2.4.1 (linux; rust 1.88)"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, br"),
    ("accept-language", "en-GB,en;q=0.9"),
    (
        "authorization",
        "Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImlkcC0xIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lk\
         cC5leGFtcGxlLyIsImF1ZCI6InJlc2lkZW5jeS1hcGkifQ.c2lnbmF0dXJl",
    ),
    ("content-type", "application/json"),
    ("content-length", "182"),
    ("x-request-id", "0190a5c4-7b1e-7000-8000-00000000abcd"),
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("connection", "keep-alive"),
    ("keep-alive", "timeout=5"),
];

const HOSTILE_EXTRA: &[(&str, &str)] = &[
    ("x-tenant-id", "0190a5c4-0000-7000-8000-0000000000a1"),
    ("x-residency-assertion", "forged"),
    ("x-residency-region", "us"),
    ("forwarded", "for=1.2.3.4;host=evil"),
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-host", "evil.example"),
    ("connection", "x-secret"),
    ("x-secret", "hop"),
];

const RESPONSE: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-length", "412"),
    ("date", "Tue, 14 Apr 2026 12:00:00 GMT"),
    ("x-request-id", "0190a5c4-7b1e-7000-8000-00000000abcd"),
    ("cache-control", "no-store"),
];

fn bench(c: &mut Criterion) {
    let typical = map(TYPICAL);
    c.bench_function("sanitize_request_typical", |b| {
        b.iter_batched(
            || typical.clone(),
            |mut h| {
                sanitize_request(black_box(&mut h));
                h
            },
            BatchSize::SmallInput,
        );
    });

    let mut hostile = map(TYPICAL);
    for (k, v) in HOSTILE_EXTRA {
        hostile.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    c.bench_function("sanitize_request_hostile", |b| {
        b.iter_batched(
            || hostile.clone(),
            |mut h| {
                sanitize_request(black_box(&mut h));
                h
            },
            BatchSize::SmallInput,
        );
    });

    let response = map(RESPONSE);
    c.bench_function("sanitize_response_typical", |b| {
        b.iter_batched(
            || response.clone(),
            |mut h| {
                sanitize_response(black_box(&mut h));
                h
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
