//! The WAL as etcd wrote it, rebuilt from the captured write(2)s on member/wal/ files:
//! each file's byte stream goes through the WAL record decoder, and every record comes
//! out with the time of the write that carried it. This needs no access to the etcd
//! host: a capture is enough.
//!
//! Members traced together write files of the same relative paths, so each WAL file is
//! followed per process, and every record says whose it is ([`Member`]). An etcd that
//! ended and started again on the same data dir appends to the WAL its predecessor
//! wrote: the new process takes the old one's file over, so what was seen written
//! before the restart still counts.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::analyze::member::{Member, Members};
use crate::capture::{Event, FileKind, ProcessChange};
use crate::decode::etcdpb::raft_internal::EntryRequest;
use crate::decode::wal::{WalEvent, WalPayload, WalRecord, WalRecordAt, WalStream};

/// What one WAL record says, flattened for output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalLogRecord {
    /// Monotonic time the carrying write started and ended; None for a WAL read from
    /// disk.
    pub write_ts_ns: Option<u64>,
    pub write_end_ns: Option<u64>,
    /// Whose WAL: the member ID in hex once known, else `pid:N`.
    pub member: Member,
    pub file: String,
    pub offset: u64,
    /// `entry`, `state`, `crc`, `metadata`, `snapshot`.
    pub record: &'static str,
    pub crc_ok: Option<bool>,
    pub detail: WalDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WalDetail {
    Entry {
        term: u64,
        index: u64,
        entry_type: &'static str,
        request: Option<WalRequest>,
    },
    HardState {
        term: u64,
        #[serde(serialize_with = "hex_id")]
        vote: u64,
        commit: u64,
    },
    Snapshot {
        term: u64,
        index: u64,
    },
    Other,
    Undecodable {
        reason: String,
    },
}

/// The client request inside a normal entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalRequest {
    /// As etcd logs it: hex.
    #[serde(serialize_with = "hex_id")]
    pub id: u64,
    pub op: String,
    #[serde(serialize_with = "crate::capture::event::base64_bytes")]
    pub key: Vec<u8>,
    #[serde(serialize_with = "crate::capture::event::base64_bytes")]
    pub range_end: Vec<u8>,
    pub value_len: Option<usize>,
    pub lease: Option<i64>,
}

/// Something in a WAL file's byte stream that could not be decoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalProblem {
    pub member: Member,
    pub file: String,
    pub ts_ns: u64,
    pub what: String,
}

/// Output of a push: records, and what could not be read.
#[derive(Debug, Default)]
pub struct WalLogOutput {
    pub records: Vec<WalLogRecord>,
    pub problems: Vec<WalProblem>,
}

/// Follows every WAL file of a capture, per process.
#[derive(Debug, Default)]
pub struct WalLog {
    files: HashMap<(u32, String), WalStream>,
    members: Members,
    writers: BTreeSet<u32>,
    /// Processes seen ending, and the data dirs of those seen starting.
    ended: BTreeSet<u32>,
    data_dirs: HashMap<u32, String>,
}

impl WalLog {
    pub fn new() -> WalLog {
        WalLog::default()
    }

    /// Feed one event; WAL writes yield the records they completed.
    pub fn push(&mut self, ev: &Event, out: &mut WalLogOutput) {
        if let Event::Process(p) = ev {
            match &p.change {
                ProcessChange::Start { data_dir, .. } => {
                    if let Some(dir) = data_dir {
                        self.data_dirs.insert(p.pid, dir.clone());
                    }
                }
                ProcessChange::Exit { .. } => {
                    self.ended.insert(p.pid);
                }
            }
            return;
        }
        let Event::Syscall(s) = ev else { return };
        if s.file.kind != FileKind::Wal || !s.call.is_write() || s.ret <= 0 {
            return;
        }
        let Some(offset) = s.offset else { return };
        self.writers.insert(s.pid);
        let key = (s.pid, s.file.path.clone());
        // A restarted etcd appends after its predecessor's records; a new WAL starts at 0.
        if offset > 0 && !self.files.contains_key(&key) {
            self.take_over(s.pid, &s.file.path);
        }
        let stream = self.files.entry(key).or_default();
        let events = stream.push(offset, &s.data);
        // A write that carries a metadata record names its member, the records before
        // it in the same write included.
        for ev in &events {
            if let Some(id) = member_id(ev) {
                self.members.learn(s.pid, id);
            }
        }
        let member = self.members.of(s.pid);
        convert(member, &s.file.path, (s.enter_ns, s.exit_ns), events, out);
    }

