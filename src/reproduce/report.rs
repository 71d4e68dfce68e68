//! What a reproduction did, per method: calls sent, answered OK, failed, not sent (an id
//! that could not be mapped), and the target's latency against the original's.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Outcome;

/// One method's tally.
#[derive(Debug, Default, Serialize)]
pub struct MethodReport {
    pub method: String,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// Not sent: an id or revision could not be mapped.
    pub unmapped: u64,
    /// Answered OK in the capture but not by the target, or the other way round (calls
    /// whose captured status is unknown are not counted).
    pub status_changed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_p50_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_p99_ns: Option<u64>,
    /// Target latency over the original's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_watch_events: Option<u64>,
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[u64], q: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len()) - 1).copied()
}

fn ratio(new: Option<u64>, old: Option<u64>) -> Option<f64> {
    match (new, old) {
        (Some(n), Some(o)) if o > 0 => Some((n as f64 / o as f64 * 100.0).round() / 100.0),
        _ => None,
    }
}

/// The per-method tallies, in method name order.
pub fn per_method(outcomes: &[Outcome]) -> Vec<MethodReport> {
    let mut by: BTreeMap<&str, (MethodReport, Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for o in outcomes {
        let (r, new, old) = by.entry(&o.method).or_default();
        r.method.clone_from(&o.method);
        if o.sent {
            r.sent += 1;
        }
        if o.unmapped.is_some() {
            r.unmapped += 1;
        } else if o.status == Some(0) && o.error.is_none() {
            r.ok += 1;
            new.extend(o.latency_ns);
            if o.original_status == Some(0) {
                old.extend(o.original_latency_ns);
            }
        } else {
            r.errors += 1;
        }
        if o.sent
            && o.original_status.is_some()
            && (o.status == Some(0)) != (o.original_status == Some(0))
        {
            r.status_changed += 1;
        }
        if let Some(events) = o.watch_events {
            *r.watch_events.get_or_insert(0) += events;
            *r.original_watch_events.get_or_insert(0) += o.original_watch_events;
        }
    }
    by.into_values()
        .map(|(mut r, mut new, mut old)| {
            new.sort_unstable();
            old.sort_unstable();
            r.p50_ns = quantile(&new, 0.5);
            r.p99_ns = quantile(&new, 0.99);
            r.original_p50_ns = quantile(&old, 0.5);
            r.original_p99_ns = quantile(&old, 0.99);
            r.p50_ratio = ratio(r.p50_ns, r.original_p50_ns);
            r.p99_ratio = ratio(r.p99_ns, r.original_p99_ns);
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn tallies_split_ok_errors_and_unmapped() {
        let ok = Outcome {
            method: "Put".into(),
            sent: true,
            status: Some(0),
            latency_ns: Some(200),
            original_latency_ns: Some(100),
            original_status: Some(0),
            ..Outcome::default()
        };
        let failed = Outcome {
            status: Some(9),
            error: Some("failed".into()),
            ..ok.clone()
        };
        let unmapped = Outcome {
            sent: false,
            status: None,
            unmapped: Some("lease".into()),
            ..ok.clone()
        };
        let r = per_method(&[ok, failed, unmapped]);
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!((r.sent, r.ok, r.errors, r.unmapped), (2, 1, 1, 1));
        assert_eq!(r.status_changed, 1);
        assert_eq!(r.p99_ratio, Some(2.0));
    }
}
