//! The capture header: the context every analysis needs to interpret the events (how to
//! turn kernel timestamps into wall-clock time, what was traced, which etcd processes
//! ran), and the preamble that frames it at the start of the file.

use bincode::{Decode, Encode};
use serde::Serialize;

use super::event::EventKind;

/// The first bytes of every capture file.
pub const FILE_MAGIC: [u8; 10] = *b"ETCDTRACE\0";
/// The format version this build writes. It reads every version from
/// [`OLDEST_FORMAT_VERSION`] to this one.
pub const FORMAT_VERSION: u32 = 6;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// What a format version changes, for the readers that decode by it: the one place that
/// maps version numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Blocks hold bincode's `Vec<Event>`; the index holds the blocks only.
    V1,
    /// Blocks hold events as [`super::packed`] encodes them; the index also holds what
    /// redaction did.
    V2,
    /// As format 2, with TLS plaintext events (packed kind 3) and etcd processes that
    /// start and end (kind 4) behind a packed tag of a 3-bit kind, and one count per
    /// `EventKind` (five) per block in the index.
    V3,
    /// As format 3, with the hosts of a merged capture at the end of the header
    /// ([`Header::hosts`]).
    V4,
    /// As format 4, with the kernel's latency histograms at the end of the index
    /// ([`super::Index::latency`]).
    V5,
    /// As format 5, with API mode's events (packed kind 5, one more count per block in
    /// the index) and how the capture was recorded at the end of the header
    /// ([`Header::mode`]).
    V6,
}

impl CaptureFormat {
    /// The format of a version number; `None` for versions this build cannot read.
    pub fn of_version(version: u32) -> Option<CaptureFormat> {
        match version {
            1 => Some(CaptureFormat::V1),
            2 => Some(CaptureFormat::V2),
            3 => Some(CaptureFormat::V3),
            4 => Some(CaptureFormat::V4),
            5 => Some(CaptureFormat::V5),
            6 => Some(CaptureFormat::V6),
            _ => None,
        }
    }

    pub fn version(self) -> u32 {
        match self {
            CaptureFormat::V1 => 1,
            CaptureFormat::V2 => 2,
            CaptureFormat::V3 => 3,
            CaptureFormat::V4 => 4,
            CaptureFormat::V5 => 5,
            CaptureFormat::V6 => 6,
        }
    }

    /// The kinds of events a file of this format can hold, in `EventKind::ALL` order.
    pub fn kinds(self) -> &'static [EventKind] {
        match self {
            CaptureFormat::V1 | CaptureFormat::V2 => &EventKind::ALL[..3],
            CaptureFormat::V3 | CaptureFormat::V4 | CaptureFormat::V5 => &EventKind::ALL[..5],
            CaptureFormat::V6 => &EventKind::ALL,
        }
    }

    pub fn holds(self, kind: EventKind) -> bool {
        self.kinds().contains(&kind)
    }
}

/// Magic, format version and header length: the part of the preamble before the header.
pub const PREAMBLE_FIXED_LEN: usize = FILE_MAGIC.len() + 4 + 4;
/// Upper bound on the encoded header, so a damaged length field cannot make a reader
/// allocate without limit. A real header is a few KiB (command lines of a few processes).
pub const MAX_HEADER_LEN: u32 = 16 << 20;
/// Bound on what decoding a header may allocate (bincode claims per container).
const HEADER_DECODE_LIMIT: usize = 64 << 20;

/// What the recorder knew about the recording, written once at the start of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Header {
    /// `etcd-trace` version that recorded the file.
    pub recorder_version: String,
    pub hostname: String,
    /// `uname -r` of the recording host.
    pub kernel_release: String,
    /// Wall-clock ns since the Unix epoch = monotonic ns + this offset.
    pub clock_offset_ns: i64,
    /// Wall-clock time at which recording started, ns since the Unix epoch.
    pub started_wall_ns: u64,
    pub config: RecordConfig,
    /// The etcd processes seen when recording started.
    pub processes: Vec<ProcessInfo>,
    /// Interfaces the packet programs were attached to (ifindex → name).
    pub interfaces: Vec<InterfaceInfo>,
    /// A capture merged from several hosts' (`etcd-trace merge`): each input's host, in
    /// input order, the first the reference clock. Empty for one recorder's capture,
    /// whose host the fields above describe. Format 4 on; older files read as empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostInfo>,
    /// How the events were taken. Format 6 on; older files read as eBPF. Left out of
    /// JSON for eBPF, so that what eBPF captures print does not change.
    #[serde(skip_serializing_if = "CaptureMode::is_ebpf")]
    pub mode: CaptureMode,
}

