//! Counting per client within a time window, in bounded memory: a rule that fires at N
//! occurrences keeps at most the last N timestamps per client, and the number of clients
//! tracked is capped (idle ones are forgotten first).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

use super::Evidence;

/// Clients tracked per rule before idle ones are dropped.
pub const MAX_CLIENTS: usize = 16_384;

/// Some per-client state with the time it was last touched.
#[derive(Debug)]
pub struct PerClient<T> {
    map: HashMap<IpAddr, (u64, T)>,
    cap: usize,
}

impl<T> Default for PerClient<T> {
    fn default() -> Self {
        PerClient {
            map: HashMap::new(),
            cap: MAX_CLIENTS,
        }
    }
}

impl<T> PerClient<T> {
    /// The state of `client`, created with `make` when new. When full, clients idle for
    /// longer than `idle_ns` are dropped, then the least recently touched half.
    pub fn get(
        &mut self,
        client: IpAddr,
        now: u64,
        idle_ns: u64,
        make: impl FnOnce() -> T,
    ) -> &mut T {
        if !self.map.contains_key(&client) && self.map.len() >= self.cap {
            let horizon = now.saturating_sub(idle_ns);
            self.map.retain(|_, (last, _)| *last >= horizon);
            if self.map.len() >= self.cap {
                let mut times: Vec<u64> = self.map.values().map(|(t, _)| *t).collect();
                times.sort_unstable();
                let median = times.get(times.len() / 2).copied().unwrap_or(0);
                self.map.retain(|_, (last, _)| *last > median);
            }
        }
        let entry = self.map.entry(client).or_insert_with(|| (now, make()));
        entry.0 = entry.0.max(now);
        &mut entry.1
    }
}

/// What one occurrence adds to a finding.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub ts_ns: u64,
    pub end_ns: u64,
    pub bytes: u64,
    pub keys: u64,
}

/// The occurrences that made a counting rule fire.
#[derive(Debug, Clone, Default)]
pub struct Fired {
    pub start_ns: u64,
    pub end_ns: u64,
    pub count: u64,
    pub bytes: u64,
    pub keys: u64,
    pub evidence: Vec<Evidence>,
}

/// The last `threshold` occurrences of one client, and the evidence of the latest few.
#[derive(Debug, Default)]
pub struct Burst {
    samples: VecDeque<Sample>,
    evidence: VecDeque<Evidence>,
}

impl Burst {
    /// Counts one occurrence. Fires (and starts over) when `threshold` occurrences fall
    /// within `window_ns`.
    pub fn hit(
        &mut self,
        sample: Sample,
        evidence: Evidence,
        threshold: u64,
        window_ns: u64,
        evidence_limit: usize,
    ) -> Option<Fired> {
        let newest = sample.ts_ns;
        self.samples.push_back(sample);
        self.evidence.push_back(evidence);
        let threshold = usize::try_from(threshold).unwrap_or(usize::MAX).max(1);
        while self.samples.len() > threshold {
            self.samples.pop_front();
        }
        while self.evidence.len() > evidence_limit.min(threshold) {
            self.evidence.pop_front();
        }
        let oldest = self.samples.front().map_or(newest, |s| s.ts_ns);
        if self.samples.len() < threshold || newest.saturating_sub(oldest) > window_ns {
            return None;
        }
        let fired = Fired {
            start_ns: oldest,
            end_ns: self
                .samples
                .iter()
                .map(|s| s.end_ns)
                .max()
                .unwrap_or(newest),
            count: self.samples.len() as u64,
            bytes: self
                .samples
                .iter()
                .fold(0u64, |a, s| a.saturating_add(s.bytes)),
            keys: self
                .samples
                .iter()
                .fold(0u64, |a, s| a.saturating_add(s.keys)),
            evidence: self.evidence.drain(..).collect(),
        };
        self.samples.clear();
        Some(fired)
    }
}

