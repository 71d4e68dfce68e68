//! Uprobes on Go's crypto/tls in each traced etcd process. On a TLS etcd (every
//! Kubernetes control plane) the TC programs see only ciphertext; the plaintext passes
//! through `crypto/tls.(*Conn).Write` and `Read`, where these probes take it: in the
//! processes traced at the start, and in each etcd that starts while recording (its
//! probes are dropped when it ends). A process whose binary cannot be probed is named
//! with the reason, and recording goes on without its plaintext.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use libbpf_rs::skel::Skel;
use libbpf_rs::Link;

use super::go_binary::{self, TlsProbeSites};
use super::skel::EtcdTraceSkel;
use super::system::EtcdProcess;

/// What the probes of one process came to, for the start-up messages and the summary.
#[derive(Debug, Clone)]
pub struct TlsProbeOutcome {
    pub pid: u32,
    /// Attached: the Go version and how the functions were found; or why not.
    pub result: std::result::Result<String, String>,
}

impl TlsProbeOutcome {
    /// Say it on stderr.
    pub fn report(&self) {
        match &self.result {
            Ok(how) => eprintln!("TLS plaintext of etcd pid {}: probed ({how})", self.pid),
            Err(why) => eprintln!(
                "note: TLS plaintext of etcd pid {} is not captured: {why}; its packets are \
                 still recorded",
                self.pid
            ),
        }
    }
}

/// The uprobe links of each traced process (detached when dropped), and the probe sites
/// of each binary seen, found once per binary.
#[derive(Default)]
pub struct TlsProbes {
    links: HashMap<u32, Vec<Link>>,
    sites_of: HashMap<(u64, u64), std::result::Result<TlsProbeSites, String>>,
}

/// The executable a process runs, as the kernel sees it: the magic link works for a
/// process in another mount namespace (a container) too.
fn executable(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/exe"))
}

impl TlsProbes {
    /// Find the probe sites in the process's binary (once per binary) and attach; the
    /// process's earlier probes (etcd exec'd again) are dropped first.
    pub fn attach(&mut self, skel: &EtcdTraceSkel<'_>, p: &EtcdProcess) -> TlsProbeOutcome {
        self.detach(p.pid);
        let exe = executable(p.pid);
        let sites = match binary_id(&exe) {
            Ok(id) => self
                .sites_of
                .entry(id)
                .or_insert_with(|| go_binary::find_tls_probe_sites(&exe).map_err(|e| e.to_string()))
                .clone(),
            Err(e) => Err(format!("{e:#}")),
        };
        let result = sites.and_then(|sites| {
            let mut links = Vec::new();
            match attach_sites(skel, p.pid, &exe, &sites, &mut links) {
                Ok(()) => {
                    self.links.insert(p.pid, links);
                    Ok(format!(
                        "{}, found by {}",
                        sites.go_version.as_deref().unwrap_or("Go version unknown"),
                        sites.found_by
                    ))
                }
                Err(e) => Err(format!("{e:#}")),
            }
        });
        TlsProbeOutcome { pid: p.pid, result }
    }

    /// Drop the probes of a process (it ended, or exec'd again). Detaching a uprobe waits
    /// for the kernel (1.7 s for a process's 17 probes here), so they are dropped on a
    /// thread of their own: the drain loop goes on, and probes an etcd started in the
    /// dead one's place at once.
    pub fn detach(&mut self, pid: u32) {
        if let Some(links) = self.links.remove(&pid) {
            // Should the thread not start, the links are dropped here.
            let _ = std::thread::Builder::new()
                .name("uprobe-detach".into())
                .spawn(move || drop(links));
        }
    }

    /// Drop every probe.
    pub fn detach_all(&mut self) {
        self.links.clear();
    }
}

/// (device, inode) of the binary: several members on one host usually run one file.
fn binary_id(exe: &std::path::Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(exe).with_context(|| format!("reading {}", exe.display()))?;
    Ok((meta.dev(), meta.ino()))
}

fn attach_sites(
    skel: &EtcdTraceSkel<'_>,
    pid: u32,
    exe: &std::path::Path,
    sites: &TlsProbeSites,
    links: &mut Vec<Link>,
) -> Result<()> {
    let pid = i32::try_from(pid).context("pid out of range")?;
    // Each program, and where it goes.
    // Read's copy into the caller's buffer where it has one, else its returns.
    let copies = !sites.read_copies.is_empty();
    let sites_of = |name: &str| -> Vec<(u64, &'static str)> {
        match name {
            "tls_write_enter" => vec![(sites.write_probe, "(*Conn).Write")],
            "tls_read_enter" => vec![(sites.read_probe, "(*Conn).Read")],
            "tls_read_copy" if copies => sites
                .read_copies
                .iter()
                .map(|&o| (o, "(*Conn).Read's copy"))
                .collect(),
            "tls_read_return" if !copies => sites
                .read_returns
                .iter()
                .map(|&o| (o, "a RET of (*Conn).Read"))
                .collect(),
            _ => Vec::new(),
        }
    };
    for prog in skel.object().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        for (offset, what) in sites_of(&name) {
            let offset = usize::try_from(offset).context("probe offset out of range")?;
            let link = prog
                .attach_uprobe(false, pid, exe, offset)
                .with_context(|| {
                    format!("attaching a uprobe at {what} (file offset {offset:#x})")
                })?;
            links.push(link);
        }
    }
    Ok(())
}

/// True for the uprobe programs (loaded only when TLS plaintext is captured).
pub fn is_tls_program(section: &std::ffi::OsStr) -> bool {
    section.as_encoded_bytes().starts_with(b"uprobe")
}
