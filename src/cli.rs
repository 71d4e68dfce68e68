//! The command line: clap definitions only. The same definitions feed `--help`, the man
//! pages in man/ and the shell completions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "etcd-trace",
    version,
    about = "Forensic tracing for etcd: record what etcd does from the kernel, analyse it offline",
    long_about = "etcd-trace watches etcd from the kernel. `record` captures the gRPC traffic on \
the client and peer ports and etcd's WAL writes, reads and fsyncs with eBPF into a compressed, \
indexed capture file. The other subcommands analyse a capture offline, on any machine.",
    after_help = "Examples:\n  \
sudo etcd-trace demo                                   # see it work on a private etcd\n  \
sudo etcd-trace record -o incident.etr --duration 60s\n  \
etcd-trace info incident.etr\n  \
etcd-trace replay incident.etr --method Put            # the RPCs clients made\n  \
etcd-trace timeline incident.etr --slow 20ms           # why slow: raft, fsync, or reply?\n  \
etcd-trace detect incident.etr                         # bulk reads, failed logins, odd peers\n  \
etcd-trace diff baseline.etr incident.etr --fail-on 'p99(Put) > +20%'"
)]
pub struct Cli {
    /// With a pcap or pcapng file: the etcd server port (repeatable), instead of those
    /// found from SYNs and requests. Goes before the subcommand.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Threads to decode traffic on (replay); default: one per core. Connections are
    /// decoded in parallel after reassembly, and the output is the same for any number.
    #[arg(long, global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Record(RecordArgs),
    Info(InfoArgs),
    Dump(DumpArgs),
    Replay(ReplayArgs),
    Reproduce(ReproduceArgs),
    Wal(WalArgs),
    Correlate(CorrelateArgs),
    Raft(RaftArgs),
    Timeline(TimelineArgs),
    Diff(DiffArgs),
    Detect(DetectArgs),
    Top(TopArgs),
    Merge(MergeArgs),
    Export(ExportArgs),
    Baseline(BaselineArgs),
    Demo(DemoArgs),
    Completions(CompletionsArgs),
}

/// Output format of data-producing subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How etcd-trace's own client reaches etcd (`reproduce`, `record --mode api`).
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// CA certificate (PEM) of TLS endpoints.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM) for TLS endpoints.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Credentials when auth is enabled (without `:PASS`, the password is read from
    /// ETCD_TRACE_PASSWORD).
    #[arg(long, value_name = "NAME[:PASS]")]
    pub user: Option<String>,
}

