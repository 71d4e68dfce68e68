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

use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use foldhash::HashMap;

use super::open_capture;
use super::replay::Filter;
use crate::analyze::correlate::{CorrelatedCall, Correlator};
use crate::analyze::rpc::{RecordKind, RpcBody, RpcDecoder};
use crate::analyze::wal_log::{WalDetail, WalLog, WalLogOutput, WalLogRecord};
use crate::capture::{
    CaptureReader, Direction, Header, Packet, ReadItem, TcpFlags, TlsData, HOST_ID_STRIDE,
};
use crate::cli::{ExportArgs, ExportFormat, ExportTable};
use crate::decode::etcdpb::EtcdMessage;
use crate::output::parquet::ParquetFile;
use crate::output::pcapng::{PcapngWriter, TcpSegment, LINKTYPE_RAW, MAX_SEGMENT_PAYLOAD};
use crate::output::Progress;

pub fn run(args: ExportArgs) -> Result<ExitCode> {
    let reader = open_capture(&args.files)?;
    super::note_api_mode(reader.header(), "export");
    let filter = Filter::new(
        reader.header(),
        reader.index().time_range().map_or(0, |(first, _)| first),
        [&args.since, &args.until],
        &args.client,
        &args.method,
    )?;
    if args.format == ExportFormat::Parquet {
        let out = create_private(&args.output)?;
        let rows = match args.table {
            ExportTable::Rpc => write_rpc_parquet(&reader, &filter, out)?,
            ExportTable::Wal => write_wal_parquet(&reader, out)?,
        };
        eprintln!("{rows} rows written to {}", args.output.display());
        return Ok(ExitCode::SUCCESS);
    }
    if args.table != ExportTable::Rpc {
        anyhow::bail!("--table chooses a Parquet table: it needs --format parquet");
    }
    let selected = if filter.is_empty() {
        None
    } else {
        Some(selected_connections(&reader, &filter))
    };
    let out = create_private(&args.output)?;
    let written = write_pcapng(&reader, selected.as_ref(), out)?;
    eprintln!(
        "{} packets ({} of them TLS plaintext) written to {}",
        written.packets,
        written.tls_packets,
        args.output.display()
    );
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

/// Rows gathered before they go to the Parquet writer as one batch.
const BATCH_ROWS: usize = 8192;

/// The `rpc` table's columns, in order (documented in `export --help`).
fn rpc_schema() -> Arc<Schema> {
    let u64n = |name: &str| Field::new(name, DataType::UInt64, true);
    Arc::new(Schema::new(vec![
        Field::new("ts_ns", DataType::UInt64, false),
        Field::new("ts", wall_type(), false),
        Field::new("host", DataType::Utf8, false),
        Field::new("member", DataType::Utf8, true),
        Field::new("client", DataType::Utf8, false),
        Field::new("server", DataType::Utf8, false),
        Field::new("stream", DataType::UInt32, false),
        Field::new("record", DataType::Utf8, false),
        Field::new("method", DataType::Utf8, true),
        Field::new("key", DataType::Binary, true),
        Field::new("range_end", DataType::Binary, true),
        Field::new("revision", DataType::Int64, true),
        Field::new("status", DataType::UInt32, true),
        u64n("latency_ns"),
        Field::new("request_bytes", DataType::UInt64, false),
        Field::new("response_bytes", DataType::UInt64, false),
        Field::new("count", DataType::Int64, true),
        Field::new("tls", DataType::Boolean, false),
        Field::new("inferred", DataType::Boolean, false),
        u64n("wal_term"),
        u64n("wal_index"),
        u64n("fsync_ns"),
    ]))
}

fn wall_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn wall_builder() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

fn wall_i64(header: &Header, mono_ns: u64) -> i64 {
    i64::try_from(header.wall_ns(mono_ns)).unwrap_or(i64::MAX)
}

/// The host a row belongs to: the capture's, or the hosts of a merged one.
fn host_name(header: &Header) -> String {
    if header.hosts.is_empty() {
        header.hostname.clone()
    } else {
        let names: Vec<&str> = header.hosts.iter().map(|h| h.name.as_str()).collect();
        names.join(",")
    }
}

#[derive(Default)]
struct RpcRows {
    ts_ns: UInt64Builder,
    ts: TimestampNanosecondBuilder,
    host: StringBuilder,
    member: StringBuilder,
    client: StringBuilder,
    server: StringBuilder,
    stream: UInt32Builder,
    record: StringBuilder,
    method: StringBuilder,
    key: BinaryBuilder,
    range_end: BinaryBuilder,
    revision: Int64Builder,
    status: UInt32Builder,
    latency_ns: UInt64Builder,
    request_bytes: UInt64Builder,
    response_bytes: UInt64Builder,
    count: Int64Builder,
    tls: BooleanBuilder,
    inferred: BooleanBuilder,
    wal_term: UInt64Builder,
    wal_index: UInt64Builder,
    fsync_ns: UInt64Builder,
    rows: usize,
}

impl RpcRows {
    fn new() -> RpcRows {
        RpcRows {
            ts: wall_builder(),
            ..RpcRows::default()
        }
    }

    fn push(&mut self, header: &Header, host: &str, c: &CorrelatedCall) {
        let call = &c.call;
        self.ts_ns.append_value(call.ts_ns);
        self.ts.append_value(wall_i64(header, call.ts_ns));
        self.host.append_value(host);
        self.member
            .append_option(c.wal.as_ref().map(|w| w.member.to_string()));
        self.client.append_value(call.client.to_string());
        self.server.append_value(call.server.to_string());
        self.stream.append_value(call.stream_id);
        self.record.append_value(match call.kind {
            RecordKind::Call => "call",
            RecordKind::Message { .. } => "message",
            RecordKind::StreamEnd { .. } => "stream_end",
        });
        self.method.append_option(call.method.as_deref());
        self.key.append_option(call.key.as_deref());
        self.range_end.append_option(call.range_end.as_deref());
        let response = call.response.as_ref().and_then(RpcBody::message);
        self.revision.append_option(
            response
                .and_then(EtcdMessage::response_header)
                .map(|h| h.revision),
        );
        self.status.append_option(call.status);
        self.latency_ns.append_option(call.latency_ns);
        self.request_bytes.append_value(call.request_bytes);
        self.response_bytes.append_value(call.response_bytes);
        self.count.append_option(match response {
            Some(EtcdMessage::RangeResponse(r)) => Some(r.count),
            _ => None,
        });
        self.tls.append_value(call.tls);
        self.inferred.append_value(call.inferred);
        self.wal_term.append_option(c.wal.as_ref().map(|w| w.term));
        self.wal_index
            .append_option(c.wal.as_ref().map(|w| w.index));
        self.fsync_ns
            .append_option(c.wal.as_ref().and_then(|w| w.fsync_ns));
        self.rows += 1;
    }

    fn batch(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts_ns.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.member.finish()),
            Arc::new(self.client.finish()),
            Arc::new(self.server.finish()),
            Arc::new(self.stream.finish()),
            Arc::new(self.record.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.range_end.finish()),
            Arc::new(self.revision.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.latency_ns.finish()),
            Arc::new(self.request_bytes.finish()),
            Arc::new(self.response_bytes.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.tls.finish()),
            Arc::new(self.inferred.finish()),
            Arc::new(self.wal_term.finish()),
            Arc::new(self.wal_index.finish()),
            Arc::new(self.fsync_ns.finish()),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// Every RPC record (replay's, secrets redacted), joined with its WAL link.
fn write_rpc_parquet<W: Write + Send>(
    reader: &CaptureReader,
    filter: &Filter,
    out: W,
) -> Result<u64> {
    let header = reader.header();
    let host = host_name(header);
    let schema = rpc_schema();
    let mut file = ParquetFile::new(out, schema.clone())?;
    let mut rows = RpcRows::new();
    let mut correlator = Correlator::new(header.config.ports.clone());
    let (mut calls, mut phases) = (Vec::new(), Vec::new());
    let progress = Progress::for_blocks(reader.blocks().len() as u64, "exporting RPCs");
    let mut take = |calls: &mut Vec<CorrelatedCall>, rows: &mut RpcRows| -> Result<()> {
        for mut c in calls.drain(..) {
            if filter.accepts(&c.call) {
                c.call.redact();
                rows.push(header, &host, &c);
            }
        }
        if rows.rows >= BATCH_ROWS {
            file.write(&rows.batch(&schema)?)?;
        }
        Ok(())
    };
    for item in reader.events() {
        progress.tick_events(1);
        match item {
            ReadItem::Event(ev) => {
                correlator.push(ev, &mut calls, &mut phases);
                phases.clear();
                take(&mut calls, &mut rows)?;
            }
            ReadItem::Damaged(d) => eprintln!("warning: {d}"),
        }
    }
    correlator.finish(&mut calls, &mut phases);
    take(&mut calls, &mut rows)?;
    progress.finish();
    file.write(&rows.batch(&schema)?)?;
    Ok(file.finish()?)
}

/// The `wal` table's columns, in order (documented in `export --help`).
fn wal_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("write_ts_ns", DataType::UInt64, false),
        Field::new("ts", wall_type(), false),
        Field::new("host", DataType::Utf8, false),
        Field::new("member", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("record", DataType::Utf8, false),
        Field::new("crc_ok", DataType::Boolean, true),
        Field::new("term", DataType::UInt64, true),
        Field::new("index", DataType::UInt64, true),
        Field::new("entry_type", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
    ]))
}

