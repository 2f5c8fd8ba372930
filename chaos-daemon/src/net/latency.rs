//! A latency fault's kernel side (the engine has already refused it when the capability probe
//! found no `sch_fq`, see [`super::probe_fq`]): pick the device, make `fq` its root (shared and journaled, see [`super::devices`]), write the slot's delay
//! parameters with the target cgroup, and attach the slot's tc egress program. Undone in reverse
//! by [`Latency::stop`]; a failure part-way undoes what was done.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use super::{
    devices::{DeviceError, Devices},
    netlink::{Message, NLM_F_DUMP, NetlinkError, Socket, attrs},
};
use crate::{
    ebpf::{
        Kernel, KernelError,
        tc::{TcAttachment, needs_clsact},
    },
    fault::LatencyPlan,
    journal::HostJournal,
    target::ResolvedTarget,
};

/// Why a latency fault cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    /// The kernel cannot delay packets; the reason names the missing feature.
    #[error("latency faults need the fq qdisc, which this kernel cannot run: {0}")]
    Unsupported(String),
    #[error(
        "latency faults change qdiscs, which needs the journal of host changes; it is not open"
    )]
    NoJournal,
    #[error(
        "target: the processes of {cgroup:?} are in another network namespace than the daemon; \
         latency is only supported for targets in the daemon's network namespace"
    )]
    OtherNetns { cgroup: String },
    #[error(
        "fault.interface: none given and the daemon's network namespace has no IPv4 default \
         route; expected a device name"
    )]
    NoDefaultRoute,
    #[error("finding the default route: {0}")]
    Route(NetlinkError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// A running latency fault's device side.
#[derive(Debug)]
pub struct LatencyRun {
    pub interface: String,
    tc: TcAttachment,
}

/// The latency faults' shared state: the devices holding a shared `fq`.
#[derive(Default)]
pub struct Latency {
    devices: Devices,
}

impl Latency {
    /// Devices holding a shared `fq`, with their user counts.
    pub fn devices(&self) -> &Devices {
        &self.devices
    }

    /// Prepares the device (journaled in `journal`) and attaches `slot`'s delay program. The
    /// slot must be disarmed.
    #[expect(
        clippy::too_many_arguments,
        reason = "the engine's parts, each used once"
    )]
    pub fn start(
        &mut self,
        kernel: &mut Kernel,
        journal: &dyn HostJournal,
        slot: u32,
        owner: &str,
        target: &ResolvedTarget,
        cgroup_level: u32,
        plan: &LatencyPlan,
    ) -> Result<LatencyRun, LatencyError> {
        if !same_netns(&target.path) {
            return Err(LatencyError::OtherNetns {
                cgroup: target.path.display().to_string(),
            });
        }
        let interface = match &plan.interface {
            Some(i) => i.clone(),
            None => default_route_device()?,
        };
        self.devices
            .acquire(journal, owner, &interface, plan.max_delay, needs_clsact())?;
        let mut config = plan.config;
        config.cgroup_id = target.id;
        config.cgroup_level = cgroup_level;
        let attached = kernel
            .write_latency(slot, &config)
            .and_then(|()| kernel.attach_tc_egress(slot, &interface));
        match attached {
            Ok(tc) => Ok(LatencyRun { interface, tc }),
            Err(e) => {
                if let Err(undo) = self.devices.release(journal, &interface) {
                    tracing::error!(device = %interface, error = %undo, "restoring after a failed start");
                }
                Err(e.into())
            }
        }
    }

    /// Detaches the program and releases the device (the last user restores its root qdisc).
    /// Both are tried; the first error is returned.
    pub fn stop(&mut self, run: LatencyRun, journal: &dyn HostJournal) -> Result<(), LatencyError> {
        let detached = run.tc.detach();
        let released = self.devices.release(journal, &run.interface);
        detached?;
        released?;
        Ok(())
    }
}

/// Whether the target's first process shares the daemon's network namespace. A cgroup without
/// processes of its own cannot say, and counts as the same.
fn same_netns(cgroup: &Path) -> bool {
    let ns = |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
    let first = std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string));
    match (first, ns("self")) {
        (Some(pid), Ok(own)) => ns(&pid).map_or(true, |theirs| theirs == own),
        _ => true,
    }
}

const RTM_GETROUTE: u16 = 26;
const RTA_OIF: u16 = 4;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;

/// The device of the IPv4 default route of the main table in the daemon's network namespace.
pub fn default_route_device() -> Result<String, LatencyError> {
    let mut sock = Socket::open().map_err(LatencyError::Route)?;
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let mut rtmsg = [0u8; 12];
    rtmsg[0] = libc::AF_INET as u8;
    let replies = sock
        .request(
            Message::new(RTM_GETROUTE, NLM_F_DUMP, &rtmsg),
            "listing routes",
        )
        .map_err(LatencyError::Route)?;
    for r in replies {
        let Some(hdr) = r.get(..12) else { continue };
        if hdr[1] != 0 || hdr[7] != RTN_UNICAST {
            continue;
        }
        let mut table = u32::from(hdr[4]);
        let mut oif = None;
        for (ty, data) in attrs(&r[12..]) {
            let word = data
                .get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            match ty {
                RTA_TABLE => table = word.unwrap_or(table),
                RTA_OIF => oif = word,
                _ => {}
            }
        }
        if table == RT_TABLE_MAIN
            && let Some(index) = oif
            && let Some(name) = ifname(index)
        {
            return Ok(name);
        }
    }
    Err(LatencyError::NoDefaultRoute)
}

fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes the call may write, NUL included.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
