//! The sans-IO half of the smuggling guard: follows HTTP/1 request framing over the bytes a
//! client sends, and says how many of them may go on to hyper, or why they may not.
//!
//! It parses only request heads (with `httparse`, as hyper does), chunk-size lines and trailer
//! lines; body bytes are counted, never looked at. What it refuses is what two HTTP parsers
//! could frame differently (RFC 9112 §6.3, §7.1):
//! - `Content-Length` together with `Transfer-Encoding` (hyper would pick chunked, a node or
//!   another proxy might pick the length);
//! - several `Content-Length` values that differ, or one that is not a plain decimal number;
//! - a `Transfer-Encoding` that is anything but exactly `chunked` (one coding, once), or any
//!   `Transfer-Encoding` on HTTP/1.0;
//! - a head `httparse` cannot parse (obs-fold, whitespace before a colon, bad tokens);
//! - a chunk-size line, chunk terminator or trailer line that is not strictly well formed.
//!
//! Not refused here: heads larger than the header limit or with more than [`MAX_HEADERS`]
//! fields. Those are hyper's to answer (431), so the guard stops inspecting and lets the bytes
//! through; hyper then refuses the head and closes the connection, so nothing after it is ever
//! parsed by anyone.

use std::mem::MaybeUninit;

/// Header fields per head: hyper's default `max_headers`, which the listener keeps (setting it
/// makes hyper allocate per request). A head with more is left to hyper's 431.
pub(crate) const MAX_HEADERS: usize = 100;
/// The longest chunk-size line, extensions and CRLF included.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;
/// The HTTP/2 client connection preface (RFC 9113 §3.4): a stream starting with it is h2.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes say about its protocol: `Some(true)` HTTP/2 (the whole
/// preface), `Some(false)` HTTP/1 (bytes the preface does not start with), `None` not yet
/// known (nothing, or a prefix of the preface).
pub(super) fn is_preface(held: &[u8]) -> Option<bool> {
    if held.len() >= PREFACE.len() {
        Some(held.starts_with(PREFACE))
    } else if PREFACE.starts_with(held) {
        None
    } else {
        Some(false)
    }
}

/// Why a request was refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndTransferEncoding,
    /// Several `Content-Length` values that differ.
    ConflictingLength,
    /// A `Content-Length` that is not a decimal number.
    InvalidLength,
    /// A `Transfer-Encoding` other than exactly `chunked`.
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request.
    TransferEncodingOnHttp10,
    /// A head that does not parse.
    MalformedHead,
    /// A chunk-size line or chunk terminator that is not well formed.
    InvalidChunk,
    /// A trailer line that is not well formed, or trailers over the header limit.
    InvalidTrailer,
}

impl Refusal {
    /// Every refusal, in [`Refusal::code`] order.
    const ALL: [Self; 8] = [
        Self::LengthAndTransferEncoding,
        Self::ConflictingLength,
        Self::InvalidLength,
        Self::UnsupportedTransferEncoding,
        Self::TransferEncodingOnHttp10,
        Self::MalformedHead,
        Self::InvalidChunk,
        Self::InvalidTrailer,
    ];

