//! Parses the raw events of bpf/events.h into capture events. The offsets here mirror
//! the C structs; `tests::sizes_match_the_header` keeps the two in step. Through the ring
//! buffers the events come in batches ([`batch_events`] finds them), through the perf
//! buffer one by one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use bytes::Bytes;

use crate::capture::{
    Direction, Event, FileKind, FileRef, Packet, Syscall, SyscallKind, TcpFlags, TlsData,
    TlsEndpoints,
};

pub const ET_PACKET: u32 = 1;
pub const ET_SYSCALL: u32 = 2;
pub const ET_BATCH: u32 = 3;
pub const ET_TLS: u32 = 4;
pub const ET_PROCESS: u32 = 5;
pub const ET_SYSCALL_MORE: u32 = 6;
pub const BATCH_HEADER_LEN: usize = 16;
pub const SYSCALL_MORE_HEADER_LEN: usize = 24;
/// The most buffer one syscall event (or one part of a WAL write) carries (ET_MAX_DATA).
pub const MAX_DATA: u32 = 65536;
/// The most of one WAL write the programs keep (ET_MAX_WAL_WRITE).
pub const MAX_WAL_WRITE: u32 = 4 << 20;
pub const PROCESS_LEN: usize = 24;
pub const PACKET_HEADER_LEN: usize = 80;
pub const TLS_HEADER_LEN: usize = 88;
/// The most plaintext one TLS event carries (ET_TLS_CHUNK).
pub const TLS_CHUNK: u32 = 16384;
/// The largest fixed part of a syscall event (all names); only `depth` names are sent.
pub const SYSCALL_HEADER_LEN: usize = 328;
const PATH_DEPTH: usize = 4;
const NAME_LEN: usize = 64;
const NAMES_OFFSET: usize = 72;

// Field offsets of struct et_packet, struct et_syscall and struct et_tls
// (bpf/events.h).
mod pk {
    pub const IFINDEX: usize = 4;
    pub const TS: usize = 8;
    pub const DIRECTION: usize = 16;
    pub const FAMILY: usize = 17;
    pub const FLAGS: usize = 18;
    pub const SPORT: usize = 20;
    pub const DPORT: usize = 22;
    pub const SEQ: usize = 24;
    pub const ACK: usize = 28;
    pub const WINDOW: usize = 32;
    pub const PAYLOAD_LEN: usize = 36;
    pub const CAPTURED_LEN: usize = 40;
    pub const SADDR: usize = 44;
    pub const DADDR: usize = 60;
}
mod sc {
    pub const CALL: usize = 4;
    pub const ENTER: usize = 8;
    pub const EXIT: usize = 16;
    pub const PID: usize = 24;
    pub const TID: usize = 28;
    pub const FD: usize = 32;
    pub const FILE_KIND: usize = 36;
    pub const DEPTH: usize = 37;
    pub const RET: usize = 40;
    pub const OFFSET: usize = 48;
    pub const REQUESTED: usize = 56;
    pub const LPORT: usize = 64;
    pub const RPORT: usize = 66;
    pub const DATA_LEN: usize = 68;
}
mod tl {
    pub const PID: usize = 4;
    pub const TS: usize = 8;
    pub const CONN_ID: usize = 16;
    pub const OFFSET: usize = 24;
    pub const TID: usize = 32;
    pub const LEN: usize = 36;
    pub const DATA_LEN: usize = 40;
    pub const DIRECTION: usize = 44;
    pub const FAMILY: usize = 45;
    pub const LPORT: usize = 46;
    pub const RPORT: usize = 48;
    pub const LADDR: usize = 56;
    pub const RADDR: usize = 72;
}
mod sm {
    pub const TID: usize = 4;
    pub const ENTER: usize = 8;
    pub const AT: usize = 16;
    pub const DATA_LEN: usize = 20;
}
mod pr {
    pub const PID: usize = 4;
    pub const TS: usize = 8;
    pub const CHANGE: usize = 16;
    pub const EXIT_CODE: usize = 20;
}
// enum et_process_change
const PROCESS_START: u8 = 0;
const PROCESS_EXIT: u8 = 1;
const PROCESS_UNTRACED: u8 = 2;
const FILE_DATA: u8 = 1;
const FILE_SOCKET: u8 = 2;
const OFFSET_UNKNOWN: u64 = u64::MAX;

/// Why a raw event could not be parsed. The kernel wrote it, so this means a layout
/// mismatch (a bug), never hostile input; still, no panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("raw event of {0} bytes is too short")]
    Short(usize),
    #[error("unknown raw event type {0}")]
    UnknownType(u32),
    #[error("unknown syscall number {0} in raw event")]
    UnknownCall(u32),
    #[error("unknown file kind {0} in raw event")]
    UnknownFileKind(u8),
    #[error("TLS event captured {data_len} bytes of {len} (at most {TLS_CHUNK})")]
    TlsLength { len: u32, data_len: u32 },
    #[error("unknown direction {0} in raw TLS event")]
    UnknownDirection(u8),
    #[error("unknown address family {0} in raw TLS event")]
    UnknownFamily(u8),
    #[error("unknown process change {0} in raw process event")]
    UnknownChange(u8),
    #[error("part of a WAL write with {0} bytes (at most {MAX_DATA})")]
    MoreLength(u32),
}

