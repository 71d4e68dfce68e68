//! `record --mode api`: a recorder for where eBPF cannot run (no root, a managed etcd).
//! A client of etcd's own API watches the whole keyspace (with the previous values'
//! sizes) and polls every member's Status, the member list and /metrics once per
//! interval; what it sees goes into a capture of the usual format as API events
//! (`capture::api`), with the header saying mode api. It sees what the API shows: the
//! writes and the cluster's state, not who sent what, reads, or per-call latency.

pub mod metrics;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use prost::Message;
use tokio::sync::mpsc;

use crate::capture::api::{
    cut_text, ApiEvent, ApiMember, ApiObservation, KeyChange, MemberList, MemberStatus,
    MAX_API_MEMBERS, MAX_API_TEXT,
};
use crate::capture::{CaptureMode, CaptureWriter, Event, Header, RecordConfig};
use crate::decode::etcdpb::{self, watch_request::RequestUnion};
use crate::reproduce::client::{frame, Connection, Target};

/// A block is written at least this often, so followers see events within a second.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Wait before the watch is opened again after it failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long one poll (Status, member list) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the recorder waits for its watch and first poll before it says it records.
const READY_WITHIN: Duration = Duration::from_secs(10);

pub struct ApiRecordOptions {
    pub output: PathBuf,
    /// The URLs as given (`http://HOST:PORT`), and where to connect.
    pub urls: Vec<String>,
    pub target: Target,
    /// Credentials for a cluster with auth enabled (the watch needs read access).
    pub user: Option<(String, String)>,
    pub duration: Option<Duration>,
    pub interval: Duration,
}

