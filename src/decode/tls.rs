//! TLS plaintext streams. On a TLS connection the packets carry ciphertext only; the
//! recorder takes the plaintext inside Go's crypto/tls instead, as chunks placed by
//! their offset in each direction's plaintext and named by an id the kernel gave the
//! connection. This puts the chunks back into two ordered byte streams per connection,
//! with every byte not seen reported as a gap, names the connection by its TCP
//! endpoints, and emits the same [`TcpEvent`]s as TCP reassembly, so the HTTP/2
//! decoders take plaintext and cleartext alike.
//!
//! A chunk's addresses are known once the recorder has seen the connection's socket (a
//! client's first Write does the handshake after the probe has fired): chunks before
//! that wait, within a bound, for a later chunk of the same connection that names them.
//!
//! When both ends of a connection are traced (two members on one host, or etcd talking
//! to itself), the same bytes come twice, once from each end's view: the first view
//! placed is kept and the other, which has the opposite role, is counted and dropped.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};

use crate::capture::{Direction, TlsData, TlsEndpoints};
use crate::decode::tcp::{ConnectionKey, FlowDirection, GapReason, TcpEvent};

/// Plaintext bytes kept per connection while its endpoints are unknown, and per
/// direction while a hole in front of them may still be filled.
const MAX_WAITING_BYTES: usize = 4 << 20;
/// Chunks kept out of order per direction.
const MAX_WAITING_CHUNKS: usize = 4096;
/// Capture time a hole may stay open: chunks of one direction are numbered in the
/// kernel as they are taken, so a hole lasting this long is a lost event.
const HOLE_GRACE_NS: u64 = 200_000_000;
/// Connections silent this long are forgotten (their state, not their bytes).
const IDLE_NS: u64 = 120_000_000_000;
/// How often (in chunks) idle connections are swept.
const SWEEP_EVERY: u64 = 4096;

/// The first bytes of a TLS record: handshake, alert, change cipher spec or application
/// data, version 3.x, a length a record can have. An HTTP/2 stream never starts so: a
/// client's starts with its preface, a server's with a frame header whose first byte is
/// the high byte of a length below 2^16 (0).
pub fn looks_like_tls_record(bytes: &[u8]) -> bool {
    match bytes {
        [t, 3, minor, hi, lo, ..] => {
            (0x14..=0x17).contains(t)
                && *minor <= 4
                && u16::from_be_bytes([*hi, *lo]) <= (1 << 14) + 2048
        }
        _ => false,
    }
}

/// Counters over a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsStats {
    pub chunks: u64,
    /// Plaintext bytes the chunks stand for.
    pub bytes: u64,
    /// Connections whose endpoints became known.
    pub connections: u64,
    /// Plaintext bytes of connections whose endpoints never became known.
    pub unplaced_bytes: u64,
    /// Plaintext bytes of the second view of a connection traced at both ends.
    pub mirrored_bytes: u64,
}

/// Plaintext chunks in, [`TcpEvent`]s out. Feed chunks in capture-time order.
#[derive(Debug)]
pub struct TlsReassembler {
    server_ports: Vec<u16>,
    conns: HashMap<(u32, u64), Stream>,
    /// The view each TCP connection is decoded from, and which way its writes flow.
    views: HashMap<ConnectionKey, ((u32, u64), FlowDirection)>,
    stats: TlsStats,
    since_sweep: u64,
}

/// One TLS connection of one etcd process.
#[derive(Debug, Default)]
struct Stream {
    /// The TCP connection, and which way etcd's writes flow on it.
    placed: Option<(ConnectionKey, FlowDirection)>,
    /// The other end's view of a connection already decoded: dropped.
    mirror: bool,
    /// Chunks that came before the endpoints were known.
    unplaced: Vec<TlsData>,
    unplaced_bytes: usize,
    halves: [Half; 2],
    last_ts: u64,
}

/// One direction's plaintext.
#[derive(Debug, Default)]
struct Half {
    /// Next offset to deliver.
    next: u64,
    /// Chunks ahead of `next`, by offset.
    ahead: BTreeMap<u64, Chunk>,
    ahead_bytes: usize,
}

#[derive(Debug)]
struct Chunk {
    ts_ns: u64,
    len: u64,
    data: Bytes,
}

fn index(dir: FlowDirection) -> usize {
    match dir {
        FlowDirection::ClientToServer => 0,
        FlowDirection::ServerToClient => 1,
    }
}

/// IPv4 addresses as packets carry them, also where etcd's socket is dual-stack IPv6.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The TCP connection under a TLS connection with these ends, and which way etcd's
/// writes flow on it: the end on a server port is the server, as for a lone segment.
pub fn placement(
    ends: &TlsEndpoints,
    is_server_port: impl Fn(u16) -> bool,
) -> (ConnectionKey, FlowDirection) {
    ConnectionKey::of_segment(
        canonical(ends.local),
        canonical(ends.remote),
        is_server_port,
    )
}

