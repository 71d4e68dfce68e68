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