    /// The client-safe explanation, for the problem `detail`.
    #[must_use]
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::LengthAndTransferEncoding => {
                "the request has both Content-Length and Transfer-Encoding"
            }
            Self::ConflictingLength => "the request has conflicting Content-Length values",
            Self::InvalidLength => "the request has an invalid Content-Length",
            Self::UnsupportedTransferEncoding => "Transfer-Encoding must be exactly 'chunked'",
            Self::TransferEncodingOnHttp10 => "Transfer-Encoding is not allowed in HTTP/1.0",
            Self::MalformedHead => "the request head is malformed",
            Self::InvalidChunk => "the chunked request body is malformed",
            Self::InvalidTrailer => "the request trailers are malformed",
        }
    }

    /// A bounded label for logs.
    #[must_use]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::LengthAndTransferEncoding => "cl_and_te",
            Self::ConflictingLength => "conflicting_cl",
            Self::InvalidLength => "invalid_cl",
            Self::UnsupportedTransferEncoding => "unsupported_te",
            Self::TransferEncodingOnHttp10 => "te_on_http10",
            Self::MalformedHead => "malformed_head",
            Self::InvalidChunk => "invalid_chunk",
            Self::InvalidTrailer => "invalid_trailer",
        }
    }

    /// Whether it was found in a body, after the request's head went on to hyper.
    #[must_use]
    pub(crate) fn in_body(self) -> bool {
        matches!(self, Self::InvalidChunk | Self::InvalidTrailer)
    }

    /// A small non-zero number, for storing in an atomic.
    pub(super) fn code(self) -> u64 {
        // `ALL` lists every variant, so the position always exists.
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .map_or(0, |i| i as u64 + 1)
    }

    /// The inverse of [`Refusal::code`].
    pub(super) fn from_code(code: u64) -> Option<Self> {
        let i = usize::try_from(code.checked_sub(1)?).ok()?;
        Self::ALL.get(i).copied()
    }
}

/// What to do with the bytes received and not yet processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The first `n` bytes are valid and may go on to hyper.
    Release(usize),
    /// Nothing can be decided until more bytes arrive.
    NeedMore,
    /// Nothing is pending, and up to this many bytes that arrive next are body bytes that may
    /// go straight to hyper; report them with [`Framing::passed_through`].
    PassThrough(u64),
    /// The request must be refused.
    Refuse(Refusal),
}

/// Which bytes are inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// HTTP/1 requests, unless the stream opens with the HTTP/2 preface.
    Http1,
    /// Nothing: an HTTP/2 connection (negotiated by ALPN) has no framing ambiguity.
    PassThrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a request head.
    Head,
    /// Inside a body of known remaining length: a `Content-Length` body or one chunk's data.
    Body { remaining: u64, chunk: bool },
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Expecting the CRLF that ends a chunk's data.
    ChunkEnd,
    /// Expecting trailer lines or the empty line that ends a chunked body.
    Trailers { bytes: usize, lines: usize },
    /// Not inspecting any more: HTTP/2, or a head left to hyper's 431.
    Opaque,
}

/// How a head frames its body.
enum Body {
    Length(u64),
    Chunked,
}

/// The framing state of one connection's client-to-server bytes.
#[derive(Debug)]
pub(super) struct Framing {
    state: State,
    max_head: usize,
    /// Whether no head has been released yet (the HTTP/2 preface is recognised only there).
    first: bool,
    /// Bytes of the pending head already searched for its end.
    scanned: usize,
    /// Heads released so far.
    requests: u64,
    /// Whether the connection is HTTP/2 (by ALPN or by its preface).
    h2: bool,
}

impl Framing {
    /// Framing for a new connection whose heads may be at most `max_head` bytes.
    #[must_use]
    pub(super) fn new(mode: Mode, max_head: usize) -> Self {
        Self {
            state: match mode {
                Mode::Http1 => State::Head,
                Mode::PassThrough => State::Opaque,
            },
            max_head,
            first: true,
            scanned: 0,
            requests: 0,
            h2: mode == Mode::PassThrough,
        }
    }

    /// Whether the connection speaks HTTP/2: negotiated by ALPN, or opened with the preface
    /// (the preface itself and everything after it is released from then on).
    #[must_use]
    pub(super) fn is_h2(&self) -> bool {
        self.h2
    }

    /// Heads released so far, i.e. the number of the request currently being read.
    #[must_use]
    pub(super) fn requests(&self) -> u64 {
        self.requests
    }

    /// Whether a request head is expected next.
    #[must_use]
    pub(super) fn expects_head(&self) -> bool {
        self.state == State::Head
    }

    /// The most unprocessed bytes this framing may ask to hold before deciding.
    #[must_use]
    pub(super) fn max_pending(&self) -> usize {
        self.max_head.max(MAX_CHUNK_LINE)
    }

