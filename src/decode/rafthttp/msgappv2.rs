//! The `msgapp` stream (msgappv2): a leader's MsgApps to one follower, each introduced
//! by a type byte:
//!
//! - `0x00` link heartbeat: that byte alone.
//! - `0x01` AppEntries: `u64 BE n | n × (u64 BE size | raftpb.Entry) | u64 BE commit`.
//!   It continues the previous MsgApp: same sender, receiver and term (which is also
//!   its log term), and its previous index is the index the last frame ended at.
//! - `0x02` MsgApp: `u64 BE size | raftpb.Message`, which sets that term and index.
//!
//! The framing is stateful, so a reader that starts in the middle of a stream (or after
//! lost bytes) decodes AppEntries frames but cannot report them as messages until a
//! MsgApp has set the term and index: it says so once, and counts them.

use prost::Message as _;

use super::stream::{
    message_event, plausible, skip, Gather, ETCD_MAX_MESSAGE, MAX_MESSAGE_BYTES, PROBATION_MAX,
};
use super::{At, Framing, NoteKind, PeerEvent, RequestKind};
use crate::decode::raftpb::Entry;
use crate::decode::raftpb::{Message, MessageType};

/// Most entries one AppEntries frame may announce before the framing is taken as lost
/// (etcd bounds a MsgApp at about 1 MiB of entries, each framed by 8 bytes at least).
const MAX_APP_ENTRIES: u64 = 1 << 20;
/// The same on probation.
const PROBATION_APP_ENTRIES: u64 = 1 << 16;

const LINK_HEARTBEAT: u8 = 0;
const APP_ENTRIES: u8 = 1;
const MSG_APP: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Type,
    Count,
    EntrySize,
    Entry(usize),
    SkipEntry(u64),
    Commit,
    MsgLen,
    Msg(usize),
    SkipMsg(u64),
    Lost,
}

impl State {
    /// Passing over a MsgApp too long to decode, `left` bytes to go.
    fn skipping(left: u64) -> State {
        if left == 0 {
            State::Type
        } else {
            State::SkipMsg(left)
        }
    }
}

/// What the last MsgApp set, and where the frames after it have got to.
#[derive(Debug, Clone, Copy)]
struct Last {
    from: u64,
    to: u64,
    term: u64,
    /// The index of the last entry sent.
    index: u64,
}

/// An AppEntries frame being read.
#[derive(Debug, Default)]
struct Entries {
    n: u64,
    read: u64,
    entries: Vec<Entry>,
    kept_bytes: u64,
    /// Entries were skipped (too large, or undecodable): the message is not whole.
    dropped: u64,
    frame_bytes: u64,
}

#[derive(Debug)]
pub(super) struct MsgAppStream {
    state: State,
    gather: Gather,
    synced: bool,
    last: Option<Last>,
    frame: Entries,
    /// AppEntries frames read while no MsgApp had set their term and index.
    unattributed: u64,
    /// Frames decoded (heartbeats too).
    frames: u64,
}

impl MsgAppStream {
    pub(super) fn new() -> MsgAppStream {
        MsgAppStream {
            state: State::Type,
            gather: Gather::default(),
            synced: true,
            last: None,
            frame: Entries::default(),
            unattributed: 0,
            frames: 0,
        }
    }

    /// At a place found by searching: a bad first frame drops it silently.
    pub(super) fn probation() -> MsgAppStream {
        MsgAppStream {
            synced: false,
            ..MsgAppStream::new()
        }
    }

    pub(super) fn synced(&self) -> bool {
        self.synced
    }

    pub(super) fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    pub(super) fn frames(&self) -> u64 {
        self.frames
    }

    /// The place is lost; so are the term and index that AppEntries frames continue.
    pub(super) fn lose(&mut self) {
        self.state = State::Lost;
        self.synced = false;
        self.last = None;
        self.frame = Entries::default();
        self.gather.clear();
    }