/// What the recording holds, for the closing line.
#[derive(Debug, Default)]
pub struct ApiSummary {
    pub changes: u64,
    pub statuses: u64,
    pub member_lists: u64,
    pub metrics: u64,
    pub failures: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// The capture's clock: ns since the recorder started, from 1 s so that no event is
/// at 0. The header's offset turns it into wall-clock time.
struct Clock {
    started: Instant,
}

const CLOCK_BASE_NS: u64 = 1_000_000_000;

impl Clock {
    fn now_ns(&self) -> u64 {
        CLOCK_BASE_NS + u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Records until `stop` is set or the duration has passed.
pub fn run(opts: ApiRecordOptions, stop: Arc<AtomicBool>) -> Result<ApiSummary> {
    if opts.target.endpoints.is_empty() {
        bail!("--mode api needs --endpoints URL[,URL…]: the etcd members to watch and poll");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the API client's runtime")?;
    runtime.block_on(record(opts, stop))
}

fn header(opts: &ApiRecordOptions, clock: &Clock) -> Header {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    Header {
        recorder_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: read("/proc/sys/kernel/hostname"),
        kernel_release: read("/proc/sys/kernel/osrelease"),
        clock_offset_ns: i64::try_from(wall).unwrap_or(i64::MAX)
            - i64::try_from(clock.now_ns()).unwrap_or(0),
        started_wall_ns: wall,
        config: RecordConfig::default(),
        processes: Vec::new(),
        interfaces: Vec::new(),
        hosts: Vec::new(),
        mode: CaptureMode::Api {
            endpoints: opts.urls.clone(),
        },
    }
}

async fn record(opts: ApiRecordOptions, stop: Arc<AtomicBool>) -> Result<ApiSummary> {
    let clock = Arc::new(Clock {
        started: Instant::now(),
    });
    let header = header(&opts, &clock);
    // A first Status says at once whether the endpoint answers at all.
    let first = Connection::open(&opts.target, 0).await.with_context(|| {
        format!(
            "--mode api: cannot reach {} (is it etcd's client URL, and TLS given when it \
             uses https?)",
            opts.urls[0]
        )
    })?;
    let token = match &opts.user {
        Some((name, password)) => {
            Some(crate::reproduce::authenticate(&first, name, password).await?)
        }
        None => None,
    };
    let mut writer = CaptureWriter::create(&opts.output, &header)
        .with_context(|| format!("creating capture file {}", opts.output.display()))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let (watching, watch_open) = tokio::sync::oneshot::channel();
    let (polled, first_poll) = tokio::sync::oneshot::channel();
    let watcher = Watcher {
        target: opts.target.clone(),
        urls: opts.urls.clone(),
        token: token.clone(),
        clock: Arc::clone(&clock),
        tx: tx.clone(),
        next_revision: 0,
        watching: Some(watching),
    };
    let watch = tokio::spawn(watcher.run());
    let polls = tokio::spawn(poll(
        opts.target.clone(),
        opts.urls.clone(),
        token,
        opts.interval,
        Arc::clone(&clock),
        tx,
        polled,
    ));
    // Ready once the watch is open and the first poll is in: the writes and counters
    // from then on are all in the capture.
    let ready = async {
        let _ = first_poll.await;
        watch_open.await.is_ok()
    };
    let watching = tokio::time::timeout(READY_WITHIN, ready)
        .await
        .unwrap_or(false);
    if !watching {
        eprintln!(
            "note: the watch is not open after {READY_WITHIN:?}; recording the polls, and the \
             watch as soon as it opens (`etcd-trace dump` shows why it failed)"
        );
    }
    let started = Instant::now();
    let mut summary = ApiSummary::default();
    let mut last_flush = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    eprintln!(
        "recording through etcd's API: {} (the keyspace watched, polls every {:?}) to {}; \
         Ctrl-C to stop",
        opts.urls.join(","),
        opts.interval,
        opts.output.display()
    );
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                count(&mut summary, &ev);
                writer.push(&ev).context("writing the capture")?;
            }
            _ = tick.tick() => {
                if last_flush.elapsed() >= FLUSH_EVERY {
                    writer.flush_block().context("writing the capture")?;
                    last_flush = Instant::now();
                }
                let over = opts.duration.is_some_and(|d| started.elapsed() >= d);
                if over || stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
    watch.abort();
    polls.abort();
    // What was already sent is kept.
    while let Ok(ev) = rx.try_recv() {
        count(&mut summary, &ev);
        writer.push(&ev).context("writing the capture")?;
    }
    let written = writer.finish().context("finishing the capture")?;
    summary.bytes = written.bytes_written;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn count(s: &mut ApiSummary, ev: &Event) {
    let Event::Api(a) = ev else { return };
    match &a.observed {
        ApiObservation::Change(_) => s.changes += 1,
        ApiObservation::Status(_) => s.statuses += 1,
        ApiObservation::Members(_) => s.member_lists += 1,
        ApiObservation::Metrics(_) => s.metrics += 1,
        ApiObservation::Failed { .. } => s.failures += 1,
    }
}

fn event(clock: &Clock, endpoint: &str, observed: ApiObservation) -> Event {
    Event::Api(ApiEvent {
        ts_ns: clock.now_ns(),
        endpoint: cut_text(endpoint),
        observed,
    })
}

fn failed(clock: &Clock, endpoint: &str, what: &str, error: &anyhow::Error) -> Event {
    event(
        clock,
        endpoint,
        ApiObservation::Failed {
            what: what.to_string(),
            error: cut_text(&format!("{error:#}")),
        },
    )
}

/// The whole keyspace, watched from now on with the previous values, opened again
/// (from the revision after the last seen) when it fails, on the next endpoint.
struct Watcher {
    target: Target,
    urls: Vec<String>,
    token: Option<String>,
    clock: Arc<Clock>,
    tx: mpsc::UnboundedSender<Event>,
    /// Where the watch resumes: 0 until it first opens (then "now").
    next_revision: i64,
    /// Told once the watch is first open.
    watching: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Watcher {
    async fn run(mut self) {
        let mut attempt = 0usize;
        loop {
            let url = self.urls[attempt % self.urls.len()].clone();
            let result = self.once(attempt, &url).await;
            if self.tx.is_closed() {
                return;
            }
            if let Err(e) = result {
                let _ = self.tx.send(failed(&self.clock, &url, "watch", &e));
            }
            attempt += 1;
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    async fn once(&mut self, attempt: usize, url: &str) -> Result<()> {
        let conn = Connection::open(&self.target, attempt).await?;
        let (mut send, call) = conn
            .start("/etcdserverpb.Watch/Watch", self.token.as_deref())
            .await?;
        let create = etcdpb::WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(etcdpb::WatchCreateRequest {
                key: vec![0],
                range_end: vec![0],
                start_revision: self.next_revision,
                prev_kv: true,
                ..Default::default()
            })),
        };
        send.send_data(frame(&create.encode_to_vec()), false)?;
        let mut responses = call.responses().await?;
        while let Some(message) = responses.next().await? {
            let response =
                etcdpb::WatchResponse::decode(message.as_ref()).context("a watch response")?;
            if response.created {
                // From now on: a watch opened again after a failure resumes here, so no
                // write between is missed.
                if self.next_revision == 0 {
                    self.next_revision = response.header.as_ref().map_or(0, |h| h.revision + 1);
                }
                if let Some(w) = self.watching.take() {
                    let _ = w.send(());
                }
            }
            if response.canceled {
                let why = if response.compact_revision > 0 {
                    // Compacted past where the watch was: the changes between are gone.
                    self.next_revision = response.compact_revision;
                    format!(
                        "compacted: the changes before revision {} cannot be watched",
                        response.compact_revision
                    )
                } else {
                    response.cancel_reason.clone()
                };
                bail!("the watch was canceled: {why}");
            }
            for e in response.events {
                let Some(kv) = e.kv else { continue };
                self.next_revision = kv.mod_revision + 1;
                let change = KeyChange {
                    revision: kv.mod_revision,
                    delete: e.r#type == 1,
                    key: kv.key.iter().copied().take(MAX_API_TEXT).collect(),
                    value_bytes: u32::try_from(kv.value.len()).unwrap_or(u32::MAX),
                    prev_value_bytes: e
                        .prev_kv
                        .map(|p| u32::try_from(p.value.len()).unwrap_or(u32::MAX)),
                    lease: kv.lease,
                    create_revision: kv.create_revision,
                    version: kv.version,
                };
                let ev = event(&self.clock, url, ApiObservation::Change(change));
                if self.tx.send(ev).is_err() {
                    return Ok(());
                }
            }
        }
        bail!(
            "the watch stream ended ({})",
            crate::decode::grpc::status_code_name(responses.status())
        )
    }
}

/// Each interval: every endpoint's Status and /metrics, and the member list from the
/// first that answers. A connection that fails is opened again at the next poll.
async fn poll(
    target: Target,
    urls: Vec<String>,
    token: Option<String>,
    interval: Duration,
    clock: Arc<Clock>,
    tx: mpsc::UnboundedSender<Event>,
    polled: tokio::sync::oneshot::Sender<()>,
) {
    let mut polled = Some(polled);
    let mut conns: Vec<Option<Connection>> = vec![None; target.endpoints.len()];
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut listed = false;
        for (i, endpoint) in target.endpoints.iter().enumerate() {
            let url = &urls[i];
            if conns[i].is_none() {
                match Connection::open(&target, i).await {
                    Ok(c) => conns[i] = Some(c),
                    Err(e) => {
                        let _ = tx.send(failed(&clock, url, "connect", &e));
                        continue;
                    }
                }
            }
            let Some(conn) = conns[i].clone() else {
                continue;
            };
            let started = Instant::now();
            match tokio::time::timeout(CALL_TIMEOUT, status(&conn, token.as_deref())).await {
                Ok(Ok(mut s)) => {
                    s.took_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    let _ = tx.send(event(&clock, url, ApiObservation::Status(s)));
                }
                Ok(Err(e)) => {
                    conns[i] = None;
                    let _ = tx.send(failed(&clock, url, "status", &e));
                }
                Err(_) => {
                    conns[i] = None;
                    let e = anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}");
                    let _ = tx.send(failed(&clock, url, "status", &e));
                }
            }
            if !listed {
                if let Some(conn) = &conns[i] {
                    match tokio::time::timeout(CALL_TIMEOUT, members(conn, token.as_deref())).await
                    {
                        Ok(Ok(list)) => {
                            listed = true;
                            let _ = tx.send(event(&clock, url, ApiObservation::Members(list)));
                        }
                        Ok(Err(e)) => {
                            let _ = tx.send(failed(&clock, url, "member list", &e));
                        }
                        Err(_) => {
                            let e = anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}");
                            let _ = tx.send(failed(&clock, url, "member list", &e));
                        }
                    }
                }
            }
            match metrics::fetch(&target, endpoint).await {
                Ok(m) => {
                    let _ = tx.send(event(&clock, url, ApiObservation::Metrics(m)));
                }
                Err(e) => {
                    let _ = tx.send(failed(&clock, url, "metrics", &e));
                }
            }
            if tx.is_closed() {
                return;
            }
        }
        if let Some(p) = polled.take() {
            let _ = p.send(());
        }
    }
}

async fn unary<M: Message + Default>(
    conn: &Connection,
    path: &str,
    body: &[u8],
    token: Option<&str>,
) -> Result<M> {
    let reply = conn.unary(path, body, token).await?;
    if reply.status != 0 {
        bail!(
            "{path}: {} ({})",
            crate::decode::grpc::status_code_name(reply.status),
            reply.message
        );
    }
    let body = reply.body.unwrap_or_default();
    M::decode(body.as_ref()).with_context(|| format!("{path}: the reply does not decode"))
}

async fn status(conn: &Connection, token: Option<&str>) -> Result<MemberStatus> {
    let r: etcdpb::StatusResponse =
        unary(conn, "/etcdserverpb.Maintenance/Status", &[], token).await?;
    let header = r.header.unwrap_or_default();
    Ok(MemberStatus {
        cluster_id: header.cluster_id,
        member_id: header.member_id,
        leader: r.leader,
        raft_term: r.raft_term,
        raft_index: r.raft_index,
        raft_applied_index: r.raft_applied_index,
        revision: header.revision,
        db_size: r.db_size,
        db_size_in_use: r.db_size_in_use,
        is_learner: r.is_learner,
        errors: r.errors.iter().take(16).map(|e| cut_text(e)).collect(),
        took_ns: 0,
        version: cut_text(&r.version),
    })
}

async fn members(conn: &Connection, token: Option<&str>) -> Result<MemberList> {
    let r: etcdpb::MemberListResponse =
        unary(conn, "/etcdserverpb.Cluster/MemberList", &[], token).await?;
    let list = |v: &[String]| v.iter().take(16).map(|s| cut_text(s)).collect();
    Ok(MemberList {
        cluster_id: r.header.map_or(0, |h| h.cluster_id),
        members: r
            .members
            .iter()
            .take(MAX_API_MEMBERS)
            .map(|m| ApiMember {
                id: m.id,
                name: cut_text(&m.name),
                peer_urls: list(&m.peer_urls),
                client_urls: list(&m.client_urls),
                is_learner: m.is_learner,
            })
            .collect(),
    })
}
