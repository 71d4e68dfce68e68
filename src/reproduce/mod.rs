//! `reproduce`: the captured client calls sent again, to another cluster. A capture becomes
//! a regression fixture this way: record production, re-send its calls to a test cluster
//! (under `record`), and `diff` the two captures.
//!
//! `plan` turns a capture's RPC records back into client connections and their calls;
//! `client` is the HTTP/2 gRPC client (one connection per captured connection, so order
//! and concurrency stay as they were); `mapping` rewrites the lease ids and revisions that
//! the target assigns differently; `report` tallies what came back per method. The
//! engine here runs each connection on its own task, at the captured times scaled by the
//! speed, and never sends a call whose ids it cannot map.
//!
//! The plan holds the selected calls' requests in memory (the responses only as the few
//! numbers the mapping and report need): select with `--method`/`--key-prefix` to send
//! part of a long capture.

#![forbid(unsafe_code)]

pub mod client;
pub mod mapping;
pub mod plan;
pub mod report;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use tokio::time::Instant;

use crate::decode::etcdpb::watch_request::RequestUnion;
use crate::decode::etcdpb::{self, EtcdMessage};
use client::{frame, Connection, Target};
use mapping::Mapping;
use plan::{Plan, PlannedCall};

/// How long a stream waits, after its captured end, for the unary calls still running
/// (the writes its watches should see), and then for events in flight.
const STREAM_WAIT_FOR_WRITES: Duration = Duration::from_secs(30);
const STREAM_GRACE: Duration = Duration::from_millis(300);
/// A watch waits up to this long, after the writes, for as many events as the
/// original's: on a busy machine etcd delivers them late.
const STREAM_WAIT_FOR_EVENTS: Duration = Duration::from_secs(5);
/// How long a unary call may wait for its answer: a call that hangs would hold up the
/// calls after it on its connection.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a half-closed stream's responses may take to end before it is reset.
const STREAM_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How to send.
pub struct Options {
    pub target: Target,
    /// Time scale: 2.0 sends twice as fast as captured; None sends as fast as order allows.
    pub speed: Option<f64>,
    /// `--user NAME:PASSWORD` for a target with auth enabled.
    pub user: Option<(String, String)>,
}

/// What happened to one planned call.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub method: String,
    pub start_ns: u64,
    pub sent: bool,
    /// grpc-status; None when the call failed before an answer.
    pub status: Option<u32>,
    pub error: Option<String>,
    /// Why it was not sent: an id or revision that cannot be mapped.
    pub unmapped: Option<String>,
    pub latency_ns: Option<u64>,
    pub original_latency_ns: Option<u64>,
    pub original_status: Option<u32>,
    /// Watch streams: events received, and in the capture.
    pub watch_events: Option<u64>,
    pub original_watch_events: u64,
}

impl Outcome {
    fn of(call: &PlannedCall) -> Outcome {
        Outcome {
            method: call.method_name().to_string(),
            start_ns: call.start_ns,
            original_latency_ns: call.original.latency_ns,
            original_status: call.original.status,
            original_watch_events: call.original.watch_events,
            ..Outcome::default()
        }
    }
}

/// The target's cluster id (from a Status call) and the auth token for `--user`.
pub struct TargetInfo {
    pub cluster_id: u64,
    pub endpoint: String,
    token: Option<String>,
}

/// Asks the target who it is (Status), authenticating first when a user is given.
/// Nothing that changes the target is sent here.
pub fn identify(options: &Options) -> Result<TargetInfo> {
    runtime()?.block_on(identify_async(options))
}

async fn identify_async(options: &Options) -> Result<TargetInfo> {
    let conn = Connection::open(&options.target, 0).await?;
    let token = match &options.user {
        Some((name, password)) => Some(authenticate(&conn, name, password).await?),
        None => None,
    };
    let status = EtcdMessage::StatusRequest(Default::default()).encode_body();
    let path = "/etcdserverpb.Maintenance/Status";
    let reply = conn.unary(path, &status, token.as_deref()).await?;
    if reply.status != 0 {
        bail!(
            "the target answered Status with {} ({}): cannot tell which cluster it is",
            crate::decode::grpc::status_code_name(reply.status),
            reply.message
        );
    }
    let cluster_id = reply
        .body
        .and_then(|b| etcdpb::decode_response(path, &b).ok())
        .and_then(|m| m.response_header().map(|h| h.cluster_id))
        .context("the target's Status answer has no header: cannot tell which cluster it is")?;
    Ok(TargetInfo {
        cluster_id,
        endpoint: options
            .target
            .endpoints
            .first()
            .cloned()
            .unwrap_or_default(),
        token,
    })
}

