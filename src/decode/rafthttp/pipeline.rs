//! Bodies that end: a pipeline POST's one bare raftpb.Message, a snapshot POST's
//! `u64 BE length | raftpb.Message (MsgSnap)` followed by the whole key-value database
//! (counted, never held), and any other body (probing JSON, error text, `/version`):
//! counted, with its first bytes kept as text.

use prost::Message as _;

use super::stream::{message_event, skip, Gather, MAX_MESSAGE_BYTES};
use super::{At, Framing, NoteKind, PeerEvent, RequestKind};
use crate::decode::raftpb::Message;

/// Bytes of a body kept as text.
pub const MAX_TEXT: usize = 512;

/// How a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    /// Its framing said it was complete.
    Whole,
    /// The connection closed first.
    Closed,
    /// The capture ended first.
    CaptureEnded,
    /// The HTTP framing was lost inside it.
    Lost,
}

impl Cut {
    fn why(self) -> &'static str {
        match self {
            Cut::Whole => "",
            Cut::Closed => "the connection closed inside it",
            Cut::CaptureEnded => "the capture ended inside it",
            Cut::Lost => "its HTTP framing was lost",
        }
    }
}

/// A pipeline POST's body: one raftpb.Message.
#[derive(Debug)]
pub(super) struct PipelineBody {
    buf: Vec<u8>,
    len: u64,
    missing: u64,
    too_large: bool,
}

