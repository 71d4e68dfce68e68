//! Recording a real etcd with real eBPF, in a network namespace per test.
#![cfg(feature = "record")]

mod common;

use std::time::Duration;

use common::small_disk::SmallDisk;
use common::uprobes::{bpf_ids_of, still_loaded, BpfIds};
use common::*;
use etcd_trace::capture::{Event, FileKind, IndexState, SyscallKind};

/// The recorder sees the client's requests on :2379, and etcd's WAL writes each followed
/// by an fdatasync, with nothing lost; with `--socket-syscalls`, every socket read and
/// write of etcd's.
fn record_workload(buffer: &str) {
    let rig = Rig::start(&format!("workload-{buffer}"));
    let rec = rig.record(&["--buffer", buffer, "--socket-syscalls"]);
    // A client that keeps one connection open while the others come and go.
    let mut watch = rig
        .in_netns("etcdctl")
        .args(["--endpoints=127.0.0.1:2379", "watch", "--prefix", "/held/"])
        .env("ETCDCTL_API", "3")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..20 {
        rig.etcdctl(&["put", &format!("/held/key-{i}"), &format!("value-{i}")]);
    }
    rig.etcdctl(&["get", "/held/", "--prefix"]);
    rig.etcdctl(&["del", "/held/key-0"]);
    etcd_trace::sandbox::basic_workload(&rig.etcd, &rig.netns).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    etcd_trace::sandbox::signal(watch.id(), 9);
    let _ = watch.wait();
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "recorder failed: {log}");
    assert!(log.contains("lost 0 events"), "{log}");
    // Every event received was parsed and written: the kernel's layout and ours agree
    // for each kind of event, including those built in the ring buffer itself.
    assert!(!log.contains("could not be parsed"), "{log}");
    assert_eq!(
        number_after(&log, "recorded "),
        number_after(&log, "received "),
        "{log}"
    );

    let meta = std::fs::metadata(&rig.capture).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "captures hold secrets"
    );

    let (reader, events) = read_events(&rig.capture);
    assert_eq!(*reader.index_state(), IndexState::Present);
    let packets: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Packet(p) if p.dst.port() == 2379 || p.src.port() == 2379 => Some(p),
            _ => None,
        })
        .collect();
    for key in ["/held/key-7", "/registry/pods/default/web-1", "foo"] {
        assert!(
            packets.iter().any(|p| contains(&p.payload, key.as_bytes())),
            "no client packet carries {key}"
        );
    }
    assert!(
        packets.iter().any(|p| p.flags.syn()),
        "connection setup seen"
    );
    // The long-lived watch connection carried the events of the puts back.
    assert!(packets
        .iter()
        .any(|p| p.src.port() == 2379 && contains(&p.payload, b"value-19")));

    let wal_writes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Syscall(s) if s.file.kind == FileKind::Wal && s.call.is_write() => Some(s),
            _ => None,
        })
        .collect();
    assert!(wal_writes.len() >= 20, "{} WAL writes", wal_writes.len());
    assert!(wal_writes
        .iter()
        .all(|s| s.file.path.starts_with("member/wal/")));
    assert!(
        wal_writes
            .iter()
            .any(|s| contains(&s.data, b"/held/key-3") && contains(&s.data, b"value-3")),
        "a WAL write holds the put's key and value"
    );
    let syncs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Syscall(s)
                if s.file.kind == FileKind::Wal && s.call == SyscallKind::Fdatasync =>
            {
                Some(s)
            }
            _ => None,
        })
        .collect();
    let followed = wal_writes
        .iter()
        .filter(|w| {
            syncs.iter().any(|s| {
                s.fd == w.fd && s.enter_ns >= w.exit_ns && s.enter_ns - w.exit_ns < 1_000_000_000
            })
        })
        .count();
    assert!(
        followed * 10 >= wal_writes.len() * 9,
        "{followed} of {} WAL writes are followed by an fdatasync",
        wal_writes.len()
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Loss(_))));
    // Go polls its sockets with reads that find nothing; those are counted, not recorded.
    let socket_reads = events
        .iter()
        .filter(|e| {
            matches!(e, Event::Syscall(s) if s.file.kind == FileKind::Socket && s.call == SyscallKind::Read)
        })
        .count();
    assert!(socket_reads > 0, "etcd's socket reads are recorded");
    // With their ports, sizes, times and thread (built in the ring buffer itself).
    let sockets: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Syscall(s) if s.file.kind == FileKind::Socket => Some(s),
            _ => None,
        })
        .collect();
    assert!(sockets
        .iter()
        .all(|s| [2379, 2380].contains(&s.file.local_port)
            || [2379, 2380].contains(&s.file.peer_port)));
    assert!(sockets.iter().any(|s| s.file.local_port == 2379
        && s.call == SyscallKind::Write
        && s.ret > 0
        && s.requested >= s.ret as u64
        && s.enter_ns <= s.exit_ns
        && s.pid == rig.etcd.pid()
        && s.tid != 0));
    assert!(!events.iter().any(|e| matches!(e,
        Event::Syscall(s) if s.file.kind == FileKind::Socket && s.ret == -11)));
}

