//! What is attached to a program's binary with uprobes, machine-wide, and which eBPF
//! programs and links a process holds: to show that a recorder leaves nothing behind.
//!
//! A uprobe can be seen in three places, and each is read:
//! - tracefs `uprobe_events`: probes made by writing there (libbpf does so only on kernels
//!   without the uprobe PMU); they stay after their maker dies unless it removes them.
//! - `bpftool perf list`: every perf event that some process holds an fd of with an eBPF
//!   program on it (how libbpf attaches uprobes: one perf event per probe, with a link or
//!   not); gone when the last fd is closed.
//! - `bpftool link list`: uprobe_multi links (one link, many probes).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// One uprobe (or uretprobe) on a binary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Uprobe {
    /// Where it was seen: `uprobe_events`, `bpftool perf` or `bpftool link`.
    pub source: &'static str,
    /// The process that holds it, where that is known (for `uprobe_events`, from
    /// libbpf's naming of the probes it makes, `libbpf_<pid>_...`).
    pub pid: Option<u32>,
    /// `uprobe`, `uretprobe`, `uprobe_multi`, or the `uprobe_events` line's `p`/`r`.
    pub kind: String,
    /// The binary as the probe names it.
    pub file: String,
    /// Where in the file; for a uprobe_multi link, which has many, the link's id.
    pub offset: u64,
}

/// Every uprobe attached to `binary` (any path that names the same file counts),
/// machine-wide, sorted.
pub fn uprobes_on(binary: &Path) -> Vec<Uprobe> {
    let same_file = |file: &str| {
        file == binary.to_string_lossy()
            || match (std::fs::metadata(file), std::fs::metadata(binary)) {
                (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                _ => false,
            }
    };
    let mut found: Vec<Uprobe> = uprobe_events()
        .into_iter()
        .chain(bpftool_perf())
        .chain(bpftool_uprobe_links())
        // A link that does not say its file may be on this binary.
        .filter(|u| u.file.is_empty() || same_file(&u.file))
        .collect();
    found.sort();
    found
}

/// The probes in tracefs `uprobe_events`. Read where tracefs is mounted; where it is
/// not, it is mounted in a private mount namespace made for the read, so that the
/// machine's mounts never change and nothing is left to unmount.
fn uprobe_events() -> Vec<Uprobe> {
    let mounted = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .map(|dir| Path::new(dir).join("uprobe_events"))
        .find(|f| f.exists());
    let text = match mounted {
        Some(file) => std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display())),
        None => {
            let script = "mount -t tracefs tracefs /sys/kernel/tracing && \
                          cat /sys/kernel/tracing/uprobe_events";
            output_of(&mut super::sh_in_private_mount_ns(script))
        }
    };
    text.lines().filter_map(parse_uprobe_event).collect()
}

/// `p:uprobes/libbpf_1234_etcd_0x1f00_0 /usr/bin/etcd:0x0000000000001f00 [args]`, the
/// location maybe followed by `(0x<ref_ctr>)`.
fn parse_uprobe_event(line: &str) -> Option<Uprobe> {
    let mut words = line.split_whitespace();
    let (kind, name) = words.next()?.split_once(':')?;
    let (file, offset) = words.next()?.rsplit_once(':')?;
    let offset = offset.split('(').next()?.trim_start_matches("0x");
    let event = name.rsplit('/').next()?;
    let pid = event
        .strip_prefix("libbpf_")
        .and_then(|rest| rest.split('_').next()?.parse().ok());
    Some(Uprobe {
        source: "uprobe_events",
        pid,
        kind: kind.to_string(),
        file: file.to_string(),
        offset: u64::from_str_radix(offset, 16).ok()?,
    })
}

/// What `command` prints; it must succeed. A listing can fail when an object it is
/// walking goes away meanwhile (other tests' recorders detach in parallel): tried again
/// a few times first.
fn output_of(command: &mut Command) -> String {
    let mut out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    for _ in 0..5 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        out = command
            .output()
            .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    }
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bpftool_json(args: &[&str]) -> Value {
    let text = output_of(Command::new("bpftool").arg("--json").args(args));
    // bpftool prints nothing at all for an empty `link list` on some versions.
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bpftool {args:?}: {e}: {text}"))
}

fn bpftool_perf() -> Vec<Uprobe> {
    let list = bpftool_json(&["perf", "list"]);
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|e| matches!(e["fd_type"].as_str(), Some("uprobe" | "uretprobe")))
        .map(|e| Uprobe {
            source: "bpftool perf",
            pid: e["pid"].as_u64().map(|p| p as u32),
            kind: e["fd_type"].as_str().unwrap_or_default().to_string(),
            file: e["filename"].as_str().unwrap_or_default().to_string(),
            offset: e["offset"].as_u64().unwrap_or_default(),
        })
        .collect()
}

/// uprobe_multi links, one entry per link (their paths where bpftool says them).
fn bpftool_uprobe_links() -> Vec<Uprobe> {
    // BPF_LINK_TYPE_UPROBE_MULTI, which bpftools older than the kernel print as a number.
    const UPROBE_MULTI: u64 = 12;
    let links = bpftool_json(&["link", "list"]);
    links
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["type"] == "uprobe_multi" || l["type"].as_u64() == Some(UPROBE_MULTI))
        .map(|l| Uprobe {
            source: "bpftool link",
            pid: l["pids"][0]["pid"].as_u64().map(|p| p as u32),
            kind: "uprobe_multi".into(),
            file: l["path"].as_str().unwrap_or_default().to_string(),
            offset: l["id"].as_u64().unwrap_or_default(),
        })
        .collect()
}

/// The ids of the eBPF programs and links a process holds fds of, and of the programs
/// behind its links (from its fdinfo).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BpfIds {
    pub progs: BTreeSet<u64>,
    pub links: BTreeSet<u64>,
}

pub fn bpf_ids_of(pid: u32) -> BpfIds {
    let mut ids = BpfIds::default();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("listing the fds of {pid}: {e}"));
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if !matches!(
            target.to_string_lossy().as_ref(),
            "anon_inode:bpf-prog" | "anon_inode:bpf_link"
        ) {
            continue;
        }
        // A program's fdinfo says its prog_id; a link's its link_id and its program's.
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        for line in info.lines() {
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            let set = match field {
                "prog_id" => &mut ids.progs,
                "link_id" => &mut ids.links,
                _ => continue,
            };
            set.extend(value.trim().parse::<u64>().ok());
        }
    }
    ids
}

/// The ids of every eBPF program and link loaded on the machine now.
pub fn loaded_bpf_ids() -> BpfIds {
    let ids = |args: &[&str]| -> BTreeSet<u64> {
        bpftool_json(args)
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["id"].as_u64())
            .collect()
    };
    BpfIds {
        progs: ids(&["prog", "list"]),
        links: ids(&["link", "list"]),
    }
}

/// What of `held` (the programs and links of a recorder that has ended) is still loaded
/// after up to five seconds: the kernel lets go of what a dead process held soon, not at
/// once.
pub fn still_loaded(held: &BpfIds) -> BpfIds {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let loaded = loaded_bpf_ids();
        let left = BpfIds {
            progs: held.progs.intersection(&loaded.progs).copied().collect(),
            links: held.links.intersection(&loaded.links).copied().collect(),
        };
        if left == BpfIds::default() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
