//! Block framing: events travel in blocks (a batch of events, encoded then
//! zstd-compressed) behind a fixed frame header that carries the length, the event count,
//! the time range and checksums. The frame is what makes a file without an index
//! readable: a scanner can find, verify and skip blocks one at a time.

use std::collections::VecDeque;
use std::io::Read;

use bincode::de::{BorrowDecode, BorrowDecoder, Decode};
use bincode::error::{AllowedEnumVariants, DecodeError};
use bytes::Bytes;
use thiserror::Error;

use super::event::{
    Event, EventKind, FileKind, FileRef, KindCounts, Loss, Packet, Syscall, SyscallKind,
};
use super::header::CaptureFormat;
use super::packed::{encoded_len_bound, PackedDecoder, PackedEncoder, PackedError};

/// The first bytes of every block frame.
pub const BLOCK_MAGIC: [u8; 4] = *b"ETRB";
/// magic, payload_len, event_count, first_ts, last_ts, payload_crc, header_crc.
pub const FRAME_HEADER_LEN: usize = 4 + 4 + 4 + 8 + 8 + 4 + 4;
/// The header checksum covers every frame header byte before it.
const HEADER_CRC_AT: usize = FRAME_HEADER_LEN - 4;
/// Largest compressed payload a reader accepts.
pub const MAX_PAYLOAD_LEN: u32 = 64 << 20;
/// Largest decompressed payload a reader accepts.
pub const MAX_DECOMPRESSED_LEN: usize = 256 << 20;
/// Bound on what decoding one block may allocate (bincode claims per container).
const BLOCK_DECODE_LIMIT: usize = 256 << 20;
/// The writer keeps a block's encoded events below this, so that even incompressible
/// data stays under [`MAX_PAYLOAD_LEN`] once framed by zstd.
pub const MAX_BLOCK_RAW_LEN: usize = 32 << 20;
/// The writer refuses a single event larger than this (encoded).
pub const MAX_EVENT_LEN: usize = 16 << 20;
/// zstd's fast mode: the recorder runs beside etcd, so its CPU matters more than the last
/// tenth of file size (on etcd traffic, -1 against 3: a quarter less time compressing and
/// encoding, 13% larger blocks).
pub const DEFAULT_ZSTD_LEVEL: i32 = -1;

/// The fixed header in front of every block payload (all integers little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub payload_len: u32,
    pub event_count: u32,
    /// Smallest and largest `Event::ts_ns()` in the block.
    pub first_ts: u64,
    pub last_ts: u64,
    /// crc32c of the payload.
    pub payload_crc: u32,
}

/// A frame header that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("no block magic")]
    BadMagic,
    #[error("frame header checksum mismatch")]
    HeaderChecksum,
    #[error("payload length {0} exceeds the limit of {MAX_PAYLOAD_LEN} bytes")]
    PayloadTooLarge(u32),
}

impl FrameHeader {
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[0..4].copy_from_slice(&BLOCK_MAGIC);
        out[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        out[8..12].copy_from_slice(&self.event_count.to_le_bytes());
        out[12..20].copy_from_slice(&self.first_ts.to_le_bytes());
        out[20..28].copy_from_slice(&self.last_ts.to_le_bytes());
        out[28..32].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(&out[..HEADER_CRC_AT]);
        out[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parse and verify a frame header (magic, header checksum, payload bound).
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, FrameError> {
        let (head, crc) = bytes.split_at(HEADER_CRC_AT);
        if head[0..4] != BLOCK_MAGIC {
            return Err(FrameError::BadMagic);
        }
        if crc32c::crc32c(head) != le_u32(crc, 0) {
            return Err(FrameError::HeaderChecksum);
        }
        let header = FrameHeader {
            payload_len: le_u32(head, 4),
            event_count: le_u32(head, 8),
            first_ts: le_u64(head, 12),
            last_ts: le_u64(head, 20),
            payload_crc: le_u32(head, 28),
        };
        if header.payload_len > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLarge(header.payload_len));
        }
        Ok(header)
    }

    /// Length of the whole frame: header and payload.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.payload_len)
    }
}

