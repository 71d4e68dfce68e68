//! `etcd-trace export FILE --format pcapng -o OUT`: a capture for other tools. pcapng
//! gives Wireshark and tshark the captured TCP segments, and TLS plaintext as synthetic
//! cleartext connections; filters keep whole connections, found in a first pass that
//! decodes the RPCs.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use foldhash::HashMap;

use super::open_capture;
use super::replay::Filter;
use crate::analyze::rpc::RpcDecoder;
use crate::capture::{
    CaptureReader, Direction, Header, Packet, ReadItem, TcpFlags, TlsData, HOST_ID_STRIDE,
};
use crate::cli::{ExportArgs, ExportFormat};
use crate::output::pcapng::{PcapngWriter, TcpSegment, LINKTYPE_RAW, MAX_SEGMENT_PAYLOAD};
use crate::output::Progress;

pub fn run(args: ExportArgs) -> Result<ExitCode> {
    let reader = open_capture(&args.file)?;
    let filter = Filter::new(
        &reader,
        [&args.since, &args.until],
        &args.client,
        &args.method,
    )?;
    let selected = if filter.is_empty() {
        None
    } else {
        Some(selected_connections(&reader, &filter))
    };
    match args.format {
        ExportFormat::Pcapng => {
            let out = create_private(&args.output)?;
            let written = write_pcapng(&reader, selected.as_ref(), out)?;
            eprintln!(
                "{} packets ({} of them TLS plaintext) written to {}",
                written.packets,
                written.tls_packets,
                args.output.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The file to write, readable by its owner only: exports hold what captures hold.
fn create_private(path: &Path) -> Result<BufWriter<File>> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

/// A connection as (client, server), whichever way a packet goes.
type Conn = (SocketAddr, SocketAddr);

/// The connections that carry an RPC record `filter` accepts.
fn selected_connections(reader: &CaptureReader, filter: &Filter) -> HashSet<Conn> {
    let mut decoder = RpcDecoder::new(reader.header().config.ports.clone());
    let mut calls = Vec::new();
    let mut conns = HashSet::new();
    let mut take = |calls: &mut Vec<_>| {
        for call in calls.drain(..) {
            if filter.accepts(&call) {
                conns.insert((call.client, call.server));
            }
        }
    };
    for item in reader.events().without_syscall_contents() {
        if let ReadItem::Event(ev) = item {
            decoder.push_owned(ev, &mut calls);
            take(&mut calls);
        }
    }
    decoder.finish(&mut calls);
    take(&mut calls);
    conns
}

fn wanted(selected: Option<&HashSet<Conn>>, a: SocketAddr, b: SocketAddr) -> bool {
    selected.is_none_or(|s| s.contains(&(a, b)) || s.contains(&(b, a)))
}

#[derive(Default)]
struct Written {
    packets: u64,
    tls_packets: u64,
}

/// The section comment: the host (or hosts) and where the packets came from.
fn section_comment(header: &Header, file: &Path) -> String {
    let hosts = if header.hosts.is_empty() {
        format!("host {}", header.hostname)
    } else {
        let names: Vec<&str> = header.hosts.iter().map(|h| h.name.as_str()).collect();
        format!("hosts {}", names.join(", "))
    };
    format!(
        "etcd-trace capture {} ({hosts}, kernel {}, recorder {}): TCP segments rebuilt from \
         the recorded headers; TLS plaintext as synthetic connections in 198.18.0.0/15",
        file.file_name().unwrap_or_default().to_string_lossy(),
        header.kernel_release,
        header.recorder_version
    )
}

/// The host an interface index belongs to (merged captures move each host's indexes
/// into a room of its own).
fn host_of(header: &Header, ifindex: u32) -> &str {
    if header.hosts.is_empty() {
        return &header.hostname;
    }
    let i = (ifindex / HOST_ID_STRIDE) as usize;
    header.hosts.get(i).map_or("?", |h| h.name.as_str())
}

struct Pcapng<'h, W: Write> {
    out: PcapngWriter<W>,
    header: &'h Header,
    snaplen: u32,
    /// Interface ids by ifindex.
    interfaces: HashMap<u32, u32>,
    tls_interface: Option<u32>,
    tls: HashMap<u64, TlsConn>,
    written: Written,
}

impl<W: Write> Pcapng<'_, W> {
    fn interface(&mut self, ifindex: u32) -> Result<u32> {
        if let Some(&id) = self.interfaces.get(&ifindex) {
            return Ok(id);
        }
        let name = self
            .header
            .interface_name(ifindex)
            .map_or_else(|| format!("ifindex {ifindex}"), str::to_string);
        let comment = format!(
            "host {}, ifindex {}",
            host_of(self.header, ifindex),
            ifindex % HOST_ID_STRIDE
        );
        let id = self
            .out
            .interface(LINKTYPE_RAW, self.snaplen, &name, &comment)?;
        self.interfaces.insert(ifindex, id);
        Ok(id)
    }

    fn packet(&mut self, p: &Packet) -> Result<()> {
        let id = self.interface(p.ifindex)?;
        let (bytes, wire_len) = TcpSegment {
            src: p.src,
            dst: p.dst,
            seq: p.seq,
            ack: p.ack,
            flags: p.flags.0,
            window: p.window,
            payload: &p.payload,
            payload_len: p.payload_len,
        }
        .to_ip_packet();
        self.out
            .packet(id, self.header.wall_ns(p.ts_ns), &bytes, wire_len, None)?;
        self.written.packets += 1;
        Ok(())
    }

    fn tls_interface(&mut self) -> Result<u32> {
        if let Some(id) = self.tls_interface {
            return Ok(id);
        }
        let id = self.out.interface(
            LINKTYPE_RAW,
            0,
            "tls-plaintext",
            &format!(
                "host {}: TLS plaintext taken from etcd's crypto/tls, as synthetic cleartext \
                 connections",
                self.header.hostname
            ),
        )?;
        self.tls_interface = Some(id);
        Ok(id)
    }

    fn tls(&mut self, t: &TlsData) -> Result<()> {
        let iface = self.tls_interface()?;
        let default_port = self.header.config.ports.first().copied().unwrap_or(2379);
        let wall = self.header.wall_ns(t.ts_ns);
        let conn = self
            .tls
            .entry(t.conn_id)
            .or_insert_with(|| TlsConn::new(t, default_port));
        let mut packets = Vec::new();
        if !conn.opened {
            conn.opened = true;
            packets.extend(conn.handshake());
        }
        packets.extend(conn.data(t));
        let comment = conn.comment.clone();
        for (bytes, wire_len) in packets {
            self.out
                .packet(iface, wall, &bytes, wire_len, Some(&comment))?;
            self.written.packets += 1;
            self.written.tls_packets += 1;
        }
        Ok(())
    }
}

/// Initial sequence numbers of the synthetic connections' two sides.
const CLIENT_ISN: u32 = 0x1000_0000;
const SERVER_ISN: u32 = 0x2000_0000;
/// Plaintext bytes per synthetic segment.
const TLS_SEGMENT: u32 = 16_384;
const _: () = assert!(TLS_SEGMENT <= MAX_SEGMENT_PAYLOAD);

/// One TLS connection's synthetic cleartext twin.
struct TlsConn {
    client: SocketAddr,
    server: SocketAddr,
    opened: bool,
    /// Next sequence number each way (client → server, server → client).
    next: [u32; 2],
    comment: String,
}

impl TlsConn {
    fn new(t: &TlsData, default_port: u16) -> TlsConn {
        // Addresses of the benchmarking range (RFC 2544), one client address per
        // connection, the real ports: no real connection shares its four-tuple.
        let n = (t.conn_id & 0xffff) as u16;
        let [hi, lo] = n.to_be_bytes();
        let (client_port, server_port, real) = match t.endpoints {
            Some(e) => (
                e.remote.port(),
                e.local.port(),
                format!("etcd {} <-> {}", e.local, e.remote),
            ),
            None => (
                40_000 + (t.conn_id % 20_000) as u16,
                default_port,
                "endpoints unknown".to_string(),
            ),
        };
        TlsConn {
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, hi, lo)), client_port),
            server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 255, 254)), server_port),
            opened: false,
            next: [CLIENT_ISN.wrapping_add(1), SERVER_ISN.wrapping_add(1)],
            comment: format!(
                "TLS plaintext taken from etcd's crypto/tls (connection {}, {real}), not on \
                 the wire",
                t.conn_id
            ),
        }
    }

    fn segment(
        &self,
        to_server: bool,
        seq: u32,
        ack: u32,
        flags: u8,
        data: &[u8],
        len: u32,
    ) -> (Vec<u8>, u32) {
        let (src, dst) = if to_server {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        TcpSegment {
            src,
            dst,
            seq,
            ack,
            flags,
            window: 65_535,
            payload: data,
            payload_len: len,
        }
        .to_ip_packet()
    }

    fn handshake(&self) -> [(Vec<u8>, u32); 3] {
        let syn = TcpFlags::SYN;
        let ack = TcpFlags::ACK;
        [
            self.segment(true, CLIENT_ISN, 0, syn, &[], 0),
            self.segment(
                false,
                SERVER_ISN,
                CLIENT_ISN.wrapping_add(1),
                syn | ack,
                &[],
                0,
            ),
            self.segment(
                true,
                CLIENT_ISN.wrapping_add(1),
                SERVER_ISN.wrapping_add(1),
                ack,
                &[],
                0,
            ),
        ]
    }

    /// The plaintext of `t` in segments at its stream offset, each acknowledging what
    /// the other side has sent so far.
    fn data(&mut self, t: &TlsData) -> Vec<(Vec<u8>, u32)> {
        // Egress: etcd (the server) wrote it; Ingress: etcd read what the client sent.
        let to_server = t.direction == Direction::Ingress;
        let (me, other) = if to_server { (0, 1) } else { (1, 0) };
        let isn = if to_server { CLIENT_ISN } else { SERVER_ISN };
        let mut out = Vec::new();
        let mut at = 0u32;
        while at < t.len {
            let len = (t.len - at).min(TLS_SEGMENT);
            let lo = (at as usize).min(t.data.len());
            let hi = ((at + len) as usize).min(t.data.len());
            let seq = isn
                .wrapping_add(1)
                .wrapping_add(t.offset as u32)
                .wrapping_add(at);
            let flags = TcpFlags::ACK | TcpFlags::PSH;
            out.push(self.segment(
                to_server,
                seq,
                self.next[other],
                flags,
                &t.data[lo..hi],
                len,
            ));
            let end = seq.wrapping_add(len);
            // Keep the highest end (in sequence space) as what this side has sent.
            if end.wrapping_sub(self.next[me]) as i32 > 0 {
                self.next[me] = end;
            }
            at += len;
        }
        out
    }
}

