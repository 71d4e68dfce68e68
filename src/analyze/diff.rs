//! Comparing two capture profiles, and the `--fail-on` checks that make `diff` a CI
//! gate: `p99(/etcdserverpb.KV/Put) > +20%`, `errors(*) > 0`, `new-clients > 0`, ...
//! Captures of different length are compared by rates, not totals.

use std::fmt;

use thiserror::Error;

use crate::analyze::detect::Severity;
use crate::analyze::histogram::Histogram;
use crate::analyze::pattern::method_matches;
use crate::analyze::phases::PHASES;
use crate::analyze::profile::Profile;

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Methods whose path, `Service/Method` or short name matches the glob (`*`: all).
    Methods(String),
    /// A phase of linked writes, or every WAL fsync (`wal-fsync`).
    Phase(&'static str),
    WalFsync,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// p50, p90, p99 or max latency (ns).
    Latency {
        quantile: f64,
        target: Target,
    },
    /// Calls (a count; relative thresholds compare rates).
    Count(Target),
    /// Calls per second.
    Rate(Target),
    /// Calls with a non-zero grpc-status (a count; relative thresholds compare rates).
    Errors(Target),
    /// Mean request / response message bytes per call.
    RequestSize(Target),
    ResponseSize(Target),
    NewClients,
    GoneClients,
    NewMethods,
    GoneMethods,
    NewPrefixes,
    GonePrefixes,
    /// Findings of `detect` at this severity or above whose rule and client the base
    /// capture did not have.
    NewFindings(Severity),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Compare the new capture's value with this.
    Absolute(f64),
    /// Compare the change from base to new, in percent (+20 = 20% more).
    Relative(f64),
}

/// One `--fail-on` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub text: String,
    pub metric: Metric,
    pub op: Op,
    pub threshold: Threshold,
}

#[derive(Debug, Error, PartialEq)]
#[error("--fail-on {expr:?}: {why}. Forms: `p99(METHOD) > +20%`, `p50(fsync) > 10ms`, `errors(*) > 0`, `rate(Put) < -50%`, `req-size(Put) > +100%`, `new-clients > 0` (also gone-clients, new-methods, gone-methods, new-prefixes, gone-prefixes), `findings(high) > 0`; METHOD is a full path, Service/Method, a short name or a glob; phases: append, fsync, reply, wal-fsync")]
pub struct CheckError {
    pub expr: String,
    pub why: String,
}

impl Check {
    pub fn parse(expr: &str) -> Result<Check, CheckError> {
        let err = |why: &str| CheckError {
            expr: expr.to_string(),
            why: why.to_string(),
        };
        let ops = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)];
        let (lhs, op, rhs) = ops
            .iter()
            .find_map(|(sym, op)| expr.split_once(sym).map(|(l, r)| (l.trim(), *op, r.trim())))
            .ok_or_else(|| err("no comparison (>, >=, <, <=)"))?;
        let metric = parse_metric(lhs).map_err(|w| err(&w))?;
        let threshold = parse_threshold(rhs).map_err(|w| err(&w))?;
        Ok(Check {
            text: expr.trim().to_string(),
            metric,
            op,
            threshold,
        })
    }
}

fn parse_target(arg: &str, allow_phase: bool) -> Result<Target, String> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err("empty argument: give a method, `*`, or a phase".into());
    }
    if allow_phase {
        if arg == "wal-fsync" {
            return Ok(Target::WalFsync);
        }
        if let Some((_, name)) = PHASES.iter().find(|(short, _)| *short == arg) {
            return Ok(Target::Phase(name));
        }
    }
    Ok(Target::Methods(arg.to_string()))
}

