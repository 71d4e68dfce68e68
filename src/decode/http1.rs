//! HTTP/1.1 (RFC 9112) as a push parser over the two byte streams of one connection:
//! request and status lines, header fields, bodies framed by Content-Length, by chunked
//! transfer coding (with chunk extensions and trailers) or by the connection's end, and
//! keep-alive (one message after another). Body bytes are handed on as borrowed slices
//! as they arrive, so a body that never ends (a chunked stream) is decoded all along.
//!
//! Heads, chunk-size lines and trailers are gathered in a per-direction buffer bounded by
//! [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`]; nothing else is copied.
//!
//! Losing the place. Inside a body, a gap that the framing covers (a Content-Length
//! body or a chunk whose announced size runs past the gap) is handed on as a
//! [`Http1Event::BodyGap`]: the bytes after it are still placed. Anywhere else (in a
//! head, in chunk framing, or past the body's end) the framing is lost and cannot be
//! recovered from inside the body. The direction says so ([`Http1Event::Lost`]) and
//! skips until a later stream event begins with something that can only be a start: a
//! request or status line, or a chunk-size line (a Go server writes each flush of a
//! chunked body as one write, so chunks start where segments and TLS records do). A
//! connection open before recording starts in that state. What is found by such a
//! search is checked as it goes (a chunk must end with CRLF); a mismatch loses the place
//! again. On a connection seen from its start, malformed input stops the direction
//! ([`Http1Event::Stopped`]).
//!
//! A client whose first bytes are the HTTP/2 preface is not HTTP/1: both directions stop
//! with [`Stop::Http2`] so that the caller can leave the connection to the HTTP/2 path.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;

use crate::decode::tcp::FlowDirection;

/// Whether a client's first bytes start an HTTP/1 request line: a method of capital
/// letters, then a space. HTTP/2's preface (`PRI * HTTP/2.0`) is made to look like one
/// to HTTP/1 servers, and is not.
pub fn starts_request_line(bytes: &[u8]) -> bool {
    let method = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=16).contains(&method) && bytes.get(method) == Some(&b' ') && !bytes.starts_with(b"PRI ")
}

/// Longest message head (request or status line and header fields), and longest
/// trailer section, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in one head (or trailer section).
pub const MAX_HEADERS: usize = 128;
/// Longest request or status line.
const MAX_FIRST_LINE: usize = 8 * 1024;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Longest chunk-size line accepted when searching for a chunk start.
const MAX_SYNC_CHUNK_LINE: usize = 64;
/// Bytes of a bad line quoted in an error.
const QUOTED: usize = 48;

/// One header field. Values that are not UTF-8 are decoded lossily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// The first value of header `name` (case-insensitive), trimmed.
pub fn header<'h>(headers: &'h [Header], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim())
}

/// A request line and its header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// The minor version: 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<Header>,
}

/// A status line and its header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub minor: u8,
    pub headers: Vec<Header>,
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Content-Length.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// A response body that ends with the connection.
    UntilClose,
}

/// Why a direction stopped for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The client sent the HTTP/2 connection preface: an HTTP/2 connection.
    Http2,
    /// A 101 response or a successful CONNECT: the connection left HTTP.
    Upgraded,
    /// Malformed HTTP/1 on a connection seen from its start.
    Error(Http1Error),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Http2 => f.write_str("HTTP/2 connection preface: not HTTP/1"),
            Stop::Upgraded => f.write_str("the connection was upgraded away from HTTP/1"),
            Stop::Error(e) => write!(f, "{e}"),
        }
    }
}

/// Malformed HTTP/1 input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Http1Error {
    #[error("message head longer than {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    #[error("not a request line: {0}")]
    BadRequestLine(String),
    #[error("not a status line: {0}")]
    BadStatusLine(String),
    #[error("not a header field: {0}")]
    BadHeader(String),
    #[error("bad Content-Length: {0}")]
    BadContentLength(String),
    #[error("a request with Transfer-Encoding {0} (not chunked last)")]
    BadTransferEncoding(String),
    #[error("not a chunk-size line: {0}")]
    BadChunkSize(String),
    #[error("chunk data not followed by CRLF")]
    BadChunkEnd,
}

