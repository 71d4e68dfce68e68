//! pcap and pcapng files (tcpdump, dumpcap, Wireshark) read as captures: their TCP
//! segments become [`Packet`] events and a header is made up for them. A packet capture
//! holds no WAL writes, fsyncs or processes.
//!
//! Our own parser rather than a crate: the reader needs to resume at any record offset
//! (the blocks of a capture are read one at a time, skipped by time) with the section's
//! byte order and interfaces kept from a first pass, which a streaming crate's reader does
//! not offer; the formats are small. Every length is bounded; nothing here panics.
//!
//! The first pass ([`scan`]) walks the records once, keeping per stretch of up to
//! [`EVENTS_PER_BLOCK`] TCP segments a [`BlockInfo`] (file offset, length, time range),
//! and finds the etcd server ports: the destination of a SYN, the source of a SYN-ACK,
//! the destination of an HTTP/2 client preface or of an HTTP/1 request. A block is then
//! read by [`read_block`] from its bytes alone.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::event::{Direction, Event, EventKind, KindCounts, Packet, TcpFlags};
use super::index::BlockInfo;

/// A read of `buf.len()` bytes at an offset of the file.
pub type ReadAt<'a> = &'a dyn Fn(&mut [u8], u64) -> io::Result<()>;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_BOM: u32 = 0x1A2B_3C4D;
/// Largest record accepted (a packet of 256 KiB, as tcpdump's maximum snaplen, plus room).
const MAX_RECORD: u32 = 1 << 20;
pub const EVENTS_PER_BLOCK: u32 = 4096;
/// A block also ends after this many bytes of records, so one is read in bounded memory.
const BLOCK_BYTES: u64 = 4 << 20;
const MAX_SECTIONS: usize = 4096;
const MAX_INTERFACES: usize = 4096;
/// At most this many server ports are told apart (as the recorder traces at most 16).
const MAX_PORTS: usize = 16;