    /// A process's first write to `path`: if exactly one ended process of the same data
    /// dir (as far as known) followed that file, its stream and member id pass to `pid`.
    fn take_over(&mut self, pid: u32, path: &str) {
        let dir = self.data_dirs.get(&pid);
        let mut from = self.files.keys().filter(|(old, p)| {
            p == path
                && self.ended.contains(old)
                && match (dir, self.data_dirs.get(old)) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        });
        let (Some(&(old, _)), None) = (from.next(), from.next()) else {
            return;
        };
        if let Some(stream) = self.files.remove(&(old, path.to_string())) {
            self.files.insert((pid, path.to_string()), stream);
            if let Some(id) = self.members.of(old).id {
                self.members.learn(pid, id);
            }
        }
    }

    /// Flush what is still held (records awaiting CRC proof).
    pub fn finish(self, out: &mut WalLogOutput) {
        let mut files: Vec<_> = self.files.into_iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for ((pid, path), stream) in files {
            let member = self.members.of(pid);
            convert(member, &path, (0, 0), stream.finish(), out);
        }
    }

    /// The member IDs learned so far, per process.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// How many processes have written WAL files so far.
    pub fn writers(&self) -> usize {
        self.writers.len()
    }
}

/// The member ID a decoded metadata record gives (one that failed its CRC gives none).
fn member_id(ev: &WalEvent) -> Option<u64> {
    let WalEvent::Record(r) = ev else { return None };
    if r.crc_ok == Some(false) {
        return None;
    }
    match r.record.decode() {
        Ok(WalPayload::Metadata(m)) => Some(m.node_id),
        _ => None,
    }
}

/// One record, flattened for output. `when` is the carrying write's start and end.
pub fn log_record(
    member: Member,
    path: &str,
    when: Option<(u64, u64)>,
    r: WalRecordAt,
) -> WalLogRecord {
    WalLogRecord {
        write_ts_ns: when.map(|(ts, _)| ts),
        write_end_ns: when.map(|(_, end)| end),
        member,
        file: path.to_string(),
        offset: r.offset,
        record: r.record.kind.name(),
        crc_ok: r.crc_ok,
        detail: detail(&r.record),
    }
}

fn detail(record: &WalRecord) -> WalDetail {
    match record.decode() {
        Ok(WalPayload::Entry(e)) => {
            let request = e
                .decode_request()
                .and_then(Result::ok)
                .map(|req| match req {
                    EntryRequest::Internal(i) => {
                        let s = i.summary();
                        WalRequest {
                            id: s.id,
                            op: s.op.to_string(),
                            key: s.key.unwrap_or_default().to_vec(),
                            range_end: s.range_end.unwrap_or_default().to_vec(),
                            value_len: s.value_len,
                            lease: s.lease,
                        }
                    }
                    EntryRequest::V2(v2) => WalRequest {
                        id: v2.id,
                        op: format!("v2 {}", v2.method),
                        key: v2.path.into_bytes(),
                        range_end: Vec::new(),
                        value_len: Some(v2.val.len()),
                        lease: None,
                    },
                });
            WalDetail::Entry {
                term: e.term,
                index: e.index,
                entry_type: match e.r#type {
                    0 => "normal",
                    1 => "conf_change",
                    2 => "conf_change_v2",
                    _ => "unknown",
                },
                request,
            }
        }
        Ok(WalPayload::State(h)) => WalDetail::HardState {
            term: h.term,
            vote: h.vote,
            commit: h.commit,
        },
        Ok(WalPayload::Snapshot(s)) => WalDetail::Snapshot {
            term: s.term,
            index: s.index,
        },
        Ok(_) => WalDetail::Other,
        Err(e) => WalDetail::Undecodable {
            reason: e.to_string(),
        },
    }
}