#[test]
fn records_etcd_with_ring_buffer() {
    if skip_without_root() {
        return;
    }
    record_workload("ring");
}

#[test]
fn records_etcd_with_perf_buffer() {
    if skip_without_root() {
        return;
    }
    record_workload("perf");
}

/// A recorder killed mid-run leaves a file that opens by scanning, with the events of
/// the blocks it flushed, and nothing attached to the interface.
#[test]
fn sigkilled_recorder_leaves_a_readable_file_and_nothing_attached() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("sigkill");
    let rec = rig.record(&[]);
    for i in 0..10 {
        rig.etcdctl(&["put", &format!("k{i}"), "v"]);
    }
    // Blocks are flushed at least once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let (_status, _log) = rec.stop(9).unwrap();

    let out = etcd_trace(&["info", "--format", "json", rig.capture.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["index"], "recovered");
    assert!(info["events"].as_u64().unwrap() > 20, "{info}");
    let text = etcd_trace(&["info", rig.capture.to_str().unwrap()]);
    assert!(
        stdout(&text).contains("index        recovered"),
        "{}",
        stdout(&text)
    );
    // The last put came seconds before the kill: all of it is in the file, the end of
    // its connection too (FIN or RST), although nothing followed it: a quiet spell must
    // not keep events back.
    let (_, events) = read_events(&rig.capture);
    let last = events
        .iter()
        .filter_map(|e| match e {
            Event::Packet(p) if p.dst.port() == 2379 && contains(&p.payload, b"k9") => Some(p),
            _ => None,
        })
        .next()
        .expect("the last put's request is in the file");
    let conn: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Packet(p) if p.src == last.src || p.dst == last.src => Some(p),
            _ => None,
        })
        .collect();
    assert!(
        conn.iter()
            .any(|p| p.src == last.src && (p.flags.fin() || p.flags.rst())),
        "the end of the last put's connection: {:?}",
        conn.iter()
            .map(|p| (p.ts_ns, p.src.port(), p.flags, p.payload.len()))
            .collect::<Vec<_>>()
    );

    assert_nothing_on_lo(&rig);
}

/// No TC filter or TCX link of a recorder stays on the rig's `lo`.
fn assert_nothing_on_lo(rig: &Rig) {
    let tc = rig
        .in_netns("tc")
        .args(["filter", "show", "dev", "lo", "egress"])
        .output()
        .unwrap();
    assert!(
        !stdout(&tc).contains("bpf"),
        "a TC filter stayed: {}",
        stdout(&tc)
    );
    let net = rig
        .in_netns("bpftool")
        .args(["net", "show", "dev", "lo"])
        .output()
        .unwrap();
    assert!(
        !stdout(&net).contains("tc_egress"),
        "a TCX link stayed: {}",
        stdout(&net)
    );
}

/// `n` puts of `{prefix}{i}`, each of `size` random bytes, on one connection, with a
/// pause of `every` after each: a capture grows by about twice `size` per put (the
/// request's packets and etcd's WAL write), and random bytes do not compress.
fn put_random(rig: &Rig, prefix: &str, n: usize, size: usize, every: Duration) {
    use std::io::Read;
    let url = rig.etcd.url();
    let prefix = prefix.to_string();
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
    block_on_in_netns(rig, move || async move {
        let mut client = etcd_client::Client::connect([url], None).await.unwrap();
        let mut value = vec![0u8; size];
        for i in 0..n {
            urandom.read_exact(&mut value).unwrap();
            client
                .put(format!("{prefix}{i}"), value.clone(), None)
                .await
                .unwrap();
            tokio::time::sleep(every).await;
        }
    });
}

