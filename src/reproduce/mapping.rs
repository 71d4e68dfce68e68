//! What the target cluster assigns differently from the recorded one: lease ids and
//! revisions. Each reproduced response pairs the original's answer with the target's;
//! a request that names an original id or revision is rewritten through those pairs, or
//! refused (with the reason) when the pair it needs cannot be known.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::decode::etcdpb::compare::TargetUnion;
use crate::decode::etcdpb::request_op::Request;
use crate::decode::etcdpb::watch_request::RequestUnion;
use crate::decode::etcdpb::{CompareResult, EtcdMessage, TxnRequest};

/// How long a request waits for the call that gives the id or revision it needs (a
/// grant on another connection that the timing let finish later).
const WAIT_FOR_PAIR: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Pairs {
    leases: HashMap<i64, i64>,
    /// Original lease ids whose grant failed on the target.
    failed_leases: BTreeSet<i64>,
    revisions: BTreeMap<i64, i64>,
    /// Original revisions whose call failed or was not answered.
    failed_revisions: BTreeSet<i64>,
}

/// The pairs learned so far, shared by every connection of a run.
pub struct Mapping {
    pairs: Mutex<Pairs>,
    changed: Notify,
    /// What the planned calls will give: a request waits for these, not for others.
    planned_leases: BTreeSet<i64>,
    planned_revisions: BTreeSet<i64>,
}

/// Why a request cannot be sent with the right ids.
pub type Unmapped = String;