/// A write's (at `ts`..`end`) decoded events, as records and problems.
fn convert(
    member: Member,
    path: &str,
    (ts, end): (u64, u64),
    events: Vec<WalEvent>,
    out: &mut WalLogOutput,
) {
    for ev in events {
        match ev {
            WalEvent::Record(r) => out.records.push(log_record(member, path, Some((ts, end)), r)),
            WalEvent::Gap { start, end } => out.problems.push(WalProblem {
                member,
                file: path.to_string(),
                ts_ns: ts,
                what: format!("bytes {start}..{end} were never seen written (recording began mid-file, or data was cut at the capture limit)"),
            }),
            WalEvent::Skipped { start, end, reason } => out.problems.push(WalProblem {
                member,
                file: path.to_string(),
                ts_ns: ts,
                what: format!("bytes {start}..{end} could not be decoded ({reason:?})"),
            }),
            WalEvent::Error { offset, error } => out.problems.push(WalProblem {
                member,
                file: path.to_string(),
                ts_ns: ts,
                what: format!("record at {offset}: {error}"),
            }),
            WalEvent::EndOfData { .. } | WalEvent::Rewind { .. } => {}
        }
    }
}

/// Member and request IDs in hex, as etcd prints them (and beyond JSON's 2^53).
fn hex_id<S: serde::Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{id:x}"))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::capture::{FileRef, Syscall, SyscallKind};
    use crate::decode::raftpb::{Entry, HardState};
    use crate::decode::wal::{WalEncoder, WalMetadata, WalRecordKind};

    const PATH: &str = "member/wal/0000000000000000-0000000000000000.wal";

    /// A member's writes as etcd makes them: the file's head, then one write per
    /// entry and its HardState. Each member's entries differ only in their data.
    fn member_writes(node_id: u64, entries: u64) -> Vec<(u64, Vec<u8>)> {
        let mut enc = WalEncoder::new(0);
        let mut head = enc.crc_record();
        let meta = WalMetadata {
            node_id,
            cluster_id: 7,
        };
        head.extend(enc.record(WalRecordKind::Metadata, &meta.encode_to_vec()));
        let mut writes = vec![(0, head)];
        let mut at = writes[0].1.len() as u64;
        for index in 1..=entries {
            let entry = Entry {
                term: 2,
                index,
                r#type: 0,
                data: Vec::new(),
            };
            let mut w = enc.record(WalRecordKind::Entry, &entry.encode_to_vec());
            let state = HardState {
                term: 2,
                vote: node_id,
                commit: index,
            };
            w.extend(enc.record(WalRecordKind::State, &state.encode_to_vec()));
            let len = w.len() as u64;
            writes.push((at, w));
            at += len;
        }
        writes
    }

    fn write(pid: u32, ts: u64, offset: u64, data: &[u8]) -> Event {
        Event::Syscall(Syscall {
            enter_ns: ts,
            exit_ns: ts + 1,
            pid,
            tid: pid,
            call: SyscallKind::Pwrite64,
            fd: 9,
            file: FileRef {
                kind: FileKind::Wal,
                path: PATH.into(),
                local_port: 0,
                peer_port: 0,
            },
            offset: Some(offset),
            requested: data.len() as u64,
            ret: data.len() as i64,
            data: data.to_vec().into(),
        })
    }

    #[test]
    fn members_writing_the_same_path_are_followed_apart() {
        let (a, b) = (member_writes(0xaa, 4), member_writes(0xbb, 4));
        let mut log = WalLog::new();
        let mut out = WalLogOutput::default();
        // Interleaved, as two members append the same entries at the same time.
        let mut ts = 100;
        for ((oa, wa), (ob, wb)) in a.iter().zip(&b) {
            log.push(&write(10, ts, *oa, wa), &mut out);
            log.push(&write(20, ts + 5, *ob, wb), &mut out);
            ts += 100;
        }
        assert_eq!(log.writers(), 2);
        log.finish(&mut out);
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        for (member, vote) in [("aa", 0xaa), ("bb", 0xbb)] {
            let mine: Vec<&WalLogRecord> = out
                .records
                .iter()
                .filter(|r| r.member.to_string() == member)
                .collect();
            // crc, metadata, then 4 entries and 4 states: each once.
            assert_eq!(mine.len(), 10, "{member}");
            assert!(mine.iter().all(|r| r.crc_ok != Some(false)));
            let states: Vec<u64> = mine
                .iter()
                .filter_map(|r| match r.detail {
                    WalDetail::HardState {
                        vote: v, commit, ..
                    } => {
                        assert_eq!(v, vote);
                        Some(commit)
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(states, [1, 2, 3, 4]);
        }
        let json = serde_json::to_value(&out.records[0]).unwrap();
        assert_eq!(json["member"], "aa");
        assert_eq!(json["write_ts_ns"], 100);
    }

    #[test]
    fn a_member_is_a_process_until_its_metadata_is_seen() {
        let writes = member_writes(0xaa, 3);
        let mut log = WalLog::new();
        let mut out = WalLogOutput::default();
        // Recording began after the file's head: only entries, until etcd cuts a new
        // file (whose head names the member).
        for (i, (offset, w)) in writes.iter().enumerate().skip(1) {
            log.push(&write(10, i as u64, *offset, w), &mut out);
        }
        assert!(!out.records.is_empty());
        assert!(out.records.iter().all(|r| r.member.to_string() == "pid:10"));
        out.records.clear();
        let head = &writes[0].1;
        let mut next = Event::clone(&write(10, 50, 0, head));
        if let Event::Syscall(s) = &mut next {
            s.file.path = "member/wal/0000000000000001-0000000000000004.wal".into();
        }
        log.push(&next, &mut out);
        assert_eq!(out.records.len(), 2);
        assert!(out.records.iter().all(|r| r.member.to_string() == "aa"));
        assert_eq!(log.members().of(10).to_string(), "aa");
    }

    fn process(pid: u32, ts_ns: u64, change: ProcessChange) -> Event {
        Event::Process(crate::capture::ProcessEvent { ts_ns, pid, change })
    }

    fn start(pid: u32, ts_ns: u64, dir: &str) -> Event {
        process(
            pid,
            ts_ns,
            ProcessChange::Start {
                data_dir: Some(dir.into()),
                cmdline: Vec::new(),
            },
        )
    }

    fn exit(pid: u32, ts_ns: u64) -> Event {
        process(
            pid,
            ts_ns,
            ProcessChange::Exit {
                code: None,
                signal: Some(9),
            },
        )
    }

    #[test]
    fn a_restarted_etcd_takes_its_predecessor_s_wal_over() {
        let writes = member_writes(0xaa, 4);
        let mut log = WalLog::new();
        let mut out = WalLogOutput::default();
        log.push(&start(10, 1, "/var/lib/etcd"), &mut out);
        for (i, (offset, w)) in writes.iter().take(3).enumerate() {
            log.push(&write(10, 10 + i as u64, *offset, w), &mut out);
        }
        // Killed; another etcd of another data dir ends too; the new one appends.
        log.push(&exit(10, 100), &mut out);
        log.push(&start(30, 101, "/other"), &mut out);
        log.push(&exit(30, 102), &mut out);
        log.push(&start(20, 110, "/var/lib/etcd"), &mut out);
        for (i, (offset, w)) in writes.iter().enumerate().skip(3) {
            log.push(&write(20, 200 + i as u64, *offset, w), &mut out);
        }
        log.finish(&mut out);
        // Nothing "never seen written": the new process went on where the old one was.
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let after: Vec<&WalLogRecord> = out
            .records
            .iter()
            .filter(|r| r.write_ts_ns.is_some_and(|t| t >= 200))
            .collect();
        assert_eq!(after.len(), 4);
        assert!(after
            .iter()
            .all(|r| r.member.to_string() == "aa" && r.member.pid == Some(20)));

        // Two ended processes that may have written the file, data dirs unknown: which
        // one went on is not known, so nobody takes over.
        let mut log = WalLog::new();
        let mut out = WalLogOutput::default();
        for pid in [10, 30] {
            log.push(&write(pid, 10, writes[0].0, &writes[0].1), &mut out);
            log.push(&exit(pid, 100), &mut out);
        }
        log.push(&write(20, 200, writes[1].0, &writes[1].1), &mut out);
        assert!(!out.problems.is_empty());
    }
}
