//! The block index: a directory of every block (where it is, its time range, how many
//! events of each kind it holds), written at the end of the file when recording stops, so
//! a reader can answer "how much of what, when" and seek by time without reading blocks.

use bincode::error::DecodeError;
use bincode::{Decode, Encode};
use serde::Serialize;

use super::event::{EventKind, KindCounts};
use super::header::CaptureFormat;
use super::latency::{LatencyHistogram, LatencyTable};
use super::scrub_report::ScrubReport;

/// The first bytes of the index section.
pub const INDEX_MAGIC: [u8; 4] = *b"ETRI";
/// The last bytes of a finished capture file.
pub const TRAILER_MAGIC: [u8; 8] = *b"ETRIDX\0\0";
/// `index_offset: u64` then the trailer magic.
pub const TRAILER_LEN: usize = 8 + TRAILER_MAGIC.len();
/// Index magic and length before the index bytes, checksum after.
pub const INDEX_SECTION_OVERHEAD: usize = INDEX_MAGIC.len() + 4 + 4;
/// Largest encoded index a reader accepts (a week at one block a second is ~30 MiB).
pub const MAX_INDEX_LEN: u32 = 256 << 20;
/// Bound on what decoding an index may allocate (bincode claims per container).
const INDEX_DECODE_LIMIT: usize = 1 << 30;

/// Where one block is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct BlockInfo {
    /// File offset of the block's frame header.
    pub offset: u64,
    /// Length of the whole frame (header and payload).
    pub len: u64,
    pub event_count: u32,
    /// Smallest and largest `Event::ts_ns()` in the block.
    pub first_ts: u64,
    pub last_ts: u64,
    /// Events per kind, in `EventKind::ALL` order (formats 1 and 2 store the first
    /// three: they hold no TLS or process events).
    pub counts: KindCounts,
}

impl BlockInfo {
    /// Offset just past the block.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }

    /// Whether the block may hold events with `since <= ts < until` (either bound open).
    pub fn overlaps(&self, since: Option<u64>, until: Option<u64>) -> bool {
        since.is_none_or(|since| self.last_ts >= since)
            && until.is_none_or(|until| self.first_ts < until)
    }
}

/// The block directory of a capture, in file order, and what the recorder can only
/// say at the end. Encoded as format 6 lays it out (`IndexV6` decodes it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Serialize)]
pub struct Index {
    pub blocks: Vec<BlockInfo>,
    /// What redaction did to this file's packets. `None` when secrets were kept, and
    /// unknown for format 1 files and for indexes recovered by scanning.
    pub redaction: Option<ScrubReport>,
    /// The kernel's latency histograms, since the recording started (not only this
    /// file's share: they stay whole when `--keep` removes older files). Empty before
    /// format 5 and for indexes recovered by scanning.
    pub latency: Vec<LatencyHistogram>,
}

/// Format 6's index, as read: the histograms' list is bounded as it is decoded.
#[derive(Decode)]
struct IndexV6 {
    blocks: Vec<BlockInfo>,
    redaction: Option<ScrubReport>,
    latency: LatencyTable,
}

/// Format 5's index: format 6's with five counts per block (no API events).
#[derive(Decode)]
#[cfg_attr(test, derive(Encode))]
struct IndexV5 {
    blocks: Vec<BlockInfoV5>,
    redaction: Option<ScrubReport>,
    latency: LatencyTable,
}

/// Formats 3 and 4's index: format 5's without the histograms.
#[derive(Decode)]
#[cfg_attr(test, derive(Encode))]
struct IndexV3 {
    blocks: Vec<BlockInfoV5>,
    redaction: Option<ScrubReport>,
}

/// A block entry of formats 3 to 5: a count for each kind but API events.
type BlockInfoV5 = OlderBlockInfo<5>;

/// Format 1's index: the blocks only.
#[derive(Decode)]
#[cfg_attr(test, derive(Encode))]
struct IndexV1 {
    blocks: Vec<BlockInfoV2>,
}

/// Format 2's index: as format 3's, with three counts per block (format 3: one per
/// `EventKind`).
#[derive(Decode)]
#[cfg_attr(test, derive(Encode))]
struct IndexV2 {
    blocks: Vec<BlockInfoV2>,
    redaction: Option<ScrubReport>,
}

