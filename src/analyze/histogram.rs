//! Latency distributions in bounded memory: a log-linear histogram (like HDR histograms,
//! 1/32 relative precision) from 1 ns to ~18 minutes, so p50/p90/p99 of millions of
//! operations cost at most 10 KiB each. Buckets are allocated up to the largest value
//! recorded: a histogram of sizes in bytes, or of an empty run, stays small.

use serde::Serialize;

/// Sub-buckets per power of two: values are kept to within 1/32 (~3%).
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered (2^40 ns ≈ 18 minutes); larger values land in the last bucket.
const POWERS: usize = 40;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let power = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = power - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    let idx = ((power - SUB_BITS + 1) as usize) * SUB + sub;
    idx.min(POWERS * SUB - 1)
}

/// The smallest value that maps to bucket `idx` (its lower bound).
fn lower_bound(idx: usize) -> u64 {
    if idx < SUB {
        return idx as u64;
    }
    let group = idx / SUB; // >= 1
    let sub = (idx % SUB) as u64;
    let shift = (group - 1) as u32;
    ((SUB as u64) | sub) << shift
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: Vec::new(),
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        let idx = bucket_of(v);
        if idx >= self.counts.len() {
            self.counts.resize(idx + 1, 0);
        }
        self.counts[idx] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// `n` values of `v` at once (a bucket of another histogram).
    pub fn record_n(&mut self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        let idx = bucket_of(v);
        if idx >= self.counts.len() {
            self.counts.resize(idx + 1, 0);
        }
        self.counts[idx] += n;
        self.total += n;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v) * u128::from(n);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    pub fn mean(&self) -> Option<u64> {
        (self.total > 0).then(|| (self.sum / u128::from(self.total)) as u64)
    }

    /// The value at quantile q (0..=1): the lower bound of the bucket holding it, but
    /// never below the smallest or above the largest value recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (idx, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(lower_bound(idx).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.total,
            p50_ns: self.quantile(0.50),
            p90_ns: self.quantile(0.90),
            p99_ns: self.quantile(0.99),
            max_ns: self.max(),
            mean_ns: self.mean(),
        }
    }

    /// Counts per power-of-two range, for a terminal bar chart: (low, high, count).
    pub fn octaves(&self) -> Vec<(u64, u64, u64)> {
        let mut out: Vec<(u64, u64, u64)> = Vec::new();
        for (idx, c) in self.counts.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            let low = lower_bound(idx);
            let octave_low = if low == 0 {
                0
            } else {
                1u64 << (63 - low.leading_zeros())
            };
            let octave_high = if octave_low == 0 { 1 } else { octave_low * 2 };
            match out.last_mut() {
                Some(last) if last.0 == octave_low => last.2 += c,
                _ => out.push((octave_low, octave_high, *c)),
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ns: Option<u64>,
    pub p90_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub max_ns: Option<u64>,
    pub mean_ns: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..2_000_000u64).step_by(7).chain([u64::MAX / 2, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last, "bucket order at {v}");
            last = b;
            let low = lower_bound(b);
            assert!(low <= v, "{low} > {v}");
            if v < (1u64 << (POWERS as u32 + SUB_BITS - 1)) && v >= SUB as u64 {
                assert!((v - low) * 32 <= v, "{v} in bucket from {low}");
            }
        }
    }

    #[test]
    fn quantiles_of_a_uniform_run() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.04, "{p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.04, "{p99}");
        assert_eq!(h.max(), Some(10_000_000));
        assert_eq!(
            h.quantile(1.0),
            Some(h.quantile(1.0).unwrap().min(10_000_000))
        );
        let total: u64 = h.octaves().iter().map(|o| o.2).sum();
        assert_eq!(total, 10_000);
    }

    #[test]
    fn buckets_grow_with_the_largest_value() {
        let mut small = Histogram::new();
        assert!(small.counts.is_empty());
        for v in 0..2000u64 {
            small.record(v);
        }
        assert!(small.counts.len() <= 8 * SUB, "{}", small.counts.len());
        let mut large = Histogram::new();
        large.record(u64::MAX);
        assert_eq!(large.counts.len(), POWERS * SUB);
        small.merge(&large);
        assert_eq!(small.count(), 2001);
        assert_eq!(small.quantile(0.5), Some(lower_bound(bucket_of(1000))));
        assert_eq!(small.max(), Some(u64::MAX));
    }

    #[test]
    fn empty_and_merge() {
        let mut a = Histogram::new();
        assert_eq!(a.summary().p50_ns, None);
        let mut b = Histogram::new();
        b.record(5);
        a.merge(&b);
        assert_eq!(a.quantile(0.5), Some(5));
    }
}
