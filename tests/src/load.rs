//! A constant-rate HTTP/1.1 load on keep-alive connections, with every request's outcome
//! classified, for the drain tests: request `i` is due at `start + i / rate` on connection
//! `i % connections` (a fixed schedule; a late connection sends late, it never skips). The
//! client is raw on purpose, so a failure is seen as what it is on the wire: refused, closed
//! before any byte of the answer, or cut in the middle of one. Like any keep-alive client
//! (hyper's pool, curl), it does not reuse a connection the server has already closed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One request of the mix: its raw head, and whose answer it must be.
#[derive(Debug, Clone)]
pub struct Call {
    /// The whole request (`GET … HTTP/1.1\r\n…\r\n\r\n`), without `Connection: close`.
    pub head: String,
    /// The caller's home region: `x-residency-region` of every answer that has one.
    pub region: String,
    /// The caller's tenant: `tenant_id` of every 200 body.
    pub tenant: String,
}

/// The load's shape.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Requests per second, all connections together.
    pub rate: u32,
    /// How long the schedule runs.
    pub duration: Duration,
    /// Keep-alive connections.
    pub connections: usize,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A whole response with this status.
    Answered(u16),
    /// A whole response that names another region or tenant than the caller's.
    Misrouted(String),
    /// A new connection was refused (`ECONNREFUSED`): the listener is closed.
    Refused,
    /// The request was written and the connection ended (EOF or reset) before any byte of
    /// the answer.
    Unanswered {
        /// On a connection that had served a request before.
        reused: bool,
    },
    /// The connection ended (or the bytes stopped parsing) after part of the answer.
    Truncated,
    /// No whole answer within 15 s.
    TimedOut,
    /// Any other connect error.
    ConnectFailed(String),
}

/// One request: when it was sent (since the start of the load) and how it ended.
#[derive(Debug, Clone)]
pub struct Record {
    /// When it was sent, since the start.
    pub sent: Duration,
    /// When its outcome was known, since the start.
    pub ended: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// Every request of a run, in no particular order.
#[derive(Debug, Default)]
pub struct Report {
    /// The records.
    pub records: Vec<Record>,
    /// How late the latest request was sent compared with its schedule.
    pub max_lag: Duration,
}

impl Report {
    /// Counts by outcome kind (`200`, `503`, `refused`, `unanswered(reused)`, …).
    #[must_use]
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in &self.records {
            let key = match &r.outcome {
                Outcome::Answered(s) => s.to_string(),
                Outcome::Misrouted(_) => "misrouted".to_owned(),
                Outcome::Refused => "refused".to_owned(),
                Outcome::Unanswered { reused: true } => "unanswered(reused)".to_owned(),
                Outcome::Unanswered { reused: false } => "unanswered(new)".to_owned(),
                Outcome::Truncated => "truncated".to_owned(),
                Outcome::TimedOut => "timed_out".to_owned(),
                Outcome::ConnectFailed(_) => "connect_failed".to_owned(),
            };
            *out.entry(key).or_insert(0) += 1;
        }
        out
    }

    /// The achieved request rate over the schedule.
    #[must_use]
    pub fn rate(&self, plan: &Plan) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let n = self.records.len() as f64;
        n / plan.duration.as_secs_f64()
    }
}

/// Runs `plan` against `addr` from `start` on (times in the report count from it), cycling
/// through `calls`.
///
/// # Panics
/// When `calls` is empty.
pub async fn run(start: Instant, addr: SocketAddr, calls: Arc<Vec<Call>>, plan: Plan) -> Report {
    assert!(!calls.is_empty());
    let total = u64::from(plan.rate) * plan.duration.as_millis() as u64 / 1000;
    let period = Duration::from_secs(1) / plan.rate;
    let tasks: Vec<_> = (0..plan.connections)
        .map(|k| {
            let calls = Arc::clone(&calls);
            tokio::spawn(async move {
                let mut conn = Connection::default();
                let mut records = Vec::new();
                let mut max_lag = Duration::ZERO;
                let mut i = k as u64;
                while i < total {
                    let due = start + period * u32::try_from(i).expect("schedule fits u32");
                    tokio::time::sleep_until(due).await;
                    max_lag = max_lag.max(due.elapsed());
                    #[allow(clippy::cast_possible_truncation)]
                    let call = &calls[(i as usize) % calls.len()];
                    let sent = start.elapsed();
                    let outcome = conn.call(addr, call).await;
                    records.push(Record {
                        sent,
                        ended: start.elapsed(),
                        outcome,
                    });
                    i += plan.connections as u64;
                }
                (records, max_lag)
            })
        })
        .collect();
    let mut report = Report::default();
    for t in tasks {
        let (records, lag) = t.await.expect("load task");
        report.records.extend(records);
        report.max_lag = report.max_lag.max(lag);
    }
    report
}