/// A block entry of formats 1 and 2: packet, syscall and loss counts.
type BlockInfoV2 = OlderBlockInfo<3>;

/// A block entry of a format that counts only the first `N` kinds.
#[derive(Decode)]
#[cfg_attr(test, derive(Encode))]
struct OlderBlockInfo<const N: usize> {
    offset: u64,
    len: u64,
    event_count: u32,
    first_ts: u64,
    last_ts: u64,
    counts: [u64; N],
}

impl<const N: usize> OlderBlockInfo<N> {
    fn upgrade(blocks: Vec<OlderBlockInfo<N>>) -> Vec<BlockInfo> {
        blocks
            .into_iter()
            .map(|b| {
                let mut counts = KindCounts::default();
                counts[..N].copy_from_slice(&b.counts);
                BlockInfo {
                    offset: b.offset,
                    len: b.len,
                    event_count: b.event_count,
                    first_ts: b.first_ts,
                    last_ts: b.last_ts,
                    counts,
                }
            })
            .collect()
    }
}

fn decode_body<T: Decode<()>>(body: &[u8]) -> Result<(T, usize), DecodeError> {
    let config = bincode::config::standard().with_limit::<INDEX_DECODE_LIMIT>();
    bincode::decode_from_slice(body, config)
}

/// Decodes an index body that ends with a redaction report (`report` finds it), also one
/// written before the report grew its last field (`tls`, an `Option`): such a body ends
/// where that field would begin, and reads as if it were `None`, one 0 byte. That byte
/// must be read as the field, so the report must be there, without it.
fn decode_with_report<T: Decode<()>>(
    body: &[u8],
    report: impl Fn(&T) -> Option<&ScrubReport>,
) -> Result<(T, usize), DecodeError> {
    match decode_body(body) {
        Err(cut @ DecodeError::UnexpectedEnd { additional: 1 }) => {
            let mut grown = Vec::with_capacity(body.len() + 1);
            grown.extend_from_slice(body);
            grown.push(0);
            match decode_body::<T>(&grown) {
                Ok((index, used))
                    if used == grown.len() && report(&index).is_some_and(|r| r.tls.is_none()) =>
                {
                    Ok((index, body.len()))
                }
                _ => Err(cut),
            }
        }
        decoded => decoded,
    }
}

impl Index {
    pub fn total_events(&self) -> u64 {
        self.blocks
            .iter()
            .fold(0u64, |n, b| n.saturating_add(u64::from(b.event_count)))
    }

    /// Events per kind over all blocks, in `EventKind::ALL` order.
    pub fn counts(&self) -> KindCounts {
        let mut total = KindCounts::default();
        for block in &self.blocks {
            for (t, c) in total.iter_mut().zip(block.counts) {
                *t = t.saturating_add(c);
            }
        }
        total
    }

    pub fn count(&self, kind: EventKind) -> u64 {
        self.counts().get(kind.slot()).copied().unwrap_or(0)
    }

    /// Earliest and latest event time over all blocks.
    pub fn time_range(&self) -> Option<(u64, u64)> {
        let first = self.blocks.iter().map(|b| b.first_ts).min()?;
        let last = self.blocks.iter().map(|b| b.last_ts).max()?;
        Some((first, last))
    }

