//! Which etcd member did something. One recorder may trace several members on one host,
//! and their files share relative paths (`member/wal/…`, `member/snap/db`), so whatever
//! follows a file keys it by process too. A process is named by its member ID once one
//! of its WAL metadata records gave it (the head of every WAL file carries it).

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

/// Whose: the process that did it and, once known, its member ID. Prints as the ID in
/// hex (as etcd prints member IDs), or `pid:N` while only the process is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Member {
    pub pid: Option<u32>,
    pub id: Option<u64>,
}

impl Member {
    /// A process whose member ID is not known (yet).
    pub fn process(pid: u32) -> Member {
        Member {
            pid: Some(pid),
            id: None,
        }
    }

    /// A member known by its ID alone (a WAL read from disk has no process).
    pub fn with_id(id: u64) -> Member {
        Member {
            pid: None,
            id: Some(id),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.id, self.pid) {
            (Some(id), _) => write!(f, "{id:x}"),
            (None, Some(pid)) => write!(f, "pid:{pid}"),
            (None, None) => f.write_str("unknown"),
        }
    }
}

impl Serialize for Member {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The member IDs learned, per process.
#[derive(Debug, Default, Clone)]
pub struct Members {
    ids: HashMap<u32, u64>,
}

impl Members {
    /// `pid` is member `id` (from a metadata record it wrote). A zero ID says nothing.
    pub fn learn(&mut self, pid: u32, id: u64) {
        if id != 0 {
            self.ids.insert(pid, id);
        }
    }

    /// Every process whose member ID is known, with it.
    pub fn known(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.ids.iter().map(|(&pid, &id)| (pid, id))
    }

    /// What is known of `pid`.
    pub fn of(&self, pid: u32) -> Member {
        Member {
            pid: Some(pid),
            id: self.ids.get(&pid).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_named_by_its_id_once_known() {
        let mut members = Members::default();
        assert_eq!(members.of(42).to_string(), "pid:42");
        members.learn(42, 0);
        assert_eq!(members.of(42).to_string(), "pid:42");
        members.learn(42, 0x8e9e_05c5_2164_694d);
        assert_eq!(members.of(42).to_string(), "8e9e05c52164694d");
        assert_eq!(members.of(42).pid, Some(42));
        assert_eq!(members.of(7).to_string(), "pid:7");
        assert_eq!(Member::with_id(0xab).to_string(), "ab");
        assert_eq!(Member::default().to_string(), "unknown");
        assert_eq!(
            serde_json::to_string(&Member::process(3)).unwrap(),
            "\"pid:3\""
        );
    }
}
