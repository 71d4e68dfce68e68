//! The HTTP/2 side of scrubbing one connection: walks each direction's frames as bytes
//! arrive, parses only what can hold a secret (header blocks, and DATA of the auth calls'
//! streams), skips every other payload without looking at it, and says which stream
//! offsets to overwrite with what. It also says, per direction, from which offset bytes
//! are not final yet (a frame or message still being collected), so the caller knows
//! which packets it must keep holding.

use foldhash::{HashMap, HashMapExt};

use super::header_block::CleanBlocks;
use super::message::{secret_fields, MessageAssembler, MessageCounts, Overwrite, SecretFields};
use super::ScrubReport;
use crate::decode::hpack::{HpackDecoder, DEFAULT_MAX_TABLE_SIZE};
use crate::decode::http2::frame::FLAG_END_STREAM;
use crate::decode::http2::{
    parse_continuation, parse_data, parse_header, parse_headers, parse_push_promise,
    parse_rst_stream, parse_settings, FrameHeader, FrameType, SettingId, CLIENT_PREFACE,
    FRAME_HEADER_LEN,
};
use crate::decode::tcp::FlowDirection;

/// A frame payload we must collect larger than this is not parsed: the direction is
/// given up (real header blocks are a few hundred bytes).
const MAX_COLLECTED_FRAME: u32 = 256 << 10;
/// Auth calls in flight on one connection; more is not a real client.
const MAX_AUTH_STREAMS: usize = 1024;

/// Bytes to write at a stream offset of a direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// Why a direction cannot be scrubbed any further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unscrubbable {
    /// Not HTTP/2 (peer traffic, TLS ciphertext): nothing this scrubber understands.
    NotHttp2,
    /// HTTP/2 this scrubber could not follow (a malformed or oversized frame).
    Broken,
}

/// Both directions of one HTTP/2 connection seen from its start.
#[derive(Debug)]
pub struct ConnectionScrubber {
    walkers: [FrameWalker; 2],
    tables: ConnectionTables,
}

/// What a direction's frame walker shares with the other direction.
#[derive(Debug)]
struct ConnectionTables {
    /// The HPACK decoder of the header blocks sent in each direction.
    hpack: [HpackDecoder; 2],
    /// Blocks of each direction that scrubbed clean, to skip decoding them again.
    clean_blocks: [CleanBlocks; 2],
    /// Streams of auth calls, by stream id, from their request `:path`.
    auth_streams: HashMap<u32, SecretFields>,
}

fn index(dir: FlowDirection) -> usize {
    match dir {
        FlowDirection::ClientToServer => 0,
        FlowDirection::ServerToClient => 1,
    }
}

impl Default for ConnectionScrubber {
    fn default() -> Self {
        ConnectionScrubber {
            walkers: [
                FrameWalker::new(FlowDirection::ClientToServer),
                FrameWalker::new(FlowDirection::ServerToClient),
            ],
            tables: ConnectionTables {
                hpack: [
                    HpackDecoder::new(DEFAULT_MAX_TABLE_SIZE),
                    HpackDecoder::new(DEFAULT_MAX_TABLE_SIZE),
                ],
                clean_blocks: Default::default(),
                auth_streams: HashMap::new(),
            },
        }
    }
}

impl ConnectionScrubber {
    /// Takes the next bytes of `dir`, which start at stream `offset` (offset 0 is the
    /// first byte after the SYN, or a TLS connection's first plaintext byte); appends
    /// what to overwrite to `patches`.
    pub fn feed(
        &mut self,
        dir: FlowDirection,
        offset: u64,
        bytes: &[u8],
        patches: &mut Vec<Patch>,
        report: &mut ScrubReport,
    ) -> Result<(), Unscrubbable> {
        self.walkers[index(dir)].feed(&mut self.tables, offset, bytes, patches, report)
    }

    /// The first stream offset of `dir` whose bytes may still be overwritten.
    pub fn pinned_from(&self, dir: FlowDirection) -> Option<u64> {
        self.walkers[index(dir)].pinned_from()
    }
}