/// More of a WAL write's buffer (struct et_syscall_more), for the syscall event of the
/// same thread and `enter_ns` just before it: not an event of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallMore {
    pub tid: u32,
    pub enter_ns: u64,
    /// Where `data` starts in the write's buffer.
    pub at: u32,
    pub data: Bytes,
}

/// The part of a WAL write the raw event at `range` of `batch` holds; None when it
/// holds something else.
pub fn syscall_more(
    batch: &Bytes,
    range: Range<usize>,
) -> Option<Result<SyscallMore, LayoutError>> {
    let raw = batch.get(range.clone())?;
    if raw.get(..4).map(|t| u32_at(t, 0)) != Some(ET_SYSCALL_MORE) {
        return None;
    }
    Some(more_data_len(raw).map(|len| SyscallMore {
        tid: u32_at(raw, sm::TID),
        enter_ns: u64_at(raw, sm::ENTER),
        at: u32_at(raw, sm::AT),
        data: batch.slice(
            range.start + SYSCALL_MORE_HEADER_LEN..range.start + SYSCALL_MORE_HEADER_LEN + len,
        ),
    }))
}

/// The bytes a part of a WAL write carries, checked against its header and the bound.
fn more_data_len(raw: &[u8]) -> Result<usize, LayoutError> {
    if raw.len() < SYSCALL_MORE_HEADER_LEN {
        return Err(LayoutError::Short(raw.len()));
    }
    let len = u32_at(raw, sm::DATA_LEN);
    if len > MAX_DATA {
        return Err(LayoutError::MoreLength(len));
    }
    let len = len as usize;
    if raw.len() < SYSCALL_MORE_HEADER_LEN + len {
        return Err(LayoutError::Short(raw.len()));
    }
    Ok(len)
}

/// A process event of the programs (struct et_process): what the recorder learns of a
/// traced etcd's start or end, before it looks at the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelProcess {
    pub pid: u32,
    pub ts_ns: u64,
    pub change: KernelChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelChange {
    /// It exec'd etcd and is traced from then on.
    Start,
    /// It ended; its wait(2) status.
    Exit { status: i32 },
    /// It exec'd etcd, but the programs trace as many processes as they can already.
    Untraced,
}

/// The process event a raw record holds; None when it holds something else (a batch,
/// another single event). Process events never come in batches.
pub fn process_event(raw: &[u8]) -> Option<Result<KernelProcess, LayoutError>> {
    if raw.get(..4).map(|t| u32_at(t, 0)) != Some(ET_PROCESS) {
        return None;
    }
    if raw.len() < PROCESS_LEN {
        return Some(Err(LayoutError::Short(raw.len())));
    }
    let change = match raw[pr::CHANGE] {
        PROCESS_START => KernelChange::Start,
        PROCESS_EXIT => KernelChange::Exit {
            status: u32_at(raw, pr::EXIT_CODE) as i32,
        },
        PROCESS_UNTRACED => KernelChange::Untraced,
        other => return Some(Err(LayoutError::UnknownChange(other))),
    };
    Some(Ok(KernelProcess {
        pid: u32_at(raw, pr::PID),
        ts_ns: u64_at(raw, pr::TS),
        change,
    }))
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

mod bt {
    pub const COUNT: usize = 4;
    pub const LEN: usize = 8;
    pub const STAGE: usize = 12;
}

/// The header of a raw record that is a batch; None for a single event.
fn batch_header(raw: &[u8]) -> Option<&[u8]> {
    raw.get(..BATCH_HEADER_LEN)
        .filter(|head| u32_at(head, 0) == ET_BATCH)
}

/// Which staging area a batch came from (its events are in time order, and so are its
/// batches); None for a single event.
pub fn batch_stage(raw: &[u8]) -> Option<u32> {
    batch_header(raw).map(|head| u32_at(head, bt::STAGE))
}

/// How many events a raw record holds: a batch's count, else one.
pub fn event_count(raw: &[u8]) -> u64 {
    batch_header(raw).map_or(1, |head| u64::from(u32_at(head, bt::COUNT)))
}

/// Where the events of the raw record at `range` of `bytes` lie: each event of a batch,
/// or the record itself when it is a single event. A batch whose events do not add up
/// ends with an error (nothing after it can be found).
pub fn batch_events(
    bytes: &[u8],
    range: Range<usize>,
) -> impl Iterator<Item = Result<Range<usize>, LayoutError>> + '_ {
    let raw = bytes.get(range.clone()).unwrap_or_default();
    let (mut at, end, single) = match batch_header(raw) {
        Some(head) => {
            let len = u32_at(head, bt::LEN) as usize;
            let start = range.start + BATCH_HEADER_LEN;
            (start, start.saturating_add(len).min(range.end), false)
        }
        None => (range.start, range.end, true),
    };
    let first = at;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || at >= end {
            return None;
        }
        if single {
            done = true;
            return Some(Ok(at..end));
        }
        let next = match event_len(&bytes[at..end]) {
            Ok(len) => Ok(at..at + len),
            Err(e) => Err(e),
        };
        match &next {
            // Each event starts 8-byte aligned within the batch.
            Ok(r) => at = first + ((r.end - first).saturating_add(7) & !7),
            Err(_) => done = true,
        }
        Some(next)
    })
}

