//! The qdiscs the tc faults share, and the journal that undoes them: the `fq` root of latency
//! faults and, before Linux 6.6 (no tcx), the `clsact` every tc program attaches to.
//!
//! A device is a name in a network namespace (the target's, see [`super::netns`]); the journal
//! names both (`net:[<inode>]/<name>`). The first fault on a device journals the device's root
//! qdisc (kind, handle, raw options) in the host-change journal, *then* replaces it with `fq`;
//! later faults on the same device share it (the `fq` is re-sized when one needs a longer
//! horizon); the last one puts the old root back and marks the entry undone. `clsact` is shared
//! the same way, in its own table (a loss fault needs it without `fq`). A daemon killed in
//! between leaves the entries pending, and the next start undoes them ([`crate::journal::undo`]
//! calls [`undo_qdisc`] / [`undo_clsact`]); legacy cls_bpf filters outlive their daemon, so
//! both undos also detach our programs by name.

use std::{collections::HashMap, time::Duration};

use super::{
    netlink::{NetlinkError, Socket},
    netns::{self, Netns},
    qdisc::{self, Qdisc, RESTORABLE_KINDS},
};
use crate::{
    ebpf::tc::TcProgram,
    journal::{ChangeKind, HostChange, HostJournal, JournalError},
};

/// Why a device could not be prepared or restored. Names the device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "fault.interface: {name:?} is not allowed; expected a network device of the target's \
         network namespace {netns} ({source})"
    )]
    NoDevice {
        name: String,
        netns: String,
        source: std::io::Error,
    },
    #[error("entering network namespace {netns} for device {name}: {source}")]
    Netns {
        name: String,
        netns: String,
        source: std::io::Error,
    },
    #[error(
        "fault.interface: {name:?} has a {kind:?} root qdisc, which is not allowed; expected the \
         kernel's default root or a classless one ({allowed}) that can be restored exactly"
    )]
    Unrestorable {
        name: String,
        kind: String,
        allowed: String,
    },
    #[error("device {name}: {source}")]
    Netlink { name: String, source: NetlinkError },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

struct Shared {
    netns: Netns,
    ifindex: u32,
    users: usize,
    max_delay: Duration,
    saved: Qdisc,
    qdisc_entry: i64,
}

/// A device's `clsact` while tc faults use it: `entry` is the journal entry that undoes it,
/// which deletes the qdisc only when `added` (one that was there before is not ours).
struct Clsact {
    netns: Netns,
    ifindex: u32,
    users: usize,
    entry: i64,
    added: bool,
}

/// The journal's `old_value` of a `clsact` that was there before the daemon: its undo only
/// detaches our programs.
const CLSACT_PRESENT: &str = "present";

/// The devices whose root qdisc the daemon currently replaced, and those whose `clsact` it
/// uses, by journal name ([`netns::device_path`]), with their user counts.
#[derive(Default)]
pub struct Devices {
    shared: HashMap<String, Shared>,
    clsact: HashMap<String, Clsact>,
}

/// The index of device `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> std::io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// A netlink socket in `ns` and the index of device `name` there.
fn open_device(ns: &Netns, name: &str) -> Result<(Socket, u32), DeviceError> {
    let entered = ns.run(|| {
        let sock = Socket::open().map_err(|source| DeviceError::Netlink {
            name: name.into(),
            source,
        })?;
        let index = ifindex(name).map_err(|source| DeviceError::NoDevice {
            name: name.into(),
            netns: ns.to_string(),
            source,
        })?;
        Ok((sock, index))
    });
    entered.map_err(|source| DeviceError::Netns {
        name: name.into(),
        netns: ns.to_string(),
        source,
    })?
}

