//! The kernel side of the faults paced by `fq` on one device, latency and bandwidth limit (the
//! engine has already refused them when the capability probe found no `sch_fq`, see
//! [`super::probe_fq`]). When planned ([`resolve`]): find the target's
//! network namespace (a pod's own, or the daemon's) and pick the device there (the given one,
//! or the one of the namespace's IPv4 default route). When armed ([`Latency::start`]): make
//! `fq` its root (shared and journaled, see [`super::devices`]), write the slot's delay or rate
//! parameters with the target cgroup, and attach the slot's tc egress program (delay or rate) in that
//! namespace. Undone in reverse by [`Latency::stop`]; a failure part-way undoes what was done.

use std::path::Path;

use super::{
    devices::{DeviceError, Devices},
    netlink::{Message, NLM_F_DUMP, NetlinkError, Socket, attrs},
    netns::{self, Netns},
};
use crate::{
    cgroupfs,
    ebpf::{
        Kernel, KernelError,
        tc::{TcAttachment, needs_clsact},
    },
    error::{Classify, ErrorClass},
    fault::LatencyPlan,
    journal::HostJournal,
    target::ResolvedTarget,
};

/// Why a latency fault cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    #[error(
        "latency faults change qdiscs, which needs the journal of host changes; it is not open"
    )]
    NoJournal,
    #[error(
        "target: the processes of {cgroup:?} are in more than one network namespace ({first} \
         and {second}); a latency, silent egress loss or HTTP error fault acts on one namespace's devices, \
         expected a target whose processes share one (a pod, a container, a process tree)"
    )]
    ManyNetns {
        cgroup: String,
        first: String,
        second: String,
    },
    #[error(
        "fault.interface: none given and the target {cgroup:?} has no process, so its network \
         namespace is unknown; the daemon does not put fq on its own default-route device (the \
         node's main interface) on a guess: start the workload first, or name the device \
         (--interface)"
    )]
    NoProcesses { cgroup: String },
    #[error("target: reading the processes of {cgroup:?}: {source}")]
    Procs {
        cgroup: String,
        source: std::io::Error,
    },
    #[error(
        "fault.interface: none given and the target's network namespace {netns} has no IPv4 \
         default route; expected a device name"
    )]
    NoDefaultRoute { netns: String },
    #[error("entering the target's network namespace {netns}: {source}")]
    Netns {
        netns: String,
        source: std::io::Error,
    },
    #[error("finding the default route: {0}")]
    Route(NetlinkError),
    #[error("listing the network devices: {0}")]
    Links(NetlinkError),
    #[error(
        "target: its network namespace {netns} has {count} devices without a master; a silent \
         egress drop or HTTP error fault attaches to each and allows at most {max}: target a pod \
         or container (its own namespace), or for packet loss use the visible egress drop \
         (--visible-drop), which needs no device"
    )]
    TooManyDevices {
        netns: String,
        count: usize,
        max: usize,
    },
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

impl Classify for LatencyError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Device(DeviceError::NoDevice { .. })
            | Self::NoDefaultRoute { .. }
            | Self::NoProcesses { .. } => ErrorClass::Invalid,
            Self::ManyNetns { .. }
            | Self::TooManyDevices { .. }
            | Self::Device(DeviceError::Unrestorable { .. }) => ErrorClass::Refused,
            _ => ErrorClass::Internal,
        }
    }
}

/// Where a latency fault acts, resolved when it is planned.
#[derive(Debug)]
pub struct LatencyTarget {
    /// The delay parameters, the slot's target cgroups filled in.
    pub plan: LatencyPlan,
    /// The target's network namespace.
    pub netns: Netns,
    /// The device in it.
    pub interface: String,
}

impl LatencyTarget {
    /// The device as the journal names it, for the plan shown to the user.
    pub fn device(&self) -> String {
        super::netns::device_path(&self.netns, &self.interface)
    }
}

/// Finds the namespace and device of a latency fault on `target` (`plan`'s configuration holds
/// the slot's target cgroups).
pub fn resolve(plan: LatencyPlan, target: &ResolvedTarget) -> Result<LatencyTarget, LatencyError> {
    let (netns, interface) = match (target_netns(&target.path)?, &plan.interface) {
        (Some(netns), Some(i)) => (netns, i.clone()),
        (None, Some(i)) => (own_netns()?, i.clone()),
        // Without a process the namespace is unknown; the daemon's own default-route device
        // is the node's main interface, whose root qdisc is not ours to swap on a guess.
        (None, None) => {
            return Err(LatencyError::NoProcesses {
                cgroup: target.path.display().to_string(),
            });
        }
        (Some(netns), None) => {
            let interface =
                netns
                    .run(default_route_device)
                    .map_err(|source| LatencyError::Netns {
                        netns: netns.to_string(),
                        source,
                    })??;
            (netns, interface)
        }
    };
    Ok(LatencyTarget {
        plan,
        netns,
        interface,
    })
}

