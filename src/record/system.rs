//! What the recorder learns from the running system: etcd processes and their data
//! dirs, network interfaces, privileges, host facts and the clock offset for the header.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A running etcd process.
#[derive(Debug, Clone)]
pub struct EtcdProcess {
    pub pid: u32,
    pub cmdline: Vec<String>,
    /// Absolute data dir, resolved against the process's working directory.
    pub data_dir: Option<PathBuf>,
}

fn cmdline_of(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn env_var_of(pid: u32, name: &str) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    raw.split(|&b| b == 0)
        .map(String::from_utf8_lossy)
        .find_map(|kv| kv.strip_prefix(&prefix).map(str::to_string))
}

/// `--data-dir X`, `--data-dir=X` (one or two dashes), else ETCD_DATA_DIR, else etcd's
/// default `<name>.etcd` (name from `--name`, default "default").
fn data_dir_arg(cmdline: &[String]) -> Option<String> {
    flag_value(cmdline, "data-dir")
}

fn flag_value(cmdline: &[String], flag: &str) -> Option<String> {
    let mut it = cmdline.iter().skip(1);
    while let Some(arg) = it.next() {
        let name = arg.trim_start_matches('-');
        if !arg.starts_with('-') {
            continue;
        }
        if let Some(v) = name.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
        if name == flag {
            return it.next().cloned();
        }
    }
    None
}

impl EtcdProcess {
    pub fn inspect(pid: u32) -> Result<EtcdProcess> {
        let cmdline = cmdline_of(pid)
            .with_context(|| format!("no process with pid {pid} (reading /proc/{pid}/cmdline)"))?;
        let dir = data_dir_arg(&cmdline)
            .or_else(|| env_var_of(pid, "ETCD_DATA_DIR"))
            .unwrap_or_else(|| {
                let name = flag_value(&cmdline, "name")
                    .or_else(|| env_var_of(pid, "ETCD_NAME"))
                    .unwrap_or_else(|| "default".into());
                format!("{name}.etcd")
            });
        let dir = PathBuf::from(dir);
        let data_dir = if dir.is_absolute() {
            Some(dir)
        } else {
            fs::read_link(format!("/proc/{pid}/cwd"))
                .ok()
                .map(|cwd| cwd.join(dir))
        };
        Ok(EtcdProcess {
            pid,
            cmdline,
            data_dir,
        })
    }
}

impl EtcdProcess {
    /// Whether the process's data dir is `dir`: the same directory (device and inode,
    /// looked up through the process's root, so that an etcd in a container matches the
    /// host's path), or, while it does not exist, the same path.
    pub fn has_data_dir(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(own) = &self.data_dir else {
            return false;
        };
        let seen = Path::new(&format!("/proc/{}/root", self.pid))
            .join(own.strip_prefix("/").unwrap_or(own));
        match (fs::metadata(&seen), fs::metadata(dir)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => own == dir,
        }
    }
}

/// Every process whose executable name is `etcd`.
pub fn find_etcd_processes() -> Result<Vec<EtcdProcess>> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "etcd" {
            if let Ok(p) = EtcdProcess::inspect(pid) {
                found.push(p);
            }
        }
    }
    found.sort_by_key(|p| p.pid);
    Ok(found)
}

/// A network interface of this network namespace.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub up: bool,
    pub loopback: bool,
    /// Link-layer header length at TC: 14 for Ethernet-like devices (and lo), 0 for
    /// devices that carry bare IP.
    pub l2_len: u32,
}

const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

/// The interfaces of the calling thread's network namespace. Asks the kernel through
/// if_nameindex and ioctls rather than /sys/class/net, which shows the namespace sysfs
/// was mounted in, not the one we may have entered with setns.
pub fn interfaces() -> Result<Vec<Interface>> {
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        bail!(
            "socket for interface queries: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: raw is a fresh, valid fd.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry, freed below.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        bail!("listing interfaces: {}", std::io::Error::last_os_error());
    }
    let mut i = 0;
    loop {
        // SAFETY: within the array until the terminating zero entry.
        let entry = unsafe { &*list.add(i) };
        if entry.if_index == 0 || entry.if_name.is_null() {
            break;
        }
        // SAFETY: if_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.if_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifreq is plain data; the ioctls fill it.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req
            .ifr_name
            .iter_mut()
            .zip(name.bytes().take(libc::IFNAMSIZ - 1))
        {
            *dst = src as libc::c_char;
        }
        // SAFETY: a valid socket and ifreq.
        let flags = if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } == 0 {
            // SAFETY: SIOCGIFFLAGS filled the flags member.
            i32::from(unsafe { req.ifr_ifru.ifru_flags })
        } else {
            0
        };
        // SAFETY: as above; SIOCGIFHWADDR fills the hardware address, whose family is
        // the ARPHRD link type.
        let link_type =
            if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } == 0 {
                unsafe { req.ifr_ifru.ifru_hwaddr.sa_family }
            } else {
                ARPHRD_ETHER
            };
        out.push(Interface {
            name,
            ifindex: entry.if_index,
            up: flags & libc::IFF_UP != 0,
            loopback: flags & libc::IFF_LOOPBACK != 0,
            l2_len: if link_type == ARPHRD_ETHER || link_type == ARPHRD_LOOPBACK {
                14
            } else {
                0
            },
        });
        i += 1;
    }
    // SAFETY: the list came from if_nameindex.
    unsafe { libc::if_freenameindex(list) };
    out.sort_by_key(|i| i.ifindex);
    Ok(out)
}

