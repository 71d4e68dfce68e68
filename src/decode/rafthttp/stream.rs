//! The `message` stream's framing, `u64 BE length | raftpb.Message` repeated for as long
//! as the stream lives, and what the other framings share: gathering a field across
//! pushes, and finding a stream's type and its first message boundary when its start
//! was not seen.
//!
//! Finding the place. A stream body seen from its middle (its connection was open
//! before recording) or after lost bytes has no boundary to start from. etcd's stream
//! writer flushes after whole messages, and each flush is one chunk, so a chunk whose
//! data starts a stream event very likely starts a message. Decoding restarts at the
//! next chunk start on probation: the first frame must decode into a plausible message
//! (a known type, and both ends named or a link heartbeat), or the place is dropped
//! again silently and the next chunk start is tried. A body whose request was not seen
//! is tried as both framings at once ([`Sniffer`]) until one of them holds.

use prost::Message as _;

use super::msgappv2::MsgAppStream;
use super::{At, Framing, NoteKind, PeerEvent, RequestKind};
use crate::decode::raftpb::Message;

/// etcd refuses stream messages longer than this (`readBytesLimit`): a longer length
/// means the framing is lost.
pub const ETCD_MAX_MESSAGE: u64 = 512 << 20;
/// Longest message (or entry, or pipeline body) decoded; longer ones are skipped.
pub const MAX_MESSAGE_BYTES: u64 = 64 << 20;
/// Longest first message accepted on probation, while the place is uncertain.
pub(super) const PROBATION_MAX: u64 = 4 << 20;
/// Gathering buffers larger than this are not kept between frames.
const KEEP_CAPACITY: usize = 1 << 20;

/// One field of a frame gathered across pushes: taken straight from the input when it
/// is all there, copied when it is split.
#[derive(Debug, Default)]
pub(super) struct Gather {
    buf: Vec<u8>,
}

/// What [`Gather::take`] found.
pub(super) enum Gathered<'i> {
    /// Not all there yet: everything was taken.
    Pending,
    /// All in the input.
    Input(&'i [u8]),
    /// All in the buffer, which the caller decodes and then clears.
    Buffered,
}

impl Gather {
    /// The next `n` bytes, after those gathered before; advances `input`. `n` must be
    /// bounded by the caller and the same until the field is whole.
    pub(super) fn take<'i>(&mut self, input: &mut &'i [u8], n: usize) -> Gathered<'i> {
        if self.buf.is_empty() && input.len() >= n {
            let (field, rest) = input.split_at(n);
            *input = rest;
            return Gathered::Input(field);
        }
        let k = n.saturating_sub(self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..k]);
        *input = &input[k..];
        if self.buf.len() >= n {
            Gathered::Buffered
        } else {
            Gathered::Pending
        }
    }

    pub(super) fn clear(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
    }

    /// A field is partly gathered.
    pub(super) fn is_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// A big-endian u64.
    pub(super) fn take_u64(&mut self, input: &mut &[u8]) -> Option<u64> {
        let be = |b: &[u8]| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&b[..8]);
            u64::from_be_bytes(word)
        };
        match self.take(input, 8) {
            Gathered::Pending => None,
            Gathered::Input(b) => Some(be(b)),
            Gathered::Buffered => {
                let v = be(&self.buf);
                self.clear();
                Some(v)
            }
        }
    }

    /// Decodes an `n`-byte field with `f` once it is whole.
    pub(super) fn take_with<T>(
        &mut self,
        input: &mut &[u8],
        n: usize,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Option<T> {
        match self.take(input, n) {
            Gathered::Pending => None,
            Gathered::Input(b) => Some(f(b)),
            Gathered::Buffered => {
                let v = f(&self.buf);
                self.clear();
                Some(v)
            }
        }
    }
}

/// Passes over up to `left` bytes of `input`; returns how many are left to pass over.
pub(super) fn skip(input: &mut &[u8], left: u64) -> u64 {
    let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
    *input = &input[n..];
    left - n as u64
}

/// A decoded message that may start a stream found by searching: a type raft names,
/// and both ends named (a link heartbeat names neither).
pub(super) fn plausible(m: &Message) -> bool {
    m.kind().is_some() && (m.is_link_heartbeat() || (m.from != 0 && m.to != 0))
}

