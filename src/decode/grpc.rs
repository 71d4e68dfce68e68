//! gRPC message framing over one HTTP/2 stream direction: the DATA bytes are a sequence
//! of length-prefixed messages (1 byte compressed flag, 4 bytes big-endian length, the
//! message). [`GrpcMessageAssembler`] cuts them out across DATA frame boundaries, in
//! bounded memory, decompressing gzip with a size bound; it reports rather than guesses
//! when lost bytes make the framing unknowable. Also here: reading `grpc-status` and
//! `grpc-message` from trailers.

use std::io::Read;

use thiserror::Error;

/// Bytes of one message kept by default; the rest of a longer message is skipped.
pub const DEFAULT_MAX_KEPT: usize = 4 << 20;
/// Largest decompressed message by default.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 16 << 20;
/// Length of the message prefix.
pub const MESSAGE_PREFIX_LEN: usize = 5;

/// Why a message's bytes are not all there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncompleteReason {
    /// Longer than the `max_kept` bound: only the first `kept` bytes were kept.
    TooLarge { kept: usize },
    /// `lost` bytes of it were lost in gaps; bytes after the first gap are not kept.
    Gap { lost: u64 },
    /// The stream (or the data) ended `missing` bytes before the message did.
    EndOfStream { missing: u64 },
}

/// Why a message's payload could not be turned into protobuf bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GrpcDecodeError {
    #[error("compressed message is incomplete; cannot decompress")]
    Incomplete,
    #[error("message is flagged compressed but grpc-encoding is {}", .0.as_deref().unwrap_or("absent"))]
    CompressedWithoutEncoding(Option<String>),
    #[error("unsupported grpc-encoding {0:?}")]
    UnsupportedEncoding(String),
    #[error("decompressed message exceeds the {limit}-byte bound")]
    DecompressedTooLarge { limit: usize },
    #[error("gzip: {0}")]
    Gzip(String),
}

/// One gRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcMessage {
    /// Capture time of the message's first and last byte.
    pub ts_first_ns: u64,
    pub ts_last_ns: u64,
    /// The compressed flag of the prefix.
    pub compressed: bool,
    /// The declared length (on the wire).
    pub len: u32,
    /// The protobuf bytes: decompressed when the message was compressed and that
    /// succeeded; otherwise as on the wire (at most `max_kept` bytes).
    pub data: Vec<u8>,
    /// All `len` bytes were seen and kept.
    pub complete: bool,
    /// Why not complete.
    pub incomplete: Option<IncompleteReason>,
    /// Set when the message is compressed and could not be decompressed (`data` then
    /// holds the compressed bytes).
    pub decode_error: Option<GrpcDecodeError>,
}

/// Why the rest of a stream direction cannot be cut into messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnframeableReason {
    /// A gap between two messages: where the next one starts is unknown.
    GapAtMessageBoundary,
    /// A gap inside a message prefix: the message length is unknown.
    GapInPrefix,
    /// A gap running past the end of the current message.
    GapPastMessageEnd,
    /// A gap of unknown length (the HTTP/2 layer could not tell data from padding).
    InexactGap,
    /// A compressed-flag byte other than 0 or 1: not a message boundary.
    BadCompressedFlag(u8),
    /// The stream ended inside a message prefix.
    EndInPrefix { have: usize },
}

/// What a [`GrpcMessageAssembler`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcEvent {
    Message(GrpcMessage),
    /// From here on this stream direction yields no more messages.
    Unframeable {
        ts_ns: u64,
        reason: UnframeableReason,
    },
}

/// The message compression of a stream (its `grpc-encoding` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// No header, or `identity`.
    Identity,
    Gzip,
    /// Anything else: such messages are reported undecodable.
    Other(String),
    /// No `grpc-encoding` header: compressed messages are an error.
    Absent,
}

impl Encoding {
    /// The encoding named by a `grpc-encoding` value.
    pub fn from_header(value: Option<&str>) -> Encoding {
        match value.map(str::trim) {
            None => Encoding::Absent,
            Some(v) if v.eq_ignore_ascii_case("identity") => Encoding::Identity,
            Some(v) if v.eq_ignore_ascii_case("gzip") => Encoding::Gzip,
            Some(v) => Encoding::Other(v.to_string()),
        }
    }
}