/// A tmpfs of `size` bytes that only the recorder sees, on `disk/` in the rig's dir.
fn small_disk(rig: &Rig, size: u64) -> SmallDisk {
    let dir = rig.dir.0.join("disk");
    std::fs::create_dir(&dir).unwrap();
    SmallDisk::mount(&dir, size)
}

/// A recorder whose disk fills up stops by itself: it says why in the OS's words, leaves
/// nothing attached, and closes its file, which keeps every whole block, with its index
/// (or, if even that does not fit, readable by scanning, as it says).
#[test]
fn a_full_disk_stops_the_recording_and_keeps_the_file() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("full");
    let disk = small_disk(&rig, 2 << 20);
    let rec = rig.record_with(disk.command(bin()), &disk.dir.join("full.etr"), &[]);
    let held = bpf_ids_of(rec.pid());
    assert!(!held.progs.is_empty(), "the recorder holds its programs");
    // About 6 MB of capture for a 2 MB disk.
    put_random(&rig, "/full/", 100, 32 << 10, Duration::ZERO);
    let (status, log) = rec.wait_for_exit(Duration::from_secs(60)).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "error: writing the capture {}: No space left on device",
            disk.dir.join("full.etr").display()
        )),
        "{log}"
    );
    assert!(log.contains("the eBPF programs are detached"), "{log}");
    // The closing summary follows.
    assert!(log.contains("recorded ") && log.contains("lost "), "{log}");
    assert_eq!(still_loaded(&held), BpfIds::default(), "{log}");
    assert_nothing_on_lo(&rig);

    let path = disk.outside("full.etr");
    let out = etcd_trace(&["info", "--format", "json", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let indexed = log.contains("full.etr is closed with its index");
    if indexed {
        assert_eq!(info["index"], "present", "{log}");
    } else {
        assert!(log.contains("the file opens by scanning"), "{log}");
        assert_eq!(info["index"], "recovered", "{log}");
    }
    let (_, events) = read_events(&path);
    assert_eq!(
        Some(events.len() as u64),
        number_after(&log, "recorded "),
        "{log}"
    );
    // The puts recorded before the disk filled up, from the first one on.
    let puts: Vec<usize> = of(&replay_json(&path, &[]), "/etcdserverpb.KV/Put")
        .iter()
        .map(|r| {
            r["key"].as_str().unwrap()["/full/".len()..]
                .parse()
                .unwrap()
        })
        .collect();
    assert!(puts.len() >= 10, "{puts:?}\n{log}");
    assert_eq!(puts, (0..puts.len()).collect::<Vec<_>>(), "{log}");
}

/// A flight recorder (rotation with --keep) on a full disk removes its oldest files, one
/// at a time, says so, and goes on recording; each file left opens with its index.
#[test]
fn a_flight_recorder_makes_room_on_a_full_disk() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("room");
    let disk = small_disk(&rig, 4 << 20);
    let rec = rig.record_with(
        disk.command(bin()),
        &disk.dir.join("room.etr"),
        &["--rotate-size", "1", "--keep", "20"],
    );
    // About 10 MB of capture, at about 1 MB a second, for a 4 MB disk.
    let puts = 400;
    put_random(&rig, "/room/", puts, 24 << 10, Duration::from_millis(20));
    let log = stop_cleanly(rec);
    assert!(
        log.contains(&format!(
            "disk full: removed the oldest capture {}",
            disk.dir.join("room-0001.etr").display()
        )),
        "{log}"
    );
    assert!(log.contains("to make room on a full disk"), "{log}");
    let files = disk.files();
    assert!(!files.contains(&"room-0001.etr".to_string()), "{files:?}");
    // Every file but the newest reached 1 MiB before the next one started: more of them
    // than the disk holds went through it.
    let newest = files.last().unwrap();
    let number: u64 = newest["room-".len()..newest.len() - ".etr".len()]
        .parse()
        .unwrap();
    assert!(number - 1 > 4, "{files:?}\n{log}");
    // Each file left opens with its index, and the last put, long after the disk first
    // filled up, is in one of them (a file may start or end inside a call, so its
    // request and etcd's WAL write are looked for, not a decoded call).
    let key = format!("/room/{}", puts - 1);
    let mut holds_last = false;
    for f in &files {
        let (reader, events) = read_events(&disk.outside(f));
        assert_eq!(*reader.index_state(), IndexState::Present, "{f}");
        holds_last |= events.iter().any(|e| match e {
            Event::Packet(p) => contains(&p.payload, key.as_bytes()),
            Event::Syscall(s) => contains(&s.data, key.as_bytes()),
            _ => false,
        });
    }
    assert!(holds_last, "{key} is in none of {files:?}\n{log}");
}

