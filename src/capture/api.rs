//! What a recorder in API mode (`record --mode api`) saw of etcd where eBPF cannot run
//! (no root, a managed etcd): the changes of a whole-keyspace watch, and each member's
//! Status, the member list and /metrics, polled every second. These stand in the same
//! capture as packets would, so the analyses read either; they say what API mode cannot
//! see (client identities, reads, per-call latency, syscalls).

use bincode::{Decode, Encode};
use serde::Serialize;

/// Longest endpoint, key, member name or error text kept; longer ones are cut.
pub const MAX_API_TEXT: usize = 4096;
/// Most metric samples kept from one /metrics poll.
pub const MAX_METRIC_SAMPLES: usize = 4096;
/// Most members kept from one member list.
pub const MAX_API_MEMBERS: usize = 64;

/// `s` cut to at most [`MAX_API_TEXT`] bytes, at a character boundary.
pub fn cut_text(s: &str) -> String {
    let mut end = s.len().min(MAX_API_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// One observation, at `ts_ns` (CLOCK_MONOTONIC ns of the recording host, like every
/// event's), from `endpoint` (the URL as given to `--endpoints`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct ApiEvent {
    pub ts_ns: u64,
    pub endpoint: String,
    #[serde(flatten)]
    pub observed: ApiObservation,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(tag = "observed", rename_all = "snake_case")]
pub enum ApiObservation {
    /// One change of the whole-keyspace watch (with the previous value): the key and
    /// the sizes, not the values (they may be secrets, and the analyses need sizes).
    Change(KeyChange),
    /// One member's Maintenance/Status reply, and how long it took.
    Status(MemberStatus),
    /// Cluster/MemberList.
    Members(MemberList),
    /// The samples of /metrics that the analyses use (etcd's disk, server, network and
    /// mvcc families, and gRPC's handled counts).
    Metrics(MetricsSample),
    /// A poll or the watch failed: what was asked, and what came back.
    Failed { what: String, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct KeyChange {
    /// The revision of the transaction that made it.
    pub revision: i64,
    pub delete: bool,
    pub key: Vec<u8>,
    pub value_bytes: u32,
    /// The value before; `None` for a key that was not there (or was compacted away).
    pub prev_value_bytes: Option<u32>,
    pub lease: i64,
    pub create_revision: i64,
    pub version: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct MemberStatus {
    pub cluster_id: u64,
    pub member_id: u64,
    /// The member it takes for leader (0: none).
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    /// The keyspace's revision.
    pub revision: i64,
    pub db_size: i64,
    pub db_size_in_use: i64,
    pub is_learner: bool,
    /// Alarms and errors the member reports (e.g. "NOSPACE").
    pub errors: Vec<String>,
    /// How long the Status call took.
    pub took_ns: u64,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct MemberList {
    pub cluster_id: u64,
    pub members: Vec<ApiMember>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct ApiMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct MetricsSample {
    pub samples: Vec<Metric>,
    /// Samples past [`MAX_METRIC_SAMPLES`], or of families not kept, left out.
    pub left_out: u32,
}

/// One line of Prometheus text: name, labels and value. The value is kept as its f64
/// bits, so that events compare exactly.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Metric {
    pub name: String,
    pub labels: Vec<(String, String)>,
    #[serde(serialize_with = "as_f64")]
    pub value_bits: u64,
}

impl Metric {
    pub fn new(name: &str, labels: &[(&str, &str)], value: f64) -> Metric {
        Metric {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value_bits: value.to_bits(),
        }
    }

    pub fn value(&self) -> f64 {
        f64::from_bits(self.value_bits)
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn as_f64<S: serde::Serializer>(bits: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f64::from_bits(*bits))
}

/// The metric families kept from /metrics: what the analyses read, and small.
pub fn metric_kept(name: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "etcd_disk_",
        "etcd_server_",
        "etcd_network_",
        "etcd_mvcc_db_",
        "grpc_server_handled_total",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// API events of every observation, for the tests of the format.
#[cfg(test)]
pub(crate) fn every_observation(ts_ns: u64) -> Vec<ApiEvent> {
    let event = |i: u64, endpoint: &str, observed| ApiEvent {
        ts_ns: ts_ns + i,
        endpoint: endpoint.into(),
        observed,
    };
    vec![
        event(
            0,
            "https://10.0.0.1:2379",
            ApiObservation::Change(KeyChange {
                revision: 41,
                delete: false,
                key: vec![b'/', 0xff, 0xfe, 0, b'k'],
                value_bytes: 1 << 20,
                prev_value_bytes: None,
                lease: 7,
                create_revision: 41,
                version: 1,
            }),
        ),
        event(
            1,
            "https://10.0.0.1:2379",
            ApiObservation::Change(KeyChange {
                revision: i64::MAX,
                delete: true,
                key: b"/registry/pods/a".to_vec(),
                value_bytes: 0,
                prev_value_bytes: Some(u32::MAX),
                lease: 0,
                create_revision: -1,
                version: i64::MIN,
            }),
        ),
        event(
            2,
            "http://b:2379",
            ApiObservation::Status(MemberStatus {
                cluster_id: u64::MAX,
                member_id: 2,
                leader: 0,
                raft_term: 9,
                raft_index: 1 << 40,
                raft_applied_index: (1 << 40) - 1,
                revision: 41,
                db_size: 1 << 31,
                db_size_in_use: 1 << 30,
                is_learner: true,
                errors: vec!["NOSPACE".into(), "é, not ascii".into(), String::new()],
                took_ns: 1_500_000,
                version: "3.5.17".into(),
            }),
        ),
        event(
            3,
            "http://b:2379",
            ApiObservation::Members(MemberList {
                cluster_id: 5,
                members: vec![
                    ApiMember {
                        id: 1,
                        name: "etcd-0".into(),
                        peer_urls: vec!["https://10.0.0.1:2380".into()],
                        client_urls: vec!["https://10.0.0.1:2379".into(), "http://x".into()],
                        is_learner: false,
                    },
                    ApiMember {
                        id: u64::MAX,
                        is_learner: true,
                        ..ApiMember::default()
                    },
                ],
            }),
        ),
        event(
            4,
            "https://10.0.0.1:2379",
            ApiObservation::Metrics(MetricsSample {
                samples: vec![
                    Metric::new(
                        "etcd_disk_wal_fsync_duration_seconds_bucket",
                        &[("le", "0.001")],
                        12.0,
                    ),
                    Metric::new("etcd_server_has_leader", &[], 1.0),
                    Metric::new(
                        "grpc_server_handled_total",
                        &[("grpc_method", "Range"), ("grpc_code", "OK")],
                        f64::INFINITY,
                    ),
                    Metric::new("etcd_mvcc_db_total_size_in_bytes", &[], f64::NAN),
                    Metric::new("etcd_network_peer_round_trip_time_seconds_sum", &[], -0.0),
                ],
                left_out: 3,
            }),
        ),
        event(
            5,
            "",
            ApiObservation::Failed {
                what: "watch".into(),
                error: "rpc error: code = Unavailable".into(),
            },
        ),
        event(
            6,
            "http://b:2379",
            ApiObservation::Metrics(MetricsSample::default()),
        ),
    ]
}
