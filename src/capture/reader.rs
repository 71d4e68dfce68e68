//! Reading a capture file, trusting nothing in it: the preamble is checked, the index is
//! used only when it verifies, and a file without one (the recorder was killed) is
//! recovered by scanning block frames. Damaged blocks are skipped and reported with the
//! number of events lost; reading streams one block at a time. A capture held in memory
//! (bytes from anywhere) is read the same way.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;

use super::block::{kind_counts, FrameHeader, PayloadDecoder, SyscallContents, FRAME_HEADER_LEN};
use super::error::CaptureError;
use super::event::Event;
use super::header::{
    decode_header, CaptureFormat, Header, InterfaceInfo, RecordConfig, FILE_MAGIC, FORMAT_VERSION,
    MAX_HEADER_LEN, PREAMBLE_FIXED_LEN,
};
use super::index::{
    BlockInfo, Index, INDEX_MAGIC, INDEX_SECTION_OVERHEAD, MAX_INDEX_LEN, TRAILER_LEN,
};
use super::pcap::{self, PacketFile};

/// How the block directory was obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IndexState {
    /// The file's own index verified and is used.
    Present,
    /// No usable index (`reason` says why); the blocks were found by scanning.
    Recovered { reason: String },
}

/// A part of the file whose events cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// File offset where the damaged region (a block, or unrecognisable bytes) starts.
    pub offset: u64,
    pub reason: String,
    /// Events lost, when a verified frame header or the index says how many.
    pub events_lost: Option<u64>,
    /// Time range of the lost events, when known the same way.
    pub ts_range: Option<(u64, u64)>,
}

/// How every command warns about it: "unreadable region at offset O: reason (N events
/// lost)".
impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unreadable region at offset {}: {}",
            self.offset, self.reason
        )?;
        if let Some(n) = self.events_lost {
            write!(f, " ({n} events lost)")?;
        }
        Ok(())
    }
}

/// One item of a capture's event stream: an event, or a warning that a stretch of the
/// file could not be read. Damage does not end the stream; events after it follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadItem {
    Event(Event),
    Damaged(Damage),
}

/// An open capture file.
pub struct CaptureReader {
    path: PathBuf,
    source: Source,
    file_len: u64,
    format: CaptureFormat,
    header: Header,
    index: Index,
    index_state: IndexState,
    damage: Vec<Damage>,
    /// Set when the file is a pcap or pcapng file rather than one of ours.
    packets: Option<PacketFile>,
    /// The files after this one when it opens a rotated set (`super::set`), each read
    /// as a file of its own, in time order.
    later: Vec<CaptureReader>,
    /// The whole set's blocks, damage and index state, when `later` is not empty.
    set: Option<SetView>,
}

/// What a rotated set shows as one capture.
struct SetView {
    index: Index,
    index_state: IndexState,
    damage: Vec<Damage>,
}