impl Mapping {
    pub fn new(planned_leases: BTreeSet<i64>, planned_revisions: BTreeSet<i64>) -> Mapping {
        Mapping {
            pairs: Mutex::new(Pairs::default()),
            changed: Notify::new(),
            planned_leases,
            planned_revisions,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pairs> {
        self.pairs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The target answered a call whose original answer carried `original` revision
    /// (None: the call failed) and granted lease `lease` for the original's.
    pub fn learn(&self, revision: Option<(i64, Option<i64>)>, lease: Option<(i64, Option<i64>)>) {
        {
            let mut p = self.lock();
            match revision {
                Some((orig, Some(new))) => {
                    p.revisions.entry(orig).or_insert(new);
                }
                Some((orig, None)) => {
                    p.failed_revisions.insert(orig);
                }
                None => {}
            }
            match lease {
                Some((orig, Some(new))) => {
                    p.leases.insert(orig, new);
                }
                Some((orig, None)) => {
                    p.failed_leases.insert(orig);
                }
                None => {}
            }
        }
        self.changed.notify_waiters();
    }

    /// Waits until `ready` says the pairs answer, or the wait runs out.
    async fn wait_for<T>(
        &self,
        mut ready: impl FnMut(&Pairs) -> Option<Result<T, Unmapped>>,
        timeout: Unmapped,
    ) -> Result<T, Unmapped> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_PAIR;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(answer) = ready(&self.lock()) {
                return answer;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(timeout);
            }
        }
    }

    /// The target's id for an original lease id (0 is "no lease").
    pub async fn lease(&self, orig: i64) -> Result<i64, Unmapped> {
        if orig == 0 {
            return Ok(0);
        }
        if !self.planned_leases.contains(&orig) {
            return Err(format!(
                "lease {orig:x} was not granted by a reproduced call (granted before \
                 recording, or its grant was not sent)"
            ));
        }
        self.wait_for(
            |p| {
                if let Some(new) = p.leases.get(&orig) {
                    Some(Ok(*new))
                } else if p.failed_leases.contains(&orig) {
                    Some(Err(format!(
                        "the grant of lease {orig:x} failed on the target"
                    )))
                } else {
                    None
                }
            },
            format!("the grant of lease {orig:x} had no answer in time"),
        )
        .await
    }

    /// The target's revision for an original one. `exact`: the revision must be one that
    /// a reproduced call produced (an equality compare on a key's mod revision); else the
    /// latest pair at or below it stands for it (the state at that revision).
    pub async fn revision(&self, orig: i64, exact: bool) -> Result<i64, Unmapped> {
        if orig <= 0 {
            return Ok(orig);
        }
        let needed = if exact {
            self.planned_revisions.get(&orig).copied()
        } else {
            self.planned_revisions.range(..=orig).next_back().copied()
        };
        let Some(needed) = needed else {
            return Err(format!(
                "revision {orig} was not produced by a reproduced call (it predates the \
                 workload, or its call was not sent)"
            ));
        };
        self.wait_for(
            |p| {
                if p.failed_revisions.contains(&needed) {
                    return Some(Err(format!(
                        "the call that produced revision {needed} failed on the target"
                    )));
                }
                let new = p.revisions.get(&needed)?;
                Some(Ok(*new))
            },
            format!("the call that produced revision {needed} had no answer in time"),
        )
        .await
    }

    /// A watch from an original revision: from the target's revision after the one below.
    async fn watch_start(&self, orig: i64) -> Result<i64, Unmapped> {
        if orig <= 0 {
            return Ok(orig);
        }
        if self.planned_revisions.contains(&orig) {
            return self.revision(orig, true).await;
        }
        Ok(self.revision(orig - 1, false).await? + 1)
    }

    /// The request with original ids and revisions replaced by the target's.
    pub async fn rewrite(&self, m: &EtcdMessage) -> Result<EtcdMessage, Unmapped> {
        let mut m = m.clone();
        match &mut m {
            EtcdMessage::RangeRequest(r) => self.range(r).await?,
            EtcdMessage::PutRequest(r) => r.lease = self.lease(r.lease).await?,
            EtcdMessage::TxnRequest(t) => Box::pin(self.txn(t)).await?,
            EtcdMessage::LeaseRevokeRequest(r) => r.id = self.lease(r.id).await?,
            EtcdMessage::LeaseKeepAliveRequest(r) => r.id = self.lease(r.id).await?,
            EtcdMessage::LeaseTimeToLiveRequest(r) => r.id = self.lease(r.id).await?,
            EtcdMessage::CompactionRequest(r) => {
                r.revision = self.revision(r.revision, false).await?
            }
            EtcdMessage::WatchRequest(w) => {
                if let Some(RequestUnion::CreateRequest(c)) = &mut w.request_union {
                    c.start_revision = self.watch_start(c.start_revision).await?;
                }
            }
            _ => {}
        }
        Ok(m)
    }

    async fn range(&self, r: &mut crate::decode::etcdpb::RangeRequest) -> Result<(), Unmapped> {
        r.revision = self.revision(r.revision, false).await?;
        for rev in [
            &mut r.min_mod_revision,
            &mut r.max_mod_revision,
            &mut r.min_create_revision,
            &mut r.max_create_revision,
        ] {
            *rev = self.revision(*rev, false).await?;
        }
        Ok(())
    }

    async fn txn(&self, t: &mut TxnRequest) -> Result<(), Unmapped> {
        for c in &mut t.compare {
            let exact = matches!(
                CompareResult::try_from(c.result),
                Ok(CompareResult::Equal | CompareResult::NotEqual) | Err(_)
            );
            match &mut c.target_union {
                Some(TargetUnion::CreateRevision(r) | TargetUnion::ModRevision(r)) => {
                    *r = self.revision(*r, exact).await?;
                }
                Some(TargetUnion::Lease(l)) => *l = self.lease(*l).await?,
                _ => {}
            }
        }
        for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
            match &mut op.request {
                Some(Request::RequestRange(r)) => self.range(r).await?,
                Some(Request::RequestPut(p)) => p.lease = self.lease(p.lease).await?,
                Some(Request::RequestTxn(inner)) => Box::pin(self.txn(inner)).await?,
                Some(Request::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::etcdpb::{Compare, PutRequest, RangeRequest};

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn mapping() -> Mapping {
        let m = Mapping::new([0x10].into(), [5, 8].into());
        m.learn(Some((5, Some(105))), Some((0x10, Some(0x99))));
        m.learn(Some((8, Some(108))), None);
        m
    }

    #[test]
    fn revisions_map_exactly_or_to_the_state_below() {
        let m = mapping();
        run(async {
            assert_eq!(m.revision(5, true).await, Ok(105));
            assert_eq!(m.revision(7, false).await, Ok(105));
            assert_eq!(m.revision(9, false).await, Ok(108));
            assert!(m.revision(7, true).await.is_err(), "no write made 7");
            assert!(m.revision(4, false).await.is_err(), "before the workload");
            assert_eq!(m.revision(0, true).await, Ok(0));
            assert_eq!(m.watch_start(7).await, Ok(106));
        });
    }

    #[test]
    fn leases_map_or_say_why_not() {
        let m = mapping();
        run(async {
            assert_eq!(m.lease(0x10).await, Ok(0x99));
            assert!(m.lease(0x11).await.unwrap_err().contains("not granted"));
        });
        let failed = Mapping::new([0x20].into(), [].into());
        failed.learn(None, Some((0x20, None)));
        run(async { assert!(failed.lease(0x20).await.unwrap_err().contains("failed")) });
    }

    #[test]
    fn txn_compares_and_puts_are_rewritten() {
        let m = mapping();
        let txn = EtcdMessage::TxnRequest(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: 2,
                key: b"k".to_vec(),
                target_union: Some(TargetUnion::ModRevision(8)),
                range_end: vec![],
            }],
            success: vec![crate::decode::etcdpb::RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: b"k".to_vec(),
                    lease: 0x10,
                    ..Default::default()
                })),
            }],
            failure: vec![crate::decode::etcdpb::RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    key: b"k".to_vec(),
                    revision: 6,
                    ..Default::default()
                })),
            }],
        });
        let EtcdMessage::TxnRequest(t) = run(m.rewrite(&txn)).unwrap() else {
            panic!("not a txn");
        };
        assert_eq!(
            t.compare[0].target_union,
            Some(TargetUnion::ModRevision(108))
        );
        let Some(Request::RequestPut(p)) = &t.success[0].request else {
            panic!()
        };
        assert_eq!(p.lease, 0x99);
        let Some(Request::RequestRange(r)) = &t.failure[0].request else {
            panic!()
        };
        assert_eq!(r.revision, 105);
    }
}
