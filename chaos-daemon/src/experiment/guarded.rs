//! What the guards do to a running experiment: keep their last evaluation on the run (live
//! status, and `/metrics` while it runs) and in the store (the report, with the impact score
//! of every evaluation), alert on the guards that do not roll back, and roll it back on a
//! violation: disarm first (the switchboard, as a stop does), then record the violation, then
//! (on the recorder) release it, then run the rollback strategies and only then notify, with
//! their outcomes (`notices`).

use std::time::{Duration, Instant};

use chaos_api::state::State;

use super::{ExperimentError, FaultEngine, Job, Manager, Run, SNAPSHOT_EVERY};
use crate::{
    guard::{Evaluation, Violation},
    notify::NoticeKind,
    store::{GuardSampleRow, RollbackRow},
    sync::lock,
};

/// The guard-sample kind of a baseline value.
pub const BASELINE: &str = "baseline";

/// The guard-sample kind of the impact score (recorded whichever guards apply): the highest
/// score of the evaluations since the previous such sample.
pub const IMPACT_SCORE: &str = "impact_score";

/// A rollback's timing.
#[derive(Clone, Copy, Debug)]
pub struct RolledBack {
    /// From the evaluation that saw the violation until the kernel was disarmed.
    pub decision_to_disarm: Duration,
    /// From the violating observation until the kernel was disarmed.
    pub observation_to_disarm: Duration,
}

impl<E: FaultEngine> Manager<E> {
    /// Renews the lease of running experiment `id`; its length.
    pub fn renew_lease(&self, id: &str) -> Result<Duration, ExperimentError> {
        let run = lock(&self.runs).get(id).filter(|r| r.published()).cloned();
        let Some(run) = run.filter(|r| r.running()) else {
            return Err(match lock(&self.store).experiment(id)? {
                Some(row) => ExperimentError::NotRunning {
                    id: id.into(),
                    state: row.state,
                },
                None => ExperimentError::NotFound(id.into()),
            });
        };
        let lease = run
            .info
            .lease
            .ok_or_else(|| ExperimentError::NoLease(id.into()))?;
        run.renew(self.clock.now());
        Ok(lease)
    }

    /// What is left of today's budget (spent and reserved by running experiments deducted).
    pub fn daily_remaining(&self) -> f64 {
        lock(&self.ledger).remaining(self.clock.now_ms())
    }

    /// Whether `id` is running (published and not ended).
    pub fn is_running(&self, id: &str) -> bool {
        lock(&self.runs).get(id).is_some_and(|r| r.running())
    }

    /// Keeps `evaluation` as the live guard state of `id` (and its series on `/metrics` while
    /// it runs), and records its samples and the impact score when due (always once it ended:
    /// the evaluation that rolled it back).
    pub fn observe_guards(&self, id: &str, evaluation: &Evaluation, now: Instant) {
        for g in &evaluation.guards {
            let labels = [g.name.as_str()];
            self.metrics
                .guard_evaluations
                .with_label_values(&labels)
                .inc();
            // At 0 from the first evaluation on, so that `increase()` sees the first violation.
            let violations = self.metrics.guard_violations.with_label_values(&labels);
            if !g.ok {
                violations.inc();
            }
        }
        let run = lock(&self.runs).get(id).cloned();
        let due = match &run {
            Some(run) => run.set_guards(
                evaluation.guards.clone(),
                evaluation.impact,
                now,
                SNAPSHOT_EVERY,
                |view| {
                    // Per experiment: two experiments with the same guard do not overwrite each
                    // other, and its finish removes them (`Manager::unpublish_guards`).
                    for g in &view.states {
                        let labels = [id, g.name.as_str()];
                        self.metrics
                            .guard_value
                            .with_label_values(&labels)
                            .set(g.value.unwrap_or(f64::NAN));
                        self.metrics
                            .guard_threshold
                            .with_label_values(&labels)
                            .set(g.threshold);
                    }
                    self.metrics
                        .impact_score
                        .with_label_values(&[id])
                        .set(view.impact);
                },
            ),
            None => Some(evaluation.impact),
        };
        if let Some(peak_impact) = due {
            let at_ms = self.clock.now_ms();
            let mut rows: Vec<GuardSampleRow> = evaluation
                .guards
                .iter()
                .map(|g| GuardSampleRow {
                    at_ms,
                    guard: g.name.clone(),
                    kind: g.kind.as_str().to_owned(),
                    objective: g.objective.clone(),
                    threshold: g.threshold,
                    value: g.value,
                    ok: g.ok,
                })
                .collect();
            rows.push(GuardSampleRow {
                at_ms,
                guard: "impact score".to_owned(),
                kind: IMPACT_SCORE.to_owned(),
                objective: String::new(),
                threshold: 0.0,
                value: Some(peak_impact),
                ok: true,
            });
            self.send(Job::GuardSamples {
                id: id.to_owned(),
                rows,
            });
        }
    }