/// The length of the event at the start of `raw` (within a batch), from its own header.
fn event_len(raw: &[u8]) -> Result<usize, LayoutError> {
    let need = |len: usize| {
        if len <= raw.len() {
            Ok(len)
        } else {
            Err(LayoutError::Short(raw.len()))
        }
    };
    match raw.get(..4).map(|t| u32_at(t, 0)) {
        Some(ET_PACKET) => {
            need(PACKET_HEADER_LEN)?;
            need(PACKET_HEADER_LEN + u32_at(raw, pk::CAPTURED_LEN) as usize)
        }
        Some(ET_SYSCALL) => {
            need(NAMES_OFFSET)?;
            let depth = (raw[sc::DEPTH] as usize).min(PATH_DEPTH);
            need(NAMES_OFFSET + depth * NAME_LEN + u32_at(raw, sc::DATA_LEN) as usize)
        }
        Some(ET_TLS) => {
            need(TLS_HEADER_LEN)?;
            need(TLS_HEADER_LEN + tls_data_len(raw)? as usize)
        }
        Some(ET_SYSCALL_MORE) => Ok(SYSCALL_MORE_HEADER_LEN + more_data_len(raw)?),
        Some(other) => Err(LayoutError::UnknownType(other)),
        None => Err(LayoutError::Short(raw.len())),
    }
}

/// Parse the raw event at `range` of `batch` (the bytes the ring or perf buffer handed
/// over). Payloads are slices of `batch`: shared, not copied.
pub fn parse(batch: &Bytes, range: Range<usize>) -> Result<Event, LayoutError> {
    let Some(raw) = batch.get(range.clone()) else {
        return Err(LayoutError::Short(0));
    };
    let share = |part: Range<usize>| batch.slice(range.start + part.start..range.start + part.end);
    if raw.len() < 4 {
        return Err(LayoutError::Short(raw.len()));
    }
    match u32_at(raw, 0) {
        ET_PACKET => parse_packet(raw, share).map(Event::Packet),
        ET_SYSCALL => parse_syscall(raw, share).map(Event::Syscall),
        ET_TLS => parse_tls(raw, share).map(Event::Tls),
        other => Err(LayoutError::UnknownType(other)),
    }
}

/// The IPv4 (first 4 bytes) or IPv6 address at `off`.
fn ip_at(raw: &[u8], off: usize, v6: bool) -> IpAddr {
    if v6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&raw[off..off + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(
            raw[off],
            raw[off + 1],
            raw[off + 2],
            raw[off + 3],
        ))
    }
}

/// A TLS event's captured bytes, checked against what it stands for (`raw` holds its
/// header).
fn tls_data_len(raw: &[u8]) -> Result<u32, LayoutError> {
    let len = u32_at(raw, tl::LEN);
    let data_len = u32_at(raw, tl::DATA_LEN);
    if data_len > len || data_len > TLS_CHUNK {
        return Err(LayoutError::TlsLength { len, data_len });
    }
    Ok(data_len)
}

fn parse_tls(raw: &[u8], share: impl Fn(Range<usize>) -> Bytes) -> Result<TlsData, LayoutError> {
    if raw.len() < TLS_HEADER_LEN {
        return Err(LayoutError::Short(raw.len()));
    }
    let end = TLS_HEADER_LEN + tls_data_len(raw)? as usize;
    if raw.len() < end {
        return Err(LayoutError::Short(raw.len()));
    }
    let direction = match raw[tl::DIRECTION] {
        0 => Direction::Ingress,
        1 => Direction::Egress,
        other => return Err(LayoutError::UnknownDirection(other)),
    };
    let endpoints = match raw[tl::FAMILY] {
        0 => None,
        family @ (4 | 6) => Some(TlsEndpoints {
            local: SocketAddr::new(ip_at(raw, tl::LADDR, family == 6), u16_at(raw, tl::LPORT)),
            remote: SocketAddr::new(ip_at(raw, tl::RADDR, family == 6), u16_at(raw, tl::RPORT)),
        }),
        other => return Err(LayoutError::UnknownFamily(other)),
    };
    Ok(TlsData {
        ts_ns: u64_at(raw, tl::TS),
        pid: u32_at(raw, tl::PID),
        tid: u32_at(raw, tl::TID),
        conn_id: u64_at(raw, tl::CONN_ID),
        direction,
        endpoints,
        offset: u64_at(raw, tl::OFFSET),
        len: u32_at(raw, tl::LEN),
        data: share(TLS_HEADER_LEN..end),
    })
}

