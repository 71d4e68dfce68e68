//! The WAL as etcd wrote it, rebuilt from the captured write(2)s on member/wal/ files:
//! each file's byte stream goes through the WAL record decoder, and every record comes
//! out with the time of the write that carried it. This needs no access to the etcd
//! host: a capture is enough.

use std::collections::HashMap;

use serde::Serialize;

use crate::capture::{Event, FileKind};
use crate::decode::etcdpb::raft_internal::EntryRequest;
use crate::decode::wal::{WalEvent, WalPayload, WalStream};

/// What one WAL record says, flattened for output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalLogRecord {
    /// Monotonic time the carrying write started and ended.
    pub write_ts_ns: u64,
    pub write_end_ns: u64,
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

/// Follows every WAL file of a capture.
#[derive(Debug, Default)]
pub struct WalLog {
    files: HashMap<String, WalStream>,
}

impl WalLog {
    pub fn new() -> WalLog {
        WalLog::default()
    }

    /// Feed one event; WAL writes yield the records they completed.
    pub fn push(&mut self, ev: &Event, out: &mut WalLogOutput) {
        let Event::Syscall(s) = ev else { return };
        if s.file.kind != FileKind::Wal || !s.call.is_write() || s.ret <= 0 {
            return;
        }
        let Some(offset) = s.offset else { return };
        let stream = self.files.entry(s.file.path.clone()).or_default();
        let events = stream.push(offset, &s.data);
        convert(&s.file.path, s.enter_ns, s.exit_ns, events, out);
    }

    /// Flush what is still held (records awaiting CRC proof).
    pub fn finish(self, out: &mut WalLogOutput) {
        let mut files: Vec<_> = self.files.into_iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, stream) in files {
            convert(&path, 0, 0, stream.finish(), out);
        }
    }
}

fn convert(path: &str, ts: u64, end: u64, events: Vec<WalEvent>, out: &mut WalLogOutput) {
    for ev in events {
        match ev {
            WalEvent::Record(r) => {
                let detail = match r.record.decode() {
                    Ok(WalPayload::Entry(e)) => {
                        let request = e.decode_request().and_then(Result::ok).map(|req| {
                            match req {
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
                            }
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
                };
                out.records.push(WalLogRecord {
                    write_ts_ns: ts,
                    write_end_ns: end,
                    file: path.to_string(),
                    offset: r.offset,
                    record: r.record.kind.name(),
                    crc_ok: r.crc_ok,
                    detail,
                });
            }
            WalEvent::Gap { start, end } => out.problems.push(WalProblem {
                file: path.to_string(),
                ts_ns: ts,
                what: format!("bytes {start}..{end} were never seen written (recording began mid-file, or data was cut at the capture limit)"),
            }),
            WalEvent::Skipped { start, end, reason } => out.problems.push(WalProblem {
                file: path.to_string(),
                ts_ns: ts,
                what: format!("bytes {start}..{end} could not be decoded ({reason:?})"),
            }),
            WalEvent::Error { offset, error } => out.problems.push(WalProblem {
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
