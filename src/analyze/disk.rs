//! etcd's disk work as phases: WAL appends, syncs with their durations, backend (bbolt)
//! commits, snapshot file writes. Built from the syscall events alone, so it works on
//! captures whose network side could not be decoded. Each phase says whose it is: the
//! process, which [`crate::analyze::wal_log::WalLog`] can name by member ID.

use std::collections::HashMap;

use serde::Serialize;

use crate::analyze::member::Member;
use crate::capture::{Event, FileKind, Syscall};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum DiskPhase {
    /// One write to a WAL file.
    WalWrite {
        start_ns: u64,
        end_ns: u64,
        member: Member,
        file: String,
        fd: i32,
        bytes: u64,
    },
    /// An fsync or fdatasync of a data-dir file.
    Sync {
        start_ns: u64,
        end_ns: u64,
        member: Member,
        file: String,
        kind: FileKind,
        fd: i32,
        call: &'static str,
    },
    /// The backend's writes since its previous sync, and the sync that made them
    /// durable: one bbolt transaction commit.
    BackendCommit {
        start_ns: u64,
        end_ns: u64,
        member: Member,
        writes: u64,
        bytes: u64,
        sync_ns: u64,
    },
    /// A write to a snapshot file (member/snap/*.snap).
    SnapshotWrite {
        start_ns: u64,
        end_ns: u64,
        member: Member,
        file: String,
        bytes: u64,
    },
}

impl DiskPhase {
    pub fn start_ns(&self) -> u64 {
        match self {
            DiskPhase::WalWrite { start_ns, .. }
            | DiskPhase::Sync { start_ns, .. }
            | DiskPhase::BackendCommit { start_ns, .. }
            | DiskPhase::SnapshotWrite { start_ns, .. } => *start_ns,
        }
    }

    pub fn end_ns(&self) -> u64 {
        match self {
            DiskPhase::WalWrite { end_ns, .. }
            | DiskPhase::Sync { end_ns, .. }
            | DiskPhase::BackendCommit { end_ns, .. }
            | DiskPhase::SnapshotWrite { end_ns, .. } => *end_ns,
        }
    }

    pub fn member(&self) -> Member {
        match self {
            DiskPhase::WalWrite { member, .. }
            | DiskPhase::Sync { member, .. }
            | DiskPhase::BackendCommit { member, .. }
            | DiskPhase::SnapshotWrite { member, .. } => *member,
        }
    }

    /// Names the phase's process by member ID, when `members` knows it.
    pub fn name_member(&mut self, members: &crate::analyze::member::Members) {
        let (DiskPhase::WalWrite { member, .. }
        | DiskPhase::Sync { member, .. }
        | DiskPhase::BackendCommit { member, .. }
        | DiskPhase::SnapshotWrite { member, .. }) = self;
        if let Some(pid) = member.pid {
            *member = members.of(pid);
        }
    }
}

#[derive(Debug, Default)]
struct PendingCommit {
    first_ns: u64,
    writes: u64,
    bytes: u64,
}

/// Turns syscall events into disk phases.
#[derive(Debug, Default)]
pub struct DiskActivity {
    /// Backend writes not yet synced, per process and file.
    backend: HashMap<(u32, String), PendingCommit>,
}

impl DiskActivity {
    pub fn new() -> DiskActivity {
        DiskActivity::default()
    }

    pub fn push(&mut self, ev: &Event, out: &mut Vec<DiskPhase>) {
        let Event::Syscall(s) = ev else { return };
        match s.file.kind {
            FileKind::Socket | FileKind::OtherData => {
                if s.call.is_sync() && s.file.kind == FileKind::OtherData {
                    out.push(sync_phase(s));
                }
            }
            FileKind::Wal => {
                if s.call.is_write() && s.ret > 0 {
                    out.push(DiskPhase::WalWrite {
                        start_ns: s.enter_ns,
                        end_ns: s.exit_ns,
                        member: Member::process(s.pid),
                        file: s.file.path.clone(),
                        fd: s.fd,
                        bytes: s.transferred(),
                    });
                } else if s.call.is_sync() {
                    out.push(sync_phase(s));
                }
            }
            FileKind::Db => {
                if s.call.is_write() && s.ret > 0 {
                    let p = self
                        .backend
                        .entry((s.pid, s.file.path.clone()))
                        .or_default();
                    if p.writes == 0 {
                        p.first_ns = s.enter_ns;
                    }
                    p.writes += 1;
                    p.bytes += s.transferred();
                } else if s.call.is_sync() {
                    out.push(sync_phase(s));
                    let p = self
                        .backend
                        .remove(&(s.pid, s.file.path.clone()))
                        .unwrap_or_default();
                    out.push(DiskPhase::BackendCommit {
                        start_ns: if p.writes > 0 { p.first_ns } else { s.enter_ns },
                        end_ns: s.exit_ns,
                        member: Member::process(s.pid),
                        writes: p.writes,
                        bytes: p.bytes,
                        sync_ns: s.duration_ns(),
                    });
                }
            }
            FileKind::Snap => {
                if s.call.is_write() && s.ret > 0 {
                    out.push(DiskPhase::SnapshotWrite {
                        start_ns: s.enter_ns,
                        end_ns: s.exit_ns,
                        member: Member::process(s.pid),
                        file: s.file.path.clone(),
                        bytes: s.transferred(),
                    });
                } else if s.call.is_sync() {
                    out.push(sync_phase(s));
                }
            }
        }
    }
}