/// Where a direction lost its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// Bytes not captured where the framing does not cover them.
    Gap { len: u64, inside: &'static str },
    /// What a search for a start found did not hold up.
    Desync(Http1Error),
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostReason::Gap { len, inside } => write!(f, "{len} bytes not captured {inside}"),
            LostReason::Desync(e) => write!(f, "{e}"),
        }
    }
}

/// What one direction's bytes revealed, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Http1Event<'a> {
    Request {
        head: RequestHead,
        body: BodyFraming,
    },
    /// A response head; `interim` for a 1xx other than 101 (the final response follows).
    Response {
        head: ResponseHead,
        body: BodyFraming,
        interim: bool,
    },
    /// Body bytes, in order. `chunk_start`: the first bytes of a chunk's data.
    Body { bytes: &'a [u8], chunk_start: bool },
    /// Body bytes that were not captured; the bytes after them are still placed.
    BodyGap { len: u64 },
    /// The message (head and body) is complete.
    End { trailers: Vec<Header> },
    /// The direction lost its place; it skips to the next start it can recognise.
    Lost(LostReason),
    /// Decoding (re)starts here, after `skipped` bytes: at a message head, or inside a
    /// chunked body of an unknown message (`in_body`).
    Synced { skipped: u64, in_body: bool },
    /// Nothing more is decoded in this direction.
    Stopped(Stop),
}

/// Which side a direction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Request,
    Response,
}

/// What a response must be read with, known from its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Head,
    Connect,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length {
        remaining: u64,
    },
    ChunkSize,
    ChunkData {
        remaining: u64,
        started: bool,
    },
    ChunkEnd,
    Trailers,
    UntilClose,
    /// Skipping to the next recognisable start.
    Seeking,
    Stopped,
}

/// One direction of a connection.
#[derive(Debug)]
struct Half {
    role: Role,
    state: State,
    /// The head, chunk-size line, chunk end or trailers gathered so far.
    buf: Vec<u8>,
    /// Where the search for a head's end resumes in `buf`.
    scanned: usize,
    /// The place was found by searching: errors lose it again rather than stop.
    searched: bool,
    /// Bytes skipped while seeking.
    skipped: u64,
}

/// Finds the end of a head (the empty line) in `buf` from `from`; a trailer section
/// may be empty, a head may not. Returns the index after the empty line.
fn head_end(buf: &[u8], from: usize, trailers: bool) -> Option<usize> {
    let mut i = from;
    while let Some(p) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + p;
        // The line that ends here starts after the previous '\n' (or at 0).
        let start = buf[..nl]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |s| s + 1);
        let line = &buf[start..nl];
        if (line.is_empty() || line == b"\r") && (start > 0 || trailers) {
            return Some(nl + 1);
        }
        i = nl + 1;
    }
    None
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn quote(line: &[u8]) -> String {
    let cut = &line[..line.len().min(QUOTED)];
    let mut s = cut.escape_ascii().to_string();
    if line.len() > QUOTED {
        s.push('…');
    }
    s
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `HTTP/1.x` → x.
fn version_minor(v: &[u8]) -> Option<u8> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => Some(d - b'0'),
        _ => None,
    }
}

enum FirstLine {
    Request {
        method: String,
        target: String,
        minor: u8,
    },
    Http2Preface,
    Response {
        status: u16,
        reason: String,
        minor: u8,
    },
}

fn parse_request_line(line: &[u8]) -> Result<FirstLine, Http1Error> {
    let bad = || Http1Error::BadRequestLine(quote(line));
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad());
    }
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(bad());
    }
    if method == b"PRI" && target == b"*" && version == b"HTTP/2.0" {
        return Ok(FirstLine::Http2Preface);
    }
    let minor = version_minor(version).ok_or_else(bad)?;
    Ok(FirstLine::Request {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        minor,
    })
}

fn parse_status_line(line: &[u8]) -> Result<FirstLine, Http1Error> {
    let bad = || Http1Error::BadStatusLine(quote(line));
    let minor = line.get(..8).and_then(version_minor).ok_or_else(bad)?;
    let rest = line.get(8..).ok_or_else(bad)?;
    let (status, reason) = match rest {
        [b' ', a, b, c, tail @ ..]
            if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() =>
        {
            let status = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            let reason = match tail {
                [] => &[][..],
                [b' ', reason @ ..] => reason,
                _ => return Err(bad()),
            };
            (status, reason)
        }
        _ => return Err(bad()),
    };
    Ok(FirstLine::Response {
        status,
        reason: String::from_utf8_lossy(reason).into_owned(),
        minor,
    })
}

