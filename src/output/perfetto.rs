//! Chrome / Perfetto trace files (the JSON trace event format), written as a stream so a
//! capture of any size becomes a trace in bounded memory. ui.perfetto.dev and
//! chrome://tracing open them. Slices on one track nest when one contains the other;
//! callers keep partly overlapping slices on separate tracks (`lane`s).

use std::collections::HashMap;
use std::io::{self, Write};

use serde_json::{json, Value};

const PID: u32 = 1;

pub struct TraceWriter<W: Write> {
    out: W,
    first: bool,
    tracks: HashMap<String, u32>,
    /// Per track: end times of the open slices of each lane, to place a slice on the
    /// first lane where it nests or follows.
    lanes: HashMap<String, Vec<u64>>,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(mut out: W, process_name: &str) -> io::Result<TraceWriter<W>> {
        out.write_all(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n")?;
        let mut w = TraceWriter {
            out,
            first: true,
            tracks: HashMap::new(),
            lanes: HashMap::new(),
        };
        w.event(
            &json!({"name": "process_name", "ph": "M", "pid": PID, "args": {"name": process_name}}),
        )?;
        Ok(w)
    }

    fn event(&mut self, v: &Value) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, v)?;
        Ok(())
    }

    /// The thread id of a named track, declared on first use; `order` sorts tracks in
    /// the UI.
    pub fn track(&mut self, name: &str, order: i64) -> io::Result<u32> {
        if let Some(tid) = self.tracks.get(name) {
            return Ok(*tid);
        }
        let tid = self.tracks.len() as u32 + 1;
        self.tracks.insert(name.to_string(), tid);
        self.event(&json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": name}}))?;
        self.event(&json!({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid, "args": {"sort_index": order}}))?;
        Ok(tid)
    }

    /// The track for a top-level slice [start, end) of a group: `group` itself when it is
    /// free at `start`, else `group (2)`, `group (3)`, ... so that overlapping slices
    /// never share a track. Slices must come in start order per group.
    pub fn lane(&mut self, group: &str, order: i64, start_ns: u64, end_ns: u64) -> io::Result<u32> {
        let ends = self.lanes.entry(group.to_string()).or_default();
        let lane = match ends.iter().position(|&e| e <= start_ns) {
            Some(i) => {
                ends[i] = end_ns;
                i
            }
            None => {
                ends.push(end_ns);
                ends.len() - 1
            }
        };
        let name = if lane == 0 {
            group.to_string()
        } else {
            format!("{group} ({})", lane + 1)
        };
        self.track(&name, order)
    }

    /// A complete slice ("X" event). Times are monotonic ns; the format wants µs.
    pub fn slice(
        &mut self,
        tid: u32,
        name: &str,
        start_ns: u64,
        dur_ns: u64,
        args: Value,
    ) -> io::Result<()> {
        self.event(&json!({
            "name": name,
            "ph": "X",
            "pid": PID,
            "tid": tid,
            "ts": start_ns as f64 / 1000.0,
            "dur": dur_ns as f64 / 1000.0,
            "args": args,
        }))
    }

    /// A point in time ("i" event, thread scope).
    pub fn instant(&mut self, tid: u32, name: &str, ts_ns: u64, args: Value) -> io::Result<()> {
        self.event(&json!({
            "name": name,
            "ph": "i",
            "s": "t",
            "pid": PID,
            "tid": tid,
            "ts": ts_ns as f64 / 1000.0,
            "args": args,
        }))
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_with_nested_slices_and_lanes() {
        let mut w = TraceWriter::new(Vec::new(), "test").unwrap();
        let a = w.lane("client 1", 0, 1_000, 5_000).unwrap();
        w.slice(a, "Put", 1_000, 4_000, json!({"key": "foo"}))
            .unwrap();
        w.slice(a, "fsync", 2_000, 1_000, json!({})).unwrap();
        let b = w.lane("client 1", 0, 3_000, 6_000).unwrap();
        assert_ne!(a, b, "an overlapping call goes to a second lane");
        let c = w.lane("client 1", 0, 5_000, 7_000).unwrap();
        assert_eq!(a, c, "the first lane is free again");
        w.instant(a, "loss", 9_000, json!({"count": 3})).unwrap();
        let bytes = w.finish().unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        assert!(events
            .iter()
            .any(|e| e["ph"] == "X" && e["name"] == "Put" && e["dur"] == 4.0));
        assert!(events.iter().any(|e| e["args"]["name"] == "client 1 (2)"));
    }
}