impl CaptureReader {
    pub fn open(path: impl AsRef<Path>) -> Result<CaptureReader, CaptureError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| CaptureError::Io {
            path: path.clone(),
            source,
        })?;
        CaptureReader::from_source(path, Source::File(file))
    }

    /// A capture's bytes held in memory, read exactly as a file of those bytes would be;
    /// `name` stands for the path in errors and [`path`](Self::path).
    pub fn from_bytes(
        name: impl Into<PathBuf>,
        bytes: impl Into<Bytes>,
    ) -> Result<CaptureReader, CaptureError> {
        CaptureReader::from_source(name.into(), Source::Bytes(bytes.into()))
    }

    fn from_source(path: PathBuf, source: Source) -> Result<CaptureReader, CaptureError> {
        let io_err = |source: io::Error| CaptureError::Io {
            path: path.clone(),
            source,
        };
        let file_len = source.len().map_err(io_err)?;
        let mut magic = [0u8; 4];
        if file_len >= 4 {
            read_at(&source, &mut magic, 0).map_err(io_err)?;
        }
        if let Some(kind) = pcap::sniff(magic) {
            return CaptureReader::from_packet_file(path, source, file_len, kind);
        }
        let (format, header, data_start) = read_preamble(&source, file_len, &path)?;

        let (index, index_state, damage) = match read_index(&source, file_len, data_start, format) {
            Ok(index) => (index, IndexState::Present, Vec::new()),
            Err(IndexProblem::Io(e)) => return Err(io_err(e)),
            Err(IndexProblem::Unusable {
                reason,
                index_offset,
            }) => {
                let (blocks, damage) =
                    scan_blocks(&source, file_len, data_start, index_offset, format)
                        .map_err(io_err)?;
                let index = Index {
                    blocks,
                    ..Index::default()
                };
                (index, IndexState::Recovered { reason }, damage)
            }
        };
        Ok(CaptureReader {
            path,
            source,
            file_len,
            format,
            header,
            index,
            index_state,
            damage,
            packets: None,
            later: Vec::new(),
            set: None,
        })
    }

    /// A pcap or pcapng file: one pass finds its blocks of packets and the server ports,
    /// and a header is made up (no processes, no data dir; wall-clock times from the
    /// packets, the first at monotonic 0).
    fn from_packet_file(
        path: PathBuf,
        source: Source,
        file_len: u64,
        kind: &'static str,
    ) -> Result<CaptureReader, CaptureError> {
        let read = |buf: &mut [u8], at: u64| read_at(&source, buf, at);
        let (packets, blocks, cut) =
            pcap::scan(&read, file_len, kind).map_err(|e| CaptureError::CorruptHeader {
                path: path.clone(),
                reason: format!("{kind} file: {e}"),
            })?;
        let damage = cut
            .map(|(offset, reason)| Damage {
                offset,
                reason,
                events_lost: None,
                ts_range: None,
            })
            .into_iter()
            .collect();
        let header = Header {
            recorder_version: format!("{kind} file"),
            clock_offset_ns: i64::try_from(packets.base_wall_ns).unwrap_or(i64::MAX),
            started_wall_ns: packets.base_wall_ns,
            config: RecordConfig {
                ports: packets.server_ports.clone(),
                interfaces: packets.interfaces.iter().map(|(_, n)| n.clone()).collect(),
                snaplen: packets.snaplen,
                ..RecordConfig::default()
            },
            interfaces: packets
                .interfaces
                .iter()
                .map(|(ifindex, name)| InterfaceInfo {
                    ifindex: *ifindex,
                    name: name.clone(),
                })
                .collect(),
            ..Header::default()
        };
        Ok(CaptureReader {
            path,
            source,
            file_len,
            format: CaptureFormat::of_version(FORMAT_VERSION).unwrap_or(CaptureFormat::V5),
            header,
            index: Index {
                blocks,
                ..Index::default()
            },
            index_state: IndexState::Present,
            damage,
            packets: Some(packets),
            later: Vec::new(),
            set: None,
        })
    }

    /// The pcap or pcapng file this reader reads, if it is one.
    pub fn packet_file(&self) -> Option<&PacketFile> {
        self.packets.as_ref()
    }

    /// Take these ports as the etcd server side of a pcap or pcapng file instead of
    /// those found in it (no effect on our own captures, which name theirs).
    pub fn set_server_ports(&mut self, ports: &[u16]) {
        if let Some(p) = &mut self.packets {
            p.server_ports = ports.to_vec();
            self.header.config.ports = ports.to_vec();
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn format_version(&self) -> u32 {
        self.format.version()
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    pub fn index_state(&self) -> &IndexState {
        self.set
            .as_ref()
            .map_or(&self.index_state, |s| &s.index_state)
    }

    /// The readable blocks, in file order (from the index, or found by the scan); of
    /// every file of a set, in time order.
    pub fn blocks(&self) -> &[BlockInfo] {
        &self.index().blocks
    }

    pub fn index(&self) -> &Index {
        self.set.as_ref().map_or(&self.index, |s| &s.index)
    }

    /// Damage found while opening (only when the blocks were recovered by scanning).
    /// Damage found later, while reading blocks the index lists, comes through
    /// [`ReadItem::Damaged`].
    pub fn damage(&self) -> &[Damage] {
        self.set.as_ref().map_or(&self.damage, |s| &s.damage)
    }

    /// The files read, in time order: this one, then those of the rest of its set.
    pub fn files(&self) -> impl Iterator<Item = &CaptureReader> {
        std::iter::once(self).chain(&self.later)
    }

    /// This file's own blocks (one file of a set).
    pub fn file_blocks(&self) -> &[BlockInfo] {
        &self.index.blocks
    }

    /// This file's own index state (one file of a set).
    pub fn file_index_state(&self) -> &IndexState {
        &self.index_state
    }

    /// Read `later` after this file, as one capture: the caller (`super::set`) has
    /// checked that they are one recording in time order.
    pub(super) fn chain(&mut self, later: Vec<CaptureReader>) {
        if later.is_empty() {
            return;
        }
        let mut index = self.index.clone();
        let mut damage = self.damage.clone();
        let mut index_state = self.index_state.clone();
        for part in &later {
            index.blocks.extend(part.index.blocks.iter().cloned());
            // A file whose secrets were kept makes the set's so.
            index.redaction = match (index.redaction.take(), &part.index.redaction) {
                (Some(a), Some(b)) => Some(a.plus(b)),
                _ => None,
            };
            damage.extend(part.damage.iter().cloned());
            if let (IndexState::Present, IndexState::Recovered { reason }) =
                (&index_state, &part.index_state)
            {
                index_state = IndexState::Recovered {
                    reason: format!("{}: {reason}", part.path.display()),
                };
            }
            for p in &part.header.processes {
                if !self.header.processes.iter().any(|q| q.pid == p.pid) {
                    self.header.processes.push(p.clone());
                }
            }
        }
        self.later = later;
        self.set = Some(SetView {
            index,
            index_state,
            damage,
        });
    }

    /// Every event, in file order, one block in memory at a time. The stream also
    /// carries a [`ReadItem::Damaged`] for each damaged region, in file order: those in
    /// [`CaptureReader::damage`] and any found while reading.
    pub fn events(&self) -> Events<'_> {
        self.events_between(None, None)
    }

    /// Events with `since <= ts < until` (either bound open), skipping blocks outside
    /// the range by their index entry. Damage is reported when its time range is
    /// unknown or overlaps.
    pub fn events_between(&self, since_ns: Option<u64>, until_ns: Option<u64>) -> Events<'_> {
        Events {
            reader: self,
            part: 0,
            since: since_ns,
            until: until_ns,
            next_block: 0,
            next_damage: 0,
            current: VecDeque::new(),
            payload: Vec::new(),
            decoder: PayloadDecoder::new(self.format),
            syscall_contents: SyscallContents::Built,
        }
    }

    /// Read and decode the block at `info`, cross-checking its frame header against the
    /// entry.
    fn read_block(
        &self,
        block_no: usize,
        info: &BlockInfo,
        payload: &mut Vec<u8>,
        decoder: &mut PayloadDecoder,
        syscall_contents: SyscallContents,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Damage> {
        let damage = |reason: String| Damage {
            offset: info.offset,
            reason,
            events_lost: Some(u64::from(info.event_count)),
            ts_range: Some((info.first_ts, info.last_ts)),
        };
        if let Some(packets) = &self.packets {
            let read = |buf: &mut [u8], at: u64| read_at(&self.source, buf, at);
            return packets
                .read_block(&read, block_no, info, events)
                .map_err(|e| damage(format!("packets could not be read: {e}")));
        }
        let mut head = [0u8; FRAME_HEADER_LEN];
        read_at(&self.source, &mut head, info.offset)
            .map_err(|e| damage(format!("block could not be read: {e}")))?;
        let frame = FrameHeader::parse(&head)
            .map_err(|e| damage(format!("block frame header is invalid: {e}")))?;
        if frame.frame_len() != info.len || frame.event_count != info.event_count {
            return Err(damage(
                "block frame header does not match the index entry".to_string(),
            ));
        }
        let payload_at = info.offset.saturating_add(FRAME_HEADER_LEN as u64);
        payload.clear();
        payload.resize(frame.payload_len as usize, 0);
        read_at(&self.source, payload, payload_at)
            .map_err(|e| damage(format!("block payload could not be read: {e}")))?;
        decoder
            .decode_into(&frame, payload, syscall_contents, events)
            .map_err(|e| damage(format!("block {e}")))
    }
}

impl std::fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("path", &self.path)
            .field("file_len", &self.file_len)
            .field("format", &self.format)
            .field("index_state", &self.index_state)
            .field("blocks", &self.index.blocks.len())
            .field("damage", &self.damage.len())
            .finish()
    }
}

