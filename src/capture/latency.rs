//! Latency histograms of etcd's disk calls, as the recorder kept them in the kernel for
//! the whole recording and wrote them into each file's index (format 5). They exist
//! because the events cannot give these numbers alone: events are lost under load, and
//! `--no-syscalls` records none, while the kernel counts every call. Each histogram
//! holds log2 buckets of nanoseconds, so a quantile is a bucket, not a value: the API
//! says the bucket's bounds and never pretends to more precision.

#![forbid(unsafe_code)]

use bincode::de::Decoder;
use bincode::error::DecodeError;
use bincode::{Decode, Encode};
use serde::Serialize;

/// Most buckets a histogram may have in a file (the recorder writes fewer).
pub const MAX_BUCKETS: usize = 64;
/// Most histograms an index may hold: four kinds for each of 16 data dirs of each of
/// the 1024 hosts a merged capture may hold.
pub const MAX_HISTOGRAMS: usize = 1 << 16;
/// Longest data dir name (with its host in a merged capture) a reader accepts.
pub const MAX_DATA_DIR_LEN: usize = 4096;

/// What a histogram times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyKind {
    /// fsync or fdatasync of a WAL file (member/wal/).
    WalSync,
    /// write, pwrite64 or writev to a WAL file.
    WalWrite,
    /// fsync or fdatasync of the backend database (member/snap/db).
    DbSync,
    /// write, pwrite64 or writev to the backend database.
    DbWrite,
}

impl LatencyKind {
    pub const ALL: [LatencyKind; 4] = [
        LatencyKind::WalSync,
        LatencyKind::WalWrite,
        LatencyKind::DbSync,
        LatencyKind::DbWrite,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LatencyKind::WalSync => "WAL sync",
            LatencyKind::WalWrite => "WAL write",
            LatencyKind::DbSync => "db sync",
            LatencyKind::DbWrite => "db write",
        }
    }
}

/// One data dir's histogram of one kind of call, since the recording started.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Serialize)]
pub struct LatencyHistogram {
    /// The data dir as the recorder was given it; `host:dir` in a merged capture.
    pub data_dir: String,
    pub kind: LatencyKind,
    /// Calls per bucket: bucket 0 holds durations below 2 ns, bucket i > 0 those in
    /// [2^i, 2^(i+1)) ns, and the last one everything from its lower bound up.
    pub buckets: Vec<u64>,
    /// The durations added up, in ns.
    pub sum_ns: u64,
}

/// Where one bucket lies: `low_ns <= d < high_ns`, no upper bound for the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BucketRange {
    pub index: usize,
    pub low_ns: u64,
    pub high_ns: Option<u64>,
}

impl BucketRange {
    pub fn contains(&self, ns: u64) -> bool {
        ns >= self.low_ns && self.high_ns.is_none_or(|high| ns < high)
    }
}

/// The bucket of a duration in a histogram of `buckets` buckets, as the kernel picks
/// it.
pub fn bucket_of(ns: u64, buckets: usize) -> usize {
    let log2 = if ns == 0 { 0 } else { ns.ilog2() as usize };
    log2.min(buckets.saturating_sub(1))
}

/// The bounds of bucket `index` of a histogram of `buckets` buckets.
pub fn bucket_range(index: usize, buckets: usize) -> BucketRange {
    let low_ns = match index {
        0 => 0,
        i => 1u64.checked_shl(i as u32).unwrap_or(u64::MAX),
    };
    let high_ns = if index + 1 >= buckets {
        None
    } else {
        1u64.checked_shl(index as u32 + 1)
    };
    BucketRange {
        index,
        low_ns,
        high_ns,
    }
}

impl LatencyHistogram {
    /// Calls counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |n, &c| n.saturating_add(c))
    }

    pub fn bucket(&self, index: usize) -> BucketRange {
        bucket_range(index, self.buckets.len())
    }

    /// The mean duration, when anything was counted.
    pub fn mean_ns(&self) -> Option<u64> {
        let n = self.count();
        (n > 0).then(|| self.sum_ns / n)
    }

    /// The bucket that holds the `q` quantile (nearest rank: the ceil(q * count)-th
    /// smallest duration); `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<BucketRange> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                return Some(self.bucket(i));
            }
        }
        None
    }

    pub fn p50(&self) -> Option<BucketRange> {
        self.quantile(0.5)
    }

    pub fn p99(&self) -> Option<BucketRange> {
        self.quantile(0.99)
    }

    /// Adds another histogram of the same shape (the same dir and kind from another
    /// source); a histogram of another bucket count is refused.
    pub fn add(&mut self, other: &LatencyHistogram) -> Result<(), String> {
        if other.buckets.len() != self.buckets.len() {
            return Err(format!(
                "histograms of {} and {} buckets cannot be added",
                self.buckets.len(),
                other.buckets.len()
            ));
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a = a.saturating_add(*b);
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        Ok(())
    }
}