#[derive(Debug)]
struct FrameWalker {
    dir: FlowDirection,
    state: WalkState,
    /// A header block waiting for its CONTINUATIONs.
    block: Option<PendingBlock>,
    /// Messages of this direction on auth streams.
    messages: HashMap<u32, MessageAssembler>,
    /// Buffers of frames and header blocks already handled, for the next ones: a
    /// request's header block is collected for every call on the connection.
    spare: Spare,
}

/// Emptied buffers kept for reuse, up to a size worth keeping.
#[derive(Debug, Default)]
struct Spare {
    frame: Vec<u8>,
    block: Vec<u8>,
    spans: Vec<(usize, u64)>,
}

/// Larger buffers are dropped rather than kept for the next frame.
const MAX_SPARE: usize = 16 << 10;

/// An empty buffer with room for `len` bytes, `spare`'s when it has one.
fn take_spare<T>(spare: &mut Vec<T>, len: usize) -> Vec<T> {
    let mut buf = std::mem::take(spare);
    buf.clear();
    buf.reserve(len);
    buf
}

fn keep_spare<T>(spare: &mut Vec<T>, buf: Vec<T>) {
    if buf.capacity() <= MAX_SPARE {
        *spare = buf;
    }
}

#[derive(Debug)]
enum WalkState {
    Preface {
        have: usize,
    },
    Header {
        bytes: [u8; FRAME_HEADER_LEN],
        have: usize,
        /// The server's first frame: it must be a SETTINGS frame.
        first: bool,
    },
    Skip {
        left: u64,
    },
    Collect {
        header: FrameHeader,
        /// Stream offset of the payload's first byte.
        start: u64,
        payload: Vec<u8>,
    },
}

#[derive(Debug)]
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    bytes: Vec<u8>,
    /// (position in `bytes`, stream offset) of each fragment.
    spans: Vec<(usize, u64)>,
}

const NEXT_FRAME: WalkState = WalkState::Header {
    bytes: [0; FRAME_HEADER_LEN],
    have: 0,
    first: false,
};

impl FrameWalker {
    fn new(dir: FlowDirection) -> FrameWalker {
        let state = match dir {
            FlowDirection::ClientToServer => WalkState::Preface { have: 0 },
            FlowDirection::ServerToClient => WalkState::Header {
                bytes: [0; FRAME_HEADER_LEN],
                have: 0,
                first: true,
            },
        };
        FrameWalker {
            dir,
            state,
            block: None,
            messages: HashMap::new(),
            spare: Spare::default(),
        }
    }

    fn pinned_from(&self) -> Option<u64> {
        let collecting = match &self.state {
            WalkState::Collect { start, .. } => Some(*start),
            _ => None,
        };
        let block = self
            .block
            .as_ref()
            .and_then(|b| b.spans.first().map(|&(_, offset)| offset));
        let message = self
            .messages
            .values()
            .filter_map(MessageAssembler::pinned_from)
            .min();
        [collecting, block, message].into_iter().flatten().min()
    }

    fn feed(
        &mut self,
        conn: &mut ConnectionTables,
        mut offset: u64,
        mut data: &[u8],
        patches: &mut Vec<Patch>,
        report: &mut ScrubReport,
    ) -> Result<(), Unscrubbable> {
        while !data.is_empty() {
            let take;
            match &mut self.state {
                WalkState::Preface { have } => {
                    take = (CLIENT_PREFACE.len() - *have).min(data.len());
                    if data[..take] != CLIENT_PREFACE[*have..*have + take] {
                        return Err(Unscrubbable::NotHttp2);
                    }
                    *have += take;
                    if *have == CLIENT_PREFACE.len() {
                        self.state = NEXT_FRAME;
                    }
                }
                WalkState::Header { bytes, have, first } => {
                    take = (FRAME_HEADER_LEN - *have).min(data.len());
                    bytes[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    if *have == FRAME_HEADER_LEN {
                        let header = parse_header(bytes).map_err(|_| Unscrubbable::Broken)?;
                        if *first && (header.kind != FrameType::Settings || header.stream_id != 0) {
                            return Err(Unscrubbable::NotHttp2);
                        }
                        self.state = self.after_header(conn, header, offset + take as u64)?;
                        if let WalkState::Collect { header, start, .. } = &self.state {
                            if header.len == 0 {
                                let (header, start) = (*header, *start);
                                self.state = NEXT_FRAME;
                                self.frame(conn, header, start, &[], patches, report)?;
                            }
                        }
                    }
                }
                WalkState::Skip { left } => {
                    take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = NEXT_FRAME;
                    }
                }
                WalkState::Collect {
                    header,
                    start,
                    payload,
                } => {
                    let want = header.len as usize - payload.len();
                    take = want.min(data.len());
                    payload.extend_from_slice(&data[..take]);
                    if take == want {
                        let (header, start) = (*header, *start);
                        let payload = std::mem::take(payload);
                        self.state = NEXT_FRAME;
                        self.frame(conn, header, start, &payload, patches, report)?;
                        keep_spare(&mut self.spare.frame, payload);
                    }
                }
            }
            (offset, data) = (offset + take as u64, &data[take..]);
        }
        Ok(())
    }