impl Devices {
    /// Makes `fq` (sized for `max_delay`) the root of `name` in `ns`, journaling the old root
    /// first. A second user of the same device shares it.
    pub fn acquire(
        &mut self,
        journal: &dyn HostJournal,
        owner: &str,
        ns: &Netns,
        name: &str,
        max_delay: Duration,
    ) -> Result<(), DeviceError> {
        let nl = |source| DeviceError::Netlink {
            name: name.into(),
            source,
        };
        let key = netns::device_path(ns, name);
        let (mut sock, ifindex) = open_device(ns, name)?;
        if let Some(s) = self.shared.get_mut(&key) {
            if max_delay > s.max_delay {
                qdisc::replace_root(&mut sock, s.ifindex, "fq", 0, &qdisc::fq_options(max_delay))
                    .map_err(nl)?;
                s.max_delay = max_delay;
            }
            s.users += 1;
            return Ok(());
        }
        let saved = qdisc::root(&mut sock, ifindex)
            .map_err(nl)?
            .unwrap_or_else(Qdisc::noqueue);
        if !saved.is_default() && !RESTORABLE_KINDS.contains(&saved.kind.as_str()) {
            return Err(DeviceError::Unrestorable {
                name: name.into(),
                kind: saved.kind,
                allowed: RESTORABLE_KINDS.join(", "),
            });
        }
        let change = |kind, old_value| HostChange {
            kind,
            path: key.clone(),
            old_value,
        };
        let qdisc_entry = journal.record(owner, &change(ChangeKind::Qdisc, saved.encode()))?;
        let shared = Shared {
            netns: ns.clone(),
            ifindex,
            users: 1,
            max_delay,
            saved,
            qdisc_entry,
        };
        let installed =
            qdisc::replace_root(&mut sock, ifindex, "fq", 0, &qdisc::fq_options(max_delay))
                .map_err(nl);
        if let Err(e) = installed {
            if let Err(undo) = put_back(journal, &mut sock, name, &shared) {
                tracing::error!(device = key, error = %undo, "undoing a failed fq install");
            }
            return Err(e);
        }
        tracing::info!(device = key, previous = %shared.saved.kind, "fq installed as root qdisc");
        self.shared.insert(key, shared);
        Ok(())
    }

    /// Drops one user of `name` in `ns`; the last one puts the old root qdisc back.
    pub fn release(
        &mut self,
        journal: &dyn HostJournal,
        ns: &Netns,
        name: &str,
    ) -> Result<(), DeviceError> {
        let key = netns::device_path(ns, name);
        let Some(s) = last_user(&mut self.shared, &key, |s| &mut s.users) else {
            return Ok(());
        };
        let (mut sock, _) = open_device(&s.netns, name)?;
        put_back(journal, &mut sock, name, &s)?;
        tracing::info!(device = key, restored = %s.saved.kind, "root qdisc restored");
        Ok(())
    }

    /// Makes sure `name` in `ns` has the `clsact` qdisc legacy tc programs attach to. The
    /// journal entry is written first, as "present" (its undo only detaches our programs); when
    /// the daemon added the qdisc, a second entry that also deletes it replaces it. A second user
    /// of the same device shares it.
    pub fn acquire_clsact(
        &mut self,
        journal: &dyn HostJournal,
        owner: &str,
        ns: &Netns,
        name: &str,
    ) -> Result<(), DeviceError> {
        let key = netns::device_path(ns, name);
        if let Some(c) = self.clsact.get_mut(&key) {
            c.users += 1;
            return Ok(());
        }
        let nl = |source| DeviceError::Netlink {
            name: name.into(),
            source,
        };
        let change = |old_value: &str| HostChange {
            kind: ChangeKind::Clsact,
            path: key.clone(),
            old_value: old_value.into(),
        };
        let (mut sock, ifindex) = open_device(ns, name)?;
        let mut entry = journal.record(owner, &change(CLSACT_PRESENT))?;
        let added = match qdisc::add_clsact(&mut sock, ifindex) {
            Ok(added) => added,
            Err(e) => {
                journal.undone(entry)?;
                return Err(nl(e));
            }
        };
        if added {
            let ours = journal.record(owner, &change(""));
            journal.undone(entry)?;
            match ours {
                Ok(ours) => entry = ours,
                Err(e) => {
                    if let Err(undo) = remove_clsact(&mut sock, ifindex) {
                        tracing::error!(device = key, error = %undo, "removing a clsact we could not journal");
                    }
                    return Err(e.into());
                }
            }
        }
        self.clsact.insert(
            key,
            Clsact {
                netns: ns.clone(),
                ifindex,
                users: 1,
                entry,
                added,
            },
        );
        Ok(())
    }

    /// Drops one user of `name`'s `clsact` in `ns`; the last one deletes it if the daemon
    /// added it, and marks the journal entry undone.
    pub fn release_clsact(
        &mut self,
        journal: &dyn HostJournal,
        ns: &Netns,
        name: &str,
    ) -> Result<(), DeviceError> {
        let key = netns::device_path(ns, name);
        let Some(c) = last_user(&mut self.clsact, &key, |c| &mut c.users) else {
            return Ok(());
        };
        if c.added {
            let (mut sock, _) = open_device(&c.netns, name)?;
            remove_clsact(&mut sock, c.ifindex).map_err(|source| DeviceError::Netlink {
                name: name.into(),
                source,
            })?;
        }
        journal.undone(c.entry)?;
        Ok(())
    }

