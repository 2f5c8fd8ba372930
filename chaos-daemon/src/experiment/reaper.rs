//! The reaper's tick (deadlines, finished host faults, budgets, metrics, snapshots, database
//! load figures and samples, the hourly deletion of old records) on a thread of its own, and the
//! daemon's shutdown. The tick never touches the store or a lock anything slow holds: what it
//! ends is finished and recorded by the recorder, which also deletes what the tick asks it to.

use std::{
    sync::{Arc, Weak, atomic::Ordering, mpsc},
    time::{Duration, Instant},
};

use chaos_api::state::State;

use super::{FaultEngine, Job, Manager, PRUNE_EVERY, Run, SNAPSHOT_EVERY};
use crate::{host::dbload::Figures, store::LoadSampleRow, sync::lock};

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
            // First: the figures of a load that just ended by itself are its last ones.
            if let Some(figures) = run.with_armed(|a| self.engine.load_figures(a)).flatten() {
                self.observe_load(&run, figures);
            }
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
            self.observe_run(&run, c);
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

    /// Keeps a database load's newest figures on its run and publishes them; when the runner
    /// moved on since the last sample (once a second), asks the recorder to write one.
    fn observe_load(&self, run: &Run<E::Armed>, figures: Figures) {
        let id = run.info.id.as_str();
        let row = LoadSampleRow {
            at_ms: self.clock.now_ms(),
            rate: figures.rate,
            qps: figures.qps,
            p50_us: figures.p50_us,
            p95_us: figures.p95_us,
            p99_us: figures.p99_us,
            sent: figures.sent,
            failed: figures.failed(),
        };
        if run.set_load(figures, |f| self.metrics.observe_load(id, f)) {
            self.send(Job::LoadSample {
                id: id.to_owned(),
                row,
            });
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use chaos_api::state::State;

    use super::super::tests::{loss, manager, start};
    use crate::host::dbload::Figures;

    /// The runner's line `elapsed_ms` into a 200 qps load.
    fn figures(elapsed_ms: u64, p95_us: Option<u64>) -> Figures {
        Figures {
            elapsed_ms,
            rate: 200.0,
            sent: elapsed_ms / 5,
            ok: elapsed_ms / 5 - 4,
            errors: [("timeout".to_owned(), 4)].into(),
            qps: 200.0,
            p50_us: p95_us.map(|p| p / 2),
            p95_us,
            p99_us: p95_us.map(|p| p * 2),
            max_us: p95_us.map(|p| p * 3),
            connect_p95_us: Some(2_100),
        }
    }

    #[test]
    fn a_loads_figures_are_shown_exported_and_sampled_once_a_second_until_it_ends() {
        let (m, _) = manager();
        let id = start(&m, &loss()).unwrap();
        let p95 = format!(
            "chaos_database_load_latency_seconds{{experiment_id=\"{id}\",quantile=\"0.95\"}}"
        );
        let published = |m: &super::Manager<_>| {
            m.metrics
                .render()
                .lines()
                .filter(|l| l.starts_with("chaos_database_load_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // No figures yet (the runner has not reported): nothing shown or exported.
        m.tick();
        assert_eq!(m.get(&id).unwrap().load, None);
        assert!(published(&m).is_empty());

        *m.engine().load.lock().unwrap() = Some(figures(1000, Some(3_400)));
        m.tick();
        assert_eq!(m.get(&id).unwrap().load, Some(figures(1000, Some(3_400))));
        assert!(
            published(&m).contains(&format!("{p95} 0.0034")),
            "{:?}",
            published(&m)
        );
        // Ticks between two lines of the runner record nothing more.
        m.tick();
        m.tick();
        *m.engine().load.lock().unwrap() = Some(figures(2000, None));
        m.tick();
        assert!(!published(&m).iter().any(|l| l.starts_with(&p95)));

        m.stop(&id, State::Stopped, "test", Instant::now()).unwrap();
        assert!(published(&m).is_empty(), "{:?}", published(&m));
        // A late tick publishes nothing for it.
        m.tick();
        assert!(published(&m).is_empty());
        m.flush();
        let samples = m.report(&id).unwrap().load;
        let seconds: Vec<_> = samples
            .iter()
            .map(|s| (s.p95_us, s.p99_us, s.sent, s.failed))
            .collect();
        assert_eq!(
            seconds,
            [(Some(3_400), Some(6_800), 200, 4), (None, None, 400, 4)]
        );
        assert_eq!(samples[0].rate, 200.0);
        // The record is all that is left: no live figures.
        assert_eq!(m.get(&id).unwrap().load, None);
    }
}
