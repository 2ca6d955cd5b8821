//! Unit tests of the framing rules, one input at a time.

use super::*;

/// Runs `input` through a fresh framing in one piece; returns the bytes released and the
/// refusal, if any. Body bytes offered for pass-through are taken from `input` too.
fn run(input: &[u8]) -> (usize, Option<Refusal>, Framing) {
    let mut f = Framing::new(Mode::Http1, 1024);
    let mut at = 0;
    loop {
        match f.step(&input[at..]) {
            Step::Release(n) => at += n,
            Step::NeedMore => return (at, None, f),
            Step::PassThrough(_) => return (at, None, f),
            Step::Refuse(r) => return (at, Some(r), f),
        }
    }
}

fn refused(input: &str) -> Option<Refusal> {
    run(input.as_bytes()).1
}

#[test]
fn pipelined_requests_are_released_whole() {
    let input = "GET / HTTP/1.1\r\nhost: a\r\n\r\n\
                 POST /x HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello\
                 POST /y HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
                 3;name=value\r\nabc\r\n10 \r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\n\
                 \r\nGET /z HTTP/1.0\r\n\r\n";
    let (released, refusal, f) = run(input.as_bytes());
    assert_eq!(refusal, None);
    assert_eq!(released, input.len());
    assert_eq!(f.requests(), 4);
    assert!(f.expects_head());
}

#[test]
fn ambiguous_framing_is_refused() {
    use Refusal::*;
    let cases = [
        (
            "content-length: 3\r\ntransfer-encoding: chunked",
            LengthAndTransferEncoding,
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 3",
            LengthAndTransferEncoding,
        ),
        (
            "content-length: 3\r\ntransfer-encoding: gzip",
            LengthAndTransferEncoding,
        ),
        ("content-length: 3\r\ncontent-length: 4", ConflictingLength),
        ("content-length: +3", InvalidLength),
        ("content-length: 3, 3", InvalidLength),
        ("content-length: 0x3", InvalidLength),
        ("content-length: 99999999999999999999999", InvalidLength),
        (
            "transfer-encoding: chunked, identity",
            UnsupportedTransferEncoding,
        ),
        (
            "transfer-encoding: gzip, chunked",
            UnsupportedTransferEncoding,
        ),
        (
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked",
            UnsupportedTransferEncoding,
        ),
        ("transfer-encoding: xchunked", UnsupportedTransferEncoding),
        ("transfer-encoding: chunked,", UnsupportedTransferEncoding),
        ("transfer-encoding: ", UnsupportedTransferEncoding),
        ("transfer-encoding : chunked", MalformedHead),
        ("x-a: 1\r\n transfer-encoding: chunked", MalformedHead),
        ("x-a: 1\r\n\ttransfer-encoding: chunked", MalformedHead),
    ];
    for (headers, expected) in cases {
        let req = format!("POST / HTTP/1.1\r\nhost: a\r\n{headers}\r\n\r\n");
        assert_eq!(refused(&req), Some(expected), "{headers:?}");
    }
    assert_eq!(
        refused("POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n"),
        Some(TransferEncodingOnHttp10)
    );
    assert_eq!(refused("GET / HTTP/1.1\r\nhost: a\r\n\r\n"), None);
    assert_eq!(
        refused("POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc"),
        None
    );
}

#[test]
fn a_refusal_after_good_requests_releases_only_them() {
    let good = "GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\ncontent-length: 2\r\n\r\nok";
    let input =
        format!("{good}POST / HTTP/1.1\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n");
    let (released, refusal, f) = run(input.as_bytes());
    assert_eq!(released, good.len());
    assert_eq!(refusal, Some(Refusal::LengthAndTransferEncoding));
    assert_eq!(f.requests(), 2);
}