/// Which way a chunk etcd wrote (`Egress`) or read flows, given the way of its writes.
pub fn flow(etcd_writes: FlowDirection, direction: Direction) -> FlowDirection {
    match direction {
        Direction::Egress => etcd_writes,
        Direction::Ingress => etcd_writes.reverse(),
    }
}

impl TlsReassembler {
    /// A reassembler that takes the end on one of `server_ports` as the server.
    pub fn new(server_ports: Vec<u16>) -> TlsReassembler {
        TlsReassembler {
            server_ports,
            conns: HashMap::new(),
            views: HashMap::new(),
            stats: TlsStats::default(),
            since_sweep: 0,
        }
    }

    pub fn stats(&self) -> &TlsStats {
        &self.stats
    }

    /// Takes one chunk; what it completes goes to `out`.
    pub fn push(&mut self, chunk: &TlsData, out: &mut Vec<TcpEvent>) {
        self.stats.chunks += 1;
        self.stats.bytes += u64::from(chunk.len);
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.sweep(chunk.ts_ns, out);
        }
        let id = (chunk.pid, chunk.conn_id);
        let stream = self.conns.entry(id).or_default();
        stream.last_ts = stream.last_ts.max(chunk.ts_ns);
        if stream.mirror {
            self.stats.mirrored_bytes += u64::from(chunk.len);
            return;
        }
        if stream.placed.is_none() {
            let Some(ends) = chunk.endpoints else {
                if stream.unplaced_bytes + chunk.data.len() <= MAX_WAITING_BYTES {
                    stream.unplaced_bytes += chunk.data.len();
                    stream.unplaced.push(chunk.clone());
                } else {
                    self.stats.unplaced_bytes += u64::from(chunk.len);
                }
                return;
            };
            let ports = &self.server_ports;
            let (key, etcd_writes) = placement(&ends, |p| ports.contains(&p));
            if self.is_mirror(id, key, etcd_writes) {
                let Some(stream) = self.conns.get_mut(&id) else {
                    return;
                };
                stream.mirror = true;
                let early: u64 = stream.unplaced.iter().map(|c| u64::from(c.len)).sum();
                self.stats.mirrored_bytes += early + u64::from(chunk.len);
                stream.unplaced = Vec::new();
                stream.unplaced_bytes = 0;
                return;
            }
            self.views.insert(key, (id, etcd_writes));
            self.stats.connections += 1;
            let Some(stream) = self.conns.get_mut(&id) else {
                return;
            };
            stream.placed = Some((key, etcd_writes));
            out.push(TcpEvent::Opened {
                key,
                ts_ns: stream
                    .unplaced
                    .first()
                    .map_or(chunk.ts_ns, |c| c.ts_ns.min(chunk.ts_ns)),
                // Whether the stream's start was seen is the TCP connection's to say.
                handshake_seen: false,
            });
            for early in std::mem::take(&mut stream.unplaced) {
                stream.place(&early, out);
            }
            stream.unplaced_bytes = 0;
        }
        let Some(stream) = self.conns.get_mut(&id) else {
            return;
        };
        stream.give_up_old_holes(chunk.ts_ns, out);
        stream.place(chunk, out);
    }

    /// A view of `key` with the opposite role of the live view already decoded is the
    /// other end's (a view with the same role is a new connection on the same ports).
    fn is_mirror(&self, id: (u32, u64), key: ConnectionKey, etcd_writes: FlowDirection) -> bool {
        self.views.get(&key).is_some_and(|&(other, other_writes)| {
            other != id && other_writes != etcd_writes && self.conns.contains_key(&other)
        })
    }

    /// The capture ended: every hole is a gap, every waiting byte delivered.
    pub fn finish(&mut self, out: &mut Vec<TcpEvent>) {
        let mut ids: Vec<(u32, u64)> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(mut stream) = self.conns.remove(&id) {
                self.stats.unplaced_bytes += stream.close(out);
            }
        }
    }

    /// Forget connections silent for a long while (their holes become gaps).
    fn sweep(&mut self, now_ns: u64, out: &mut Vec<TcpEvent>) {
        let idle: Vec<(u32, u64)> = self
            .conns
            .iter()
            .filter(|(_, s)| s.last_ts.saturating_add(IDLE_NS) < now_ns)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            if let Some(mut stream) = self.conns.remove(&id) {
                self.stats.unplaced_bytes += stream.close(out);
            }
        }
        let conns = &self.conns;
        self.views.retain(|_, (id, _)| conns.contains_key(id));
    }
}

impl Stream {
    /// The flow direction of a chunk etcd wrote or read.
    fn flow(&self, direction: Direction) -> Option<(ConnectionKey, FlowDirection)> {
        let (key, etcd_writes) = self.placed?;
        Some((key, flow(etcd_writes, direction)))
    }

