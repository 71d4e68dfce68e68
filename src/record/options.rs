//! What the recorder is asked to do: the command line merged over an optional YAML
//! config file (the `collectors.etcd` block), with the defaults in one place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::priority::WriterPriority;

/// The event channel from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferKind {
    Ring,
    Perf,
}

impl BufferKind {
    pub fn name(self) -> &'static str {
        match self {
            BufferKind::Ring => "ring",
            BufferKind::Perf => "perf",
        }
    }
}

pub const DEFAULT_PORTS: [u16; 2] = [2379, 2380];
/// Whole segments. On a long-lived HTTP/2 connection one segment often carries frames
/// of several streams; when a large response shares a segment with other streams'
/// HEADERS, a shorter snaplen cuts those HEADERS off, and the lost HPACK updates leave
/// the rest of the connection's methods and statuses unknown. Measured: 100% of calls
/// decoded at 65535 against 23% with status at 4096 on the long-lived-client test.
pub const DEFAULT_SNAPLEN: u32 = 65535;
/// Whole WAL writes: an entry cut short cannot be linked to its call, and etcd's largest
/// request (1.5 MiB by default, --max-request-bytes) is one WAL record. What one event
/// cannot carry follows it in parts (bpf/events.h, et_syscall_more).
pub const DEFAULT_FILE_DATA_LIMIT: u32 = 2 << 20;
/// Bytes kept of writes to data-dir files other than the WAL (backend pages, snapshots),
/// which no analysis decodes.
pub const OTHER_FILE_DATA_LIMIT: u32 = 512;
pub const MAX_SNAPLEN: u32 = 65535;
pub const MAX_FILE_DATA: u32 = super::layout::MAX_WAL_WRITE;
/// The eBPF programs compare against lists of this length (bpf/etcd_trace.bpf.c, MAX_TRACED).
pub const MAX_TRACED_PIDS: usize = 16;
pub const MAX_TRACED_PORTS: usize = 16;

/// A perf sample's size field is 16 bits: keep events under it.
pub const PERF_MAX_PAYLOAD: u32 = 65000 - 328;

#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub output: PathBuf,
    /// The config file says `mode: api`: the endpoints it gives (maybe none; then
    /// --endpoints must).
    pub api_endpoints: Option<Vec<String>>,
    pub pids: Vec<u32>,
    pub ports: Vec<u16>,
    pub interfaces: Vec<String>,
    pub snaplen: u32,
    pub file_data_limit: u32,
    pub socket_payload: bool,
    /// Report every socket read and write of etcd on the traced ports, not only the
    /// first on each socket.
    pub socket_syscalls: bool,
    /// Capture the plaintext of etcd's TLS connections (uprobes on Go's crypto/tls).
    pub tls_plaintext: bool,
    pub data_dir: Option<PathBuf>,
    pub duration: Option<Duration>,
    pub buffer: BufferKind,
    pub buffer_mb: u32,
    pub trace_syscalls: bool,
    pub rotate_size_mb: Option<u64>,
    pub rotate_time: Option<Duration>,
    pub keep: Option<usize>,
    pub stats: bool,
    pub status_line: bool,
    /// Overwrite passwords and auth tokens in client traffic before writing it.
    pub redact_secrets: bool,
    /// How the capture writer thread is scheduled.
    pub writer_priority: WriterPriority,
}

impl RecordOptions {
    pub fn new(output: PathBuf) -> RecordOptions {
        RecordOptions {
            output,
            api_endpoints: None,
            pids: Vec::new(),
            ports: DEFAULT_PORTS.to_vec(),
            interfaces: Vec::new(),
            snaplen: DEFAULT_SNAPLEN,
            file_data_limit: DEFAULT_FILE_DATA_LIMIT,
            socket_payload: false,
            socket_syscalls: false,
            tls_plaintext: true,
            data_dir: None,
            duration: None,
            buffer: BufferKind::Ring,
            buffer_mb: 64,
            trace_syscalls: true,
            rotate_size_mb: None,
            rotate_time: None,
            keep: None,
            stats: false,
            status_line: true,
            redact_secrets: true,
            writer_priority: WriterPriority::Idle,
        }
    }

    /// Without --pid, etcd processes are followed: one that starts while recording is
    /// traced from its exec, as those found at the start are.
    pub fn follows(&self) -> bool {
        self.pids.is_empty()
    }

