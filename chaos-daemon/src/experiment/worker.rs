//! The recorder: one thread that finishes experiments ended by the emergency stop and the
//! reaper (release, then record) and writes what must not wait for the store (snapshots,
//! timeline events, the audit log), in the order it was sent.

use std::sync::{Arc, Weak, mpsc};

use chaos_common::SlotCounters;

use super::{FaultEngine, Manager, Run, lock};
use crate::store::{AuditRow, SnapshotRow};

/// Work for the recorder.
pub(super) enum Job<A> {
    /// Release and record an ended run.
    Finish(Arc<Run<A>>),
    /// A timeline event.
    Event {
        id: String,
        at_ms: u64,
        kind: String,
        message: String,
    },
    /// A counter snapshot of a running experiment.
    Snapshot {
        id: String,
        at_ms: u64,
        counters: SlotCounters,
    },
    /// An audit log entry.
    Audit(AuditRow),
    /// Answer once everything sent before is done.
    Flush(mpsc::SyncSender<()>),
}

/// The recorder's loop: runs until the manager is gone and every sender with it.
pub(super) fn run<E: FaultEngine>(
    manager: &Weak<Manager<E>>,
    jobs: &mpsc::Receiver<Job<E::Armed>>,
) {
    while let Ok(job) = jobs.recv() {
        let Some(manager) = manager.upgrade() else {
            return;
        };
        manager.record(job);
    }
}

impl<E: FaultEngine> Manager<E> {
    fn record(&self, job: Job<E::Armed>) {
        let written = match job {
            Job::Finish(run) => {
                self.finish(&run);
                Ok(())
            }
            Job::Event {
                id,
                at_ms,
                kind,
                message,
            } => lock(&self.store).add_event(&id, at_ms, &kind, &message),
            Job::Snapshot {
                id,
                at_ms,
                counters: c,
            } => lock(&self.store).add_snapshot(
                &id,
                &SnapshotRow {
                    at_ms,
                    seen: c.seen,
                    matched: c.matched,
                    injected: c.injected,
                    capped: c.capped,
                },
            ),
            Job::Audit(row) => lock(&self.store).audit(&row),
            Job::Flush(done) => {
                let _ = done.send(());
                Ok(())
            }
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "writing to the store failed");
        }
    }
}
