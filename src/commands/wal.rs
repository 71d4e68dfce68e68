//! `etcd-trace wal PATH`: the WAL records etcd wrote, as etcd's own etcd-dump-logs shows
//! entries. From a capture, they are decoded from the captured writes, with the time of
//! each. From a WAL on disk (a `member/wal` directory, a member dir or a data dir), the
//! segment files are read in order and the CRC chain is checked across them; where it
//! breaks is said on stderr, with what follows the break.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::open_capture;
use crate::analyze::member::Member;
use crate::analyze::wal_log::{log_record, WalDetail, WalLog, WalLogOutput, WalLogRecord};
use crate::capture::ReadItem;
use crate::cli::{Format, WalArgs};
use crate::decode::etcdpb::describe_range;
use crate::decode::wal::{
    BreakKind, SegmentChain, SegmentDecode, SegmentEnd, SegmentName, WalError, WalPayload,
    MAX_SEGMENT_BYTES,
};
use crate::output::offset;

pub fn run(args: WalArgs) -> Result<ExitCode> {
    let on_disk = match &args.files[..] {
        [one] => find_segments(one)?,
        _ => None,
    };
    match on_disk {
        Some(wal) => run_dir(&args, &wal),
        None => run_capture(&args),
    }
}

/// Records to stdout, as text or JSON lines, counted.
struct Printer<W: Write> {
    out: W,
    format: Format,
    all: bool,
    /// The capture's first timestamp, for text times.
    start: u64,
    /// Several members: text names whose each record is.
    several: bool,
    entries: u64,
    states: u64,
}

impl<W: Write> Printer<W> {
    fn new(out: W, args: &WalArgs, start: u64, several: bool) -> Result<Self> {
        let mut p = Printer {
            out,
            format: args.format,
            all: args.all,
            start,
            several,
            entries: 0,
            states: 0,
        };
        if p.format == Format::Text {
            writeln!(p.out, "{}", header_line(several))?;
        }
        Ok(p)
    }

    fn record(&mut self, r: &WalLogRecord) -> Result<()> {
        match r.detail {
            WalDetail::Entry { .. } => self.entries += 1,
            WalDetail::HardState { .. } => self.states += 1,
            _ => {}
        }
        if !self.all && !matches!(r.detail, WalDetail::Entry { .. }) {
            return Ok(());
        }
        match self.format {
            Format::Json => writeln!(self.out, "{}", serde_json::to_string(r)?)?,
            Format::Text => writeln!(self.out, "{}", text_line(r, self.start, self.several))?,
        }
        Ok(())
    }
}

fn run_capture(args: &WalArgs) -> Result<ExitCode> {
    let reader = open_capture(&args.files)?;
    super::note_api_mode(reader.header(), "wal");
    let start = reader.index().time_range().map_or(0, |(first, _)| first);
    // Members traced together are told apart in text (JSON always says whose).
    let several = reader.header().processes.len() > 1;
    let mut log = WalLog::new();
    let stdout = BufWriter::new(std::io::stdout().lock());
    let mut printer = Printer::new(stdout, args, start, several)?;
    let mut buf = WalLogOutput::default();
    let mut problems = 0u64;
    let mut emit = |buf: &mut WalLogOutput, printer: &mut Printer<_>| -> Result<()> {
        for r in buf.records.drain(..) {
            printer.record(&r)?;
        }
        for p in buf.problems.drain(..) {
            problems += 1;
            if several {
                eprintln!("note: {} {}: {}", p.member, p.file, p.what);
            } else {
                eprintln!("note: {}: {}", p.file, p.what);
            }
        }
        Ok(())
    };
    for item in reader.events() {
        match item {
            ReadItem::Event(ev) => {
                log.push(&ev, &mut buf);
                emit(&mut buf, &mut printer)?;
            }
            ReadItem::Damaged(d) => eprintln!("warning: {d}"),
        }
    }
    log.finish(&mut buf);
    emit(&mut buf, &mut printer)?;
    printer.out.flush()?;
    eprintln!(
        "{} entries, {} hard states, {problems} stretches not decoded",
        printer.entries, printer.states
    );
    Ok(ExitCode::SUCCESS)
}

/// A member's WAL on disk: its directory and segment files in sequence order.
struct WalDir {
    dir: PathBuf,
    segments: Vec<(SegmentName, PathBuf)>,
    /// Other files in the directory (`0.tmp`, the next segment being prepared, ...).
    ignored: Vec<String>,
}