/// Distinct values (hashed) one client touched within a window. Keeps at most
/// 4 × `threshold` recent touches: a client that repeats itself a lot may be counted
/// slightly low, never high.
#[derive(Debug, Default)]
pub struct Distinct {
    touches: VecDeque<(u64, u64)>,
    last_seen: HashMap<u64, u64>,
    evidence: VecDeque<Evidence>,
}

impl Distinct {
    pub fn hit(
        &mut self,
        ts_ns: u64,
        value: u64,
        evidence: Evidence,
        threshold: u64,
        window_ns: u64,
        evidence_limit: usize,
    ) -> Option<Fired> {
        let threshold = usize::try_from(threshold).unwrap_or(usize::MAX).max(1);
        let horizon = ts_ns.saturating_sub(window_ns);
        let cap = threshold.saturating_mul(4);
        while let Some(&(t, v)) = self.touches.front() {
            if t >= horizon && self.touches.len() < cap {
                break;
            }
            self.touches.pop_front();
            if self.last_seen.get(&v) == Some(&t) {
                self.last_seen.remove(&v);
            }
        }
        let new = self.last_seen.insert(value, ts_ns).is_none();
        self.touches.push_back((ts_ns, value));
        if new {
            self.evidence.push_back(evidence);
            while self.evidence.len() > evidence_limit {
                self.evidence.pop_front();
            }
        }
        if self.last_seen.len() < threshold {
            return None;
        }
        let start = self.touches.front().map_or(ts_ns, |(t, _)| *t);
        let fired = Fired {
            start_ns: start,
            end_ns: ts_ns,
            count: self.last_seen.len() as u64,
            bytes: 0,
            keys: self.last_seen.len() as u64,
            evidence: self.evidence.drain(..).collect(),
        };
        self.touches.clear();
        self.last_seen.clear();
        Some(fired)
    }
}

/// Totals per client over fixed windows (the first starting at the first value seen),
/// for rules that compare clients with each other.
#[derive(Debug)]
pub struct Tumbling<T> {
    window_ns: u64,
    start_ns: Option<u64>,
    current: HashMap<IpAddr, T>,
}

impl<T: Default> Tumbling<T> {
    pub fn new(window_ns: u64) -> Self {
        Tumbling {
            window_ns: window_ns.max(1),
            start_ns: None,
            current: HashMap::new(),
        }
    }

    /// Closes the current window if `ts_ns` is past it: returns its start, end and totals.
    pub fn roll(&mut self, ts_ns: u64) -> Option<(u64, u64, HashMap<IpAddr, T>)> {
        let start = *self.start_ns.get_or_insert(ts_ns);
        let end = start.saturating_add(self.window_ns);
        if ts_ns < end {
            return None;
        }
        let skipped = (ts_ns - start) / self.window_ns;
        self.start_ns = Some(start.saturating_add(skipped.saturating_mul(self.window_ns)));
        Some((start, end, std::mem::take(&mut self.current)))
    }

    /// The totals of `client` in the current window (None when too many clients).
    pub fn entry(&mut self, client: IpAddr) -> Option<&mut T> {
        if !self.current.contains_key(&client) && self.current.len() >= MAX_CLIENTS {
            return None;
        }
        Some(self.current.entry(client).or_default())
    }

    /// The capture ended: the last (partial) window.
    pub fn finish(&mut self) -> Option<(u64, u64, HashMap<IpAddr, T>)> {
        let start = self.start_ns.take()?;
        Some((
            start,
            start.saturating_add(self.window_ns),
            std::mem::take(&mut self.current),
        ))
    }
}

/// A bounded set: remembers up to `cap` values, then forgets them all and starts over
/// (used to avoid reporting the same thing twice; a repeat after a reset is harmless).
#[derive(Debug)]
pub struct SeenSet<K> {
    set: HashSet<K>,
    cap: usize,
}

impl<K: Hash + Eq> SeenSet<K> {
    pub fn new(cap: usize) -> Self {
        SeenSet {
            set: HashSet::new(),
            cap,
        }
    }

    /// True the first time `k` is inserted.
    pub fn insert(&mut self, k: K) -> bool {
        if self.set.len() >= self.cap {
            self.set.clear();
        }
        self.set.insert(k)
    }
}