/// Reads a little-endian u32 at `at`; the callers pass fixed-size arrays, so a short
/// slice is a bug, answered with 0 rather than a panic.
fn le_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// A block whose frame header verified but whose payload cannot be used.
#[derive(Debug, Error)]
pub enum BlockError {
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    #[error("payload does not decompress: {0}")]
    Decompress(std::io::Error),
    #[error("payload decompresses to more than {MAX_DECOMPRESSED_LEN} bytes")]
    TooLarge,
    #[error("payload does not decode: {0}")]
    Decode(bincode::error::DecodeError),
    #[error("payload does not decode: {0}")]
    Packed(PackedError),
    #[error("{0} unexpected bytes after the block's events")]
    TrailingBytes(usize),
    #[error("frame header says {header} events but the payload holds {decoded}")]
    CountMismatch { header: u32, decoded: usize },
}

/// Verifies, decompresses and decodes block payloads, keeping one zstd context and the
/// decompressed bytes' buffer from block to block.
pub struct PayloadDecoder {
    format: CaptureFormat,
    decompressed: Vec<u8>,
    /// Created at the first block that can use it.
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl PayloadDecoder {
    /// A decoder for the blocks of a file of this format.
    pub fn new(format: CaptureFormat) -> PayloadDecoder {
        PayloadDecoder {
            format,
            decompressed: Vec::new(),
            zstd: None,
        }
    }

    /// Verify, decompress and decode one block payload. Syscalls' path and data are
    /// built or left empty as `contents` says; either way they are checked, so a block
    /// is good or damaged the same. TLS events' data is always built.
    pub fn decode(
        &mut self,
        frame: &FrameHeader,
        payload: &[u8],
        contents: SyscallContents,
    ) -> Result<Vec<Event>, BlockError> {
        let mut events = VecDeque::new();
        self.decode_into(frame, payload, contents, &mut events)?;
        Ok(events.into())
    }

    /// [`decode`](Self::decode) into `events` (cleared first, and left empty on an
    /// error), so that a reader keeps one allocation for every block's events.
    pub fn decode_into(
        &mut self,
        frame: &FrameHeader,
        payload: &[u8],
        contents: SyscallContents,
        events: &mut VecDeque<Event>,
    ) -> Result<(), BlockError> {
        events.clear();
        if crc32c::crc32c(payload) != frame.payload_crc {
            return Err(BlockError::PayloadChecksum);
        }
        if !self.decompress_whole(payload) {
            decompress_streaming(payload, &mut self.decompressed)?;
        }
        let decoded = match self.format {
            CaptureFormat::V1 => decode_bincode(&self.decompressed, contents, events),
            CaptureFormat::V2
            | CaptureFormat::V3
            | CaptureFormat::V4
            | CaptureFormat::V5
            | CaptureFormat::V6 => {
                decode_packed(self.format, frame, &self.decompressed, contents, events)
            }
        };
        let problem = match decoded {
            Err(e) => e,
            Ok(()) if events.len() != frame.event_count as usize => BlockError::CountMismatch {
                header: frame.event_count,
                decoded: events.len(),
            },
            Ok(()) => return Ok(()),
        };
        events.clear();
        Err(problem)
    }

    /// The fast path, for what the writer produces: one zstd frame that declares its
    /// size within the bound, decompressed in one call. False when the payload is not
    /// like that or does not decompress; the streaming path then decides (and words any
    /// error as it always has).
    fn decompress_whole(&mut self, payload: &[u8]) -> bool {
        let declared = match zstd::zstd_safe::get_frame_content_size(payload) {
            Ok(Some(len)) => len,
            _ => return false,
        };
        let Some(len) = usize::try_from(declared)
            .ok()
            .filter(|&len| len <= MAX_DECOMPRESSED_LEN)
        else {
            return false;
        };
        if zstd::zstd_safe::find_frame_compressed_size(payload) != Ok(payload.len()) {
            return false;
        }
        if self.zstd.is_none() {
            self.zstd = zstd::bulk::Decompressor::new().ok();
        }
        let Some(zstd) = self.zstd.as_mut() else {
            return false;
        };
        self.decompressed.clear();
        self.decompressed.reserve(len);
        // zstd checks the frame against its declared size, and writes no further than
        // the buffer's capacity.
        matches!(
            zstd.decompress_to_buffer(payload, &mut self.decompressed),
            Ok(n) if n == len
        )
    }
}

/// Format 1's events: bincode's `Vec<Event>`, exactly the payload's bytes.
fn decode_bincode(
    payload: &[u8],
    contents: SyscallContents,
    events: &mut VecDeque<Event>,
) -> Result<(), BlockError> {
    let config = bincode::config::standard().with_limit::<BLOCK_DECODE_LIMIT>();
    let context = BlockContext { contents, events };
    let decoded: Result<(BlockEvents, usize), _> =
        bincode::borrow_decode_from_slice_with_context(payload, config, context);
    match decoded {
        Err(e) => Err(BlockError::Decode(e)),
        Ok((_, used)) if used != payload.len() => Err(BlockError::TrailingBytes(
            payload.len().saturating_sub(used),
        )),
        Ok(_) => Ok(()),
    }
}

/// Format 2's and 3's events: every event in the payload.
fn decode_packed(
    format: CaptureFormat,
    frame: &FrameHeader,
    payload: &[u8],
    contents: SyscallContents,
    events: &mut VecDeque<Event>,
) -> Result<(), BlockError> {
    let mut decoder =
        PackedDecoder::new(payload, contents == SyscallContents::Built).with_format(format);
    // Every event takes at least two bytes, so a count larger than that is a lie that
    // must not size the queue. The caller compares the count with what was decoded.
    events.reserve((frame.event_count as usize).min(payload.len() / 2));
    while decoder.remaining() > 0 {
        events.push_back(decoder.next_event().map_err(BlockError::Packed)?);
    }
    Ok(())
}

/// Whether decoding builds each syscall's path and data, or leaves them empty (saving
/// their allocations and copies, for analyses that look at syscalls' times at most).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallContents {
    Built,
    Skipped,
}

