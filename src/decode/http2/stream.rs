//! [`FrameStream`]: the push-style HTTP/2 decoder for ONE direction of a connection. It
//! takes the reassembled byte stream (data and gaps, by stream offset) and produces owned
//! [`Http2Event`]s: frames, assembled header blocks, DATA bytes, and explicit reports of
//! everything it could not decode.
//!
//! Losing bytes is normal in a capture. The decoder keeps frame sync across a gap when
//! the gap lies inside a frame whose header it already has (a DATA frame then yields its
//! known bytes and a [`Http2Event::DataGap`]); otherwise it reports [`Http2Event::Desync`]
//! and scans forward for a chain of two plausible frame headers before it trusts a
//! boundary again ([`Http2Event::Resynced`]).
//!
//! For the HPACK layer above: every `Desync` and every `HeaderBlockLost` means a header
//! block of this direction may have been lost, so its dynamic table may be out of step.

use std::collections::VecDeque;

use super::error::FrameError;
use super::error_code::ErrorCode;
use super::frame::{
    parse_header, FrameHeader, FrameType, DEFAULT_MAX_FRAME_SIZE, FLAG_END_HEADERS,
    FLAG_END_STREAM, FLAG_PADDED, FRAME_HEADER_LEN, MAX_FRAME_SIZE_LIMIT,
};
use super::priority::{PriorityFrame, PrioritySpec};
use super::rst_stream::RstStreamFrame;
use super::settings::Setting;
use super::window_update::WindowUpdateFrame;
use super::{parse_frame, Frame, PingFrame};
use crate::decode::tcp::FlowDirection;

/// The client connection preface (RFC 9113 section 3.4).
pub const CLIENT_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Header blocks (HEADERS + CONTINUATION) larger than this are reported, not assembled.
pub const DEFAULT_MAX_HEADER_BLOCK: usize = 256 << 10;

/// The owned content of a frame, for reporting. DATA bytes and header block fragments
/// are not repeated here: they come as [`Http2Event::Data`] and
/// [`Http2Event::HeaderBlock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameSummary {
    Data {
        stream_id: u32,
        end_stream: bool,
        data_len: u32,
        pad_len: Option<u8>,
    },
    Headers {
        stream_id: u32,
        end_stream: bool,
        end_headers: bool,
        priority: Option<PrioritySpec>,
        pad_len: Option<u8>,
        fragment_len: u32,
    },
    Priority(PriorityFrame),
    RstStream(RstStreamFrame),
    Settings {
        ack: bool,
        settings: Vec<Setting>,
    },
    PushPromise {
        stream_id: u32,
        promised_stream_id: u32,
        end_headers: bool,
        fragment_len: u32,
    },
    Ping(PingFrame),
    GoAway {
        last_stream_id: u32,
        error_code: ErrorCode,
        debug_data: Vec<u8>,
    },
    WindowUpdate(WindowUpdateFrame),
    Continuation {
        stream_id: u32,
        end_headers: bool,
        fragment_len: u32,
    },
    Unknown {
        kind: u8,
        len: u32,
    },
}

impl FrameSummary {
    fn of(frame: &Frame<'_>) -> FrameSummary {
        let len32 = |b: &[u8]| u32::try_from(b.len()).unwrap_or(u32::MAX);
        match *frame {
            Frame::Data(d) => FrameSummary::Data {
                stream_id: d.stream_id,
                end_stream: d.end_stream,
                data_len: len32(d.data),
                pad_len: d.pad_len,
            },
            Frame::Headers(h) => FrameSummary::Headers {
                stream_id: h.stream_id,
                end_stream: h.end_stream,
                end_headers: h.end_headers,
                priority: h.priority,
                pad_len: h.pad_len,
                fragment_len: len32(h.fragment),
            },
            Frame::Priority(p) => FrameSummary::Priority(p),
            Frame::RstStream(r) => FrameSummary::RstStream(r),
            Frame::Settings(s) => FrameSummary::Settings {
                ack: s.ack,
                settings: s.iter().collect(),
            },
            Frame::PushPromise(p) => FrameSummary::PushPromise {
                stream_id: p.stream_id,
                promised_stream_id: p.promised_stream_id,
                end_headers: p.end_headers,
                fragment_len: len32(p.fragment),
            },
            Frame::Ping(p) => FrameSummary::Ping(p),
            Frame::GoAway(g) => FrameSummary::GoAway {
                last_stream_id: g.last_stream_id,
                error_code: g.error_code,
                debug_data: g.debug_data.to_vec(),
            },
            Frame::WindowUpdate(w) => FrameSummary::WindowUpdate(w),
            Frame::Continuation(c) => FrameSummary::Continuation {
                stream_id: c.stream_id,
                end_headers: c.end_headers,
                fragment_len: len32(c.fragment),
            },
            Frame::Unknown { kind, payload } => FrameSummary::Unknown {
                kind,
                len: len32(payload),
            },
        }
    }
}

/// Why frame sync was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesyncReason {
    /// `len` bytes from `offset` are unknown and the next frame boundary with them.
    Gap { offset: u64, len: u64 },
    /// Decoding began in the middle of the connection: where frames start is unknown.
    MidStreamStart,
    /// The client direction did not begin with the connection preface.
    BadPreface,
    /// A frame header declared more than the maximum frame size: taken as a sign that
    /// the decoder was not at a frame boundary.
    FrameTooLarge { len: u32, max_frame_size: u32 },
    /// The data ended inside a frame (at [`FrameStream::finish`]); `pending_bytes` were
    /// never decoded.
    EndOfData { pending_bytes: u64 },
}

/// Why a header block could not be assembled; each means the HPACK table of this
/// direction may be out of step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderBlockLossReason {
    /// Bytes of the block were lost in a gap.
    Gap,
    /// The block grew beyond the assembly bound.
    TooLarge { limit: usize },
    /// Another frame came before the block's END_HEADERS.
    Interrupted { by: FrameType, stream_id: u32 },
    /// A CONTINUATION without a HEADERS or PUSH_PROMISE before it.
    OrphanContinuation,
    /// The frame carrying (part of) the block was malformed.
    InvalidFrame(FrameError),
    /// The data ended before END_HEADERS.
    EndOfData,
}