/// Header field lines (no first line), up to the empty line.
fn parse_fields(lines: &[u8]) -> Result<Vec<Header>, Http1Error> {
    let mut headers: Vec<Header> = Vec::new();
    for line in lines.split(|&b| b == b'\n').map(strip_cr) {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // obs-fold: a continuation of the previous field's value.
            let Some(last) = headers.last_mut() else {
                return Err(Http1Error::BadHeader(quote(line)));
            };
            last.value.push(' ');
            last.value
                .push_str(String::from_utf8_lossy(line.trim_ascii()).as_ref());
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| Http1Error::BadHeader(quote(line)))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(Http1Error::BadHeader(quote(line)));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(Http1Error::TooManyHeaders(MAX_HEADERS));
        }
        headers.push(Header {
            name: String::from_utf8_lossy(name).into_owned(),
            value: String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned(),
        });
    }
    Ok(headers)
}

/// Content-Length: one value, or a list of equal values (RFC 9110 §8.6).
fn content_length(headers: &[Header]) -> Result<Option<u64>, Http1Error> {
    let mut found: Option<u64> = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        for v in h.value.split(',').map(str::trim) {
            let bad = || Http1Error::BadContentLength(quote(v.as_bytes()));
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let n: u64 = v.parse().map_err(|_| bad())?;
            if found.is_some_and(|f| f != n) {
                return Err(bad());
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// The Transfer-Encoding codings, and whether chunked is the last one.
fn transfer_encoding(headers: &[Header]) -> Option<(String, bool)> {
    let codings: Vec<&str> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|h| h.value.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let last = codings.last()?;
    Some((codings.join(", "), last.eq_ignore_ascii_case("chunked")))
}

fn length_framing(n: u64) -> BodyFraming {
    if n == 0 {
        BodyFraming::None
    } else {
        BodyFraming::Length(n)
    }
}

fn request_framing(headers: &[Header]) -> Result<BodyFraming, Http1Error> {
    if let Some((codings, chunked)) = transfer_encoding(headers) {
        return if chunked {
            Ok(BodyFraming::Chunked)
        } else {
            Err(Http1Error::BadTransferEncoding(codings))
        };
    }
    Ok(content_length(headers)?.map_or(BodyFraming::None, length_framing))
}

fn response_framing(
    status: u16,
    expect: Expect,
    headers: &[Header],
) -> Result<BodyFraming, Http1Error> {
    if expect == Expect::Head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(BodyFraming::None);
    }
    if let Some((_, chunked)) = transfer_encoding(headers) {
        return Ok(if chunked {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        });
    }
    Ok(content_length(headers)?.map_or(BodyFraming::UntilClose, length_framing))
}

/// A chunk-size line: the size, hexadecimal (at most 16 digits), then extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Http1Error> {
    let bad = || Http1Error::BadChunkSize(quote(line));
    let size = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(size).map_err(|_| bad())?;
    u64::from_str_radix(text, 16).map_err(|_| bad())
}

/// The part of `input` that belongs to a body with `remaining` bytes to go, and what
/// remains after it.
fn body_part<'a>(input: &mut &'a [u8], remaining: u64) -> (&'a [u8], u64) {
    let n = input
        .len()
        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
    let (part, rest) = input.split_at(n);
    *input = rest;
    (part, remaining - n as u64)
}

/// What a sink receives.
type Sink<'s> = dyn FnMut(Http1Event<'_>) + 's;

impl Half {
    fn new(role: Role, start_seen: bool) -> Half {
        Half {
            role,
            state: if start_seen {
                State::Head
            } else {
                State::Seeking
            },
            buf: Vec::new(),
            scanned: 0,
            searched: !start_seen,
            skipped: 0,
        }
    }

    fn stop(&mut self, why: Stop, sink: &mut Sink<'_>) {
        self.state = State::Stopped;
        self.buf = Vec::new();
        sink(Http1Event::Stopped(why));
    }

