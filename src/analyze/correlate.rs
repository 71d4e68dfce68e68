//! Each mutating RPC joined with what it caused on disk: the raft entry etcd appended to
//! the WAL for it, the write that carried the entry, the fdatasync that made it durable,
//! and the reply. etcd does not send a request's raft ID to the client, so the link is
//! made by operation, key and time: the earliest not-yet-linked WAL entry of the same
//! operation on the same key, written while the call was in flight, and the first WAL
//! sync after that write that finished before the reply. Every link says how it was made
//! and how sure it is; an RPC left unlinked says why.
//!
//! With several members traced, each writes the same entry to its own WAL. A call is
//! linked to the copy of the member that served it (known from the process behind the
//! connection's socket calls), else to the earliest copy, and the sync must be of that
//! member's file. One raft entry is one proposal, so once linked, no copy of it links
//! to another call.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::analyze::disk::{DiskActivity, DiskPhase};
use crate::analyze::member::Member;
use crate::analyze::rpc::{RecordKind, RpcBody, RpcCall, RpcDecoder, RpcStats};
use crate::analyze::wal_log::{WalDetail, WalLog, WalLogOutput};
use crate::capture::{Event, FileKind};
use crate::decode::etcdpb::kv::request_op::Request as TxnOp;
use crate::decode::etcdpb::kv::RequestOp;
use crate::decode::etcdpb::EtcdMessage;

/// WAL entries and syncs older than this, relative to the newest event, are dropped: a
/// call in flight longer than this is not linked (and says so).
pub const WINDOW_NS: u64 = 10_000_000_000;
/// How often (in capture time) entries and syncs past the window are swept away.
const SWEEP_EVERY_NS: u64 = 1_000_000_000;
/// Calls are linked once the capture has moved this far past their reply, so that
/// events handed over slightly out of order are in.
const SETTLE_NS: u64 = 200_000_000;
/// A WAL write may start this long before the first request byte was seen (clock
/// reads on different CPUs).
const SLACK_NS: u64 = 1_000_000;

/// The raft entry and durability of one RPC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalLink {
    pub term: u64,
    pub index: u64,
    /// Whose WAL copy of the entry this is.
    pub member: Member,
    pub file: String,
    pub write_ts_ns: u64,
    pub write_end_ns: u64,
    /// When the fdatasync that made the entry durable started and finished, and its
    /// duration. None when no sync finished before the reply.
    pub fsync_start_ns: Option<u64>,
    pub fsync_ts_ns: Option<u64>,
    pub fsync_ns: Option<u64>,
    /// The backend commit (bbolt's write transaction and its fdatasync) of the same
    /// member that was running when the entry became durable and ended before the
    /// reply: the apply waited for it, as applies take the backend's lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_commit: Option<BackendCommitWait>,
    /// How the entry was chosen, and how sure the link is (`high`: the only candidate;
    /// `medium`: the earliest of several entries on the same key and operation).
    pub how: &'static str,
    pub confidence: &'static str,
}

/// A backend commit an apply waited behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BackendCommitWait {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Backend writes it made durable, and its fdatasync's duration.
    pub writes: u64,
    pub sync_ns: u64,
}

/// Why a call has no link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Unlinked {
    /// Reads, watches and other calls that do not go through the WAL.
    NotAWrite,
    /// The call failed (non-zero grpc-status), or its reply was not seen.
    NotAcknowledged,
    /// The method or the request body could not be decoded.
    Undecoded,
    /// No WAL entry of that operation and key was written while it was in flight.
    NoWalEntry,
}