#[derive(Default)]
struct WalRows {
    write_ts_ns: UInt64Builder,
    ts: TimestampNanosecondBuilder,
    host: StringBuilder,
    member: StringBuilder,
    file: StringBuilder,
    offset: UInt64Builder,
    record: StringBuilder,
    crc_ok: BooleanBuilder,
    term: UInt64Builder,
    index: UInt64Builder,
    entry_type: StringBuilder,
    detail: StringBuilder,
    rows: usize,
}

impl WalRows {
    fn push(&mut self, header: &Header, host: &str, r: &WalLogRecord) -> Result<()> {
        let ts = r.write_ts_ns.unwrap_or(0);
        self.write_ts_ns.append_value(ts);
        self.ts.append_value(wall_i64(header, ts));
        self.host.append_value(host);
        self.member.append_value(r.member.to_string());
        self.file.append_value(&r.file);
        self.offset.append_value(r.offset);
        self.record.append_value(r.record);
        self.crc_ok.append_option(r.crc_ok);
        let (term, index, entry_type) = match &r.detail {
            WalDetail::Entry {
                term,
                index,
                entry_type,
                ..
            } => (Some(*term), Some(*index), Some(*entry_type)),
            WalDetail::HardState { term, .. } => (Some(*term), None, None),
            _ => (None, None, None),
        };
        self.term.append_option(term);
        self.index.append_option(index);
        self.entry_type.append_option(entry_type);
        self.detail.append_value(serde_json::to_string(&r.detail)?);
        self.rows += 1;
        Ok(())
    }