fn sync_phase(s: &Syscall) -> DiskPhase {
    DiskPhase::Sync {
        start_ns: s.enter_ns,
        end_ns: s.exit_ns,
        member: Member::process(s.pid),
        file: s.file.path.clone(),
        kind: s.file.kind,
        fd: s.fd,
        call: s.call.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{FileRef, SyscallKind};

    fn sc(call: SyscallKind, path: &str, enter: u64, exit: u64, ret: i64) -> Event {
        Event::Syscall(Syscall {
            enter_ns: enter,
            exit_ns: exit,
            pid: 1,
            tid: 1,
            call,
            fd: 5,
            file: FileRef {
                kind: FileKind::of_data_path(path),
                path: path.into(),
                local_port: 0,
                peer_port: 0,
            },
            offset: Some(0),
            requested: ret.max(0) as u64,
            ret,
            data: Default::default(),
        })
    }

    #[test]
    fn backend_writes_and_their_sync_make_one_commit() {
        let mut d = DiskActivity::new();
        let mut out = Vec::new();
        d.push(
            &sc(SyscallKind::Pwrite64, "member/snap/db", 10, 12, 4096),
            &mut out,
        );
        d.push(
            &sc(SyscallKind::Pwrite64, "member/snap/db", 13, 15, 4096),
            &mut out,
        );
        d.push(
            &sc(SyscallKind::Fdatasync, "member/snap/db", 16, 40, 0),
            &mut out,
        );
        d.push(
            &sc(SyscallKind::Write, "member/wal/0-0.wal", 50, 52, 96),
            &mut out,
        );
        d.push(
            &sc(SyscallKind::Fdatasync, "member/wal/0-0.wal", 53, 90, 0),
            &mut out,
        );
        assert!(out.contains(&DiskPhase::BackendCommit {
            start_ns: 10,
            end_ns: 40,
            member: Member::process(1),
            writes: 2,
            bytes: 8192,
            sync_ns: 24
        }));
        assert!(matches!(
            out.last(),
            Some(DiskPhase::Sync {
                kind: FileKind::Wal,
                start_ns: 53,
                ..
            })
        ));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn members_backends_are_kept_apart() {
        let on = |pid: u32, ev: Event| match ev {
            Event::Syscall(mut s) => {
                s.pid = pid;
                Event::Syscall(s)
            }
            other => other,
        };
        let mut d = DiskActivity::new();
        let mut out = Vec::new();
        let db = "member/snap/db";
        d.push(
            &on(1, sc(SyscallKind::Pwrite64, db, 10, 12, 4096)),
            &mut out,
        );
        d.push(
            &on(2, sc(SyscallKind::Pwrite64, db, 11, 13, 4096)),
            &mut out,
        );
        d.push(
            &on(2, sc(SyscallKind::Pwrite64, db, 14, 15, 4096)),
            &mut out,
        );
        d.push(&on(1, sc(SyscallKind::Fdatasync, db, 16, 40, 0)), &mut out);
        d.push(&on(2, sc(SyscallKind::Fdatasync, db, 41, 50, 0)), &mut out);
        let commits: Vec<(Member, u64, u64)> = out
            .iter()
            .filter_map(|p| match p {
                DiskPhase::BackendCommit {
                    member,
                    start_ns,
                    writes,
                    ..
                } => Some((*member, *start_ns, *writes)),
                _ => None,
            })
            .collect();
        assert_eq!(
            commits,
            vec![(Member::process(1), 10, 1), (Member::process(2), 11, 2)]
        );
        let mut members = crate::analyze::member::Members::default();
        members.learn(2, 0xabc);
        let mut last = out.pop().unwrap();
        last.name_member(&members);
        assert_eq!(last.member().to_string(), "abc");
    }
}