impl PipelineBody {
    /// `announced`: its Content-Length, if any.
    pub(super) fn new(announced: Option<u64>) -> PipelineBody {
        PipelineBody {
            buf: Vec::new(),
            len: 0,
            missing: 0,
            too_large: announced.is_some_and(|n| n > MAX_MESSAGE_BYTES),
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.len = self.len.saturating_add(bytes.len() as u64);
        if self.len > MAX_MESSAGE_BYTES {
            self.too_large = true;
        }
        if self.too_large {
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    pub(super) fn gap(&mut self, len: u64) {
        self.len = self.len.saturating_add(len);
        self.missing = self.missing.saturating_add(len);
    }

    pub(super) fn end(self, cut: Cut, at: At, out: &mut Vec<PeerEvent>) {
        let len = self.len;
        let problem = if cut != Cut::Whole {
            Some((NoteKind::Truncated, cut.why().to_string()))
        } else if self.too_large {
            Some((
                NoteKind::TooLarge,
                format!("beyond {MAX_MESSAGE_BYTES} bytes"),
            ))
        } else if self.missing > 0 {
            let missing = self.missing;
            Some((
                NoteKind::Gap,
                format!("{missing} of its bytes not captured"),
            ))
        } else {
            None
        };
        if let Some((kind, why)) = problem {
            let text = format!("a pipeline message of {len} bytes not decoded: {why}");
            out.push(at.note(kind, text));
            return;
        }
        match Message::decode(self.buf.as_slice()) {
            Ok(m) => out.push(message_event(
                at,
                RequestKind::Pipeline,
                Framing::Bare,
                len,
                m,
            )),
            Err(e) => out.push(at.note(
                NoteKind::Undecodable,
                format!("a pipeline body of {len} bytes is no raftpb.Message: {e}"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapState {
    Len,
    Msg(usize),
    SkipMsg(u64),
    Database,
    /// Bytes were lost before the database started: its start is unknown.
    Unknown,
}

impl SnapState {
    /// Passing over a message too long to decode, `left` bytes to go.
    fn skipping(left: u64) -> SnapState {
        if left == 0 {
            SnapState::Database
        } else {
            SnapState::SkipMsg(left)
        }
    }
}

/// A snapshot POST's body.
#[derive(Debug)]
pub(super) struct SnapshotBody {
    state: SnapState,
    gather: Gather,
    db_bytes: u64,
    missing: u64,
}

impl SnapshotBody {
    pub(super) fn new() -> SnapshotBody {
        SnapshotBody {
            state: SnapState::Len,
            gather: Gather::default(),
            db_bytes: 0,
            missing: 0,
        }
    }

    pub(super) fn push(&mut self, mut input: &[u8], at: At, out: &mut Vec<PeerEvent>) {
        while !input.is_empty() {
            match self.state {
                SnapState::Len => {
                    let Some(len) = self.gather.take_u64(&mut input) else {
                        return;
                    };
                    self.state = if len > MAX_MESSAGE_BYTES {
                        out.push(at.note(
                            NoteKind::TooLarge,
                            format!("a snapshot's message of {len} bytes: skipped, not decoded"),
                        ));
                        SnapState::SkipMsg(len)
                    } else {
                        // Bounded just above.
                        SnapState::Msg(len as usize)
                    };
                }
                SnapState::Msg(len) => {
                    let Some(decoded) = self
                        .gather
                        .take_with(&mut input, len, |b| Message::decode(b))
                    else {
                        return;
                    };
                    self.state = SnapState::Database;
                    match decoded {
                        Ok(m) => out.push(message_event(
                            at,
                            RequestKind::Snapshot,
                            Framing::LengthPrefixed,
                            8 + len as u64,
                            m,
                        )),
                        Err(e) => out.push(at.note(
                            NoteKind::Undecodable,
                            format!("a snapshot's raftpb.Message of {len} bytes: {e}"),
                        )),
                    }
                }
                SnapState::SkipMsg(left) => {
                    self.state = SnapState::skipping(skip(&mut input, left));
                }
                SnapState::Database | SnapState::Unknown => {
                    self.db_bytes = self.db_bytes.saturating_add(input.len() as u64);
                    return;
                }
            }
        }
    }

    pub(super) fn gap(&mut self, len: u64, at: At, out: &mut Vec<PeerEvent>) {
        match self.state {
            SnapState::Database | SnapState::Unknown => {
                self.db_bytes = self.db_bytes.saturating_add(len);
                self.missing = self.missing.saturating_add(len);
            }
            SnapState::SkipMsg(left) if len <= left => {
                self.state = SnapState::skipping(left - len);
            }
            _ => {
                out.push(at.note(
                    NoteKind::Gap,
                    format!(
                        "{len} bytes of a snapshot's message not captured: the message is \
                         lost, and the rest of the body is counted as its database"
                    ),
                ));
                self.gather.clear();
                self.state = SnapState::Unknown;
                self.missing = self.missing.saturating_add(len);
            }
        }
    }

    pub(super) fn end(self, cut: Cut, at: At, out: &mut Vec<PeerEvent>) {
        if matches!(self.state, SnapState::Len | SnapState::Msg(_)) && cut != Cut::Whole {
            out.push(at.note(
                NoteKind::Truncated,
                format!("a snapshot's message not decoded: {}", cut.why()),
            ));
        }
        out.push(PeerEvent::SnapshotData {
            ts_ns: at.ts_ns,
            dir: at.dir,
            bytes: self.db_bytes,
            missing: self.missing,
            whole: cut == Cut::Whole,
        });
    }
}

/// Any other body: counted, its first bytes kept as text.
#[derive(Debug)]
pub(super) struct OtherBody {
    via: Option<RequestKind>,
    kept: Vec<u8>,
    len: u64,
    missing: u64,
}

impl OtherBody {
    pub(super) fn new(via: Option<RequestKind>) -> OtherBody {
        OtherBody {
            via,
            kept: Vec::new(),
            len: 0,
            missing: 0,
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.len = self.len.saturating_add(bytes.len() as u64);
        let room = MAX_TEXT.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    pub(super) fn gap(&mut self, len: u64) {
        self.len = self.len.saturating_add(len);
        self.missing = self.missing.saturating_add(len);
    }

    pub(super) fn end(self, cut: Cut, at: At, out: &mut Vec<PeerEvent>) {
        let text = String::from_utf8_lossy(&self.kept).into_owned();
        out.push(PeerEvent::Body {
            ts_ns: at.ts_ns,
            dir: at.dir,
            via: self.via,
            bytes: self.len,
            missing: self.missing,
            whole: cut == Cut::Whole,
            text,
        });
    }
}
