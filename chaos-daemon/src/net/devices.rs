//! The `fq` root qdiscs latency faults share, and the journal that undoes them.
//!
//! The first fault on a device journals the device's root qdisc (kind, handle, raw options) in
//! the store, *then* replaces it with `fq`; later faults on the same device share it (the `fq`
//! is re-sized when one needs a longer horizon); the last one puts the old root back and marks
//! the entry restored. A daemon killed in between leaves the entry unrestored, and
//! [`restore_journal`] at the next start puts the old root back.

use std::{collections::HashMap, time::Duration};

use super::{
    netlink::{NetlinkError, Socket},
    qdisc::{self, Qdisc, RESTORABLE_KINDS},
};
use crate::store::{Store, StoreError};

/// Journal kind of a replaced root qdisc; `old_value` is [`Qdisc::encode`].
pub const JOURNAL_QDISC: &str = "qdisc";
/// Journal kind of a `clsact` qdisc the daemon added; restoring deletes it.
pub const JOURNAL_CLSACT: &str = "clsact";

/// Why a device could not be prepared or restored. Names the device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "fault.interface: {name:?} is not allowed; expected a network device of the daemon's \
         network namespace ({source})"
    )]
    NoDevice {
        name: String,
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
    #[error("journal entry {id}: cannot read the saved qdisc {value:?}")]
    BadJournal { id: i64, value: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Shared {
    ifindex: u32,
    users: usize,
    max_delay: Duration,
    saved: Qdisc,
    qdisc_entry: i64,
    clsact_entry: Option<i64>,
}

/// The devices whose root qdisc the daemon currently replaced, with their user counts.
#[derive(Default)]
pub struct Devices {
    shared: HashMap<String, Shared>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The index of device `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, DeviceError> {
    let no_device = |source| DeviceError::NoDevice {
        name: name.into(),
        source,
    };
    let c = std::ffi::CString::new(name)
        .map_err(|_| no_device(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(no_device(std::io::Error::last_os_error())),
        i => Ok(i),
    }
}

impl Devices {
    /// Makes `fq` (sized for `max_delay`) the root of `name`, journaling the old root first;
    /// with `clsact`, also adds the `clsact` qdisc legacy tc programs attach to (journaled when
    /// it was not there). A second user of the same device shares it.
    pub fn acquire(
        &mut self,
        journal: &Store,
        owner: &str,
        name: &str,
        max_delay: Duration,
        clsact: bool,
    ) -> Result<(), DeviceError> {
        let nl = |source| DeviceError::Netlink {
            name: name.into(),
            source,
        };
        let mut sock = Socket::open().map_err(nl)?;
        if let Some(s) = self.shared.get_mut(name) {
            if max_delay > s.max_delay {
                qdisc::replace_root(&mut sock, s.ifindex, "fq", 0, &qdisc::fq_options(max_delay))
                    .map_err(nl)?;
                s.max_delay = max_delay;
            }
            s.users += 1;
            return Ok(());
        }
        let ifindex = ifindex(name)?;
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
        let qdisc_entry =
            journal.journal_record(owner, JOURNAL_QDISC, name, &saved.encode(), now_ms())?;
        let mut shared = Shared {
            ifindex,
            users: 1,
            max_delay,
            saved,
            qdisc_entry,
            clsact_entry: None,
        };
        let installed =
            qdisc::replace_root(&mut sock, ifindex, "fq", 0, &qdisc::fq_options(max_delay))
                .map_err(nl)
                .and_then(|()| {
                    if clsact {
                        let entry = journal.journal_record(
                            owner,
                            JOURNAL_CLSACT,
                            name,
                            "absent",
                            now_ms(),
                        )?;
                        shared.clsact_entry = Some(entry);
                        if !qdisc::add_clsact(&mut sock, ifindex).map_err(nl)? {
                            // It was there before us: not ours to remove.
                            journal.journal_restored(entry, now_ms())?;
                            shared.clsact_entry = None;
                        }
                    }
                    Ok(())
                });
        if let Err(e) = installed {
            if let Err(undo) = put_back(journal, &mut sock, name, &shared) {
                tracing::error!(device = name, error = %undo, "undoing a failed fq install");
            }
            return Err(e);
        }
        tracing::info!(device = name, previous = %shared.saved.kind, "fq installed as root qdisc");
        self.shared.insert(name.into(), shared);
        Ok(())
    }

    /// Drops one user of `name`; the last one puts the old root qdisc back.
    pub fn release(&mut self, journal: &Store, name: &str) -> Result<(), DeviceError> {
        let Some(s) = self.shared.get_mut(name) else {
            return Ok(());
        };
        s.users -= 1;
        if s.users > 0 {
            return Ok(());
        }
        let s = self.shared.remove(name).unwrap_or_else(|| unreachable!());
        let mut sock = Socket::open().map_err(|source| DeviceError::Netlink {
            name: name.into(),
            source,
        })?;
        put_back(journal, &mut sock, name, &s)?;
        tracing::info!(device = name, restored = %s.saved.kind, "root qdisc restored");
        Ok(())
    }

    /// Devices currently holding a shared `fq`, with their user counts.
    pub fn in_use(&self) -> impl Iterator<Item = (&str, usize)> {
        self.shared.iter().map(|(n, s)| (n.as_str(), s.users))
    }
}

/// Undoes one device's changes, newest first, marking each journal entry restored.
fn put_back(journal: &Store, sock: &mut Socket, name: &str, s: &Shared) -> Result<(), DeviceError> {
    let nl = |source| DeviceError::Netlink {
        name: name.into(),
        source,
    };
    if let Some(entry) = s.clsact_entry {
        remove_clsact(sock, s.ifindex).map_err(nl)?;
        journal.journal_restored(entry, now_ms())?;
    }
    qdisc::restore_root(sock, s.ifindex, &s.saved).map_err(nl)?;
    journal.journal_restored(s.qdisc_entry, now_ms())?;
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

/// Restores every unrestored qdisc / clsact journal entry, newest first: what a daemon killed
/// with faults running left behind. A device that no longer exists has nothing to restore.
/// Returns how many entries were restored.
pub fn restore_journal(journal: &Store) -> Result<usize, DeviceError> {
    let mut done = 0;
    for row in journal.journal_unrestored()? {
        if row.kind != JOURNAL_QDISC && row.kind != JOURNAL_CLSACT {
            continue;
        }
        let ifindex = match ifindex(&row.path) {
            Ok(i) => i,
            Err(_) => {
                tracing::warn!(device = %row.path, "journaled device is gone; nothing to restore");
                journal.journal_restored(row.id, now_ms())?;
                continue;
            }
        };
        let nl = |source| DeviceError::Netlink {
            name: row.path.clone(),
            source,
        };
        let mut sock = Socket::open().map_err(nl)?;
        if row.kind == JOURNAL_CLSACT {
            remove_clsact(&mut sock, ifindex).map_err(nl)?;
        } else {
            let saved = Qdisc::decode(&row.old_value).ok_or_else(|| DeviceError::BadJournal {
                id: row.id,
                value: row.old_value.clone(),
            })?;
            qdisc::restore_root(&mut sock, ifindex, &saved).map_err(nl)?;
        }
        journal.journal_restored(row.id, now_ms())?;
        tracing::warn!(device = %row.path, kind = %row.kind, value = %row.old_value,
            owner = %row.owner, "restored a host change left by a previous daemon");
        done += 1;
    }
    Ok(done)
}