impl<Ctx> Decode<Ctx> for LatencyHistogram {
    /// Bounded before anything is allocated: the name's length and the bucket count
    /// are checked as they are read.
    fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let name_len = bounded_len(decoder, MAX_DATA_DIR_LEN, "data dir name")?;
        let mut name = vec![0u8; name_len];
        for byte in &mut name {
            *byte = u8::decode(decoder)?;
        }
        let data_dir = String::from_utf8(name)
            .map_err(|_| DecodeError::OtherString("a data dir name is not UTF-8".into()))?;
        let kind = LatencyKind::decode(decoder)?;
        let n = bounded_len(decoder, MAX_BUCKETS, "histogram bucket count")?;
        if n == 0 {
            return Err(DecodeError::OtherString(
                "a latency histogram has no buckets".into(),
            ));
        }
        let mut buckets = Vec::with_capacity(n);
        for _ in 0..n {
            buckets.push(u64::decode(decoder)?);
        }
        let sum_ns = u64::decode(decoder)?;
        Ok(LatencyHistogram {
            data_dir,
            kind,
            buckets,
            sum_ns,
        })
    }
}

bincode::impl_borrow_decode!(LatencyHistogram);

/// The histograms of an index: a list whose length is bounded before it is allocated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode)]
pub(super) struct LatencyTable(pub(super) Vec<LatencyHistogram>);

impl<Ctx> Decode<Ctx> for LatencyTable {
    fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let n = bounded_len(decoder, MAX_HISTOGRAMS, "latency histogram count")?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(LatencyHistogram::decode(decoder)?);
        }
        Ok(LatencyTable(list))
    }
}

bincode::impl_borrow_decode!(LatencyTable);

/// Whether a reader will accept `histograms`: a writer checks before it writes an index
/// that would otherwise be refused, with every block it lists.
pub fn check(histograms: &[LatencyHistogram]) -> Result<(), String> {
    if histograms.len() > MAX_HISTOGRAMS {
        return Err(format!(
            "{} latency histograms, more than a reader accepts ({MAX_HISTOGRAMS})",
            histograms.len()
        ));
    }
    for h in histograms {
        if h.buckets.is_empty() || h.buckets.len() > MAX_BUCKETS {
            return Err(format!(
                "a latency histogram of {} buckets (1 to {MAX_BUCKETS} are readable)",
                h.buckets.len()
            ));
        }
        if h.data_dir.len() > MAX_DATA_DIR_LEN {
            return Err(format!(
                "a data dir name of {} bytes (at most {MAX_DATA_DIR_LEN} are readable)",
                h.data_dir.len()
            ));
        }
    }
    Ok(())
}

