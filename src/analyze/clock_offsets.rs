//! How far apart the clocks of the hosts of a cluster were, estimated from the TCP
//! segments one host's recorder saw leave (egress) and another's saw arrive (ingress).
//! Nothing assumes synchronised clocks: captures of different hosts carry independent
//! monotonic clocks, each with its own offset to its own wall clock.
//!
//! NTP's reasoning, with every matched segment a one-way measurement: for hosts A and B
//! and θ = B's clock − A's, a segment A sent at A-time `t_A` and B received at B-time
//! `t_B` gives `t_B − t_A = d + θ` with a delay `d ≥ 0`. The smallest over A→B is
//! `m1 = d1 + θ`, over B→A `m2 = d2 − θ`, so `θ = (m1 − m2)/2 ± (m1 + m2)/2`: the
//! estimate is off by half the difference of the two smallest delays, never more than
//! half their sum. With more hosts, each is measured through the chain of pairs whose
//! summed uncertainty is least (Dijkstra from the reference, the first host).
//!
//! Memory is bounded: each host keeps a sample of its segments, chosen by a hash of the
//! segment (so both ends of a segment sample it alike), and when a sample outgrows its
//! bound it keeps half of it, by one more bit of the hash.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use foldhash::fast::FixedState;

use crate::capture::{Direction, Packet};

/// Segments each host keeps per direction at most.
pub const MAX_SAMPLED_SEGMENTS: usize = 1 << 16;

/// Payload bytes that go into a segment's key: as many as any recorder keeps, so that
/// hosts with different snaplens still agree.
const KEY_PAYLOAD_BYTES: usize = 64;

/// One TCP segment as both ends see it: its 4-tuple, sequence and ack numbers, flags,
/// payload length and first payload bytes, hashed. The interface, direction, window and
/// time are left out: they are what differ between the two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentKey(pub u64);

impl SegmentKey {
    pub fn of(p: &Packet) -> SegmentKey {
        // A fixed seed: every capture of one merge hashes alike, and runs repeat.
        let mut h = FixedState::with_seed(0x6574_6364_2d74_7261).build_hasher();
        for addr in [p.src, p.dst] {
            match addr.ip() {
                std::net::IpAddr::V4(ip) => h.write_u32(ip.to_bits()),
                std::net::IpAddr::V6(ip) => h.write_u128(ip.to_bits()),
            }
            h.write_u16(addr.port());
        }
        h.write_u32(p.seq);
        h.write_u32(p.ack);
        h.write_u8(p.flags.0);
        h.write_u32(p.payload_len);
        let n = p.payload.len().min(KEY_PAYLOAD_BYTES);
        h.write(p.payload.get(..n).unwrap_or_default());
        SegmentKey(h.finish())
    }

    /// Whether a sample that keeps one key in 2^`shift` keeps this one.
    fn sampled(self, shift: u32) -> bool {
        shift == 0 || self.0 >> (64 - shift.min(63)) == 0
    }
}

/// A sample of the segments one host's capture saw, each with the earliest wall-clock
/// time (of that host) it was seen at.
#[derive(Debug, Clone, Default)]
pub struct HostSegments {
    egress: HashMap<SegmentKey, i64>,
    ingress: HashMap<SegmentKey, i64>,
    /// One key in 2^shift is kept.
    shift: u32,
    bound: usize,
}

impl HostSegments {
    pub fn new() -> HostSegments {
        HostSegments::with_bound(MAX_SAMPLED_SEGMENTS)
    }

    /// At most `bound` segments per direction.
    pub fn with_bound(bound: usize) -> HostSegments {
        HostSegments {
            bound: bound.max(1),
            ..HostSegments::default()
        }
    }

    /// A segment seen leaving or entering this host at `wall_ns`, its wall clock.
    pub fn push(&mut self, key: SegmentKey, direction: Direction, wall_ns: i64) {
        if !key.sampled(self.shift) {
            return;
        }
        let seen = match direction {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        };
        // The earliest copy: a retransmission's copies then never shorten a delay.
        let t = seen.entry(key).or_insert(wall_ns);
        *t = (*t).min(wall_ns);
        while self.egress.len().max(self.ingress.len()) > self.bound && self.shift < 63 {
            self.shift += 1;
            let shift = self.shift;
            self.egress.retain(|k, _| k.sampled(shift));
            self.ingress.retain(|k, _| k.sampled(shift));
        }
    }

