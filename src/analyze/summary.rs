//! What a capture holds at a glance, for `info`: counts, time range, connections seen,
//! files written, TLS plaintext, etcd processes, losses. One pass over the events.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use crate::capture::{Direction, Event, EventKind, FileKind, Header, LossSource, ProcessChange};
use crate::decode::tcp::ConnectionKey;
use crate::decode::tls::{looks_like_tls_record, placement};

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectionStats {
    pub segments: u64,
    pub payload_bytes: u64,
    pub syn_seen: bool,
    pub fin_seen: bool,
    pub rst_seen: bool,
    pub first_ns: u64,
    pub last_ns: u64,
    /// The connection's first payload is a TLS record: its segments carry ciphertext.
    #[serde(skip_serializing_if = "is_false")]
    pub tls: bool,
    /// Plaintext bytes the recorder took inside etcd for this connection (TLS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_plaintext_bytes: Option<u64>,
    #[serde(skip)]
    payload_seen: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileStats {
    pub kind: Option<FileKind>,
    pub writes: u64,
    pub bytes_written: u64,
    pub reads: u64,
    pub bytes_read: u64,
    pub syncs: u64,
    pub sync_ns_total: u64,
    pub sync_ns_max: u64,
}

/// The plaintext of one TLS connection, as its events tell it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsConnectionStats {
    /// etcd's end and the other end, once an event knew them.
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub events: u64,
    /// Plaintext bytes etcd wrote and read, as the events stand for them.
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Of those, the bytes captured.
    pub captured_bytes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// An etcd process the capture knows of: one of the header's (running when recording
/// started), or one that started while recording; and its end, when it came.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessSummary {
    pub pid: u32,
    pub data_dir: Option<String>,
    pub cmdline: Vec<String>,
    /// When it started; None for a process that ran when recording started.
    pub started_ns: Option<u64>,
    /// When it ended; None while it ran when recording stopped.
    pub ended_ns: Option<u64>,
    /// How it ended: its exit code, or the signal that killed it.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

impl ProcessSummary {
    /// How it ended, in words ("killed by SIGKILL", "exit code 0").
    pub fn end_reason(&self) -> Option<String> {
        self.ended_ns?;
        ProcessChange::Exit {
            code: self.exit_code,
            signal: self.signal,
        }
        .exit_reason()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CaptureSummary {
    pub events: u64,
    pub counts: BTreeMap<&'static str, u64>,
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub lost: u64,
    pub lost_by_source: BTreeMap<&'static str, u64>,
    pub connections: BTreeMap<String, ConnectionStats>,
    pub files: BTreeMap<String, FileStats>,
    pub socket_syscalls: u64,
    /// By the recorder's connection number.
    pub tls_connections: BTreeMap<u64, TlsConnectionStats>,
    /// The header's processes, then each that started, in the order they came.
    pub processes: Vec<ProcessSummary>,
}

/// Streams events into a summary.
#[derive(Debug)]
pub struct SummaryBuilder {
    ports: Vec<u16>,
    summary: CaptureSummary,
}

impl SummaryBuilder {
    /// A summary of a capture with this header, counting the `kinds` its format holds
    /// (and any other kind that comes).
    pub fn new(header: &Header, kinds: &[EventKind]) -> SummaryBuilder {
        let mut summary = CaptureSummary::default();
        for &k in kinds {
            summary.counts.insert(k.name(), 0);
        }
        summary.processes = header
            .processes
            .iter()
            .map(|p| ProcessSummary {
                pid: p.pid,
                data_dir: p.data_dir.clone(),
                cmdline: p.cmdline.clone(),
                ..ProcessSummary::default()
            })
            .collect();
        SummaryBuilder {
            ports: header.config.ports.clone(),
            summary,
        }
    }

    pub fn push(&mut self, ev: &Event) {
        let s = &mut self.summary;
        s.events += 1;
        *s.counts.entry(ev.kind().name()).or_default() += 1;
        let ts = ev.ts_ns();
        s.start_ns = Some(s.start_ns.map_or(ts, |t| t.min(ts)));
        let end = match ev {
            Event::Syscall(sc) => sc.exit_ns.max(ts),
            _ => ts,
        };
        s.end_ns = Some(s.end_ns.map_or(end, |t| t.max(end)));
        match ev {
            Event::Packet(p) => {
                let ports = &self.ports;
                let (addrs, _) =
                    ConnectionKey::of_segment(p.src, p.dst, |port| ports.contains(&port));
                let key = format!("{} -> {}", addrs.client, addrs.server);
                let c = self
                    .summary
                    .connections
                    .entry(key)
                    .or_insert_with(|| ConnectionStats {
                        first_ns: p.ts_ns,
                        ..Default::default()
                    });
                c.segments += 1;
                c.payload_bytes += u64::from(p.payload_len);
                if !c.payload_seen && !p.payload.is_empty() {
                    c.payload_seen = true;
                    c.tls = looks_like_tls_record(&p.payload);
                }
                c.syn_seen |= p.flags.syn();
                c.fin_seen |= p.flags.fin();
                c.rst_seen |= p.flags.rst();
                c.last_ns = c.last_ns.max(p.ts_ns);
            }
            Event::Syscall(sc) => {
                if sc.file.kind == FileKind::Socket {
                    s.socket_syscalls += 1;
                    return;
                }
                let f = s.files.entry(sc.file.path.clone()).or_default();
                f.kind = Some(sc.file.kind);
                if sc.call.is_write() {
                    f.writes += 1;
                    f.bytes_written += sc.transferred();
                } else if sc.call.is_read() {
                    f.reads += 1;
                    f.bytes_read += sc.transferred();
                } else if sc.call.is_sync() {
                    f.syncs += 1;
                    f.sync_ns_total += sc.duration_ns();
                    f.sync_ns_max = f.sync_ns_max.max(sc.duration_ns());
                }
            }
            Event::Loss(l) => {
                s.lost += l.count;
                let src = match l.source {
                    LossSource::Kernel => "kernel",
                    LossSource::PerfBuffer => "perf_buffer",
                };
                *s.lost_by_source.entry(src).or_default() += l.count;
            }
            Event::Tls(t) => {
                let c = s
                    .tls_connections
                    .entry(t.conn_id)
                    .or_insert_with(|| TlsConnectionStats {
                        first_ns: t.ts_ns,
                        ..Default::default()
                    });
                c.events += 1;
                if let Some(e) = t.endpoints {
                    c.local = Some(e.local);
                    c.remote = Some(e.remote);
                    let ports = &self.ports;
                    let (addrs, _) = placement(&e, |port| ports.contains(&port));
                    let conn = s
                        .connections
                        .entry(format!("{} -> {}", addrs.client, addrs.server))
                        .or_insert_with(|| ConnectionStats {
                            first_ns: t.ts_ns,
                            ..Default::default()
                        });
                    conn.tls = true;
                    *conn.tls_plaintext_bytes.get_or_insert(0) += u64::from(t.len);
                }
                let bytes = match t.direction {
                    Direction::Egress => &mut c.bytes_written,
                    Direction::Ingress => &mut c.bytes_read,
                };
                *bytes += u64::from(t.len);
                c.captured_bytes += t.data.len() as u64;
                c.first_ns = c.first_ns.min(t.ts_ns);
                c.last_ns = c.last_ns.max(t.ts_ns);
            }
            // API mode's observations are counted by kind in the index; the analyses
            // read them.
            Event::Api(_) => {}
            Event::Process(p) => {
                let running = s
                    .processes
                    .iter_mut()
                    .rev()
                    .find(|known| known.pid == p.pid && known.ended_ns.is_none());
                match (&p.change, running) {
                    (ProcessChange::Start { data_dir, cmdline }, running) => {
                        // One that runs etcd again under the same pid is a new start.
                        if let Some(known) = running {
                            known.ended_ns = Some(p.ts_ns);
                        }
                        s.processes.push(ProcessSummary {
                            pid: p.pid,
                            data_dir: data_dir.clone(),
                            cmdline: cmdline.clone(),
                            started_ns: Some(p.ts_ns),
                            ..ProcessSummary::default()
                        });
                    }
                    (ProcessChange::Exit { code, signal }, running) => {
                        let ended = ProcessSummary {
                            ended_ns: Some(p.ts_ns),
                            exit_code: *code,
                            signal: *signal,
                            ..ProcessSummary::default()
                        };
                        match running {
                            Some(known) => {
                                known.ended_ns = ended.ended_ns;
                                known.exit_code = ended.exit_code;
                                known.signal = ended.signal;
                            }
                            // Its start is not in this file (rotation).
                            None => s.processes.push(ProcessSummary {
                                pid: p.pid,
                                ..ended
                            }),
                        }
                    }
                }
            }
        }
    }

    pub fn finish(self) -> CaptureSummary {
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{ProcessEvent, ProcessInfo};

    fn process(ts_ns: u64, pid: u32, change: ProcessChange) -> Event {
        Event::Process(ProcessEvent { ts_ns, pid, change })
    }

    fn start(dir: &str) -> ProcessChange {
        ProcessChange::Start {
            data_dir: Some(dir.into()),
            cmdline: vec!["etcd".into()],
        }
    }

    /// The header's process, killed; one started in its place; one that ended whose
    /// start is in an earlier file.
    #[test]
    fn processes_are_listed_with_their_start_and_end() {
        let header = Header {
            processes: vec![ProcessInfo {
                pid: 10,
                cmdline: vec!["etcd".into()],
                data_dir: Some("/d".into()),
            }],
            ..Header::default()
        };
        let mut b = SummaryBuilder::new(&header, &EventKind::ALL);
        b.push(&process(100, 10, ProcessChange::exit_of_status(9)));
        b.push(&process(200, 11, start("/d")));
        b.push(&process(300, 12, ProcessChange::exit_of_status(1 << 8)));
        let s = b.finish();
        assert_eq!(s.counts["process"], 3);
        let got: Vec<_> = s
            .processes
            .iter()
            .map(|p| (p.pid, p.started_ns, p.ended_ns, p.end_reason()))
            .collect();
        assert_eq!(
            got,
            [
                (10, None, Some(100), Some("killed by SIGKILL".to_string())),
                (11, Some(200), None, None),
                (12, None, Some(300), Some("exit code 1".to_string())),
            ]
        );
        assert_eq!(s.processes[1].data_dir.as_deref(), Some("/d"));
    }
}