    /// Decides about `input`, the received bytes not yet released (empty when none).
    pub(super) fn step(&mut self, input: &[u8]) -> Step {
        match self.state {
            State::Opaque if input.is_empty() => Step::PassThrough(u64::MAX),
            State::Opaque => Step::Release(input.len()),
            State::Body { remaining, .. } if input.is_empty() => Step::PassThrough(remaining),
            State::Body { remaining, .. } => {
                let n = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                self.passed_through(n);
                Step::Release(n)
            }
            State::Head => self.head(input),
            State::ChunkSize => self.chunk_size(input),
            State::ChunkEnd => match input {
                [] | [b'\r'] => Step::NeedMore,
                [b'\r', b'\n', ..] => {
                    self.state = State::ChunkSize;
                    Step::Release(2)
                }
                _ => Step::Refuse(Refusal::InvalidChunk),
            },
            State::Trailers { bytes, lines } => self.trailer(input, bytes, lines),
        }
    }

    /// Records `n` body bytes that went to hyper (from [`Step::PassThrough`] or a release).
    pub(super) fn passed_through(&mut self, n: usize) {
        if let State::Body { remaining, chunk } = self.state {
            let left = remaining.saturating_sub(n as u64);
            self.state = match (left, chunk) {
                (0, true) => State::ChunkEnd,
                (0, false) => State::Head,
                (left, chunk) => State::Body {
                    remaining: left,
                    chunk,
                },
            };
        }
    }

    fn head(&mut self, input: &[u8]) -> Step {
        if input.is_empty() {
            return Step::NeedMore;
        }
        if self.first {
            let n = input.len().min(PREFACE.len());
            if input[..n] == PREFACE[..n] {
                if n < PREFACE.len() {
                    return Step::NeedMore;
                }
                self.state = State::Opaque;
                self.h2 = true;
                return Step::Release(input.len());
            }
        }
        // Search only the new bytes for the blank line that ends a head, so a head arriving
        // a byte at a time costs linear, not quadratic, work.
        let from = self.scanned.saturating_sub(3);
        if !has_blank_line(&input[from..]) {
            self.scanned = input.len();
            return self.partial_head(input.len());
        }
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            input,
            &mut headers,
        );
        match parsed {
            Ok(httparse::Status::Complete(n)) if n > self.max_head => self.give_up(input.len()),
            Ok(httparse::Status::Complete(n)) => match body_of(&req) {
                Ok(body) => {
                    self.first = false;
                    self.scanned = 0;
                    self.requests += 1;
                    self.state = match body {
                        Body::Length(0) => State::Head,
                        Body::Length(remaining) => State::Body {
                            remaining,
                            chunk: false,
                        },
                        Body::Chunked => State::ChunkSize,
                    };
                    Step::Release(n)
                }
                Err(refusal) => Step::Refuse(refusal),
            },
            Ok(httparse::Status::Partial) => {
                self.scanned = input.len();
                self.partial_head(input.len())
            }
            Err(httparse::Error::TooManyHeaders) => self.give_up(input.len()),
            Err(_) => Step::Refuse(Refusal::MalformedHead),
        }
    }

    fn partial_head(&mut self, len: usize) -> Step {
        if len >= self.max_head {
            self.give_up(len)
        } else {
            Step::NeedMore
        }
    }

    /// Stops inspecting: hyper will refuse this head with 431 and close the connection.
    fn give_up(&mut self, len: usize) -> Step {
        self.state = State::Opaque;
        Step::Release(len)
    }

    fn chunk_size(&mut self, input: &[u8]) -> Step {
        let Some(end) = line_end(input, MAX_CHUNK_LINE) else {
            return if input.len() >= MAX_CHUNK_LINE {
                Step::Refuse(Refusal::InvalidChunk)
            } else {
                Step::NeedMore
            };
        };
        match parse_chunk_size(&input[..end]) {
            Some(0) => {
                self.state = State::Trailers { bytes: 0, lines: 0 };
                Step::Release(end)
            }
            Some(size) => {
                self.state = State::Body {
                    remaining: size,
                    chunk: true,
                };
                Step::Release(end)
            }
            None => Step::Refuse(Refusal::InvalidChunk),
        }
    }

    fn trailer(&mut self, input: &[u8], bytes: usize, lines: usize) -> Step {
        let room = self.max_head.saturating_sub(bytes);
        let Some(end) = line_end(input, room) else {
            return if input.len() >= room {
                Step::Refuse(Refusal::InvalidTrailer)
            } else {
                Step::NeedMore
            };
        };
        let line = &input[..end];
        if line == b"\r\n" {
            self.state = State::Head;
            return Step::Release(end);
        }
        if lines >= MAX_HEADERS || !is_trailer_field(line) {
            return Step::Refuse(Refusal::InvalidTrailer);
        }
        self.state = State::Trailers {
            bytes: bytes + end,
            lines: lines + 1,
        };
        Step::Release(end)
    }
}