    /// Put a chunk of a placed connection into its direction's stream.
    fn place(&mut self, chunk: &TlsData, out: &mut Vec<TcpEvent>) {
        let Some((key, dir)) = self.flow(chunk.direction) else {
            return;
        };
        let half = &mut self.halves[index(dir)];
        let end = chunk.offset.saturating_add(u64::from(chunk.len));
        if end <= half.next {
            return; // already delivered
        }
        if chunk.offset > half.next {
            if half.ahead.len() >= MAX_WAITING_CHUNKS
                || half.ahead_bytes + chunk.data.len() > MAX_WAITING_BYTES
            {
                half.give_up_first_hole(key, dir, out);
            }
            if chunk.offset > half.next {
                half.ahead_bytes += chunk.data.len();
                half.ahead.insert(
                    chunk.offset,
                    Chunk {
                        ts_ns: chunk.ts_ns,
                        len: u64::from(chunk.len),
                        data: chunk.data.clone(),
                    },
                );
                return;
            }
        }
        half.deliver(
            key,
            dir,
            chunk.ts_ns,
            chunk.offset,
            u64::from(chunk.len),
            &chunk.data,
            out,
        );
        half.drain_ahead(key, dir, out);
    }

    /// Holes older than the grace time will not be filled: the chunk was lost.
    fn give_up_old_holes(&mut self, now_ns: u64, out: &mut Vec<TcpEvent>) {
        let Some((key, etcd_writes)) = self.placed else {
            return;
        };
        for dir in [etcd_writes, etcd_writes.reverse()] {
            let half = &mut self.halves[index(dir)];
            while let Some((_, first)) = half.ahead.first_key_value() {
                if first.ts_ns.saturating_add(HOLE_GRACE_NS) >= now_ns {
                    break;
                }
                half.give_up_first_hole(key, dir, out);
            }
        }
    }

    /// Deliver everything that waits; returns the plaintext bytes that could not be
    /// placed on a connection.
    fn close(&mut self, out: &mut Vec<TcpEvent>) -> u64 {
        let Some((key, etcd_writes)) = self.placed else {
            return self.unplaced.iter().map(|c| u64::from(c.len)).sum();
        };
        for dir in [etcd_writes, etcd_writes.reverse()] {
            let half = &mut self.halves[index(dir)];
            while !half.ahead.is_empty() {
                half.give_up_first_hole(key, dir, out);
            }
        }
        0
    }
}

impl Half {
    /// Emit `data` (standing for `len` bytes from `offset`), trimmed to what was not
    /// delivered yet; the bytes it lacks become an unreadable gap.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        key: ConnectionKey,
        dir: FlowDirection,
        ts_ns: u64,
        offset: u64,
        len: u64,
        data: &[u8],
        out: &mut Vec<TcpEvent>,
    ) {
        let skip = self.next.saturating_sub(offset);
        let captured = data.len() as u64;
        if skip < captured {
            let from = usize::try_from(skip).unwrap_or(data.len());
            out.push(TcpEvent::Data {
                key,
                dir,
                ts_ns,
                offset: offset + skip,
                bytes: data[from..].to_vec(),
            });
        }
        let end = offset.saturating_add(len);
        let unread_from = self.next.max(offset.saturating_add(captured));
        if unread_from < end {
            out.push(TcpEvent::Gap {
                key,
                dir,
                ts_ns,
                offset: unread_from,
                len: end - unread_from,
                reason: GapReason::Unreadable,
            });
        }
        self.next = self.next.max(end);
    }

    /// Deliver the chunks that now continue the stream.
    fn drain_ahead(&mut self, key: ConnectionKey, dir: FlowDirection, out: &mut Vec<TcpEvent>) {
        while let Some(entry) = self.ahead.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let offset = *entry.key();
            let chunk = entry.remove();
            self.ahead_bytes -= chunk.data.len();
            self.deliver(key, dir, chunk.ts_ns, offset, chunk.len, &chunk.data, out);
        }
    }

    /// The bytes in front of the first waiting chunk are lost: a gap, then go on.
    fn give_up_first_hole(
        &mut self,
        key: ConnectionKey,
        dir: FlowDirection,
        out: &mut Vec<TcpEvent>,
    ) {
        let Some((&offset, chunk)) = self.ahead.first_key_value() else {
            return;
        };
        if offset > self.next {
            out.push(TcpEvent::Gap {
                key,
                dir,
                ts_ns: chunk.ts_ns,
                offset: self.next,
                len: offset - self.next,
                reason: GapReason::Missing,
            });
            self.next = offset;
        }
        self.drain_ahead(key, dir, out);
    }
}

#[cfg(test)]
mod tests;