/// How `record` watches etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Kernel programs on etcd's sockets and files (root).
    Ebpf,
    /// A client of etcd's API: no root, for a managed etcd (needs --endpoints).
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BufferArg {
    /// BPF ring buffers, one per CPU, fed whole batches of events (the default).
    Ring,
    /// Per-CPU perf buffers (kernels without ring buffer support; costlier per event).
    Perf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriorityArg {
    /// Only on CPU time nothing else wants; raised to normal while it falls behind.
    Idle,
    /// Like any process, competing with etcd for the CPU.
    Normal,
}

/// Record etcd's traffic and disk activity into a capture file (Linux, root), or with
/// `--mode api` what etcd's API shows (any user).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
sudo etcd-trace record -o incident.etr                  # every etcd, until Ctrl-C\n  \
sudo etcd-trace record -o restart.etr --data-dir /var/lib/etcd   # that etcd, restarts too\n  \
sudo etcd-trace record -o incident.etr --duration 30s --pid 4242\n  \
sudo etcd-trace record -o flight.etr --rotate-size 256 --keep 8   # flight recorder\n  \
sudo etcd-trace record -o c.etr --config etcd-trace.yaml\n  \
etcd-trace record --mode api --endpoints http://10.0.0.5:2379 -o api.etr   # no root\n\n\
The config file holds a `collectors.etcd` block:\n  \
collectors:\n    etcd:\n      enabled: true             # false: recording is refused\n      \
mode: ebpf                # api: through etcd's API (with endpoints: [URL])\n      ebpf:\n        \
capture_payload: true   # false: TCP headers and sizes only\n        \
payload_size: 65535     # bytes of TCP payload per segment\n        \
trace_syscalls: true    # WAL writes, reads, fsyncs\n        \
monitor_files: true     # keep the first bytes of data-dir writes\n      \
ports: [2379, 2380]\n      pids: []\n      data_dir: /var/lib/etcd\n      \
redact_secrets: true      # false: like --keep-secrets\n      \
tls_plaintext: true       # false: like --no-tls\n\
(The ebpf keys are also accepted directly under etcd.)\n\n\
Without --pid, every process named etcd is traced, with the data dir from its command \
line: those running at the start, and those that start while recording, from their exec \
(an etcd killed and restarted is recorded whole; its start and end are events of the \
capture).\n\n\
--mode api needs no root and no eBPF: a client watches the whole keyspace (every write, \
with the sizes of the value and the one before) and polls each endpoint's Status, the \
member list and /metrics every --interval. timeline, diff and detect read such a capture \
as far as it goes; it has no client identities, reads, per-call latency or syscalls, \
and says so. With --data-dir too, only the etcd of that data dir. Capture files hold keys and values: they are created with mode 0600. \
Passwords and auth tokens in client traffic are overwritten before they are written \
(see --keep-secrets); the closing summary says what could not be redacted.")]
pub struct RecordArgs {
    /// Capture file to write (with rotation: FILE-0001.etr, FILE-0002.etr, ...).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// How etcd is watched [default: ebpf, or the config file's mode].
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// With --mode api: etcd's client URLs (http://HOST:PORT or https://HOST:PORT), each
    /// polled; the watch uses the first that answers.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// With --mode api: how often Status, the member list and /metrics are polled.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, default_value = "1s")]
    pub interval: std::time::Duration,
    /// With --mode api: how to reach the endpoints.
    #[command(flatten)]
    pub client: ClientArgs,
    /// etcd process to trace (repeatable, up to 16); default: every process named etcd,
    /// and each that starts while recording.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// TCP port to capture (repeatable, up to 16); default: 2379 and 2380.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Interface to attach to (repeatable); default: every interface that is up.
    #[arg(long = "iface", value_name = "IF")]
    pub interfaces: Vec<String>,
    /// Bytes of TCP payload kept per segment [default and max: 65535]. Smaller saves
    /// space but cuts large segments, which can hide later calls' methods (see README).
    #[arg(long, value_name = "N")]
    pub snaplen: Option<u32>,
    /// Bytes kept of each WAL write [default: 2097152, whole writes of etcd's largest
    /// request; max: 4194304]; of each WAL read at most 65536, and of other data-dir
    /// files at most 512. A write longer than 65536 bytes takes one event per 64 KiB
    /// (with the perf buffer, writes keep at most 64672).
    #[arg(long, value_name = "N")]
    pub file_data: Option<u32>,
    /// Also keep the first snaplen bytes of etcd's socket reads and writes (these are
    /// not redacted: needs --keep-secrets).
    #[arg(long)]
    pub socket_payload: bool,
    /// Write passwords and auth tokens into the capture as they were sent. By default
    /// the recorder overwrites, in client packets, the `token` request header and the
    /// password and token fields of etcd's auth calls with `*` of the same length, so
    /// the capture still decodes but cannot log anyone in. Use this only when the
    /// secrets themselves are what you need to investigate, and guard the file.
    #[arg(long)]
    pub keep_secrets: bool,
    /// Report every read and write etcd makes on its client and peer sockets (when etcd
    /// read each request and wrote each reply; `dump` shows them). By default only the
    /// first on each socket is reported, which says which etcd process serves the
    /// connection: every call would be about half the events, and much of the
    /// recorder's cost. `--socket-payload` implies it.
    #[arg(long)]
    pub socket_syscalls: bool,
    /// Do not capture the plaintext of etcd's TLS connections. By default, uprobes on
    /// Go's crypto/tls in each traced etcd (Go 1.17 or newer, x86-64) take what etcd
    /// writes and reads on its TLS connections before encryption and after decryption,
    /// so every analysis works on TLS traffic as on cleartext; the packets of a TLS
    /// connection are still recorded (ciphertext, for timing).
    #[arg(long)]
    pub no_tls: bool,
    /// etcd data dir (default: from each etcd's command line). Without --pid, only the
    /// etcd of this data dir is traced, and followed when it restarts.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Stop after this long (e.g. 30s, 5m); default: until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Kernel-to-user event channel.
    #[arg(long, value_enum, default_value_t = BufferArg::Ring)]
    pub buffer: BufferArg,
    /// Event buffer memory in MiB (a power of two), shared out over the CPUs' ring
    /// buffers; each gets at least 4 MiB (50 ms of an 80 MB/s burst on one CPU).
    #[arg(long, value_name = "MB", default_value_t = 64)]
    pub buffer_mb: u32,
    /// Packets only: no events of etcd's system calls. The kernel still keeps the
    /// latency histograms of WAL and backend syncs and writes (see `info`).
    #[arg(long)]
    pub no_syscalls: bool,
    /// YAML config file with a `collectors.etcd` block; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Start a new file when the current one reaches this many MB.
    #[arg(long, value_name = "MB")]
    pub rotate_size: Option<u64>,
    /// Start a new file after this long (e.g. 10m).
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub rotate_time: Option<std::time::Duration>,
    /// With rotation: keep only the newest N files.
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Print each eBPF program's run count and ns per run at the end.
    #[arg(long)]
    pub stats: bool,
    /// CPU priority of the capture writer thread, which redacts, encodes and compresses
    /// (most of the recorder's CPU). `idle` keeps it off the CPU time etcd wants: it
    /// works while the CPUs would otherwise idle, and when batches pile up it runs at
    /// normal priority until it has caught up, so nothing is lost.
    #[arg(long, value_enum, default_value_t = PriorityArg::Idle)]
    pub priority: PriorityArg,
}

/// Summarise a capture: header, time range, events per kind, connections, files, losses,
/// what redaction did to it, and the kernel's latency histograms of WAL and backend
/// syncs and writes.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace info incident.etr\n  \
etcd-trace info incident.etr --format json | jq .lost\n  \
etcd-trace info incident.etr --format json | jq .redaction   # before sharing it\n  \
etcd-trace info incident.etr --format json | jq '.latency[] | select(.kind == \"wal_sync\")'\n\n\
The redaction line says whether passwords and tokens were redacted at record time, how \
many, and what passed unscrubbed (connections open before recording, directions given \
up): read it before attaching a capture to a bug report. The latency lines come from \
histograms the kernel kept of every WAL and backend sync and write for the whole \
recording (format 5 files), in log2 buckets: p50 and p99 are the buckets they fall in, \
not exact values.")]
pub struct InfoArgs {
    /// Capture file; or the files of a rotated recording, or their directory, read as
    /// one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Print the raw events of a capture, one per line (the capture's `tcpdump -r`).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace dump incident.etr | less\n  \
etcd-trace dump incident.etr --since 5s --until 6s       # offsets from the start\n  \
etcd-trace dump incident.etr --since 2026-11-28T17:40:00Z --format json\n\n\
Payload bytes are shown as hex in text and base64 in JSON. Times given to --since and \
--until are an offset from the capture's start (`1.5s`, `2m`) or an RFC 3339 time.")]
pub struct DumpArgs {
    /// Capture file; or the files of a rotated recording, or their directory, read as
    /// one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Only events at or after this time (offset from start, or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events before this time (offset from start, or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Text output: show at most this many payload bytes per event.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_bytes: usize,
}

/// Decode captured gRPC traffic into the etcd RPCs clients made, one line per RPC.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace replay incident.etr\n  \
etcd-trace replay incident/                     # the files of `record --rotate-size`, as one\n  \
etcd-trace replay --follow live.etr             # while `record -o live.etr` runs\n  \
etcd-trace replay incident.etr --method 'Put' --key-prefix /registry/pods/\n  \
etcd-trace replay incident.etr --method '*Lease*' --since 10s --until 20s\n  \
etcd-trace replay incident.etr --client 10.0.0.7 --format json | jq .latency_ns\n\n\
Unary calls give one record each; streaming calls (Watch, LeaseKeepAlive, ...) one per \
message and one at the end, Snapshot one with its chunks counted. A Watch stream's \
messages carry the key range of the watch they are about (found by watch id), so \
--key-prefix follows one watch of many on a stream. Calls on connections \
that were open before recording began may have an unknown method: it is inferred only \
when the messages fit exactly one method (marked `inferred`, and `?` in text). Passwords \
and auth tokens are redacted unless --show-secrets is given. Text output ends with a \
completeness summary.")]
pub struct ReplayArgs {
    /// Capture file; or the files of a rotated recording, or their directory, read as
    /// one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Read a capture while it is recorded: print as it completes, follow rotation to
    /// the next file, and exit when the recorder finishes (or on Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Only RPCs that started at or after this time (offset from start, or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only RPCs that started before this time (offset from start, or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only RPCs from this client (`IP` or `IP:PORT`).
    #[arg(long, value_name = "ADDR")]
    pub client: Option<String>,
    /// Only methods matching this glob (`*`, `?`), against the full path
    /// (`/etcdserverpb.KV/Put`) or the short name (`Put`).
    #[arg(long, value_name = "GLOB")]
    pub method: Option<String>,
    /// Only RPCs whose key starts with this prefix (`\xNN` for a byte, as keys are shown).
    #[arg(long, value_name = "PREFIX")]
    pub key_prefix: Option<String>,
    /// Show passwords and auth tokens instead of redacting them.
    #[arg(long)]
    pub show_secrets: bool,
}

/// Send a capture's client calls again, to another cluster: a recorded workload becomes
/// a regression test.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace reproduce prod.etr --endpoints http://staging:2379 --dry-run\n  \
etcd-trace reproduce prod.etr --endpoints http://staging:2379 --speed 2\n  \
etcd-trace reproduce prod.etr --endpoints https://10.0.0.5:2379 --cacert ca.pem \\\n    \
--cert client.pem --key client-key.pem --user root:secret --format json\n\n\
The CI gate: record the staging etcd while the capture is reproduced against it, then \
compare:\n  \
sudo etcd-trace record -o reproduced.etr --pid $(pidof etcd) &\n  \
etcd-trace reproduce baseline.etr --endpoints http://127.0.0.1:2379 --max-speed\n  \
kill -INT %1; wait\n  \
etcd-trace diff baseline.etr reproduced.etr --fail-on 'p99(Put) > +50%'\n\n\
Each captured client connection gets one HTTP/2 connection of its own: its calls go in \
their captured order and at their captured times (scaled by --speed), and calls that \
overlapped overlap again. Lease ids and revisions in requests are mapped to the ones the \
target assigned (a lease granted, a revision written during the workload); a call whose \
ids cannot be mapped is not sent and is listed. Watches are opened again and their events \
counted. Calls that change membership, leadership, alarms, auth or storage (Member*, \
MoveLeader, Alarm, Defragment, Snapshot, Downgrade, Compact, Auth changes) are held back \
unless --include-admin. Passwords and tokens redacted at record time cannot be sent: \
--user gives the target's own credentials.\n\n\
Safety: the target's cluster id is asked first (Status); the workload is never sent to \
the cluster it was recorded from (exit 2). The report gives, per method, the calls sent, \
OK and failed, and the target's p50/p99 latency against the original's.")]
pub struct ReproduceArgs {
    /// Capture file; or the files of a rotated recording, or their directory, read as
    /// one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The target cluster: `http://HOST:PORT` or `https://HOST:PORT`, comma-separated;
    /// connections are spread over them.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        required_unless_present = "dry_run"
    )]
    pub endpoints: Vec<String>,
    /// Time scale: 2 sends twice as fast as captured, 0.5 half as fast.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1.0,
        conflicts_with = "max_speed"
    )]
    pub speed: f64,
    /// Send as fast as each connection's order allows.
    #[arg(long)]
    pub max_speed: bool,
    /// Only methods matching this glob (`Put`, `*Lease*`, `/etcdserverpb.KV/*`).
    #[arg(long, value_name = "GLOB")]
    pub method: Option<String>,
    /// Only calls whose key starts with this prefix (`\xNN` for a byte).
    #[arg(long, value_name = "PREFIX")]
    pub key_prefix: Option<String>,
    /// Only calls that change nothing (Range, Watch, Status, ...).
    #[arg(long, conflicts_with = "only_writes")]
    pub only_reads: bool,
    /// Only calls that change the cluster (Put, DeleteRange, Txn, leases, ...).
    #[arg(long)]
    pub only_writes: bool,
    /// Also send admin calls (membership, leadership, alarms, auth, defragment, compact).
    #[arg(long)]
    pub include_admin: bool,
    /// List what would be sent, and what would not and why; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Send even when the capture holds no response header to tell its cluster by.
    #[arg(long)]
    pub allow_unknown_cluster: bool,
    #[command(flatten)]
    pub client: ClientArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The TCP segments as packets, for Wireshark and tshark.
    Pcapng,
    /// A table (`--table`) for DuckDB, Spark or ClickHouse.
    Parquet,
}

