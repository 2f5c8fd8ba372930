//! The recorder: one thread that finishes experiments ended by the emergency stop, the reaper
//! and a rollback (release, then record; a rollback's strategies and notifications follow on a
//! thread of their own) and writes what must not wait for the store (snapshots, load samples,
//! timeline events, the audit log, the hourly deletion of records past the retention), in the
//! order it was sent; and [`Manager::finish`], which releases and records one ended run on
//! whatever thread ended it.

use std::{
    sync::{Arc, Weak, mpsc},
    time::Duration,
};

use chaos_api::state::State;
use chaos_common::SlotCounters;

use super::{Ending, FaultEngine, Manager, Run};
use crate::notify::NoticeKind;
use crate::store::{
    AuditRow, ExperimentRow, GuardSampleRow, LoadSampleRow, RollbackRow, SnapshotRow,
};
use crate::sync::lock;

/// Work for the recorder.
pub(super) enum Job<A> {
    /// Release and record an ended run.
    Finish(Arc<Run<A>>),
    /// Release and record a rolled-back run (after its [`Job::Rollback`]), then run the
    /// rollback strategies and announce the rollback (`reason`, `fields` and the strategies'
    /// outcomes) and the end, in that order.
    RolledBack {
        run: Arc<Run<A>>,
        reason: String,
        fields: Vec<(String, String)>,
    },
    /// A timeline event.
    Event {
        id: String,
        at_ms: u64,
        kind: String,
        message: String,
    },
    /// A counter snapshot of a running experiment, and its spend so far (kept on its row, so
    /// that the day's books survive a daemon crash).
    Snapshot {
        id: String,
        at_ms: u64,
        counters: SlotCounters,
        spent: f64,
    },
    /// A second of a running database load.
    LoadSample { id: String, row: LoadSampleRow },
    /// One evaluation of a running experiment's guards.
    GuardSamples {
        id: String,
        rows: Vec<GuardSampleRow>,
    },
    /// What rolled an experiment back.
    Rollback { id: String, row: RollbackRow },
    /// An audit log entry.
    Audit(AuditRow),
    /// Delete the records older than the retention.
    Prune,
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
    fn record(self: &Arc<Self>, job: Job<E::Armed>) {
        let written = match job {
            Job::Finish(run) => {
                self.finish(&run);
                Ok(())
            }
            Job::RolledBack {
                run,
                reason,
                fields,
            } => {
                let row = self.release_and_record(&run);
                self.after_rollback(run, row, reason, fields);
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
                spent,
            } => lock(&self.store).add_snapshot(
                &id,
                &SnapshotRow {
                    at_ms,
                    seen: c.seen,
                    matched: c.matched,
                    injected: c.injected,
                    capped: c.capped,
                },
                spent,
            ),
            Job::LoadSample { id, row } => lock(&self.store).add_load_sample(&id, &row),
            Job::GuardSamples { id, rows } => lock(&self.store).add_guard_samples(&id, &rows),
            Job::Rollback { id, row } => lock(&self.store).add_rollback(&id, &row),
            Job::Audit(row) => lock(&self.store).audit(&row),
            Job::Prune => {
                self.prune();
                Ok(())
            }
            Job::Flush(done) => {
                let _ = done.send(());
                Ok(())
            }
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "writing to the store failed");
        }
    }

    /// Deletes the records older than the config's retention (`state.retention_days`), and
    /// says how many.
    pub(super) fn prune(&self) {
        let retention = self.config.state.retention();
        let cutoff = self
            .clock
            .now_ms()
            .saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        match lock(&self.store).prune(cutoff) {
            Ok(pruned) if pruned.total() > 0 => tracing::info!(
                retention_days = self.config.state.retention_days,
                experiments = pruned.experiments,
                events = pruned.events,
                snapshots = pruned.snapshots,
                guard_samples = pruned.guard_samples,
                load_samples = pruned.load_samples,
                audit = pruned.audit,
                host_changes = pruned.journal,
                "deleted records older than the retention"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "deleting old records failed"),
        }
    }

    /// Releases an ended run, settles its budget, records its end and announces it. Called
    /// once per run, by whoever ended it (or the worker on its behalf).
    pub fn finish(&self, run: &Arc<Run<E::Armed>>) -> ExperimentRow {
        let row = self.release_and_record(run);
        self.announce_end(run, &row);
        row
    }

    /// Observes `counters` on `run` (what views show once its armed fault is taken) and adds
    /// their growth to the metrics.
    pub(super) fn observe_run(&self, run: &Run<E::Armed>, counters: SlotCounters) {
        let (injected, seen) = run.observe(counters);
        self.metrics
            .observe_counters(run.info.kind.as_str(), injected, seen);
    }

    /// [`Manager::finish`] but the announcement.
    pub(super) fn release_and_record(&self, run: &Arc<Run<E::Armed>>) -> ExperimentRow {
        let ending = run.ending().unwrap_or(Ending {
            state: State::Failed,
            reason: "ended without a reason".into(),
            at_ms: self.clock.now_ms(),
            disarmed_in: Duration::ZERO,
        });
        // Until it is recorded, views show the counters observed last (the armed fault they
        // read is gone once taken): those it was disarmed with, then the final ones.
        if let Some(Ok(c)) = run.with_armed(|a| self.engine.counters(a)) {
            self.observe_run(run, c);
        }
        let released = run.take_armed().map(|armed| self.engine.release(armed));
        let (counters, state, reason) = match released {
            Some(Ok(c)) => (c, ending.state, ending.reason.clone()),
            Some(Err(e)) => (
                Default::default(),
                State::Failed,
                format!("{}; releasing failed: {e}", ending.reason),
            ),
            None => (Default::default(), ending.state, ending.reason.clone()),
        };
        // It ended when its faults were disarmed, whatever the release took since.
        let ended_ms = ending.at_ms;
        let elapsed = Duration::from_millis(ended_ms.saturating_sub(run.info.started_ms));
        let spent = run
            .info
            .price
            .spent(counters.injected, elapsed, run.info.budget);
        lock(&self.ledger).settle(run.info.budget, spent, ended_ms);
        self.observe_run(run, counters);
        let mut row = self.row(run, state, reason, ended_ms);
        (row.seen, row.matched, row.injected, row.capped) = (
            counters.seen,
            counters.matched,
            counters.injected,
            counters.capped,
        );
        row.spent = spent;
        let message = format!(
            "{} (injected {} of {} matched; disarmed in {:.1} µs)",
            row.reason,
            row.injected,
            row.matched,
            ending.disarmed_in.as_secs_f64() * 1e6
        );
        let recorded = {
            let store = lock(&self.store);
            store
                .finish_experiment(&row)
                .and_then(|()| store.add_event(&row.id, ended_ms, row.state.as_str(), &message))
        };
        if let Err(e) = recorded {
            tracing::error!(experiment_id = %row.id, error = %e, "recording the end failed");
        }
        lock(&self.runs).remove(&run.info.id);
        // Gone with the experiment (not found = it had none).
        self.unpublish_guards(run);
        for gauge in [&self.metrics.budget_spent, &self.metrics.budget_remaining] {
            let _ = gauge.remove_label_values(&[&run.info.id]);
        }
        run.with_load(|| self.metrics.remove_load(&run.info.id));
        self.metrics
            .experiments_finished
            .with_label_values(&[row.state.as_str()])
            .inc();
        self.metrics
            .experiments_running
            .set(self.published_count() as i64);
        row
    }

    /// Announces the end of `run`, recorded as `row`.
    pub(super) fn announce_end(&self, run: &Run<E::Armed>, row: &ExperimentRow) {
        self.announce(
            run,
            NoticeKind::Ended,
            &row.reason,
            vec![
                ("state".to_owned(), row.state.as_str().to_owned()),
                ("injected".to_owned(), row.injected.to_string()),
                (
                    "spent".to_owned(),
                    format!("{:.4} of {:.4}", row.spent, row.budget),
                ),
            ],
        );
    }

    pub(super) fn published_count(&self) -> usize {
        lock(&self.runs).values().filter(|r| r.running()).count()
    }

    /// The store row of `run` in `state`.
    pub(super) fn row(
        &self,
        run: &Run<E::Armed>,
        state: State,
        reason: String,
        ended_ms: u64,
    ) -> ExperimentRow {
        ExperimentRow {
            id: run.info.id.clone(),
            name: run.info.name.clone(),
            kind: run.info.kind.as_str().to_owned(),
            target: run.info.target.clone(),
            spec: run.info.spec.clone(),
            state,
            reason,
            started_ms: run.info.started_ms,
            ended_ms,
            seen: 0,
            matched: 0,
            injected: 0,
            capped: 0,
            budget: run.info.budget,
            spent: 0.0,
        }
    }
}