/// Bounds of a [`GrpcMessageAssembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Bytes of one message kept.
    pub max_kept: usize,
    /// Largest decompressed message.
    pub max_decompressed: usize,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            max_kept: DEFAULT_MAX_KEPT,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }
}

#[derive(Debug)]
enum State {
    Prefix {
        have: [u8; MESSAGE_PREFIX_LEN],
        n: usize,
        ts_first: u64,
    },
    Body(Body),
    Unframeable,
}

#[derive(Debug)]
struct Body {
    compressed: bool,
    len: u32,
    remaining: u64,
    data: Vec<u8>,
    ts_first: u64,
    ts_last: u64,
    lost: u64,
    overflow: bool,
}

/// Cuts one stream direction's DATA bytes into gRPC messages. Feed the DATA payloads in
/// order with [`push_data`](Self::push_data), lost bytes with
/// [`push_gap`](Self::push_gap), and call [`finish`](Self::finish) at END_STREAM.
#[derive(Debug)]
pub struct GrpcMessageAssembler {
    state: State,
    encoding: Encoding,
    limits: GrpcLimits,
}

impl GrpcMessageAssembler {
    /// An assembler for a stream whose `grpc-encoding` header is `encoding`.
    pub fn new(encoding: Option<&str>) -> GrpcMessageAssembler {
        GrpcMessageAssembler::with_limits(encoding, GrpcLimits::default())
    }

    /// An assembler with explicit bounds.
    pub fn with_limits(encoding: Option<&str>, limits: GrpcLimits) -> GrpcMessageAssembler {
        GrpcMessageAssembler {
            state: State::Prefix {
                have: [0; MESSAGE_PREFIX_LEN],
                n: 0,
                ts_first: 0,
            },
            encoding: Encoding::from_header(encoding),
            limits,
        }
    }

    /// True once the stream's framing was lost for good.
    pub fn is_unframeable(&self) -> bool {
        matches!(self.state, State::Unframeable)
    }

