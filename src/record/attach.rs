//! Attaching the TC programs to interfaces. TCX links come first: the kernel removes them
//! when the recorder exits, even on SIGKILL. Kernels without TCX get a classic clsact
//! filter instead, which survives a crash, so it is removed on every exit path (Drop) and
//! the clsact qdisc too when we created it.

use std::os::fd::AsFd;
use std::ptr::NonNull;

use anyhow::{anyhow, Context, Result};
use libbpf_rs::{Link, ProgramMut, TcHook, TcHookBuilder, TC_EGRESS, TC_INGRESS};

use super::system::Interface;

/// Which way packets cross the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Ingress,
    Egress,
}

enum Mechanism {
    Tcx(#[allow(dead_code)] Link),
    Clsact {
        hook: TcHook,
        created_qdisc: bool,
        ifindex: i32,
    },
}

/// One TC program attached to one interface; detached when dropped.
pub struct TcAttachment {
    pub interface: String,
    pub hook: Hook,
    mechanism: Mechanism,
}

impl TcAttachment {
    pub fn mechanism_name(&self) -> &'static str {
        match self.mechanism {
            Mechanism::Tcx(_) => "tcx",
            Mechanism::Clsact { .. } => "clsact",
        }
    }
}

const FILTER_HANDLE: u32 = 0xe7cd;
const FILTER_PRIORITY: u32 = 0xe7cd;

pub fn attach(prog: &ProgramMut<'_>, iface: &Interface, hook: Hook) -> Result<TcAttachment> {
    let ifindex = iface.ifindex as i32;
    match attach_tcx(prog, ifindex) {
        Ok(link) => Ok(TcAttachment {
            interface: iface.name.clone(),
            hook,
            mechanism: Mechanism::Tcx(link),
        }),
        Err(tcx_err) => {
            let mechanism = attach_clsact(prog, ifindex, hook).with_context(|| {
                format!(
                    "attaching to {} {:?} (TCX failed too: {tcx_err})",
                    iface.name, hook
                )
            })?;
            Ok(TcAttachment {
                interface: iface.name.clone(),
                hook,
                mechanism,
            })
        }
    }
}

/// The direction comes from the program's expected attach type, which the recorder
/// sets before loading (TcxIngress / TcxEgress): the skeleton declares both as "tc".
fn attach_tcx(prog: &ProgramMut<'_>, ifindex: i32) -> Result<Link> {
    use libbpf_rs::AsRawLibbpf;
    // SAFETY: the program pointer is valid for the skeleton's lifetime; a null opts
    // pointer means defaults.
    let raw = unsafe {
        libbpf_sys::bpf_program__attach_tcx(
            prog.as_libbpf_object().as_ptr(),
            ifindex,
            std::ptr::null(),
        )
    };
    match NonNull::new(raw) {
        // SAFETY: libbpf handed us ownership of a valid link.
        Some(ptr) => Ok(unsafe { Link::from_ptr(ptr) }),
        None => Err(anyhow!("{}", std::io::Error::last_os_error())),
    }
}

fn attach_clsact(prog: &ProgramMut<'_>, ifindex: i32, hook: Hook) -> Result<Mechanism> {
    // Create the clsact qdisc ourselves to learn whether it was there before.
    let mut raw_hook = libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex,
        attach_point: libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS,
        ..Default::default()
    };
    // SAFETY: the hook struct is fully initialised and lives across the call.
    let err = unsafe { libbpf_sys::bpf_tc_hook_create(&mut raw_hook) };
    let created_qdisc = match err {
        0 => true,
        e if -e == libc::EEXIST => false,
        e => {
            return Err(anyhow!(
                "creating clsact qdisc: {}",
                std::io::Error::from_raw_os_error(-e)
            ))
        }
    };
    let mut hook_obj = TcHookBuilder::new(prog.as_fd())
        .ifindex(ifindex)
        .replace(true)
        .handle(FILTER_HANDLE)
        .priority(FILTER_PRIORITY)
        .hook(match hook {
            Hook::Ingress => TC_INGRESS,
            Hook::Egress => TC_EGRESS,
        });
    match hook_obj.attach() {
        Ok(h) => Ok(Mechanism::Clsact {
            hook: h,
            created_qdisc,
            ifindex,
        }),
        Err(e) => {
            if created_qdisc {
                destroy_clsact(ifindex);
            }
            Err(e.into())
        }
    }
}

fn destroy_clsact(ifindex: i32) {
    let mut raw_hook = libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex,
        attach_point: libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS,
        ..Default::default()
    };
    // SAFETY: as in attach_clsact.
    unsafe { libbpf_sys::bpf_tc_hook_destroy(&mut raw_hook) };
}

impl Drop for TcAttachment {
    fn drop(&mut self) {
        if let Mechanism::Clsact {
            hook,
            created_qdisc,
            ifindex,
        } = &mut self.mechanism
        {
            let _ = hook.detach();
            if *created_qdisc {
                destroy_clsact(*ifindex);
            }
        }
    }
}
