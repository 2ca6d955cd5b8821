//! `[limits]`: sizes, counts and timeouts of the listeners and the upstream calls.

use std::time::Duration;

use serde::Deserialize;

use crate::Problem;

/// The smallest header block limit hyper can enforce (its minimum read buffer).
pub(crate) const MIN_HEADER_BYTES: usize = 8192;

/// `[limits]`: sizes, counts and timeouts, with the SPEC defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body in bytes; larger ones get 413.
    pub max_body_bytes: u64,
    /// Largest request header block in bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete header block: an HTTP/1 request head, or an
    /// HTTP/2 `HEADERS` frame with all its `CONTINUATION` frames.
    #[serde(with = "crate::duration::serde_str")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and none started for this long is closed
    /// gracefully (`GOAWAY` for HTTP/2). Envoy's `idle_timeout`, with a shorter default.
    #[serde(with = "crate::duration::serde_str")]
    pub idle_timeout: Duration,
    /// An HTTP/1 keep-alive connection with no request in flight for this long is parked: its
    /// HTTP buffers and state are freed and only the socket (and its TLS session) is kept
    /// until the client sends again (nginx frees its request buffers between keep-alive
    /// requests the same way). Costs a few allocations when it wakes; saves most of an idle
    /// connection's memory.
    #[serde(with = "crate::duration::serde_str")]
    pub park_idle_after: Duration,
    /// A connection older than this is closed gracefully, then dropped after at most
    /// `shutdown_grace`. Each connection gets between 90 % and 100 % of it, so connections
    /// opened together do not all reconnect together (gRPC's `MAX_CONNECTION_AGE` with its
    /// jitter; Envoy's `max_connection_duration`).
    #[serde(with = "crate::duration::serde_str")]
    pub max_connection_age: Duration,
    /// Concurrent client connections per listener; further ones wait in the accept queue.
    pub max_connections: usize,
    /// Concurrent client connections per listener from one client IP address (IPv4-mapped
    /// IPv6 counts as IPv4); more are closed as soon as they are accepted.
    pub max_connections_per_ip: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Time to open a TCP connection to a region node.
    #[serde(with = "crate::duration::serde_str")]
    pub upstream_connect_timeout: Duration,
    /// Time a region node has to answer with a response head; 504 after it.
    #[serde(with = "crate::duration::serde_str")]
    pub upstream_timeout: Duration,
    /// How long an upstream that refused a connection is skipped.
    #[serde(with = "crate::duration::serde_str")]
    pub upstream_eject: Duration,
    /// Idle pooled connections kept per region node.
    pub upstream_pool_idle: usize,
    /// How long in-flight requests may take to finish after shutdown starts.
    #[serde(with = "crate::duration::serde_str")]
    pub shutdown_grace: Duration,
    /// Verified tokens kept in the cache.
    pub token_cache_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            park_idle_after: Duration::from_secs(1),
            max_connection_age: Duration::from_secs(3600),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            h2_max_concurrent_streams: 200,
            upstream_connect_timeout: Duration::from_secs(2),
            upstream_timeout: Duration::from_secs(30),
            upstream_eject: Duration::from_secs(5),
            upstream_pool_idle: 256,
            shutdown_grace: Duration::from_secs(10),
            token_cache_entries: 100_000,
        }
    }
}

impl Limits {
    /// Every problem of `[limits]`.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.max_body_bytes == 0 {
            out.push(Problem::new(
                "limits.max_body_bytes",
                "must be greater than 0",
            ));
        }
        if !(MIN_HEADER_BYTES..=1024 * 1024).contains(&self.max_header_bytes) {
            out.push(Problem::new(
                "limits.max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES} and 1048576"),
            ));
        }
        for (key, d) in [
            ("limits.header_read_timeout", self.header_read_timeout),
            (
                "limits.upstream_connect_timeout",
                self.upstream_connect_timeout,
            ),
            ("limits.upstream_timeout", self.upstream_timeout),
            ("limits.idle_timeout", self.idle_timeout),
            ("limits.park_idle_after", self.park_idle_after),
            ("limits.max_connection_age", self.max_connection_age),
        ] {
            if d.is_zero() {
                out.push(Problem::new(key, "must be greater than 0"));
            }
        }
        if self.max_connections == 0 {
            out.push(Problem::new(
                "limits.max_connections",
                "must be greater than 0",
            ));
        }
        if self.max_connections_per_ip == 0
            || (self.max_connections > 0 && self.max_connections_per_ip > self.max_connections)
        {
            out.push(Problem::new(
                "limits.max_connections_per_ip",
                "must be greater than 0 and at most limits.max_connections",
            ));
        }
        if self.h2_max_concurrent_streams == 0 {
            out.push(Problem::new(
                "limits.h2_max_concurrent_streams",
                "must be greater than 0",
            ));
        }
        if self.token_cache_entries == 0 {
            out.push(Problem::new(
                "limits.token_cache_entries",
                "must be greater than 0",
            ));
        }
        out
    }
}
