//! Everything one recording attaches, held together so that one call detaches it all
//! before the last drain: the programs attached as BPF links (tracepoints, the TLS
//! uprobes of each process) and the TC attachments.

use anyhow::{Context, Result};
use libbpf_rs::skel::Skel;
use libbpf_rs::Link;

use super::attach::{self, Hook, TcAttachment};
use super::load::{captures_tls, is_process_program, is_syscall_program};
use super::options::RecordOptions;
use super::skel::EtcdTraceSkel;
use super::targets::Targets;
use super::uprobes::{TlsProbeOutcome, TlsProbes};

/// The programs attached: BPF links (the tracepoint programs', and any other program
/// attached through a libbpf link), the TLS probes and TC attachments, detached when
/// dropped.
pub(super) struct Attached {
    links: Vec<Link>,
    /// The TLS probes of each traced process (none when TLS is not captured).
    pub(super) tls: TlsProbes,
    tc: Vec<TcAttachment>,
    /// "lo Egress (tcx)" and the like, for the summary.
    pub(super) names: Vec<String>,
    /// What the TLS probes of each process traced at the start came to.
    pub(super) tls_outcomes: Vec<TlsProbeOutcome>,
}

impl Attached {
    pub(super) fn attach(
        skel: &EtcdTraceSkel<'_>,
        opts: &RecordOptions,
        targets: &Targets,
    ) -> Result<Attached> {
        // The process programs first: a process that starts from here on is traced.
        let mut links = tracepoint_links(skel, is_process_program)?;
        // Also without syscall events (--no-syscalls): the programs keep the latency
        // histograms.
        links.extend(tracepoint_links(skel, is_syscall_program)?);
        // After the syscall programs, which learn the TLS connections' sockets.
        let mut tls = TlsProbes::default();
        let mut tls_outcomes = Vec::new();
        if captures_tls(opts) {
            for p in &targets.processes {
                tls_outcomes.push(tls.attach(skel, p));
            }
        }
        let tc = tc_attachments(skel, targets)?;
        let names: Vec<String> = tc
            .iter()
            .map(|a| format!("{} {:?} ({})", a.interface, a.hook, a.mechanism_name()))
            .collect();
        Ok(Attached {
            links,
            tls,
            tc,
            names,
            tls_outcomes,
        })
    }

    /// Detach everything (idempotent): nothing new arrives after this.
    pub(super) fn detach(&mut self) {
        self.links.clear();
        self.tls.detach_all();
        self.tc.clear();
    }
}

/// The programs of this kind that are loaded, each on its tracepoint.
fn tracepoint_links(
    skel: &EtcdTraceSkel<'_>,
    kind: fn(&std::ffi::OsStr) -> bool,
) -> Result<Vec<Link>> {
    let mut links: Vec<Link> = Vec::new();
    for prog in skel.object().progs_mut() {
        if kind(prog.section()) && prog.autoload() {
            links.push(
                prog.attach()
                    .with_context(|| format!("attaching tracepoint program {:?}", prog.name()))?,
            );
        }
    }
    Ok(links)
}

/// The TC programs on each traced interface.
fn tc_attachments(skel: &EtcdTraceSkel<'_>, targets: &Targets) -> Result<Vec<TcAttachment>> {
    let mut tc: Vec<TcAttachment> = Vec::new();
    for i in &targets.ifaces {
        if !i.loopback {
            tc.push(attach::attach(&skel.progs.tc_ingress, i, Hook::Ingress)?);
        }
        // On lo every segment passes egress then ingress: egress alone sees each once.
        tc.push(attach::attach(&skel.progs.tc_egress, i, Hook::Egress)?);
    }
    Ok(tc)
}