/// How a block's events are decoded, and where they go: the decode context of
/// [`BlockEvents`].
struct BlockContext<'e> {
    contents: SyscallContents,
    events: &'e mut VecDeque<Event>,
}

/// A block's events, bincode's `Vec<Event>`, decoded into the context's queue with the
/// syscalls' contents built or skipped as the context says.
struct BlockEvents;

impl<'de, 'e> BorrowDecode<'de, BlockContext<'e>> for BlockEvents {
    fn borrow_decode<D: BorrowDecoder<'de, Context = BlockContext<'e>>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        // As bincode decodes a Vec<Event> (its length, a claim on the decode limit for
        // all elements, then each element as its enum), so the same bytes are accepted.
        let len = u64::decode(decoder)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::OutsideUsizeRange(len))?;
        decoder.claim_container_read::<Event>(len)?;
        let contents = decoder.context().contents;
        decoder.context().events.reserve(len);
        for _ in 0..len {
            decoder.unclaim_bytes_read(std::mem::size_of::<Event>());
            let event = match u32::decode(decoder)? {
                0 => Event::Packet(Packet::decode(decoder)?),
                1 if contents == SyscallContents::Skipped => {
                    Event::Syscall(SyscallRef::borrow_decode(decoder)?.without_contents())
                }
                1 => Event::Syscall(Syscall::decode(decoder)?),
                2 => Event::Loss(Loss::decode(decoder)?),
                found => {
                    return Err(DecodeError::UnexpectedVariant {
                        type_name: "Event",
                        allowed: &AllowedEnumVariants::Range { min: 0, max: 2 },
                        found,
                    })
                }
            };
            decoder.context().events.push_back(event);
        }
        Ok(BlockEvents)
    }
}

/// A [`Syscall`] as encoded, its path and data borrowed from the block. Its fields are
/// `Syscall`'s (with `FileRef`'s inline), in order; a test holds the two together.
#[derive(Debug, bincode::BorrowDecode)]
struct SyscallRef<'a> {
    enter_ns: u64,
    exit_ns: u64,
    pid: u32,
    tid: u32,
    call: SyscallKind,
    fd: i32,
    file_kind: FileKind,
    // Decoded to be checked (length, UTF-8) and skipped.
    #[allow(dead_code)]
    file_path: &'a str,
    local_port: u16,
    peer_port: u16,
    offset: Option<u64>,
    requested: u64,
    ret: i64,
    #[allow(dead_code)]
    data: &'a [u8],
}