/// Which table a Parquet export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ExportTable {
    /// One row per RPC record (replay's), with its WAL link (correlate's).
    #[default]
    Rpc,
    /// One row per WAL record (`wal --all`'s).
    Wal,
}

/// Export a capture for other tools: pcapng for Wireshark and tshark, Parquet for SQL
/// engines.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace export incident.etr --format pcapng -o incident.pcapng\n  \
wireshark incident.pcapng                     # decode as HTTP/2: tcp.port==2379,http2\n  \
etcd-trace export incident.etr --format pcapng -o puts.pcapng --method Put --since 10s\n  \
etcd-trace export incident.etr --format parquet -o rpcs.parquet\n  \
etcd-trace export incident.etr --format parquet --table wal -o wal.parquet\n  \
duckdb -c \"select method, count(*) from 'rpcs.parquet' group by all\"\n\n\
pcapng: every captured TCP segment becomes a raw IPv4/IPv6 packet (linktype 101), rebuilt \
from the recorded header fields (ports, sequence and acknowledgement numbers, flags, \
window) with the captured payload; a payload cut at the snaplen stays cut, with its \
length on the wire. Timestamps are wall-clock, in ns. Each captured interface has its \
interface block; the host is in the section and interface comments. TLS plaintext taken \
from etcd's crypto/tls becomes a synthetic cleartext connection of its own (addresses in \
198.18.0.0/15, the real ports; SYN, SYN-ACK, ACK, then the plaintext at its stream \
offsets), each packet with a comment naming the real endpoints, so Wireshark decodes its \
gRPC. The filters keep whole connections, from their start (HPACK needs it): those that \
carry an RPC matching --since, --until, --client and --method.\n\n\
Parquet: zstd-compressed row groups of at most 65536 rows, written as the capture is \
read (memory stays bounded). Times are ns; `ts` is wall-clock (TIMESTAMP ns, UTC). \
Secrets are redacted as replay redacts them. --since, --until, --client and --method \
select rows of the rpc table. The rpc table (default), one row per replay record:\n  \
ts_ns UINT64, ts TIMESTAMP, host STRING, member STRING (whose WAL the write is in), \
client STRING, server STRING, stream UINT32, record STRING (call, message, stream_end), \
method STRING, key BINARY, range_end BINARY, revision INT64 (the response header's), \
status UINT32 (gRPC), latency_ns UINT64, request_bytes UINT64, response_bytes UINT64, \
count INT64 (Range), tls BOOLEAN, inferred BOOLEAN, wal_term UINT64, wal_index UINT64, \
fsync_ns UINT64 (correlate's link: the fdatasync that made the write durable).\n\
The wal table (--table wal), one row per WAL record the capture's writes carried:\n  \
write_ts_ns UINT64, ts TIMESTAMP, host STRING, member STRING, file STRING, offset UINT64, \
record STRING (entry, state, crc, metadata, snapshot), crc_ok BOOLEAN, term UINT64, \
index UINT64, entry_type STRING, detail STRING (the record as wal's JSON).")]
pub struct ExportArgs {
    /// Capture file; or the files of a rotated recording, or their directory, read as
    /// one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The file to write.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Only connections with an RPC that started at or after this time (offset from
    /// start, or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only connections with an RPC that started before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only connections of this client (`IP` or `IP:PORT`).
    #[arg(long, value_name = "ADDR")]
    pub client: Option<String>,
    /// Only connections with a call of a method matching this glob (`Put`, `*Lease*`).
    #[arg(long, value_name = "GLOB")]
    pub method: Option<String>,
    /// Parquet: the table to write.
    #[arg(long, value_enum, default_value_t = ExportTable::Rpc)]
    pub table: ExportTable,
}