    /// Segments kept, both directions.
    pub fn len(&self) -> usize {
        self.egress.len() + self.ingress.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Of the segments both samples would keep, those this host saw leave and `to` saw
    /// arrive: how many, and the smallest arrival time minus departure time.
    fn one_way(&self, to: &HostSegments) -> (u64, Option<i64>) {
        let shift = self.shift.max(to.shift);
        let mut matches = 0;
        let mut least: Option<i64> = None;
        for (key, sent) in &self.egress {
            if !key.sampled(shift) {
                continue;
            }
            if let Some(received) = to.ingress.get(key) {
                matches += 1;
                let d = received.saturating_sub(*sent);
                least = Some(least.map_or(d, |l| l.min(d)));
            }
        }
        (matches, least)
    }

    /// Segments both hosts saw leave: how many, of how many the smaller sample of the
    /// two holds. Two hosts that share many cannot be two hosts.
    fn shared_egress(&self, other: &HostSegments) -> (u64, u64) {
        let shift = self.shift.max(other.shift);
        let sampled = |s: &HostSegments| s.egress.keys().filter(|k| k.sampled(shift)).count();
        let shared = self
            .egress
            .keys()
            .filter(|k| k.sampled(shift) && other.egress.contains_key(k))
            .count();
        let smaller = sampled(self).min(sampled(other));
        (shared as u64, smaller as u64)
    }
}

/// What the segments between two hosts say of their clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub a: usize,
    pub b: usize,
    /// Segments matched a→b and b→a.
    pub matches: (u64, u64),
    /// The smallest arrival minus departure time, a→b and b→a (None: no segment).
    pub least: (Option<i64>, Option<i64>),
}

impl Link {
    /// Between `hosts[a]` and `hosts[b]`.
    pub fn measure(hosts: &[HostSegments], a: usize, b: usize) -> Option<Link> {
        let (ha, hb) = (hosts.get(a)?, hosts.get(b)?);
        let (ab, least_ab) = ha.one_way(hb);
        let (ba, least_ba) = hb.one_way(ha);
        Some(Link {
            a,
            b,
            matches: (ab, ba),
            least: (least_ab, least_ba),
        })
    }

    /// b's clock minus a's, and the uncertainty of that: only when segments went both
    /// ways (one way bounds the offset on one side only).
    pub fn offset(&self) -> Option<Offset> {
        let (Some(m1), Some(m2)) = self.least else {
            return None;
        };
        let (m1, m2) = (i128::from(m1), i128::from(m2));
        let clamp = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
        Some(Offset {
            offset_ns: clamp((m1 - m2).div_euclid(2)),
            round_trip_ns: clamp(m1 + m2),
        })
    }

    pub fn total_matches(&self) -> u64 {
        self.matches.0.saturating_add(self.matches.1)
    }
}

/// One pair's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset {
    /// The second host's clock minus the first's.
    pub offset_ns: i64,
    /// `m1 + m2`: the least delays both ways, summed. Negative only when the clocks ran
    /// at different rates over the recordings (or a capture lies).
    pub round_trip_ns: i64,
}

impl Offset {
    /// ± this around `offset_ns`.
    pub fn uncertainty_ns(&self) -> u64 {
        (self.round_trip_ns.max(0) as u64).div_ceil(2)
    }
}

/// One host's clock, relative to the reference's (the first host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostClock {
    /// Its clock minus the reference's.
    pub offset_ns: i64,
    /// Summed along the chain it was measured through.
    pub uncertainty_ns: u64,
    /// The host it was measured against (None for the reference).
    pub via: Option<usize>,
    /// Segments matched with that host, both ways.
    pub matches: u64,
}

/// Why the hosts' clocks cannot all be put on the reference's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// These hosts share no segment seen at both ends, both ways, with a host whose
    /// clock is known.
    #[error("no TCP segment links hosts {0:?} to the others both ways")]
    Unreached(Vec<usize>),
    /// Two captures saw the same segments leave: one host recorded twice.
    #[error("hosts {a} and {b} saw the same {shared} of {sampled} segments leave")]
    SameHost {
        a: usize,
        b: usize,
        shared: u64,
        sampled: u64,
    },
}