fn parse_packet(raw: &[u8], share: impl Fn(Range<usize>) -> Bytes) -> Result<Packet, LayoutError> {
    if raw.len() < PACKET_HEADER_LEN {
        return Err(LayoutError::Short(raw.len()));
    }
    let v6 = raw[pk::FAMILY] == 6;
    let addr = |off: usize| ip_at(raw, off, v6);
    let captured = u32_at(raw, pk::CAPTURED_LEN) as usize;
    let end = PACKET_HEADER_LEN.saturating_add(captured).min(raw.len());
    Ok(Packet {
        ts_ns: u64_at(raw, pk::TS),
        ifindex: u32_at(raw, pk::IFINDEX),
        direction: if raw[pk::DIRECTION] == 1 {
            Direction::Egress
        } else {
            Direction::Ingress
        },
        src: SocketAddr::new(addr(pk::SADDR), u16_at(raw, pk::SPORT)),
        dst: SocketAddr::new(addr(pk::DADDR), u16_at(raw, pk::DPORT)),
        seq: u32_at(raw, pk::SEQ),
        ack: u32_at(raw, pk::ACK),
        flags: TcpFlags(raw[pk::FLAGS]),
        window: u16_at(raw, pk::WINDOW),
        payload_len: u32_at(raw, pk::PAYLOAD_LEN),
        payload: share(PACKET_HEADER_LEN.min(end)..end),
    })
}

fn call_of(n: u32) -> Result<SyscallKind, LayoutError> {
    SyscallKind::from_code(n).ok_or(LayoutError::UnknownCall(n))
}

fn parse_syscall(
    raw: &[u8],
    share: impl Fn(Range<usize>) -> Bytes,
) -> Result<Syscall, LayoutError> {
    if raw.len() < NAMES_OFFSET {
        return Err(LayoutError::Short(raw.len()));
    }
    let call = call_of(u32_at(raw, sc::CALL))?;
    let kind = raw[sc::FILE_KIND];
    let depth = (raw[sc::DEPTH] as usize).min(PATH_DEPTH);
    // Only the names in use are sent; the data follows them.
    let data_at = NAMES_OFFSET + depth * NAME_LEN;
    if raw.len() < data_at {
        return Err(LayoutError::Short(raw.len()));
    }
    let file = match kind {
        FILE_DATA => {
            // names[0] is the file, names[1] its parent, ...: join them outermost first,
            // into one string (this runs for every WAL write and sync).
            let mut path = String::with_capacity(depth * 24);
            for i in (0..depth).rev() {
                let off = NAMES_OFFSET + i * NAME_LEN;
                let name = &raw[off..off + NAME_LEN];
                let len = name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
                if i + 1 < depth {
                    path.push('/');
                }
                path.push_str(&String::from_utf8_lossy(&name[..len]));
            }
            FileRef {
                kind: FileKind::of_data_path(&path),
                path,
                local_port: 0,
                peer_port: 0,
            }
        }
        FILE_SOCKET => FileRef {
            kind: FileKind::Socket,
            path: String::new(),
            local_port: u16_at(raw, sc::LPORT),
            peer_port: u16_at(raw, sc::RPORT),
        },
        other => return Err(LayoutError::UnknownFileKind(other)),
    };
    let offset = u64_at(raw, sc::OFFSET);
    let data_len = u32_at(raw, sc::DATA_LEN) as usize;
    let end = data_at.saturating_add(data_len).min(raw.len());
    Ok(Syscall {
        enter_ns: u64_at(raw, sc::ENTER),
        exit_ns: u64_at(raw, sc::EXIT),
        pid: u32_at(raw, sc::PID),
        tid: u32_at(raw, sc::TID),
        call,
        fd: u32_at(raw, sc::FD) as i32,
        offset: if offset == OFFSET_UNKNOWN || kind == FILE_SOCKET || call.is_sync() {
            None
        } else {
            Some(offset)
        },
        requested: u64_at(raw, sc::REQUESTED),
        ret: u64_at(raw, sc::RET) as i64,
        file,
        data: share(data_at.min(end)..end),
    })
}