impl SyscallRef<'_> {
    /// The syscall with an empty path and data.
    fn without_contents(self) -> Syscall {
        Syscall {
            enter_ns: self.enter_ns,
            exit_ns: self.exit_ns,
            pid: self.pid,
            tid: self.tid,
            call: self.call,
            fd: self.fd,
            file: FileRef {
                kind: self.file_kind,
                path: String::new(),
                local_port: self.local_port,
                peer_port: self.peer_port,
            },
            offset: self.offset,
            requested: self.requested,
            ret: self.ret,
            data: Bytes::new(),
        }
    }
}

/// Decompress a payload of any shape (several frames, no declared size) into `out`,
/// stopping past [`MAX_DECOMPRESSED_LEN`].
fn decompress_streaming(payload: &[u8], out: &mut Vec<u8>) -> Result<(), BlockError> {
    out.clear();
    let decoder =
        zstd::stream::read::Decoder::with_buffer(payload).map_err(BlockError::Decompress)?;
    // One byte past the bound tells "exactly at the limit" from "over it".
    let limit = MAX_DECOMPRESSED_LEN as u64 + 1;
    decoder
        .take(limit)
        .read_to_end(out)
        .map_err(BlockError::Decompress)?;
    if out.len() > MAX_DECOMPRESSED_LEN {
        return Err(BlockError::TooLarge);
    }
    Ok(())
}

/// Events per kind, in `EventKind::ALL` order.
pub fn kind_counts(events: &[Event]) -> KindCounts {
    let mut counts = KindCounts::default();
    for event in events {
        if let Some(c) = counts.get_mut(event.kind().slot()) {
            *c += 1;
        }
    }
    counts
}

/// One sealed block, ready to be written: the frame header, then `payload`.
#[derive(Debug)]
pub struct SealedBlock<'a> {
    pub frame: FrameHeader,
    pub payload: &'a [u8],
    pub counts: KindCounts,
}

/// Collects events for the next block (the writer's hot path): each event is encoded
/// into a reused buffer as it arrives; sealing compresses the batch with a reused zstd
/// context.
pub struct BlockBuilder {
    /// The encoded events.
    raw: Vec<u8>,
    encoder: PackedEncoder,
    compressed: Vec<u8>,
    compressor: zstd::bulk::Compressor<'static>,
    count: u32,
    first_ts: u64,
    last_ts: u64,
    counts: KindCounts,
}

impl BlockBuilder {
    pub fn new(zstd_level: i32) -> std::io::Result<BlockBuilder> {
        Ok(BlockBuilder {
            raw: Vec::with_capacity(64 << 10),
            encoder: PackedEncoder::default(),
            compressed: Vec::new(),
            compressor: zstd::bulk::Compressor::new(zstd_level)?,
            count: 0,
            first_ts: u64::MAX,
            last_ts: 0,
            counts: KindCounts::default(),
        })
    }

    /// A builder of format 2's blocks (tests make format-2 files with it): only its
    /// kinds may be given to it.
    #[cfg(test)]
    pub(crate) fn format_2(zstd_level: i32) -> std::io::Result<BlockBuilder> {
        Ok(BlockBuilder {
            encoder: PackedEncoder::format_2(),
            ..BlockBuilder::new(zstd_level)?
        })
    }