impl Unlinked {
    pub fn describe(self) -> &'static str {
        match self {
            Unlinked::NotAWrite => "not a write (reads and watches do not go through the WAL)",
            Unlinked::NotAcknowledged => "not acknowledged (failed, or no reply seen)",
            Unlinked::Undecoded => "method or request not decoded",
            Unlinked::NoWalEntry => "no matching WAL entry captured while in flight",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CorrelatedCall {
    pub call: RpcCall,
    /// The WAL operation the call should have appended (`put`, `txn`, ...).
    pub op: Option<&'static str>,
    pub wal: Option<WalLink>,
    pub unlinked: Option<Unlinked>,
}

impl CorrelatedCall {
    /// The time of the reply: the last response byte.
    pub fn reply_ts_ns(&self) -> Option<u64> {
        self.call.response.as_ref().map(|_| self.call.end_ns)
    }
}

#[derive(Debug, Clone)]
struct PendingEntry {
    term: u64,
    index: u64,
    member: Member,
    file: String,
    write_ts: u64,
    write_end: u64,
}

/// An entry's operation and key: what a call is matched on. Operations without a key
/// (compaction, lease grants, conf changes, ...) have an empty one.
type EntryKey = (String, Vec<u8>);

/// WAL entries not yet linked, by operation and key, each queue in write order. A call
/// looks only at its own key's queue and takes its entry out, so linking costs the same
/// however long the capture, and memory holds only entries still waiting.
#[derive(Debug, Default)]
struct PendingEntries {
    by_key: HashMap<EntryKey, VecDeque<PendingEntry>>,
}

impl PendingEntries {
    fn add(&mut self, key: EntryKey, e: PendingEntry) {
        self.by_key.entry(key).or_default().push_back(e);
    }

    /// Drop entries written before `horizon`: their calls never came.
    fn forget_before(&mut self, horizon: u64) {
        self.by_key.retain(|_, q| {
            while q.front().is_some_and(|e| e.write_end < horizon) {
                q.pop_front();
            }
            !q.is_empty()
        });
    }

    /// The earliest entry of `key` written while the call was in flight, preferring the
    /// copy in the WAL of `pid` (the process that served the call, when known, even one
    /// written after the reply), and how
    /// many distinct entries (by term and index) fitted. Every copy of the chosen entry
    /// is taken out.
    fn take(
        &mut self,
        key: &EntryKey,
        (call_ts, call_end): (u64, u64),
        pid: Option<u32>,
    ) -> Option<(PendingEntry, usize)> {
        let q = self.by_key.get_mut(key)?;
        let fits = |e: &PendingEntry| {
            e.write_ts.saturating_add(SLACK_NS) >= call_ts && e.write_end <= call_end
        };
        let mut distinct: Vec<(u64, u64)> = q
            .iter()
            .filter(|e| fits(e))
            .map(|e| (e.term, e.index))
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        let chosen = q
            .iter()
            .find(|e| e.member.pid.is_some() && e.member.pid == pid && fits(e))
            .or_else(|| q.iter().find(|e| fits(e)))
            .map(|e| (e.term, e.index))?;
        // A follower may apply a committed entry, and reply, before its own WAL write
        // of it ends: the quorum that made it durable was elsewhere. The entry is still
        // the serving member's, so its copy is taken even when written after the reply.
        let pos = q
            .iter()
            .position(|e| {
                (e.term, e.index) == chosen && e.member.pid.is_some() && e.member.pid == pid
            })
            .or_else(|| {
                q.iter()
                    .position(|e| (e.term, e.index) == chosen && fits(e))
            })?;
        let entry = q.remove(pos)?;
        q.retain(|e| (e.term, e.index) != (entry.term, entry.index));
        if q.is_empty() {
            self.by_key.remove(key);
        }
        Some((entry, distinct.len()))
    }
}

/// WAL syncs per process and file, by start time (and arrival, for equal starts) → end
/// time.
type WalSyncs = HashMap<(Option<u32>, String), BTreeMap<(u64, u64), u64>>;

/// Backend commits per process, by start time.
type BackendCommits = HashMap<Option<u32>, BTreeMap<u64, BackendCommitWait>>;

/// The WAL operation a method appends, if it is a write.
pub fn wal_op(call: &RpcCall) -> Option<&'static str> {
    let method = call.method.as_deref()?;
    let short = method.rsplit('/').next()?;
    let service = method
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    Some(match (service, short) {
        ("etcdserverpb.KV", "Put") => "put",
        ("etcdserverpb.KV", "DeleteRange") => "delete_range",
        ("etcdserverpb.KV", "Txn") => {
            let req = call.request.as_ref().and_then(RpcBody::message);
            match req {
                Some(EtcdMessage::TxnRequest(t))
                    if txn_writes(&t.success) || txn_writes(&t.failure) =>
                {
                    "txn"
                }
                // A read-only txn is served without the WAL; an undecoded one is unknown.
                _ => return None,
            }
        }
        ("etcdserverpb.KV", "Compact") => "compaction",
        ("etcdserverpb.Lease", "LeaseGrant") => "lease_grant",
        ("etcdserverpb.Lease", "LeaseRevoke") => "lease_revoke",
        ("etcdserverpb.Maintenance", "Alarm") => "alarm",
        ("etcdserverpb.Auth", "AuthEnable") => "auth_enable",
        ("etcdserverpb.Auth", "AuthDisable") => "auth_disable",
        ("etcdserverpb.Auth", "Authenticate") => "authenticate",
        ("etcdserverpb.Auth", "UserAdd") => "auth_user_add",
        ("etcdserverpb.Auth", "UserDelete") => "auth_user_delete",
        ("etcdserverpb.Auth", "UserChangePassword") => "auth_user_change_password",
        ("etcdserverpb.Auth", "UserGrantRole") => "auth_user_grant_role",
        ("etcdserverpb.Auth", "UserRevokeRole") => "auth_user_revoke_role",
        ("etcdserverpb.Auth", "RoleAdd") => "auth_role_add",
        ("etcdserverpb.Auth", "RoleDelete") => "auth_role_delete",
        ("etcdserverpb.Auth", "RoleGrantPermission") => "auth_role_grant_permission",
        ("etcdserverpb.Auth", "RoleRevokePermission") => "auth_role_revoke_permission",
        (
            "etcdserverpb.Cluster",
            "MemberAdd" | "MemberRemove" | "MemberUpdate" | "MemberPromote",
        ) => "conf_change",
        _ => return None,
    })
}

fn txn_writes(ops: &[RequestOp]) -> bool {
    ops.iter().any(|op| match &op.request {
        Some(TxnOp::RequestPut(_)) | Some(TxnOp::RequestDeleteRange(_)) => true,
        Some(TxnOp::RequestTxn(t)) => txn_writes(&t.success) || txn_writes(&t.failure),
        _ => false,
    })
}

/// Events in, correlated calls out; also passes on the disk phases it saw, for the
/// timeline.
#[derive(Debug)]
pub struct Correlator {
    rpc: RpcDecoder,
    wal: WalLog,
    disk: DiskActivity,
    entries: PendingEntries,
    syncs: WalSyncs,
    /// Backend commits per process, by start time.
    backend_commits: BackendCommits,
    /// The process behind each connection seen in socket calls: (local port, peer port)
    /// → pid. A call's server and client ports find the member that served it.
    servers: HashMap<(u16, u16), u32>,
    sync_seq: u64,
    last_sweep_ns: u64,
    waiting: VecDeque<RpcCall>,
    calls: Vec<RpcCall>,
    wal_out: WalLogOutput,
    phases: Vec<DiskPhase>,
    now_ns: u64,
}

impl Correlator {
    pub fn new(server_ports: Vec<u16>) -> Correlator {
        Correlator {
            rpc: RpcDecoder::new(server_ports),
            wal: WalLog::new(),
            disk: DiskActivity::new(),
            entries: PendingEntries::default(),
            syncs: WalSyncs::new(),
            backend_commits: BackendCommits::new(),
            servers: HashMap::new(),
            sync_seq: 0,
            last_sweep_ns: 0,
            waiting: VecDeque::new(),
            calls: Vec::new(),
            wal_out: WalLogOutput::default(),
            phases: Vec::new(),
            now_ns: 0,
        }
    }