/// The WAL that `path` names, if it names one rather than a capture: a segment file, a
/// directory of them, or a directory with `wal/` or `member/wal/` below it.
fn find_segments(path: &Path) -> Result<Option<WalDir>> {
    if path.is_file() {
        let name = path.file_name().and_then(|n| n.to_str());
        let Some(segment) = name.and_then(SegmentName::parse) else {
            return Ok(None);
        };
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok(Some(WalDir {
            dir,
            segments: vec![(segment, path.to_path_buf())],
            ignored: Vec::new(),
        }));
    }
    if !path.is_dir() {
        return Ok(None);
    }
    for dir in [
        path.to_path_buf(),
        path.join("wal"),
        path.join("member/wal"),
    ] {
        if !dir.is_dir() {
            continue;
        }
        let wal = list_segments(&dir)?;
        if !wal.segments.is_empty() {
            return Ok(Some(wal));
        }
    }
    bail!(
        "{}: no WAL segment files (<seq>-<index>.wal) in it, nor in wal/ or member/wal/ below it",
        path.display()
    )
}

fn list_segments(dir: &Path) -> Result<WalDir> {
    let mut wal = WalDir {
        dir: dir.to_path_buf(),
        segments: Vec::new(),
        ignored: Vec::new(),
    };
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match SegmentName::parse(&name) {
            Some(segment) if entry.path().is_file() => wal.segments.push((segment, entry.path())),
            _ => wal.ignored.push(name),
        }
    }
    wal.segments.sort();
    wal.ignored.sort();
    Ok(wal)
}

/// All of a segment file, or why it was not read (too large to be one).
fn read_segment(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SEGMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_SEGMENT_BYTES {
        bail!(
            "{}: more than the {MAX_SEGMENT_BYTES} bytes a segment can hold; not read",
            path.display()
        );
    }
    Ok(bytes)
}