/// One keep-alive connection, opened when needed.
#[derive(Default)]
struct Connection {
    stream: Option<TcpStream>,
    served: bool,
}

impl Connection {
    async fn call(&mut self, addr: SocketAddr, call: &Call) -> Outcome {
        // A connection the server closed since its last answer is not reused (an EOF or a
        // reset is already there to read), as pooling clients do.
        if let Some(s) = &self.stream {
            let mut probe = [0u8; 1];
            match s.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => self.stream = None,
            }
        }
        if self.stream.is_none() {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    self.stream = Some(s);
                    self.served = false;
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Outcome::Refused
                }
                Ok(Err(e)) => return Outcome::ConnectFailed(e.to_string()),
                Err(_) => return Outcome::ConnectFailed("connect timed out".to_owned()),
            }
        }
        let reused = self.served;
        let stream = self.stream.as_mut().expect("connected");
        let result = tokio::time::timeout(Duration::from_secs(15), exchange(stream, call)).await;
        let outcome = match result {
            Err(_) => Outcome::TimedOut,
            Ok(Exchange::Whole { outcome, close }) => {
                if close {
                    self.stream = None;
                }
                self.served = true;
                return outcome;
            }
            Ok(Exchange::Nothing) => Outcome::Unanswered { reused },
            Ok(Exchange::Partial) => Outcome::Truncated,
        };
        self.stream = None;
        outcome
    }
}

enum Exchange {
    Whole {
        outcome: Outcome,
        close: bool,
    },
    /// Nothing of an answer arrived.
    Nothing,
    /// Part of an answer arrived.
    Partial,
}

async fn exchange(stream: &mut TcpStream, call: &Call) -> Exchange {
    if stream.write_all(call.head.as_bytes()).await.is_err() {
        return Exchange::Nothing;
    }
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    // The head.
    let (status, close, framing, head_len, region) = loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return Exchange::Nothing,
            Ok(0) | Err(_) => return Exchange::Partial,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let find = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
                let framing = match (find("content-length"), find("transfer-encoding")) {
                    (_, Some(te)) if te.eq_ignore_ascii_case("chunked") => Framing::Chunked,
                    (Some(cl), None) => match cl.trim().parse() {
                        Ok(n) => Framing::Length(n),
                        Err(_) => return Exchange::Partial,
                    },
                    _ => Framing::UntilClose,
                };
                break (
                    resp.code.unwrap_or(0),
                    close,
                    framing,
                    len,
                    find("x-residency-region"),
                );
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Exchange::Partial,
        }
    };
    let mut body = buf.split_off(head_len);
    let complete = loop {
        if let Some(decoded) = framing.done(&body) {
            break Some(decoded);
        }
        match stream.read(&mut chunk).await {
            Ok(0) if matches!(framing, Framing::UntilClose) => break Some(body.clone()),
            Ok(0) | Err(_) => break None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    };
    let Some(body) = complete else {
        return Exchange::Partial;
    };
    let outcome = check(status, region.as_deref(), &body, call);
    Exchange::Whole {
        outcome,
        close: close || matches!(framing, Framing::UntilClose),
    }
}

/// Whether a whole answer is the caller's own: the home region on every answer that names
/// one, the caller's tenant in every 200 body.
fn check(status: u16, region: Option<&str>, body: &[u8], call: &Call) -> Outcome {
    if let Some(r) = region {
        if r != call.region {
            return Outcome::Misrouted(format!("region {r} for a {} tenant", call.region));
        }
    }
    if status == 200 {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if v["tenant_id"] != call.tenant.as_str() {
            return Outcome::Misrouted(format!("body {v} for tenant {}", call.tenant));
        }
        if region.is_none() {
            return Outcome::Misrouted("a 200 without x-residency-region".to_owned());
        }
    }
    Outcome::Answered(status)
}

#[derive(Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Framing {
    /// The decoded body once `raw` holds all of it.
    fn done(self, raw: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Length(n) => (raw.len() >= n).then(|| raw[..n].to_vec()),
            Self::UntilClose => None,
            Self::Chunked => {
                let mut out = Vec::new();
                let mut at = 0;
                loop {
                    let line_end = raw[at..].windows(2).position(|w| w == b"\r\n")? + at;
                    let size_text = std::str::from_utf8(&raw[at..line_end]).ok()?;
                    let size =
                        usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
                    at = line_end + 2;
                    if size == 0 {
                        // No trailers from these servers: the final CRLF ends the body.
                        return (raw.len() >= at + 2).then_some(out);
                    }
                    if raw.len() < at + size + 2 {
                        return None;
                    }
                    out.extend_from_slice(&raw[at..at + size]);
                    at += size + 2;
                }
            }
        }
    }
}