/// `info --format json` carries the keys that scripts rely on.
#[test]
fn info_json_has_the_documented_keys() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("info");
    let rec = rig.record(&["--duration", "30s"]);
    rig.etcdctl(&["put", "a", "b"]);
    let (status, log) = rec.stop(15).unwrap();
    assert!(status.success(), "{log}");
    let out = etcd_trace(&["info", "--format", "json", rig.capture.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for key in ["events", "lost", "blocks", "index", "start_ns", "end_ns"] {
        assert!(info.get(key).is_some(), "missing {key}: {info}");
    }
    assert_eq!(info["index"], "present");
    assert_eq!(info["lost"], 0);
    assert!(info["connections"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.ends_with("127.0.0.1:2379")));
    assert!(info["files"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.starts_with("member/wal/")));

    let dump = etcd_trace(&["dump", rig.capture.to_str().unwrap(), "--format", "json"]);
    assert!(dump.status.success());
    let first: serde_json::Value =
        serde_json::from_str(stdout(&dump).lines().next().unwrap()).unwrap();
    assert!(
        first.get("kind").is_some() && first.get("ts_ns").is_some(),
        "{first}"
    );
}

/// --duration stops by itself; rotation with --keep leaves only the newest files.
#[test]
fn duration_and_rotation() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("rotate");
    let rec = rig.record(&["--duration", "4s", "--rotate-time", "1s", "--keep", "2"]);
    for i in 0..5 {
        rig.etcdctl(&["put", &format!("r{i}"), "v"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, log) = {
        // Wait for --duration rather than signalling.
        std::thread::sleep(Duration::from_secs(3));
        rec.stop(0).unwrap()
    };
    assert!(status.success(), "{log}");
    let files: Vec<_> = std::fs::read_dir(&rig.dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rotate-") && n.ends_with(".etr"))
        .collect();
    assert_eq!(files.len(), 2, "kept {files:?}\n{log}");
    for f in files {
        let reader = etcd_trace::capture::CaptureReader::open(rig.dir.0.join(f)).unwrap();
        assert_eq!(*reader.index_state(), IndexState::Present);
    }
}

/// By default only the first socket call of each connection is reported: which process
/// serves it. The WAL and fsync events are all there.
#[test]
fn socket_syscalls_are_one_per_connection_by_default() {
    if skip_without_root() {
        return;
    }
    let events = record_puts("sockfirst", &[], "s");
    let syscalls: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Syscall(s) => Some(s),
            _ => None,
        })
        .collect();
    assert!(syscalls.iter().any(|s| s.file.kind == FileKind::Wal));
    let mut per_socket = std::collections::HashMap::new();
    for s in syscalls.iter().filter(|s| s.file.kind == FileKind::Socket) {
        *per_socket
            .entry((s.pid, s.fd, s.file.local_port, s.file.peer_port))
            .or_insert(0) += 1;
    }
    // Two threads may both make a socket's first call at once (Go reads the client's
    // preface while it writes its settings); each then reports it.
    assert!(
        per_socket.values().all(|&n| n <= 2),
        "more than the first call of a socket: {per_socket:?}"
    );
    // Each etcdctl connection to :2379 is served by a socket the recorder named.
    let clients: std::collections::HashSet<u16> = events
        .iter()
        .filter_map(|e| match e {
            Event::Packet(p) if p.dst.port() == 2379 && p.flags.syn() => Some(p.src.port()),
            _ => None,
        })
        .collect();
    assert!(clients.len() >= 5, "{clients:?}");
    for port in &clients {
        assert!(
            per_socket
                .keys()
                .any(|&(_, _, local, peer)| local == 2379 && peer == *port),
            "no socket event for the connection from port {port}: {per_socket:?}"
        );
    }
}

/// Packets only: no syscall events (the syscall programs run for the latency
/// histograms alone, tests/latency.rs), and the TC programs still see every put.
#[test]
fn syscalls_can_be_left_out() {
    if skip_without_root() {
        return;
    }
    let events = record_puts("nosys", &["--no-syscalls"], "p");
    assert!(!events.iter().any(|e| matches!(e, Event::Syscall(_))));
    for i in 0..5 {
        let key = format!("p{i}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Packet(p) if contains(&p.payload, key.as_bytes()))),
            "no packet carries {key}"
        );
    }
}

/// Record five puts of keys `{prefix}0`..`{prefix}4` with one recorder flag; the events.
fn record_puts(name: &str, flags: &[&str], prefix: &str) -> Vec<Event> {
    let rig = Rig::start(name);
    let rec = rig.record(flags);
    for i in 0..5 {
        rig.etcdctl(&["put", &format!("{prefix}{i}"), "v"]);
    }
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("lost 0 events"), "{log}");
    read_events(&rig.capture).1
}