    /// Blocks that may hold events with `since <= ts < until`, in file order.
    pub fn blocks_overlapping(
        &self,
        since: Option<u64>,
        until: Option<u64>,
    ) -> impl Iterator<Item = &BlockInfo> + '_ {
        self.blocks.iter().filter(move |b| b.overlaps(since, until))
    }

    /// The index section and trailer as written at `index_offset`: index magic, length,
    /// bincode of the index, crc32c of all that, then the trailer.
    pub fn encode_tail(&self, index_offset: u64) -> std::io::Result<Vec<u8>> {
        super::latency::check(&self.latency).map_err(std::io::Error::other)?;
        let body = bincode::encode_to_vec(self, bincode::config::standard())
            .map_err(std::io::Error::other)?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|&len| len <= MAX_INDEX_LEN)
            .ok_or_else(|| std::io::Error::other("capture index too large"))?;
        let mut out = Vec::with_capacity(body.len() + INDEX_SECTION_OVERHEAD + TRAILER_LEN);
        out.extend_from_slice(&INDEX_MAGIC);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&index_offset.to_le_bytes());
        out.extend_from_slice(&TRAILER_MAGIC);
        Ok(out)
    }

    /// The index offset a trailer points to, if it is a trailer.
    pub fn parse_trailer(trailer: &[u8; TRAILER_LEN]) -> Option<u64> {
        let (offset, magic) = trailer.split_at(8);
        if magic != TRAILER_MAGIC {
            return None;
        }
        offset.try_into().ok().map(u64::from_le_bytes)
    }

    /// The encoded length announced by the first 8 bytes of an index section.
    pub fn parse_section_start(start: &[u8; 8]) -> Option<u32> {
        let (magic, len) = start.split_at(4);
        if magic != INDEX_MAGIC {
            return None;
        }
        len.try_into().ok().map(u32::from_le_bytes)
    }

    /// Decode a whole index section (magic, length, index, checksum) of a file of this
    /// format.
    pub fn decode_section(section: &[u8], format: CaptureFormat) -> Result<Index, String> {
        let start: &[u8; 8] = section
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .ok_or("index section too short")?;
        let len = Self::parse_section_start(start).ok_or("no index magic")? as usize;
        let body_end = 8usize.checked_add(len).ok_or("index length overflows")?;
        let body = section.get(8..body_end).ok_or("index section cut short")?;
        let stored = section
            .get(body_end..)
            .and_then(|c| <[u8; 4]>::try_from(c).ok())
            .map(u32::from_le_bytes)
            .ok_or("index checksum missing or misplaced")?;
        let covered = section.get(..body_end).ok_or("index section cut short")?;
        if crc32c::crc32c(covered) != stored {
            return Err("index checksum mismatch".into());
        }
        let decoded = match format {
            CaptureFormat::V1 => decode_body(body).map(|(v1, used): (IndexV1, usize)| {
                let index = Index {
                    blocks: BlockInfoV2::upgrade(v1.blocks),
                    ..Index::default()
                };
                (index, used)
            }),
            CaptureFormat::V2 => decode_with_report(body, |v2: &IndexV2| v2.redaction.as_ref())
                .map(|(v2, used): (IndexV2, usize)| {
                    let index = Index {
                        blocks: BlockInfoV2::upgrade(v2.blocks),
                        redaction: v2.redaction,
                        ..Index::default()
                    };
                    (index, used)
                }),
            CaptureFormat::V3 | CaptureFormat::V4 => {
                decode_with_report(body, |index: &IndexV3| index.redaction.as_ref()).map(
                    |(v3, used)| {
                        let index = Index {
                            blocks: BlockInfoV5::upgrade(v3.blocks),
                            redaction: v3.redaction,
                            ..Index::default()
                        };
                        (index, used)
                    },
                )
            }
            CaptureFormat::V5 => decode_body(body).map(|(v5, used): (IndexV5, usize)| {
                let index = Index {
                    blocks: BlockInfoV5::upgrade(v5.blocks),
                    redaction: v5.redaction,
                    latency: v5.latency.0,
                };
                (index, used)
            }),
            CaptureFormat::V6 => decode_body(body).map(|(v6, used): (IndexV6, usize)| {
                let index = Index {
                    blocks: v6.blocks,
                    redaction: v6.redaction,
                    latency: v6.latency.0,
                };
                (index, used)
            }),
        };
        let (index, used) = decoded.map_err(|e| format!("index does not decode: {e}"))?;
        if used != body.len() {
            return Err("unexpected bytes after the index".into());
        }
        Ok(index)
    }

    /// Check that the blocks are plausible for a file whose blocks live in
    /// `data_start..index_offset`: sorted, not overlapping, with consistent counts.
    pub fn validate(&self, data_start: u64, index_offset: u64) -> Result<(), String> {
        let min_len = super::block::FRAME_HEADER_LEN as u64;
        let max_len = min_len + u64::from(super::block::MAX_PAYLOAD_LEN);
        let mut next_free = data_start;
        for (i, b) in self.blocks.iter().enumerate() {
            if b.offset < next_free {
                return Err(format!(
                    "index entry {i} overlaps the previous block or the header"
                ));
            }
            if b.len < min_len || b.len > max_len {
                return Err(format!(
                    "index entry {i} has an impossible length {}",
                    b.len
                ));
            }
            let end = b
                .offset
                .checked_add(b.len)
                .ok_or("index entry offset overflows")?;
            if end > index_offset {
                return Err(format!("index entry {i} extends past the index"));
            }
            if b.first_ts > b.last_ts {
                return Err(format!("index entry {i} has a reversed time range"));
            }
            let sum = b.counts.iter().try_fold(0u64, |s, &c| s.checked_add(c));
            if sum != Some(u64::from(b.event_count)) {
                return Err(format!("index entry {i} counts do not add up"));
            }
            next_free = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(offset: u64, first: u64, last: u64) -> BlockInfo {
        BlockInfo {
            offset,
            len: 100,
            event_count: 3,
            first_ts: first,
            last_ts: last,
            counts: [1, 1, 0, 1, 0, 0],
        }
    }

    #[test]
    fn totals_and_overlap() {
        let index = Index {
            blocks: vec![block(50, 10, 20), block(150, 15, 30), block(250, 40, 50)],
            ..Index::default()
        };
        assert_eq!(index.total_events(), 9);
        assert_eq!(index.counts(), [3, 3, 0, 3, 0, 0]);
        assert_eq!(index.count(EventKind::Syscall), 3);
        assert_eq!(index.count(EventKind::Tls), 3);
        assert_eq!(index.time_range(), Some((10, 50)));
        let offs =
            |s, u| -> Vec<u64> { index.blocks_overlapping(s, u).map(|b| b.offset).collect() };
        assert_eq!(offs(None, None), vec![50, 150, 250]);
        assert_eq!(offs(Some(21), None), vec![150, 250]);
        assert_eq!(offs(Some(31), Some(40)), Vec::<u64>::new());
        assert_eq!(offs(Some(31), Some(41)), vec![250]);
        assert_eq!(offs(None, Some(15)), vec![50]);
        assert_eq!(offs(Some(20), Some(21)), vec![50, 150]);
        assert!(index.validate(50, 350).is_ok());
        assert!(index.validate(51, 350).is_err());
        assert!(index.validate(50, 349).is_err());
        assert_eq!(Index::default().time_range(), None);
    }

    #[test]
    fn tail_round_trip() {
        let index = Index {
            blocks: vec![block(50, 10, 20), block(150, 15, 30)],
            redaction: Some(ScrubReport {
                header_values_redacted: 3,
                unscrubbed_packets: 7,
                ..ScrubReport::default()
            }),
            latency: vec![histogram(vec![0, 3, 1])],
        };
        let tail = index.encode_tail(250).unwrap();
        let (section, trailer) = tail.split_at(tail.len() - TRAILER_LEN);
        assert_eq!(Index::parse_trailer(trailer.try_into().unwrap()), Some(250));
        assert_eq!(
            Index::decode_section(section, CaptureFormat::V6).unwrap(),
            index
        );
        // Format 5 has a count fewer per block, and format 4 no histograms: their
        // readers refuse these bytes rather than misread them.
        assert!(Index::decode_section(section, CaptureFormat::V5).is_err());
        assert!(Index::decode_section(section, CaptureFormat::V4).is_err());
        for i in 0..section.len() {
            let mut bad = section.to_vec();
            bad[i] ^= 0x08;
            assert!(
                Index::decode_section(&bad, CaptureFormat::V6).is_err(),
                "flip at {i} not caught"
            );
        }
        for cut in 0..section.len() {
            assert!(Index::decode_section(&section[..cut], CaptureFormat::V6).is_err());
        }
    }

    fn histogram(buckets: Vec<u64>) -> LatencyHistogram {
        LatencyHistogram {
            data_dir: "/var/lib/etcd".into(),
            kind: crate::capture::LatencyKind::WalSync,
            buckets,
            sum_ns: 12345,
        }
    }

    /// Histograms cut short, with too many buckets, or too many of them are refused
    /// (checksums right); a format 4 index read as format 5 is too.
    #[test]
    fn damaged_histograms_are_refused() {
        let good = Index {
            blocks: vec![block(50, 10, 20)],
            latency: vec![histogram(vec![1; 36]); 4],
            ..Index::default()
        };
        let body = bincode::encode_to_vec(&good, bincode::config::standard()).unwrap();
        assert_eq!(
            Index::decode_section(&section_of(&body), CaptureFormat::V6),
            Ok(good.clone())
        );
        for cut in 1..body.len() {
            let section = section_of(&body[..body.len() - cut]);
            assert!(Index::decode_section(&section, CaptureFormat::V6).is_err());
        }
        let v5 = v5_body(&good);
        assert_eq!(
            Index::decode_section(&section_of(&v5), CaptureFormat::V5),
            Ok(good.clone())
        );
        for cut in 1..v5.len() {
            let section = section_of(&v5[..v5.len() - cut]);
            assert!(Index::decode_section(&section, CaptureFormat::V5).is_err());
        }
        let oversized = [
            vec![histogram(vec![1; crate::capture::latency::MAX_BUCKETS + 1])],
            vec![histogram(vec![1]); crate::capture::latency::MAX_HISTOGRAMS + 1],
            vec![histogram(Vec::new())],
        ];
        for latency in oversized {
            let bad = Index {
                latency,
                ..good.clone()
            };
            let body = bincode::encode_to_vec(&bad, bincode::config::standard()).unwrap();
            assert!(Index::decode_section(&section_of(&body), CaptureFormat::V6).is_err());
            let body = v5_body(&bad);
            assert!(Index::decode_section(&section_of(&body), CaptureFormat::V5).is_err());
        }
        let v4 = v3_body(&good);
        assert!(Index::decode_section(&section_of(&v4), CaptureFormat::V5).is_err());
        assert_eq!(
            Index::decode_section(&section_of(&v4), CaptureFormat::V4),
            Ok(Index {
                latency: Vec::new(),
                ..good
            })
        );
    }

    /// The bytes of formats 3 and 4's index of the blocks and report of `index`.
    fn v3_body(index: &Index) -> Vec<u8> {
        let v3 = IndexV3 {
            blocks: v5_blocks(index),
            redaction: index.redaction.clone(),
        };
        bincode::encode_to_vec(v3, bincode::config::standard()).unwrap()
    }

    /// The bytes of format 5's index of `index`.
    fn v5_body(index: &Index) -> Vec<u8> {
        let v5 = IndexV5 {
            blocks: v5_blocks(index),
            redaction: index.redaction.clone(),
            latency: LatencyTable(index.latency.clone()),
        };
        bincode::encode_to_vec(v5, bincode::config::standard()).unwrap()
    }

    /// The blocks of `index` with five counts each, as formats 3 to 5 store them.
    fn v5_blocks(index: &Index) -> Vec<BlockInfoV5> {
        index
            .blocks
            .iter()
            .map(|b| {
                assert_eq!(
                    b.counts[EventKind::Api.slot()],
                    0,
                    "formats 3 to 5 hold no API"
                );
                BlockInfoV5 {
                    offset: b.offset,
                    len: b.len,
                    event_count: b.event_count,
                    first_ts: b.first_ts,
                    last_ts: b.last_ts,
                    counts: b.counts[..5].try_into().unwrap(),
                }
            })
            .collect()
    }

    /// An index section around `body`, as the writer frames one.
    fn section_of(body: &[u8]) -> Vec<u8> {
        let mut section = INDEX_MAGIC.to_vec();
        section.extend_from_slice(&(body.len() as u32).to_le_bytes());
        section.extend_from_slice(body);
        let crc = crc32c::crc32c(&section);
        section.extend_from_slice(&crc.to_le_bytes());
        section
    }

    /// `block(..)` without a TLS event, in the new and the old shape.
    fn old_block(offset: u64, first: u64, last: u64) -> (BlockInfo, BlockInfoV2) {
        let mut new = block(offset, first, last);
        new.counts = [1, 1, 1, 0, 0, 0];
        let old = BlockInfoV2 {
            offset,
            len: new.len,
            event_count: new.event_count,
            first_ts: first,
            last_ts: last,
            counts: [1, 1, 1],
        };
        (new, old)
    }

    /// An index body as written before the redaction report had its last field, `tls`:
    /// the same bytes without the last, that field's `None`.
    fn before_tls_counts(mut body: Vec<u8>) -> Vec<u8> {
        assert_eq!(
            body.pop(),
            Some(0),
            "a report without TLS counts ends the body"
        );
        body
    }

    /// A format 3 index written before the report counted TLS plaintext still decodes,
    /// without those counts (`None`: not scrubbed); one without a report too, and one
    /// with them round-trips.
    #[test]
    fn format_3_index_before_tls_counts_decodes() {
        let mut index = Index {
            blocks: vec![block(50, 10, 20)],
            redaction: Some(ScrubReport {
                fields_redacted: 2,
                unscrubbed_packets: 1,
                ..ScrubReport::default()
            }),
            ..Index::default()
        };
        let body = v3_body(&index);
        let old = section_of(&before_tls_counts(body));
        assert_eq!(
            Index::decode_section(&old, CaptureFormat::V3),
            Ok(index.clone())
        );
        // Cut anywhere else, it is refused.
        let body_len = old.len() - INDEX_SECTION_OVERHEAD;
        for cut in 0..body_len - 1 {
            let body = &old[8..8 + cut];
            assert!(Index::decode_section(&section_of(body), CaptureFormat::V3).is_err());
        }

        index.redaction = None;
        let body = v3_body(&index);
        assert_eq!(
            Index::decode_section(&section_of(&body), CaptureFormat::V3),
            Ok(index.clone())
        );

        index.redaction = Some(ScrubReport {
            tls: Some(crate::capture::TlsScrubReport {
                connections: 3,
                unscrubbed_chunks: 1,
                ..Default::default()
            }),
            ..ScrubReport::default()
        });
        let body = v3_body(&index);
        assert_eq!(
            Index::decode_section(&section_of(&body), CaptureFormat::V3),
            Ok(index)
        );
    }

    /// Format 1's index, the blocks alone, still decodes; read as format 2 it is
    /// refused, not misread.
    #[test]
    fn format_1_index_decodes() {
        let (block, old) = old_block(50, 10, 20);
        let v1 = IndexV1 { blocks: vec![old] };
        let body = bincode::encode_to_vec(v1, bincode::config::standard()).unwrap();
        let section = section_of(&body);
        let index = Index::decode_section(&section, CaptureFormat::V1).unwrap();
        assert_eq!(index.blocks, [block]);
        assert_eq!(index.redaction, None);
        assert!(Index::decode_section(&section, CaptureFormat::V2).is_err());
    }

    /// Format 2's index, three counts a block, still decodes, its counts in the first
    /// three slots; read as format 3 it is refused, not misread.
    #[test]
    fn format_2_index_decodes() {
        let (first, old_first) = old_block(50, 10, 20);
        let (second, old_second) = old_block(150, 15, 30);
        let redaction = Some(ScrubReport {
            fields_redacted: 2,
            ..ScrubReport::default()
        });
        let old = IndexV2 {
            blocks: vec![old_first, old_second],
            redaction: redaction.clone(),
        };
        let section = section_of(&before_tls_counts(
            bincode::encode_to_vec(old, bincode::config::standard()).unwrap(),
        ));
        let index = Index::decode_section(&section, CaptureFormat::V2).unwrap();
        assert_eq!(index.blocks, [first, second]);
        assert_eq!(index.redaction, redaction);
        assert_eq!(index.count(EventKind::Tls), 0);
        assert!(Index::decode_section(&section, CaptureFormat::V3).is_err());
    }

    /// Format 5's index, five counts a block, still decodes, with no API events; read
    /// as format 6 it is refused, and format 6's (with an API count) as format 5.
    #[test]
    fn format_5_index_decodes() {
        let index = Index {
            blocks: vec![block(50, 10, 20), block(150, 15, 30)],
            redaction: None,
            latency: vec![histogram(vec![0, 3, 1])],
        };
        let v5 = section_of(&v5_body(&index));
        assert_eq!(
            Index::decode_section(&v5, CaptureFormat::V5),
            Ok(index.clone())
        );
        assert_eq!(
            Index::decode_section(&v5, CaptureFormat::V5)
                .unwrap()
                .count(EventKind::Api),
            0
        );
        assert!(Index::decode_section(&v5, CaptureFormat::V6).is_err());

        let mut api = index;
        api.blocks[1].counts = [0, 0, 0, 0, 0, 3];
        let body = bincode::encode_to_vec(&api, bincode::config::standard()).unwrap();
        let v6 = section_of(&body);
        let read = Index::decode_section(&v6, CaptureFormat::V6).unwrap();
        assert_eq!(read.count(EventKind::Api), 3);
        assert_eq!(read, api);
        assert!(Index::decode_section(&v6, CaptureFormat::V5).is_err());
    }
}