    pub fn rpc_decoder(&self) -> &RpcDecoder {
        &self.rpc
    }

    /// The member IDs its WAL decoding learned so far, per process.
    pub fn members(&self) -> &crate::analyze::member::Members {
        self.wal.members()
    }

    /// Feed one event. Calls whose links are settled go to `out`, disk phases to
    /// `phases`.
    pub fn push(&mut self, ev: Event, out: &mut Vec<CorrelatedCall>, phases: &mut Vec<DiskPhase>) {
        self.now_ns = self.now_ns.max(ev.ts_ns());
        if let Event::Syscall(s) = &ev {
            if s.file.kind == FileKind::Socket {
                self.servers
                    .insert((s.file.local_port, s.file.peer_port), s.pid);
            }
        }
        self.wal.push(&ev, &mut self.wal_out);
        self.disk.push(&ev, &mut self.phases);
        self.rpc.push_owned(ev, &mut self.calls);
        self.absorb(phases);
        self.settle(false, out);
    }

    /// Capture time has reached `now_ns` without events (a followed capture's quiet
    /// spell): calls whose links are settled by then go to `out`.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<CorrelatedCall>) {
        self.now_ns = self.now_ns.max(now_ns);
        self.rpc.advance(now_ns, &mut self.calls);
        let mut phases = Vec::new();
        self.absorb(&mut phases);
        self.settle(false, out);
    }

    pub fn finish(
        mut self,
        out: &mut Vec<CorrelatedCall>,
        phases: &mut Vec<DiskPhase>,
    ) -> RpcStats {
        self.rpc.finish(&mut self.calls);
        let wal = std::mem::take(&mut self.wal);
        wal.finish(&mut self.wal_out);
        self.absorb(phases);
        self.settle(true, out);
        self.rpc.stats().clone()
    }