    /// Removes the per-experiment guard series of `run` from `/metrics` (its finish does).
    pub(super) fn unpublish_guards(&self, run: &Run<E::Armed>) {
        let id = run.info.id.as_str();
        run.with_guards(|view| {
            for g in &view.states {
                let labels = [id, g.name.as_str()];
                // Not found = never published (it ended before its first evaluation).
                let _ = self.metrics.guard_value.remove_label_values(&labels);
                let _ = self.metrics.guard_threshold.remove_label_values(&labels);
            }
            let _ = self.metrics.impact_score.remove_label_values(&[id]);
        });
    }

    /// Alerts that guard `guard` of running experiment `id` is red without rolling it back
    /// (the caller alerts once per guard): a timeline event of `kind` (`slo_warning`,
    /// `guard_alert`) with `message`, and a `guard_alert` notification.
    pub fn guard_alert(&self, id: &str, kind: &str, guard: &str, message: String) {
        let run = lock(&self.runs).get(id).filter(|r| r.running()).cloned();
        let Some(run) = run else {
            return;
        };
        self.event(id, kind, message.clone());
        self.announce(
            &run,
            NoticeKind::GuardAlert,
            &message,
            vec![("guard".to_owned(), guard.to_owned())],
        );
    }

    /// Moves running experiment `id` to the ramp step `p`: one slot write. A stop, rollback or
    /// emergency stop that raced the write still wins: it ended the run before disarming, so
    /// a run found ended after the write is disarmed again here. False when it is not running
    /// (nothing is left armed).
    pub fn ramp_to(
        &self,
        id: &str,
        p: f64,
        step: String,
    ) -> Result<bool, crate::engine::EngineError> {
        let Some(run) = lock(&self.runs).get(id).filter(|r| r.running()).cloned() else {
            return Ok(false);
        };
        let written = run.with_armed(|a| self.engine.set_step(a, p));
        if !run.running() || self.latched() {
            if let Err(e) = self.engine.switchboard().disarm(&run.info.switch) {
                tracing::error!(experiment_id = %id, error = %e, "disarming after a ramp step raced an end");
            }
            return Ok(false);
        }
        match written {
            Some(Ok(())) => {
                self.event(id, "step", step.clone());
                run.set_step(step);
                Ok(true)
            }
            Some(Err(e)) => Err(e),
            None => Ok(false),
        }
    }