    /// What to do with the payload of a frame whose header just ended at `start`.
    fn after_header(
        &mut self,
        conn: &mut ConnectionTables,
        header: FrameHeader,
        start: u64,
    ) -> Result<WalkState, Unscrubbable> {
        if self.block.is_some() && header.kind != FrameType::Continuation {
            // RFC 9113 §6.10: nothing may interleave with a header block.
            return Err(Unscrubbable::Broken);
        }
        let wanted = match header.kind {
            // etcd's response headers carry no secret: only their END_STREAM matters (it
            // ends an auth call), so they get no HPACK work.
            FrameType::Headers | FrameType::Continuation
                if self.dir == FlowDirection::ServerToClient =>
            {
                if header.kind == FrameType::Headers && header.has(FLAG_END_STREAM) {
                    self.end_stream(conn, header.stream_id);
                }
                false
            }
            FrameType::Headers
            | FrameType::Continuation
            | FrameType::PushPromise
            | FrameType::Settings
            | FrameType::RstStream => true,
            FrameType::Data => conn.auth_streams.contains_key(&header.stream_id),
            _ => false,
        };
        if !wanted {
            return Ok(if header.len == 0 {
                NEXT_FRAME
            } else {
                WalkState::Skip {
                    left: u64::from(header.len),
                }
            });
        }
        if header.len > MAX_COLLECTED_FRAME {
            return Err(Unscrubbable::Broken);
        }
        Ok(WalkState::Collect {
            header,
            start,
            payload: take_spare(&mut self.spare.frame, header.len as usize),
        })
    }