    fn absorb(&mut self, phases: &mut Vec<DiskPhase>) {
        for r in self.wal_out.records.drain(..) {
            if let WalDetail::Entry {
                term,
                index,
                entry_type,
                request,
            } = r.detail
            {
                let (Some(write_ts), Some(write_end)) = (r.write_ts_ns, r.write_end_ns) else {
                    continue;
                };
                let (op, key) = match request {
                    Some(q) => (q.op, q.key),
                    None if entry_type.starts_with("conf_change") => {
                        ("conf_change".to_string(), Vec::new())
                    }
                    None => continue,
                };
                self.entries.add(
                    (op, key),
                    PendingEntry {
                        term,
                        index,
                        member: r.member,
                        file: r.file,
                        write_ts,
                        write_end,
                    },
                );
            }
        }
        self.wal_out.problems.clear();
        for mut p in self.phases.drain(..) {
            p.name_member(self.wal.members());
            if let DiskPhase::Sync {
                kind: FileKind::Wal,
                member,
                file,
                start_ns,
                end_ns,
                ..
            } = &p
            {
                self.sync_seq += 1;
                self.syncs
                    .entry((member.pid, file.clone()))
                    .or_default()
                    .insert((*start_ns, self.sync_seq), *end_ns);
            }
            if let DiskPhase::BackendCommit {
                start_ns,
                end_ns,
                member,
                writes,
                sync_ns,
                ..
            } = &p
            {
                self.backend_commits.entry(member.pid).or_default().insert(
                    *start_ns,
                    BackendCommitWait {
                        start_ns: *start_ns,
                        end_ns: *end_ns,
                        writes: *writes,
                        sync_ns: *sync_ns,
                    },
                );
            }
            phases.push(p);
        }
        self.waiting.extend(self.calls.drain(..));
    }

    fn settle(&mut self, all: bool, out: &mut Vec<CorrelatedCall>) {
        while let Some(call) = self.waiting.front() {
            if !all && call.end_ns.saturating_add(SETTLE_NS) > self.now_ns {
                break;
            }
            let call = self.waiting.pop_front().expect("front exists");
            out.push(self.link(call));
        }
        // Forget what no call can still link to (etcd times a request out well before
        // the window ends, so an acknowledged call is never that long).
        if !all && self.now_ns.saturating_sub(self.last_sweep_ns) < SWEEP_EVERY_NS {
            return;
        }
        self.last_sweep_ns = self.now_ns;
        let horizon = self.now_ns.saturating_sub(WINDOW_NS);
        self.entries.forget_before(horizon);
        for syncs in self.syncs.values_mut() {
            if syncs
                .first_key_value()
                .is_some_and(|((start, _), _)| *start < horizon)
            {
                *syncs = syncs.split_off(&(horizon, 0));
            }
        }
        for commits in self.backend_commits.values_mut() {
            if commits
                .first_key_value()
                .is_some_and(|(start, _)| *start < horizon)
            {
                *commits = commits.split_off(&horizon);
            }
        }
    }