    /// Devices currently holding a shared `fq` (as [`netns::device_path`]), with their user
    /// counts.
    pub fn in_use(&self) -> impl Iterator<Item = (&str, usize)> {
        self.shared.iter().map(|(n, s)| (n.as_str(), s.users))
    }
}

/// Drops one user of `key` in `table`: the entry, removed, when that was its last user.
fn last_user<T>(
    table: &mut HashMap<String, T>,
    key: &str,
    users: impl FnOnce(&mut T) -> &mut usize,
) -> Option<T> {
    let count = users(table.get_mut(key)?);
    *count -= 1;
    if *count > 0 {
        return None;
    }
    table.remove(key)
}

/// Puts one device's old root qdisc back, marking the journal entry restored.
fn put_back(
    journal: &dyn HostJournal,
    sock: &mut Socket,
    name: &str,
    s: &Shared,
) -> Result<(), DeviceError> {
    let nl = |source| DeviceError::Netlink {
        name: name.into(),
        source,
    };
    qdisc::restore_root(sock, s.ifindex, &s.saved).map_err(nl)?;
    journal.undone(s.qdisc_entry)?;
    Ok(())
}

fn remove_clsact(sock: &mut Socket, ifindex: u32) -> Result<(), NetlinkError> {
    match qdisc::delete_clsact(sock, ifindex) {
        Err(e)
            if matches!(
                e.errno(),
                Some(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL)
            ) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// The namespace and name of a journaled device, or `NotFound` when the namespace is gone
/// (and the device with it: nothing left to restore).
fn journaled_device(path: &str) -> std::io::Result<(Netns, &str)> {
    let (inode, cookie, name) = netns::parse_device_path(path).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("cannot read the journaled device {path:?}"),
        )
    })?;
    let ns = Netns::find(inode, cookie).ok_or(std::io::ErrorKind::NotFound)?;
    Ok((ns, name))
}

/// Journal undo of [`ChangeKind::Qdisc`]: puts the saved root qdisc back on the device `path`
/// names ([`netns::device_path`]). `NotFound` when the device or its namespace is gone.
pub fn undo_qdisc(path: &str, saved: &str) -> std::io::Result<()> {
    let saved = Qdisc::decode(saved).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("cannot read the saved qdisc {saved:?}"),
        )
    })?;
    let (ns, name) = journaled_device(path)?;
    ns.run(|| {
        let ifindex = ifindex(name).map_err(|_| std::io::ErrorKind::NotFound)?;
        // Before Linux 6.6 the delay programs are cls_bpf filters, which outlive the daemon
        // that attached them (tcx links do not): remove any left on the device.
        detach_our_filters(name);
        let mut sock = Socket::open().map_err(std::io::Error::other)?;
        qdisc::restore_root(&mut sock, ifindex, &saved).map_err(std::io::Error::other)
    })?
}

/// Journal undo of [`ChangeKind::Clsact`]: detaches our tc programs from the device and
/// deletes the `clsact` qdisc, unless it was there before the daemon (`saved` is "present").
pub fn undo_clsact(path: &str, saved: &str) -> std::io::Result<()> {
    let (ns, name) = journaled_device(path)?;
    ns.run(|| {
        let ifindex = ifindex(name).map_err(|_| std::io::ErrorKind::NotFound)?;
        detach_our_filters(name);
        if saved == CLSACT_PRESENT {
            return Ok(());
        }
        let mut sock = Socket::open().map_err(std::io::Error::other)?;
        remove_clsact(&mut sock, ifindex).map_err(std::io::Error::other)
    })?
}

/// Detaches every copy of our tc programs from the egress of `name` in the calling thread's
/// namespace. Before Linux 6.6 they are cls_bpf filters, which outlive the daemon that attached
/// them (tcx links do not); a program that is not there is no error.
fn detach_our_filters(name: &str) {
    for slot in 0..chaos_common::MAX_SLOTS {
        for program in TcProgram::ALL {
            let _gone = aya::programs::tc::qdisc_detach_program(
                name,
                aya::programs::TcAttachType::Egress,
                &program.name(slot),
            );
        }
    }
}