    /// A whole collected frame whose payload starts at stream offset `start`.
    fn frame(
        &mut self,
        conn: &mut ConnectionTables,
        header: FrameHeader,
        start: u64,
        payload: &[u8],
        patches: &mut Vec<Patch>,
        report: &mut ScrubReport,
    ) -> Result<(), Unscrubbable> {
        let broken = |_| Unscrubbable::Broken;
        // Fragments borrow from `payload`: their position in it gives their stream offset.
        let at = |part: &[u8]| {
            start + (part.as_ptr() as usize).saturating_sub(payload.as_ptr() as usize) as u64
        };
        match header.kind {
            FrameType::Headers | FrameType::PushPromise => {
                let (stream_id, end_stream, end_headers, fragment) =
                    if header.kind == FrameType::Headers {
                        let f = parse_headers(&header, payload).map_err(broken)?;
                        (f.stream_id, f.end_stream, f.end_headers, f.fragment)
                    } else {
                        let f = parse_push_promise(&header, payload).map_err(broken)?;
                        (f.promised_stream_id, false, f.end_headers, f.fragment)
                    };
                let mut bytes = take_spare(&mut self.spare.block, fragment.len());
                bytes.extend_from_slice(fragment);
                let mut spans = take_spare(&mut self.spare.spans, 1);
                spans.push((0, at(fragment)));
                self.block = Some(PendingBlock {
                    stream_id,
                    end_stream,
                    bytes,
                    spans,
                });
                if end_headers {
                    self.end_block(conn, patches, report)?;
                }
            }
            FrameType::Continuation => {
                let f = parse_continuation(&header, payload).map_err(broken)?;
                let block = self.block.as_mut().ok_or(Unscrubbable::Broken)?;
                if block.stream_id != f.stream_id
                    || block.bytes.len() + f.fragment.len() > MAX_COLLECTED_FRAME as usize
                {
                    return Err(Unscrubbable::Broken);
                }
                block.spans.push((block.bytes.len(), at(f.fragment)));
                block.bytes.extend_from_slice(f.fragment);
                if f.end_headers {
                    self.end_block(conn, patches, report)?;
                }
            }
            FrameType::Data => {
                let f = parse_data(&header, payload).map_err(broken)?;
                if let Some(fields) = conn.auth_streams.get(&f.stream_id) {
                    let fields = match self.dir {
                        FlowDirection::ClientToServer => fields.request,
                        FlowDirection::ServerToClient => fields.response,
                    };
                    let mut counts = MessageCounts::default();
                    let mut overwrites = Vec::new();
                    self.messages
                        .entry(f.stream_id)
                        .or_insert_with(|| MessageAssembler::new(fields))
                        .feed(at(f.data), f.data, &mut overwrites, &mut counts);
                    report.add_message_counts(counts);
                    patches.extend(
                        overwrites
                            .into_iter()
                            .map(|Overwrite { offset, len }| Patch {
                                offset,
                                bytes: vec![b'*'; len],
                            }),
                    );
                }
                if f.end_stream {
                    self.end_stream(conn, f.stream_id);
                }
            }
            FrameType::Settings => {
                let f = parse_settings(&header, payload).map_err(broken)?;
                if let Some(size) = f.get(SettingId::HeaderTableSize) {
                    // The sender's decoder limit binds the other direction's encoder. We
                    // only ever raise our bound: it is a sanity limit, and the encoder's
                    // own size updates still drive the table.
                    let other = &mut conn.hpack[index(self.dir) ^ 1];
                    if size > other.max_table_size() {
                        other.set_max_table_size(size);
                    }
                }
            }
            FrameType::RstStream => {
                let f = parse_rst_stream(&header, payload).map_err(broken)?;
                conn.auth_streams.remove(&f.stream_id);
                self.messages.remove(&f.stream_id);
            }
            _ => {}
        }
        Ok(())
    }

    fn end_block(
        &mut self,
        conn: &mut ConnectionTables,
        patches: &mut Vec<Patch>,
        report: &mut ScrubReport,
    ) -> Result<(), Unscrubbable> {
        let Some(mut block) = self.block.take() else {
            return Ok(());
        };
        let dir = index(self.dir);
        let scrubbed = conn.clean_blocks[dir].scrub(&mut conn.hpack[dir], &mut block.bytes);
        report.header_values_redacted += scrubbed.secret_values;
        report.header_values_suspected += scrubbed.suspected_values;
        report.header_blocks_unparsable += u64::from(scrubbed.unparsable_from.is_some());
        for range in &scrubbed.redacted {
            for (i, &(pos, offset)) in block.spans.iter().enumerate() {
                let end = block
                    .spans
                    .get(i + 1)
                    .map_or(block.bytes.len(), |&(next, _)| next);
                let (lo, hi) = (range.start.max(pos), range.end.min(end));
                if lo < hi {
                    patches.push(Patch {
                        offset: offset + (lo - pos) as u64,
                        bytes: block.bytes[lo..hi].to_vec(),
                    });
                }
            }
        }
        if self.dir == FlowDirection::ClientToServer {
            if let Some(fields) = scrubbed.path.as_deref().and_then(secret_fields) {
                if conn.auth_streams.len() >= MAX_AUTH_STREAMS {
                    return Err(Unscrubbable::Broken);
                }
                conn.auth_streams.insert(block.stream_id, fields);
            }
        }
        if block.end_stream {
            self.end_stream(conn, block.stream_id);
        }
        keep_spare(&mut self.spare.block, block.bytes);
        keep_spare(&mut self.spare.spans, block.spans);
        Ok(())
    }

    /// This direction of a stream ended; the server's end ends the call.
    fn end_stream(&mut self, conn: &mut ConnectionTables, stream_id: u32) {
        self.messages.remove(&stream_id);
        if self.dir == FlowDirection::ServerToClient {
            conn.auth_streams.remove(&stream_id);
        }
        // Message state of streams reset or ended by the other side.
        if self.messages.len() > MAX_AUTH_STREAMS {
            self.messages
                .retain(|id, _| conn.auth_streams.contains_key(id));
        }
    }
}