    /// Events waiting in this block.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded (uncompressed) bytes of the events waiting.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// Add one event. An event too large to ever be read back is refused with
    /// `InvalidInput` and leaves the block unchanged.
    pub fn push(&mut self, event: &Event) -> std::io::Result<()> {
        // Refused before encoding: the encoder's tables must hold only what the block
        // does.
        let len = encoded_len_bound(event);
        if len > MAX_EVENT_LEN || self.count == u32::MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "event of up to {len} encoded bytes exceeds the capture limit of \
                     {MAX_EVENT_LEN}"
                ),
            ));
        }
        self.encoder.encode(event, &mut self.raw);
        let ts = event.ts_ns();
        self.first_ts = self.first_ts.min(ts);
        self.last_ts = self.last_ts.max(ts);
        self.counts[event.kind().slot()] += 1;
        self.count += 1;
        Ok(())
    }

    /// Compress the waiting events into a block and start a new one. `None` when empty.
    pub fn seal(&mut self) -> std::io::Result<Option<SealedBlock<'_>>> {
        if self.count == 0 {
            return Ok(None);
        }
        let source = &self.raw;
        self.compressed.clear();
        self.compressed
            .reserve(zstd::zstd_safe::compress_bound(source.len()));
        self.compressor
            .compress_to_buffer(source, &mut self.compressed)?;
        let payload_len = u32::try_from(self.compressed.len())
            .ok()
            .filter(|&len| len <= MAX_PAYLOAD_LEN)
            .ok_or_else(|| std::io::Error::other("compressed block exceeds the payload limit"))?;
        let frame = FrameHeader {
            payload_len,
            event_count: self.count,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            payload_crc: crc32c::crc32c(&self.compressed),
        };
        let counts = self.counts;
        self.raw.clear();
        self.encoder.reset();
        self.count = 0;
        self.first_ts = u64::MAX;
        self.last_ts = 0;
        self.counts = KindCounts::default();
        Ok(Some(SealedBlock {
            frame,
            payload: &self.compressed,
            counts,
        }))
    }
}