/// The event stream of [`CaptureReader::events`]: holds one decoded block at a time.
pub struct Events<'r> {
    reader: &'r CaptureReader,
    /// The file of a set being read (0: the first).
    part: usize,
    since: Option<u64>,
    until: Option<u64>,
    next_block: usize,
    next_damage: usize,
    /// The rest of the current block's events (the queue is reused for every block).
    current: VecDeque<Event>,
    payload: Vec<u8>,
    decoder: PayloadDecoder,
    syscall_contents: SyscallContents,
}

impl Events<'_> {
    /// Syscalls come with an empty path and data (their times and other fields
    /// intact): cheaper, for analyses that do not look into syscalls.
    pub fn without_syscall_contents(self) -> Self {
        Events {
            syscall_contents: SyscallContents::Skipped,
            ..self
        }
    }

    fn in_range(&self, ts: u64) -> bool {
        self.since.is_none_or(|s| ts >= s) && self.until.is_none_or(|u| ts < u)
    }

    fn damage_in_range(&self, damage: &Damage) -> bool {
        match damage.ts_range {
            None => true,
            Some((first, last)) => {
                self.since.is_none_or(|s| last >= s) && self.until.is_none_or(|u| first < u)
            }
        }
    }
}

impl Iterator for Events<'_> {
    type Item = ReadItem;

    fn next(&mut self) -> Option<ReadItem> {
        loop {
            while let Some(event) = self.current.pop_front() {
                if self.in_range(event.ts_ns()) {
                    return Some(ReadItem::Event(event));
                }
            }
            let reader = self.reader.files().nth(self.part)?;
            let block = reader.index.blocks.get(self.next_block);
            let damage = reader.damage.get(self.next_damage);
            // Blocks and known damage never overlap; take whichever comes first.
            let take_damage = match (block, damage) {
                (None, None) => {
                    // The next file of a set: its blocks decode on their own.
                    self.part += 1;
                    self.next_block = 0;
                    self.next_damage = 0;
                    self.decoder = PayloadDecoder::new(reader.format);
                    continue;
                }
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(b), Some(d)) => d.offset < b.offset,
            };
            if take_damage {
                self.next_damage += 1;
                if let Some(d) = damage {
                    if self.damage_in_range(d) {
                        return Some(ReadItem::Damaged(d.clone()));
                    }
                }
                continue;
            }
            let block_no = self.next_block;
            self.next_block += 1;
            let Some(info) = block else { continue };
            if !info.overlaps(self.since, self.until) {
                continue;
            }
            if let Err(d) = reader.read_block(
                block_no,
                info,
                &mut self.payload,
                &mut self.decoder,
                self.syscall_contents,
                &mut self.current,
            ) {
                return Some(ReadItem::Damaged(d));
            }
        }
    }
}

