//! Output: formatting shared by the subcommands: sizes, durations, hex, and progress bars that
//! show on a terminal and stay quiet when piped.

pub mod parquet;
pub mod pcapng;
pub mod perfetto;

use std::io::IsTerminal;
use std::time::Duration;

pub use crate::units::{human_bytes, human_duration_ns, human_signed_duration_ns};

/// `+1.234567`: a time as seconds after the capture's start, to `decimals` places (6
/// for µs, 9 for ns). Every text output lines its events up this way.
pub fn offset(ts_ns: u64, start_ns: u64, decimals: u32) -> String {
    let r = ts_ns.saturating_sub(start_ns);
    let frac = (r % 1_000_000_000) / 10u64.pow(9 - decimals.min(9));
    format!(
        "+{}.{:0width$}",
        r / 1_000_000_000,
        frac,
        width = decimals.min(9) as usize
    )
}

/// ` | 0a 03 66 6f …` — the first `max` bytes as hex, for text output (empty when
/// there are none, so lines carry no trailing space).
pub fn hex_prefix(bytes: &[u8], max: usize) -> String {
    if bytes.is_empty() || max == 0 {
        return String::new();
    }
    let mut s = String::with_capacity(2 + 3 * max.min(bytes.len()) + 2);
    s.push_str(" |");
    for b in bytes.iter().take(max) {
        s.push_str(&format!(" {b:02x}"));
    }
    if bytes.len() > max {
        s.push_str(" …");
    }
    s
}

/// A progress bar over a capture's blocks, drawn only on a terminal.
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// No progress shown (a followed capture: its lines are the progress).
    pub fn hidden() -> Progress {
        Progress(None)
    }

    pub fn for_blocks(_blocks: u64, what: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(what.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        Progress(Some(pb))
    }

    pub fn tick_events(&self, n: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(n);
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 KB");
        assert_eq!(human_duration_ns(250_000), "250.0 µs");
        assert_eq!(human_duration_ns(41_000_000), "41.00 ms");
        assert_eq!(human_signed_duration_ns(-250_000), "-250.0 µs");
        assert_eq!(human_signed_duration_ns(0), "+0 ns");
        assert_eq!(hex_prefix(&[0, 0xab, 1], 2), " | 00 ab …");
        assert_eq!(hex_prefix(&[], 2), "");
        assert_eq!(offset(2_001_234_567, 1_000_000_000, 6), "+1.001234");
        assert_eq!(offset(2_001_234_567, 1_000_000_000, 9), "+1.001234567");
        assert_eq!(offset(5, 10, 6), "+0.000000");
    }
}
