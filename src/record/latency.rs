//! The kernel's latency histograms (bpf/events.h, `et_hist`), read for the capture: the
//! programs count every WAL and backend sync and write into a per-CPU array map for the
//! whole recording, and the drain loop sums the CPUs about once a second and hands the
//! totals to the writer, which puts the latest into each file's index.

use std::path::PathBuf;

use anyhow::Result;
use libbpf_rs::{MapCore, MapFlags};

use super::skel::EtcdTraceSkel;
use crate::capture::{LatencyHistogram, LatencyKind};

/// ET_HIST_BUCKETS in bpf/events.h.
pub(super) const BUCKETS: usize = 36;
/// ET_HIST_KINDS in bpf/events.h.
pub(super) const KINDS: usize = 4;
/// ET_HIST_DIRS in bpf/events.h: data dir slots.
pub(super) const DIR_SLOTS: usize = 16;
/// sizeof(struct et_hist): the buckets, then sum_ns.
pub(super) const HIST_LEN: usize = 8 * (BUCKETS + 1);
// Readers refuse histograms of more buckets.
const _: () = assert!(BUCKETS <= crate::capture::latency::MAX_BUCKETS);

/// The kind of histogram `kind` of a data dir (enum et_hist_kind in bpf/events.h).
fn kind_of(kind: usize) -> Option<LatencyKind> {
    match kind {
        0 => Some(LatencyKind::WalSync),
        1 => Some(LatencyKind::WalWrite),
        2 => Some(LatencyKind::DbSync),
        3 => Some(LatencyKind::DbWrite),
        _ => None,
    }
}

/// One CPU's share of a histogram, as the map holds it.
fn parse(raw: &[u8]) -> Option<([u64; BUCKETS], u64)> {
    let words: Vec<u64> = raw
        .get(..HIST_LEN)?
        .chunks_exact(8)
        .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or([0; 8])))
        .collect();
    let (buckets, sum) = words.split_at(BUCKETS);
    Some((buckets.try_into().ok()?, *sum.first()?))
}

/// Every histogram of the data dirs in `slots` (a dir's slot is its place), summed over
/// the CPUs.
pub(super) fn read(skel: &EtcdTraceSkel<'_>, slots: &[PathBuf]) -> Result<Vec<LatencyHistogram>> {
    let mut out = Vec::new();
    for (slot, dir) in slots.iter().enumerate().take(DIR_SLOTS) {
        for kind in 0..KINDS {
            let Some(latency_kind) = kind_of(kind) else {
                continue;
            };
            let key = (slot * KINDS + kind) as u32;
            let per_cpu = skel
                .maps
                .latency
                .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)?
                .unwrap_or_default();
            let mut hist = LatencyHistogram {
                data_dir: dir.display().to_string(),
                kind: latency_kind,
                buckets: vec![0; BUCKETS],
                sum_ns: 0,
            };
            for (buckets, sum) in per_cpu.iter().filter_map(|raw| parse(raw)) {
                for (total, n) in hist.buckets.iter_mut().zip(buckets) {
                    *total = total.saturating_add(n);
                }
                hist.sum_ns = hist.sum_ns.saturating_add(sum);
            }
            out.push(hist);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kernel kind has its capture kind (the constants against the compiled
    /// object: layout.rs's `sizes_match_the_header`).
    #[test]
    fn every_kernel_kind_is_a_capture_kind() {
        assert!(LatencyKind::ALL
            .iter()
            .enumerate()
            .all(|(i, k)| kind_of(i) == Some(*k)));
        assert_eq!(kind_of(KINDS), None);
    }

    #[test]
    fn parses_one_cpu() {
        let mut raw = vec![0u8; HIST_LEN];
        raw[8 * 3..8 * 4].copy_from_slice(&7u64.to_ne_bytes());
        raw[8 * BUCKETS..].copy_from_slice(&99u64.to_ne_bytes());
        let (buckets, sum) = parse(&raw).unwrap();
        assert_eq!((buckets[3], sum), (7, 99));
        assert!(parse(&raw[..HIST_LEN - 1]).is_none());
    }
}