/// A length as bincode writes one (a varint u64), refused above `max`.
fn bounded_len<D: Decoder>(decoder: &mut D, max: usize, what: &str) -> Result<usize, DecodeError> {
    let n = u64::decode(decoder)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| DecodeError::OtherString(format!("{what} {n} is above the bound {max}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(buckets: Vec<u64>) -> LatencyHistogram {
        LatencyHistogram {
            data_dir: "/var/lib/etcd".into(),
            kind: LatencyKind::WalSync,
            buckets,
            sum_ns: 0,
        }
    }

    #[test]
    fn buckets_and_bounds() {
        assert_eq!(bucket_of(0, 36), 0);
        assert_eq!(bucket_of(1, 36), 0);
        assert_eq!(bucket_of(2, 36), 1);
        assert_eq!(bucket_of(3, 36), 1);
        assert_eq!(bucket_of(1_000_000, 36), 19);
        assert_eq!(bucket_of(u64::MAX, 36), 35);
        for ns in [
            0u64,
            1,
            2,
            3,
            1023,
            1024,
            250_000,
            1 << 34,
            (1 << 35) + 5,
            u64::MAX,
        ] {
            assert!(bucket_range(bucket_of(ns, 36), 36).contains(ns), "{ns}");
        }
        assert_eq!(bucket_range(0, 36).high_ns, Some(2));
        assert_eq!(bucket_range(35, 36).high_ns, None);
        assert_eq!(bucket_range(35, 36).low_ns, 1 << 35);
        assert_eq!(bucket_range(63, 64).low_ns, 1 << 63);
    }

    #[test]
    fn quantiles_are_buckets() {
        let mut b = vec![0u64; 36];
        b[18] = 98; // 262 µs .. 524 µs
        b[24] = 2; // 16.7 ms .. 33.5 ms
        let h = hist(b);
        assert_eq!(h.count(), 100);
        assert_eq!(h.p50().unwrap().index, 18);
        assert_eq!(h.p99().unwrap().index, 24);
        assert_eq!(h.quantile(0.98).unwrap().index, 18);
        assert_eq!(h.quantile(0.0).unwrap().index, 18);
        assert_eq!(h.quantile(1.0).unwrap().index, 24);
        assert_eq!(hist(vec![0; 36]).p99(), None);
        assert_eq!(hist(vec![0; 36]).mean_ns(), None);
    }

    #[test]
    fn round_trip_and_bounds() {
        let config = bincode::config::standard();
        let table = LatencyTable(vec![hist(vec![1, 2, 3]), hist(vec![4; 36])]);
        let bytes = bincode::encode_to_vec(&table, config).unwrap();
        let (back, used): (LatencyTable, usize) =
            bincode::decode_from_slice(&bytes, config).unwrap();
        assert_eq!((back, used), (table, bytes.len()));
        // Cut anywhere, it is refused.
        for cut in 0..bytes.len() {
            assert!(bincode::decode_from_slice::<LatencyTable, _>(&bytes[..cut], config).is_err());
        }
        // Too many buckets, none, too many histograms, a name too long: refused.
        for bad in [
            LatencyTable(vec![hist(vec![1; MAX_BUCKETS + 1])]),
            LatencyTable(vec![hist(Vec::new())]),
            LatencyTable(vec![hist(vec![1]); MAX_HISTOGRAMS + 1]),
            LatencyTable(vec![LatencyHistogram {
                data_dir: "d".repeat(MAX_DATA_DIR_LEN + 1),
                ..hist(vec![1])
            }]),
        ] {
            let bytes = bincode::encode_to_vec(&bad, config).unwrap();
            assert!(bincode::decode_from_slice::<LatencyTable, _>(&bytes, config).is_err());
        }
        // A huge count claimed by a few bytes is refused before anything is allocated.
        let mut claim = Vec::new();
        claim.push(253u8); // varint: a u64 follows
        claim.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(bincode::decode_from_slice::<LatencyTable, _>(&claim, config).is_err());
    }

    /// What the decoder refuses, `check` refuses before it is written.
    #[test]
    fn check_agrees_with_the_decoder() {
        let config = bincode::config::standard();
        let cases = [
            vec![hist(vec![1; MAX_BUCKETS])],
            vec![hist(vec![1; MAX_BUCKETS + 1])],
            vec![hist(Vec::new())],
            vec![hist(vec![1]); MAX_HISTOGRAMS + 1],
            vec![LatencyHistogram {
                data_dir: "d".repeat(MAX_DATA_DIR_LEN),
                ..hist(vec![1])
            }],
            vec![LatencyHistogram {
                data_dir: "d".repeat(MAX_DATA_DIR_LEN + 1),
                ..hist(vec![1])
            }],
        ];
        for case in cases {
            let bytes = bincode::encode_to_vec(LatencyTable(case.clone()), config).unwrap();
            let decoded = bincode::decode_from_slice::<LatencyTable, _>(&bytes, config);
            assert_eq!(check(&case).is_ok(), decoded.is_ok());
        }
    }

    #[test]
    fn adding() {
        let mut a = hist(vec![1, 2, 3]);
        a.add(&hist(vec![1, 1, 1])).unwrap();
        assert_eq!(a.buckets, [2, 3, 4]);
        assert!(a.add(&hist(vec![1, 1])).is_err());
    }
}