/// Print the WAL records etcd wrote: from a capture's writes, or from a WAL on disk.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace wal incident.etr                 # entries: term, index, type, request\n  \
etcd-trace wal incident.etr --all           # also HardState and other records\n  \
etcd-trace wal incident.etr --format json | jq 'select(.detail.request.op == \"put\")'\n  \
etcd-trace wal /var/lib/etcd                # the WAL on disk, its CRC chain checked\n  \
etcd-trace wal /var/lib/etcd/member/wal/0000000000000002-0000000000001f41.wal\n\n\
Entries are shown as etcd-dump-logs shows them. From a capture, each has the time of the \
write that carried it; only what the recorder kept of each write can be decoded \
(--file-data at record time, whole writes up to 64 KiB by default); what could not be \
decoded is said on stderr. JSON records say whose WAL they are in `member`: the member \
ID in hex once a WAL metadata record gave it, `pid:N` before; text names the member \
when the capture traced several.\n\n\
From disk (a data dir, a member dir, a member/wal dir or one segment file), the segment \
files are read in sequence order and the CRC chain is checked across them, as etcd does \
when it opens the WAL. Where it breaks is said on stderr: file, offset, what was expected \
and found, and what follows (valid records again, or nothing). Zeros after the last \
record are the preallocated space; bytes that make no record there, in the last file, \
are a torn write, which etcd discards. Exit status 1 when the chain is broken elsewhere.")]
pub struct WalArgs {
    /// Capture file (or the files of a rotated recording, or their directory), or a WAL
    /// on disk: an etcd data dir, a member dir, a member/wal dir or one segment file.
    #[arg(required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Show every record (HardState, crc, metadata), not only entries.
    #[arg(long)]
    pub all: bool,
}