pub(crate) async fn authenticate(conn: &Connection, name: &str, password: &str) -> Result<String> {
    let path = "/etcdserverpb.Auth/Authenticate";
    let body = EtcdMessage::AuthenticateRequest(etcdpb::AuthenticateRequest {
        name: name.to_string(),
        password: password.to_string(),
    })
    .encode_body();
    let reply = conn.unary(path, &body, None).await?;
    if reply.status != 0 {
        bail!("--user {name}: the target refused it: {}", reply.message);
    }
    match reply
        .body
        .and_then(|b| etcdpb::decode_response(path, &b).ok())
    {
        Some(EtcdMessage::AuthenticateResponse(r)) if !r.token.is_empty() => Ok(r.token),
        _ => bail!("--user {name}: the target's answer held no token"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// State shared by every connection's task.
struct Shared {
    target: Target,
    token: Option<String>,
    mapping: Mapping,
    start: Instant,
    first_ns: u64,
    speed: Option<f64>,
    outcomes: Mutex<Vec<Outcome>>,
    /// Unary calls not finished yet; streams stay open until they are.
    unary_left: AtomicUsize,
    unary_done: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// Until the scaled time of capture time `ts`.
    async fn sleep_until(&self, ts: u64) {
        let Some(speed) = self.speed else { return };
        let offset = ts.saturating_sub(self.first_ns) as f64 / speed;
        if offset.is_finite() {
            let at = self.start + Duration::from_nanos(offset.min(1e18) as u64);
            tokio::time::sleep_until(at).await;
        }
    }

    fn record(&self, outcome: Outcome) {
        self.outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(outcome);
    }

    fn unary_finished(&self) {
        if self.unary_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Also when no stream waits yet: `send` would drop the value then, and a
            // stream that asks later would wait its whole STREAM_WAIT_FOR_WRITES.
            self.unary_done.send_replace(true);
        }
    }

    /// A call that was not answered: what mapping waited for from it will not come.
    fn learn_failure(&self, call: &PlannedCall) {
        self.mapping.learn(
            call.original.revision.map(|r| (r, None)),
            call.original.lease_granted.map(|l| (l, None)),
        );
    }
}

/// Sends the plan's calls to the target identified by `info`; one outcome per call.
pub fn run(plan: Plan, options: &Options, info: &TargetInfo) -> Result<Vec<Outcome>> {
    runtime()?.block_on(run_async(plan, options, info))
}

async fn run_async(plan: Plan, options: &Options, info: &TargetInfo) -> Result<Vec<Outcome>> {
    let unary = plan
        .connections
        .iter()
        .flat_map(|c| &c.calls)
        .filter(|c| !c.streaming)
        .count();
    let (unary_done, _) = tokio::sync::watch::channel(unary == 0);
    let shared = Arc::new(Shared {
        target: options.target.clone(),
        token: info.token.clone(),
        mapping: Mapping::new(plan.leases.clone(), plan.revisions.clone()),
        start: Instant::now(),
        first_ns: plan.first_ns,
        speed: options.speed,
        outcomes: Mutex::new(Vec::new()),
        unary_left: AtomicUsize::new(unary),
        unary_done,
    });
    let mut tasks = Vec::new();
    for (i, conn) in plan.connections.into_iter().enumerate() {
        tasks.push(tokio::spawn(run_connection(shared.clone(), i, conn.calls)));
    }
    for t in tasks {
        t.await.context("a connection's task failed")?;
    }
    let mut outcomes =
        std::mem::take(&mut *shared.outcomes.lock().unwrap_or_else(|e| e.into_inner()));
    outcomes.sort_by_key(|o| o.start_ns);
    Ok(outcomes)
}

/// One captured connection: its calls in order, each at its scaled time; a call that
/// began after an earlier one ended waits for it, calls that overlapped overlap again.
async fn run_connection(shared: Arc<Shared>, index: usize, calls: Vec<PlannedCall>) {
    let conn = match Connection::open(&shared.target, index).await {
        Ok(conn) => conn,
        Err(e) => {
            for call in calls {
                shared.learn_failure(&call);
                if !call.streaming {
                    shared.unary_finished();
                }
                shared.record(Outcome {
                    error: Some(format!("{e:#}")),
                    ..Outcome::of(&call)
                });
            }
            return;
        }
    };
    let mut in_flight: Vec<(u64, tokio::task::JoinHandle<()>)> = Vec::new();
    let mut streams = Vec::new();
    for call in calls {
        shared.sleep_until(call.start_ns).await;
        let mut i = 0;
        while let Some((end, _)) = in_flight.get(i) {
            if *end <= call.start_ns {
                let (_, task) = in_flight.swap_remove(i);
                let _ = task.await;
            } else {
                i += 1;
            }
        }
        let (shared, conn) = (shared.clone(), conn.clone());
        if call.streaming {
            streams.push(tokio::spawn(async move {
                let outcome = stream_call(&shared, &conn, &call).await;
                shared.record(outcome);
            }));
        } else {
            let end = call.end_ns;
            in_flight.push((
                end,
                tokio::spawn(async move {
                    let outcome = unary_call(&shared, &conn, &call).await;
                    shared.unary_finished();
                    shared.record(outcome);
                }),
            ));
        }
    }
    for (_, task) in in_flight {
        let _ = task.await;
    }
    for task in streams {
        let _ = task.await;
    }
}

async fn unary_call(shared: &Shared, conn: &Connection, call: &PlannedCall) -> Outcome {
    let mut outcome = Outcome::of(call);
    let Some((_, request)) = call.requests.first() else {
        shared.learn_failure(call);
        outcome.unmapped = Some("no request message".to_string());
        return outcome;
    };
    let request = match shared.mapping.rewrite(request).await {
        Ok(m) => m,
        Err(why) => {
            shared.learn_failure(call);
            outcome.unmapped = Some(why);
            return outcome;
        }
    };
    let body = request.encode_body();
    let sent_at = Instant::now();
    outcome.sent = true;
    let reply = tokio::time::timeout(
        CALL_TIMEOUT,
        conn.unary(&call.path, &body, shared.token.as_deref()),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}")));
    let latency = u64::try_from(sent_at.elapsed().as_nanos()).unwrap_or(u64::MAX);
    match reply {
        Ok(reply) => {
            outcome.status = Some(reply.status);
            outcome.latency_ns = Some(latency);
            if reply.status != 0 {
                outcome.error = Some(reply.message);
            }
            let response = reply
                .body
                .filter(|_| reply.status == 0)
                .and_then(|b| etcdpb::decode_response(&call.path, &b).ok());
            let revision = response
                .as_ref()
                .and_then(EtcdMessage::response_header)
                .map(|h| h.revision)
                .filter(|r| *r != 0);
            let lease = match &response {
                Some(EtcdMessage::LeaseGrantResponse(g)) if g.error.is_empty() => Some(g.id),
                _ => None,
            };
            shared.mapping.learn(
                call.original.revision.map(|r| (r, revision)),
                call.original.lease_granted.map(|l| (l, lease)),
            );
        }
        Err(e) => {
            shared.learn_failure(call);
            outcome.error = Some(format!("{e:#}"));
        }
    }
    outcome
}

/// A watch created "from now" (start revision 0), as the original was created: from the
/// revision after the one its creation answered with. Mapped to the target's, the new
/// watch sees the same writes even when the target registers it after the first of them
/// (its writes go on other streams, at their own times).
fn from_creation(request: &EtcdMessage, created_at: Option<i64>) -> Option<EtcdMessage> {
    let created_at = created_at.filter(|r| *r > 0)?;
    let EtcdMessage::WatchRequest(w) = request else {
        return None;
    };
    let Some(RequestUnion::CreateRequest(c)) = &w.request_union else {
        return None;
    };
    if c.start_revision != 0 {
        return None;
    }
    let mut c = c.clone();
    c.start_revision = created_at + 1;
    let mut w = w.clone();
    w.request_union = Some(RequestUnion::CreateRequest(c));
    Some(EtcdMessage::WatchRequest(w))
}

/// A streaming call: its request messages at their scaled times; it stays open until its
/// captured end and the unary calls are done, so that its watches see their writes, and
/// until a watch has had as many events as the original (bounded).
async fn stream_call(shared: &Shared, conn: &Connection, call: &PlannedCall) -> Outcome {
    let mut outcome = Outcome::of(call);
    let (mut stream, pending) = match conn.start(&call.path, shared.token.as_deref()).await {
        Ok(s) => s,
        Err(e) => {
            outcome.error = Some(format!("{e:#}"));
            return outcome;
        }
    };
    outcome.sent = true;
    let path = call.path.clone();
    let events = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = events.clone();
    let mut reader = tokio::spawn(async move {
        let mut responses = pending.responses().await?;
        while let Some(m) = responses.next().await? {
            if let Ok(EtcdMessage::WatchResponse(w)) = etcdpb::decode_response(&path, &m) {
                counted.fetch_add(w.events.len() as u64, Ordering::Relaxed);
            }
        }
        anyhow::Ok((responses.status(), responses.message.clone()))
    });
    for (i, (ts, request)) in call.requests.iter().enumerate() {
        shared.sleep_until(*ts).await;
        let pinned = if i == 0 {
            from_creation(request, call.original.revision)
        } else {
            None
        };
        let rewritten = match pinned {
            // A creation revision that cannot be mapped leaves the watch "from now".
            Some(pinned) => match shared.mapping.rewrite(&pinned).await {
                Ok(m) => Ok(m),
                Err(_) => shared.mapping.rewrite(request).await,
            },
            None => shared.mapping.rewrite(request).await,
        };
        match rewritten {
            Ok(m) => {
                if let Err(e) = stream.send_data(frame(&m.encode_body()), false) {
                    outcome.error = Some(e.to_string());
                    break;
                }
            }
            Err(why) => {
                outcome.unmapped = Some(why);
                break;
            }
        }
    }
    shared.sleep_until(call.end_ns).await;
    let mut done = shared.unary_done.subscribe();
    let _ = tokio::time::timeout(STREAM_WAIT_FOR_WRITES, done.wait_for(|d| *d)).await;
    let expected = call.original.watch_events;
    let _ = tokio::time::timeout(STREAM_WAIT_FOR_EVENTS, async {
        while events.load(Ordering::Relaxed) < expected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tokio::time::sleep(STREAM_GRACE).await;
    let _ = stream.send_data(Bytes::new(), true);
    match tokio::time::timeout(STREAM_CLOSE_TIMEOUT, &mut reader).await {
        Ok(Ok(Ok((status, message)))) => {
            outcome.status = Some(status);
            if status != 0 && outcome.error.is_none() {
                outcome.error = Some(message);
            }
        }
        Ok(Ok(Err(e))) => outcome.error = Some(format!("{e:#}")),
        Ok(Err(e)) => outcome.error = Some(e.to_string()),
        Err(_) => {
            // etcd keeps a Watch open after the client's half close: the client ends it
            // (as the captured client did, by cancelling or going away). Not an error.
            reader.abort();
            stream.send_reset(h2::Reason::CANCEL);
            outcome.status = Some(0);
        }
    }
    outcome.watch_events = call
        .path
        .ends_with("/Watch")
        .then(|| events.load(Ordering::Relaxed));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last unary call finishing before any stream asks is still seen by a stream
    /// that asks later (a watch still sleeping until its captured end).
    #[test]
    fn the_end_of_the_unary_calls_is_kept_for_streams_that_ask_later() {
        let (unary_done, _) = tokio::sync::watch::channel(false);
        let shared = Shared {
            target: Target {
                endpoints: Vec::new(),
                tls: None,
            },
            token: None,
            mapping: Mapping::new(Default::default(), Default::default()),
            start: Instant::now(),
            first_ns: 0,
            speed: None,
            outcomes: Mutex::new(Vec::new()),
            unary_left: AtomicUsize::new(2),
            unary_done,
        };
        shared.unary_finished();
        assert!(!*shared.unary_done.subscribe().borrow());
        shared.unary_finished();
        assert!(*shared.unary_done.subscribe().borrow());
    }
}