    /// Takes DATA payload bytes that follow the previous ones.
    pub fn push_data(&mut self, mut bytes: &[u8], ts_ns: u64, out: &mut Vec<GrpcEvent>) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Unframeable => return,
                State::Prefix { have, n, ts_first } => {
                    if *n == 0 {
                        *ts_first = ts_ns;
                    }
                    let take = (MESSAGE_PREFIX_LEN - *n).min(bytes.len());
                    let (head, rest) = bytes.split_at(take);
                    if let Some(dst) = have.get_mut(*n..*n + take) {
                        dst.copy_from_slice(head);
                    }
                    *n += take;
                    bytes = rest;
                    if *n == MESSAGE_PREFIX_LEN {
                        let (prefix, ts_first) = (*have, *ts_first);
                        self.start_message(prefix, ts_first, ts_ns, out);
                    }
                }
                State::Body(body) => {
                    let take = usize::try_from(body.remaining)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    let (head, rest) = bytes.split_at(take);
                    bytes = rest;
                    body.ts_last = ts_ns;
                    body.remaining -= take as u64;
                    if body.lost == 0 {
                        let room = self.limits.max_kept.saturating_sub(body.data.len());
                        let keep = room.min(head.len());
                        body.data
                            .extend_from_slice(head.get(..keep).unwrap_or_default());
                        body.overflow |= keep < head.len();
                    }
                    if body.remaining == 0 {
                        self.end_message(out);
                    }
                }
            }
        }
    }

    /// Declares `len` DATA bytes lost; `exact` false when `len` is only an upper bound.
    pub fn push_gap(&mut self, len: u64, exact: bool, ts_ns: u64, out: &mut Vec<GrpcEvent>) {
        if len == 0 && exact {
            return;
        }
        let reason = match &mut self.state {
            State::Unframeable => return,
            State::Prefix { n: 0, .. } => UnframeableReason::GapAtMessageBoundary,
            State::Prefix { .. } => UnframeableReason::GapInPrefix,
            State::Body(body) => {
                body.ts_last = ts_ns;
                if exact && len <= body.remaining {
                    body.lost += len;
                    body.remaining -= len;
                    if body.remaining == 0 {
                        self.end_message(out);
                    }
                    return;
                }
                body.lost += body.remaining;
                body.remaining = 0;
                self.end_message(out);
                if exact {
                    UnframeableReason::GapPastMessageEnd
                } else {
                    UnframeableReason::InexactGap
                }
            }
        };
        self.state = State::Unframeable;
        out.push(GrpcEvent::Unframeable { ts_ns, reason });
    }

    /// The stream direction ended: reports a message cut short.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<GrpcEvent>) {
        match std::mem::replace(&mut self.state, State::Unframeable) {
            State::Prefix { n, .. } if n > 0 => out.push(GrpcEvent::Unframeable {
                ts_ns,
                reason: UnframeableReason::EndInPrefix { have: n },
            }),
            State::Body(body) => {
                let missing = body.remaining;
                out.push(GrpcEvent::Message(
                    self.build(body, Some(IncompleteReason::EndOfStream { missing })),
                ));
            }
            State::Unframeable => return,
            State::Prefix { .. } => {}
        }
        self.state = State::Prefix {
            have: [0; MESSAGE_PREFIX_LEN],
            n: 0,
            ts_first: 0,
        };
    }

    fn start_message(
        &mut self,
        prefix: [u8; MESSAGE_PREFIX_LEN],
        ts_first: u64,
        ts_ns: u64,
        out: &mut Vec<GrpcEvent>,
    ) {
        let [flag, l0, l1, l2, l3] = prefix;
        if flag > 1 {
            self.state = State::Unframeable;
            out.push(GrpcEvent::Unframeable {
                ts_ns,
                reason: UnframeableReason::BadCompressedFlag(flag),
            });
            return;
        }
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        // Never reserve from the length field beyond the kept bound (and a modest chunk).
        let cap = (len as usize).min(self.limits.max_kept).min(64 << 10);
        self.state = State::Body(Body {
            compressed: flag == 1,
            len,
            remaining: u64::from(len),
            data: Vec::with_capacity(cap),
            ts_first,
            ts_last: ts_ns,
            lost: 0,
            overflow: false,
        });
        if len == 0 {
            self.end_message(out);
        }
    }

    fn end_message(&mut self, out: &mut Vec<GrpcEvent>) {
        let state = std::mem::replace(
            &mut self.state,
            State::Prefix {
                have: [0; MESSAGE_PREFIX_LEN],
                n: 0,
                ts_first: 0,
            },
        );
        if let State::Body(body) = state {
            let incomplete = if body.lost > 0 {
                Some(IncompleteReason::Gap { lost: body.lost })
            } else if body.overflow {
                Some(IncompleteReason::TooLarge {
                    kept: body.data.len(),
                })
            } else {
                None
            };
            out.push(GrpcEvent::Message(self.build(body, incomplete)));
        }
    }

    fn build(&self, body: Body, incomplete: Option<IncompleteReason>) -> GrpcMessage {
        let complete = incomplete.is_none();
        let (data, decode_error) = if !body.compressed {
            (body.data, None)
        } else if !complete {
            (body.data, Some(GrpcDecodeError::Incomplete))
        } else {
            match decompress(&body.data, &self.encoding, self.limits.max_decompressed) {
                Ok(d) => (d, None),
                Err(e) => (body.data, Some(e)),
            }
        };
        GrpcMessage {
            ts_first_ns: body.ts_first,
            ts_last_ns: body.ts_last,
            compressed: body.compressed,
            len: body.len,
            data,
            complete,
            incomplete,
            decode_error,
        }
    }
}

/// Decompresses a message flagged compressed, producing at most `limit` bytes.
pub fn decompress(
    data: &[u8],
    encoding: &Encoding,
    limit: usize,
) -> Result<Vec<u8>, GrpcDecodeError> {
    match encoding {
        Encoding::Gzip => {
            let mut out = Vec::new();
            let bound = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
            flate2::read::GzDecoder::new(data)
                .take(bound)
                .read_to_end(&mut out)
                .map_err(|e| GrpcDecodeError::Gzip(e.to_string()))?;
            if out.len() > limit {
                return Err(GrpcDecodeError::DecompressedTooLarge { limit });
            }
            Ok(out)
        }
        Encoding::Identity => Err(GrpcDecodeError::CompressedWithoutEncoding(Some(
            "identity".to_string(),
        ))),
        Encoding::Absent => Err(GrpcDecodeError::CompressedWithoutEncoding(None)),
        Encoding::Other(name) => Err(GrpcDecodeError::UnsupportedEncoding(name.clone())),
    }
}

/// The status a gRPC call ended with, from its trailers (or a trailers-only response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStatus {
    /// `grpc-status`, when present.
    pub code: Option<u32>,
    /// `grpc-message`, percent-decoded, when present.
    pub message: Option<String>,
}