/// Join each write RPC with its WAL entry, the fsync that made it durable, and the reply.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace correlate incident.etr\n  \
etcd-trace correlate --follow live.etr   # while it is recorded\n  \
etcd-trace correlate incident.etr --format json | jq 'select(.wal.fsync_ns > 10000000)'\n  \
etcd-trace correlate incident.etr --all        # reads and watches too, with why they are not linked\n\n\
etcd does not tell clients the raft ID of their request, so a write is linked to the \
earliest not-yet-linked WAL entry of the same operation on the same key that was written \
while the call was in flight, and to the first WAL fdatasync after that write that \
finished before the reply. Each link says how it was made and how sure it is (high, \
medium, low); the summary says how many writes were linked and why the others were not.")]
pub struct CorrelateArgs {
    /// Capture file; or the files of a rotated recording, or their directory, read as
    /// one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Read a capture while it is recorded: print as it completes, follow rotation to
    /// the next file, and exit when the recorder finishes (or on Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// List every RPC record, not only writes.
    #[arg(long)]
    pub all: bool,
}

/// Consensus as an incident timeline: terms and leaders, elections and votes, heartbeat
/// gaps, replication to each follower, commits, and the disks around each election.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace raft cluster.etr\n  \
etcd-trace raft cluster.etr --format json | jq 'select(.kind == \"election\")'\n  \
etcd-trace raft cluster.etr --election-timeout 2500ms   # members run --election-timeout=2500\n\n\
Decoded from the traffic between members on the peer port (2380, or the recorded port \
above a client port), cleartext or TLS plaintext; record every member's peer port, and \
--pid each member to see their WAL syncs. A term's leader is the member that sent its \
first MsgApp, MsgHeartbeat, MsgSnap or MsgTimeoutNow of that term; how the term began \
(an election, a pre-vote, a transfer) comes from the campaign messages before it. A \
refused vote says why when the wire shows it (the voter had voted for another, or the \
candidate's log was behind). Two leaders in one term, or a leader of an old term still \
sending after a newer one took over, are reported: raft forbids the first. Heartbeat \
gaps from half the election timeout are listed. JSON is one object per line with `kind`: \
member, leader, election, two_leaders, stale_leader, heartbeat_gap, append_rejected, \
snapshot, peer_refused, process, then follower and commits summaries.")]
pub struct RaftArgs {
    /// Capture file; or the files of a rotated recording, or their directory, read as
    /// one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The members' election timeout (etcd's --election-timeout; `1s`, `2500ms`).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = humantime::parse_duration)]
    pub election_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TimelineFormat {
    /// A chronological view, then latency per method and per phase.
    #[default]
    Text,
    /// A Chrome/Perfetto trace (JSON trace event format) written to -o FILE.
    Perfetto,
}

/// Show what happened when: RPCs with their phases, WAL appends, fsyncs, backend
/// commits, connections and losses, then latency per method and per phase.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace timeline incident.etr | less\n  \
etcd-trace timeline --follow live.etr                # while it is recorded\n  \
etcd-trace timeline incident.etr --slow 20ms          # only slow operations, and which phase took the time\n  \
etcd-trace timeline incident.etr --format perfetto -o trace.json   # open in ui.perfetto.dev\n\n\
A write's phases: raft + WAL append (request received until the WAL write carrying its \
entry ended), fsync (until the fdatasync that made it durable ended), apply + reply \
(until the last reply byte). The trace has one track per client connection (with extra \
lanes for overlapping calls), and tracks for WAL appends, fsyncs and backend commits.")]
pub struct TimelineArgs {
    /// Capture file; or the files of a rotated recording, or their directory, read as
    /// one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Read a capture while it is recorded: print as it completes, follow rotation to
    /// the next file, and exit when the recorder finishes (or on Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    #[arg(long, value_enum, default_value_t = TimelineFormat::Text)]
    pub format: TimelineFormat,
    /// Trace file to write with --format perfetto.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only operations at least this slow (e.g. 20ms), each with its slowest phase.
    #[arg(long, value_name = "THRESHOLD")]
    pub slow: Option<String>,
}

/// Compare two captures: op mix, errors, latency per method and phase, clients, key
/// prefixes; with --fail-on, a CI gate.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace diff fixtures/baseline.etr new.etr\n  \
etcd-trace diff base.etr new.etr --fail-on 'p99(/etcdserverpb.KV/Put) > +20%' --fail-on 'errors(*) > 0'\n  \
etcd-trace diff base.etr new.etr --fail-on 'new-clients > 0' --fail-on 'req-size(Put) > +100%' --format json\n\n\
Checks: p50/p90/p99/max(METHOD or phase), count(METHOD), rate(METHOD), errors(METHOD), \
req-size(METHOD), resp-size(METHOD), new-clients, gone-clients, new-methods, \
gone-methods, new-prefixes, gone-prefixes, findings(low|medium|high|critical) (findings of \
`detect` at that severity or above whose rule and client the base did not have); compared with >, >=, <, <= to a number, a \
duration (10ms) or a change from base (+20%, -50%). METHOD is a full path, \
Service/Method, a short name or a glob (`*`). Phases: append, fsync, backend (an apply waiting behind a backend commit), reply, wal-fsync. \
Captures of different length are compared by rates (relative checks of counts use \
calls per second). A check that cannot be judged (a latency or size of calls the new \
capture does not have, or per-call latency of a `record --mode api` capture) fails, \
with why. Exit code: 1 when a check holds or cannot be judged, 0 when none does, 2 on \
error.")]
pub struct DiffArgs {
    /// The reference capture (e.g. a committed fixture), or a rotated recording's
    /// directory.
    pub base: PathBuf,
    /// The capture to check, or a rotated recording's directory.
    pub new: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// A check that fails the run when it holds (repeatable).
    #[arg(long = "fail-on", value_name = "EXPR")]
    pub fail_on: Vec<String>,
    /// Key prefixes are the first N components of a key (`/registry/pods/` is 2).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub prefix_depth: usize,
    /// Detection rules (YAML, laid over the built-in ones) for findings(...).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum FailLevel {
    Low,
    Medium,
    High,
    Critical,
}

/// Find suspicious use of etcd and trouble in a capture: bulk reads, enumeration, failed
/// logins and access changes, unexpected peers and clients, performance attacks, a slow
/// disk, and consensus in trouble.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace detect incident.etr\n  \
etcd-trace detect incident.etr --format json | jq 'select(.severity == \"high\")'\n  \
etcd-trace detect incident.etr --rules site-rules.yaml --fail-level medium   # CI check\n  \
etcd-trace detect --print-default-rules > site-rules.yaml\n  \
etcd-trace detect --follow --format json live.etr | my-alerter   # while `record -o live.etr` runs\n  \
etcd-trace detect incident.etr --baseline base.json   # also what deviates from normal\n\n\
Each finding names its rule, its severity, the client, when it happened, a sentence on what \
happened and why it matters, and evidence (the calls or packets). The rules and their \
thresholds are a YAML file built in (--print-default-rules shows it, with a comment on \
each rule); --rules FILE is laid over it, so it needs only what it changes. The exit code \
is 1 when a finding reaches --fail-level, 0 when none does, 2 on error. What the capture \
lost (recorder losses, TCP gaps, connections open before recording) is reported at the \
end of text output, and on stderr with --format json.\n\n\
The rules (--print-default-rules says what each means, its thresholds, and what to do):\n  \
bulk reads:     bulk-range-unbounded bulk-list-then-watch bulk-large-response\n                  \
bulk-client-volume bulk-snapshot bulk-watch-keyspace\n  \
enumeration:    enum-single-key-gets enum-sensitive-pagination\n  \
auth:           auth-failed-login auth-denied auth-disable auth-user-role-change\n                  \
auth-token-reuse\n  \
peers, clients: peer-unknown-address connection-reset client-garbage\n                  \
client-outside-networks\n  \
performance:    perf-unbounded-range perf-count-only-scans perf-huge-txn watch-storm\n                  \
lease-storm maintenance-defragment maintenance-compact fsync-dominance\n  \
health:         disk-wal-fsync-slow disk-fsync-stall slow-request\n                  \
apply-behind-backend-commit\n  \
raft:           raft-two-leaders raft-stale-leader raft-leader-change\n                  \
raft-frequent-elections raft-disk-stall raft-lagging-follower\n                  \
raft-repeated-snapshots raft-peer-refused\n  \
API mode:       cluster-alarm member-unreachable db-size-quota (record --mode api;\n                  \
its Status and /metrics also feed raft-leader-change, raft-frequent-elections,\n                  \
disk-wal-fsync-slow and disk-fsync-stall)\n  \
baseline:       baseline-new-client baseline-read-rate baseline-new-prefix\n                  \
baseline-method-mix (with --baseline)")]
pub struct DetectArgs {
    /// Capture file, or the files of a rotated recording or their directory (not
    /// needed with --print-default-rules).
    #[arg(required_unless_present = "print_default_rules", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Judge a capture while it is recorded: each finding printed (and flushed) as soon
    /// as its evidence is complete, once; follow rotation to the next file, and exit
    /// when the recorder finishes (or on Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// YAML rules laid over the built-in ones.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Exit with 1 when a finding is at least this severe.
    #[arg(long, value_enum, default_value_t = FailLevel::High)]
    pub fail_level: FailLevel,
    /// Text output: evidence lines shown per finding (JSON has all that were kept).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub evidence: usize,
    /// Print the built-in rules (a commented YAML file) and exit.
    #[arg(long)]
    pub print_default_rules: bool,
    /// A baseline learned from captures of normal operation (`etcd-trace baseline
    /// learn`): also flag what deviates from it (the baseline-* rules): a client it
    /// never saw, a client reading far faster than its normal rate, a key prefix no
    /// client read, a client whose method mix changed.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
}

/// A live dashboard of a capture: RPC rates, top clients and key prefixes, latency,
/// WAL fsyncs, the raft leader, and what was lost.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace top incident.etr                     # play the capture back in real time\n  \
etcd-trace top incident.etr --speed 10          # ten times faster\n  \
etcd-trace top incident.etr --max-speed         # as fast as it decodes\n  \
etcd-trace top --follow live.etr               # while `record -o live.etr` runs\n  \
etcd-trace top incident.etr --once --format json | jq '.methods[] | {method, p99_ns}'\n\n\
The screen is redrawn every second: requests per second by method (over the last 10 s of \
capture time), with totals, errors and p50/p99 latency of unary calls since the start; \
the clients (by address) with the most requests and the most bytes; the busiest key \
prefixes (--prefix-depth); WAL and backend fsync p99 from the fsync calls etcd made, and \
the bucket of the WAL sync p99 the kernel counted over the whole recording (from the \
index, format 5 on); the \
leader and term once peer traffic is decoded (settled up to 30 s behind); and every \
loss: events the kernel could not hand over, unreadable regions, bytes missing from TCP \
streams. A finished capture is played back at --speed against its own clock. q, Esc or \
Ctrl-C quits. It needs a terminal; --once prints one snapshot of the whole capture \
instead (text, or one JSON object with --format json), for scripts.")]
pub struct TopArgs {
    /// Capture file.
    pub file: PathBuf,
    /// Print one snapshot of the whole capture and exit, instead of the dashboard.
    #[arg(long)]
    pub once: bool,
    /// Follow a capture while it is recorded (and rotation to its next file): the
    /// dashboard shows it as it is written; with --once, the snapshot comes when the
    /// recorder has finished. A file a recorder is writing is followed without it.
    #[arg(long)]
    pub follow: bool,
    /// With --once: text, or one JSON object.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Playback speed against the capture's clock (0: as fast as possible).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub speed: f64,
    /// Play back as fast as possible (as --speed 0).
    #[arg(long, conflicts_with = "speed")]
    pub max_speed: bool,
    /// Rows in each top list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// How many `/`-separated key components name a prefix (2: `/registry/pods/`).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub prefix_depth: usize,
}

/// What `baseline learn` learns and what `detect --baseline` flags: the help of both.
macro_rules! baseline_help {
    () => {
        "Per client address (the port says nothing: etcdctl opens a new connection per \
command), `learn` keeps the calls per method (the method mix), and per method and key \
prefix the rates, request and response sizes, keys returned and latencies (as quantiles); \
the client's read rate (Range keys and bytes per second) on average and in its busiest \
10 s; and every key prefix any client read. Rates are per second of capture, so captures \
of any length compare. Give it captures of ordinary operation, long enough to hold what \
clients do now and then (a list every few minutes), and without the incident. Calls on \
connections open before recording began, whose method is unknown, are not learned. What \
--max-clients and --max-prefixes leave out is said and kept in the file.\n\n\
`detect --baseline FILE` then also flags, with the calls as evidence and what the \
baseline said: baseline-new-client (an address it never saw), baseline-read-rate (a \
client reading 10 times its normal keys or bytes per second within 60 s, faster than in \
its busiest 10 s, and at least 200 keys or 1 MiB), baseline-new-prefix (a key prefix no \
client read), baseline-method-mix (3 calls of a method the client never used, or a \
method's share of its calls moved by 25 points). Thresholds are in the rules file \
(`detect --print-default-rules`). The baseline is versioned JSON: `detect` refuses \
another version, and a baseline learned at another --prefix-depth than its rules use \
(baseline-new-prefix: prefix_depth, 2 by default)."
    };
}

/// Learn what normal looks like from captures of normal operation, for `detect
/// --baseline`.
#[derive(Debug, Args)]
#[command(after_help = concat!("Examples:\n  \
etcd-trace baseline learn monday.etr tuesday.etr -o base.json\n  \
etcd-trace detect incident.etr --baseline base.json\n\n", baseline_help!()))]
pub struct BaselineArgs {
    #[command(subcommand)]
    pub command: BaselineCommand,
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    Learn(BaselineLearnArgs),
}

/// Learn each client's normal calls from captures of normal operation into a baseline
/// file (JSON).
#[derive(Debug, Args)]
#[command(after_help = concat!("Examples:\n  \
etcd-trace baseline learn normal.etr -o base.json\n  \
etcd-trace baseline learn day1.etr day2.etr -o base.json --prefix-depth 3\n  \
etcd-trace detect incident.etr --baseline base.json --fail-level medium\n\n", baseline_help!()))]
pub struct BaselineLearnArgs {
    /// Captures of normal operation.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The baseline file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Key prefixes are the first N components of a key (`/registry/pods/` is 2).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub prefix_depth: usize,
    /// Clients learned: the first N addresses seen (up to 10000); others are counted as
    /// left out.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_clients: usize,
    /// (method, key prefix) pairs learned per client.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_prefixes: usize,
}

/// Merge the captures of a cluster's hosts (one recorder on each) into one capture, on
/// one clock, that every subcommand reads as it reads any capture.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace merge etcd-0.etr etcd-1.etr etcd-2.etr -o cluster.etr\n  \
etcd-trace info cluster.etr            # the hosts, their clock offsets and uncertainty\n  \
etcd-trace replay cluster.etr          # each client call once, whichever host saw it\n  \
etcd-trace wal cluster.etr             # each member's WAL, kept apart\n\n\
Record every host at the same time, with the peer port among the recorded ports: the \
hosts' clocks are never assumed to agree. Each host's offset from the first host's clock \
is estimated from the TCP segments one host saw leave and another saw arrive (the least \
delay each way, as NTP reasons), and is within the uncertainty reported beside it; a \
host that shares no segment with the others both ways is an error. A segment seen on \
both ends is kept once, as the sender saw it. The hosts' pids, thread ids and interface \
indexes are moved apart: the first host keeps its own, the second's get 4194304 added, \
the third's 8388608, and so on (`info` lists each host's base), and interfaces are named \
`IF@HOST`. The offsets, their uncertainty and how many segments were matched are \
printed on stderr and kept in the merged file, with what each host's capture lost.")]
pub struct MergeArgs {
    /// Capture files, one per host (two or more); the first host's clock is the
    /// reference.
    #[arg(value_name = "FILE", num_args = 2.., required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged capture to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Start a private etcd on loopback, record a short workload, and show the capture.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
sudo etcd-trace demo\n\n\
Needs root and Debian's etcd-server and etcd-client packages (etcd and etcdctl on PATH). \
The etcd runs in a network namespace of its own on 127.0.0.1:2379, with a data dir in a \
temporary directory that is removed afterwards.")]
pub struct DemoArgs {
    /// Keep the capture here instead of a temporary file.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Print a shell completion script.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
etcd-trace completions bash > /etc/bash_completion.d/etcd-trace\n  \
etcd-trace completions zsh > \"${fpath[1]}/_etcd-trace\"\n  \
etcd-trace completions fish > ~/.config/fish/completions/etcd-trace.fish")]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}
