//! `--since` / `--until` values: an offset from the capture's start (`1.5s`, `2m`) or an
//! RFC 3339 wall-clock time, turned into the capture's monotonic clock.

use anyhow::{bail, Result};

use crate::capture::Header;

/// Resolve a time argument to monotonic ns, given the capture's first event time.
pub fn resolve(spec: &str, header: &Header, start_ns: u64) -> Result<u64> {
    let spec = spec.trim();
    if let Ok(d) = humantime::parse_duration(spec) {
        return Ok(start_ns.saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64));
    }
    if let Ok(secs) = spec.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(start_ns.saturating_add((secs * 1e9) as u64));
        }
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(spec) {
        let wall = t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let mono = wall - i128::from(header.clock_offset_ns);
        return Ok(mono.clamp(0, i128::from(u64::MAX)) as u64);
    }
    bail!(
        "cannot read time {spec:?}: give an offset from the capture's start (`1.5s`, `2m`, \
         `90`) or an RFC 3339 time (`2026-11-28T17:40:00Z`)"
    )
}

/// Monotonic ns to an RFC 3339 wall-clock string (UTC, microseconds).
pub fn wall_string(header: &Header, mono_ns: u64) -> String {
    let wall = header.wall_ns(mono_ns);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(wall);
    humantime::format_rfc3339_micros(t).to_string()
}