/// A running latency fault's device side.
#[derive(Debug)]
pub struct LatencyRun {
    pub interface: String,
    /// The namespace `interface` is in.
    pub netns: Netns,
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

    /// The shared device table, for the other tc faults (silent loss: `clsact` only).
    pub fn devices_mut(&mut self) -> &mut Devices {
        &mut self.devices
    }

    /// Prepares the device (journaled in `journal`) and attaches `slot`'s delay program. The
    /// slot must be disarmed.
    pub fn start(
        &mut self,
        kernel: &mut Kernel,
        journal: &dyn HostJournal,
        slot: u32,
        owner: &str,
        target: LatencyTarget,
    ) -> Result<LatencyRun, LatencyError> {
        let LatencyTarget {
            plan,
            netns,
            interface,
        } = target;
        let entered = |source| LatencyError::Netns {
            netns: netns.to_string(),
            source,
        };
        self.devices
            .acquire(journal, owner, &netns, &interface, plan.max_delay)?;
        let clsact = needs_clsact();
        let attached = (if clsact {
            self.devices
                .acquire_clsact(journal, owner, &netns, &interface)
                .map_err(LatencyError::from)
        } else {
            Ok(())
        })
        .and_then(|()| kernel.write_tc(slot, &plan.config).map_err(Into::into))
        .and_then(|()| {
            netns
                .run(|| kernel.attach_tc_egress(plan.program, slot, &interface))
                .map_err(entered)?
                .map_err(Into::into)
        });
        match attached {
            Ok(tc) => {
                tracing::info!(device = %interface, %netns, slot, program = plan.program.describe(), "paced program attached");
                Ok(LatencyRun {
                    interface,
                    netns,
                    tc,
                })
            }
            Err(e) => {
                let released = self
                    .devices
                    .release_clsact(journal, &netns, &interface)
                    .and_then(|()| self.devices.release(journal, &netns, &interface));
                if let Err(undo) = released {
                    tracing::error!(device = %interface, error = %undo, "restoring after a failed start");
                }
                Err(e)
            }
        }
    }

    /// Detaches the program and releases the device (the last user restores its root qdisc).
    /// Both are tried; the first error is returned.
    pub fn stop(&mut self, run: LatencyRun, journal: &dyn HostJournal) -> Result<(), LatencyError> {
        let LatencyRun {
            interface,
            netns,
            tc,
        } = run;
        // A legacy cls_bpf filter is removed over netlink, in the device's namespace.
        let detached = netns
            .run(|| tc.detach())
            .map_err(|source| LatencyError::Netns {
                netns: netns.to_string(),
                source,
            });
        let released = self
            .devices
            .release_clsact(journal, &netns, &interface)
            .and_then(|()| self.devices.release(journal, &netns, &interface));
        detached??;
        released?;
        Ok(())
    }
}

/// The network namespace of the processes in the target's cgroup tree (a pod's cgroup holds
/// its containers' cgroups, which all share the pod's namespace); `None` when the tree has no
/// process. Processes in two namespaces are refused.
pub(crate) fn target_netns(cgroup: &Path) -> Result<Option<Netns>, LatencyError> {
    let display = || cgroup.display().to_string();
    let pids = cgroupfs::procs_tree(cgroup).map_err(|source| LatencyError::Procs {
        cgroup: display(),
        source,
    })?;
    // Inodes first (a stat each; opening one costs a thread): a process that exits while we
    // look has no namespace to report and is skipped.
    let mut inode = None;
    let mut members = Vec::new();
    for pid in pids {
        let Ok(theirs) = netns::inode_of_pid(pid) else {
            continue;
        };
        match inode {
            Some(first) if first != theirs => {
                return Err(LatencyError::ManyNetns {
                    cgroup: display(),
                    first: format!("net:[{first}]"),
                    second: format!("net:[{theirs}]"),
                });
            }
            _ => inode = Some(theirs),
        }
        members.push(pid);
    }
    Ok(members.into_iter().find_map(|pid| Netns::of_pid(pid).ok()))
}

/// The daemon's own network namespace.
pub(super) fn own_netns() -> Result<Netns, LatencyError> {
    Netns::own().map_err(|source| LatencyError::Netns {
        netns: "of the daemon".into(),
        source,
    })
}

const RTM_GETROUTE: u16 = 26;
const RTA_OIF: u16 = 4;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;

/// The device of the IPv4 default route of the main table in the calling thread's network
/// namespace.
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
    Err(LatencyError::NoDefaultRoute {
        netns: Netns::own().map_or_else(|_| "?".into(), |ns| ns.to_string()),
    })
}

pub(super) fn ifname(index: u32) -> Option<String> {
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