/// A trailer value that breaks the gRPC spec.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrailerError {
    #[error("grpc-status {0:?} is not a decimal number")]
    BadStatus(String),
}

/// Reads `grpc-status` and `grpc-message` from decoded header fields.
pub fn parse_grpc_status<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    fields: &[(N, V)],
) -> Result<GrpcStatus, TrailerError> {
    let mut status = GrpcStatus {
        code: None,
        message: None,
    };
    for (name, value) in fields {
        let (name, value) = (name.as_ref(), value.as_ref());
        if name.eq_ignore_ascii_case(b"grpc-status") {
            let text = String::from_utf8_lossy(value);
            let digits = text.trim();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TrailerError::BadStatus(text.into_owned()));
            }
            let code = digits
                .parse::<u32>()
                .map_err(|_| TrailerError::BadStatus(text.to_string()))?;
            status.code = Some(code);
        } else if name.eq_ignore_ascii_case(b"grpc-message") {
            status.message = Some(percent_decode(value));
        }
    }
    Ok(status)
}

/// Decodes a `grpc-message` value: `%XX` sequences become bytes, anything else (even a
/// malformed `%`) stays as sent, and the result is read as UTF-8 (lossily).
pub fn percent_decode(value: &[u8]) -> String {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b == b'%' {
            let hi = value.get(i + 1).copied().and_then(hex);
            let lo = value.get(i + 2).copied().and_then(hex);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name of a gRPC status code (`OK`, `DEADLINE_EXCEEDED`, ...).
pub fn status_code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNRECOGNIZED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn msg(compressed: bool, body: &[u8]) -> Vec<u8> {
        let mut v = vec![u8::from(compressed)];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn messages(ev: &[GrpcEvent]) -> Vec<&GrpcMessage> {
        ev.iter()
            .filter_map(|e| match e {
                GrpcEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    const PUT: [u8; 10] = [0x0a, 0x03, b'f', b'o', b'o', 0x12, 0x03, b'b', b'a', b'r'];

    #[test]
    fn etcdctl_put_message() {
        let mut a = GrpcMessageAssembler::new(None);
        let mut out = Vec::new();
        a.push_data(&msg(false, &PUT), 5, &mut out);
        assert_eq!(
            out,
            vec![GrpcEvent::Message(GrpcMessage {
                ts_first_ns: 5,
                ts_last_ns: 5,
                compressed: false,
                len: 10,
                data: PUT.to_vec(),
                complete: true,
                incomplete: None,
                decode_error: None,
            })]
        );
    }

    #[test]
    fn one_message_over_several_frames() {
        let body: Vec<u8> = (0..=255u8).cycle().take(40_000).collect();
        let wire = msg(false, &body);
        let mut a = GrpcMessageAssembler::new(None);
        let mut out = Vec::new();
        for (i, chunk) in wire.chunks(16_384).enumerate() {
            a.push_data(chunk, 10 + i as u64, &mut out);
        }
        let m = messages(&out);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].data, body);
        assert_eq!((m[0].ts_first_ns, m[0].ts_last_ns), (10, 12));
        // Prefix split across frames too.
        let mut a = GrpcMessageAssembler::new(None);
        let mut out = Vec::new();
        for b in &wire[..100] {
            a.push_data(std::slice::from_ref(b), 1, &mut out);
        }
        a.push_data(&wire[100..], 2, &mut out);
        assert_eq!(messages(&out)[0].data, body);
    }

    #[test]
    fn several_messages_in_one_frame_and_empty_message() {
        let mut wire = msg(false, b"a");
        wire.extend(msg(false, b""));
        wire.extend(msg(false, b"bcd"));
        let mut a = GrpcMessageAssembler::new(None);
        let mut out = Vec::new();
        a.push_data(&wire, 1, &mut out);
        let m = messages(&out);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].data, b"a");
        assert!(m[1].data.is_empty() && m[1].complete && m[1].len == 0);
        assert_eq!(m[2].data, b"bcd");
        a.finish(2, &mut out);
        assert_eq!(out.len(), 3, "a clean end adds nothing");
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_message() {
        let z = gzip(&PUT);
        let mut a = GrpcMessageAssembler::new(Some("gzip"));
        let mut out = Vec::new();
        a.push_data(&msg(true, &z), 1, &mut out);
        let m = messages(&out)[0];
        assert!(m.compressed && m.complete);
        assert_eq!(m.data, PUT);
        assert_eq!(m.len as usize, z.len());
        assert_eq!(m.decode_error, None);
    }

    #[test]
    fn compression_errors() {
        let z = gzip(&[7u8; 5000]);
        let run = |enc: Option<&str>, limits: GrpcLimits, wire: &[u8]| {
            let mut a = GrpcMessageAssembler::with_limits(enc, limits);
            let mut out = Vec::new();
            a.push_data(wire, 1, &mut out);
            messages(&out)[0].clone()
        };
        let small = GrpcLimits {
            max_decompressed: 4999,
            ..GrpcLimits::default()
        };
        let m = run(Some("gzip"), small, &msg(true, &z));
        assert_eq!(
            m.decode_error,
            Some(GrpcDecodeError::DecompressedTooLarge { limit: 4999 })
        );
        assert_eq!(m.data, z, "the wire bytes are kept");
        let m = run(Some("snappy"), GrpcLimits::default(), &msg(true, &z));
        assert_eq!(
            m.decode_error,
            Some(GrpcDecodeError::UnsupportedEncoding("snappy".into()))
        );
        let m = run(None, GrpcLimits::default(), &msg(true, &z));
        assert_eq!(
            m.decode_error,
            Some(GrpcDecodeError::CompressedWithoutEncoding(None))
        );
        let m = run(Some("gzip"), GrpcLimits::default(), &msg(true, b"not gzip"));
        assert!(matches!(m.decode_error, Some(GrpcDecodeError::Gzip(_))));
        // Uncompressed messages pass whatever the encoding.
        let m = run(Some("snappy"), GrpcLimits::default(), &msg(false, b"x"));
        assert_eq!((m.data.as_slice(), m.decode_error), (&b"x"[..], None));
    }

    #[test]
    fn kept_bound_exceeded() {
        let limits = GrpcLimits {
            max_kept: 10,
            ..GrpcLimits::default()
        };
        let mut a = GrpcMessageAssembler::with_limits(None, limits);
        let mut wire = msg(false, &[9u8; 25]);
        wire.extend(msg(false, b"next"));
        let mut out = Vec::new();
        for c in wire.chunks(7) {
            a.push_data(c, 1, &mut out);
        }
        let m = messages(&out);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].len, 25);
        assert_eq!(m[0].data, [9u8; 10]);
        assert!(!m[0].complete);
        assert_eq!(
            m[0].incomplete,
            Some(IncompleteReason::TooLarge { kept: 10 })
        );
        assert_eq!(m[1].data, b"next");
    }

    #[test]
    fn gap_mid_message_then_next_message() {
        let mut a = GrpcMessageAssembler::new(None);
        let mut out = Vec::new();
        let wire = msg(false, b"0123456789");
        a.push_data(&wire[..8], 1, &mut out); // prefix + "012"
        a.push_gap(4, true, 2, &mut out); // "3456" lost
        a.push_data(&wire[12..], 3, &mut out);
        a.push_data(&msg(false, b"ok"), 4, &mut out);
        let m = messages(&out);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].data, b"012");
        assert_eq!(m[0].incomplete, Some(IncompleteReason::Gap { lost: 4 }));
        assert_eq!(m[1].data, b"ok");
        assert!(!a.is_unframeable());
    }

    #[test]
    fn gap_ending_exactly_at_message_end() {
        let mut a = GrpcMessageAssembler::new(None);
        let mut out = Vec::new();
        let wire = msg(false, b"0123456789");
        a.push_data(&wire[..8], 1, &mut out);
        a.push_gap(7, true, 2, &mut out);
        a.push_data(&msg(false, b"ok"), 3, &mut out);
        assert_eq!(messages(&out).len(), 2);
    }

    #[test]
    fn gaps_that_lose_framing() {
        let cases: [(&[u8], u64, bool, UnframeableReason); 4] = [
            (b"", 3, true, UnframeableReason::GapAtMessageBoundary),
            (&[0, 0], 3, true, UnframeableReason::GapInPrefix),
            (
                &[0, 0, 0, 0, 4, 1],
                10,
                true,
                UnframeableReason::GapPastMessageEnd,
            ),
            (&[0, 0, 0, 0, 4, 1], 2, false, UnframeableReason::InexactGap),
        ];
        for (before, gap, exact, reason) in cases {
            let mut a = GrpcMessageAssembler::new(None);
            let mut out = Vec::new();
            a.push_data(before, 1, &mut out);
            a.push_gap(gap, exact, 2, &mut out);
            a.push_data(&msg(false, b"later"), 3, &mut out);
            assert_eq!(
                out.last(),
                Some(&GrpcEvent::Unframeable { ts_ns: 2, reason }),
                "{out:?}"
            );
            assert!(a.is_unframeable());
        }
    }

    #[test]
    fn bad_flag_and_end_of_stream() {
        let mut a = GrpcMessageAssembler::new(None);
        let mut out = Vec::new();
        a.push_data(&[2, 0, 0, 0, 1, 0], 1, &mut out);
        assert_eq!(
            out,
            vec![GrpcEvent::Unframeable {
                ts_ns: 1,
                reason: UnframeableReason::BadCompressedFlag(2)
            }]
        );
        let mut a = GrpcMessageAssembler::new(None);
        let mut out = Vec::new();
        a.push_data(&[0, 0, 0, 0, 9, 1, 2], 1, &mut out);
        a.finish(5, &mut out);
        let m = messages(&out)[0];
        assert_eq!(m.data, [1, 2]);
        assert_eq!(
            m.incomplete,
            Some(IncompleteReason::EndOfStream { missing: 7 })
        );
        assert_eq!(m.ts_last_ns, 1);
        let mut a = GrpcMessageAssembler::new(None);
        let mut out = Vec::new();
        a.push_data(&[0, 0], 1, &mut out);
        a.finish(5, &mut out);
        assert!(matches!(
            out[0],
            GrpcEvent::Unframeable {
                reason: UnframeableReason::EndInPrefix { have: 2 },
                ..
            }
        ));
    }

    #[test]
    fn trailers() {
        let t = parse_grpc_status(&[
            ("grpc-status", "5"),
            ("grpc-message", "etcdserver: key not found %E2%9C%93 100%"),
        ])
        .unwrap();
        assert_eq!(t.code, Some(5));
        assert_eq!(
            t.message.as_deref(),
            Some("etcdserver: key not found ✓ 100%")
        );
        assert_eq!(status_code_name(5), "NOT_FOUND");
        assert_eq!(
            parse_grpc_status(&[(b"grpc-status".to_vec(), b"x1".to_vec())]),
            Err(TrailerError::BadStatus("x1".into()))
        );
        assert_eq!(
            parse_grpc_status(&[("grpc-status", "99999999999")]),
            Err(TrailerError::BadStatus("99999999999".into()))
        );
        let none = parse_grpc_status::<&str, &str>(&[]).unwrap();
        assert_eq!((none.code, none.message), (None, None));
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode(b"%ff"), "\u{fffd}");
    }

    #[test]
    fn random_bytes_no_panic() {
        let mut rng = crate::test_rng::XorShift(0xdead_beef_cafe_f00d);
        let mut rnd = move || rng.next();
        for round in 0..2000 {
            let enc = ["gzip", "identity", "zstd"][round % 3];
            let limits = GrpcLimits {
                max_kept: (rnd() % 300) as usize,
                max_decompressed: (rnd() % 300) as usize,
            };
            let mut a = GrpcMessageAssembler::with_limits(Some(enc), limits);
            let mut out = Vec::new();
            for _ in 0..(rnd() % 20) {
                let n = (rnd() % 64) as usize;
                let mut chunk: Vec<u8> = (0..n).map(|_| rnd() as u8).collect();
                // Keep flags and lengths mostly plausible so bodies get exercised.
                if let Some(f) = chunk.first_mut() {
                    *f &= 1;
                }
                if chunk.len() > 4 && rnd() % 2 == 0 {
                    chunk[1] = 0;
                    chunk[2] = 0;
                }
                if rnd() % 6 == 0 {
                    a.push_gap(rnd() % 50, rnd() % 2 == 0, 1, &mut out);
                } else {
                    a.push_data(&chunk, 1, &mut out);
                }
            }
            a.finish(2, &mut out);
            for m in messages(&out) {
                assert!(m.data.len() <= limits.max_kept.max(limits.max_decompressed));
            }
        }
        // Gzip bombs stay bounded.
        let z = gzip(&vec![0u8; 1 << 20]);
        let m = decompress(&z, &Encoding::Gzip, 1000);
        assert_eq!(
            m,
            Err(GrpcDecodeError::DecompressedTooLarge { limit: 1000 })
        );
    }
}