/// The capture writer (redaction, encoding, compression) runs at idle priority so that
/// it takes no CPU time etcd wants, and like any thread with `--priority normal`; the
/// recording is complete either way.
#[test]
fn the_capture_writer_yields_to_etcd() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("priority");
    for (args, policy) in [
        (&[][..], libc::SCHED_IDLE),
        (&["--priority", "normal"][..], 0),
    ] {
        let rec = rig.record(args);
        let seen = wait_for_policy(rec.pid(), "capture-writer", policy);
        rig.etcdctl(&["put", "prio", "v"]);
        let (status, log) = rec.stop(2).unwrap();
        assert!(status.success(), "{log}");
        assert!(log.contains("lost 0 events"), "{log}");
        assert_eq!(
            seen,
            Some(policy),
            "{args:?}: the writer's scheduling policy"
        );
        let events = read_events(&rig.capture).1;
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Packet(p) if contains(&p.payload, b"prio"))));
    }
}

/// The scheduling policy of the thread of `pid` named `name`, once it is `want` (or
/// what it is after two seconds).
fn wait_for_policy(pid: u32, name: &str, want: i32) -> Option<i32> {
    let mut seen = None;
    for _ in 0..40 {
        seen = std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
            })
            .and_then(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            .and_then(|stat| {
                // policy is field 41; the fields after the command name start at 3.
                let rest = stat.rsplit_once(')')?.1;
                rest.split_whitespace().nth(41 - 3)?.parse().ok()
            });
        if seen == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

/// The number that follows `label` in the recorder's summary.
fn number_after(log: &str, label: &str) -> Option<u64> {
    let at = log.find(label)? + label.len();
    log[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What the programs remember about an fd follows it when it is closed: a process that
/// keeps opening a WAL file and a file outside the data dir, under the same fd number
/// (and often the same kernel file object, which the kernel reuses at once), gets every
/// WAL write recorded, with its path, and none of the others.
#[test]
fn fd_verdicts_follow_closed_fds() {
    use std::io::Write;
    if skip_without_root() {
        return;
    }
    let dir = etcd_trace::sandbox::ScratchDir::new("etcd-trace-test-fdreuse").unwrap();
    let data = dir.0.join("data");
    std::fs::create_dir_all(data.join("member/wal")).unwrap();
    let netns = etcd_trace::sandbox::Netns::create().unwrap();
    // perl (part of every Debian system) makes the system calls as written.
    let script = r#"
        use POSIX;
        my ($wal, $outside) = @ARGV;
        <STDIN>;
        for my $i (1..40) {
            for my $f ([$wal, "in"], [$outside, "out"]) {
                my $fd = POSIX::open($f->[0], O_WRONLY | O_APPEND | O_CREAT, 0600);
                my $line = "$f->[1]-$i\n";
                POSIX::write($fd, $line, length $line);
                POSIX::close($fd);
            }
        }
    "#;
    let mut writer = netns
        .command("perl")
        .args(["-e", script])
        .arg(data.join("member/wal/a.wal"))
        .arg(dir.0.join("outside.txt"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let capture = dir.0.join("fdreuse.etr");
    let args: Vec<String> = [
        "-o",
        capture.to_str().unwrap(),
        "--pid",
        &writer.id().to_string(),
        "--data-dir",
        data.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rec = etcd_trace::sandbox::RecorderProcess::start(&bin(), &args).unwrap();
    writer.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(writer.wait().unwrap().success());
    let (status, log) = rec.stop(2).unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("lost 0 events"), "{log}");

    let (_, events) = read_events(&capture);
    let writes: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Syscall(s) if s.call == SyscallKind::Write => Some((
                s.file.path.clone(),
                String::from_utf8_lossy(&s.data).into_owned(),
            )),
            _ => None,
        })
        .collect();
    let expected: Vec<(String, String)> = (1..=40)
        .map(|i| ("member/wal/a.wal".to_string(), format!("in-{i}\n")))
        .collect();
    assert_eq!(writes, expected);
}