    /// Framing that cannot hold: said when the place was known, silent on probation.
    fn broken(&mut self, at: At, why: String, out: &mut Vec<PeerEvent>) {
        if self.synced {
            out.push(at.note(
                NoteKind::Undecodable,
                format!("{why}: the msgapp framing is lost until a chunk starts a frame"),
            ));
        }
        self.lose();
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
            self.state = State::Type;
        }
        while !input.is_empty() {
            match self.state {
                State::Lost => return,
                State::Type => {
                    let t = input[0];
                    input = &input[1..];
                    match t {
                        LINK_HEARTBEAT => {
                            self.frames += 1;
                            out.push(PeerEvent::LinkHeartbeat {
                                ts_ns: at.ts_ns,
                                dir: at.dir,
                                via: RequestKind::StreamMsgApp,
                            });
                        }
                        APP_ENTRIES => {
                            self.frame = Entries {
                                frame_bytes: 1,
                                ..Entries::default()
                            };
                            self.state = State::Count;
                        }
                        MSG_APP => self.state = State::MsgLen,
                        other => {
                            self.broken(at, format!("msgapp frame type {other:#04x}"), out);
                        }
                    }
                }
                State::Count => {
                    let Some(n) = self.gather.take_u64(&mut input) else {
                        return;
                    };
                    let max = if self.synced {
                        MAX_APP_ENTRIES
                    } else {
                        PROBATION_APP_ENTRIES
                    };
                    if n > max {
                        self.broken(at, format!("an AppEntries frame of {n} entries"), out);
                        continue;
                    }
                    self.frame.n = n;
                    self.frame.frame_bytes += 8;
                    self.state = if n == 0 {
                        State::Commit
                    } else {
                        State::EntrySize
                    };
                }
                State::EntrySize => {
                    let Some(size) = self.gather.take_u64(&mut input) else {
                        return;
                    };
                    let max = if self.synced {
                        ETCD_MAX_MESSAGE
                    } else {
                        PROBATION_MAX
                    };
                    if size > max {
                        self.broken(at, format!("an entry of {size} bytes"), out);
                        continue;
                    }
                    self.frame.frame_bytes += 8 + size;
                    let keep = self.frame.kept_bytes + size <= MAX_MESSAGE_BYTES;
                    self.state = if keep {
                        // Bounded by MAX_MESSAGE_BYTES.
                        State::Entry(size as usize)
                    } else {
                        State::SkipEntry(size)
                    };
                }
                State::Entry(size) => {
                    let Some(decoded) = self
                        .gather
                        .take_with(&mut input, size, |b| Entry::decode(b))
                    else {
                        return;
                    };
                    match decoded {
                        Ok(entry) => {
                            self.frame.kept_bytes += size as u64;
                            self.frame.entries.push(entry);
                        }
                        Err(e) if self.synced => {
                            out.push(at.note(
                                NoteKind::Undecodable,
                                format!("a raftpb.Entry of {size} bytes in AppEntries: {e}"),
                            ));
                            self.frame.dropped += 1;
                        }
                        Err(_) => {
                            self.lose();
                            continue;
                        }
                    }
                    self.next_entry();
                }
                State::SkipEntry(left) => {
                    let left = skip(&mut input, left);
                    if left > 0 {
                        self.state = State::SkipEntry(left);
                    } else {
                        self.frame.dropped += 1;
                        self.next_entry();
                    }
                }
                State::Commit => {
                    let Some(commit) = self.gather.take_u64(&mut input) else {
                        return;
                    };
                    self.frame.frame_bytes += 8;
                    self.state = State::Type;
                    self.app_entries(commit, at, out);
                }
                State::MsgLen => {
                    let Some(len) = self.gather.take_u64(&mut input) else {
                        return;
                    };
                    let max = if self.synced {
                        ETCD_MAX_MESSAGE
                    } else {
                        PROBATION_MAX
                    };
                    if len > max || (!self.synced && len == 0) {
                        self.broken(at, format!("a MsgApp of {len} bytes"), out);
                    } else if len > MAX_MESSAGE_BYTES {
                        out.push(at.note(
                            NoteKind::TooLarge,
                            format!("a MsgApp of {len} bytes: skipped, not decoded"),
                        ));
                        // The next AppEntries continue a MsgApp not read.
                        self.last = None;
                        self.state = State::SkipMsg(len);
                    } else {
                        self.state = State::Msg(len as usize);
                    }
                }
                State::Msg(len) => {
                    let Some(decoded) = self
                        .gather
                        .take_with(&mut input, len, |b| Message::decode(b))
                    else {
                        return;
                    };
                    self.state = State::Type;
                    self.msg_app(decoded, len as u64, at, out);
                }
                State::SkipMsg(left) => self.state = State::skipping(skip(&mut input, left)),
            }
        }
    }

    fn next_entry(&mut self) {
        self.frame.read += 1;
        self.state = if self.frame.read >= self.frame.n {
            State::Commit
        } else {
            State::EntrySize
        };
    }

    /// A whole AppEntries frame.
    fn app_entries(&mut self, commit: u64, at: At, out: &mut Vec<PeerEvent>) {
        self.frames += 1;
        let frame = std::mem::take(&mut self.frame);
        if !self.synced && frame.dropped > 0 {
            self.lose();
            return;
        }
        self.synced = true;
        let Some(last) = self.last.as_mut() else {
            self.unattributed += 1;
            if self.unattributed == 1 {
                let span = match (frame.entries.first(), frame.entries.last()) {
                    (Some(a), Some(b)) => format!(", entries {}..={}", a.index, b.index),
                    _ => String::new(),
                };
                out.push(at.note(
                    NoteKind::Midstream,
                    format!(
                        "an AppEntries frame ({} entries{span}) before any MsgApp on this \
                         msgapp stream: it carries no term nor previous index, so AppEntries \
                         are not reported until a MsgApp sets them",
                        frame.n
                    ),
                ));
            }
            return;
        };
        let message = Message {
            r#type: MessageType::MsgApp as i32,
            to: last.to,
            from: last.from,
            term: last.term,
            log_term: last.term,
            index: last.index,
            entries: frame.entries,
            commit,
            ..Message::default()
        };
        last.index = last.index.saturating_add(frame.n);
        if frame.dropped > 0 {
            out.push(at.note(
                NoteKind::TooLarge,
                format!(
                    "an AppEntries frame of {} entries ({} bytes) with {} entries too large \
                     or undecodable: not reported",
                    frame.n, frame.frame_bytes, frame.dropped
                ),
            ));
            return;
        }
        out.push(message_event(
            at,
            RequestKind::StreamMsgApp,
            Framing::AppEntries,
            frame.frame_bytes,
            message,
        ));
    }

    /// A MsgApp frame's message.
    fn msg_app(
        &mut self,
        decoded: Result<Message, prost::DecodeError>,
        len: u64,
        at: At,
        out: &mut Vec<PeerEvent>,
    ) {
        let m = match decoded {
            Ok(m) if self.synced || (plausible(&m) && m.kind() == Some(MessageType::MsgApp)) => m,
            Ok(_) | Err(_) if !self.synced => {
                self.lose();
                return;
            }
            Ok(m) => m,
            Err(e) => {
                out.push(at.note(
                    NoteKind::Undecodable,
                    format!("a raftpb.Message of {len} bytes on a msgapp stream: {e}"),
                ));
                self.last = None;
                return;
            }
        };
        self.frames += 1;
        self.synced = true;
        if self.unattributed > 1 {
            out.push(at.note(
                NoteKind::Midstream,
                format!(
                    "{} AppEntries frames came before this first MsgApp and were not reported",
                    self.unattributed
                ),
            ));
        }
        self.unattributed = 0;
        self.last = Some(Last {
            from: m.from,
            to: m.to,
            term: m.term,
            index: m.last_index().unwrap_or(m.index),
        });
        out.push(message_event(
            at,
            RequestKind::StreamMsgApp,
            Framing::MsgApp,
            1 + 8 + len,
            m,
        ));
    }

    /// `len` body bytes were not captured.
    pub(super) fn gap(&mut self, len: u64, at: At, out: &mut Vec<PeerEvent>) {
        match self.state {
            State::Lost => {}
            State::SkipMsg(left) if len <= left => self.state = State::skipping(left - len),
            _ => {
                out.push(at.note(
                    NoteKind::Gap,
                    format!(
                        "{len} bytes of a msgapp stream not captured: decoding resumes \
                         where a chunk starts a frame, and AppEntries after a MsgApp"
                    ),
                ));
                self.lose();
            }
        }
    }

    /// The stream was cut in the middle of a frame.
    pub(super) fn in_frame(&self) -> bool {
        !matches!(self.state, State::Type | State::Lost) || self.gather.is_partial()
    }
}