/// A raw syscall event as the programs write it (tests): entered at 100 ns, left at
/// 350 ns, pid 42, tid 43, fd 7, local port 2379, peer port 50000.
#[cfg(test)]
pub(crate) fn syscall_raw(call: u32, kind: u8, names: &[&str], data: &[u8]) -> Bytes {
    let mut raw = vec![0u8; NAMES_OFFSET + names.len() * NAME_LEN];
    raw[0..4].copy_from_slice(&ET_SYSCALL.to_ne_bytes());
    raw[4..8].copy_from_slice(&call.to_ne_bytes());
    raw[8..16].copy_from_slice(&100u64.to_ne_bytes());
    raw[16..24].copy_from_slice(&350u64.to_ne_bytes());
    raw[24..28].copy_from_slice(&42u32.to_ne_bytes());
    raw[28..32].copy_from_slice(&43u32.to_ne_bytes());
    raw[32..36].copy_from_slice(&7i32.to_ne_bytes());
    raw[36] = kind;
    raw[37] = names.len() as u8;
    raw[40..48].copy_from_slice(&(data.len() as i64).to_ne_bytes());
    raw[48..56].copy_from_slice(&4096u64.to_ne_bytes());
    raw[56..64].copy_from_slice(&(data.len() as u64).to_ne_bytes());
    raw[64..66].copy_from_slice(&2379u16.to_ne_bytes());
    raw[66..68].copy_from_slice(&50000u16.to_ne_bytes());
    raw[68..72].copy_from_slice(&(data.len() as u32).to_ne_bytes());
    for (i, n) in names.iter().enumerate() {
        let off = NAMES_OFFSET + i * NAME_LEN;
        raw[off..off + n.len()].copy_from_slice(n.as_bytes());
    }
    raw.extend_from_slice(data);
    Bytes::from(raw)
}

/// A part of a long WAL write as the programs write it, for the event of
/// [`syscall_raw`] (tid 43, entered at 100 ns).
#[cfg(test)]
pub(crate) fn syscall_more_raw(at: u32, data: &[u8]) -> Vec<u8> {
    let mut raw = vec![0u8; SYSCALL_MORE_HEADER_LEN];
    raw[0..4].copy_from_slice(&ET_SYSCALL_MORE.to_ne_bytes());
    raw[sm::TID..sm::TID + 4].copy_from_slice(&43u32.to_ne_bytes());
    raw[sm::ENTER..sm::ENTER + 8].copy_from_slice(&100u64.to_ne_bytes());
    raw[sm::AT..sm::AT + 4].copy_from_slice(&at.to_ne_bytes());
    raw[sm::DATA_LEN..sm::DATA_LEN + 4].copy_from_slice(&(data.len() as u32).to_ne_bytes());
    raw.extend_from_slice(data);
    raw
}