/// `EventKind` for a count slot, the inverse of `EventKind::slot`.
pub fn kind_of_slot(slot: usize) -> Option<EventKind> {
    EventKind::ALL.get(slot).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::{Loss, LossSource};

    fn loss(ts: u64) -> Event {
        Event::Loss(Loss {
            ts_ns: ts,
            source: LossSource::Kernel,
            count: ts,
        })
    }

    #[test]
    fn frame_header_round_trip_and_checks() {
        let frame = FrameHeader {
            payload_len: 10,
            event_count: 3,
            first_ts: 5,
            last_ts: 9,
            payload_crc: 77,
        };
        let bytes = frame.to_bytes();
        assert_eq!(FrameHeader::parse(&bytes), Ok(frame));
        for i in 0..FRAME_HEADER_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x40;
            assert!(FrameHeader::parse(&bad).is_err(), "flip at {i} not caught");
        }
        let big = FrameHeader {
            payload_len: MAX_PAYLOAD_LEN + 1,
            ..frame
        };
        assert_eq!(
            FrameHeader::parse(&big.to_bytes()),
            Err(FrameError::PayloadTooLarge(MAX_PAYLOAD_LEN + 1))
        );
    }

    #[test]
    fn builder_seals_a_decodable_block() {
        let mut builder = BlockBuilder::new(DEFAULT_ZSTD_LEVEL).unwrap();
        assert!(builder.seal().unwrap().is_none());
        // Enough events for a multi-byte length varint.
        let events: Vec<Event> = (0..300).map(|i| loss(1000 - i)).collect();
        for e in &events {
            builder.push(e).unwrap();
        }
        let sealed = builder.seal().unwrap().unwrap();
        assert_eq!(sealed.frame.event_count, 300);
        assert_eq!(sealed.frame.first_ts, 701);
        assert_eq!(sealed.frame.last_ts, 1000);
        assert_eq!(sealed.counts, [0, 0, 300, 0, 0, 0]);
        let frame = sealed.frame;
        let payload = sealed.payload.to_vec();
        assert_eq!(
            PayloadDecoder::new(CaptureFormat::V3)
                .decode(&frame, &payload, SyscallContents::Built)
                .unwrap(),
            events
        );
        // The builder starts over.
        assert!(builder.is_empty());
        assert_eq!(builder.raw_len(), 0);
        builder.push(&loss(1)).unwrap();
        let again = builder.seal().unwrap().unwrap();
        assert_eq!(again.frame.event_count, 1);
        assert_eq!(again.frame.first_ts, 1);
    }

    #[test]
    fn payload_damage_is_an_error_not_a_panic() {
        let mut builder = BlockBuilder::new(DEFAULT_ZSTD_LEVEL).unwrap();
        for i in 0..50 {
            builder.push(&loss(i)).unwrap();
        }
        let sealed = builder.seal().unwrap().unwrap();
        let frame = sealed.frame;
        let payload = sealed.payload.to_vec();
        let mut decoder = PayloadDecoder::new(CaptureFormat::V3);
        let mut bad = payload.clone();
        bad[payload.len() / 2] ^= 1;
        assert!(matches!(
            decoder.decode(&frame, &bad, SyscallContents::Built),
            Err(BlockError::PayloadChecksum)
        ));
        // Wrong count in a header whose checksum is otherwise fine.
        let lying = FrameHeader {
            event_count: 49,
            ..frame
        };
        assert!(matches!(
            decoder.decode(&lying, &payload, SyscallContents::Built),
            Err(BlockError::CountMismatch { .. })
        ));
        // Garbage that carries a valid checksum.
        let garbage = vec![0xAB; 100];
        let g = FrameHeader {
            payload_crc: crc32c::crc32c(&garbage),
            ..frame
        };
        assert!(decoder
            .decode(&g, &garbage, SyscallContents::Built)
            .is_err());
        // Valid zstd of garbage bincode.
        let junk = zstd::bulk::compress(&[0xFF; 64], 3).unwrap();
        let j = FrameHeader {
            payload_crc: crc32c::crc32c(&junk),
            ..frame
        };
        assert!(decoder.decode(&j, &junk, SyscallContents::Built).is_err());
    }

    /// A client packet at `ts` carrying `abcd`.
    fn packet(ts: u64) -> Event {
        Event::Packet(Packet {
            ts_ns: ts,
            ifindex: 1,
            direction: crate::capture::event::Direction::Ingress,
            src: "127.0.0.1:40000".parse().unwrap(),
            dst: "127.0.0.1:2379".parse().unwrap(),
            seq: 1,
            ack: 2,
            flags: crate::capture::event::TcpFlags(0x18),
            window: 100,
            payload_len: 4,
            payload: Bytes::from_static(b"abcd"),
        })
    }

    fn syscall(ts: u64) -> Syscall {
        Syscall {
            enter_ns: ts,
            exit_ns: ts + 7,
            pid: 11,
            tid: 12,
            call: SyscallKind::Pwrite64,
            fd: -3,
            file: FileRef {
                kind: FileKind::Wal,
                path: "member/wal/0-0.wal".into(),
                local_port: 2379,
                peer_port: 40000,
            },
            offset: Some(4096),
            requested: 100,
            ret: -5,
            data: Bytes::from_static(&[1, 2, 3]),
        }
    }

    /// SyscallRef reads exactly what a Syscall encodes, field by field.
    #[test]
    fn syscall_ref_mirrors_syscall() {
        let s = syscall(5);
        let bytes = bincode::encode_to_vec(&s, bincode::config::standard()).unwrap();
        let (r, used): (SyscallRef, usize) =
            bincode::borrow_decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(r.file_path, s.file.path);
        assert_eq!(r.data, s.data);
        let mut hollow = s.clone();
        hollow.file.path.clear();
        hollow.data.clear();
        assert_eq!(r.without_contents(), hollow);
    }

    /// Skipping syscalls' contents changes nothing else, and accepts the same blocks.
    #[test]
    fn syscall_contents_can_be_skipped() {
        let packet = packet(3);
        let events = vec![packet, Event::Syscall(syscall(4)), loss(5)];
        let mut builder = BlockBuilder::new(DEFAULT_ZSTD_LEVEL).unwrap();
        for e in &events {
            builder.push(e).unwrap();
        }
        let sealed = builder.seal().unwrap().unwrap();
        let (frame, payload) = (sealed.frame, sealed.payload.to_vec());
        let mut decoder = PayloadDecoder::new(CaptureFormat::V3);
        let built = decoder
            .decode(&frame, &payload, SyscallContents::Built)
            .unwrap();
        assert_eq!(built, events);
        let skipped = decoder
            .decode(&frame, &payload, SyscallContents::Skipped)
            .unwrap();
        let mut hollow = events.clone();
        if let Event::Syscall(s) = &mut hollow[1] {
            s.file.path.clear();
            s.data.clear();
        }
        assert_eq!(skipped, hollow);
        // A cut (but checksummed) block is damage either way.
        let raw = zstd::bulk::decompress(&payload, 1 << 20).unwrap();
        let cut = zstd::bulk::compress(&raw[..raw.len() - 2], 3).unwrap();
        let cut_frame = FrameHeader {
            payload_len: cut.len() as u32,
            payload_crc: crc32c::crc32c(&cut),
            ..frame
        };
        for contents in [SyscallContents::Built, SyscallContents::Skipped] {
            assert!(decoder.decode(&cut_frame, &cut, contents).is_err());
        }
    }

    /// A packet whose payload claims far more bytes than the block holds is an error
    /// within the decode limit, not an allocation of what it claims (capture files come
    /// from strangers), in either format.
    #[test]
    fn a_huge_payload_claim_is_refused() {
        let packet = packet(3);
        let bincode_raw = bincode::encode_to_vec(vec![&packet], bincode::config::standard());
        let mut packed_raw = Vec::new();
        PackedEncoder::default().encode(&packet, &mut packed_raw);
        for (format, mut raw) in [
            (CaptureFormat::V1, bincode_raw.unwrap()),
            (CaptureFormat::V3, packed_raw),
        ] {
            // The payload is last: its length 4 and its bytes. Claim 2^40 bytes instead.
            let at = raw.len() - 5;
            assert_eq!(&raw[at..], b"\x04abcd");
            raw.truncate(at);
            raw.push(253);
            raw.extend_from_slice(&(1u64 << 40).to_le_bytes());
            let payload = zstd::bulk::compress(&raw, 3).unwrap();
            let frame = FrameHeader {
                payload_len: payload.len() as u32,
                event_count: 1,
                first_ts: 3,
                last_ts: 3,
                payload_crc: crc32c::crc32c(&payload),
            };
            let decoded =
                PayloadDecoder::new(format).decode(&frame, &payload, SyscallContents::Built);
            assert!(
                matches!(
                    decoded,
                    Err(BlockError::Decode(DecodeError::LimitExceeded))
                        | Err(BlockError::Packed(PackedError::Truncated(0)))
                ),
                "{format:?}: {decoded:?}"
            );
        }
    }

    /// Payloads the writer does not make (no declared size, several frames) take the
    /// streaming path and decode the same; a decoder reused after damage still works.
    #[test]
    fn payloads_of_any_zstd_shape_decode() {
        let events: Vec<Event> = (0..40).map(loss).collect();
        let mut raw = Vec::new();
        let mut encoder = PackedEncoder::default();
        for e in &events {
            encoder.encode(e, &mut raw);
        }
        let frame_for = |payload: &[u8]| FrameHeader {
            payload_len: payload.len() as u32,
            event_count: 40,
            first_ts: 0,
            last_ts: 39,
            payload_crc: crc32c::crc32c(payload),
        };
        let mut unsized_frame = Vec::new();
        let mut encoder = zstd::stream::write::Encoder::new(&mut unsized_frame, 3).unwrap();
        std::io::Write::write_all(&mut encoder, &raw).unwrap();
        encoder.finish().unwrap();
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&unsized_frame),
            Ok(None)
        ));
        let (head, tail) = raw.split_at(raw.len() / 2);
        let mut two_frames = zstd::bulk::compress(head, 3).unwrap();
        two_frames.extend(zstd::bulk::compress(tail, 3).unwrap());
        let whole = zstd::bulk::compress(&raw, 3).unwrap();

        let mut decoder = PayloadDecoder::new(CaptureFormat::V3);
        for payload in [&unsized_frame, &two_frames, &whole] {
            assert_eq!(
                decoder
                    .decode(&frame_for(payload), payload, SyscallContents::Built)
                    .unwrap(),
                events
            );
        }
        let mut cut = whole.clone();
        cut.truncate(whole.len() - 3);
        assert!(decoder
            .decode(&frame_for(&cut), &cut, SyscallContents::Built)
            .is_err());
        assert_eq!(
            decoder
                .decode(&frame_for(&whole), &whole, SyscallContents::Built)
                .unwrap(),
            events
        );
    }

    #[test]
    fn slots_match_kinds() {
        for (i, kind) in EventKind::ALL.iter().enumerate() {
            assert_eq!(kind.slot(), i);
            assert_eq!(kind_of_slot(i), Some(*kind));
        }
        assert_eq!(kind_of_slot(EventKind::COUNT), None);
        assert_eq!(kind_counts(&[loss(1), loss(2)]), [0, 0, 2, 0, 0, 0]);
    }
}