/// Check magic and version, read and verify the header. Returns the format version,
/// the header and the offset of the first block.
pub(super) fn read_preamble(
    file: &Source,
    file_len: u64,
    path: &Path,
) -> Result<(CaptureFormat, Header, u64), CaptureError> {
    let corrupt = |reason: &str| CaptureError::CorruptHeader {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let io_err = |source: io::Error| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    };
    if file_len < FILE_MAGIC.len() as u64 {
        return Err(CaptureError::NotACapture {
            path: path.to_path_buf(),
        });
    }
    let mut magic = [0u8; FILE_MAGIC.len()];
    read_at(file, &mut magic, 0).map_err(io_err)?;
    if magic != FILE_MAGIC {
        return Err(CaptureError::NotACapture {
            path: path.to_path_buf(),
        });
    }
    if file_len < PREAMBLE_FIXED_LEN as u64 {
        return Err(corrupt("the file ends inside the preamble"));
    }
    let mut fixed = [0u8; PREAMBLE_FIXED_LEN];
    read_at(file, &mut fixed, 0).map_err(io_err)?;
    let word = |at: usize| {
        fixed
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0)
    };
    let version = word(FILE_MAGIC.len());
    let Some(format) = CaptureFormat::of_version(version) else {
        return Err(CaptureError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    };
    let header_len = word(FILE_MAGIC.len() + 4);
    if header_len > MAX_HEADER_LEN {
        return Err(corrupt(&format!(
            "header length {header_len} exceeds the limit of {MAX_HEADER_LEN} bytes"
        )));
    }
    let data_start = PREAMBLE_FIXED_LEN as u64 + u64::from(header_len) + 4;
    if data_start > file_len {
        return Err(corrupt("the file ends inside the header"));
    }
    let mut rest = vec![0u8; header_len as usize + 4];
    read_at(file, &mut rest, PREAMBLE_FIXED_LEN as u64).map_err(io_err)?;
    let (body, crc_bytes) = rest.split_at(header_len as usize);
    let stored = crc_bytes
        .try_into()
        .map(u32::from_le_bytes)
        .map_err(|_| corrupt("header checksum missing"))?;
    let computed = crc32c::crc32c_append(crc32c::crc32c(&fixed), body);
    if computed != stored {
        return Err(corrupt("header checksum mismatch"));
    }
    let header = decode_header(body, format).map_err(|reason| corrupt(&reason))?;
    Ok((format, header, data_start))
}