fn parse_metric(lhs: &str) -> Result<Metric, String> {
    let simple = match lhs {
        "new-clients" => Some(Metric::NewClients),
        "gone-clients" => Some(Metric::GoneClients),
        "new-methods" => Some(Metric::NewMethods),
        "gone-methods" => Some(Metric::GoneMethods),
        "new-prefixes" => Some(Metric::NewPrefixes),
        "gone-prefixes" => Some(Metric::GonePrefixes),
        _ => None,
    };
    if let Some(m) = simple {
        return Ok(m);
    }
    let (func, arg) = lhs
        .strip_suffix(')')
        .and_then(|s| s.split_once('('))
        .ok_or_else(|| format!("unknown measure {lhs:?}"))?;
    let quantile = match func.trim() {
        "p50" => Some(0.5),
        "p90" => Some(0.9),
        "p99" => Some(0.99),
        "max" => Some(1.0),
        _ => None,
    };
    if let Some(q) = quantile {
        return Ok(Metric::Latency {
            quantile: q,
            target: parse_target(arg, true)?,
        });
    }
    if func.trim() == "findings" {
        let sev = match arg.trim() {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            other => {
                return Err(format!(
                    "findings({other}): give low, medium, high or critical"
                ))
            }
        };
        return Ok(Metric::NewFindings(sev));
    }
    let target = parse_target(arg, false)?;
    Ok(match func.trim() {
        "count" => Metric::Count(target),
        "rate" => Metric::Rate(target),
        "errors" => Metric::Errors(target),
        "req-size" => Metric::RequestSize(target),
        "resp-size" => Metric::ResponseSize(target),
        other => return Err(format!("unknown function {other:?}")),
    })
}

fn parse_threshold(rhs: &str) -> Result<Threshold, String> {
    if let Some(pct) = rhs.strip_suffix('%') {
        let v: f64 = pct
            .trim()
            .parse()
            .map_err(|_| format!("{rhs:?} is not a percentage"))?;
        return Ok(Threshold::Relative(v));
    }
    if let Ok(v) = rhs.parse::<f64>() {
        return Ok(Threshold::Absolute(v));
    }
    humantime::parse_duration(rhs)
        .map(|d| Threshold::Absolute(d.as_nanos() as f64))
        .map_err(|_| format!("{rhs:?} is not a number, a duration (10ms) or a change (+20%)"))
}

/// The value of a metric in one profile (rates where the comparison is relative).
fn value(p: &Profile, metric: &Metric, relative: bool) -> Option<f64> {
    fn methods<'a>(
        p: &'a Profile,
        pat: &'a str,
    ) -> impl Iterator<Item = &'a crate::analyze::profile::MethodStats> + 'a {
        p.methods
            .iter()
            .filter(move |(path, _)| method_matches(pat, path))
            .map(|(_, m)| m)
    }
    let per_time = |n: u64| {
        if relative {
            n as f64 / p.duration_s()
        } else {
            n as f64
        }
    };
    match metric {
        Metric::Latency { quantile, target } => {
            let h = match target {
                Target::Methods(pat) => {
                    let mut h = Histogram::new();
                    for m in methods(p, pat) {
                        h.merge(&m.latency);
                    }
                    h
                }
                Target::Phase(name) => p.phases.get(name).cloned().unwrap_or_default(),
                Target::WalFsync => p.wal_fsync.clone(),
            };
            h.quantile(*quantile).map(|v| v as f64)
        }
        Metric::Count(Target::Methods(pat)) => {
            Some(per_time(methods(p, pat).map(|m| m.calls).sum()))
        }
        Metric::Rate(Target::Methods(pat)) => {
            Some(methods(p, pat).map(|m| m.calls).sum::<u64>() as f64 / p.duration_s())
        }
        Metric::Errors(Target::Methods(pat)) => {
            Some(per_time(methods(p, pat).map(|m| m.errors()).sum()))
        }
        Metric::RequestSize(Target::Methods(pat)) | Metric::ResponseSize(Target::Methods(pat)) => {
            let (calls, bytes) = methods(p, pat).fold((0u64, 0u64), |(c, b), m| {
                let bytes = if matches!(metric, Metric::RequestSize(_)) {
                    m.request_bytes
                } else {
                    m.response_bytes
                };
                (c + m.calls, b + bytes)
            });
            (calls > 0).then(|| bytes as f64 / calls as f64)
        }
        _ => None,
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    pub check: String,
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// The change in percent, for relative checks.
    pub change_pct: Option<f64>,
    pub holds: bool,
    /// What the values count: `ns`, `calls`, `calls/s`, `bytes`, `items`.
    pub unit: &'static str,
    /// Why a check could not be evaluated (no such method in either capture, ...).
    pub note: Option<String>,
}

