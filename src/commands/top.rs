//! `etcd-trace top FILE`: a terminal dashboard of a capture, redrawn every second, for
//! the incident room. The numbers come from `analyze::top` (a [`Snapshot`] built as
//! events come); this module only feeds it and draws it with ratatui.
//!
//! Two threads: the feeder reads the capture (a finished file, or with `--follow` one
//! being recorded: [`Input`], as the other analyses read it), paces a finished one
//! against the capture's clock at `--speed`, and hands over a snapshot every second;
//! the screen thread draws the newest and reads keys. The terminal is restored however
//! the screen thread leaves: q, Ctrl-C, an error or a panic.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::{DefaultTerminal, Frame};

use super::info::bucket_text;
use super::live::Input;
use crate::analyze::top::{KeyRow, Snapshot, TopOptions, TopState};
use crate::capture::{being_recorded, FollowItem, ReadItem};
use crate::cli::{Format, TopArgs};
use crate::decode::etcdpb;
use crate::output::{human_bytes, human_duration_ns};

/// How often the screen is redrawn (and a snapshot taken).
const REFRESH: Duration = Duration::from_secs(1);

pub fn run(args: TopArgs) -> Result<ExitCode> {
    if !(args.speed.is_finite() && args.speed >= 0.0) {
        bail!(
            "--speed must be 0 (as fast as possible) or more, not {}",
            args.speed
        );
    }
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    if args.prefix_depth == 0 {
        bail!("--prefix-depth must be at least 1");
    }
    if !args.once && args.format == Format::Json {
        bail!("--format json goes with --once (one snapshot); the dashboard is for a terminal");
    }
    let terminal = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if !args.once && !terminal {
        bail!(
            "top draws a dashboard and needs a terminal; without one, print a snapshot of \
             the whole capture with `etcd-trace top {} --once` (add --format json for scripts)",
            args.file.display()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let files = std::slice::from_ref(&args.file);
    // A file a recorder is writing is followed, as if --follow were given.
    let follow = args.follow || being_recorded(&args.file);
    if follow && !args.follow {
        eprintln!(
            "note: a recorder is writing {}: following it (--follow)",
            args.file.display()
        );
    }
    let mut input = Input::open_stopped_by(files, follow, Arc::clone(&stop))?;
    let header = input.header().clone();
    if header.mode.is_api() {
        eprintln!(
            "note: recorded through etcd's API (--mode api): methods as /metrics counted \
             them (no latency), key prefixes from the watch's writes, no clients"
        );
    }
    let options = TopOptions {
        top: args.top,
        prefix_depth: args.prefix_depth,
    };
    let mut state = TopState::new(&header.config.ports, options);
    if let Input::Whole(reader) = &input {
        state.set_kernel_histograms(&reader.index().latency);
    }
    if args.once {
        each_item(&mut input, &mut |item| {
            match item {
                FollowItem::Read(item) => state.push(item),
                FollowItem::Quiet { now_ns } => state.advance(now_ns),
            }
            ControlFlow::Continue(())
        });
        input.end_note();
        state.finish();
        let snap = state.snapshot();
        let mut out = std::io::stdout().lock();
        match args.format {
            Format::Json => writeln!(out, "{}", serde_json::to_string(&snap)?)?,
            Format::Text => write_text(&mut out, &snap)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A capture being recorded comes as it is written: nothing to pace.
    let speed = if args.max_speed || follow {
        0.0
    } else {
        args.speed
    };
    let about = About {
        file: args.file.file_name().map_or_else(
            || args.file.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        speed,
        live: follow,
        duration_ns: match &input {
            Input::Whole(reader) => reader
                .index()
                .time_range()
                .map(|(first, last)| last.saturating_sub(first)),
            Input::Live(_) => None,
        },
        clock_offset_ns: header.clock_offset_ns,
    };
    dashboard(input, state, about, stop)
}

/// Each item of the capture, in file order (a followed capture also says how far its
/// clock has moved while quiet), until `take` says stop or the capture ends. Syscalls
/// matter for their times and kinds only (fsync durations, raft's sockets).
fn each_item(input: &mut Input, take: &mut dyn FnMut(FollowItem) -> ControlFlow<()>) {
    for item in input.items(false) {
        if take(item).is_break() {
            return;
        }
    }
}

/// What the header line says besides the snapshot.
struct About {
    file: String,
    speed: f64,
    /// Followed while it is recorded.
    live: bool,
    duration_ns: Option<u64>,
    clock_offset_ns: i64,
}

/// Plays the capture back against its own clock, `speed` times as fast (0: no waiting).
struct Pacer {
    speed: f64,
    origin: Option<(u64, Instant)>,
}

impl Pacer {
    /// Waits until event time `ts_ns` is due, in steps that let `tick` run at least
    /// once a refresh; false when `stop` was set meanwhile.
    fn wait(&mut self, ts_ns: u64, stop: &AtomicBool, tick: &mut dyn FnMut(u64)) -> bool {
        if self.speed == 0.0 {
            return true;
        }
        let (first, started) = *self.origin.get_or_insert((ts_ns, Instant::now()));
        let due = Duration::from_secs_f64(ts_ns.saturating_sub(first) as f64 / 1e9 / self.speed);
        loop {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            let now = started.elapsed();
            if now >= due {
                return true;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(100)));
            // Where the playback is: the screen's clock moves on between events.
            let played = started.elapsed().as_secs_f64() * self.speed * 1e9;
            tick(first.saturating_add(played as u64));
        }
    }
}

/// The feeder: reads, paces and counts; sends a snapshot each refresh and at the end.
/// Gives the input back, to say after the screen is gone why following ended.
fn feed(
    mut input: Input,
    mut state: TopState,
    speed: f64,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Snapshot>,
) -> Input {
    let mut pacer = Pacer {
        speed,
        origin: None,
    };
    let mut last_sent = Instant::now();
    each_item(&mut input, &mut |item| {
        let item = match item {
            FollowItem::Read(item) => Some(item),
            FollowItem::Quiet { now_ns } => {
                state.advance(now_ns);
                None
            }
        };
        if let Some(item) = item {
            if let ReadItem::Event(ev) = &item {
                let ts = ev.ts_ns();
                // Pacing sends the snapshot as it waits: the screen keeps its clock.
                let mut tick = |position_ns| {
                    if last_sent.elapsed() >= REFRESH {
                        state.advance(position_ns);
                        last_sent = Instant::now();
                        let _ = tx.send(state.snapshot());
                    }
                };
                if !pacer.wait(ts, stop, &mut tick) {
                    return ControlFlow::Break(());
                }
            }
            state.push(item);
        }
        if last_sent.elapsed() >= REFRESH {
            last_sent = Instant::now();
            if tx.send(state.snapshot()).is_err() {
                return ControlFlow::Break(());
            }
        }
        if stop.load(Ordering::Relaxed) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    if !stop.load(Ordering::Relaxed) {
        state.finish();
        let _ = tx.send(state.snapshot());
    }
    input
}

/// Puts the terminal back as it was: on drop, so also on an error or a panic.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

fn dashboard(
    input: Input,
    state: TopState,
    about: About,
    stop: Arc<AtomicBool>,
) -> Result<ExitCode> {
    let (tx, rx) = mpsc::channel();
    let feeder = {
        let stop = Arc::clone(&stop);
        let speed = about.speed;
        std::thread::Builder::new()
            .name("top-feeder".into())
            .spawn(move || feed(input, state, speed, &stop, &tx))
            .context("starting the capture reader")?
    };
    // ratatui::init also restores the terminal before a panic's message is printed.
    let result = {
        let _guard = TerminalGuard;
        let mut terminal = ratatui::init();
        screen(&mut terminal, &rx, &about, &stop)
    };
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    if let Ok(input) = feeder.join() {
        // Quitting ends following too: say why only when it ended by itself.
        if !input.interrupted() {
            input.end_note();
        }
    }
    result.map(|()| ExitCode::SUCCESS)
}

fn screen(
    terminal: &mut DefaultTerminal,
    rx: &mpsc::Receiver<Snapshot>,
    about: &About,
    stop: &AtomicBool,
) -> Result<()> {
    let mut latest: Option<Snapshot> = None;
    let mut dirty = true;
    loop {
        // A followed capture's SIGTERM.
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        while let Ok(s) = rx.try_recv() {
            latest = Some(s);
            dirty = true;
        }
        if dirty {
            terminal.draw(|f| draw(f, latest.as_ref(), about))?;
            dirty = false;
        }
        if event::poll(Duration::from_millis(200))? {
            match event::read()? {
                TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
                TermEvent::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
}

/// `KV/Put` for `/etcdserverpb.KV/Put`; other paths as they are.
fn short_method(path: &str) -> String {
    match etcdpb::method(path) {
        Some(m) => format!(
            "{}/{}",
            m.service.rsplit('.').next().unwrap_or(m.service),
            m.method
        ),
        None => path.to_string(),
    }
}

/// `text` in at most `width` columns: cut with `…` when longer.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

fn ns(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), human_duration_ns)
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// A line of phrases, each kept whole: those that do not fit in `width` columns are left
/// out (with `…` to say so), so no word is cut at the edge.
fn phrases(items: Vec<(Style, String)>, width: usize) -> Line<'static> {
    let items: Vec<_> = items.into_iter().filter(|(_, t)| !t.is_empty()).collect();
    let mut used = 0;
    let mut spans = Vec::new();
    let total = items.len();
    for (i, (style, text)) in items.into_iter().enumerate() {
        let gap = usize::from(i > 0) * 2;
        let len = text.chars().count() + gap;
        // Room for the ellipsis unless this is the last phrase.
        let reserve = usize::from(i + 1 < total) * 3;
        if used + len + reserve > width && !(i + 1 == total && used + len <= width) {
            if i > 0 {
                spans.push(Span::raw("  …"));
            } else {
                // Not even the first phrase fits: its start, said to be cut.
                spans.push(Span::styled(fit(&text, width), style));
            }
            break;
        }
        if gap > 0 {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled(text, style));
        used += len;
    }
    Line::from(spans)
}

/// The header: file, where the playback is, wall time, speed.
fn header_line(snap: Option<&Snapshot>, about: &About, width: usize) -> Line<'static> {
    let mut items = vec![(bold(), format!("etcd-trace top {}", about.file))];
    if let Some(s) = snap {
        let mut at = format!("+{:.0}s", s.elapsed_s);
        if let Some(d) = about.duration_ns {
            at.push_str(&format!(" of {:.0}s", d as f64 / 1e9));
        }
        items.push((Style::default(), at));
    }
    items.push((Style::default(), playback_state(snap, about)));
    if let Some(s) = snap {
        let wall = i128::from(s.now_ns) + i128::from(about.clock_offset_ns);
        if let Ok(wall) = u64::try_from(wall) {
            let t = std::time::UNIX_EPOCH + Duration::from_nanos(wall);
            let text = humantime::format_rfc3339_seconds(t).to_string();
            // Narrow screens get the time of day only (UTC).
            let text = match text.split_once('T') {
                Some((_, time)) if width < 100 => format!("{} UTC", time.trim_end_matches('Z')),
                _ => text,
            };
            items.push((Style::default(), text));
        }
    }
    items.push((Style::default(), "q quits".to_string()));
    phrases(items, width)
}

fn playback_state(snap: Option<&Snapshot>, about: &About) -> String {
    match snap {
        Some(s) if s.finished => "end of capture".to_string(),
        _ if about.live => "following".to_string(),
        _ if about.speed == 0.0 => "max speed".to_string(),
        _ => format!("x{}", about.speed),
    }
}

/// Disk, then raft, one phrase each.
fn status_items(s: &Snapshot) -> [Vec<(Style, String)>; 2] {
    let raft = match (&s.raft.leader, s.raft.term) {
        (Some(l), Some(t)) => format!(
            "leader {l} term {t}, {} election{}",
            s.raft.elections,
            if s.raft.elections == 1 { "" } else { "s" }
        ),
        _ if s.raft.peer_connections > 0 => "leader not seen yet".to_string(),
        _ => "no peer traffic".to_string(),
    };
    [
        vec![
            (
                Style::default(),
                format!(
                    "WAL fsync p99 {} ({} calls)",
                    ns(s.wal_fsync.p99_ns),
                    s.wal_fsync.count
                ),
            ),
            (
                Style::default(),
                s.kernel_wal_sync
                    .as_ref()
                    .and_then(|k| k.p99)
                    .map_or_else(String::new, |b| format!("in kernel p99 {}", bucket_text(b))),
            ),
            (
                Style::default(),
                format!("backend fsync p99 {}", ns(s.backend_fsync.p99_ns)),
            ),
        ],
        vec![(Style::default(), format!("raft: {raft}"))],
    ]
}

/// What was lost, one phrase per kind.
fn loss_items(s: &Snapshot) -> Vec<String> {
    let l = &s.losses;
    let mut parts = Vec::new();
    if l.kernel_lost > 0 {
        parts.push(format!("{} events in the kernel", l.kernel_lost));
    }
    if l.damaged_regions > 0 {
        parts.push(format!(
            "{} unreadable regions ({} events)",
            l.damaged_regions, l.damaged_events
        ));
    }
    if l.gap_bytes > 0 {
        parts.push(format!("{} in TCP gaps", human_bytes(l.gap_bytes)));
    }
    if l.calls_with_gaps > 0 {
        parts.push(format!("{} calls with gaps", l.calls_with_gaps));
    }
    if parts.is_empty() {
        parts.push("none".to_string());
    }
    parts
}

fn draw(f: &mut Frame, snap: Option<&Snapshot>, about: &About) {
    let area = f.area();
    let [head, disk, raft, losses, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    let width = area.width as usize;
    f.render_widget(Paragraph::new(header_line(snap, about, width)), head);
    let Some(s) = snap else {
        f.render_widget(Paragraph::new("reading the capture…"), disk);
        return;
    };
    let [disk_items, raft_items] = status_items(s);
    f.render_widget(Paragraph::new(phrases(disk_items, width)), disk);
    f.render_widget(Paragraph::new(phrases(raft_items, width)), raft);
    let lost: Vec<(Style, String)> = loss_items(s)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            (
                Style::default(),
                if i == 0 { format!("lost: {p}") } else { p },
            )
        })
        .collect();
    f.render_widget(Paragraph::new(phrases(lost, width)), losses);
    // Methods take up to a third of what is left (at least 3 rows), the lists the rest.
    let method_rows = s.methods.len().clamp(1, (body.height as usize / 3).max(3));
    let [methods, lists] = Layout::vertical([
        Constraint::Length(method_rows as u16 + 2),
        Constraint::Min(0),
    ])
    .areas(body);
    draw_methods(f, s, methods);
    if lists.width >= 120 {
        let [a, b, c] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(lists);
        draw_keys(f, "Clients by requests", &s.clients_by_requests, a, true);
        draw_keys(f, "Clients by bytes", &s.clients_by_bytes, b, false);
        draw_keys(f, "Key prefixes", &s.prefixes, c, true);
    } else {
        let [left, right] = Layout::horizontal([Constraint::Ratio(1, 2); 2]).areas(lists);
        let [a, b] = Layout::vertical([Constraint::Ratio(1, 2); 2]).areas(left);
        draw_keys(f, "Clients by requests", &s.clients_by_requests, a, true);
        draw_keys(f, "Clients by bytes", &s.clients_by_bytes, b, false);
        draw_keys(f, "Key prefixes", &s.prefixes, right, true);
    }
}

/// A titled block with a rule above it: one line, no side borders to spend columns on.
fn titled(title: String) -> Block<'static> {
    Block::default()
        .borders(Borders::TOP)
        .title(Span::styled(title, bold()))
}

/// A table: a text column as wide as `text_width` allows, then right-aligned number
/// columns of the given widths.
fn table<'a>(
    title: &str,
    heads: (&str, &[(&str, u16)]),
    rows: impl Iterator<Item = (String, Vec<String>)>,
    area: Rect,
    max_text: u16,
) -> Table<'a> {
    let (text_head, all_nums) = heads;
    // Number columns that do not fit are left out, never narrowed: a number cut short
    // would read as another number. Two columns spare on the right keep a table apart
    // from its neighbour.
    const MIN_TEXT: u16 = 6;
    let mut fixed = 0;
    let fitting = all_nums
        .iter()
        .take_while(|(_, w)| {
            fixed += w + 1;
            MIN_TEXT + fixed + 2 <= area.width
        })
        .count();
    let nums = &all_nums[..fitting];
    let fixed: u16 = nums.iter().map(|(_, w)| w + 1).sum();
    let text_width = area
        .width
        .saturating_sub(fixed + 2)
        .clamp(MIN_TEXT, max_text);
    let right = |s: String| Cell::from(Line::from(s).alignment(Alignment::Right));
    let header = Row::new(
        std::iter::once(Cell::from(text_head.to_string()))
            .chain(nums.iter().map(|(h, _)| right(h.to_string())))
            .collect::<Vec<_>>(),
    )
    .style(bold());
    let body: Vec<Row> = rows
        .map(|(text, numbers)| {
            Row::new(
                std::iter::once(Cell::from(fit(&text, text_width as usize)))
                    .chain(numbers.into_iter().take(fitting).map(right))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let widths: Vec<Constraint> = std::iter::once(Constraint::Length(text_width))
        .chain(nums.iter().map(|(_, w)| Constraint::Length(*w)))
        .collect();
    Table::new(body, widths)
        .header(header)
        .block(titled(fit(title, area.width as usize)))
}

fn draw_methods(f: &mut Frame, s: &Snapshot, area: Rect) {
    const NUMS: [(&str, u16); 5] = [
        ("req/s", 7),
        ("total", 8),
        ("errors", 6),
        ("p50", 10),
        ("p99", 10),
    ];
    let rows = s.methods.iter().map(|m| {
        (
            short_method(&m.method),
            vec![
                rate(m.rate_per_s),
                m.requests.to_string(),
                m.errors.to_string(),
                ns(m.p50_ns),
                ns(m.p99_ns),
            ],
        )
    });
    let title = format!(
        "Methods (req/s over the last {} s; latency since start)",
        s.rate_window_s
    );
    f.render_widget(table(&title, ("method", &NUMS), rows, area, 40), area);
}

/// A top list: key, then req/s and requests (`by_rate`), or bytes.
fn draw_keys(f: &mut Frame, title: &str, rows: &[KeyRow], area: Rect, by_rate: bool) {
    let nums: &[(&str, u16)] = if by_rate {
        &[("req/s", 7), ("total", 8)]
    } else {
        &[("bytes", 9)]
    };
    let head = if title.starts_with("Key") {
        "prefix"
    } else {
        "address"
    };
    let rows = rows.iter().map(|r| {
        let numbers = if by_rate {
            vec![rate(r.rate_per_s), r.requests.to_string()]
        } else {
            vec![human_bytes(r.bytes)]
        };
        (r.key.clone(), numbers)
    });
    f.render_widget(table(title, (head, nums), rows, area, 48), area);
}

/// `--once` as text: the same sections as the screen, every row.
fn write_text(out: &mut dyn Write, s: &Snapshot) -> std::io::Result<()> {
    writeln!(
        out,
        "{:.1}s of capture, {} events; rates over the last {} s",
        s.elapsed_s, s.events, s.rate_window_s
    )?;
    writeln!(
        out,
        "\n{:<32} {:>8} {:>8} {:>6} {:>10} {:>10} {:>10}",
        "method", "req/s", "total", "errors", "bytes", "p50", "p99"
    )?;
    for m in &s.methods {
        writeln!(
            out,
            "{:<32} {:>8} {:>8} {:>6} {:>10} {:>10} {:>10}",
            short_method(&m.method),
            rate(m.rate_per_s),
            m.requests,
            m.errors,
            human_bytes(m.bytes),
            ns(m.p50_ns),
            ns(m.p99_ns)
        )?;
    }
    for (title, rows) in [
        ("clients by requests", &s.clients_by_requests),
        ("clients by bytes", &s.clients_by_bytes),
        ("key prefixes", &s.prefixes),
    ] {
        writeln!(
            out,
            "\n{:<40} {:>8} {:>8} {:>10}",
            title, "req/s", "total", "bytes"
        )?;
        for r in rows {
            writeln!(
                out,
                "{:<40} {:>8} {:>8} {:>10}",
                r.key,
                rate(r.rate_per_s),
                r.requests,
                human_bytes(r.bytes)
            )?;
        }
    }
    writeln!(out)?;
    for (what, f) in [
        ("WAL fsync", &s.wal_fsync),
        ("backend fsync", &s.backend_fsync),
    ] {
        writeln!(
            out,
            "{what}: {} calls, p50 {}, p99 {}, max {}",
            f.count,
            ns(f.p50_ns),
            ns(f.p99_ns),
            ns(f.max_ns)
        )?;
    }
    if let Some(k) = &s.kernel_wal_sync {
        let p99 = k.p99.map_or_else(|| "-".to_string(), bucket_text);
        let p99 = format!("p99 {p99}");
        writeln!(
            out,
            "WAL fsync in the kernel, whole recording: {} calls, {p99}",
            k.count
        )?;
    }
    let raft = match (&s.raft.leader, s.raft.term) {
        (Some(l), Some(t)) => format!(
            "leader {l} in term {t}, {} elections seen",
            s.raft.elections
        ),
        _ => format!(
            "no leader seen ({} peer connections)",
            s.raft.peer_connections
        ),
    };
    writeln!(out, "raft: {raft}")?;
    writeln!(out, "lost: {}", loss_items(s).join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::top::{FsyncRow, Losses, MethodRow, RaftRow};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn snapshot() -> Snapshot {
        let method = |name: &str, p50, p99| MethodRow {
            method: format!("/etcdserverpb.{name}"),
            requests: 1234,
            rate_per_s: 12.5,
            bytes: 99_000,
            errors: 3,
            latency_count: 1000,
            p50_ns: Some(p50),
            p99_ns: Some(p99),
        };
        let row = |key: &str| KeyRow {
            key: key.to_string(),
            requests: 77,
            rate_per_s: 1.5,
            bytes: 123_456,
        };
        let fsync = FsyncRow {
            count: 10,
            p50_ns: Some(500_000),
            p99_ns: Some(2_000_000),
            max_ns: Some(3_000_000),
        };
        Snapshot {
            start_ns: 0,
            now_ns: 30_000_000_000,
            elapsed_s: 30.0,
            rate_window_s: 10,
            prefix_depth: 2,
            events: 5000,
            finished: false,
            api_mode: false,
            methods: vec![
                method("KV/Range", 1_340_000, 101_410_000),
                method("Lease/LeaseKeepAlive", 233_500, 557_100),
            ],
            clients_by_requests: vec![row("10.0.0.1"), row("fd00::1234:5678:9abc:def0")],
            clients_by_bytes: vec![row("10.0.0.1")],
            prefixes: vec![row("/registry/pods/"), row("/registry/events/kube-system/")],
            wal_fsync: fsync.clone(),
            backend_fsync: fsync,
            kernel_wal_sync: None,
            raft: RaftRow {
                leader: Some("69d88a3f5ae88b6f".into()),
                term: Some(3),
                elections: 1,
                peer_connections: 2,
            },
            losses: Losses {
                kernel_lost: 12,
                gap_bytes: 4096,
                ..Losses::default()
            },
        }
    }

    /// At any size, a latency on the screen is one of the snapshot's whole: none is cut
    /// into another number.
    #[test]
    fn numbers_are_shown_whole_or_not_at_all() {
        let snap = snapshot();
        let whole: Vec<String> = snap
            .methods
            .iter()
            .flat_map(|m| [ns(m.p50_ns), ns(m.p99_ns)])
            .chain([ns(snap.wal_fsync.p99_ns)])
            .collect();
        let about = About {
            file: "incident.etr".into(),
            speed: 1.0,
            live: false,
            duration_ns: Some(60_000_000_000),
            clock_offset_ns: 0,
        };
        for (w, h) in [(20, 6), (30, 10), (50, 14), (80, 24), (120, 30), (200, 50)] {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal.draw(|f| draw(f, Some(&snap), &about)).unwrap();
            let buffer = terminal.backend().buffer();
            for y in 0..h {
                let line: String = (0..w).map(|x| buffer[(x, y)].symbol()).collect();
                for (at, _) in line.match_indices(" ms").chain(line.match_indices(" µs")) {
                    let unit_end = at
                        + line[at..]
                            .chars()
                            .take(3)
                            .map(char::len_utf8)
                            .sum::<usize>();
                    let shown = &line[..unit_end];
                    assert!(
                        whole.iter().any(|v| shown.ends_with(v.as_str())),
                        "{w}x{h}: a cut number in {line:?}"
                    );
                }
            }
        }
    }
}