fn run_dir(args: &WalArgs, wal: &WalDir) -> Result<ExitCode> {
    let stdout = BufWriter::new(std::io::stdout().lock());
    let mut printer = Printer::new(stdout, args, 0, false)?;
    if !wal.ignored.is_empty() {
        eprintln!(
            "note: {}: not segment files, ignored: {}",
            wal.dir.display(),
            wal.ignored.join(", ")
        );
    }
    let mut chain = SegmentChain::new();
    let mut member = Member::default();
    let mut breaks = 0usize;
    let mut torn_tail = false;
    for (i, (name, path)) in wal.segments.iter().enumerate() {
        let is_last = i + 1 == wal.segments.len();
        let bytes = match read_segment(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                printer.out.flush()?;
                eprintln!("chain: {e:#}");
                breaks += 1;
                continue;
            }
        };
        let decoded = chain.next(*name, &bytes);
        let len = bytes.len() as u64;
        drop(bytes);
        if member.id.is_none() {
            member = member_of(&decoded).unwrap_or(member);
        }
        let file = path.display().to_string();
        let SegmentDecode {
            records,
            breaks: found,
            end,
            ..
        } = decoded;
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        for r in records {
            printer.record(&log_record(member, &file, None, r))?;
        }
        printer.out.flush()?;
        for b in &found {
            let after = match (&b.kind, b.resumes_at) {
                (BreakKind::MissingSegments { .. }, _) => {
                    "this file's head crc cannot be checked".to_string()
                }
                (BreakKind::NoCrcHead { .. }, _) => "its records are read on".to_string(),
                (_, Some(at)) => {
                    let n = offsets.iter().filter(|o| **o >= at).count();
                    format!("valid records resume at offset {at} ({n} records from there)")
                }
                (_, None) => "nothing valid follows in this file".to_string(),
            };
            eprintln!(
                "chain: {file}: breaks at offset {}: {}; {after}",
                b.offset, b.kind
            );
        }
        breaks += found.len();
        if let SegmentEnd::Tail {
            offset,
            bytes,
            error,
        } = end
        {
            let why = match error {
                WalError::TornWrite { sector_offset } => {
                    format!("an all-zero sector at offset {sector_offset}")
                }
                other => other.to_string(),
            };
            let rest = if offset.saturating_add(bytes) < len {
                "then zeros to the end of the file"
            } else {
                "up to the end of the file"
            };
            if is_last {
                torn_tail = true;
                eprintln!(
                    "chain: {file}: torn write at the end of the last file: {bytes} bytes \
                     after the last good record (offset {offset}) make no record ({why}), \
                     {rest}; etcd discards them when it opens the WAL"
                );
            } else {
                breaks += 1;
                eprintln!(
                    "chain: {file}: breaks at offset {offset}: {bytes} bytes make no record \
                     ({why}), {rest}, and nothing valid follows in this file"
                );
            }
        }
    }
    printer.out.flush()?;
    let files = match (wal.segments.first(), wal.segments.last()) {
        (Some((first, _)), Some((last, _))) if first.seq != last.seq => format!(
            "{} segment files (sequence {} to {})",
            wal.segments.len(),
            first.seq,
            last.seq
        ),
        (Some((first, _)), _) => format!("1 segment file (sequence {})", first.seq),
        _ => "no segment file".to_string(),
    };
    let purged = if wal.segments.first().is_some_and(|(n, _)| n.seq > 0) {
        " (earlier segments purged: the first one's head cannot be checked)"
    } else {
        ""
    };
    let verdict = match (breaks, torn_tail) {
        (0, false) => "CRC chain intact".to_string(),
        (0, true) => "CRC chain intact up to a torn write at the end".to_string(),
        (1, _) => "CRC chain broken in 1 place".to_string(),
        (n, _) => format!("CRC chain broken in {n} places"),
    };
    eprintln!(
        "{files}{purged}, {} entries, {} hard states, member {member}: {verdict}",
        printer.entries, printer.states,
    );
    Ok(if breaks == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The member a segment's metadata record names.
fn member_of(decoded: &SegmentDecode) -> Option<Member> {
    decoded
        .records
        .iter()
        .find_map(|r| match r.record.decode() {
            Ok(WalPayload::Metadata(m)) if m.node_id != 0 && r.crc_ok != Some(false) => {
                Some(Member::with_id(m.node_id))
            }
            _ => None,
        })
}

fn header_line(several: bool) -> String {
    let member = if several {
        format!(" {:<16}", "member")
    } else {
        String::new()
    };
    format!(
        "{:>13}{member} {:>6} {:>8}  {:<6} data",
        "time", "term", "index", "type"
    )
}

/// One record as a line under [`header_line`]: the time of its write (`-` for a WAL
/// read from disk), whose it is when `several`, then as etcd-dump-logs shows it.
fn text_line(r: &WalLogRecord, start: u64, several: bool) -> String {
    let time = r
        .write_ts_ns
        .map_or_else(|| "-".to_string(), |ts| offset(ts, start, 6));
    let mut time = format!("{time:>13}");
    if several {
        time.push_str(&format!(" {:<16}", r.member.to_string()));
    }
    match &r.detail {
        WalDetail::Entry {
            term,
            index,
            entry_type,
            request,
        } => {
            let data = match request {
                Some(q) => {
                    let mut s = format!("{} {}", q.op, describe_range(&q.key, &q.range_end));
                    if let Some(v) = q.value_len {
                        s.push_str(&format!(" value {v} B"));
                    }
                    if let Some(l) = q.lease.filter(|l| *l != 0) {
                        s.push_str(&format!(" lease {l:x}"));
                    }
                    if q.id != 0 {
                        s.push_str(&format!(" (request {:x})", q.id));
                    }
                    s
                }
                None if *entry_type == "normal" => "(empty: a new leader's first entry)".into(),
                None => String::new(),
            };
            let short = match *entry_type {
                "normal" => "norm",
                "conf_change" => "conf",
                "conf_change_v2" => "confv2",
                other => other,
            };
            format!("{time} {term:>6} {index:>8}  {short:<6} {data}")
        }
        WalDetail::HardState { term, vote, commit } => {
            format!(
                "{time} {term:>6} {:>8}  state  vote {vote:x} commit {commit}",
                ""
            )
        }
        WalDetail::Snapshot { term, index } => {
            format!("{time} {term:>6} {index:>8}  snap")
        }
        WalDetail::Other => format!("{time} {:>6} {:>8}  {}", "", "", r.record),
        WalDetail::Undecodable { reason } => {
            format!(
                "{time} {:>6} {:>8}  {} (undecodable: {reason})",
                "", "", r.record
            )
        }
    }
}