    /// Records the baseline of `id`: each guard's value before arming (kind `baseline`), at
    /// the time its window ended, `ago` before now (the experiment has an id only once armed).
    pub fn record_baseline(&self, id: &str, values: &[(String, f64)], ago: Duration) {
        let ago_ms = u64::try_from(ago.as_millis()).unwrap_or(u64::MAX);
        let at_ms = self.clock.now_ms().saturating_sub(ago_ms);
        let rows = values
            .iter()
            .map(|(name, value)| GuardSampleRow {
                at_ms,
                guard: name.clone(),
                kind: BASELINE.to_owned(),
                objective: String::new(),
                threshold: 0.0,
                value: Some(*value),
                ok: true,
            })
            .collect();
        self.send(Job::GuardSamples {
            id: id.to_owned(),
            rows,
        });
        let text: Vec<String> = values
            .iter()
            .map(|(n, v)| format!("{n} = {v:.4}"))
            .collect();
        self.send(Job::Event {
            id: id.to_owned(),
            at_ms,
            kind: "baseline".to_owned(),
            message: format!("baseline: {}", text.join(", ")),
        });
    }

    /// Records the first ramp step of `id` (armed by its start).
    pub fn first_step(&self, id: &str, step: String) {
        if let Some(run) = lock(&self.runs).get(id) {
            run.set_step(step.clone());
        }
        self.event(id, "step", step);
    }

    /// Records a timeline event of `id` (on the recorder).
    pub fn event(&self, id: &str, kind: &str, message: String) {
        self.send(Job::Event {
            id: id.to_owned(),
            at_ms: self.clock.now_ms(),
            kind: kind.to_owned(),
            message,
        });
    }

    /// Rolls `id` back for `violation`, seen by the evaluation that began at `evaluated`:
    /// disarms it, then records why, then hands it to the recorder, which releases (detaches)
    /// and records it, then runs the rollback strategies and notifies, in that order
    /// ([`Job::RolledBack`]). `None` when it is not running (it ended, or someone ended it
    /// first).
    pub fn rollback(
        &self,
        id: &str,
        violation: &Violation,
        evaluated: Instant,
    ) -> Option<RolledBack> {
        let run = lock(&self.runs)
            .get(id)
            .filter(|r| r.published())
            .cloned()?;
        let decision_to_disarm = self.end_and_disarm(
            &run,
            State::RolledBack,
            &violation.reason,
            evaluated,
            "guard",
        )?;
        let observation_to_disarm = violation.observed.elapsed();
        self.metrics
            .rollbacks
            .with_label_values(&[violation.cause()])
            .inc();
        self.metrics
            .decision_to_disarm_seconds
            .observe(decision_to_disarm.as_secs_f64());
        let value = violation
            .value
            .map_or_else(|| "unavailable".to_owned(), |v| v.to_string());
        self.event(
            id,
            "rollback",
            format!(
                "{}; guard {} = {value}, objective {}; disarmed {} µs after the evaluation that \
                 saw it, {} µs after the violating observation",
                violation.reason,
                violation.guard,
                violation.objective,
                decision_to_disarm.as_micros(),
                observation_to_disarm.as_micros()
            ),
        );
        let observed_ms = self
            .clock
            .now_ms()
            .saturating_sub(u64::try_from(observation_to_disarm.as_millis()).unwrap_or(0));
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.send(Job::Rollback {
            id: id.to_owned(),
            row: RollbackRow {
                guard: violation.guard.clone(),
                value: violation.value,
                objective: violation.objective.clone(),
                observed_ms,
                disarm_us: us(decision_to_disarm),
                observation_us: us(observation_to_disarm),
            },
        });
        // The notification waits for the detach and the strategies (their outcomes are in it).
        self.send(Job::RolledBack {
            run,
            reason: violation.reason.clone(),
            fields: vec![
                ("guard".to_owned(), violation.guard.clone()),
                ("value".to_owned(), value),
                ("objective".to_owned(), violation.objective.clone()),
                (
                    "decision_to_disarm_us".to_owned(),
                    us(decision_to_disarm).to_string(),
                ),
                (
                    "observation_to_disarm_us".to_owned(),
                    us(observation_to_disarm).to_string(),
                ),
            ],
        });
        Some(RolledBack {
            decision_to_disarm,
            observation_to_disarm,
        })
    }
}