    /// Malformed input: stop, or, when the place was found by searching, seek again.
    fn fail(&mut self, e: Http1Error, sink: &mut Sink<'_>) {
        if self.searched {
            self.lose(LostReason::Desync(e), sink);
        } else {
            self.stop(Stop::Error(e), sink);
        }
    }

    fn lose(&mut self, why: LostReason, sink: &mut Sink<'_>) {
        self.state = State::Seeking;
        self.searched = true;
        self.buf.clear();
        self.scanned = 0;
        self.skipped = 0;
        sink(Http1Event::Lost(why));
    }

    fn push(&mut self, mut input: &[u8], expects: &mut VecDeque<Expect>, sink: &mut Sink<'_>) {
        if self.state == State::Seeking && !self.seek(input, sink) {
            self.skipped = self.skipped.saturating_add(input.len() as u64);
            return;
        }
        while !input.is_empty() {
            match self.state {
                State::Stopped | State::Seeking => return,
                State::Head => {
                    if self.buf.is_empty() {
                        // Empty lines before a message are ignored (RFC 9112 §2.2).
                        let blank = input.iter().take_while(|&&b| b == b'\r' || b == b'\n');
                        input = &input[blank.count()..];
                        if input.is_empty() {
                            return;
                        }
                    }
                    input = self.head(input, expects, sink);
                }
                State::Length { remaining } => {
                    let (bytes, remaining) = body_part(&mut input, remaining);
                    sink(Http1Event::Body {
                        bytes,
                        chunk_start: false,
                    });
                    self.state = State::Length { remaining };
                    if remaining == 0 {
                        self.end(Vec::new(), sink);
                    }
                }
                State::ChunkData { remaining, started } => {
                    let (bytes, remaining) = body_part(&mut input, remaining);
                    sink(Http1Event::Body {
                        bytes,
                        chunk_start: !started,
                    });
                    self.state = if remaining == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData {
                            remaining,
                            started: true,
                        }
                    };
                }
                State::UntilClose => {
                    sink(Http1Event::Body {
                        bytes: input,
                        chunk_start: false,
                    });
                    return;
                }
                State::ChunkSize => input = self.chunk_size(input, sink),
                State::ChunkEnd => input = self.chunk_end(input, sink),
                State::Trailers => input = self.trailers(input, sink),
            }
        }
    }

    /// Looks for a start at the beginning of `input` (one stream event): a head, or a
    /// chunk-size line. True when found; the state is then set to decode `input`.
    fn seek(&mut self, input: &[u8], sink: &mut Sink<'_>) -> bool {
        let line_end = input.iter().take(MAX_FIRST_LINE).position(|&b| b == b'\n');
        let Some(end) = line_end else {
            return false;
        };
        let line = strip_cr(&input[..end]);
        let head = match self.role {
            Role::Request => {
                matches!(parse_request_line(line), Ok(FirstLine::Request { .. }))
            }
            Role::Response => parse_status_line(line).is_ok(),
        };
        let chunk = !head
            && line.len() <= MAX_SYNC_CHUNK_LINE
            && input[..end].ends_with(b"\r")
            && line.first().is_some_and(u8::is_ascii_hexdigit)
            && parse_chunk_size(line).is_ok();
        if !head && !chunk {
            return false;
        }
        sink(Http1Event::Synced {
            skipped: self.skipped,
            in_body: chunk,
        });
        self.skipped = 0;
        self.state = if head { State::Head } else { State::ChunkSize };
        true
    }

    /// Gathers a head; when complete, parses it and sets the body's state.
    fn head<'a>(
        &mut self,
        input: &'a [u8],
        expects: &mut VecDeque<Expect>,
        sink: &mut Sink<'_>,
    ) -> &'a [u8] {
        let old = self.buf.len();
        let room = MAX_HEAD_BYTES.saturating_sub(old);
        let take = input.len().min(room.saturating_add(1));
        self.buf.extend_from_slice(&input[..take]);
        let end = head_end(&self.buf, self.scanned, false);
        let Some(end) = end else {
            if self.buf.len() > MAX_HEAD_BYTES {
                self.fail(Http1Error::HeadTooLarge(MAX_HEAD_BYTES), sink);
                return &[];
            }
            // Judge the first line as soon as it is whole, not at the bound.
            let judged = match self.buf.iter().position(|&b| b == b'\n') {
                Some(nl) => self.first_line(strip_cr(&self.buf[..nl])).map(|_| ()),
                None if self.buf.len() > MAX_FIRST_LINE => Err(match self.role {
                    Role::Request => Http1Error::BadRequestLine(quote(&self.buf)),
                    Role::Response => Http1Error::BadStatusLine(quote(&self.buf)),
                }),
                None => Ok(()),
            };
            if let Err(e) = judged {
                self.fail(e, sink);
                return &[];
            }
            // Resume the search a little before the end: the empty line may straddle.
            self.scanned = self.buf.len().saturating_sub(3);
            return &[];
        };
        let rest = input.get(end.saturating_sub(old)..).unwrap_or_default();
        let head = std::mem::take(&mut self.buf);
        self.scanned = 0;
        self.parse_head(&head[..end], expects, sink);
        // Keep the allocation for the next head.
        self.buf = head;
        self.buf.clear();
        if self.state == State::Stopped || self.state == State::Seeking {
            return &[];
        }
        rest
    }

    fn first_line(&self, line: &[u8]) -> Result<FirstLine, Http1Error> {
        match self.role {
            Role::Request => parse_request_line(line),
            Role::Response => parse_status_line(line),
        }
    }

    fn parse_head(&mut self, head: &[u8], expects: &mut VecDeque<Expect>, sink: &mut Sink<'_>) {
        let nl = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
        let first = match self.first_line(strip_cr(&head[..nl])) {
            Ok(first) => first,
            Err(e) => return self.fail(e, sink),
        };
        let fields = match parse_fields(head.get(nl + 1..).unwrap_or_default()) {
            Ok(fields) => fields,
            Err(e) => return self.fail(e, sink),
        };
        match first {
            FirstLine::Http2Preface => self.stop(Stop::Http2, sink),
            FirstLine::Request {
                method,
                target,
                minor,
            } => {
                let body = match request_framing(&fields) {
                    Ok(body) => body,
                    Err(e) => return self.fail(e, sink),
                };
                expects.push_back(match method.as_str() {
                    "HEAD" => Expect::Head,
                    "CONNECT" => Expect::Connect,
                    _ => Expect::Other,
                });
                sink(Http1Event::Request {
                    head: RequestHead {
                        method,
                        target,
                        minor,
                        headers: fields,
                    },
                    body,
                });
                self.begin_body(body, sink);
            }
            FirstLine::Response {
                status,
                reason,
                minor,
            } => {
                let interim = (100..200).contains(&status) && status != 101;
                let expect = if interim {
                    expects.front().copied()
                } else {
                    expects.pop_front()
                };
                let expect = expect.unwrap_or(Expect::Other);
                let body = match response_framing(status, expect, &fields) {
                    Ok(body) => body,
                    Err(e) => return self.fail(e, sink),
                };
                let upgraded =
                    status == 101 || (expect == Expect::Connect && (200..300).contains(&status));
                sink(Http1Event::Response {
                    head: ResponseHead {
                        status,
                        reason,
                        minor,
                        headers: fields,
                    },
                    body,
                    interim,
                });
                if upgraded {
                    self.stop(Stop::Upgraded, sink);
                } else {
                    self.begin_body(body, sink);
                }
            }
        }
    }

    fn begin_body(&mut self, body: BodyFraming, sink: &mut Sink<'_>) {
        match body {
            BodyFraming::None => self.end(Vec::new(), sink),
            BodyFraming::Length(n) => self.state = State::Length { remaining: n },
            BodyFraming::Chunked => self.state = State::ChunkSize,
            BodyFraming::UntilClose => self.state = State::UntilClose,
        }
    }

    fn end(&mut self, trailers: Vec<Header>, sink: &mut Sink<'_>) {
        self.state = State::Head;
        sink(Http1Event::End { trailers });
    }

    /// Gathers `buf` up to and including the next '\n', at most `max` bytes; returns the
    /// rest of the input, and whether the line is whole.
    fn gather_line<'a>(&mut self, input: &'a [u8], max: usize) -> (&'a [u8], bool) {
        match input.iter().position(|&b| b == b'\n') {
            Some(p) => {
                let take = (p + 1).min(max.saturating_add(1).saturating_sub(self.buf.len()));
                self.buf.extend_from_slice(&input[..take]);
                (&input[p + 1..], take == p + 1)
            }
            None => {
                let take = input
                    .len()
                    .min(max.saturating_add(1).saturating_sub(self.buf.len()));
                self.buf.extend_from_slice(&input[..take]);
                (&[], false)
            }
        }
    }

    fn chunk_size<'a>(&mut self, input: &'a [u8], sink: &mut Sink<'_>) -> &'a [u8] {
        let (rest, whole) = self.gather_line(input, MAX_CHUNK_LINE);
        if !whole {
            if self.buf.len() > MAX_CHUNK_LINE {
                let e = Http1Error::BadChunkSize(quote(&self.buf));
                self.fail(e, sink);
                return &[];
            }
            return rest;
        }
        let line = strip_cr(self.buf.strip_suffix(b"\n").unwrap_or(&self.buf));
        let size = parse_chunk_size(line);
        self.buf.clear();
        match size {
            Ok(0) => {
                self.state = State::Trailers;
                rest
            }
            Ok(n) => {
                self.state = State::ChunkData {
                    remaining: n,
                    started: false,
                };
                rest
            }
            Err(e) => {
                self.fail(e, sink);
                &[]
            }
        }
    }

    fn chunk_end<'a>(&mut self, input: &'a [u8], sink: &mut Sink<'_>) -> &'a [u8] {
        let (rest, whole) = self.gather_line(input, 2);
        if !whole {
            if self.buf.len() > 1 || self.buf.first().is_some_and(|&b| b != b'\r') {
                self.fail(Http1Error::BadChunkEnd, sink);
                return &[];
            }
            return rest;
        }
        let ok = self.buf == b"\r\n" || self.buf == b"\n";
        self.buf.clear();
        if !ok {
            self.fail(Http1Error::BadChunkEnd, sink);
            return &[];
        }
        self.state = State::ChunkSize;
        rest
    }

    fn trailers<'a>(&mut self, input: &'a [u8], sink: &mut Sink<'_>) -> &'a [u8] {
        let old = self.buf.len();
        let take = input
            .len()
            .min(MAX_HEAD_BYTES.saturating_add(1).saturating_sub(old));
        self.buf.extend_from_slice(&input[..take]);
        let Some(end) = head_end(&self.buf, self.scanned, true) else {
            if self.buf.len() > MAX_HEAD_BYTES {
                self.fail(Http1Error::HeadTooLarge(MAX_HEAD_BYTES), sink);
                return &[];
            }
            self.scanned = self.buf.len().saturating_sub(3);
            return &[];
        };
        let rest = input.get(end.saturating_sub(old)..).unwrap_or_default();
        let parsed = parse_fields(&self.buf[..end]);
        self.buf.clear();
        self.scanned = 0;
        match parsed {
            Ok(trailers) => {
                self.end(trailers, sink);
                rest
            }
            Err(e) => {
                self.fail(e, sink);
                &[]
            }
        }
    }

    fn push_gap(&mut self, len: u64, sink: &mut Sink<'_>) {
        match self.state {
            State::Stopped => {}
            State::Seeking => self.skipped = self.skipped.saturating_add(len),
            State::UntilClose => sink(Http1Event::BodyGap { len }),
            State::Length { remaining } if len < remaining => {
                sink(Http1Event::BodyGap { len });
                self.state = State::Length {
                    remaining: remaining - len,
                };
            }
            State::Length { remaining } => {
                // The body ends inside the gap: what follows it is unknown.
                sink(Http1Event::BodyGap { len: remaining });
                self.end(Vec::new(), sink);
                if len > remaining {
                    let len = len - remaining;
                    self.lose(
                        LostReason::Gap {
                            len,
                            inside: "after a body's end",
                        },
                        sink,
                    );
                }
            }
            State::ChunkData { remaining, .. } if len <= remaining => {
                sink(Http1Event::BodyGap { len });
                self.state = if len == remaining {
                    State::ChunkEnd
                } else {
                    State::ChunkData {
                        remaining: remaining - len,
                        started: true,
                    }
                };
            }
            State::ChunkData { remaining, .. } => {
                sink(Http1Event::BodyGap { len: remaining });
                let inside = "across the end of a chunk";
                self.lose(
                    LostReason::Gap {
                        len: len - remaining,
                        inside,
                    },
                    sink,
                );
            }
            State::Head if self.buf.is_empty() => {
                let inside = "between messages";
                self.lose(LostReason::Gap { len, inside }, sink);
            }
            State::Head | State::Trailers => {
                let inside = "in a message head";
                self.lose(LostReason::Gap { len, inside }, sink);
            }
            State::ChunkSize | State::ChunkEnd => {
                let inside = "in chunk framing";
                self.lose(LostReason::Gap { len, inside }, sink);
            }
        }
    }

    /// The direction ended (the connection closed): a body read until the close ends.
    fn finish(&mut self, sink: &mut Sink<'_>) {
        if self.state == State::UntilClose {
            self.end(Vec::new(), sink);
        }
        self.state = State::Stopped;
    }

    fn in_message(&self) -> bool {
        !matches!(self.state, State::Head | State::Seeking | State::Stopped) || !self.buf.is_empty()
    }
}