/// How a capture's events were taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// Packets and syscalls, by the kernel programs (`record`).
    #[default]
    Ebpf,
    /// Watch changes and polls, by a client of these endpoints (`record --mode api`).
    Api { endpoints: Vec<String> },
}

impl CaptureMode {
    pub fn is_api(&self) -> bool {
        matches!(self, CaptureMode::Api { .. })
    }

    pub fn is_ebpf(&self) -> bool {
        !self.is_api()
    }

    /// What a capture of this mode cannot hold, for those who read it.
    pub fn not_in_it(&self) -> &'static [&'static str] {
        match self {
            CaptureMode::Ebpf => &[],
            CaptureMode::Api { .. } => {
                &["client identities", "reads", "per-call latency", "fsyncs"]
            }
        }
    }
}

impl Header {
    /// Wall-clock ns since the Unix epoch for a monotonic kernel timestamp of this
    /// recording, clamped to the u64 range.
    pub fn wall_ns(&self, mono_ns: u64) -> u64 {
        let wall = i128::from(mono_ns) + i128::from(self.clock_offset_ns);
        u64::try_from(wall.max(0)).unwrap_or(u64::MAX)
    }

    /// The interface name for an ifindex, if the recorder attached to it.
    pub fn interface_name(&self, ifindex: u32) -> Option<&str> {
        self.interfaces
            .iter()
            .find(|i| i.ifindex == ifindex)
            .map(|i| i.name.as_str())
    }
}

/// The recording's configuration, as given on the command line (after defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct RecordConfig {
    pub ports: Vec<u16>,
    pub interfaces: Vec<String>,
    pub pids: Vec<u32>,
    /// Bytes of TCP payload kept per packet.
    pub snaplen: u32,
    /// Bytes of buffer kept per file syscall.
    pub file_data_limit: u32,
    pub data_dir: Option<String>,
    /// Whether socket syscalls kept their buffer bytes.
    pub socket_payload: bool,
    /// Which kernel buffer carried events (`ringbuf` or `perf`).
    pub buffer: String,
    /// Whether passwords and tokens were redacted at record time.
    pub redact_secrets: bool,
}

/// One etcd process seen by the recorder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub cmdline: Vec<String>,
    /// The process's data dir (absolute), when the recorder could find it.
    pub data_dir: Option<String>,
}

/// A network interface the recorder attached to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct InterfaceInfo {
    pub ifindex: u32,
    pub name: String,
}

/// One host of a merged capture: what its own capture's header said, how its clock was
/// put on the reference's, and how its ids were kept apart from the other hosts'.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct HostInfo {
    /// Its host name, made unique among the hosts (`name#2` for a second `name`).
    pub name: String,
    /// The file it came from (its name, without the directories).
    pub source: String,
    pub kernel_release: String,
    pub recorder_version: String,
    pub format_version: u32,
    /// Its own header's monotonic-to-wall-clock offset.
    pub clock_offset_ns: i64,
    /// Its wall clock minus the reference's, as estimated from the TCP segments both
    /// ends saw; 0 for the reference.
    pub offset_ns: i64,
    /// The estimate is within ± this (the sum along the chain of hosts it was measured
    /// through); 0 for the reference.
    pub uncertainty_ns: u64,
    /// The host (index into `hosts`) its offset was measured against; None for the
    /// reference.
    pub measured_against: Option<u32>,
    /// Segments matched between it and that host, both ways.
    pub matched_segments: u64,
    /// Added to each of its event times in this file: its clock offset, less the
    /// estimated offset, less the merged file's clock offset.
    pub shift_ns: i64,
    /// Added to its pids, thread ids and interface indexes (a multiple of
    /// [`HOST_ID_STRIDE`]), so that the hosts' never collide.
    pub id_base: u32,
    /// Added to its TLS connection numbers.
    pub conn_id_base: u64,
    /// Events its capture lost: those its recorder could not take from the kernel (its
    /// loss events, which name no host), and those in damaged stretches of its file.
    pub events_lost: u64,
}

/// The room each host of a merged capture has for pids, thread ids and interface
/// indexes: Linux's largest pid_max (2^22).
pub const HOST_ID_STRIDE: u32 = 1 << 22;
/// The room each host has for TLS connection numbers (the programs count from 1).
pub const HOST_CONN_ID_STRIDE: u64 = 1 << 48;