/// Which of the two formats, from the first four bytes.
pub fn sniff(magic: [u8; 4]) -> Option<&'static str> {
    match u32::from_le_bytes(magic) {
        0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1 => Some("pcap"),
        PCAPNG_SHB => Some("pcapng"),
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Interface {
    linktype: u16,
    /// Timestamp units per second, as a power: 10^-n (false) or 2^-n (true).
    resol: (bool, u8),
    name: String,
    snaplen: u32,
}

#[derive(Debug, Clone, Default)]
struct Section {
    big_endian: bool,
    interfaces: Vec<Interface>,
}

/// What the first pass learnt, needed to read any block.
#[derive(Debug, Clone)]
pub struct PacketFile {
    pub kind: &'static str,
    legacy: bool,
    sections: Vec<Section>,
    /// The section of each block, parallel to the blocks.
    block_section: Vec<usize>,
    /// Monotonic ns = wall ns - base (the first packet's time).
    pub base_wall_ns: u64,
    pub server_ports: Vec<u16>,
    /// Packets that were not TCP over IPv4/IPv6 on a known linktype.
    pub skipped: u64,
    pub interfaces: Vec<(u32, String)>,
    pub snaplen: u32,
}

/// One record of the file.
enum Record {
    Section(Section),
    Interface(Interface),
    Packet {
        iface: u32,
        ts_raw: u64,
        orig_len: u32,
        data: Vec<u8>,
    },
    Other,
}

fn word(b: &[u8], at: usize, be: bool) -> u32 {
    let w: [u8; 4] = b
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default();
    if be {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

fn half(b: &[u8], at: usize, be: bool) -> u16 {
    let w: [u8; 2] = b
        .get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default();
    if be {
        u16::from_be_bytes(w)
    } else {
        u16::from_le_bytes(w)
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The legacy pcap global header: its only section.
fn legacy_section(head: &[u8; 24]) -> Section {
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let big_endian = matches!(magic, 0xD4C3_B2A1 | 0x4D3C_B2A1);
    let nanos = matches!(magic, 0xA1B2_3C4D | 0x4D3C_B2A1);
    Section {
        big_endian,
        interfaces: vec![Interface {
            linktype: (word(head, 20, big_endian) & 0xFFFF) as u16,
            resol: (false, if nanos { 9 } else { 6 }),
            name: "pcap".to_string(),
            snaplen: word(head, 16, big_endian),
        }],
    }
}

/// Read the record at `pos` (`end` bounds the readable bytes). None at the end.
fn next_record(
    read: ReadAt,
    pos: u64,
    end: u64,
    legacy: bool,
    section: &Section,
) -> io::Result<Option<(Record, u64)>> {
    if pos >= end {
        return Ok(None);
    }
    let be = section.big_endian;
    if legacy {
        let mut h = [0u8; 16];
        if end - pos < 16 {
            return Err(bad("the file ends inside a packet record header"));
        }
        read(&mut h, pos)?;
        let (sec, frac, incl, orig) = (
            word(&h, 0, be),
            word(&h, 4, be),
            word(&h, 8, be),
            word(&h, 12, be),
        );
        if incl > MAX_RECORD {
            return Err(bad(format!("packet record of {incl} bytes is too long")));
        }
        let next = pos + 16 + u64::from(incl);
        if next > end {
            return Err(bad("the file ends inside a packet"));
        }
        let mut data = vec![0u8; incl as usize];
        read(&mut data, pos + 16)?;
        let per_sec = if section.interfaces.first().is_some_and(|i| i.resol.1 == 9) {
            1_000_000_000
        } else {
            1_000_000
        };
        let ts_raw = u64::from(sec) * per_sec + u64::from(frac);
        return Ok(Some((
            Record::Packet {
                iface: 0,
                ts_raw,
                orig_len: orig.max(incl),
                data,
            },
            next,
        )));
    }
    if end - pos < 12 {
        return Err(bad("the file ends inside a block header"));
    }
    let mut h = [0u8; 12];
    read(&mut h, pos)?;
    let btype = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let be = if btype == PCAPNG_SHB {
        match word(&h, 8, false) {
            PCAPNG_BOM => false,
            m if m.swap_bytes() == PCAPNG_BOM => true,
            _ => return Err(bad("section header with an unknown byte-order magic")),
        }
    } else {
        be
    };
    let btype = word(&h, 0, be);
    let len = word(&h, 4, be);
    if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD {
        return Err(bad(format!("block length {len} is invalid")));
    }
    let next = pos + u64::from(len);
    if next > end {
        return Err(bad("the file ends inside a block"));
    }
    let mut body = vec![0u8; len as usize - 12];
    read(&mut body, pos + 8)?;
    let record = match btype {
        PCAPNG_SHB => Record::Section(Section {
            big_endian: be,
            interfaces: Vec::new(),
        }),
        1 => {
            let linktype = half(&body, 0, be);
            let snaplen = word(&body, 4, be);
            let mut iface = Interface {
                linktype,
                resol: (false, 6),
                name: String::new(),
                snaplen,
            };
            // Options from byte 8: code u16, len u16, value padded to 4.
            let mut at = 8usize;
            while at + 4 <= body.len() {
                let code = half(&body, at, be);
                let olen = usize::from(half(&body, at + 2, be));
                let value = body.get(at + 4..at + 4 + olen).unwrap_or_default();
                match code {
                    0 => break,
                    2 => iface.name = String::from_utf8_lossy(value).into_owned(),
                    9 => {
                        if let Some(&v) = value.first() {
                            iface.resol = (v & 0x80 != 0, v & 0x7F);
                        }
                    }
                    _ => {}
                }
                at += 4 + olen.div_ceil(4) * 4;
            }
            Record::Interface(iface)
        }
        6 => {
            let caplen = word(&body, 12, be);
            let data = body
                .get(20..20 + caplen as usize)
                .ok_or_else(|| bad("packet longer than its block"))?;
            Record::Packet {
                iface: word(&body, 0, be),
                ts_raw: (u64::from(word(&body, 4, be)) << 32) | u64::from(word(&body, 8, be)),
                orig_len: word(&body, 16, be).max(caplen),
                data: data.to_vec(),
            }
        }
        3 => {
            // Simple packet block: interface 0, no timestamp (kept at the last one's).
            let orig = word(&body, 0, be);
            let snap = section.interfaces.first().map_or(0, |i| i.snaplen);
            let caplen = if snap == 0 { orig } else { orig.min(snap) };
            let data = body
                .get(4..4 + caplen as usize)
                .ok_or_else(|| bad("packet longer than its block"))?;
            Record::Packet {
                iface: 0,
                ts_raw: u64::MAX,
                orig_len: orig.max(caplen),
                data: data.to_vec(),
            }
        }
        _ => Record::Other,
    };
    Ok(Some((record, next)))
}

fn wall_ns(iface: &Interface, ts_raw: u64) -> u64 {
    let (pow2, n) = iface.resol;
    let ts = u128::from(ts_raw);
    let ns = if pow2 {
        (ts * 1_000_000_000) >> n.min(127)
    } else if n <= 9 {
        ts * 10u128.pow(u32::from(9 - n))
    } else {
        ts / 10u128.pow(u32::from(n.min(38) - 9))
    };
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// A TCP segment out of a link-layer frame: addresses, TCP header and payload.
struct Segment<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload_len: u32,
    payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The IP packet in a frame of `linktype`, with its ethertype-style version hint.
fn ip_of(linktype: u16, frame: &[u8]) -> Option<&[u8]> {
    match linktype {
        // Ethernet, with any number of VLAN tags.
        1 => {
            let mut at = 12;
            loop {
                match be16(frame, at)? {
                    0x8100 | 0x88A8 | 0x9100 => at += 4,
                    0x0800 | 0x86DD => return frame.get(at + 2..),
                    _ => return None,
                }
            }
        }
        // Linux cooked v1: protocol at 14, IP at 16.
        113 => matches!(be16(frame, 14)?, 0x0800 | 0x86DD)
            .then(|| frame.get(16..))
            .flatten(),
        // Linux cooked v2: protocol at 0, IP at 20.
        276 => matches!(be16(frame, 0)?, 0x0800 | 0x86DD)
            .then(|| frame.get(20..))
            .flatten(),
        // Raw IP.
        101 | 12 | 14 | 228 | 229 => Some(frame),
        // BSD loopback (host order) and OpenBSD loopback (network order): a 4-byte family.
        0 | 108 => frame.get(4..),
        _ => None,
    }
}

fn segment(linktype: u16, frame: &[u8], orig_len: u32) -> Option<Segment<'_>> {
    let ip = ip_of(linktype, frame)?;
    // Bytes cut from the end of the frame by the snaplen.
    let cut = orig_len.saturating_sub(frame.len() as u32);
    let (src, dst, tcp, ip_payload_len) = match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0F) * 4;
            let total = be16(ip, 2)?;
            let frag = be16(ip, 6)? & 0x1FFF;
            if ip.get(9) != Some(&6) || ihl < 20 || frag != 0 {
                return None;
            }
            let s = Ipv4Addr::from(be32(ip, 12)?);
            let d = Ipv4Addr::from(be32(ip, 16)?);
            let len = u32::from(total).saturating_sub(ihl as u32);
            (IpAddr::V4(s), IpAddr::V4(d), ip.get(ihl..)?, len)
        }
        6 => {
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let mut next = *ip.get(6)?;
            let mut at = 40usize;
            let mut ext = 0u32;
            // Hop-by-hop, routing and destination options may precede TCP.
            while matches!(next, 0 | 43 | 60) {
                next = *ip.get(at)?;
                let l = (usize::from(*ip.get(at + 1)?) + 1) * 8;
                at += l;
                ext += l as u32;
            }
            if next != 6 {
                return None;
            }
            let len = u32::from(be16(ip, 4)?).saturating_sub(ext);
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                ip.get(at..)?,
                len,
            )
        }
        _ => return None,
    };
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    if doff < 20 {
        return None;
    }
    let payload = tcp.get(doff..).unwrap_or_default();
    // The IP length says how long the payload was; without one (TSO frames on the
    // sending host have 0), what was captured plus what was cut.
    let payload_len = if ip_payload_len >= doff as u32 {
        ip_payload_len - doff as u32
    } else {
        payload.len() as u32 + cut
    };
    let payload = payload.get(..payload.len().min(payload_len as usize))?;
    Some(Segment {
        src: SocketAddr::new(src, be16(tcp, 0)?),
        dst: SocketAddr::new(dst, be16(tcp, 2)?),
        seq: be32(tcp, 4)?,
        ack: be32(tcp, 8)?,
        flags: *tcp.get(13)?,
        window: be16(tcp, 14)?,
        payload_len,
        payload,
    })
}

/// The server port a segment shows, if it shows one.
fn server_port(s: &Segment) -> Option<u16> {
    let syn = s.flags & TcpFlags::SYN != 0;
    let ack = s.flags & TcpFlags::ACK != 0;
    if syn && !ack {
        return Some(s.dst.port());
    }
    if syn && ack {
        return Some(s.src.port());
    }
    const STARTS: [&[u8]; 4] = [b"PRI * HTTP/2.0", b"GET /", b"POST /", b"PUT /"];
    STARTS
        .iter()
        .any(|p| s.payload.starts_with(p))
        .then(|| s.dst.port())
}

/// What [`scan`] found: the file, its blocks, and where and why it stopped early.
pub type Scanned = (PacketFile, Vec<BlockInfo>, Option<(u64, String)>);

/// Walk the whole file once: sections, interfaces, blocks, server ports.
pub fn scan(read: ReadAt, file_len: u64, kind: &'static str) -> io::Result<Scanned> {
    let legacy = kind == "pcap";
    let mut file = PacketFile {
        kind,
        legacy,
        sections: Vec::new(),
        block_section: Vec::new(),
        base_wall_ns: 0,
        server_ports: Vec::new(),
        skipped: 0,
        interfaces: Vec::new(),
        snaplen: 0,
    };
    let mut pos = 0u64;
    if legacy {
        let mut head = [0u8; 24];
        if file_len < 24 {
            return Err(bad("the file ends inside the pcap header"));
        }
        read(&mut head, 0)?;
        file.sections.push(legacy_section(&head));
        pos = 24;
    }
    let mut ports = BTreeSet::new();
    let mut blocks: Vec<BlockInfo> = Vec::new();
    let mut open: Option<BlockInfo> = None;
    let mut base: Option<u64> = None;
    let mut last_wall = 0u64;
    let mut damage = None;
    let flush = |open: &mut Option<BlockInfo>,
                 blocks: &mut Vec<BlockInfo>,
                 sections: &mut Vec<usize>,
                 section: usize| {
        if let Some(b) = open.take() {
            if b.event_count > 0 {
                blocks.push(b);
                sections.push(section);
            }
        }
    };
    loop {
        let section_no = file.sections.len().saturating_sub(1);
        let empty = Section::default();
        let section = file.sections.last().unwrap_or(&empty);
        let (record, next) = match next_record(read, pos, file_len, legacy, section) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                damage = Some((pos, e.to_string()));
                break;
            }
            Err(e) => return Err(e),
        };
        match record {
            Record::Section(s) => {
                flush(&mut open, &mut blocks, &mut file.block_section, section_no);
                if file.sections.len() >= MAX_SECTIONS {
                    damage = Some((pos, "too many sections".to_string()));
                    break;
                }
                file.sections.push(s);
            }
            Record::Interface(i) => {
                let Some(s) = file.sections.last_mut() else {
                    damage = Some((pos, "interface before any section".to_string()));
                    break;
                };
                if s.interfaces.len() >= MAX_INTERFACES {
                    damage = Some((pos, "too many interfaces".to_string()));
                    break;
                }
                s.interfaces.push(i);
            }
            Record::Other => {}
            Record::Packet {
                iface,
                ts_raw,
                orig_len,
                data,
            } => {
                let Some(i) = section.interfaces.get(iface as usize) else {
                    file.skipped += 1;
                    pos = next;
                    continue;
                };
                let Some(seg) = segment(i.linktype, &data, orig_len) else {
                    file.skipped += 1;
                    pos = next;
                    continue;
                };
                if ports.len() < MAX_PORTS {
                    if let Some(p) = server_port(&seg) {
                        ports.insert(p);
                    }
                }
                let wall = if ts_raw == u64::MAX {
                    last_wall
                } else {
                    wall_ns(i, ts_raw)
                };
                last_wall = wall;
                let base = *base.get_or_insert(wall);
                let ts = wall.saturating_sub(base);
                let b = open.get_or_insert(BlockInfo {
                    offset: pos,
                    len: 0,
                    event_count: 0,
                    first_ts: ts,
                    last_ts: ts,
                    counts: KindCounts::default(),
                });
                b.len = next - b.offset;
                b.event_count += 1;
                b.first_ts = b.first_ts.min(ts);
                b.last_ts = b.last_ts.max(ts);
                b.counts[EventKind::Packet.slot()] += 1;
                if b.event_count >= EVENTS_PER_BLOCK || b.len >= BLOCK_BYTES {
                    flush(&mut open, &mut blocks, &mut file.block_section, section_no);
                }
            }
        }
        pos = next;
    }
    let last = file.sections.len().saturating_sub(1);
    flush(&mut open, &mut blocks, &mut file.block_section, last);
    file.base_wall_ns = base.unwrap_or(0);
    file.server_ports = ports.into_iter().collect();
    let mut index = 0u32;
    for s in &file.sections {
        for i in &s.interfaces {
            index += 1;
            let name = if i.name.is_empty() {
                format!("if{index}")
            } else {
                i.name.clone()
            };
            file.interfaces.push((index, name));
            file.snaplen = file.snaplen.max(i.snaplen);
        }
    }
    Ok((file, blocks, damage))
}