/// Both directions of one HTTP/1 connection. Responses are matched to requests in order,
/// to know which have no body (HEAD) and which leave HTTP (CONNECT).
#[derive(Debug)]
pub struct Http1Connection {
    halves: [Half; 2],
    expects: VecDeque<Expect>,
}

/// Requests whose responses are awaited, at most (more are forgotten).
const MAX_PIPELINED: usize = 1024;

fn index(dir: FlowDirection) -> usize {
    match dir {
        FlowDirection::ClientToServer => 0,
        FlowDirection::ServerToClient => 1,
    }
}

impl Http1Connection {
    /// `start_seen`: the streams start at the connection's first bytes. Otherwise both
    /// directions seek their first recognisable start.
    pub fn new(start_seen: bool) -> Http1Connection {
        Http1Connection {
            halves: [
                Half::new(Role::Request, start_seen),
                Half::new(Role::Response, start_seen),
            ],
            expects: VecDeque::new(),
        }
    }

    /// The next bytes of `dir` (one stream event); what they reveal goes to `sink`.
    pub fn push(&mut self, dir: FlowDirection, bytes: &[u8], sink: &mut Sink<'_>) {
        let Http1Connection { halves, expects } = self;
        let mut stopped = None;
        halves[index(dir)].push(bytes, expects, &mut |ev: Http1Event<'_>| {
            if let Http1Event::Stopped(why @ (Stop::Http2 | Stop::Upgraded)) = &ev {
                stopped = Some(why.clone());
            }
            sink(ev);
        });
        if stopped.is_some() {
            // Neither direction is HTTP/1 any more.
            for half in halves.iter_mut() {
                half.state = State::Stopped;
                half.buf = Vec::new();
            }
        }
        if expects.len() > MAX_PIPELINED {
            expects.pop_front();
        }
    }

    /// `len` bytes of `dir` were not captured.
    pub fn push_gap(&mut self, dir: FlowDirection, len: u64, sink: &mut Sink<'_>) {
        if dir == FlowDirection::ServerToClient {
            // Responses lost in the gap would pair later ones with the wrong requests.
            let half = &self.halves[1];
            if !matches!(half.state, State::Length { .. } | State::ChunkData { .. }) {
                self.expects.clear();
            }
        }
        self.halves[index(dir)].push_gap(len, sink);
    }

    /// The connection ended: bodies delimited by its end are complete.
    pub fn finish(&mut self, dir: FlowDirection, sink: &mut Sink<'_>) {
        self.halves[index(dir)].finish(sink);
    }

    /// A message of `dir` was begun and not finished.
    pub fn in_message(&self, dir: FlowDirection) -> bool {
        self.halves[index(dir)].in_message()
    }

    /// The bytes `dir` skipped while seeking a start and found none yet.
    pub fn skipped(&self, dir: FlowDirection) -> u64 {
        let half = &self.halves[index(dir)];
        if half.state == State::Seeking {
            half.skipped
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests;
