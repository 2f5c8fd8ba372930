//! The host-change journal: every change that outlives the daemon process (a cgroup knob, a
//! qdisc, a database load's runner and scratch data) is recorded *before* it is made, marked when it is undone, and undone again at the
//! next daemon start if the process died in between (DESIGN §4, "Links are never pinned").
//!
//! [`HostJournal`] is the record-keeping; a `Mutex<`[`Store`](crate::store::Store)`>` implements it durably
//! and [`MemoryJournal`] in memory (for library users that need no crash recovery).
//! [`undo`] knows how to put each kind of change back.

use std::{io, path::Path, sync::Mutex};

use crate::{store::StoreError, sync::lock};

/// What kind of host state a journal entry protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// A cgroup interface file (`cpu.max`, `memory.high`): `path` is the file, `old_value` its
    /// previous content.
    CgroupKnob,
    /// A network device's root qdisc: `path` names the device, `old_value` the qdisc to
    /// re-create.
    Qdisc,
    /// A `clsact` qdisc the daemon added to device `path` (for tc programs before Linux 6.6);
    /// undoing deletes it.
    Clsact,
    /// A database load's runner cgroup `path` (`crate::host::dbload`); undoing kills what is
    /// left in it and removes it.
    RunnerCgroup,
    /// A database load's cgroup v1 `cpu` cgroup `path` (its CPU limit on a hybrid host);
    /// undoing removes it.
    CpuCgroupV1,
    /// A database load's spec file `path`; undoing runs the runner `old_value` (empty: no
    /// scratch data) to drop the scratch table or keys, then removes the file.
    DbScratch,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::CgroupKnob => "cgroup_knob",
            ChangeKind::Qdisc => "qdisc",
            ChangeKind::Clsact => "clsact",
            ChangeKind::RunnerCgroup => "runner_cgroup",
            ChangeKind::CpuCgroupV1 => "cpu_cgroup_v1",
            ChangeKind::DbScratch => "db_scratch",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ChangeKind::CgroupKnob,
            ChangeKind::Qdisc,
            ChangeKind::Clsact,
            ChangeKind::RunnerCgroup,
            ChangeKind::CpuCgroupV1,
            ChangeKind::DbScratch,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One change to the host, with what to put back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostChange {
    pub kind: ChangeKind,
    pub path: String,
    pub old_value: String,
}

/// A recorded, not yet undone change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    pub id: i64,
    /// Who made it (an experiment or fault id), for the audit trail.
    pub owner: String,
    pub change: HostChange,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("host-change journal entry {id} has an unknown kind {kind:?}")]
    UnknownKind { id: i64, kind: String },
    #[error("undoing {kind} change of {path}: {source}")]
    Undo {
        kind: &'static str,
        path: String,
        source: io::Error,
    },
}

/// Where host changes are recorded. Implementations must make `record` durable before it
/// returns: the change is made right after.
pub trait HostJournal: Send + Sync {
    /// Records a change about to be made; returns its entry id.
    fn record(&self, owner: &str, change: &HostChange) -> Result<i64, JournalError>;
    /// Marks an entry undone.
    fn undone(&self, id: i64) -> Result<(), JournalError>;
    /// Entries not yet undone, newest first (the order to undo them in).
    fn pending(&self) -> Result<Vec<JournalEntry>, JournalError>;
}

/// A journal that lives only as long as the process.
#[derive(Default)]
pub struct MemoryJournal {
    entries: Mutex<(i64, Vec<JournalEntry>)>,
}

impl HostJournal for MemoryJournal {
    fn record(&self, owner: &str, change: &HostChange) -> Result<i64, JournalError> {
        let mut guard = lock(&self.entries);
        let (next, entries) = &mut *guard;
        *next += 1;
        entries.push(JournalEntry {
            id: *next,
            owner: owner.into(),
            change: change.clone(),
        });
        Ok(*next)
    }

    fn undone(&self, id: i64) -> Result<(), JournalError> {
        let mut guard = lock(&self.entries);
        guard.1.retain(|e| e.id != id);
        Ok(())
    }

    fn pending(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let guard = lock(&self.entries);
        Ok(guard.1.iter().rev().cloned().collect())
    }
}

/// Puts one change back. A change whose object is gone (the cgroup was removed, the device
/// deleted) counts as undone: there is nothing left to restore.
pub fn undo(change: &HostChange) -> Result<(), JournalError> {
    let result = match change.kind {
        ChangeKind::CgroupKnob => {
            crate::cgroupfs::write_knob(Path::new(&change.path), &change.old_value)
        }
        ChangeKind::Qdisc => crate::net::devices::undo_qdisc(&change.path, &change.old_value),
        ChangeKind::Clsact => crate::net::devices::undo_clsact(&change.path, &change.old_value),
        ChangeKind::RunnerCgroup => crate::host::dbload::undo_cgroup(Path::new(&change.path)),
        ChangeKind::CpuCgroupV1 => crate::host::dbload::undo_cpu_cgroup(Path::new(&change.path)),
        ChangeKind::DbScratch => {
            crate::host::dbload::undo_scratch(Path::new(&change.old_value), Path::new(&change.path))
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(JournalError::Undo {
            kind: change.kind.as_str(),
            path: change.path.clone(),
            source,
        }),
    }
}

/// Undoes the change recorded as entry `id` and marks it undone.
pub fn undo_recorded(
    journal: &dyn HostJournal,
    id: i64,
    change: &HostChange,
) -> Result<(), JournalError> {
    undo(change)?;
    journal.undone(id)
}

/// What [`undo_pending`] did.
#[derive(Debug, Default)]
pub struct UndoReport {
    pub undone: Vec<JournalEntry>,
    pub failed: Vec<(JournalEntry, JournalError)>,
}

/// Undoes every pending entry (at daemon start: what a killed daemon left behind). Keeps going
/// past failures.
pub fn undo_pending(journal: &dyn HostJournal) -> Result<UndoReport, JournalError> {
    let mut report = UndoReport::default();
    for entry in journal.pending()? {
        match undo_recorded(journal, entry.id, &entry.change) {
            Ok(()) => report.undone.push(entry),
            Err(e) => report.failed.push((entry, e)),
        }
    }
    Ok(report)
}