impl PacketFile {
    /// Decode the block `block_no` (at `info`) from its bytes, read with `read`.
    pub fn read_block(
        &self,
        read: ReadAt,
        block_no: usize,
        info: &BlockInfo,
        events: &mut std::collections::VecDeque<Event>,
    ) -> io::Result<()> {
        let section_no = self.block_section.get(block_no).copied().unwrap_or(0);
        let Some(section) = self.sections.get(section_no) else {
            return Err(bad("block of an unknown section"));
        };
        // The interface number of a packet of this section, for the ifindex.
        let first_iface: u32 = self
            .sections
            .iter()
            .take(section_no)
            .map(|s| s.interfaces.len() as u32)
            .sum();
        let mut bytes = vec![0u8; usize::try_from(info.len).unwrap_or(0)];
        read(&mut bytes, info.offset)?;
        let local = |buf: &mut [u8], at: u64| super::reader::read_bytes_at(&bytes, buf, at);
        let mut pos = 0u64;
        let mut last_wall = self.base_wall_ns;
        while let Some((record, next)) = next_record(&local, pos, info.len, self.legacy, section)? {
            pos = next;
            let Record::Packet {
                iface,
                ts_raw,
                orig_len,
                data,
            } = record
            else {
                continue;
            };
            let Some(i) = section.interfaces.get(iface as usize) else {
                continue;
            };
            let Some(seg) = segment(i.linktype, &data, orig_len) else {
                continue;
            };
            let wall = if ts_raw == u64::MAX {
                last_wall
            } else {
                wall_ns(i, ts_raw)
            };
            last_wall = wall;
            // As seen from the etcd host: towards a server port is coming in.
            let direction = if self.server_ports.contains(&seg.dst.port()) {
                Direction::Ingress
            } else {
                Direction::Egress
            };
            events.push_back(Event::Packet(Packet {
                ts_ns: wall.saturating_sub(self.base_wall_ns),
                ifindex: first_iface + iface + 1,
                direction,
                src: seg.src,
                dst: seg.dst,
                seq: seg.seq,
                ack: seg.ack,
                flags: TcpFlags(seg.flags),
                window: seg.window,
                payload_len: seg.payload_len,
                payload: Bytes::copy_from_slice(seg.payload),
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureReader, ReadItem};

    /// An IPv4 TCP segment from client :40000 to server :2379.
    fn ipv4_tcp(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2,
        ];
        let total = (20 + 20 + payload.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&2379u16.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn ipv6_tcp(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[6, 64]);
        p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        p.extend_from_slice(&ipv4_tcp(flags, payload)[20..]);
        p
    }

    fn legacy(linktype: u32, frames: &[(Vec<u8>, u32)]) -> Vec<u8> {
        let mut f = 0xA1B2_C3D4u32.to_le_bytes().to_vec();
        f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&linktype.to_le_bytes());
        for (i, (frame, orig)) in frames.iter().enumerate() {
            f.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
            f.extend_from_slice(&500u32.to_le_bytes());
            f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            f.extend_from_slice(&orig.to_le_bytes());
            f.extend_from_slice(frame);
        }
        f
    }

    fn ng_block(btype: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        let mut b = btype.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.resize(len as usize - 4, 0);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    fn pcapng(linktype: u16, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut shb = PCAPNG_BOM.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut f = ng_block(PCAPNG_SHB, &shb);
        let mut idb = linktype.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0, 0, 0, 1, 0]);
        idb.extend_from_slice(&[2, 0, 2, 0, b'l', b'o', 0, 0, 9, 0, 1, 0, 9, 0, 0, 0]);
        f.extend(ng_block(1, &idb));
        for frame in frames {
            let mut epb = 0u32.to_le_bytes().to_vec();
            let ts: u64 = 1_700_000_000_123_456_789;
            epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            epb.extend_from_slice(&(ts as u32).to_le_bytes());
            epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            epb.extend_from_slice(frame);
            f.extend(ng_block(6, &epb));
        }
        f
    }

    fn packets(bytes: Vec<u8>) -> (CaptureReader, Vec<Packet>) {
        let r = CaptureReader::from_bytes("t.pcap", bytes).unwrap();
        let p = r
            .events()
            .filter_map(|i| match i {
                ReadItem::Event(Event::Packet(p)) => Some(p),
                _ => None,
            })
            .collect();
        (r, p)
    }

    #[test]
    fn legacy_raw_ip_with_a_cut_payload() {
        let syn = ipv4_tcp(TcpFlags::SYN, b"");
        let mut data = ipv4_tcp(TcpFlags::ACK, &[7; 100]);
        data.truncate(60);
        let udp = {
            let mut u = ipv4_tcp(0, b"");
            u[9] = 17;
            u
        };
        let (r, p) = packets(legacy(101, &[(syn, 40), (data, 140), (udp, 40)]));
        assert_eq!(r.header().config.ports, vec![2379]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].payload_len, 100);
        assert_eq!(p[1].payload.len(), 20);
        assert_eq!(p[1].direction, Direction::Ingress);
        assert_eq!(p[0].ts_ns, 0);
        assert_eq!(p[1].ts_ns, 1_000_000_000);
        assert_eq!(r.header().wall_ns(p[0].ts_ns), 1_700_000_000_000_500_000);
        assert_eq!(r.packet_file().unwrap().skipped, 1);
    }

    #[test]
    fn pcapng_linktypes_and_ipv6() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0, 0, 5, 0x86, 0xDD]);
        eth.extend(ipv6_tcp(TcpFlags::ACK, preface));
        let mut sll2 = vec![
            0x08, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0,
        ];
        sll2.extend(ipv4_tcp(TcpFlags::ACK, b"x"));
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0]);
        sll.extend(ipv4_tcp(TcpFlags::ACK, b"y"));
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend(ipv4_tcp(TcpFlags::ACK, b"z"));
        for (linktype, frame, want) in [
            (1u16, eth, preface.len()),
            (276, sll2, 1),
            (113, sll, 1),
            (0, null, 1),
        ] {
            let (r, p) = packets(pcapng(linktype, &[frame]));
            assert_eq!(p.len(), 1, "linktype {linktype}");
            assert_eq!(p[0].payload.len(), want, "linktype {linktype}");
            assert_eq!(r.header().interfaces[0].name, "lo");
            assert_eq!(
                r.header().wall_ns(p[0].ts_ns),
                1_700_000_000_123_456_789,
                "nanosecond resolution"
            );
        }
    }

    #[test]
    fn cut_and_garbage_files_never_panic() {
        let mut frames: Vec<(Vec<u8>, u32)> = Vec::new();
        for i in 0..5u8 {
            frames.push((ipv4_tcp(TcpFlags::ACK, &[i; 30]), 70));
        }
        let ng = pcapng(101, &frames.iter().map(|f| f.0.clone()).collect::<Vec<_>>());
        for file in [legacy(101, &frames), ng] {
            for cut in 0..file.len() {
                if let Ok(r) = CaptureReader::from_bytes("t", file[..cut].to_vec()) {
                    let _ = r.events().count();
                }
            }
            let mut rng = 0x1234_5678u32;
            for _ in 0..300 {
                let mut f = file.clone();
                for _ in 0..4 {
                    rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let at = 4 + (rng as usize >> 8) % (f.len() - 4);
                    f[at] = (rng >> 3) as u8;
                }
                if let Ok(r) = CaptureReader::from_bytes("t", f) {
                    let _ = r.events().count();
                }
            }
        }
    }
}