/// The whole preamble for `header`: magic, version, header length, header, checksum.
pub fn encode_preamble(header: &Header) -> std::io::Result<Vec<u8>> {
    let body = bincode::encode_to_vec(header, bincode::config::standard())
        .map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len <= MAX_HEADER_LEN)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("capture header too large ({} bytes)", body.len()),
            )
        })?;
    let mut out = Vec::with_capacity(PREAMBLE_FIXED_LEN + body.len() + 4);
    out.extend_from_slice(&FILE_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decode the header bytes of a preamble (already checksummed) of a file of `format`.
/// Every byte must be used.
pub fn decode_header(bytes: &[u8], format: CaptureFormat) -> Result<Header, String> {
    let config = bincode::config::standard().with_limit::<HEADER_DECODE_LIMIT>();
    // Before format 4 the header ended where `hosts` begins, and before format 6 where
    // `mode` begins: such a header reads as one whose list of hosts is empty (a 0 byte,
    // bincode's varint length) and whose mode is eBPF (a 0 byte, the first variant).
    let missing = match format {
        CaptureFormat::V1 | CaptureFormat::V2 | CaptureFormat::V3 => 2,
        CaptureFormat::V4 | CaptureFormat::V5 => 1,
        CaptureFormat::V6 => 0,
    };
    let mut grown = Vec::new();
    let bytes = if missing == 0 {
        bytes
    } else {
        grown.reserve_exact(bytes.len() + missing);
        grown.extend_from_slice(bytes);
        grown.resize(bytes.len() + missing, 0);
        grown.as_slice()
    };
    let (header, used): (Header, usize) =
        bincode::decode_from_slice(bytes, config).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} unexpected bytes after the header",
            bytes.len().saturating_sub(used)
        ));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_readable_version_has_its_format() {
        for version in OLDEST_FORMAT_VERSION..=FORMAT_VERSION {
            let format = CaptureFormat::of_version(version).unwrap();
            assert_eq!(format.version(), version);
        }
        assert_eq!(CaptureFormat::of_version(OLDEST_FORMAT_VERSION - 1), None);
        assert_eq!(CaptureFormat::of_version(FORMAT_VERSION + 1), None);
        let current = CaptureFormat::of_version(FORMAT_VERSION).unwrap();
        assert_eq!(current.kinds(), EventKind::ALL);
        assert!(!CaptureFormat::V2.holds(EventKind::Tls));
        assert!(!CaptureFormat::V2.holds(EventKind::Process));
        assert!(CaptureFormat::V2.holds(EventKind::Loss));
    }

    fn sample() -> Header {
        Header {
            recorder_version: "0.1.0".into(),
            hostname: "etcd-0".into(),
            kernel_release: "6.8.0".into(),
            clock_offset_ns: 1_700_000_000_000_000_000,
            started_wall_ns: 1_700_000_000_500_000_000,
            config: RecordConfig {
                ports: vec![2379, 2380],
                interfaces: vec!["lo".into()],
                pids: vec![42],
                snaplen: 256,
                file_data_limit: 96,
                data_dir: Some("/var/lib/etcd".into()),
                socket_payload: false,
                buffer: "ringbuf".into(),
                redact_secrets: true,
            },
            processes: vec![ProcessInfo {
                pid: 42,
                cmdline: vec!["etcd".into(), "--name".into(), "a".into()],
                data_dir: Some("/var/lib/etcd".into()),
            }],
            interfaces: vec![InterfaceInfo {
                ifindex: 1,
                name: "lo".into(),
            }],
            hosts: Vec::new(),
            mode: CaptureMode::Ebpf,
        }
    }

    /// `sample` as API mode records it.
    fn api() -> Header {
        Header {
            mode: CaptureMode::Api {
                endpoints: vec!["https://10.0.0.1:2379".into(), "http://b:2379".into()],
            },
            ..sample()
        }
    }

    /// `sample` as a merge of two hosts would describe itself.
    fn merged() -> Header {
        let host = |name: &str, offset_ns: i64| HostInfo {
            name: name.into(),
            source: format!("{name}.etr"),
            kernel_release: "6.8.0".into(),
            recorder_version: "0.1.0".into(),
            format_version: 4,
            clock_offset_ns: 1_700_000_000_000_000_000,
            offset_ns,
            uncertainty_ns: offset_ns.unsigned_abs() / 10,
            measured_against: (offset_ns != 0).then_some(0),
            matched_segments: 17,
            shift_ns: -offset_ns,
            id_base: if offset_ns == 0 { 0 } else { HOST_ID_STRIDE },
            conn_id_base: if offset_ns == 0 {
                0
            } else {
                HOST_CONN_ID_STRIDE
            },
            events_lost: 3,
        };
        Header {
            hosts: vec![host("a", 0), host("b", -250_000_000)],
            ..sample()
        }
    }

    #[test]
    fn preamble_round_trip() {
        for header in [sample(), merged(), api()] {
            let pre = encode_preamble(&header).unwrap();
            assert_eq!(&pre[..10], &FILE_MAGIC);
            assert_eq!(&pre[10..14], &FORMAT_VERSION.to_le_bytes());
            let len = u32::from_le_bytes(pre[14..18].try_into().unwrap()) as usize;
            let body = &pre[18..18 + len];
            let crc = u32::from_le_bytes(pre[18 + len..].try_into().unwrap());
            assert_eq!(crc, crc32c::crc32c(&pre[..18 + len]));
            assert_eq!(decode_header(body, CaptureFormat::V6).unwrap(), header);
        }
    }

    /// A header of formats 4 and 5 is format 6's without its last field (the mode), and
    /// one of formats 1 to 3 is also without the one before (the hosts): they read as
    /// eBPF captures without hosts, and a newer header is no older one.
    #[test]
    fn older_headers_read_without_hosts_or_mode() {
        let v6 = bincode::encode_to_vec(sample(), bincode::config::standard()).unwrap();
        assert_eq!(v6.last(), Some(&0), "eBPF mode is one 0 byte");
        assert_eq!(v6[v6.len() - 2], 0, "an empty list of hosts is one 0 byte");
        let v5 = &v6[..v6.len() - 1];
        let v3 = &v6[..v6.len() - 2];
        for format in [CaptureFormat::V4, CaptureFormat::V5] {
            let header = decode_header(v5, format).unwrap();
            assert_eq!(header.mode, CaptureMode::Ebpf);
            assert_eq!(header, sample());
            assert!(decode_header(&v6, format).is_err());
            assert!(decode_header(v3, format).is_err());
        }
        for format in [CaptureFormat::V1, CaptureFormat::V2, CaptureFormat::V3] {
            assert_eq!(decode_header(v3, format).unwrap(), sample());
            assert!(decode_header(v5, format).is_err());
        }
        assert!(decode_header(v5, CaptureFormat::V6).is_err());
        let hosts = bincode::encode_to_vec(merged(), bincode::config::standard()).unwrap();
        let hosts_v5 = &hosts[..hosts.len() - 1];
        assert!(decode_header(hosts_v5, CaptureFormat::V3).is_err());
        assert_eq!(
            decode_header(hosts_v5, CaptureFormat::V5).unwrap(),
            merged()
        );
        let endpoints = bincode::encode_to_vec(api(), bincode::config::standard()).unwrap();
        assert_eq!(decode_header(&endpoints, CaptureFormat::V6).unwrap(), api());
        assert!(api().mode.is_api() && !sample().mode.is_api());
        for format in [CaptureFormat::V4, CaptureFormat::V5] {
            assert!(decode_header(&endpoints, format).is_err());
        }
    }

    #[test]
    fn wall_clock_conversion_saturates() {
        let mut h = sample();
        h.clock_offset_ns = 1_000;
        assert_eq!(h.wall_ns(5), 1_005);
        h.clock_offset_ns = -1_000;
        assert_eq!(h.wall_ns(5), 0);
        h.clock_offset_ns = i64::MAX;
        assert_eq!(h.wall_ns(u64::MAX), u64::MAX);
        assert_eq!(h.interface_name(1), Some("lo"));
        assert_eq!(h.interface_name(2), None);
    }

    #[test]
    fn header_decode_rejects_garbage_without_panic() {
        let mut rng = crate::test_rng::XorShift(0x1234_5678_9abc_def0);
        for len in 0..200 {
            let bytes = rng.bytes(len);
            let _ = decode_header(&bytes, CaptureFormat::V3);
            let _ = decode_header(&bytes, CaptureFormat::V4);
            let _ = decode_header(&bytes, CaptureFormat::V6);
        }
        for header in [merged(), api()] {
            let body = bincode::encode_to_vec(header, bincode::config::standard()).unwrap();
            assert!(decode_header(&body[..body.len() - 1], CaptureFormat::V6).is_err());
            let mut longer = body.clone();
            longer.push(0);
            assert!(decode_header(&longer, CaptureFormat::V6).is_err());
        }
    }
}