    fn link(&mut self, call: RpcCall) -> CorrelatedCall {
        let unlinked = |call: RpcCall, op, why| CorrelatedCall {
            call,
            op,
            wal: None,
            unlinked: Some(why),
        };
        if !matches!(call.kind, RecordKind::Call) {
            return unlinked(call, None, Unlinked::NotAWrite);
        }
        if call.method.is_none() {
            return unlinked(call, None, Unlinked::Undecoded);
        }
        let Some(op) = wal_op(&call) else {
            let txn_undecoded = call.method_name() == "Txn"
                && call.request.as_ref().and_then(RpcBody::message).is_none();
            let why = if txn_undecoded {
                Unlinked::Undecoded
            } else {
                Unlinked::NotAWrite
            };
            return unlinked(call, None, why);
        };
        if call.status != Some(0) || call.response.is_none() {
            return unlinked(call, Some(op), Unlinked::NotAcknowledged);
        }
        let keyed = matches!(op, "put" | "delete_range" | "txn");
        let key = if keyed {
            match call.key.clone().filter(|k| !k.is_empty()) {
                Some(k) => k,
                // Without its key a write could be linked to another client's entry.
                None => return unlinked(call, Some(op), Unlinked::Undecoded),
            }
        } else {
            Vec::new()
        };
        let server = self
            .servers
            .get(&(call.server.port(), call.client.port()))
            .copied();
        let in_flight = (call.ts_ns, call.end_ns);
        let Some((entry, candidates)) =
            self.entries.take(&(op.to_string(), key), in_flight, server)
        else {
            return unlinked(call, Some(op), Unlinked::NoWalEntry);
        };
        // Only a sync that started after the write ended proves the entry durable: the
        // first such sync of that member's file, if it finished before the reply.
        let synced_file = (entry.member.pid, entry.file.clone());
        let sync = self.syncs.get(&synced_file).and_then(|syncs| {
            syncs
                .range((entry.write_end, 0)..)
                .next()
                .filter(|(_, end)| **end <= call.end_ns)
                .map(|((start, _), end)| (*start, *end))
        });
        // Durable at the sync's end (or the write's, when no sync was seen): a backend
        // commit running then, and done before the reply, held the apply.
        let durable = sync.map_or(entry.write_end, |(_, end)| end);
        let backend_commit = self.backend_commits.get(&entry.member.pid).and_then(|c| {
            c.range(..=durable)
                .next_back()
                .map(|(_, commit)| *commit)
                .filter(|commit| commit.end_ns > durable && commit.end_ns <= call.end_ns)
        });
        let (how, confidence) = match (keyed, candidates) {
            (true, 1) => ("operation, key and time", "high"),
            (true, _) => ("operation, key and time: earliest of several", "medium"),
            (false, 1) => ("operation and time", "medium"),
            (false, _) => ("operation and time: earliest of several", "low"),
        };
        let wal = WalLink {
            term: entry.term,
            index: entry.index,
            // Named by member ID if a later metadata record gave it.
            member: entry
                .member
                .pid
                .map_or(entry.member, |pid| self.wal.members().of(pid)),
            file: entry.file.clone(),
            write_ts_ns: entry.write_ts,
            write_end_ns: entry.write_end,
            fsync_start_ns: sync.map(|(start, _)| start),
            fsync_ts_ns: sync.map(|(_, end)| end),
            fsync_ns: sync.map(|(start, end)| end.saturating_sub(start)),
            backend_commit,
            how,
            confidence,
        };
        CorrelatedCall {
            call,
            op: Some(op),
            wal: Some(wal),
            unlinked: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(pid: u32, term: u64, index: u64, write_ts: u64) -> PendingEntry {
        PendingEntry {
            term,
            index,
            member: Member::process(pid),
            file: "member/wal/0000000000000000-0000000000000000.wal".into(),
            write_ts,
            write_end: write_ts + 10,
        }
    }

    #[test]
    fn a_call_takes_its_members_copy_and_every_copy_goes() {
        let key: EntryKey = ("put".into(), b"foo".to_vec());
        let mut pending = PendingEntries::default();
        // Entry 2/7 on three members (the leader, pid 1, first), then 2/8 on two.
        pending.add(key.clone(), copy(1, 2, 7, 1_000));
        pending.add(key.clone(), copy(2, 2, 7, 1_100));
        pending.add(key.clone(), copy(3, 2, 7, 1_200));
        pending.add(key.clone(), copy(1, 2, 8, 5_000));
        pending.add(key.clone(), copy(3, 2, 8, 5_100));

        // A call served by pid 3 links to pid 3's copy; one entry fitted, not three.
        let (e, candidates) = pending.take(&key, (900, 2_000), Some(3)).unwrap();
        assert_eq!((e.index, e.member.pid, candidates), (7, Some(3), 1));
        // No copy of 2/7 is left for another call.
        assert!(pending.take(&key, (900, 2_000), None).is_none());

        // Whose server is unknown: the earliest copy.
        let (e, _) = pending.take(&key, (4_900, 6_000), None).unwrap();
        assert_eq!((e.index, e.member.pid), (8, Some(1)));
        assert!(pending.by_key.is_empty());
    }

    #[test]
    fn a_follower_that_replied_before_its_own_write_keeps_its_copy() {
        let key: EntryKey = ("put".into(), b"foo".to_vec());
        let mut pending = PendingEntries::default();
        // The leader (1) and a follower (2) wrote 2/7 in time; the serving follower (3)
        // only after the reply at 2,000.
        pending.add(key.clone(), copy(1, 2, 7, 1_000));
        pending.add(key.clone(), copy(2, 2, 7, 1_100));
        pending.add(key.clone(), copy(3, 2, 7, 2_500));
        let (e, candidates) = pending.take(&key, (900, 2_000), Some(3)).unwrap();
        assert_eq!((e.index, e.member.pid, candidates), (7, Some(3), 1));
        assert!(pending.by_key.is_empty());
    }
}
