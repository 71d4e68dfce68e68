//! The rules file: which rules run, how severe their findings are, and their thresholds.
//! The built-in defaults are a commented YAML file embedded in the binary
//! (`detect --print-default-rules`); a user's file is laid over it rule by rule, field by
//! field, so it needs to say only what it changes. Unknown rules and fields are errors, so
//! a typo cannot silently switch a rule back to its default.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml_ng::{Mapping, Value};

use super::net::{parse_host, Cidr};

/// The built-in rules, with a comment on each.
pub const DEFAULT_RULES_YAML: &str = include_str!("default-rules.yaml");

/// Counting rules keep at most this many timestamps per client: a bound on memory.
pub const MAX_THRESHOLD: u64 = 100_000;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    /// What must not happen at all (raft's safety broken).
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("the rules file must be a mapping (evidence_limit, peer_port, rules)")]
    NotAMapping,
    #[error("unknown rule {0:?}; `etcd-trace detect --print-default-rules` lists them")]
    UnknownRule(String),
    #[error("rule {rule}: {problem}")]
    Invalid { rule: &'static str, problem: String },
}

fn duration_ns<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    let dur = humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("duration {text:?}: {e}")))?;
    u64::try_from(dur.as_nanos())
        .map_err(|_| serde::de::Error::custom(format!("duration {text:?} is too long")))
}

fn byte_prefixes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
    Ok(Vec::<String>::deserialize(d)?
        .into_iter()
        .map(String::into_bytes)
        .collect())
}

fn ip_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            parse_host(s).ok_or_else(|| {
                serde::de::Error::custom(format!("{s:?} is not an IP address (or a URL with one)"))
            })
        })
        .collect()
}

fn cidr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| s.parse::<Cidr>().map_err(serde::de::Error::custom))
        .collect()
}

/// A rule with no parameters of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainRule {
    pub enabled: bool,
    pub severity: Severity,
}

/// Fires when `threshold` matching calls from one client fall within `window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    pub threshold: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "byte_prefixes")]
    pub prefixes: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LargeResponseRule {
    pub enabled: bool,
    pub severity: Severity,
    pub max_keys: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    pub ratio: f64,
    pub min_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "ip_list")]
    pub allowed_clients: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistinctRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    pub distinct_keys: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaginationRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    pub min_pages: u64,
    #[serde(deserialize_with = "byte_prefixes")]
    pub prefixes: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeniedRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    pub threshold: u64,
    pub statuses: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "ip_list")]
    pub members: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworksRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "cidr_list")]
    pub networks: Vec<Cidr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnRule {
    pub enabled: bool,
    pub severity: Severity,
    pub max_ops: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsyncRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    pub share: f64,
    pub min_writes: u64,
    pub min_clients: u64,
}

/// Raft leadership lost after a WAL sync at least this long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskStallRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub min_fsync: u64,
}

/// A follower this many entries behind, or this slow to acknowledge appends (p99).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaggingRule {
    pub enabled: bool,
    pub severity: Severity,
    pub max_lag_entries: u64,
    #[serde(deserialize_with = "duration_ns")]
    pub ack_p99: u64,
}

/// WAL fsyncs per member and window: p99 at or above `p99` over `min_syncs_p99` syncs at
/// least, or p50 at or above `p50` over `min_syncs` at least.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalFsyncRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    #[serde(deserialize_with = "duration_ns")]
    pub p99: u64,
    pub min_syncs_p99: u64,
    #[serde(deserialize_with = "duration_ns")]
    pub p50: u64,
    pub min_syncs: u64,
}

/// A size at or past `share` of its limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRule {
    pub enabled: bool,
    pub severity: Severity,
    pub share: f64,
}

/// Any one occurrence at least `min` long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinDurationRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub min: u64,
}

/// `threshold` occurrences at least `min` long within `window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowCountRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub min: u64,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    pub threshold: u64,
}

/// `threshold` applies within `window` that waited `min_wait` or more behind a backend
/// commit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendWaitRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub min_wait: u64,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    pub threshold: u64,
}

/// A rule that looks for what follows within `window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
}