/// What a [`FrameStream`] reports. `offset`s are stream offsets of the direction;
/// `ts_ns` is the capture time of the first byte of the thing reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Http2Event {
    /// The client connection preface.
    Preface { offset: u64, ts_ns: u64 },
    /// A well-formed frame.
    Frame {
        offset: u64,
        ts_ns: u64,
        header: FrameHeader,
        frame: FrameSummary,
    },
    /// A frame whose header was sound but whose payload broke a rule of RFC 9113; frame
    /// sync is kept (the length is known).
    InvalidFrame {
        offset: u64,
        ts_ns: u64,
        header: FrameHeader,
        error: FrameError,
    },
    /// A frame some of whose bytes were lost; frame sync is kept. DATA frames still
    /// yield their known bytes as `Data` and the lost ones as `DataGap`.
    DamagedFrame {
        offset: u64,
        ts_ns: u64,
        header: FrameHeader,
    },
    /// A complete HPACK header block from HEADERS (or PUSH_PROMISE, with
    /// `promised_stream_id`) and its CONTINUATIONs; `ts_ns` is that of the first frame.
    HeaderBlock {
        stream_id: u32,
        ts_ns: u64,
        end_stream: bool,
        promised_stream_id: Option<u32>,
        fragment: Vec<u8>,
    },
    /// A header block that could not be assembled.
    HeaderBlockLost {
        stream_id: u32,
        ts_ns: u64,
        end_stream: bool,
        reason: HeaderBlockLossReason,
    },
    /// DATA bytes of a stream, padding removed. `padded_len` is the padding overhead of
    /// the frame (Pad Length octet and padding; 0 if not padded), so `bytes.len() +
    /// padded_len` is the flow-controlled size. A damaged DATA frame gives several `Data`
    /// events (with `padded_len` 0) around its `DataGap`s, then an empty one carrying
    /// `end_stream` if set.
    Data {
        stream_id: u32,
        ts_ns: u64,
        end_stream: bool,
        bytes: Vec<u8>,
        padded_len: u32,
    },
    /// `len` bytes of a stream's DATA were lost while the frame boundaries were kept.
    /// `exact` is false when the padding could not be told apart (then `len` is an upper
    /// bound and the stream's message framing above is lost).
    DataGap {
        stream_id: u32,
        ts_ns: u64,
        len: u64,
        exact: bool,
    },
    /// Frame sync was lost at `offset`: nothing is decoded until `Resynced`. Any
    /// header block in progress is lost (`lost_header_block` names its stream) and any
    /// stream's DATA may have lost bytes.
    Desync {
        offset: u64,
        ts_ns: u64,
        reason: DesyncReason,
        lost_header_block: Option<u32>,
    },
    /// Frame sync was found again at `at_offset`; `skipped` bytes since the `Desync`
    /// (gaps included) were not decoded.
    Resynced {
        at_offset: u64,
        ts_ns: u64,
        skipped: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataRange {
    /// Not a DATA frame.
    None,
    /// The stream offsets of the DATA frame's data (padding excluded).
    Known { start: u64, end: u64 },
    /// The Pad Length octet was lost: data and padding cannot be told apart.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct DamagedFrame {
    header: FrameHeader,
    frame_end: u64,
    data: DataRange,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Expecting the client preface; `strict` when the stream start was seen (a
    /// mismatch is then a protocol error rather than a mid-stream start).
    Preface { strict: bool },
    /// At a frame boundary (`buf_start`).
    Frames,
    /// Inside a frame whose bytes were partly lost; bytes up to `frame_end` belong to it.
    Damaged(DamagedFrame),
    /// Looking for a frame boundary; sync was lost at `since`.
    Resync { since: u64 },
}

#[derive(Debug)]
struct PendingBlock {
    stream_id: u32,
    ts_ns: u64,
    end_stream: bool,
    promised_stream_id: Option<u32>,
    fragment: Vec<u8>,
    /// Already reported lost: absorb its CONTINUATIONs quietly until END_HEADERS.
    lost: bool,
}

/// Decodes one direction of an HTTP/2 connection. Feed it the reassembled stream in
/// offset order with [`push_data`](Self::push_data) and [`push_gap`](Self::push_gap).
#[derive(Debug)]
pub struct FrameStream {
    mode: Mode,
    /// Bytes not yet decoded: `buf[pos..]` starts at stream offset `buf_start`.
    buf: Vec<u8>,
    pos: usize,
    buf_start: u64,
    /// Offset just past everything pushed so far.
    end: u64,
    /// (offset, ts) of each push whose bytes may still be in `buf`.
    chunk_ts: VecDeque<(u64, u64)>,
    max_frame_size: u32,
    max_header_block: usize,
    block: Option<PendingBlock>,
    /// A desync to announce at the first push (mid-stream start).
    announce: Option<DesyncReason>,
}

impl FrameStream {
    /// A decoder for the `dir` direction. `stream_start` says whether offset 0 is the
    /// first byte of the connection (the TCP handshake was seen); if not, the client
    /// direction still accepts a preface at offset 0, and otherwise frame boundaries are
    /// searched for.
    pub fn new(dir: FlowDirection, stream_start: bool) -> FrameStream {
        let (mode, announce) = match (dir, stream_start) {
            (FlowDirection::ClientToServer, strict) => (Mode::Preface { strict }, None),
            (FlowDirection::ServerToClient, true) => (Mode::Frames, None),
            (FlowDirection::ServerToClient, false) => (
                Mode::Resync { since: 0 },
                Some(DesyncReason::MidStreamStart),
            ),
        };
        FrameStream {
            mode,
            buf: Vec::new(),
            pos: 0,
            buf_start: 0,
            end: 0,
            chunk_ts: VecDeque::new(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_block: DEFAULT_MAX_HEADER_BLOCK,
            block: None,
            announce,
        }
    }

    /// Sets the largest frame this direction may carry: the SETTINGS_MAX_FRAME_SIZE the
    /// OTHER direction announced (clamped to the RFC range).
    pub fn set_max_frame_size(&mut self, max: u32) {
        self.max_frame_size = max.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT);
    }

    /// Sets the header block assembly bound.
    pub fn set_max_header_block(&mut self, max: usize) {
        self.max_header_block = max;
    }

    /// The stream offset just past everything pushed.
    pub fn end_offset(&self) -> u64 {
        self.end
    }

    /// Takes the stream bytes at `offset`. Bytes before the end of what was already
    /// pushed are ignored; a jump forward is treated as a gap.
    pub fn push_data(&mut self, offset: u64, bytes: &[u8], ts_ns: u64, out: &mut Vec<Http2Event>) {
        self.announce_start(offset, ts_ns, out);
        if offset > self.end {
            self.push_gap(self.end, offset - self.end, ts_ns, out);
        }
        let skip = usize::try_from(self.end.saturating_sub(offset)).unwrap_or(usize::MAX);
        let Some(mut bytes) = bytes.get(skip..) else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        let mut at = self.end;
        self.end = at.saturating_add(bytes.len() as u64);
        if let Mode::Damaged(df) = self.mode {
            // Bytes of a damaged frame are not buffered: hand the DATA ones on directly.
            let n = usize::try_from(df.frame_end.saturating_sub(at))
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let (mine, rest) = bytes.split_at(n);
            self.emit_data_piece(&df, at, mine, ts_ns, out);
            at += n as u64;
            bytes = rest;
            self.buf_start = at;
            self.settle_damaged(ts_ns, out);
            if bytes.is_empty() {
                return;
            }
        }
        self.chunk_ts.push_back((at, ts_ns));
        self.buf.extend_from_slice(bytes);
        self.process(out);
    }

    /// Declares `len` stream bytes at `offset` unknown.
    pub fn push_gap(&mut self, offset: u64, len: u64, ts_ns: u64, out: &mut Vec<Http2Event>) {
        self.announce_start(offset, ts_ns, out);
        let gap_end = offset.saturating_add(len);
        if gap_end <= self.end {
            return;
        }
        let gap_start = self.end;
        self.end = gap_end;
        match self.mode {
            Mode::Resync { .. } => {
                // Nothing before the gap can chain with what follows it.
                self.discard_buffer(gap_end);
            }
            Mode::Preface { .. } => {
                self.desync(
                    gap_start,
                    ts_ns,
                    DesyncReason::Gap {
                        offset: gap_start,
                        len: gap_end - gap_start,
                    },
                    out,
                );
                self.discard_buffer(gap_end);
            }
            Mode::Damaged(df) => {
                self.emit_data_gap(&df, gap_start, gap_end, ts_ns, out);
                if gap_end <= df.frame_end {
                    self.buf_start = gap_end;
                    self.settle_damaged(ts_ns, out);
                } else {
                    self.desync(
                        df.frame_end,
                        ts_ns,
                        DesyncReason::Gap {
                            offset: gap_start,
                            len: gap_end - gap_start,
                        },
                        out,
                    );
                    self.discard_buffer(gap_end);
                }
            }
            Mode::Frames => {
                let header = self.buf.get(self.pos..).and_then(|b| parse_header(b).ok());
                let Some(header) = header else {
                    // The gap took (part of) a frame header: the boundary is gone.
                    self.desync(
                        self.buf_start,
                        ts_ns,
                        DesyncReason::Gap {
                            offset: gap_start,
                            len: gap_end - gap_start,
                        },
                        out,
                    );
                    self.discard_buffer(gap_end);
                    return;
                };
                let frame_start = self.buf_start;
                let frame_end = frame_start.saturating_add(header.frame_len());
                let frame_ts = self.ts_at(frame_start);
                out.push(Http2Event::DamagedFrame {
                    offset: frame_start,
                    ts_ns: frame_ts,
                    header,
                });
                let data = self.data_range(&header, frame_start);
                let df = DamagedFrame {
                    header,
                    frame_end,
                    data,
                };
                self.damage_header_block(&header, frame_ts, out);
                if data == DataRange::Unknown {
                    out.push(Http2Event::DataGap {
                        stream_id: header.stream_id,
                        ts_ns: frame_ts,
                        len: u64::from(header.len),
                        exact: false,
                    });
                }
                let known = self.buf.get(self.pos..).unwrap_or_default().to_vec();
                self.emit_data_piece(&df, frame_start, &known, frame_ts, out);
                self.emit_data_gap(&df, gap_start, gap_end, ts_ns, out);
                self.discard_buffer(gap_end);
                if gap_end <= frame_end {
                    self.mode = Mode::Damaged(df);
                    self.settle_damaged(ts_ns, out);
                } else {
                    self.desync(
                        frame_end,
                        ts_ns,
                        DesyncReason::Gap {
                            offset: gap_start,
                            len: gap_end - gap_start,
                        },
                        out,
                    );
                }
            }
        }
    }

    /// The data ended: reports what was left undecoded.
    pub fn finish(&mut self, out: &mut Vec<Http2Event>) {
        let pending = (self.buf.len() - self.pos) as u64;
        let ts = self.chunk_ts.back().map_or(0, |c| c.1);
        if let Some(b) = self.block.take() {
            if !b.lost {
                out.push(Http2Event::HeaderBlockLost {
                    stream_id: b.stream_id,
                    ts_ns: b.ts_ns,
                    end_stream: b.end_stream,
                    reason: HeaderBlockLossReason::EndOfData,
                });
            }
        }
        if matches!(self.mode, Mode::Frames) && pending > 0 {
            let at = self.buf_start;
            self.desync(
                at,
                ts,
                DesyncReason::EndOfData {
                    pending_bytes: pending,
                },
                out,
            );
        }
        self.discard_buffer(self.end);
    }

    fn announce_start(&mut self, offset: u64, ts_ns: u64, out: &mut Vec<Http2Event>) {
        if let Some(reason) = self.announce.take() {
            self.end = offset;
            self.buf_start = offset;
            self.mode = Mode::Resync { since: offset };
            out.push(Http2Event::Desync {
                offset,
                ts_ns,
                reason,
                lost_header_block: None,
            });
        }
    }

    /// Drops every buffered byte; decoding resumes at `at`.
    fn discard_buffer(&mut self, at: u64) {
        self.buf.clear();
        self.pos = 0;
        self.buf_start = at;
        self.chunk_ts.clear();
    }

    fn desync(&mut self, offset: u64, ts_ns: u64, reason: DesyncReason, out: &mut Vec<Http2Event>) {
        let lost_header_block = self
            .block
            .take()
            .and_then(|b| (!b.lost).then_some(b.stream_id));
        out.push(Http2Event::Desync {
            offset,
            ts_ns,
            reason,
            lost_header_block,
        });
        self.mode = Mode::Resync { since: offset };
    }

    /// The capture time of the byte at `offset` (of the push that carried it).
    fn ts_at(&self, offset: u64) -> u64 {
        self.chunk_ts
            .iter()
            .rev()
            .find(|(start, _)| *start <= offset)
            .or(self.chunk_ts.front())
            .map_or(0, |c| c.1)
    }

    fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
        self.buf_start = self.buf_start.saturating_add(n as u64);
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        while self.chunk_ts.len() >= 2 && self.chunk_ts[1].0 <= self.buf_start {
            self.chunk_ts.pop_front();
        }
    }

    fn process(&mut self, out: &mut Vec<Http2Event>) {
        loop {
            let progressed = match self.mode {
                Mode::Preface { strict } => self.step_preface(strict, out),
                Mode::Frames => self.step_frame(out),
                Mode::Resync { since } => self.step_resync(since, out),
                Mode::Damaged(_) => false,
            };
            if !progressed {
                break;
            }
        }
        self.compact();
    }

    fn step_preface(&mut self, strict: bool, out: &mut Vec<Http2Event>) -> bool {
        let have = self.buf.get(self.pos..).unwrap_or_default();
        let n = have.len().min(CLIENT_PREFACE.len());
        if have.get(..n) == CLIENT_PREFACE.get(..n) {
            if n < CLIENT_PREFACE.len() {
                return false;
            }
            let offset = self.buf_start;
            out.push(Http2Event::Preface {
                offset,
                ts_ns: self.ts_at(offset),
            });
            self.consume(CLIENT_PREFACE.len());
            self.mode = Mode::Frames;
            return true;
        }
        let reason = if strict {
            DesyncReason::BadPreface
        } else {
            DesyncReason::MidStreamStart
        };
        let at = self.buf_start;
        let ts = self.ts_at(at);
        self.desync(at, ts, reason, out);
        true
    }

    fn step_frame(&mut self, out: &mut Vec<Http2Event>) -> bool {
        let input = self.buf.get(self.pos..).unwrap_or_default();
        let Ok(header) = parse_header(input) else {
            return false;
        };
        let offset = self.buf_start;
        if header.len > self.max_frame_size {
            let ts = self.ts_at(offset);
            let reason = DesyncReason::FrameTooLarge {
                len: header.len,
                max_frame_size: self.max_frame_size,
            };
            self.desync(offset, ts, reason, out);
            return true;
        }
        let total = FRAME_HEADER_LEN + header.len as usize;
        if input.len() < total {
            return false;
        }
        let ts_ns = self.ts_at(offset);
        // Lend the buffer out so the frame is parsed in place, without a copy.
        let buf = std::mem::take(&mut self.buf);
        let payload = buf
            .get(self.pos + FRAME_HEADER_LEN..self.pos + total)
            .unwrap_or_default();
        self.handle_frame(offset, ts_ns, header, payload, out);
        self.buf = buf;
        self.consume(total);
        true
    }

    fn step_resync(&mut self, since: u64, out: &mut Vec<Http2Event>) -> bool {
        let input = self.buf.get(self.pos..).unwrap_or_default();
        let mut i = 0usize;
        let found = loop {
            match self.judge_candidate(input.get(i..).unwrap_or_default()) {
                Candidate::Yes => break true,
                Candidate::No => i += 1,
                Candidate::NeedMore => break false,
            }
        };
        self.consume(i);
        if !found {
            return false;
        }
        let at = self.buf_start;
        out.push(Http2Event::Resynced {
            at_offset: at,
            ts_ns: self.ts_at(at),
            skipped: at.saturating_sub(since),
        });
        self.mode = Mode::Frames;
        true
    }

    /// Whether a frame boundary is at the start of `b`: a plausible, well-formed frame
    /// followed by another plausible frame header.
    fn judge_candidate(&self, b: &[u8]) -> Candidate {
        let Ok(h) = parse_header(b) else {
            return Candidate::NeedMore;
        };
        // A CONTINUATION cannot start a usable sequence: its block's start is lost.
        if !h.is_plausible(self.max_frame_size) || h.kind == FrameType::Continuation {
            return Candidate::No;
        }
        let total = FRAME_HEADER_LEN + h.len as usize;
        let (Some(payload), Some(next)) = (b.get(FRAME_HEADER_LEN..total), b.get(total..)) else {
            return Candidate::NeedMore;
        };
        let Ok(h2) = parse_header(next) else {
            return Candidate::NeedMore;
        };
        if parse_frame(&h, payload).is_err() || !h2.is_plausible(self.max_frame_size) {
            return Candidate::No;
        }
        let opens_block = matches!(h.kind, FrameType::Headers | FrameType::PushPromise)
            && !h.has(FLAG_END_HEADERS);
        let continues = h2.kind == FrameType::Continuation && h2.stream_id == h.stream_id;
        if opens_block == continues {
            Candidate::Yes
        } else {
            Candidate::No
        }
    }

    fn handle_frame(
        &mut self,
        offset: u64,
        ts_ns: u64,
        header: FrameHeader,
        payload: &[u8],
        out: &mut Vec<Http2Event>,
    ) {
        self.interrupt_block(&header, out);
        let frame = match parse_frame(&header, payload) {
            Ok(f) => f,
            Err(error) => {
                out.push(Http2Event::InvalidFrame {
                    offset,
                    ts_ns,
                    header,
                    error: error.clone(),
                });
                if is_header_block_frame(header.kind) {
                    self.lose_block_for(
                        &header,
                        ts_ns,
                        HeaderBlockLossReason::InvalidFrame(error),
                        out,
                    );
                }
                return;
            }
        };
        out.push(Http2Event::Frame {
            offset,
            ts_ns,
            header,
            frame: FrameSummary::of(&frame),
        });
        match frame {
            Frame::Data(d) => out.push(Http2Event::Data {
                stream_id: d.stream_id,
                ts_ns,
                end_stream: d.end_stream,
                bytes: d.data.to_vec(),
                padded_len: d.padding_overhead(),
            }),
            Frame::Headers(h) => self.start_block(
                h.stream_id,
                ts_ns,
                h.end_stream,
                None,
                h.fragment,
                h.end_headers,
                out,
            ),
            Frame::PushPromise(p) => self.start_block(
                p.stream_id,
                ts_ns,
                false,
                Some(p.promised_stream_id),
                p.fragment,
                p.end_headers,
                out,
            ),
            Frame::Continuation(c) => {
                self.continue_block(c.stream_id, ts_ns, c.fragment, c.end_headers, out)
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_block(
        &mut self,
        stream_id: u32,
        ts_ns: u64,
        end_stream: bool,
        promised_stream_id: Option<u32>,
        fragment: &[u8],
        end_headers: bool,
        out: &mut Vec<Http2Event>,
    ) {
        let mut block = PendingBlock {
            stream_id,
            ts_ns,
            end_stream,
            promised_stream_id,
            fragment: Vec::new(),
            lost: false,
        };
        self.append_fragment(&mut block, fragment, out);
        self.block = Some(block);
        if end_headers {
            self.end_block(out);
        }
    }

    fn continue_block(
        &mut self,
        stream_id: u32,
        ts_ns: u64,
        fragment: &[u8],
        end_headers: bool,
        out: &mut Vec<Http2Event>,
    ) {
        let Some(mut block) = self.block.take() else {
            out.push(Http2Event::HeaderBlockLost {
                stream_id,
                ts_ns,
                end_stream: false,
                reason: HeaderBlockLossReason::OrphanContinuation,
            });
            return;
        };
        self.append_fragment(&mut block, fragment, out);
        self.block = Some(block);
        if end_headers {
            self.end_block(out);
        }
    }

    fn append_fragment(
        &self,
        block: &mut PendingBlock,
        fragment: &[u8],
        out: &mut Vec<Http2Event>,
    ) {
        if block.lost {
            return;
        }
        if block.fragment.len().saturating_add(fragment.len()) > self.max_header_block {
            block.lost = true;
            block.fragment = Vec::new();
            out.push(Http2Event::HeaderBlockLost {
                stream_id: block.stream_id,
                ts_ns: block.ts_ns,
                end_stream: block.end_stream,
                reason: HeaderBlockLossReason::TooLarge {
                    limit: self.max_header_block,
                },
            });
            return;
        }
        block.fragment.extend_from_slice(fragment);
    }

    fn end_block(&mut self, out: &mut Vec<Http2Event>) {
        if let Some(b) = self.block.take() {
            if !b.lost {
                out.push(Http2Event::HeaderBlock {
                    stream_id: b.stream_id,
                    ts_ns: b.ts_ns,
                    end_stream: b.end_stream,
                    promised_stream_id: b.promised_stream_id,
                    fragment: b.fragment,
                });
            }
        }
    }

    /// A frame carrying header block bytes was lost or malformed: report the block lost
    /// and absorb the rest of it.
    fn lose_block_for(
        &mut self,
        header: &FrameHeader,
        ts_ns: u64,
        reason: HeaderBlockLossReason,
        out: &mut Vec<Http2Event>,
    ) {
        let (stream_id, block_ts, end_stream, already_lost) = match (&self.block, header.kind) {
            (Some(b), FrameType::Continuation) => (b.stream_id, b.ts_ns, b.end_stream, b.lost),
            (_, FrameType::Headers) => {
                (header.stream_id, ts_ns, header.has(FLAG_END_STREAM), false)
            }
            _ => (header.stream_id, ts_ns, false, false),
        };
        if !already_lost {
            out.push(Http2Event::HeaderBlockLost {
                stream_id,
                ts_ns: block_ts,
                end_stream,
                reason,
            });
        }
        self.block = if header.has(FLAG_END_HEADERS) {
            None
        } else {
            Some(PendingBlock {
                stream_id,
                ts_ns: block_ts,
                end_stream,
                promised_stream_id: None,
                fragment: Vec::new(),
                lost: true,
            })
        };
    }

    fn damage_header_block(&mut self, header: &FrameHeader, ts_ns: u64, out: &mut Vec<Http2Event>) {
        self.interrupt_block(header, out);
        if is_header_block_frame(header.kind) {
            self.lose_block_for(header, ts_ns, HeaderBlockLossReason::Gap, out);
        }
    }

    /// A header block in progress admits only its own CONTINUATIONs: any other frame
    /// ends it unfinished.
    fn interrupt_block(&mut self, header: &FrameHeader, out: &mut Vec<Http2Event>) {
        let continues = self.block.as_ref().is_some_and(|b| {
            header.kind == FrameType::Continuation && header.stream_id == b.stream_id
        });
        if continues {
            return;
        }
        if let Some(b) = self.block.take().filter(|b| !b.lost) {
            out.push(Http2Event::HeaderBlockLost {
                stream_id: b.stream_id,
                ts_ns: b.ts_ns,
                end_stream: b.end_stream,
                reason: HeaderBlockLossReason::Interrupted {
                    by: header.kind,
                    stream_id: header.stream_id,
                },
            });
        }
    }

    /// Where the data of a DATA frame starting at `frame_start` lies, as far as the
    /// buffered bytes tell.
    fn data_range(&self, header: &FrameHeader, frame_start: u64) -> DataRange {
        if header.kind != FrameType::Data {
            return DataRange::None;
        }
        let payload_start = frame_start + FRAME_HEADER_LEN as u64;
        let payload_end = payload_start + u64::from(header.len);
        if !header.has(FLAG_PADDED) {
            return DataRange::Known {
                start: payload_start,
                end: payload_end,
            };
        }
        let pad = self.buf.get(self.pos + FRAME_HEADER_LEN).copied();
        match pad {
            Some(pad) if u32::from(pad) < header.len => DataRange::Known {
                start: payload_start + 1,
                end: payload_end - u64::from(pad),
            },
            _ => DataRange::Unknown,
        }
    }

    /// Hands on the bytes of a damaged DATA frame that fall in its data.
    fn emit_data_piece(
        &self,
        df: &DamagedFrame,
        at: u64,
        bytes: &[u8],
        ts_ns: u64,
        out: &mut Vec<Http2Event>,
    ) {
        let DataRange::Known { start, end } = df.data else {
            return;
        };
        let from = at.max(start);
        let to = at.saturating_add(bytes.len() as u64).min(end);
        if from >= to {
            return;
        }
        let (a, b) = ((from - at) as usize, (to - at) as usize);
        if let Some(slice) = bytes.get(a..b) {
            out.push(Http2Event::Data {
                stream_id: df.header.stream_id,
                ts_ns,
                end_stream: false,
                bytes: slice.to_vec(),
                padded_len: 0,
            });
        }
    }

    /// Reports the part of a gap that fell in a damaged DATA frame's data.
    fn emit_data_gap(
        &self,
        df: &DamagedFrame,
        gap_start: u64,
        gap_end: u64,
        ts_ns: u64,
        out: &mut Vec<Http2Event>,
    ) {
        let DataRange::Known { start, end } = df.data else {
            return;
        };
        let from = gap_start.max(start);
        let to = gap_end.min(end);
        if from < to {
            out.push(Http2Event::DataGap {
                stream_id: df.header.stream_id,
                ts_ns,
                len: to - from,
                exact: true,
            });
        }
    }

    /// Leaves a damaged frame once all its bytes went by.
    fn settle_damaged(&mut self, ts_ns: u64, out: &mut Vec<Http2Event>) {
        let Mode::Damaged(df) = self.mode else {
            return;
        };
        if self.end < df.frame_end {
            return;
        }
        if df.header.kind == FrameType::Data && df.header.has(FLAG_END_STREAM) {
            out.push(Http2Event::Data {
                stream_id: df.header.stream_id,
                ts_ns,
                end_stream: true,
                bytes: Vec::new(),
                padded_len: 0,
            });
        }
        self.buf_start = df.frame_end;
        self.mode = Mode::Frames;
    }
}

enum Candidate {
    Yes,
    No,
    NeedMore,
}

fn is_header_block_frame(kind: FrameType) -> bool {
    matches!(
        kind,
        FrameType::Headers | FrameType::PushPromise | FrameType::Continuation
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::http2::frame::{FLAG_ACK, FLAG_PRIORITY};

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = FrameHeader {
            len: payload.len() as u32,
            kind: FrameType::from_u8(kind),
            flags,
            stream_id,
            reserved_bit: false,
        }
        .to_bytes()
        .to_vec();
        v.extend_from_slice(payload);
        v
    }

    const GRPC_PUT: [u8; 15] = [
        0, 0, 0, 0, 0x0a, 0x0a, 0x03, b'f', b'o', b'o', 0x12, 0x03, b'b', b'a', b'r',
    ];

    /// The client side of `etcdctl put foo bar` as PROTOCOLS.md describes it; the HPACK
    /// bytes are stand-ins of the right length.
    fn etcdctl_put() -> (Vec<u8>, Vec<u8>) {
        let mut v = CLIENT_PREFACE.to_vec();
        v.extend(frame(4, 0, 0, &[]));
        let mut seg = frame(4, FLAG_ACK, 0, &[]);
        let hpack: Vec<u8> = (0..96u8).collect();
        let headers = frame(1, FLAG_END_HEADERS, 1, &hpack);
        assert_eq!(headers.len(), 105);
        seg.extend(headers);
        seg.extend(frame(0, FLAG_END_STREAM, 1, &GRPC_PUT));
        v.extend_from_slice(&seg);
        (v, hpack)
    }

    fn decode(dir: FlowDirection, start: bool, chunks: &[(u64, &[u8])]) -> Vec<Http2Event> {
        let mut s = FrameStream::new(dir, start);
        let mut out = Vec::new();
        for (off, c) in chunks {
            s.push_data(*off, c, 7, &mut out);
        }
        s.finish(&mut out);
        out
    }

    fn kinds(ev: &[Http2Event]) -> Vec<String> {
        ev.iter()
            .map(|e| match e {
                Http2Event::Preface { .. } => "preface".to_string(),
                Http2Event::Frame { header, .. } => header.kind.name().to_string(),
                Http2Event::InvalidFrame { .. } => "invalid".into(),
                Http2Event::DamagedFrame { .. } => "damaged".into(),
                Http2Event::HeaderBlock { .. } => "block".into(),
                Http2Event::HeaderBlockLost { .. } => "block-lost".into(),
                Http2Event::Data { .. } => "data".into(),
                Http2Event::DataGap { .. } => "data-gap".into(),
                Http2Event::Desync { .. } => "desync".into(),
                Http2Event::Resynced { .. } => "resynced".into(),
            })
            .collect()
    }

    #[test]
    fn etcdctl_put_example() {
        let (bytes, hpack) = etcdctl_put();
        let ev = decode(FlowDirection::ClientToServer, true, &[(0, &bytes)]);
        assert_eq!(
            kinds(&ev),
            ["preface", "SETTINGS", "SETTINGS", "HEADERS", "block", "DATA", "data"]
        );
        assert!(
            matches!(&ev[2], Http2Event::Frame { frame: FrameSummary::Settings { ack: true, settings }, .. } if settings.is_empty())
        );
        assert_eq!(
            ev[4],
            Http2Event::HeaderBlock {
                stream_id: 1,
                ts_ns: 7,
                end_stream: false,
                promised_stream_id: None,
                fragment: hpack
            }
        );
        assert_eq!(
            ev[6],
            Http2Event::Data {
                stream_id: 1,
                ts_ns: 7,
                end_stream: true,
                bytes: GRPC_PUT.to_vec(),
                padded_len: 0
            }
        );
        assert!(matches!(ev[3], Http2Event::Frame { offset: 42, .. }));
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let (bytes, _) = etcdctl_put();
        let whole = decode(FlowDirection::ClientToServer, true, &[(0, &bytes)]);
        let chunks: Vec<(u64, &[u8])> = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u64, std::slice::from_ref(b)))
            .collect();
        assert_eq!(decode(FlowDirection::ClientToServer, true, &chunks), whole);
    }

    #[test]
    fn frame_timestamp_is_first_byte() {
        let (bytes, _) = etcdctl_put();
        let mut s = FrameStream::new(FlowDirection::ClientToServer, true);
        let mut out = Vec::new();
        // The HEADERS frame starts at 42 and is split over two pushes.
        s.push_data(0, &bytes[..50], 100, &mut out);
        s.push_data(50, &bytes[50..], 200, &mut out);
        let hb = out
            .iter()
            .find_map(|e| match e {
                Http2Event::HeaderBlock { ts_ns, .. } => Some(*ts_ns),
                _ => None,
            })
            .unwrap();
        assert_eq!(hb, 100);
    }

    #[test]
    fn continuation_assembly() {
        let mut v = frame(
            1,
            FLAG_END_STREAM | FLAG_PRIORITY,
            3,
            &[0, 0, 0, 1, 9, 0xa1, 0xa2],
        );
        v.extend(frame(9, 0, 3, &[0xb1]));
        v.extend(frame(9, FLAG_END_HEADERS, 3, &[0xc1, 0xc2]));
        let ev = decode(FlowDirection::ServerToClient, true, &[(0, &v)]);
        assert_eq!(
            kinds(&ev),
            ["HEADERS", "CONTINUATION", "CONTINUATION", "block"]
        );
        assert_eq!(
            ev[3],
            Http2Event::HeaderBlock {
                stream_id: 3,
                ts_ns: 7,
                end_stream: true,
                promised_stream_id: None,
                fragment: vec![0xa1, 0xa2, 0xb1, 0xc1, 0xc2]
            }
        );
    }

    #[test]
    fn push_promise_block_and_orphan_continuation() {
        let mut v = frame(5, FLAG_END_HEADERS, 1, &[0, 0, 0, 2, 0x82]);
        v.extend(frame(9, FLAG_END_HEADERS, 1, &[0x83]));
        let ev = decode(FlowDirection::ServerToClient, true, &[(0, &v)]);
        assert!(
            matches!(&ev[1], Http2Event::HeaderBlock { promised_stream_id: Some(2), fragment, .. } if fragment == &[0x82])
        );
        assert!(matches!(
            &ev[3],
            Http2Event::HeaderBlockLost {
                reason: HeaderBlockLossReason::OrphanContinuation,
                ..
            }
        ));
    }

    #[test]
    fn interrupted_header_block() {
        let mut v = frame(1, 0, 1, &[0x82]);
        v.extend(frame(0, 0, 1, b"x"));
        let ev = decode(FlowDirection::ServerToClient, true, &[(0, &v)]);
        assert_eq!(kinds(&ev), ["HEADERS", "block-lost", "DATA", "data"]);
        assert!(matches!(
            &ev[1],
            Http2Event::HeaderBlockLost {
                reason: HeaderBlockLossReason::Interrupted {
                    by: FrameType::Data,
                    stream_id: 1
                },
                ..
            }
        ));
    }

    #[test]
    fn header_block_bound() {
        let mut s = FrameStream::new(FlowDirection::ServerToClient, true);
        s.set_max_header_block(10);
        let mut v = frame(1, 0, 1, &[1; 8]);
        v.extend(frame(9, 0, 1, &[2; 8]));
        v.extend(frame(9, FLAG_END_HEADERS, 1, &[3; 8]));
        v.extend(frame(0, 0, 1, b"ok"));
        let mut out = Vec::new();
        s.push_data(0, &v, 1, &mut out);
        assert_eq!(
            kinds(&out),
            [
                "HEADERS",
                "CONTINUATION",
                "block-lost",
                "CONTINUATION",
                "DATA",
                "data"
            ]
        );
    }

    #[test]
    fn invalid_frame_keeps_sync() {
        let mut v = frame(6, 0, 0, &[0; 7]); // PING of 7 bytes
        v.extend(frame(8, 0, 0, &[0, 0, 1, 0]));
        let ev = decode(FlowDirection::ServerToClient, true, &[(0, &v)]);
        assert_eq!(kinds(&ev), ["invalid", "WINDOW_UPDATE"]);
    }

    #[test]
    fn padded_data_event() {
        let v = frame(0, FLAG_PADDED, 1, &[3, b'a', b'b', 0, 0, 0]);
        let ev = decode(FlowDirection::ServerToClient, true, &[(0, &v)]);
        assert_eq!(
            ev[1],
            Http2Event::Data {
                stream_id: 1,
                ts_ns: 7,
                end_stream: false,
                bytes: b"ab".to_vec(),
                padded_len: 4
            }
        );
    }

    #[test]
    fn bad_preface_then_resync() {
        let mut v = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        let at = v.len() as u64;
        v.extend(frame(4, 0, 0, &[]));
        v.extend(frame(8, 0, 0, &[0, 0, 1, 0]));
        let ev = decode(FlowDirection::ClientToServer, true, &[(0, &v)]);
        assert_eq!(
            kinds(&ev),
            ["desync", "resynced", "SETTINGS", "WINDOW_UPDATE"]
        );
        assert!(matches!(
            ev[0],
            Http2Event::Desync {
                reason: DesyncReason::BadPreface,
                offset: 0,
                ..
            }
        ));
        assert_eq!(
            ev[1],
            Http2Event::Resynced {
                at_offset: at,
                ts_ns: 7,
                skipped: at
            }
        );
    }

    #[test]
    fn mid_stream_start_resyncs() {
        // The tail of a DATA frame, then two frames.
        let mut v = vec![0x55; 37];
        v.extend(frame(0, 0, 5, b"hello"));
        v.extend(frame(1, FLAG_END_HEADERS | FLAG_END_STREAM, 5, &[0x88]));
        let ev = decode(FlowDirection::ServerToClient, false, &[(0, &v)]);
        assert_eq!(
            kinds(&ev),
            ["desync", "resynced", "DATA", "data", "HEADERS", "block"]
        );
        assert!(matches!(
            ev[0],
            Http2Event::Desync {
                reason: DesyncReason::MidStreamStart,
                ..
            }
        ));
        assert!(matches!(
            ev[1],
            Http2Event::Resynced {
                at_offset: 37,
                skipped: 37,
                ..
            }
        ));
        // The client side mid-stream (no preface) resyncs the same way.
        let ev = decode(FlowDirection::ClientToServer, false, &[(0, &v)]);
        assert_eq!(kinds(&ev)[..2], ["desync", "resynced"]);
        // A client side whose handshake was missed but that starts with the preface.
        let (put, _) = etcdctl_put();
        let ev = decode(FlowDirection::ClientToServer, false, &[(0, &put)]);
        assert_eq!(kinds(&ev)[0], "preface");
    }

    #[test]
    fn resync_needs_a_second_header() {
        // One plausible frame that ends exactly at the end of the data: not trusted yet.
        let mut v = vec![0xff; 3];
        v.extend(frame(0, 0, 5, b"hello"));
        let mut s = FrameStream::new(FlowDirection::ServerToClient, false);
        let mut out = Vec::new();
        s.push_data(0, &v, 1, &mut out);
        assert_eq!(kinds(&out), ["desync"]);
        // The next frame confirms it.
        let next = frame(8, 0, 0, &[0, 0, 1, 0]);
        s.push_data(v.len() as u64, &next, 2, &mut out);
        assert_eq!(
            kinds(&out),
            ["desync", "resynced", "DATA", "data", "WINDOW_UPDATE"]
        );
    }

    #[test]
    fn gap_inside_data_frame_keeps_sync() {
        let payload: Vec<u8> = (0..100u8).collect();
        let mut v = frame(0, FLAG_END_STREAM, 3, &payload);
        v.extend(frame(8, 0, 3, &[0, 0, 0, 100]));
        let mut s = FrameStream::new(FlowDirection::ServerToClient, true);
        let mut out = Vec::new();
        s.push_data(0, &v[..30], 1, &mut out); // header + 21 data bytes
        s.push_gap(30, 40, 2, &mut out); // data bytes 21..61 lost
        s.push_data(70, &v[70..], 3, &mut out);
        s.finish(&mut out);
        assert_eq!(
            kinds(&out),
            [
                "damaged",
                "data",
                "data-gap",
                "data",
                "data",
                "WINDOW_UPDATE"
            ]
        );
        assert!(matches!(&out[1], Http2Event::Data { bytes, .. } if bytes[..] == payload[..21]));
        assert!(matches!(
            out[2],
            Http2Event::DataGap {
                stream_id: 3,
                len: 40,
                exact: true,
                ..
            }
        ));
        assert!(
            matches!(&out[3], Http2Event::Data { bytes, end_stream: false, .. } if bytes[..] == payload[61..])
        );
        assert!(
            matches!(&out[4], Http2Event::Data { bytes, end_stream: true, .. } if bytes.is_empty())
        );
    }

    #[test]
    fn gap_across_frames_resyncs() {
        let payload: Vec<u8> = (0..100u8).collect();
        let mut v = frame(0, 0, 3, &payload);
        let lost_headers_at = v.len();
        v.extend(frame(1, FLAG_END_HEADERS, 3, &[0x82, 0x84]));
        let f3 = v.len();
        v.extend(frame(0, 0, 3, b"abc"));
        v.extend(frame(6, 0, 0, &[0; 8]));
        let mut s = FrameStream::new(FlowDirection::ServerToClient, true);
        let mut out = Vec::new();
        s.push_data(0, &v[..50], 1, &mut out);
        // Lose the end of the DATA frame and the start of the HEADERS frame.
        let gap_end = lost_headers_at + 4;
        s.push_gap(50, (gap_end - 50) as u64, 2, &mut out);
        s.push_data(gap_end as u64, &v[gap_end..], 3, &mut out);
        assert_eq!(
            kinds(&out),
            ["damaged", "data", "data-gap", "desync", "resynced", "DATA", "data", "PING"]
        );
        assert!(matches!(
            out[3],
            Http2Event::Desync {
                offset: 109,
                reason: DesyncReason::Gap { offset: 50, .. },
                ..
            }
        ));
        assert_eq!(
            out[4],
            Http2Event::Resynced {
                at_offset: f3 as u64,
                ts_ns: 3,
                skipped: f3 as u64 - 109
            }
        );
    }

    #[test]
    fn gap_in_header_block_reported() {
        let mut v = frame(1, 0, 1, &[1; 20]);
        v.extend(frame(9, FLAG_END_HEADERS, 1, &[2; 5]));
        v.extend(frame(0, 0, 1, b"z"));
        let mut s = FrameStream::new(FlowDirection::ServerToClient, true);
        let mut out = Vec::new();
        s.push_data(0, &v[..12], 1, &mut out);
        s.push_gap(12, 3, 2, &mut out);
        s.push_data(15, &v[15..], 3, &mut out);
        assert_eq!(
            kinds(&out),
            ["damaged", "block-lost", "CONTINUATION", "DATA", "data"]
        );
        // A gap at a frame boundary loses sync, and the block in progress with it.
        let mut s = FrameStream::new(FlowDirection::ServerToClient, true);
        let mut out = Vec::new();
        s.push_data(0, &v[..29], 1, &mut out);
        s.push_gap(29, 14, 2, &mut out);
        assert!(matches!(
            out.last(),
            Some(Http2Event::Desync {
                lost_header_block: Some(1),
                ..
            })
        ));
    }

    #[test]
    fn lost_pad_length_makes_inexact_gap() {
        let v = frame(0, FLAG_PADDED, 1, &[2, b'a', b'b', 0, 0]);
        let mut s = FrameStream::new(FlowDirection::ServerToClient, true);
        let mut out = Vec::new();
        s.push_data(0, &v[..9], 1, &mut out);
        s.push_gap(9, 1, 2, &mut out);
        s.push_data(10, &v[10..], 3, &mut out);
        assert_eq!(kinds(&out), ["damaged", "data-gap"]);
        assert!(matches!(
            out[1],
            Http2Event::DataGap {
                exact: false,
                len: 5,
                ..
            }
        ));
    }

    #[test]
    fn oversized_frame_is_desync_unless_allowed() {
        let big = vec![0u8; 20_000];
        let v = frame(0, 0, 1, &big);
        let ev = decode(FlowDirection::ServerToClient, true, &[(0, &v)]);
        assert!(matches!(
            ev[0],
            Http2Event::Desync {
                reason: DesyncReason::FrameTooLarge { len: 20_000, .. },
                ..
            }
        ));
        let mut s = FrameStream::new(FlowDirection::ServerToClient, true);
        s.set_max_frame_size(1 << 20);
        let mut out = Vec::new();
        s.push_data(0, &v, 1, &mut out);
        assert_eq!(kinds(&out), ["DATA", "data"]);
    }

    #[test]
    fn duplicate_and_overlapping_pushes_ignored() {
        let (bytes, _) = etcdctl_put();
        let whole = decode(FlowDirection::ClientToServer, true, &[(0, &bytes)]);
        let ev = decode(
            FlowDirection::ClientToServer,
            true,
            &[
                (0, &bytes[..60]),
                (10, &bytes[10..80]),
                (0, &bytes[..5]),
                (80, &bytes[80..]),
            ],
        );
        assert_eq!(ev, whole);
    }

    #[test]
    fn end_of_data_inside_frame() {
        let v = frame(0, 0, 1, b"hello");
        let ev = decode(FlowDirection::ServerToClient, true, &[(0, &v[..11])]);
        assert!(matches!(
            ev[0],
            Http2Event::Desync {
                reason: DesyncReason::EndOfData { pending_bytes: 11 },
                ..
            }
        ));
    }

    use crate::test_rng::XorShift;

    fn random_valid_stream(rng: &mut XorShift) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..rng.below(30) {
            let sid = 1 + 2 * rng.below(5) as u32;
            let n = rng.below(60) as usize;
            let p: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            match rng.below(6) {
                0 => v.extend(frame(0, FLAG_END_STREAM, sid, &p)),
                1 => {
                    v.extend(frame(1, 0, sid, &p));
                    v.extend(frame(9, FLAG_END_HEADERS, sid, &p));
                }
                2 => v.extend(frame(4, 0, 0, &[0, 1, 0, 0, 0x10, 0])),
                3 => v.extend(frame(6, 0, 0, &[1; 8])),
                4 => v.extend(frame(8, 0, sid, &[0, 0, 1, 0])),
                _ => v.extend(frame(0, FLAG_PADDED, sid, &[1, 2, 3])),
            }
        }
        v
    }

    /// Random splits must not change what comes out.
    #[test]
    fn random_splits_are_invisible() {
        let mut rng = XorShift(77);
        for _ in 0..300 {
            let v = random_valid_stream(&mut rng);
            let whole = decode(FlowDirection::ServerToClient, true, &[(0, &v)]);
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < v.len() {
                let n = (1 + rng.below(40) as usize).min(v.len() - at);
                chunks.push((at as u64, &v[at..at + n]));
                at += n;
            }
            assert_eq!(decode(FlowDirection::ServerToClient, true, &chunks), whole);
            assert!(!kinds(&whole)
                .iter()
                .any(|k| k == "desync" || k == "invalid"));
        }
    }

    /// Random bytes, mutations, random gaps: no panic, and offsets stay sane.
    #[test]
    fn random_and_mutated_input_no_panic() {
        let mut rng = XorShift(4242);
        for round in 0..3000 {
            let mut v = if round % 3 == 0 {
                (0..rng.below(400)).map(|_| rng.next() as u8).collect()
            } else {
                random_valid_stream(&mut rng)
            };
            for _ in 0..rng.below(6) {
                if !v.is_empty() {
                    let i = rng.below(v.len() as u64) as usize;
                    v[i] = rng.next() as u8;
                }
            }
            let dir = if round % 2 == 0 {
                FlowDirection::ClientToServer
            } else {
                FlowDirection::ServerToClient
            };
            let mut s = FrameStream::new(dir, rng.below(2) == 0);
            if rng.below(4) == 0 {
                s.set_max_frame_size(rng.next() as u32);
            }
            let mut out = Vec::new();
            let mut at = 0usize;
            while at < v.len() {
                let n = (1 + rng.below(50) as usize).min(v.len() - at);
                if rng.below(8) == 0 {
                    s.push_gap(at as u64, n as u64, at as u64, &mut out);
                } else {
                    s.push_data(at as u64, &v[at..at + n], at as u64, &mut out);
                }
                at += n;
            }
            s.finish(&mut out);
            for e in &out {
                if let Http2Event::Resynced { at_offset, .. } = e {
                    assert!(*at_offset <= v.len() as u64);
                }
            }
        }
    }
}