enum IndexProblem {
    /// `index_offset` is where an intact trailer says the index starts, if it does.
    Unusable {
        reason: String,
        index_offset: Option<u64>,
    },
    Io(io::Error),
}

impl From<io::Error> for IndexProblem {
    fn from(e: io::Error) -> Self {
        IndexProblem::Io(e)
    }
}

/// Read the index through the trailer and verify it against the file.
fn read_index(
    file: &Source,
    file_len: u64,
    data_start: u64,
    format: CaptureFormat,
) -> Result<Index, IndexProblem> {
    let unusable = |reason: &str| IndexProblem::Unusable {
        reason: reason.to_string(),
        index_offset: None,
    };
    let min_tail = (INDEX_SECTION_OVERHEAD + TRAILER_LEN) as u64;
    if file_len < data_start.saturating_add(min_tail) {
        return Err(unusable("the file has no index (too short for one)"));
    }
    let trailer_at = file_len - TRAILER_LEN as u64;
    let mut trailer = [0u8; TRAILER_LEN];
    read_at(file, &mut trailer, trailer_at)?;
    let index_offset = Index::parse_trailer(&trailer)
        .ok_or_else(|| unusable("the file has no index trailer (recording did not finish)"))?;
    if index_offset < data_start
        || index_offset > trailer_at.saturating_sub(INDEX_SECTION_OVERHEAD as u64)
    {
        return Err(unusable("the index trailer points outside the file"));
    }
    // From here on the trailer is intact, so the scan can tell the index from damage.
    let unusable = |reason: String| IndexProblem::Unusable {
        reason,
        index_offset: Some(index_offset),
    };
    let mut start = [0u8; 8];
    read_at(file, &mut start, index_offset)?;
    let len = Index::parse_section_start(&start)
        .ok_or_else(|| unusable("the index trailer does not point to an index".into()))?;
    if len > MAX_INDEX_LEN
        || index_offset + INDEX_SECTION_OVERHEAD as u64 + u64::from(len) != trailer_at
    {
        return Err(unusable("the index length does not match the file".into()));
    }
    let mut section = vec![0u8; INDEX_SECTION_OVERHEAD + len as usize];
    read_at(file, &mut section, index_offset)?;
    let index = Index::decode_section(&section, format).map_err(unusable)?;
    index.validate(data_start, index_offset).map_err(unusable)?;
    Ok(index)
}

/// Find the blocks of a file without a usable index by walking frame headers from the
/// first block. A bad frame header is skipped by searching for the next frame header that
/// verifies; a block that is cut or fails its checksum is recorded as damage. Each good
/// block is decoded once to count its events per kind; one block is in memory at a time.
fn scan_blocks(
    file: &Source,
    file_len: u64,
    data_start: u64,
    index_offset: Option<u64>,
    format: CaptureFormat,
) -> io::Result<(Vec<BlockInfo>, Vec<Damage>)> {
    // The index section (unusable, or we would not be scanning) ends the blocks.
    let is_index =
        |pos: u64, bytes: &[u8]| bytes.starts_with(&INDEX_MAGIC) || index_offset == Some(pos);
    let mut blocks = Vec::new();
    let mut damage = Vec::new();
    let mut payload = Vec::new();
    let mut decoder = PayloadDecoder::new(format);
    let mut pos = data_start;
    while pos < file_len {
        let remaining = file_len - pos;
        if remaining < FRAME_HEADER_LEN as u64 {
            let mut tail = vec![0u8; remaining as usize];
            read_at(file, &mut tail, pos)?;
            // The start of an index section is not damage; anything else is a block
            // whose frame header was cut.
            if !is_index(pos, &tail) {
                damage.push(Damage {
                    offset: pos,
                    reason: format!(
                        "the file ends {remaining} bytes into a block frame header (cut while writing)"
                    ),
                    events_lost: None,
                    ts_range: None,
                });
            }
            break;
        }
        let mut head = [0u8; FRAME_HEADER_LEN];
        read_at(file, &mut head, pos)?;
        let frame = match FrameHeader::parse(&head) {
            Ok(frame) => frame,
            Err(e) => {
                match find_frame(file, pos + 1, file_len)? {
                    Some(next) => {
                        damage.push(Damage {
                            offset: pos,
                            reason: format!(
                                "invalid block frame header ({e}); skipped {} bytes to the next valid block",
                                next - pos
                            ),
                            events_lost: None,
                            ts_range: None,
                        });
                        pos = next;
                        continue;
                    }
                    None => {
                        // Past the last block: the index section, or bytes that are no block.
                        if !is_index(pos, &head) {
                            damage.push(Damage {
                                offset: pos,
                                reason: format!(
                                    "invalid block frame header ({e}); no valid block in the remaining {remaining} bytes"
                                ),
                                events_lost: None,
                                ts_range: None,
                            });
                        }
                        break;
                    }
                }
            }
        };
        let lost = |reason: String| Damage {
            offset: pos,
            reason,
            events_lost: Some(u64::from(frame.event_count)),
            ts_range: Some((frame.first_ts, frame.last_ts)),
        };
        if frame.frame_len() > remaining {
            damage.push(lost(format!(
                "block is cut: the file ends {} bytes into its {}-byte payload",
                remaining - FRAME_HEADER_LEN as u64,
                frame.payload_len
            )));
            break;
        }
        payload.clear();
        payload.resize(frame.payload_len as usize, 0);
        read_at(file, &mut payload, pos + FRAME_HEADER_LEN as u64)?;
        match decoder.decode(&frame, &payload, SyscallContents::Built) {
            Ok(events) => blocks.push(BlockInfo {
                offset: pos,
                len: frame.frame_len(),
                event_count: frame.event_count,
                first_ts: frame.first_ts,
                last_ts: frame.last_ts,
                counts: kind_counts(&events),
            }),
            Err(e) => damage.push(lost(format!("block {e}"))),
        }
        pos += frame.frame_len();
    }
    Ok((blocks, damage))
}