/// The segments shared that make two captures one host's: at least this many, and this
/// share (in percent) of the smaller sample. A host that forwards another's traffic
/// shares a few.
const SAME_HOST_MIN_SHARED: u64 = 16;
const SAME_HOST_MIN_PERCENT: u64 = 10;

/// Every pair of hosts measured (a < b).
pub fn measure_all(hosts: &[HostSegments]) -> Result<Vec<Link>, ClockError> {
    let mut links = Vec::new();
    for a in 0..hosts.len() {
        for b in a + 1..hosts.len() {
            let (shared, sampled) = hosts[a].shared_egress(&hosts[b]);
            if shared >= SAME_HOST_MIN_SHARED
                && shared.saturating_mul(100) >= sampled.saturating_mul(SAME_HOST_MIN_PERCENT)
            {
                return Err(ClockError::SameHost {
                    a,
                    b,
                    shared,
                    sampled,
                });
            }
            if let Some(link) = Link::measure(hosts, a, b) {
                links.push(link);
            }
        }
    }
    Ok(links)
}

/// Each of `n` hosts' clock relative to host 0's, through the chain of measured pairs
/// with the least summed uncertainty.
pub fn chain(n: usize, links: &[Link]) -> Result<Vec<HostClock>, ClockError> {
    let mut clocks: Vec<Option<HostClock>> = vec![None; n];
    let mut done = vec![false; n];
    if let Some(first) = clocks.first_mut() {
        *first = Some(HostClock {
            offset_ns: 0,
            uncertainty_ns: 0,
            via: None,
            matches: 0,
        });
    }
    // Dijkstra over at most a few dozen hosts: a scan per step is enough.
    loop {
        let next = (0..n)
            .filter(|&h| !done[h])
            .filter_map(|h| clocks[h].map(|c| (c.uncertainty_ns, h)))
            .min();
        let Some((_, from)) = next else { break };
        done[from] = true;
        let Some(known) = clocks[from] else { break };
        for link in links {
            let (to, offset) = match link.offset() {
                Some(o) if link.a == from => (link.b, o.offset_ns),
                Some(o) if link.b == from => (link.a, o.offset_ns.saturating_neg()),
                _ => continue,
            };
            if to >= n || done[to] {
                continue;
            }
            let uncertainty = link.offset().map_or(0, |o| o.uncertainty_ns());
            let candidate = HostClock {
                offset_ns: known.offset_ns.saturating_add(offset),
                uncertainty_ns: known.uncertainty_ns.saturating_add(uncertainty),
                via: Some(from),
                matches: link.total_matches(),
            };
            if clocks[to].is_none_or(|c| candidate.uncertainty_ns < c.uncertainty_ns) {
                clocks[to] = Some(candidate);
            }
        }
    }
    let unreached: Vec<usize> = (0..n).filter(|&h| clocks[h].is_none()).collect();
    if !unreached.is_empty() {
        return Err(ClockError::Unreached(unreached));
    }
    Ok(clocks.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::TcpFlags;
    use crate::test_rng::XorShift;
    use std::net::SocketAddr;

    fn segment(from: u8, to: u8, seq: u32, payload: &'static [u8]) -> Packet {
        Packet {
            ts_ns: 0,
            ifindex: 2,
            direction: Direction::Egress,
            src: SocketAddr::from(([10, 0, 0, from], 2380)),
            dst: SocketAddr::from(([10, 0, 0, to], 40000 + u16::from(from))),
            seq,
            ack: 7,
            flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
            window: 512,
            payload_len: payload.len() as u32,
            payload: payload.into(),
        }
    }

    /// Hosts whose clocks are `clock_ns[h]` ahead of true time exchange `per_pair`
    /// segments each way between the pairs of `pairs`; a segment from a to b takes
    /// `delay(a, b)` plus up to `jitter_ns` more.
    fn exchange(
        clock_ns: &[i64],
        pairs: &[(usize, usize)],
        per_pair: u32,
        delay: impl Fn(usize, usize) -> i64,
        jitter_ns: i64,
    ) -> Vec<HostSegments> {
        let mut rng = XorShift(0x5eed_0fc1_0c00);
        let mut hosts = vec![HostSegments::new(); clock_ns.len()];
        let mut now = 1_700_000_000_000_000_000i64;
        for i in 0..per_pair {
            for &(a, b) in pairs {
                for (from, to) in [(a, b), (b, a)] {
                    now += 1_000_000;
                    let p = segment(from as u8, to as u8, i * 100, b"raft");
                    let key = SegmentKey::of(&p);
                    let d = delay(from, to) + (rng.next() % (jitter_ns as u64 + 1)) as i64;
                    hosts[from].push(key, Direction::Egress, now + clock_ns[from]);
                    hosts[to].push(key, Direction::Ingress, now + d + clock_ns[to]);
                }
            }
        }
        hosts
    }

    #[test]
    fn a_skewed_clock_is_found_within_its_uncertainty() {
        // B runs 250 ms ahead; segments take 1 ms to B and 3 ms back, plus jitter.
        let hosts = exchange(
            &[0, 250_000_000],
            &[(0, 1)],
            500,
            |from, _| if from == 0 { 1_000_000 } else { 3_000_000 },
            400_000,
        );
        let links = measure_all(&hosts).unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].matches, (500, 500));
        let o = links[0].offset().unwrap();
        // m1 ≈ 251 ms, m2 ≈ -247 ms: 249 ms ± 2 ms, the asymmetry's 1 ms off the truth.
        assert!(
            (o.offset_ns - 249_000_000).abs() < 50_000,
            "{}",
            o.offset_ns
        );
        assert!(
            (o.uncertainty_ns() as i64 - 2_000_000).abs() < 50_000,
            "{}",
            o.uncertainty_ns()
        );
        assert!((o.offset_ns - 250_000_000).unsigned_abs() <= o.uncertainty_ns());

        let clocks = chain(2, &links).unwrap();
        assert_eq!(clocks[0].offset_ns, 0);
        assert_eq!(clocks[0].via, None);
        assert_eq!(clocks[1].offset_ns, o.offset_ns);
        assert_eq!(clocks[1].uncertainty_ns, o.uncertainty_ns());
        assert_eq!((clocks[1].via, clocks[1].matches), (Some(0), 1000));
    }

    /// The link between two hosts whose captures saw segments a→b leave and arrive at
    /// the times of `ab` (a's clock, b's), and b→a at those of `ba` (b's, a's).
    fn two_hosts(ab: &[(i64, i64)], ba: &[(i64, i64)]) -> Link {
        let mut hosts = [HostSegments::new(), HostSegments::new()];
        for (from, times) in [(0, ab), (1, ba)] {
            for (seq, &(sent, received)) in times.iter().enumerate() {
                let p = segment(from as u8 + 1, 2 - from as u8, seq as u32, b"x");
                let key = SegmentKey::of(&p);
                hosts[from].push(key, Direction::Egress, sent);
                hosts[1 - from].push(key, Direction::Ingress, received);
            }
        }
        Link::measure(&hosts, 0, 1).unwrap()
    }

    #[test]
    fn the_estimate_is_exact_for_the_least_delays() {
        // B is 10 s behind; a→b least delay 100 µs, b→a 300 µs.
        const B: i64 = -10_000_000_000;
        let link = two_hosts(
            &[(1_000_000, 1_100_000 + B), (2_000_000, 2_900_000 + B)],
            &[(5_000_000 + B, 5_300_000)],
        );
        assert_eq!(link.matches, (2, 1));
        let o = link.offset().unwrap();
        assert_eq!(o.offset_ns, B - 100_000);
        assert_eq!(o.uncertainty_ns(), 200_000);
    }

    #[test]
    fn one_way_only_gives_no_offset() {
        let link = two_hosts(&[(10, 20)], &[]);
        assert_eq!(link.matches, (1, 0));
        assert_eq!(link.offset(), None);
        assert_eq!(chain(2, &[link]), Err(ClockError::Unreached(vec![1])));
    }

    #[test]
    fn hosts_are_chained_through_the_best_measured_pairs() {
        // 0–1 and 1–2 talk closely, 0–2 over a slow path: 2 is measured through 1.
        let clock = [0, -40_000_000, 250_000_000, 5_000_000];
        let hosts = exchange(
            &clock,
            &[(0, 1), (1, 2), (0, 2)],
            200,
            |a, b| {
                if a.min(b) == 0 && a.max(b) == 2 {
                    20_000_000
                } else {
                    100_000
                }
            },
            50_000,
        );
        let links = measure_all(&hosts).unwrap();
        // Host 3 exchanged nothing.
        assert_eq!(chain(4, &links), Err(ClockError::Unreached(vec![3])));
        let clocks = chain(3, &links).unwrap();
        for (h, c) in clocks.iter().enumerate() {
            assert!(
                (c.offset_ns - clock[h]).unsigned_abs() <= c.uncertainty_ns,
                "host {h}: {c:?}"
            );
        }
        assert_eq!(clocks[1].via, Some(0));
        assert_eq!(clocks[2].via, Some(1));
        assert!(clocks[2].uncertainty_ns < 1_000_000, "{:?}", clocks[2]);
        assert!(clocks[2].uncertainty_ns > clocks[1].uncertainty_ns);
    }

    #[test]
    fn samples_stay_bounded_and_both_ends_keep_the_same_segments() {
        let mut a = HostSegments::with_bound(100);
        let mut b = HostSegments::with_bound(100);
        for i in 0..10_000u32 {
            let out = SegmentKey::of(&segment(1, 2, i, b"data"));
            let back = SegmentKey::of(&segment(2, 1, i, b"data"));
            let t = i64::from(i) * 1_000;
            a.push(out, Direction::Egress, t);
            b.push(out, Direction::Ingress, t + 70 + i64::from(i % 7));
            b.push(back, Direction::Egress, t + 500);
            a.push(back, Direction::Ingress, t + 530 + i64::from(i % 5));
        }
        assert!(a.len() <= 200 && b.len() <= 200, "{} {}", a.len(), b.len());
        let link = Link::measure(&[a, b], 0, 1).unwrap();
        assert!(link.matches.0 >= 25 && link.matches.1 >= 25, "{link:?}");
        let o = link.offset().unwrap();
        assert_eq!(o.offset_ns, 20);
        assert_eq!(o.uncertainty_ns(), 50);
    }

    #[test]
    fn one_host_recorded_twice_is_refused() {
        let mut a = HostSegments::new();
        let mut b = HostSegments::new();
        for i in 0..100 {
            let k = SegmentKey::of(&segment(1, 2, i, b"same"));
            a.push(k, Direction::Egress, i64::from(i));
            b.push(k, Direction::Egress, i64::from(i) + 3);
        }
        assert!(matches!(
            measure_all(&[a, b]),
            Err(ClockError::SameHost {
                a: 0,
                b: 1,
                shared: 100,
                ..
            })
        ));
    }

    #[test]
    fn what_the_key_covers() {
        let p = segment(1, 2, 5, b"payload");
        let key = SegmentKey::of(&p);
        let mut other_end = p.clone();
        other_end.ifindex = 9;
        other_end.direction = Direction::Ingress;
        other_end.window = 1;
        other_end.ts_ns = 77;
        assert_eq!(SegmentKey::of(&other_end), key);
        let mut cut = p.clone();
        cut.payload = cut.payload.slice(..3);
        assert_ne!(
            SegmentKey::of(&cut),
            key,
            "a different snaplen below 64 bytes"
        );
        for change in [
            |p: &mut Packet| p.seq += 1,
            |p: &mut Packet| p.ack += 1,
            |p: &mut Packet| p.flags = TcpFlags(TcpFlags::ACK),
            |p: &mut Packet| p.payload = b"PAYLOAD"[..].into(),
            |p: &mut Packet| p.src.set_port(1),
        ] {
            let mut q = p.clone();
            change(&mut q);
            assert_ne!(SegmentKey::of(&q), key, "{q:?}");
        }
        // Bytes past the 64th are the same on both ends, or cut by a snaplen.
        let long = |fill: u8| {
            let mut q = segment(1, 2, 5, b"");
            let mut bytes = vec![b'a'; 100];
            bytes[99] = fill;
            q.payload_len = 100;
            q.payload = bytes.into();
            q
        };
        assert_eq!(SegmentKey::of(&long(1)), SegmentKey::of(&long(2)));
    }

    /// Crafted times (the extremes of i64) neither panic nor wrap.
    #[test]
    fn extreme_times_saturate() {
        let link = two_hosts(&[(i64::MIN, i64::MAX)], &[(i64::MIN, i64::MAX)]);
        let o = link.offset().unwrap();
        assert_eq!(o.offset_ns, 0);
        assert_eq!(o.round_trip_ns, i64::MAX);
        let clocks = chain(2, &[link]).unwrap();
        assert_eq!(clocks[1].uncertainty_ns, o.uncertainty_ns());
    }
}