#[test]
fn chunk_framing_is_strict() {
    for (body, ok) in [
        ("5\r\nhello\r\n0\r\n\r\n", true),
        ("5 ;a=b\r\nhello\r\n0\r\n\r\n", true),
        ("0005\r\nhello\r\n0\r\n\r\n", true),
        ("0\r\nx-a: 1\r\nx-b:\r\n\r\n", true),
        ("zz\r\nhello\r\n0\r\n\r\n", false),
        (" 5\r\nhello\r\n0\r\n\r\n", false),
        ("5\nhello\r\n0\r\n\r\n", false),
        ("5\r\nhello\n0\r\n\r\n", false),
        ("5\r\nhelloXX0\r\n\r\n", false),
        ("5;a\rb\r\nhello\r\n0\r\n\r\n", false),
        ("5 6\r\nhello\r\n0\r\n\r\n", false),
        ("-5\r\nhello\r\n0\r\n\r\n", false),
        ("10000000000000000\r\n", false),
        ("0\r\nx-a : 1\r\n\r\n", false),
        ("0\r\n folded\r\n\r\n", false),
        ("0\r\nx-a: 1\n\r\n", false),
        ("0\r\ncontent-length: 5\r\n\r\n", false),
        ("0\r\nno-colon\r\n\r\n", false),
    ] {
        let req = format!("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n{body}");
        let (released, refusal, f) = run(req.as_bytes());
        if ok {
            assert_eq!((released, refusal), (req.len(), None), "{body:?}");
            assert!(f.expects_head(), "{body:?}");
        } else {
            assert!(
                matches!(
                    refusal,
                    Some(Refusal::InvalidChunk | Refusal::InvalidTrailer)
                ),
                "{body:?}: {refusal:?}"
            );
        }
    }
}

#[test]
fn over_long_chunk_lines_and_trailers_are_refused() {
    let mut f = Framing::new(Mode::Http1, 1024);
    let head = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
    assert_eq!(f.step(head), Step::Release(head.len()));
    let long = format!("5;{}", "a".repeat(MAX_CHUNK_LINE));
    assert_eq!(f.step(long.as_bytes()), Step::Refuse(Refusal::InvalidChunk));

    let input = format!(
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-a: {}\r\n\r\n",
        "b".repeat(1024)
    );
    assert_eq!(refused(&input), Some(Refusal::InvalidTrailer));
}

#[test]
fn oversized_heads_and_too_many_headers_are_left_to_hyper() {
    let big = format!("GET / HTTP/1.1\r\nx-big: {}\r\n", "a".repeat(2000));
    let mut f = Framing::new(Mode::Http1, 1024);
    assert_eq!(f.step(big.as_bytes()), Step::Release(big.len()));
    // From here on everything passes, ambiguous or not: hyper answers 431 and closes.
    assert_eq!(f.step(b"x"), Step::Release(1));
    assert_eq!(f.step(b""), Step::PassThrough(u64::MAX));

    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("x-{i}: 1\r\n"));
    }
    many.push_str("content-length: 1\r\ntransfer-encoding: chunked\r\n\r\n");
    let mut f = Framing::new(Mode::Http1, 16 * 1024);
    assert_eq!(f.step(many.as_bytes()), Step::Release(many.len()));
    assert_eq!(f.step(b""), Step::PassThrough(u64::MAX));
}

#[test]
fn the_http2_preface_switches_to_pass_through() {
    let mut f = Framing::new(Mode::Http1, 1024);
    assert_eq!(f.step(&PREFACE[..10]), Step::NeedMore);
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(b"\x00\x00\x00\x04");
    assert_eq!(f.step(&input), Step::Release(input.len()));
    assert_eq!(f.step(b""), Step::PassThrough(u64::MAX));
    // Only at the start of a connection.
    let mut f = Framing::new(Mode::Http1, 1024);
    let get = b"GET / HTTP/1.1\r\n\r\n";
    assert_eq!(f.step(get), Step::Release(get.len()));
    assert_eq!(f.step(PREFACE), Step::Refuse(Refusal::MalformedHead));
}

#[test]
fn a_partial_head_waits_and_is_scanned_once() {
    let mut f = Framing::new(Mode::Http1, 1024);
    let req = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
    for n in 1..req.len() {
        assert_eq!(f.step(&req[..n]), Step::NeedMore, "{n}");
    }
    assert_eq!(f.step(req), Step::Release(req.len()));
}

#[test]
fn body_bytes_pass_through_without_inspection() {
    let mut f = Framing::new(Mode::Http1, 1024);
    let head = b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\n";
    assert_eq!(f.step(head), Step::Release(head.len()));
    assert_eq!(f.step(b""), Step::PassThrough(10));
    f.passed_through(4);
    assert_eq!(f.step(b""), Step::PassThrough(6));
    // Bytes in the buffer beyond the body are the next head, not body.
    assert_eq!(f.step(b"123456GET"), Step::Release(6));
    assert!(f.expects_head());
}

#[test]
fn refusal_codes_round_trip() {
    for r in Refusal::ALL {
        assert_eq!(Refusal::from_code(r.code()), Some(r));
        assert!(!r.detail().is_empty());
    }
    assert_eq!(Refusal::from_code(0), None);
    assert_eq!(Refusal::from_code(99), None);
}
