//! Follows the HTTP/2 frame boundaries in a client's bytes, so the guard can time an unfinished
//! header block (RFC 9113 §4.1, §6.2, §6.10): hyper's HTTP/2 server has no header-read timeout,
//! and a client could otherwise hold a connection (and its permit) forever with a `HEADERS`
//! frame whose `CONTINUATION` never comes.
//!
//! Only the 9-byte frame headers are looked at (copied into a 9-byte array when a read splits
//! one); payloads are skipped by counting. The connection preface comes first and is skipped
//! too. What counts as unfinished:
//! - a frame header received in part (its type is not known yet);
//! - a `HEADERS`, `PUSH_PROMISE` or `CONTINUATION` frame whose payload is received in part;
//! - a header block started without `END_HEADERS` whose last `CONTINUATION` has not arrived.
//!
//! Everything else (between frames, inside a `DATA` payload) is finished: a slow body is the
//! request timeout's business, an idle connection the idle timeout's.

/// `HEADERS` (RFC 9113 §6.2).
const HEADERS: u8 = 0x1;
/// `PUSH_PROMISE` (§6.6); a client must not send it, but it opens a header block all the same.
const PUSH_PROMISE: u8 = 0x5;
/// `CONTINUATION` (§6.10).
const CONTINUATION: u8 = 0x9;
/// The `END_HEADERS` flag of the three.
const END_HEADERS: u8 = 0x4;
/// Length of a frame header.
const FRAME_HEADER: u8 = 9;
/// Length of the client connection preface.
const PREFACE_LEN: u8 = 24;

/// Where a client's HTTP/2 byte stream is, frame-wise.
#[derive(Debug)]
pub(crate) struct HeaderBlocks {
    /// Preface bytes still to come.
    preface_left: u8,
    /// The frame header being received, `have` bytes of it so far.
    head: [u8; FRAME_HEADER as usize],
    have: u8,
    /// Payload bytes of the current frame still to come.
    payload_left: u32,
    /// Whether the current frame is part of a header block.
    header_frame: bool,
    /// Whether a header block was started without `END_HEADERS` and is not finished.
    block_open: bool,
    /// Frame headers begun so far.
    frames: u64,
    /// The frame at which the current unfinished stretch began.
    span: u64,
}