    fn batch(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.write_ts_ns.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.member.finish()),
            Arc::new(self.file.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.record.finish()),
            Arc::new(self.crc_ok.finish()),
            Arc::new(self.term.finish()),
            Arc::new(self.index.finish()),
            Arc::new(self.entry_type.finish()),
            Arc::new(self.detail.finish()),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// Every WAL record the capture's writes carried (`wal --all --format json`'s).
fn write_wal_parquet<W: Write + Send>(reader: &CaptureReader, out: W) -> Result<u64> {
    let header = reader.header();
    let host = host_name(header);
    let schema = wal_schema();
    let mut file = ParquetFile::new(out, schema.clone())?;
    let mut rows = WalRows {
        ts: wall_builder(),
        ..WalRows::default()
    };
    let mut log = WalLog::new();
    let mut buf = WalLogOutput::default();
    let mut take = |buf: &mut WalLogOutput, rows: &mut WalRows| -> Result<()> {
        for r in buf.records.drain(..) {
            rows.push(header, &host, &r)?;
        }
        buf.problems.clear();
        if rows.rows >= BATCH_ROWS {
            file.write(&rows.batch(&schema)?)?;
        }
        Ok(())
    };
    for item in reader.events() {
        match item {
            ReadItem::Event(ev) => {
                log.push(&ev, &mut buf);
                take(&mut buf, &mut rows)?;
            }
            ReadItem::Damaged(d) => eprintln!("warning: {d}"),
        }
    }
    log.finish(&mut buf);
    take(&mut buf, &mut rows)?;
    file.write(&rows.batch(&schema)?)?;
    Ok(file.finish()?)
}