fn set_change(base: &Profile, new: &Profile, metric: &Metric) -> (f64, f64) {
    let count = |a: usize, b: usize| (a as f64, b as f64);
    match metric {
        Metric::NewClients => count(0, new.clients().difference(&base.clients()).count()),
        Metric::GoneClients => count(0, base.clients().difference(&new.clients()).count()),
        Metric::NewMethods => count(
            0,
            new.methods
                .keys()
                .filter(|m| !base.methods.contains_key(*m))
                .count(),
        ),
        Metric::GoneMethods => count(
            0,
            base.methods
                .keys()
                .filter(|m| !new.methods.contains_key(*m))
                .count(),
        ),
        Metric::NewPrefixes => count(
            0,
            new.prefixes
                .keys()
                .filter(|m| !base.prefixes.contains_key(*m))
                .count(),
        ),
        Metric::GonePrefixes => count(
            0,
            base.prefixes
                .keys()
                .filter(|m| !new.prefixes.contains_key(*m))
                .count(),
        ),
        Metric::NewFindings(floor) => count(
            0,
            new.findings
                .iter()
                .filter(|(k, sev)| **sev >= *floor && !base.findings.contains_key(*k))
                .count(),
        ),
        _ => (0.0, 0.0),
    }
}

impl Metric {
    fn unit(&self, relative: bool) -> &'static str {
        match self {
            Metric::Latency { .. } => "ns",
            Metric::Count(_) | Metric::Errors(_) if relative => "calls/s",
            Metric::Count(_) | Metric::Errors(_) => "calls",
            Metric::Rate(_) => "calls/s",
            Metric::RequestSize(_) | Metric::ResponseSize(_) => "bytes",
            _ => "items",
        }
    }
}

/// A gate that cannot judge must not pass: a reproduction that sent no Put should not
/// pass `p99(Put) > +20%`.
const CANNOT_JUDGE: &str = "cannot be judged, so it fails the gate";

