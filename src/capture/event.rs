//! The events a capture holds: what the kernel saw, decoded from the eBPF layout into
//! plain Rust values. This is the contract between the recorder and every analysis, and
//! it is written into capture files, so changing it means a new format version.

use std::net::SocketAddr;

use bincode::{Decode, Encode};
use bytes::Bytes;
use serde::Serialize;

pub use super::api::ApiEvent;

/// One thing the kernel saw.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Packet(Packet),
    Syscall(Syscall),
    Loss(Loss),
    Tls(TlsData),
    Process(ProcessEvent),
    /// What API mode saw (`record --mode api`), in place of packets and syscalls.
    Api(ApiEvent),
}

/// The kinds of events, for counts in the index and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Packet,
    Syscall,
    Loss,
    Tls,
    Process,
    Api,
}

/// Events per kind, in `EventKind::ALL` order.
pub type KindCounts = [u64; EventKind::COUNT];

impl EventKind {
    /// How many kinds there are: the length of every per-kind count array.
    pub const COUNT: usize = 6;

    pub const ALL: [EventKind; EventKind::COUNT] = [
        EventKind::Packet,
        EventKind::Syscall,
        EventKind::Loss,
        EventKind::Tls,
        EventKind::Process,
        EventKind::Api,
    ];

    /// Position of this kind in `ALL`, and so in every per-kind count array.
    pub fn slot(self) -> usize {
        match self {
            EventKind::Packet => 0,
            EventKind::Syscall => 1,
            EventKind::Loss => 2,
            EventKind::Tls => 3,
            EventKind::Process => 4,
            EventKind::Api => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Packet => "packet",
            EventKind::Syscall => "syscall",
            EventKind::Loss => "loss",
            EventKind::Tls => "tls",
            EventKind::Process => "process",
            EventKind::Api => "api",
        }
    }
}

impl Event {
    /// Monotonic kernel time (CLOCK_MONOTONIC ns) at which the event started. Events
    /// arrive roughly, not strictly, in this order: a syscall is handed over at its exit.
    pub fn ts_ns(&self) -> u64 {
        match self {
            Event::Packet(p) => p.ts_ns,
            Event::Syscall(s) => s.enter_ns,
            Event::Loss(l) => l.ts_ns,
            Event::Tls(t) => t.ts_ns,
            Event::Process(p) => p.ts_ns,
            Event::Api(a) => a.ts_ns,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Event::Packet(_) => EventKind::Packet,
            Event::Syscall(_) => EventKind::Syscall,
            Event::Loss(_) => EventKind::Loss,
            Event::Tls(_) => EventKind::Tls,
            Event::Process(_) => EventKind::Process,
            Event::Api(_) => EventKind::Api,
        }
    }
}

/// Where a packet was seen relative to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Ingress,
    Egress,
}

/// TCP header flags as on the wire (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode, Serialize)]
#[serde(transparent)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }

    /// `SYN,ACK` style, for text output.
    pub fn describe(self) -> String {
        const NAMES: [(u8, &str); 5] = [
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::FIN, "FIN"),
            (TcpFlags::RST, "RST"),
            (TcpFlags::PSH, "PSH"),
            (TcpFlags::ACK, "ACK"),
        ];
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(",")
        }
    }
}

/// One TCP segment on a traced port, with the first `snaplen` bytes of its payload.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Packet {
    pub ts_ns: u64,
    pub ifindex: u32,
    pub direction: Direction,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    /// Length of the TCP payload on the wire; `payload` may hold fewer bytes.
    pub payload_len: u32,
    /// Shared bytes: the recorder slices payloads out of the batch it read from the
    /// kernel instead of allocating one per event.
    #[bincode(with_serde)]
    #[serde(serialize_with = "crate::capture::event::base64_bytes")]
    pub payload: Bytes,
}

impl Packet {
    /// True when the payload was cut at snaplen: the rest is unknown to every decoder.
    pub fn truncated(&self) -> bool {
        (self.payload.len() as u64) < u64::from(self.payload_len)
    }
}

/// The system calls the recorder traces on etcd processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyscallKind {
    Write,
    Pwrite64,
    Writev,
    Read,
    Pread64,
    Fsync,
    Fdatasync,
}

