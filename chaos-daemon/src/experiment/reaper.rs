//! The reaper's tick (deadlines, finished host faults, budgets, metrics, snapshots, the hourly
//! deletion of old records) on a thread of its own, and the daemon's shutdown. The tick never
//! touches the store or a lock anything slow holds: what it ends is finished and recorded by the
//! recorder, which also deletes what the tick asks it to.

use std::{
    sync::{Arc, Weak, atomic::Ordering, mpsc},
    time::{Duration, Instant},
};

use chaos_api::state::State;

use super::{FaultEngine, Job, Manager, PRUNE_EVERY, Run, SNAPSHOT_EVERY};
use crate::sync::lock;

impl<E: FaultEngine> Manager<E> {
    /// Ends experiments whose duration elapsed or that have nothing more to do, and brings the
    /// metrics and snapshots up to date; every [`PRUNE_EVERY`] asks the worker to delete old
    /// records. Never touches the store or a lock anything slow holds: the records are the
    /// worker's.
    pub fn tick(&self) {
        let now = self.clock.now();
        let runs: Vec<Arc<Run<E::Armed>>> = lock(&self.runs)
            .values()
            .filter(|r| r.running())
            .cloned()
            .collect();
        let mut live = Vec::new();
        for run in runs {
            let expired;
            let due = if now >= run.deadline() {
                Some("duration elapsed")
            } else if run.lease_expired(now) {
                expired = format!(
                    "lease expired: no renewal for {}",
                    humantime::format_duration(run.info.lease.unwrap_or_default())
                );
                Some(expired.as_str())
            } else if run.with_armed(|a| self.engine.finished(a)) == Some(true) {
                Some("done: nothing more to inject")
            } else {
                None
            };
            if let Some(reason) = due {
                let state = if run.lease_expired(now) && now < run.deadline() {
                    State::Stopped
                } else {
                    State::Completed
                };
                if self
                    .end_and_disarm(&run, state, reason, now, "deadline")
                    .is_some()
                {
                    self.send(Job::Finish(run));
                }
                continue;
            }
            for error in run
                .with_armed(|a| self.engine.take_errors(a))
                .unwrap_or_default()
            {
                tracing::error!(experiment_id = %run.info.id, %error, "fault step failed");
                self.send(Job::Event {
                    id: run.info.id.clone(),
                    at_ms: self.clock.now_ms(),
                    kind: "error".into(),
                    message: error,
                });
            }
            if let Some(Ok(c)) = run.with_armed(|a| self.engine.counters(a)) {
                live.push((run, c));
            }
        }
        let (spent, today) = self.spending(&live, now);
        self.observe_daily(today);
        for ((run, c), spent) in live.into_iter().zip(spent) {
            let (injected, seen) = run.observe(c);
            self.metrics
                .observe_counters(run.info.kind.as_str(), injected, seen);
            if self.check_budget(&run, c, spent, today, now) {
                continue;
            }
            if run.snapshot_due(now, SNAPSHOT_EVERY) {
                self.send(Job::Snapshot {
                    id: run.info.id.clone(),
                    at_ms: self.clock.now_ms(),
                    counters: c,
                    spent,
                });
            }
        }
        let now_ms = self.clock.now_ms();
        if now_ms >= self.next_prune_ms.load(Ordering::Relaxed) {
            self.next_prune_ms.store(
                now_ms.saturating_add(PRUNE_EVERY.as_millis() as u64),
                Ordering::Relaxed,
            );
            self.send(Job::Prune);
        }
    }

    /// Runs [`Manager::tick`] every `every` on a thread of its own, until the manager is
    /// dropped.
    pub fn spawn_reaper(self: &Arc<Self>, every: Duration) -> std::io::Result<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("chaos-reaper".into())
            .spawn(move || {
                while let Some(manager) = weak.upgrade() {
                    manager.tick();
                    drop(manager);
                    std::thread::sleep(every);
                }
            })
            .map(|_| ())
    }

    /// Waits until the worker has written everything sent to it so far.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Job::Flush(tx));
        let _ = rx.recv_timeout(Duration::from_secs(60));
    }

    /// Stops every running experiment (daemon shutdown) and waits for the records.
    pub fn shutdown(&self, reason: &str) {
        let runs: Vec<Arc<Run<E::Armed>>> = lock(&self.runs).values().cloned().collect();
        for run in runs {
            let now = Instant::now();
            if self
                .end_and_disarm(&run, State::Stopped, reason, now, "stop")
                .is_some()
            {
                self.finish(&run);
            }
        }
        self.flush();
    }
}