pub fn evaluate(check: &Check, base: &Profile, new: &Profile) -> CheckResult {
    let relative = matches!(check.threshold, Threshold::Relative(_));
    let unit = check.metric.unit(relative);
    let cmp = |v: f64, t: f64| match check.op {
        Op::Gt => v > t,
        Op::Ge => v >= t,
        Op::Lt => v < t,
        Op::Le => v <= t,
    };
    let is_set = matches!(
        check.metric,
        Metric::NewClients
            | Metric::GoneClients
            | Metric::NewMethods
            | Metric::GoneMethods
            | Metric::NewPrefixes
            | Metric::GonePrefixes
            | Metric::NewFindings(_)
    );
    if is_set {
        let (b, n) = set_change(base, new, &check.metric);
        let holds = match check.threshold {
            Threshold::Absolute(t) => cmp(n, t),
            Threshold::Relative(_) => false,
        };
        return CheckResult {
            check: check.text.clone(),
            base: Some(b),
            new: Some(n),
            change_pct: None,
            holds,
            unit,
            note: matches!(check.threshold, Threshold::Relative(_))
                .then(|| "a count of new or gone items takes an absolute threshold".into()),
        };
    }
    if let Metric::Latency {
        target: Target::Methods(_),
        ..
    } = &check.metric
    {
        if base.api_mode || new.api_mode {
            return CheckResult {
                check: check.text.clone(),
                base: None,
                new: None,
                change_pct: None,
                holds: true,
                unit,
                note: Some(format!(
                    "an API-mode capture has no per-call latency; compare rate(METHOD), \
                     errors(METHOD) or p99(wal-fsync) instead ({CANNOT_JUDGE})"
                )),
            };
        }
    }
    let b = value(base, &check.metric, relative);
    let n = value(new, &check.metric, relative);
    match check.threshold {
        Threshold::Absolute(t) => CheckResult {
            check: check.text.clone(),
            base: b,
            new: n,
            change_pct: None,
            holds: n.is_none_or(|v| cmp(v, t)),
            unit,
            note: n
                .is_none()
                .then(|| format!("no matching calls in the new capture: {CANNOT_JUDGE}")),
        },
        Threshold::Relative(pct) => {
            let change = match (b, n) {
                (Some(b), Some(n)) if b > 0.0 => Some((n - b) / b * 100.0),
                (Some(b), Some(n)) if b == 0.0 && n == 0.0 => Some(0.0),
                (Some(_), Some(_)) | (None, Some(_)) => Some(f64::INFINITY),
                (Some(_), None) => Some(-100.0),
                (None, None) => None,
            };
            CheckResult {
                check: check.text.clone(),
                base: b,
                new: n,
                change_pct: change.filter(|c| c.is_finite()),
                holds: n.is_none() || change.is_some_and(|c| cmp(c, pct)),
                unit,
                note: match (b, n) {
                    (None, None) => Some(format!(
                        "no matching calls in either capture: {CANNOT_JUDGE}"
                    )),
                    (None, Some(_)) => Some("new in this capture".into()),
                    (Some(_), None) => Some(format!("gone from this capture: {CANNOT_JUDGE}")),
                    _ => None,
                },
            }
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::profile::MethodStats;

    fn profile(put_calls: u64, put_latency: u64, secs: u64) -> Profile {
        let mut p = Profile {
            start_ns: 0,
            end_ns: secs * 1_000_000_000,
            ..Profile::default()
        };
        let mut m = MethodStats::default();
        for _ in 0..put_calls {
            m.calls += 1;
            m.latency.record(put_latency);
            *m.statuses.entry(0).or_default() += 1;
            m.request_bytes += 20;
        }
        p.methods.insert("/etcdserverpb.KV/Put".into(), m);
        p
    }

    #[test]
    fn parses_the_documented_forms() {
        let c = Check::parse("p99(/etcdserverpb.KV/Put) > +20%").unwrap();
        assert_eq!(c.op, Op::Gt);
        assert_eq!(c.threshold, Threshold::Relative(20.0));
        assert!(matches!(c.metric, Metric::Latency { quantile, .. } if quantile == 0.99));
        assert_eq!(
            Check::parse("errors(*) > 0").unwrap().threshold,
            Threshold::Absolute(0.0)
        );
        assert_eq!(
            Check::parse("new-clients > 0").unwrap().metric,
            Metric::NewClients
        );
        assert_eq!(
            Check::parse("p50(fsync) >= 10ms").unwrap().threshold,
            Threshold::Absolute(10_000_000.0)
        );
        assert!(Check::parse("p99(Put) ~ 3").is_err());
        assert!(Check::parse("median(Put) > 3").is_err());
        assert!(Check::parse("p99(Put) > fast").is_err());
    }

    #[test]
    fn relative_checks_compare_rates_across_lengths() {
        // Same rate (100/s) over 10 s and 20 s: counts differ, rates do not.
        let base = profile(1000, 1_000_000, 10);
        let new = profile(2000, 1_300_000, 20);
        let r = evaluate(&Check::parse("count(Put) > +10%").unwrap(), &base, &new);
        assert!(!r.holds, "{r:?}");
        let r = evaluate(&Check::parse("p99(KV/Put) > +20%").unwrap(), &base, &new);
        assert!(r.holds, "{r:?}");
        let r = evaluate(&Check::parse("p99(*) > +50%").unwrap(), &base, &new);
        assert!(!r.holds, "{r:?}");
        let r = evaluate(&Check::parse("new-methods > 0").unwrap(), &base, &new);
        assert!(!r.holds);
    }

    /// A check the new capture gives no value for fails the gate, with why.
    #[test]
    fn a_check_that_cannot_be_judged_fails() {
        let base = profile(1000, 1_000_000, 10);
        let none = profile(0, 0, 10);
        for check in ["p99(Put) > +20%", "p99(Put) > 10ms", "req-size(Put) > +50%"] {
            let r = evaluate(&Check::parse(check).unwrap(), &base, &none);
            assert!(r.holds, "{check}: {r:?}");
            assert!(r.note.unwrap().contains("fails the gate"), "{check}");
            let r = evaluate(&Check::parse(check).unwrap(), &none, &none);
            assert!(r.holds, "{check}: {r:?}");
        }
        // A count is 0, not unknown: judged as usual.
        let r = evaluate(&Check::parse("count(Put) < -50%").unwrap(), &base, &none);
        assert!(r.holds && r.note.is_none(), "{r:?}");
        let r = evaluate(&Check::parse("errors(Put) > 0").unwrap(), &base, &none);
        assert!(!r.holds, "{r:?}");
    }
}