/// Every rule, by its id in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleSet {
    pub bulk_range_unbounded: PrefixRule,
    pub bulk_list_then_watch: WindowRule,
    pub bulk_large_response: LargeResponseRule,
    pub bulk_client_volume: VolumeRule,
    pub bulk_snapshot: AllowRule,
    pub bulk_watch_keyspace: AllowRule,
    pub enum_single_key_gets: DistinctRule,
    pub enum_sensitive_pagination: PaginationRule,
    pub auth_failed_login: CountRule,
    pub auth_denied: DeniedRule,
    pub auth_disable: PlainRule,
    pub auth_user_role_change: PlainRule,
    pub auth_token_reuse: PlainRule,
    pub peer_unknown_address: MembersRule,
    pub connection_reset: CountRule,
    pub client_garbage: CountRule,
    pub client_outside_networks: NetworksRule,
    pub perf_unbounded_range: CountRule,
    pub perf_count_only_scans: CountRule,
    pub perf_huge_txn: TxnRule,
    pub watch_storm: CountRule,
    pub lease_storm: CountRule,
    pub maintenance_defragment: PlainRule,
    pub maintenance_compact: CountRule,
    pub fsync_dominance: FsyncRule,
    pub disk_wal_fsync_slow: WalFsyncRule,
    pub disk_fsync_stall: MinDurationRule,
    pub slow_request: SlowCountRule,
    pub apply_behind_backend_commit: BackendWaitRule,
    pub raft_two_leaders: PlainRule,
    pub raft_stale_leader: PlainRule,
    pub raft_leader_change: PlainRule,
    pub raft_frequent_elections: CountRule,
    pub raft_disk_stall: DiskStallRule,
    pub raft_lagging_follower: LaggingRule,
    pub raft_repeated_snapshots: CountRule,
    pub raft_peer_refused: PlainRule,
    pub cluster_alarm: PlainRule,
    pub member_unreachable: CountRule,
    pub db_size_quota: QuotaRule,
    pub baseline_new_client: BaselineClientRule,
    pub baseline_read_rate: BaselineReadRule,
    pub baseline_new_prefix: BaselinePrefixRule,
    pub baseline_method_mix: BaselineMixRule,
}

/// The whole rules configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Evidence lines kept per finding.
    pub evidence_limit: usize,
    /// etcd's peer port.
    pub peer_port: u16,
    /// The members' election timeout.
    #[serde(deserialize_with = "duration_ns")]
    pub election_timeout: u64,
    /// Clients whose findings are rated low (addresses or networks).
    #[serde(deserialize_with = "cidr_list")]
    pub trusted_clients: Vec<Cidr>,
    pub rules: RuleSet,
}

impl Rules {
    /// The built-in rules.
    pub fn builtin() -> Rules {
        // The embedded file is checked by a unit test; failing here is a build defect.
        Rules::from_yaml(None).expect("the built-in rules parse")
    }

    /// The built-in rules with `overlay` (a rules file's text) laid over them.
    pub fn from_yaml(overlay: Option<&str>) -> Result<Rules, RulesError> {
        let mut base: Value = serde_yaml_ng::from_str(DEFAULT_RULES_YAML)?;
        if let Some(text) = overlay {
            let user: Value = serde_yaml_ng::from_str(text)?;
            merge(&mut base, user)?;
        }
        let rules: Rules = serde_yaml_ng::from_value(base)?;
        rules.validate()?;
        Ok(rules)
    }

    fn validate(&self) -> Result<(), RulesError> {
        let r = &self.rules;
        let bad = |rule: &'static str, problem: &str| {
            Err(RulesError::Invalid {
                rule,
                problem: problem.to_string(),
            })
        };
        let counts: [(&'static str, &CountRule); 11] = [
            ("member-unreachable", &r.member_unreachable),
            ("client-garbage", &r.client_garbage),
            ("auth-failed-login", &r.auth_failed_login),
            ("connection-reset", &r.connection_reset),
            ("perf-unbounded-range", &r.perf_unbounded_range),
            ("perf-count-only-scans", &r.perf_count_only_scans),
            ("watch-storm", &r.watch_storm),
            ("lease-storm", &r.lease_storm),
            ("maintenance-compact", &r.maintenance_compact),
            ("raft-frequent-elections", &r.raft_frequent_elections),
            ("raft-repeated-snapshots", &r.raft_repeated_snapshots),
        ];
        for (id, c) in counts {
            check_count(id, c.window, c.threshold)?;
        }
        check_count("auth-denied", r.auth_denied.window, r.auth_denied.threshold)?;
        check_count(
            "enum-single-key-gets",
            r.enum_single_key_gets.window,
            r.enum_single_key_gets.distinct_keys,
        )?;
        check_count(
            "enum-sensitive-pagination",
            r.enum_sensitive_pagination.window,
            r.enum_sensitive_pagination.min_pages,
        )?;
        if r.bulk_client_volume.window == 0 || r.bulk_client_volume.ratio.is_nan() {
            return bad(
                "bulk-client-volume",
                "window must be > 0 and ratio a number",
            );
        }
        let f = &r.fsync_dominance;
        if f.window == 0 || !(f.share > 0.0 && f.share <= 1.0) {
            return bad("fsync-dominance", "window must be > 0 and share in (0, 1]");
        }
        check_count(
            "slow-request",
            r.slow_request.window,
            r.slow_request.threshold,
        )?;
        let b = &r.apply_behind_backend_commit;
        check_count("apply-behind-backend-commit", b.window, b.threshold)?;
        if !(r.db_size_quota.share > 0.0 && r.db_size_quota.share <= 1.0) {
            return bad("db-size-quota", "share must be in (0, 1]");
        }
        if r.disk_wal_fsync_slow.window == 0 {
            return bad("disk-wal-fsync-slow", "window must be > 0");
        }
        if self.election_timeout == 0 {
            return bad("election_timeout", "must be > 0");
        }
        if self.evidence_limit > 1000 {
            return bad("evidence_limit", "at most 1000");
        }
        validate_baseline(r)?;
        Ok(())
    }
}