impl SyscallKind {
    pub fn name(self) -> &'static str {
        match self {
            SyscallKind::Write => "write",
            SyscallKind::Pwrite64 => "pwrite64",
            SyscallKind::Writev => "writev",
            SyscallKind::Read => "read",
            SyscallKind::Pread64 => "pread64",
            SyscallKind::Fsync => "fsync",
            SyscallKind::Fdatasync => "fdatasync",
        }
    }

    /// The number of this call in the kernel's events (`enum et_call` in bpf/events.h)
    /// and in format 2's blocks.
    pub fn code(self) -> u8 {
        match self {
            SyscallKind::Write => 0,
            SyscallKind::Pwrite64 => 1,
            SyscallKind::Writev => 2,
            SyscallKind::Read => 3,
            SyscallKind::Pread64 => 4,
            SyscallKind::Fsync => 5,
            SyscallKind::Fdatasync => 6,
        }
    }

    /// The call numbered `code`, the inverse of [`code`](Self::code).
    pub fn from_code(code: u32) -> Option<SyscallKind> {
        Some(match code {
            0 => SyscallKind::Write,
            1 => SyscallKind::Pwrite64,
            2 => SyscallKind::Writev,
            3 => SyscallKind::Read,
            4 => SyscallKind::Pread64,
            5 => SyscallKind::Fsync,
            6 => SyscallKind::Fdatasync,
            _ => return None,
        })
    }

    pub fn is_write(self) -> bool {
        matches!(
            self,
            SyscallKind::Write | SyscallKind::Pwrite64 | SyscallKind::Writev
        )
    }

    pub fn is_read(self) -> bool {
        matches!(self, SyscallKind::Read | SyscallKind::Pread64)
    }

    pub fn is_sync(self) -> bool {
        matches!(self, SyscallKind::Fsync | SyscallKind::Fdatasync)
    }
}

/// What an fd pointed to, classified in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// `member/wal/*` (including the temp file before its rename).
    Wal,
    /// `member/snap/*.snap` and other files in member/snap except the backend.
    Snap,
    /// `member/snap/db`, the bbolt backend.
    Db,
    /// Any other file under the data dir.
    OtherData,
    /// A TCP socket on a traced port.
    Socket,
}

impl FileKind {
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Wal => "wal",
            FileKind::Snap => "snap",
            FileKind::Db => "db",
            FileKind::OtherData => "data",
            FileKind::Socket => "socket",
        }
    }

    /// Classify a path relative to the data dir (`member/wal/0-0.wal`).
    pub fn of_data_path(path: &str) -> FileKind {
        if path.starts_with("member/wal/") {
            FileKind::Wal
        } else if path == "member/snap/db" {
            FileKind::Db
        } else if path.starts_with("member/snap/") {
            FileKind::Snap
        } else {
            FileKind::OtherData
        }
    }
}

/// The file an fd pointed to when the syscall ran.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode, Serialize)]
pub struct FileRef {
    pub kind: FileKind,
    /// Relative to the etcd data dir for files (`member/wal/0000000000000000-0000000000000000.wal`);
    /// empty for sockets.
    pub path: String,
    /// For sockets: the local and the peer port.
    pub local_port: u16,
    pub peer_port: u16,
}

/// One system call of a traced etcd process, on a file under the data dir or a socket of
/// a traced port.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Syscall {
    pub enter_ns: u64,
    pub exit_ns: u64,
    /// Process (tgid) and thread id.
    pub pid: u32,
    pub tid: u32,
    pub call: SyscallKind,
    pub fd: i32,
    pub file: FileRef,
    /// File offset the data went to or came from: the pwrite/pread argument, or the file
    /// position at entry. None for sockets and syncs.
    pub offset: Option<u64>,
    /// Bytes asked for (count argument, or the iovec total for writev).
    pub requested: u64,
    /// The syscall's return value (bytes, or -errno).
    pub ret: i64,
    /// The first bytes of the buffer (at exit, so reads hold what was read).
    #[bincode(with_serde)]
    #[serde(serialize_with = "crate::capture::event::base64_bytes")]
    pub data: Bytes,
}

impl Syscall {
    pub fn duration_ns(&self) -> u64 {
        self.exit_ns.saturating_sub(self.enter_ns)
    }

    /// Bytes the call actually moved (0 on error).
    pub fn transferred(&self) -> u64 {
        if self.ret > 0 {
            self.ret as u64
        } else {
            0
        }
    }
}