    pub fn validate(&mut self) -> Result<()> {
        if self.snaplen > MAX_SNAPLEN {
            bail!(
                "--snaplen {} is above the maximum of {MAX_SNAPLEN}",
                self.snaplen
            );
        }
        if self.file_data_limit > MAX_FILE_DATA {
            bail!(
                "--file-data {} is above the maximum of {MAX_FILE_DATA}",
                self.file_data_limit
            );
        }
        if self.buffer == BufferKind::Perf {
            self.snaplen = self.snaplen.min(PERF_MAX_PAYLOAD);
            self.file_data_limit = self.file_data_limit.min(PERF_MAX_PAYLOAD);
        }
        if self.ports.is_empty() {
            bail!("no ports to trace: give at least one --port");
        }
        self.ports.sort_unstable();
        self.ports.dedup();
        if self.ports.len() > MAX_TRACED_PORTS {
            bail!(
                "{} ports given; one recorder traces at most {MAX_TRACED_PORTS}",
                self.ports.len()
            );
        }
        if self.pids.len() > MAX_TRACED_PIDS {
            bail!(
                "{} pids given; one recorder traces at most {MAX_TRACED_PIDS} etcd processes (run one recorder per group)",
                self.pids.len()
            );
        }
        if self.keep == Some(0) {
            bail!("--keep 0 would delete every capture: keep at least 1 file");
        }
        if self.keep.is_some() && self.rotate_size_mb.is_none() && self.rotate_time.is_none() {
            bail!("--keep only makes sense with --rotate-size or --rotate-time");
        }
        if self.socket_payload && self.redact_secrets {
            // Socket buffers are cut at arbitrary read/write boundaries per thread; the
            // scrubber follows TCP streams and TLS plaintext, so it cannot vouch for them.
            bail!(
                "--socket-payload keeps etcd's socket buffers, which hold the passwords and \
                 tokens that are redacted from packets, unredacted; add --keep-secrets to \
                 record them anyway, or drop --socket-payload (the packets carry the same bytes)"
            );
        }
        if !self.buffer_mb.is_power_of_two() {
            bail!(
                "--buffer-mb must be a power of two (ring buffer sizes are), got {}",
                self.buffer_mb
            );
        }
        Ok(())
    }

    /// Apply a config file's `collectors.etcd` block. Command-line values given
    /// explicitly win: the caller applies the file first, then its own flags.
    pub fn apply_config_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let file: ConfigFile = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        let Some(etcd) = file.collectors.and_then(|c| c.etcd) else {
            bail!(
                "config file {} has no `collectors.etcd` block; see `etcd-trace record --help`",
                path.display()
            );
        };
        if etcd.enabled == Some(false) {
            bail!(
                "recording is disabled in config file {} (collectors.etcd.enabled: false)",
                path.display()
            );
        }
        if etcd.mode == Some(CollectorMode::Api) {
            self.api_endpoints = Some(etcd.endpoints.unwrap_or_default());
            return Ok(());
        }
        if etcd.endpoints.is_some() {
            bail!(
                "config file {}: collectors.etcd.endpoints go with `mode: api`",
                path.display()
            );
        }
        // The design nests the eBPF settings under `ebpf:`; the same keys at the top of
        // the block are accepted too, and the nested ones win.
        let ebpf = etcd.ebpf.unwrap_or_default();
        let payload_size = ebpf.payload_size.or(etcd.payload_size);
        let trace_syscalls = ebpf.trace_syscalls.or(etcd.trace_syscalls);
        let monitor_files = ebpf.monitor_files.or(etcd.monitor_files);
        let capture_payload = ebpf.capture_payload.or(etcd.capture_payload);
        if let Some(ports) = etcd.ports {
            self.ports = ports;
        }
        if let Some(pids) = etcd.pids {
            self.pids = pids;
        }
        if let Some(dir) = etcd.data_dir {
            self.data_dir = Some(dir);
        }
        if let Some(size) = payload_size {
            self.snaplen = size;
        }
        if let Some(trace) = trace_syscalls {
            self.trace_syscalls = trace;
        }
        if monitor_files == Some(false) {
            self.file_data_limit = 0;
        }
        if capture_payload == Some(false) {
            self.snaplen = 0;
            self.socket_payload = false;
        }
        if let Some(ifaces) = etcd.interfaces {
            self.interfaces = ifaces;
        }
        if let Some(redact) = etcd.redact_secrets {
            self.redact_secrets = redact;
        }
        if let Some(tls) = etcd.tls_plaintext {
            self.tls_plaintext = tls;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    collectors: Option<Collectors>,
}

#[derive(Debug, Deserialize)]
struct Collectors {
    etcd: Option<EtcdCollector>,
}

/// The `collectors.etcd` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdCollector {
    /// false: the file says not to record.
    enabled: Option<bool>,
    /// How etcd is watched: `ebpf` (the default) or `api` (through its API).
    mode: Option<CollectorMode>,
    /// With `mode: api`: etcd's client URLs.
    endpoints: Option<Vec<String>>,
    /// The eBPF settings, as the design nests them.
    ebpf: Option<EbpfSettings>,
    ports: Option<Vec<u16>>,
    pids: Option<Vec<u32>>,
    data_dir: Option<PathBuf>,
    /// Bytes of TCP payload kept per segment (the snaplen).
    payload_size: Option<u32>,
    /// Trace etcd's write/read/fsync system calls.
    trace_syscalls: Option<bool>,
    /// Keep the first bytes of data-dir file writes (WAL records).
    monitor_files: Option<bool>,
    /// Keep TCP payload at all (false: headers and sizes only).
    capture_payload: Option<bool>,
    interfaces: Option<Vec<String>>,
    /// Overwrite passwords and auth tokens in client traffic (false: --keep-secrets).
    redact_secrets: Option<bool>,
    /// Capture the plaintext of TLS connections (false: --no-tls).
    tls_plaintext: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CollectorMode {
    Ebpf,
    Api,
}

/// `collectors.etcd.ebpf`: the same keys as at the top of the block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EbpfSettings {
    capture_payload: Option<bool>,
    payload_size: Option<u32>,
    trace_syscalls: Option<bool>,
    monitor_files: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_block_applies() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(
            &p,
            "collectors:\n  etcd:\n    ports: [12379]\n    data_dir: /var/lib/etcd\n    payload_size: 512\n    monitor_files: false\n",
        )
        .unwrap();
        let mut o = RecordOptions::new("x".into());
        o.apply_config_file(&p).unwrap();
        assert_eq!(o.ports, vec![12379]);
        assert_eq!(o.snaplen, 512);
        assert_eq!(o.file_data_limit, 0);
        assert_eq!(o.data_dir.as_deref(), Some(Path::new("/var/lib/etcd")));
    }

    /// The `collectors.etcd` block as the design writes it.
    const DESIGN_BLOCK: &str = "\
collectors:
  etcd:
    enabled: true
    mode: ebpf  # ebpf | api
    ebpf:
      capture_payload: true
      payload_size: 4096
      trace_syscalls: true
      monitor_files: true
    ports: [2379, 2380]
    pids: []
    data_dir: /var/lib/etcd