/// Offset of the next frame header at or after `from` that verifies, reading the file
/// in bounded chunks.
pub(super) fn find_frame(file: &Source, from: u64, file_len: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 1 << 20;
    let overlap = FRAME_HEADER_LEN as u64 - 1;
    let mut buf = Vec::new();
    let mut pos = from;
    while pos < file_len {
        let want = (file_len - pos).min(CHUNK + overlap);
        buf.clear();
        buf.resize(want as usize, 0);
        read_at(file, &mut buf, pos)?;
        let at_end = pos + want == file_len;
        // Candidates starting in the overlap are examined by the next chunk.
        let limit = if at_end { buf.len() } else { CHUNK as usize };
        let mut i = 0;
        while let Some(found) = find_magic(buf.get(i..).unwrap_or(&[])) {
            let at = i + found;
            if at >= limit {
                break;
            }
            let head = buf
                .get(at..at + FRAME_HEADER_LEN)
                .and_then(|h| <&[u8; FRAME_HEADER_LEN]>::try_from(h).ok());
            if head.is_some_and(|h| FrameHeader::parse(h).is_ok()) {
                return Ok(Some(pos + at as u64));
            }
            i = at + 1;
        }
        if at_end {
            break;
        }
        pos += CHUNK;
    }
    Ok(None)
}

fn find_magic(haystack: &[u8]) -> Option<usize> {
    haystack
        .windows(super::block::BLOCK_MAGIC.len())
        .position(|w| w == super::block::BLOCK_MAGIC)
}

/// Where a reader's bytes are: an open file, or memory.
pub(super) enum Source {
    File(File),
    Bytes(Bytes),
}

impl Source {
    fn len(&self) -> io::Result<u64> {
        match self {
            Source::File(file) => Ok(file.metadata()?.len()),
            Source::Bytes(bytes) => Ok(bytes.len() as u64),
        }
    }
}

/// Read exactly `buf.len()` bytes at `offset` (without moving a shared cursor, so
/// several event streams can read the same open file).
pub(super) fn read_at(source: &Source, buf: &mut [u8], offset: u64) -> io::Result<()> {
    match source {
        Source::File(file) => read_file_at(file, buf, offset),
        Source::Bytes(bytes) => read_bytes_at(bytes, buf, offset),
    }
}

/// [`read_at`] for bytes in memory.
pub(super) fn read_bytes_at(bytes: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let part = start
        .checked_add(buf.len())
        .and_then(|end| bytes.get(start..end))
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    buf.copy_from_slice(part);
    Ok(())
}

#[cfg(unix)]
fn read_file_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn read_file_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut std::mem::take(&mut buf)[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn read_file_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}