/// Where events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossSource {
    /// The BPF ring buffer or perf buffer was full (counted in the kernel).
    Kernel,
    /// The perf buffer reported lost samples.
    PerfBuffer,
}

/// Events the kernel could not hand over, counted since the previous loss record.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Loss {
    pub ts_ns: u64,
    pub source: LossSource,
    pub count: u64,
}

/// Plaintext of a TLS connection of a traced etcd process, taken from Go's crypto/tls.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct TlsData {
    pub ts_ns: u64,
    /// Process (tgid) and thread id.
    pub pid: u32,
    pub tid: u32,
    /// The connection, numbered by the recorder's programs (unique within one recording).
    pub conn_id: u64,
    /// Egress: etcd wrote it ((*Conn).Write); Ingress: etcd read it ((*Conn).Read).
    pub direction: Direction,
    /// etcd's end and the other end of the connection; None while its socket was not
    /// known.
    pub endpoints: Option<TlsEndpoints>,
    /// Offset of `data`'s first byte in this direction's plaintext stream.
    pub offset: u64,
    /// Plaintext bytes this event stands for; `data` may hold fewer (the rest could not
    /// be read).
    pub len: u32,
    /// Shared bytes, like [`Packet::payload`].
    #[bincode(with_serde)]
    #[serde(serialize_with = "crate::capture::event::base64_bytes")]
    pub data: Bytes,
}

impl TlsData {
    /// True when `data` holds fewer bytes than the event stands for.
    pub fn truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.len)
    }
}

/// The two ends of a TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize)]
pub struct TlsEndpoints {
    /// etcd's end.
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// A traced etcd process that started or ended while recording (those running when it
/// started are in the header).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct ProcessEvent {
    /// When it exec'd etcd, or when its last thread exited.
    pub ts_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    #[serde(flatten)]
    pub change: ProcessChange,
}

impl ProcessEvent {
    /// One line for people: "etcd pid 4301 started, data dir /var/lib/etcd", "etcd pid
    /// 4242 killed by SIGKILL", "etcd pid 4242 exited, exit code 1".
    pub fn describe(&self) -> String {
        let pid = self.pid;
        match &self.change {
            ProcessChange::Start { data_dir, .. } => format!(
                "etcd pid {pid} started, data dir {}",
                data_dir.as_deref().unwrap_or("unknown")
            ),
            ProcessChange::Exit {
                signal: Some(_), ..
            } => format!(
                "etcd pid {pid} {}",
                self.change.exit_reason().unwrap_or_default()
            ),
            ProcessChange::Exit { .. } => format!(
                "etcd pid {pid} exited, {}",
                self.change.exit_reason().unwrap_or_default()
            ),
        }
    }
}

/// What happened to the process.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ProcessChange {
    /// It exec'd etcd and was traced from then on: its data dir and command line as the
    /// recorder found them (as for the processes of the header).
    Start {
        data_dir: Option<String>,
        cmdline: Vec<String>,
    },
    /// It ended: with an exit code, or killed by a signal.
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

impl ProcessChange {
    /// The end of a process whose wait(2) status is `status` (the kernel's exit_code of
    /// its last thread): the killing signal in bits 0-6, else the exit code in bits 8-15.
    pub fn exit_of_status(status: i32) -> ProcessChange {
        match status & 0x7f {
            0 => ProcessChange::Exit {
                code: Some((status >> 8) & 0xff),
                signal: None,
            },
            signal => ProcessChange::Exit {
                code: None,
                signal: Some(signal),
            },
        }
    }

    /// How an exit ended the process: "killed by SIGKILL", "exit code 1"; None for a
    /// start.
    pub fn exit_reason(&self) -> Option<String> {
        match self {
            ProcessChange::Start { .. } => None,
            ProcessChange::Exit {
                signal: Some(signal),
                ..
            } => Some(format!("killed by {}", signal_name(*signal))),
            ProcessChange::Exit {
                code: Some(code), ..
            } => Some(format!("exit code {code}")),
            ProcessChange::Exit { .. } => Some("exit status unknown".to_string()),
        }
    }
}

/// `SIGKILL` for 9, and so on for Linux's signals; `signal 40` for the others.
pub fn signal_name(signal: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("signal {signal}"), |name| name.to_string())
}

pub(crate) fn base64_bytes<S: serde::Serializer, B: AsRef<[u8]>>(
    bytes: &B,
    s: S,
) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()))
}