/// While alive, the calling thread is in another network namespace; dropping it returns
/// to the original one. TC attachment and interface lookups follow the thread's
/// namespace, so etcd in a container is recorded on its own interfaces.
pub struct NetnsGuard {
    original: std::os::fd::OwnedFd,
}

fn netns_inode(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| m.ino())
}

/// Enter the network namespace of `pid` when it differs from ours.
pub fn enter_netns_of(pid: u32) -> Result<Option<NetnsGuard>> {
    let theirs = format!("/proc/{pid}/ns/net");
    if netns_inode(&theirs) == netns_inode("/proc/thread-self/ns/net") {
        return Ok(None);
    }
    let original =
        fs::File::open("/proc/thread-self/ns/net").context("opening our network namespace")?;
    let target = fs::File::open(&theirs)
        .with_context(|| format!("opening the network namespace of pid {pid}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns with a valid namespace fd affects only this thread.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "entering the network namespace of pid {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(Some(NetnsGuard {
        original: original.into(),
    }))
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as in enter_netns_of.
        unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

/// Capabilities the recorder needs, by bit number in CapEff.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fail early, saying which capability is missing and how to run the recorder.
pub fn check_privileges() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| cap_eff & (1u64 << bit) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !missing.is_empty() {
        bail!(
            "recording needs {} (loading eBPF programs, tracing syscalls, attaching to \
             interfaces). Run it as root (`sudo etcd-trace record ...`) or grant the \
             capabilities: `sudo setcap cap_bpf,cap_perfmon,cap_net_admin+ep $(which etcd-trace)`",
            missing.join(", ")
        );
    }
    Ok(())
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

pub fn hostname() -> String {
    read_trimmed(Path::new("/proc/sys/kernel/hostname")).unwrap_or_default()
}

pub fn kernel_release() -> String {
    read_trimmed(Path::new("/proc/sys/kernel/osrelease")).unwrap_or_default()
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// CLOCK_MONOTONIC now, the clock of bpf_ktime_get_ns().
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// (wall-clock ns − monotonic ns), measured as the median of a few tight samples so that
/// a preemption between the two reads does not skew it.
pub fn clock_offset_ns() -> (i64, u64) {
    let mut samples: Vec<(i128, i128)> = (0..5)
        .map(|_| {
            let a = clock_ns(libc::CLOCK_MONOTONIC);
            let w = clock_ns(libc::CLOCK_REALTIME);
            let b = clock_ns(libc::CLOCK_MONOTONIC);
            (b - a, w - (a + b) / 2)
        })
        .collect();
    samples.sort();
    let offset = samples[0].1 as i64;
    let wall = clock_ns(libc::CLOCK_REALTIME) as u64;
    (offset, wall)
}

/// The kernel's dev_t encoding (MKDEV: major << 20 | minor) of a userspace st_dev, as
/// `inode->i_sb->s_dev` holds it.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | minor
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn data_dir_forms() {
        assert_eq!(
            data_dir_arg(&args(&["etcd", "--data-dir", "/d"])).as_deref(),
            Some("/d")
        );
        assert_eq!(
            data_dir_arg(&args(&["etcd", "--data-dir=/e", "--name", "x"])).as_deref(),
            Some("/e")
        );
        assert_eq!(
            data_dir_arg(&args(&["etcd", "-data-dir", "rel"])).as_deref(),
            Some("rel")
        );
        assert_eq!(data_dir_arg(&args(&["etcd", "--name", "n"])), None);
        assert_eq!(
            flag_value(&args(&["etcd", "--name", "n"]), "name").as_deref(),
            Some("n")
        );
    }

    #[test]
    fn this_machine_has_a_loopback() {
        let ifs = interfaces().unwrap();
        assert!(ifs.iter().any(|i| i.loopback && i.name == "lo"));
    }

    #[test]
    fn clock_offset_maps_monotonic_to_now() {
        let (offset, wall) = clock_offset_ns();
        let mono = monotonic_ns() as i128;
        let now = mono + offset as i128;
        assert!((now - wall as i128).abs() < 1_000_000_000);
    }
}