/// A TLS event as the programs write it: pid 42, tid 43, connection 9, at 500 ns,
/// offset 1000, standing for `len` bytes of which `data` was read; `family` 0
/// leaves the addresses out.
#[cfg(test)]
pub(crate) fn tls_raw(direction: u8, family: u8, len: u32, data: &[u8]) -> Vec<u8> {
    let mut raw = vec![0u8; TLS_HEADER_LEN];
    raw[0..4].copy_from_slice(&ET_TLS.to_ne_bytes());
    raw[tl::PID..tl::PID + 4].copy_from_slice(&42u32.to_ne_bytes());
    raw[tl::TS..tl::TS + 8].copy_from_slice(&500u64.to_ne_bytes());
    raw[tl::CONN_ID..tl::CONN_ID + 8].copy_from_slice(&9u64.to_ne_bytes());
    raw[tl::OFFSET..tl::OFFSET + 8].copy_from_slice(&1000u64.to_ne_bytes());
    raw[tl::TID..tl::TID + 4].copy_from_slice(&43u32.to_ne_bytes());
    raw[tl::LEN..tl::LEN + 4].copy_from_slice(&len.to_ne_bytes());
    raw[tl::DATA_LEN..tl::DATA_LEN + 4].copy_from_slice(&(data.len() as u32).to_ne_bytes());
    raw[tl::DIRECTION] = direction;
    raw[tl::FAMILY] = family;
    if family != 0 {
        raw[tl::LPORT..tl::LPORT + 2].copy_from_slice(&2379u16.to_ne_bytes());
        raw[tl::RPORT..tl::RPORT + 2].copy_from_slice(&50000u16.to_ne_bytes());
        let (local, remote): (&[u8], &[u8]) = if family == 6 {
            (&[0xfd; 16], &[0xfe; 16])
        } else {
            (&[10, 0, 0, 1], &[10, 0, 0, 2])
        };
        raw[tl::LADDR..tl::LADDR + local.len()].copy_from_slice(local);
        raw[tl::RADDR..tl::RADDR + remote.len()].copy_from_slice(remote);
    }
    raw.extend_from_slice(data);
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(raw: &Bytes) -> Result<Event, LayoutError> {
        parse(raw, 0..raw.len())
    }

    #[test]
    fn sizes_match_the_header() {
        // The object records sizeof() of the structs as compiled; opening it parses the
        // ELF only (no privileges needed).
        use libbpf_rs::skel::SkelBuilder;
        let mut object = std::mem::MaybeUninit::uninit();
        let open = crate::record::skel::EtcdTraceSkelBuilder::default()
            .open(&mut object)
            .unwrap();
        let rodata = open.maps.rodata_data.as_deref().unwrap();
        assert_eq!(rodata.packet_header_size as usize, PACKET_HEADER_LEN);
        assert_eq!(rodata.syscall_header_size as usize, SYSCALL_HEADER_LEN);
        assert_eq!(rodata.batch_header_size as usize, BATCH_HEADER_LEN);
        assert_eq!(rodata.tls_header_size as usize, TLS_HEADER_LEN);
        let packet = [
            pk::TS,
            pk::SPORT,
            pk::SEQ,
            pk::WINDOW,
            pk::PAYLOAD_LEN,
            pk::CAPTURED_LEN,
            pk::SADDR,
            pk::DADDR,
        ];
        let compiled =
            |offsets: &[u32]| -> Vec<usize> { offsets.iter().map(|&o| o as usize).collect() };
        assert_eq!(compiled(&rodata.packet_offsets), packet);
        let syscall = [
            sc::ENTER,
            sc::PID,
            sc::FD,
            sc::FILE_KIND,
            sc::RET,
            sc::OFFSET,
            sc::REQUESTED,
            sc::LPORT,
            sc::DATA_LEN,
            NAMES_OFFSET,
        ];
        assert_eq!(compiled(&rodata.syscall_offsets), syscall);
        let tls = [
            tl::TS,
            tl::CONN_ID,
            tl::OFFSET,
            tl::TID,
            tl::LEN,
            tl::DATA_LEN,
            tl::DIRECTION,
            tl::FAMILY,
            tl::LPORT,
            tl::RPORT,
            tl::LADDR,
            tl::RADDR,
        ];
        assert_eq!(compiled(&rodata.tls_offsets), tls);
        assert_eq!(
            rodata.syscall_more_header_size as usize,
            SYSCALL_MORE_HEADER_LEN
        );
        let more = [sm::TID, sm::ENTER, sm::AT, sm::DATA_LEN];
        assert_eq!(compiled(&rodata.syscall_more_offsets), more);
        assert_eq!(rodata.process_header_size as usize, PROCESS_LEN);
        let process = [pr::PID, pr::TS, pr::CHANGE, pr::EXIT_CODE];
        assert_eq!(compiled(&rodata.process_offsets), process);
        use crate::record::latency;
        assert_eq!(rodata.hist_size as usize, latency::HIST_LEN);
        let shape = [latency::BUCKETS, latency::KINDS, latency::DIR_SLOTS];
        assert_eq!(compiled(&rodata.hist_shape), shape);
    }

    /// A process event as the programs write it.
    fn process_raw(pid: u32, change: u8, exit_code: i32) -> Vec<u8> {
        let mut raw = vec![0u8; PROCESS_LEN];
        raw[0..4].copy_from_slice(&ET_PROCESS.to_ne_bytes());
        raw[pr::PID..pr::PID + 4].copy_from_slice(&pid.to_ne_bytes());
        raw[pr::TS..pr::TS + 8].copy_from_slice(&77u64.to_ne_bytes());
        raw[pr::CHANGE] = change;
        raw[pr::EXIT_CODE..pr::EXIT_CODE + 4].copy_from_slice(&exit_code.to_ne_bytes());
        raw
    }

    #[test]
    fn process_events_are_told_apart_and_parsed() {
        let start = process_event(&process_raw(4301, PROCESS_START, 0));
        assert_eq!(
            start,
            Some(Ok(KernelProcess {
                pid: 4301,
                ts_ns: 77,
                change: KernelChange::Start
            }))
        );
        let end = process_event(&process_raw(4242, PROCESS_EXIT, 9)).unwrap();
        assert_eq!(end.unwrap().change, KernelChange::Exit { status: 9 });
        let full = process_event(&process_raw(1, PROCESS_UNTRACED, 0)).unwrap();
        assert_eq!(full.unwrap().change, KernelChange::Untraced);
        assert_eq!(
            process_event(&process_raw(1, 7, 0)),
            Some(Err(LayoutError::UnknownChange(7)))
        );
        assert_eq!(
            process_event(&process_raw(1, 0, 0)[..20]),
            Some(Err(LayoutError::Short(20)))
        );
        // Anything else is not a process event.
        assert_eq!(process_event(&syscall_raw(3, FILE_SOCKET, &[], b"")), None);
        assert_eq!(process_event(&[5, 0]), None);
    }

    fn parse_tls_raw(raw: Vec<u8>) -> Result<TlsData, LayoutError> {
        match parse_all(&Bytes::from(raw))? {
            Event::Tls(t) => Ok(t),
            other => panic!("not a TLS event: {other:?}"),
        }
    }

    #[test]
    fn tls_events_parse_with_and_without_their_socket() {
        let t = parse_tls_raw(tls_raw(1, 4, 5, b"hello")).unwrap();
        assert_eq!(
            (t.ts_ns, t.pid, t.tid, t.conn_id, t.offset, t.len),
            (500, 42, 43, 9, 1000, 5)
        );
        assert_eq!(t.direction, Direction::Egress);
        assert_eq!(
            t.endpoints,
            Some(TlsEndpoints {
                local: "10.0.0.1:2379".parse().unwrap(),
                remote: "10.0.0.2:50000".parse().unwrap(),
            })
        );
        assert_eq!(t.data, &b"hello"[..]);
        assert!(!t.truncated());

        let t = parse_tls_raw(tls_raw(0, 6, 100, b"abc")).unwrap();
        assert_eq!(t.direction, Direction::Ingress);
        let ends = t.endpoints.unwrap();
        assert_eq!(
            ends.local,
            "[fdfd:fdfd:fdfd:fdfd:fdfd:fdfd:fdfd:fdfd]:2379"
                .parse()
                .unwrap()
        );
        assert_eq!(
            ends.remote,
            "[fefe:fefe:fefe:fefe:fefe:fefe:fefe:fefe]:50000"
                .parse()
                .unwrap()
        );
        assert_eq!(t.data, &b"abc"[..]);
        assert!(t.truncated());

        let t = parse_tls_raw(tls_raw(1, 0, 0, b"")).unwrap();
        assert_eq!(t.endpoints, None);
        assert!(t.data.is_empty());
    }

    #[test]
    fn inconsistent_tls_events_are_errors() {
        // More captured than the event stands for; more than a chunk.
        assert_eq!(
            parse_tls_raw(tls_raw(1, 4, 2, b"abc")),
            Err(LayoutError::TlsLength {
                len: 2,
                data_len: 3
            })
        );
        let big = vec![0u8; TLS_CHUNK as usize + 1];
        assert_eq!(
            parse_tls_raw(tls_raw(1, 4, u32::MAX, &big)),
            Err(LayoutError::TlsLength {
                len: u32::MAX,
                data_len: TLS_CHUNK + 1
            })
        );
        assert!(parse_tls_raw(tls_raw(1, 4, TLS_CHUNK, &big[1..])).is_ok());
        // Cut in the header, and in the data.
        let raw = tls_raw(1, 4, 5, b"hello");
        for cut in [4, TLS_HEADER_LEN - 1, TLS_HEADER_LEN, raw.len() - 1] {
            assert_eq!(
                parse_tls_raw(raw[..cut].to_vec()),
                Err(LayoutError::Short(cut)),
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_tls_raw(tls_raw(2, 4, 0, b"")),
            Err(LayoutError::UnknownDirection(2))
        );
        assert_eq!(
            parse_tls_raw(tls_raw(1, 5, 0, b"")),
            Err(LayoutError::UnknownFamily(5))
        );
    }

    #[test]
    fn tls_events_are_found_in_batches() {
        let first = tls_raw(1, 0, 5, b"hello");
        let second = tls_raw(0, 4, 300, b"x");
        let syscall = syscall_raw(3, FILE_SOCKET, &[], b"");
        let (raw, range) = batch_raw(4, &[&first, &syscall, &second]);
        let bytes = Bytes::from(raw);
        let events: Vec<Event> = batch_events(&bytes, range.clone())
            .map(|r| parse(&bytes, r.unwrap()).unwrap())
            .collect();
        let kinds: Vec<_> = events.iter().map(Event::kind).collect();
        use crate::capture::EventKind;
        assert_eq!(kinds, [EventKind::Tls, EventKind::Syscall, EventKind::Tls]);
        let Event::Tls(t) = &events[2] else {
            panic!("not a TLS event")
        };
        assert_eq!((t.len, &t.data[..]), (300, &b"x"[..]));

        // A TLS event whose length does not add up ends the batch with an error.
        let mut raw = bytes.to_vec();
        let at = range.start + BATCH_HEADER_LEN + tl::DATA_LEN;
        raw[at..at + 4].copy_from_slice(&(TLS_CHUNK + 1).to_ne_bytes());
        let got: Vec<_> = batch_events(&raw, range).collect();
        assert!(matches!(got[..], [Err(LayoutError::TlsLength { .. })]));
    }

    #[test]
    fn wal_write_path_is_joined_outermost_first() {
        let raw = syscall_raw(
            0,
            FILE_DATA,
            &["0000000000000000-0000000000000000.wal", "wal", "member"],
            b"abc",
        );
        let Event::Syscall(s) = parse_all(&raw).unwrap() else {
            panic!("not a syscall")
        };
        assert_eq!(
            s.file.path,
            "member/wal/0000000000000000-0000000000000000.wal"
        );
        assert_eq!(s.file.kind, FileKind::Wal);
        assert_eq!(s.offset, Some(4096));
        assert_eq!(s.data, &b"abc"[..]);
        assert_eq!(s.duration_ns(), 250);
    }

    #[test]
    fn socket_read_has_ports_and_no_offset() {
        let raw = syscall_raw(3, FILE_SOCKET, &[], b"");
        let Event::Syscall(s) = parse_all(&raw).unwrap() else {
            panic!("not a syscall")
        };
        assert_eq!(s.file.kind, FileKind::Socket);
        assert_eq!((s.file.local_port, s.file.peer_port), (2379, 50000));
        assert_eq!(s.offset, None);
    }

    /// A packet event with `payload` captured.
    fn packet_raw(payload: &[u8]) -> Vec<u8> {
        let mut raw = vec![0u8; PACKET_HEADER_LEN];
        raw[0..4].copy_from_slice(&ET_PACKET.to_ne_bytes());
        raw[pk::FAMILY] = 4;
        raw[pk::CAPTURED_LEN..pk::CAPTURED_LEN + 4]
            .copy_from_slice(&(payload.len() as u32).to_ne_bytes());
        raw.extend_from_slice(payload);
        raw
    }

    /// A batch as the programs hand it over, behind `lead` bytes (the drain's length
    /// prefix puts batches at any alignment).
    fn batch_raw(lead: usize, events: &[&[u8]]) -> (Vec<u8>, Range<usize>) {
        let mut body = Vec::new();
        for ev in events {
            body.extend_from_slice(ev);
            body.resize(body.len().next_multiple_of(8), 0xee);
        }
        let mut raw = vec![0u8; lead];
        raw.extend_from_slice(&ET_BATCH.to_ne_bytes());
        raw.extend_from_slice(&(events.len() as u32).to_ne_bytes());
        raw.extend_from_slice(&(body.len() as u32).to_ne_bytes());
        raw.extend_from_slice(&3u32.to_ne_bytes());
        raw.extend_from_slice(&body);
        let range = lead..raw.len();
        (raw, range)
    }

    #[test]
    fn a_batch_is_split_into_its_events_wherever_it_lies() {
        let packet = packet_raw(b"hello");
        let syscall = syscall_raw(3, FILE_SOCKET, &[], b"");
        let wal = syscall_raw(0, FILE_DATA, &["0.wal", "wal", "member"], b"abc");
        for lead in [0, 4, 5] {
            let (raw, range) = batch_raw(lead, &[&packet, &syscall, &wal]);
            assert_eq!(event_count(&raw[range.clone()]), 3);
            assert_eq!(batch_stage(&raw[range.clone()]), Some(3));
            let bytes = Bytes::from(raw);
            let events: Vec<Event> = batch_events(&bytes, range)
                .map(|r| parse(&bytes, r.unwrap()).unwrap())
                .collect();
            assert_eq!(events.len(), 3, "lead {lead}");
            let Event::Packet(p) = &events[0] else {
                panic!("not a packet")
            };
            assert_eq!(p.payload, &b"hello"[..]);
            let Event::Syscall(s) = &events[2] else {
                panic!("not a syscall")
            };
            assert_eq!(s.file.path, "member/wal/0.wal");
            assert_eq!(s.data, &b"abc"[..]);
        }
    }

    #[test]
    fn a_single_event_is_its_own_range() {
        let raw = syscall_raw(3, FILE_SOCKET, &[], b"");
        assert_eq!(event_count(&raw), 1);
        assert_eq!(batch_stage(&raw), None);
        let ranges: Vec<_> = batch_events(&raw, 0..raw.len()).collect();
        assert_eq!(ranges, [Ok(0..raw.len())]);
    }

    #[test]
    fn a_batch_that_does_not_add_up_ends_with_an_error() {
        let packet = packet_raw(b"hello");
        let (mut raw, range) = batch_raw(0, &[&packet, &packet]);
        // The second packet claims more payload than the batch holds.
        let second = BATCH_HEADER_LEN + packet.len().next_multiple_of(8);
        raw[second + pk::CAPTURED_LEN..second + pk::CAPTURED_LEN + 4]
            .copy_from_slice(&1000u32.to_ne_bytes());
        let got: Vec<_> = batch_events(&raw, range.clone()).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert!(matches!(got[1], Err(LayoutError::Short(_))));
        // An unknown type inside a batch stops it too.
        raw[second..second + 4].copy_from_slice(&7u32.to_ne_bytes());
        let got: Vec<_> = batch_events(&raw, range).collect();
        assert_eq!(got[1], Err(LayoutError::UnknownType(7)));
    }

    #[test]
    fn short_and_unknown_events_are_errors() {
        assert_eq!(
            parse_all(&Bytes::from_static(&[1, 0])),
            Err(LayoutError::Short(2))
        );
        assert_eq!(
            parse_all(&Bytes::from_static(&[9, 0, 0, 0])),
            Err(LayoutError::UnknownType(9))
        );
        assert!(parse_all(&Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
    }
}