fn write_pcapng<W: Write>(
    reader: &CaptureReader,
    selected: Option<&HashSet<Conn>>,
    out: W,
) -> Result<Written> {
    let header = reader.header();
    let snaplen = match header.config.snaplen {
        0 => 262_144,
        n => n.saturating_add(60),
    };
    let writer = PcapngWriter::new(
        out,
        &section_comment(header, reader.path()),
        &format!("etcd-trace {}", env!("CARGO_PKG_VERSION")),
    )?;
    let mut pcap = Pcapng {
        out: writer,
        header,
        snaplen,
        interfaces: HashMap::default(),
        tls_interface: None,
        tls: HashMap::default(),
        written: Written::default(),
    };
    for i in &header.interfaces {
        pcap.interface(i.ifindex)?;
    }
    let progress = Progress::for_blocks(reader.blocks().len() as u64, "exporting packets");
    for item in reader.events().without_syscall_contents() {
        progress.tick_events(1);
        match item {
            ReadItem::Event(crate::capture::Event::Packet(p)) => {
                if wanted(selected, p.src, p.dst) {
                    pcap.packet(&p)?;
                }
            }
            ReadItem::Event(crate::capture::Event::Tls(t)) => {
                let keep = match (selected, t.endpoints) {
                    (None, _) => true,
                    (Some(s), Some(e)) => wanted(Some(s), e.local, e.remote),
                    (Some(_), None) => false,
                };
                if keep {
                    pcap.tls(&t)?;
                }
            }
            ReadItem::Event(_) => {}
            ReadItem::Damaged(d) => eprintln!("warning: {d}"),
        }
    }
    progress.finish();
    let mut out = pcap.out.into_inner();
    out.flush()?;
    Ok(pcap.written)
}