/// A message, or a link heartbeat, as an event.
pub(super) fn message_event(
    at: At,
    via: RequestKind,
    framing: Framing,
    bytes: u64,
    message: Message,
) -> PeerEvent {
    if message.is_link_heartbeat() {
        PeerEvent::LinkHeartbeat {
            ts_ns: at.ts_ns,
            dir: at.dir,
            via,
        }
    } else {
        PeerEvent::Message {
            ts_ns: at.ts_ns,
            dir: at.dir,
            via,
            framing,
            bytes,
            message,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Len,
    Body(usize),
    Skip(u64),
    /// The place is lost: wait for a chunk start.
    Lost,
}

impl State {
    /// Passing over a message too long to decode, `left` bytes to go.
    fn skipping(left: u64) -> State {
        if left == 0 {
            State::Len
        } else {
            State::Skip(left)
        }
    }
}

/// The `message` stream's framing.
#[derive(Debug)]
pub(super) struct MessageStream {
    state: State,
    gather: Gather,
    /// The place is known (a frame decoded since it was last found).
    synced: bool,
}

impl MessageStream {
    /// At the start of the stream.
    pub(super) fn new() -> MessageStream {
        MessageStream {
            state: State::Len,
            gather: Gather::default(),
            synced: true,
        }
    }

    /// At a place found by searching: a bad first frame drops it silently.
    pub(super) fn probation() -> MessageStream {
        MessageStream {
            synced: false,
            ..MessageStream::new()
        }
    }

    pub(super) fn synced(&self) -> bool {
        self.synced
    }

    pub(super) fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// The place is lost (the caller said why).
    pub(super) fn lose(&mut self) {
        self.state = State::Lost;
        self.synced = false;
        self.gather.clear();
    }

    pub(super) fn push(
        &mut self,
        mut input: &[u8],
        chunk_start: bool,
        at: At,
        out: &mut Vec<PeerEvent>,
    ) {
        if self.state == State::Lost {
            if !chunk_start {
                return;
            }
            self.state = State::Len;
        }
        while !input.is_empty() {
            match self.state {
                State::Lost => return,
                State::Len => {
                    let Some(len) = self.gather.take_u64(&mut input) else {
                        return;
                    };
                    self.state = self.length(len, at, out);
                }
                State::Body(len) => {
                    let Some(decoded) = self
                        .gather
                        .take_with(&mut input, len, |b| Message::decode(b))
                    else {
                        return;
                    };
                    self.state = State::Len;
                    match decoded {
                        Ok(m) if self.synced || plausible(&m) => {
                            self.synced = true;
                            let bytes = 8 + len as u64;
                            out.push(message_event(
                                at,
                                RequestKind::StreamMessage,
                                Framing::LengthPrefixed,
                                bytes,
                                m,
                            ));
                        }
                        Ok(_) => self.lose(),
                        Err(_) if !self.synced => self.lose(),
                        Err(e) => out.push(at.note(
                            NoteKind::Undecodable,
                            format!("a raftpb.Message of {len} bytes on a message stream: {e}"),
                        )),
                    }
                }
                State::Skip(left) => self.state = State::skipping(skip(&mut input, left)),
            }
        }
    }

    /// The state after a length word.
    fn length(&mut self, len: u64, at: At, out: &mut Vec<PeerEvent>) -> State {
        if !self.synced && (len == 0 || len > PROBATION_MAX) {
            self.lose();
            return State::Lost;
        }
        if len > ETCD_MAX_MESSAGE {
            out.push(at.note(
                NoteKind::Undecodable,
                format!(
                    "a message stream announces {len} bytes, beyond etcd's bound of \
                     {ETCD_MAX_MESSAGE}: the framing is lost until a chunk starts a message"
                ),
            ));
            self.lose();
            return State::Lost;
        }
        if len > MAX_MESSAGE_BYTES {
            out.push(at.note(
                NoteKind::TooLarge,
                format!("a message of {len} bytes on a message stream: skipped, not decoded"),
            ));
            return State::Skip(len);
        }
        // Bounded just above.
        State::Body(len as usize)
    }

    /// `len` body bytes were not captured.
    pub(super) fn gap(&mut self, len: u64, at: At, out: &mut Vec<PeerEvent>) {
        match self.state {
            State::Lost => {}
            State::Skip(left) if len <= left => self.state = State::skipping(left - len),
            _ => {
                out.push(at.note(
                    NoteKind::Gap,
                    format!(
                        "{len} bytes of a message stream not captured: decoding resumes \
                         where a chunk starts a message"
                    ),
                ));
                self.lose();
            }
        }
    }

    /// The stream was cut in the middle of a frame.
    pub(super) fn in_frame(&self) -> bool {
        matches!(self.state, State::Body(_) | State::Skip(_)) || self.gather.is_partial()
    }
}

/// A stream body whose request was not seen: both framings tried from a chunk start
/// until one decodes a frame that only it explains.
#[derive(Debug, Default)]
pub(super) struct Sniffer {
    trial: Option<Trial>,
    /// Body bytes passed over so far.
    skipped: u64,
}

#[derive(Debug)]
struct Trial {
    message: Option<(MessageStream, Vec<PeerEvent>)>,
    msgapp: Option<(MsgAppStream, Vec<PeerEvent>)>,
    bytes: u64,
}

/// What a [`Sniffer`] decided, with the events its winner decoded meanwhile.
pub(super) enum Sniffed {
    Undecided,
    Message(MessageStream, Vec<PeerEvent>),
    MsgApp(MsgAppStream, Vec<PeerEvent>),
}

impl Sniffer {
    pub(super) fn new(skipped: u64) -> Sniffer {
        Sniffer {
            trial: None,
            skipped,
        }
    }

    /// Body bytes passed over before the trial under way (or the one that held).
    pub(super) fn passed_over(&self) -> u64 {
        self.skipped
    }

    /// Body bytes passed over without finding the stream's place.
    pub(super) fn skipped(&self) -> u64 {
        self.skipped + self.trial.as_ref().map_or(0, |t| t.bytes)
    }

    pub(super) fn push(&mut self, input: &[u8], chunk_start: bool, at: At) -> Sniffed {
        if chunk_start && self.trial.is_none() {
            self.trial = Some(Trial {
                message: Some((MessageStream::probation(), Vec::new())),
                msgapp: Some((MsgAppStream::probation(), Vec::new())),
                bytes: 0,
            });
        }
        let Some(trial) = self.trial.as_mut() else {
            self.skipped = self.skipped.saturating_add(input.len() as u64);
            return Sniffed::Undecided;
        };
        trial.bytes = trial.bytes.saturating_add(input.len() as u64);
        if let Some((stream, events)) = &mut trial.message {
            stream.push(input, false, at, events);
            if stream.is_lost() {
                trial.message = None;
            }
        }
        if let Some((stream, events)) = &mut trial.msgapp {
            stream.push(input, false, at, events);
            if stream.is_lost() {
                trial.msgapp = None;
            }
        }
        let decided = match (&trial.message, &trial.msgapp) {
            (Some((m, _)), _) if m.synced() => true,
            (_, Some((a, _))) if a.synced() => true,
            // Only a msgapp stream explains what has come: link heartbeats, as a
            // message stream's length word is never zero.
            (None, Some((a, _))) => a.frames() > 0,
            (None, None) => {
                self.skipped = self.skipped.saturating_add(trial.bytes);
                self.trial = None;
                return Sniffed::Undecided;
            }
            _ => false,
        };
        if !decided {
            return Sniffed::Undecided;
        }
        let Some(trial) = self.trial.take() else {
            return Sniffed::Undecided;
        };
        match (trial.message, trial.msgapp) {
            (Some((m, events)), _) if m.synced() => Sniffed::Message(m, events),
            (_, Some((a, events))) => Sniffed::MsgApp(a, events),
            _ => Sniffed::Undecided,
        }
    }
}

/// A note for the place found by a [`Sniffer`].
pub(super) fn found_note(at: At, kind: RequestKind, skipped: u64) -> PeerEvent {
    let what = match kind {
        RequestKind::StreamMsgApp => "a msgapp stream",
        _ => "a message stream",
    };
    at.note(
        NoteKind::Midstream,
        format!(
            "a stream body seen from its middle (request not captured): {what} by its \
             frames, decoded from here after {skipped} bytes"
        ),
    )
}