/// How the head's headers frame its body, or why they are ambiguous.
fn body_of(req: &httparse::Request<'_, '_>) -> Result<Body, Refusal> {
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut codings = 0usize;
    let mut only_chunked = true;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_decimal(h.value).ok_or(Refusal::InvalidLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(Refusal::ConflictingLength);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for coding in h.value.split(|b| *b == b',') {
                codings += 1;
                only_chunked &= trim_ows(coding).eq_ignore_ascii_case(b"chunked");
            }
        }
    }
    if !transfer_encoding {
        return Ok(Body::Length(length.unwrap_or(0)));
    }
    if length.is_some() {
        Err(Refusal::LengthAndTransferEncoding)
    } else if req.version == Some(0) {
        Err(Refusal::TransferEncodingOnHttp10)
    } else if codings != 1 || !only_chunked {
        Err(Refusal::UnsupportedTransferEncoding)
    } else {
        Ok(Body::Chunked)
    }
}

/// `1*DIGIT` as a `u64`, nothing else (no sign, no spaces, no list).
fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| {
        let digit = char::from(*b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The size of a chunk-size line (`line` ends with its LF): `1*HEXDIG [ BWS ";" ext ] CRLF`,
/// extensions without control characters.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"\r\n")?;
    let digits = body.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let size = body[..digits].iter().try_fold(0u64, |n, b| {
        let digit = char::from(*b).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(digit))
    })?;
    let rest = trim_start_ows(&body[digits..]);
    match rest.split_first() {
        None => Some(size),
        Some((b';', ext)) if ext.iter().all(|b| !is_ctl(*b)) => Some(size),
        Some(_) => None,
    }
}

/// Whether `line` (ending with its LF) is `field-name ":" value CRLF`: a token name directly
/// followed by the colon (no obs-fold, no whitespace before the colon), a value without
/// control characters, and not a framing field.
fn is_trailer_field(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return false;
    };
    let name_len = body.iter().take_while(|b| is_tchar(**b)).count();
    let (name, rest) = body.split_at(name_len);
    let Some((b':', value)) = rest.split_first() else {
        return false;
    };
    !name.is_empty()
        && !name.eq_ignore_ascii_case(b"content-length")
        && !name.eq_ignore_ascii_case(b"transfer-encoding")
        && value.iter().all(|b| !is_ctl(*b))
}

/// The length of the first line of `input` including its LF, if it ends within `limit` bytes.
fn line_end(input: &[u8], limit: usize) -> Option<usize> {
    let window = &input[..input.len().min(limit)];
    window.iter().position(|b| *b == b'\n').map(|i| i + 1)
}

/// Whether `bytes` contain the end of a head: an empty line after a LF (`\n\n` or `\n\r\n`).
fn has_blank_line(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(|b| *b == b'\n') {
        rest = &rest[i + 1..];
        match rest {
            [b'\n', ..] | [b'\r', b'\n', ..] => return true,
            _ => {}
        }
    }
    false
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let end = bytes.len() - bytes.iter().rev().take_while(|b| is_ows(**b)).count();
    trim_start_ows(&bytes[..end])
}

fn trim_start_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().take_while(|b| is_ows(**b)).count();
    &bytes[start..]
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A control character other than HTAB (CR and LF included).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
