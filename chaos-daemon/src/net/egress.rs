//! The device side of the faults whose program sits on every egress of the target's network
//! namespace: the silent egress drop and HTTP error responses (see `chaos-ebpf/src/tc.rs`).
//! A `cgroup_skb` egress drop is reported back to the sending socket (ping sees `ENOBUFS` and
//! sends again) and cannot rewrite a response, so these are tc programs, on every device of
//! the namespace that has no master (a bridge or bond port's packets pass its master first,
//! and a packet must be judged once). The programs match the target cgroup themselves.
//!
//! When planned ([`resolve`]): the namespace (as for latency) and its devices. When armed
//! ([`start`]): write the slot's tc configuration, then on each device add `clsact` where the
//! kernel needs one (before 6.6; shared and journaled, see [`super::devices`]) and attach the
//! program. Undone by [`stop`]; a failure part-way undoes what was done. Devices created after
//! the start are not covered.

use chaos_common::TcConfig;

use super::{
    devices::Devices,
    latency::{LatencyError, ifname, own_netns, target_netns},
    netlink::{Message, NLM_F_DUMP, Socket, attrs},
    netns::{self, Netns},
};
use crate::{
    ebpf::{
        Kernel,
        tc::{TcAttachment, TcProgram, needs_clsact},
    },
    journal::HostJournal,
    target::ResolvedTarget,
};

/// Most devices one fault attaches to (a pod's namespace has two or three; a node's own may
/// have one per pod).
pub const MAX_EGRESS_DEVICES: usize = 64;

/// Where an egress fault acts, resolved when it is planned.
#[derive(Debug)]
pub struct EgressTarget {
    /// Which program.
    pub program: TcProgram,
    /// Its configuration, the slot's target cgroups filled in.
    pub config: TcConfig,
    /// The target's network namespace.
    pub netns: Netns,
    /// Its devices without a master, by name.
    pub interfaces: Vec<String>,
}

impl EgressTarget {
    /// The devices as the journal names them, for the plan shown to the user.
    pub fn devices(&self) -> Vec<String> {
        self.interfaces
            .iter()
            .map(|i| netns::device_path(&self.netns, i))
            .collect()
    }
}

/// Finds the namespace and devices of `program` on `target` (`config` holds the slot's target
/// cgroups).
pub fn resolve(
    program: TcProgram,
    config: TcConfig,
    target: &ResolvedTarget,
) -> Result<EgressTarget, LatencyError> {
    // Without a process the programs go on the daemon's namespace's devices: they match only
    // the target's packets and change no qdisc (but a clsact before 6.6, journaled).
    let netns = match target_netns(&target.path)? {
        Some(netns) => netns,
        None => own_netns()?,
    };
    let interfaces = netns
        .run(masterless_devices)
        .map_err(|source| LatencyError::Netns {
            netns: netns.to_string(),
            source,
        })??;
    if interfaces.len() > MAX_EGRESS_DEVICES {
        return Err(LatencyError::TooManyDevices {
            netns: netns.to_string(),
            count: interfaces.len(),
            max: MAX_EGRESS_DEVICES,
        });
    }
    Ok(EgressTarget {
        program,
        config,
        netns,
        interfaces,
    })
}

/// A running egress fault: the attached programs and the devices whose `clsact` it uses.
#[derive(Debug)]
pub struct EgressRun {
    netns: Netns,
    attached: Vec<TcAttachment>,
    clsact: Vec<String>,
}

/// Writes `slot`'s tc configuration and attaches its copy of the program to every device of
/// `target` (the slot must be disarmed). On error, what was attached is detached.
pub fn start(
    devices: &mut Devices,
    kernel: &mut Kernel,
    journal: &dyn HostJournal,
    slot: u32,
    owner: &str,
    target: EgressTarget,
) -> Result<EgressRun, LatencyError> {
    let EgressTarget {
        program,
        config,
        netns,
        interfaces,
    } = target;
    let mut run = EgressRun {
        netns,
        attached: Vec::with_capacity(interfaces.len()),
        clsact: Vec::new(),
    };
    let result = attach_all(
        devices,
        kernel,
        journal,
        (program, slot),
        owner,
        &config,
        &interfaces,
        &mut run,
    );
    match result {
        Ok(()) => {
            tracing::info!(netns = %run.netns, slot, ?program, devices = ?interfaces, "tc egress program attached");
            Ok(run)
        }
        Err(e) => {
            if let Err(undo) = stop(devices, run, journal) {
                tracing::error!(error = %undo, "undoing a failed tc egress start");
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn attach_all(
    devices: &mut Devices,
    kernel: &mut Kernel,
    journal: &dyn HostJournal,
    (program, slot): (TcProgram, u32),
    owner: &str,
    config: &TcConfig,
    interfaces: &[String],
    run: &mut EgressRun,
) -> Result<(), LatencyError> {
    kernel.write_tc(slot, config)?;
    let clsact = needs_clsact();
    for interface in interfaces {
        if clsact {
            devices.acquire_clsact(journal, owner, &run.netns, interface)?;
            run.clsact.push(interface.clone());
        }
        let attached = run
            .netns
            .run(|| kernel.attach_tc_egress(program, slot, interface))
            .map_err(|source| LatencyError::Netns {
                netns: run.netns.to_string(),
                source,
            })??;
        run.attached.push(attached);
    }
    Ok(())
}

/// Detaches the programs and releases the devices' `clsact`. Every step is tried; the first
/// error is returned.
pub fn stop(
    devices: &mut Devices,
    run: EgressRun,
    journal: &dyn HostJournal,
) -> Result<(), LatencyError> {
    let EgressRun {
        netns,
        attached,
        clsact,
    } = run;
    let mut first: Option<LatencyError> = None;
    for tc in attached {
        // A legacy cls_bpf filter is removed over netlink, in the device's namespace.
        let detached = netns
            .run(|| tc.detach())
            .map_err(|source| LatencyError::Netns {
                netns: netns.to_string(),
                source,
            })
            .and_then(|r| r.map_err(Into::into));
        if let Err(e) = detached {
            first.get_or_insert(e);
        }
    }
    for interface in clsact {
        if let Err(e) = devices.release_clsact(journal, &netns, &interface) {
            first.get_or_insert(e.into());
        }
    }
    first.map_or(Ok(()), Err)
}

const RTM_GETLINK: u16 = 18;
const IFLA_MASTER: u16 = 10;

/// The devices of the calling thread's network namespace that have no master, by name.
fn masterless_devices() -> Result<Vec<String>, LatencyError> {
    let mut sock = Socket::open().map_err(LatencyError::Links)?;
    // struct ifinfomsg: family, pad, type, index, flags, change (16 bytes).
    let replies = sock
        .request(
            Message::new(RTM_GETLINK, NLM_F_DUMP, &[0u8; 16]),
            "listing devices",
        )
        .map_err(LatencyError::Links)?;
    let mut names = Vec::new();
    for r in replies {
        let Some(hdr) = r.get(..16) else { continue };
        let index = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let enslaved = attrs(&r[16..]).any(|(ty, data)| {
            ty == IFLA_MASTER && data.get(..4).is_some_and(|b| b != [0, 0, 0, 0])
        });
        if !enslaved && let Some(name) = ifname(index) {
            names.push(name);
        }
    }
    Ok(names)
}