";

    fn apply(text: &str) -> Result<RecordOptions> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, text).unwrap();
        let mut o = RecordOptions::new("x".into());
        o.apply_config_file(&p).map(|()| o)
    }

    #[test]
    fn the_designs_block_parses_as_written() {
        let o = apply(DESIGN_BLOCK).unwrap();
        assert_eq!(o.ports, vec![2379, 2380]);
        assert!(o.pids.is_empty());
        assert_eq!(o.snaplen, 4096);
        assert!(o.trace_syscalls);
        assert_eq!(o.file_data_limit, DEFAULT_FILE_DATA_LIMIT);
        assert_eq!(o.data_dir.as_deref(), Some(Path::new("/var/lib/etcd")));
        let o =
            apply(&DESIGN_BLOCK.replace("monitor_files: true", "monitor_files: false")).unwrap();
        assert_eq!(o.file_data_limit, 0);
    }

    #[test]
    fn disabled_says_so_and_api_mode_takes_endpoints() {
        let e = apply(&DESIGN_BLOCK.replace("enabled: true", "enabled: false")).unwrap_err();
        assert!(
            format!("{e:#}").contains("recording is disabled in config file"),
            "{e:#}"
        );
        let o = apply(&DESIGN_BLOCK.replace("mode: ebpf", "mode: api")).unwrap();
        assert_eq!(o.api_endpoints, Some(Vec::new()));
        let o = apply(&DESIGN_BLOCK.replace(
            "mode: ebpf",
            "mode: api\n    endpoints: [\"http://10.0.0.5:2379\"]",
        ))
        .unwrap();
        assert_eq!(
            o.api_endpoints,
            Some(vec!["http://10.0.0.5:2379".to_string()])
        );
        let e = apply(&DESIGN_BLOCK.replace("mode: ebpf", "mode: kernel")).unwrap_err();
        assert!(format!("{e:#}").contains("line 4"), "{e:#}");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let e = apply("collectors:\n  etcd:\n    portz: [1]\n").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("portz") && msg.contains("line 3"), "{msg}");
        let e = apply(&DESIGN_BLOCK.replace("trace_syscalls", "trace_syscallz")).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("trace_syscallz") && msg.contains("line 8"),
            "{msg}"
        );
    }

    #[test]
    fn socket_payload_needs_keep_secrets() {
        let mut o = RecordOptions::new("x".into());
        o.socket_payload = true;
        let err = o.validate().unwrap_err();
        assert!(format!("{err:#}").contains("--keep-secrets"), "{err:#}");
        o.redact_secrets = false;
        assert!(o.validate().is_ok());
    }

    #[test]
    fn keep_needs_rotation() {
        let mut o = RecordOptions::new("x".into());
        o.keep = Some(3);
        assert!(o.validate().is_err());
        o.rotate_size_mb = Some(10);
        assert!(o.validate().is_ok());
    }

    #[test]
    fn ports_and_pids_fit_the_programs_lists() {
        let mut o = RecordOptions::new("x".into());
        o.ports = (2000..2000 + MAX_TRACED_PORTS as u16)
            .chain([2000, 2001])
            .collect();
        o.validate().unwrap();
        assert_eq!(o.ports.len(), MAX_TRACED_PORTS, "duplicates are dropped");
        o.ports.push(3000);
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("at most 16"), "{e}");
        o.ports.truncate(1);
        o.pids = (1..=MAX_TRACED_PIDS as u32 + 1).collect();
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("one recorder per group"), "{e}");
    }
}