fn check_count(rule: &'static str, window: u64, threshold: u64) -> Result<(), RulesError> {
    if window == 0 || threshold == 0 || threshold > MAX_THRESHOLD {
        return Err(RulesError::Invalid {
            rule,
            problem: format!("window must be > 0 and the threshold between 1 and {MAX_THRESHOLD}"),
        });
    }
    Ok(())
}

/// Lays `user` over `base`: top-level values replace, each rule's fields replace the
/// default rule's fields of the same name.
fn merge(base: &mut Value, user: Value) -> Result<(), RulesError> {
    let user = match user {
        Value::Null => return Ok(()),
        Value::Mapping(m) => m,
        _ => return Err(RulesError::NotAMapping),
    };
    let base = base.as_mapping_mut().ok_or(RulesError::NotAMapping)?;
    for (key, value) in user {
        if key.as_str() != Some("rules") {
            base.insert(key, value);
            continue;
        }
        let user_rules = match value {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => return Err(RulesError::NotAMapping),
        };
        let base_rules = base
            .get_mut("rules")
            .and_then(Value::as_mapping_mut)
            .ok_or(RulesError::NotAMapping)?;
        for (name, fields) in user_rules {
            let label = name.as_str().unwrap_or("?").to_string();
            let Some(target) = base_rules.get_mut(&name).and_then(Value::as_mapping_mut) else {
                return Err(RulesError::UnknownRule(label));
            };
            match fields {
                Value::Mapping(m) => {
                    for (k, v) in m {
                        target.insert(k, v);
                    }
                }
                Value::Null => {}
                _ => return Err(RulesError::UnknownRule(format!("{label} (not a mapping)"))),
            }
        }
    }
    Ok(())
}

// ---- learned baselines (`detect --baseline`) -------------------------------------------

/// A client address the baseline never saw, once it made `min_calls` calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineClientRule {
    pub enabled: bool,
    pub severity: Severity,
    pub min_calls: u64,
}

/// A client whose reads within a window (Range keys or response bytes per second) are
/// at least `ratio` times its normal rate, above its busiest 10 s in the baseline, and
/// at least `min_keys` keys or `min_bytes` bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineReadRule {
    pub enabled: bool,
    pub severity: Severity,
    #[serde(deserialize_with = "duration_ns")]
    pub window: u64,
    pub ratio: f64,
    pub min_keys: u64,
    pub min_bytes: u64,
}

/// Reads (Range, or a watch created) of a key prefix no client read in the baseline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselinePrefixRule {
    pub enabled: bool,
    pub severity: Severity,
    /// The depth key prefixes are cut at; the baseline must have been learned with it.
    pub prefix_depth: usize,
    pub min_reads: u64,
}

/// A client's method mix changed: a method it never used, or a method's share of its
/// calls moved by at least `shift_points` percentage points.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineMixRule {
    pub enabled: bool,
    pub severity: Severity,
    pub new_method_calls: u64,
    pub shift_points: f64,
    pub min_calls: u64,
}

fn validate_baseline(r: &RuleSet) -> Result<(), RulesError> {
    let bad = |rule: &'static str, problem: &str| {
        Err(RulesError::Invalid {
            rule,
            problem: problem.to_string(),
        })
    };
    let rate = &r.baseline_read_rate;
    if rate.window == 0 || !(rate.ratio.is_finite() && rate.ratio >= 1.0) {
        return bad(
            "baseline-read-rate",
            "window must be > 0 and ratio a number of at least 1",
        );
    }
    let depth = r.baseline_new_prefix.prefix_depth;
    if !(1..=crate::analyze::baseline::MAX_PREFIX_DEPTH).contains(&depth) {
        return bad(
            "baseline-new-prefix",
            "prefix_depth must be between 1 and 64",
        );
    }
    let mix = &r.baseline_method_mix;
    if mix.new_method_calls == 0 || !(mix.shift_points > 0.0 && mix.shift_points <= 100.0) {
        return bad(
            "baseline-method-mix",
            "new_method_calls must be > 0 and shift_points in (0, 100]",
        );
    }
    Ok(())
}