impl Default for HeaderBlocks {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderBlocks {
    /// A connection whose preface has not arrived yet.
    #[must_use]
    pub(crate) fn new() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            head: [0; FRAME_HEADER as usize],
            have: 0,
            payload_left: 0,
            header_frame: false,
            block_open: false,
            frames: 0,
            span: 0,
        }
    }

    /// Follows the next `bytes` the client sent.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = bytes.len().min(usize::from(self.preface_left));
                // `n` is at most `preface_left`, a `u8`.
                self.preface_left -= u8::try_from(n).unwrap_or(self.preface_left);
                bytes = &bytes[n..];
                continue;
            }
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .map_or(bytes.len(), |left| left.min(bytes.len()));
                // `n` is at most `payload_left`, a `u32`.
                self.payload_left -= u32::try_from(n).unwrap_or(self.payload_left);
                bytes = &bytes[n..];
                continue;
            }
            if self.have == 0 {
                self.frames += 1;
                if !self.block_open {
                    self.span = self.frames;
                }
            }
            let have = usize::from(self.have);
            let n = bytes.len().min(usize::from(FRAME_HEADER) - have);
            self.head[have..have + n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            // `n` is at most 9.
            self.have += u8::try_from(n).unwrap_or(FRAME_HEADER);
            if self.have == FRAME_HEADER {
                self.have = 0;
                self.frame_header();
            }
        }
    }

    /// A complete frame header is in `head`.
    fn frame_header(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.head;
        self.payload_left = u32::from_be_bytes([0, l0, l1, l2]);
        let end_headers = flags & END_HEADERS != 0;
        match kind {
            HEADERS | PUSH_PROMISE => {
                self.header_frame = true;
                self.block_open = !end_headers;
            }
            CONTINUATION => {
                self.header_frame = true;
                if end_headers {
                    self.block_open = false;
                }
            }
            _ => self.header_frame = false,
        }
    }

    /// The unfinished stretch the client is in, if any: a number that stays the same from
    /// the moment it began until it is finished (so a deadline can be kept for it), and
    /// differs for the next one.
    #[must_use]
    pub(crate) fn unfinished(&self) -> Option<u64> {
        let mid = self.preface_left > 0
            || self.have > 0
            || (self.header_frame && self.payload_left > 0)
            || self.block_open;
        mid.then_some(self.span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;

    fn frame(kind: u8, flags: u8, payload_len: usize) -> Vec<u8> {
        let len = u32::try_from(payload_len).unwrap();
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags, 0, 0, 0, 1]);
        out.resize(out.len() + payload_len, 0xab);
        out
    }

    /// Feeds `bytes` in pieces of `step` and returns `unfinished()` after the last one.
    fn after(bytes: &[u8], step: usize) -> Option<u64> {
        let mut t = HeaderBlocks::new();
        for piece in bytes.chunks(step) {
            t.feed(piece);
        }
        t.unfinished()
    }

    fn stream(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn whole_frames_are_finished_however_they_are_split() {
        let bytes = stream(&[
            frame(SETTINGS, 0, 12),
            frame(HEADERS, END_HEADERS, 40),
            frame(DATA, 0, 1000),
            frame(HEADERS, 0, 30),
            frame(CONTINUATION, 0, 20),
            frame(CONTINUATION, END_HEADERS, 10),
            frame(HEADERS, END_HEADERS, 0),
        ]);
        for step in [1, 2, 7, 9, 10, 100, bytes.len()] {
            assert_eq!(after(&bytes, step), None, "in pieces of {step}");
        }
    }

    #[test]
    fn the_preface_alone_is_finished_and_part_of_it_is_not() {
        assert_eq!(after(PREFACE, 1), None);
        assert!(after(&PREFACE[..10], 3).is_some());
        assert!(HeaderBlocks::new().unfinished().is_some());
    }

    #[test]
    fn a_header_block_without_its_last_continuation_is_unfinished() {
        let open = stream(&[frame(HEADERS, 0, 30)]);
        assert!(after(&open, 5).is_some());
        let still = stream(&[frame(HEADERS, 0, 30), frame(CONTINUATION, 0, 5)]);
        assert!(after(&still, 5).is_some());
        let promise = stream(&[frame(PUSH_PROMISE, 0, 8)]);
        assert!(after(&promise, 100).is_some());
    }

    #[test]
    fn a_partial_header_frame_or_frame_header_is_unfinished_a_partial_data_frame_is_not() {
        let headers = stream(&[frame(HEADERS, END_HEADERS, 40)]);
        assert!(after(&headers[..headers.len() - 1], 8).is_some());
        let cont = stream(&[frame(HEADERS, 0, 4), frame(CONTINUATION, END_HEADERS, 40)]);
        assert!(after(&cont[..cont.len() - 20], 8).is_some());
        assert!(after(&headers[..PREFACE.len() + 4], 1).is_some());
        let data = stream(&[frame(HEADERS, END_HEADERS, 4), frame(DATA, 0, 4000)]);
        assert_eq!(after(&data[..data.len() - 100], 64), None);
    }

    #[test]
    fn a_stretch_keeps_its_number_until_finished_and_the_next_gets_another() {
        let mut t = HeaderBlocks::new();
        t.feed(PREFACE);
        let first = frame(HEADERS, 0, 10);
        t.feed(&first[..4]);
        let a = t.unfinished().unwrap();
        t.feed(&first[4..]);
        assert_eq!(t.unfinished(), Some(a), "same block");
        t.feed(&frame(CONTINUATION, 0, 3));
        assert_eq!(t.unfinished(), Some(a), "same block");
        t.feed(&frame(CONTINUATION, END_HEADERS, 3));
        assert_eq!(t.unfinished(), None);
        t.feed(&frame(HEADERS, END_HEADERS, 8)[..3]);
        let b = t.unfinished().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn the_largest_frame_length_is_skipped_without_overflow() {
        let mut t = HeaderBlocks::new();
        t.feed(PREFACE);
        t.feed(&[0xff, 0xff, 0xff, DATA, 0, 0, 0, 0, 1]);
        t.feed(&vec![0; 0x00ff_ffff]);
        assert_eq!(t.unfinished(), None);
        t.feed(&[0, 0, 0, HEADERS, END_HEADERS, 0, 0, 0, 3]);
        assert_eq!(t.unfinished(), None);
    }
}
