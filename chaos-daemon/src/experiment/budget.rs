//! The money budgets of running experiments, checked by the reaper's tick: spend and what is
//! left in the metrics (the day's on every tick), one alert per budget per experiment when its
//! spend crosses `budget.alert_threshold` (the experiment's own budget, and the day's), and the
//! end of an experiment whose budget is spent (reason `budget exhausted`). The kernel's fault
//! cap already guarantees no overshoot; this only ends the run and says why.

use std::{sync::Arc, time::Instant};

use chaos_api::{config::Price, state::State};
use chaos_common::SlotCounters;

use super::{
    FaultEngine, Job, Manager, Run,
    run::{ALERT_DAILY, ALERT_EXPERIMENT},
};
use crate::{
    metrics::{DAILY_BUDGET, EXPERIMENT_BUDGET},
    notify::NoticeKind,
    sync::lock,
};

/// Reason of an experiment ended by its budget.
pub const BUDGET_EXHAUSTED: &str = "budget exhausted";
/// Reason of an experiment ended by its `max_faults` before its budget.
pub const FAULT_CAP_REACHED: &str = "fault cap reached (max_faults)";

impl<E: FaultEngine> Manager<E> {
    /// What the running `runs` (with their counters) spent so far, each, and today's total
    /// (finished experiments and these).
    pub(super) fn spending(
        &self,
        runs: &[(Arc<Run<E::Armed>>, SlotCounters)],
        now: Instant,
    ) -> (Vec<f64>, f64) {
        let live: Vec<f64> = runs
            .iter()
            .map(|(run, c)| {
                let elapsed = now.saturating_duration_since(run.info.started);
                run.info.price.spent(c.injected, elapsed, run.info.budget)
            })
            .collect();
        let finished = lock(&self.ledger).spent(self.clock.now_ms());
        let today = finished + live.iter().sum::<f64>();
        (live, today)
    }

    /// Sets the day's spend and what is left of `budget.max_daily_cost` (every tick, with or
    /// without running experiments: correct from the start and after midnight UTC).
    pub(super) fn observe_daily(&self, today: f64) {
        let m = &self.metrics;
        m.daily_budget_spent.set(today);
        m.daily_budget_remaining
            .set((self.config.budget.max_daily_cost - today).max(0.0));
    }

    /// Raises the budget alerts `run` crossed, updates the budget metrics, and ends it when
    /// its budget is spent. True when it ended it.
    pub(super) fn check_budget(
        &self,
        run: &Arc<Run<E::Armed>>,
        counters: SlotCounters,
        spent: f64,
        today: f64,
        now: Instant,
    ) -> bool {
        let info = &run.info;
        let threshold = self.config.budget.alert_threshold;
        let max_daily = self.config.budget.max_daily_cost;
        let m = &self.metrics;
        m.budget_spent.with_label_values(&[&info.id]).set(spent);
        m.budget_remaining
            .with_label_values(&[&info.id])
            .set((info.budget - spent).max(0.0));
        for (which, label, spent, budget, key) in [
            (
                ALERT_EXPERIMENT,
                EXPERIMENT_BUDGET,
                spent,
                info.budget,
                "the experiment's budget",
            ),
            (
                ALERT_DAILY,
                DAILY_BUDGET,
                today,
                max_daily,
                "budget.max_daily_cost",
            ),
        ] {
            if budget > 0.0 && spent >= threshold * budget && run.raise_alert(which) {
                m.budget_alerts.with_label_values(&[label]).inc();
                let message = format!(
                    "{spent:.4} of {key} {budget:.4} spent ({:.0}%, budget.alert_threshold {threshold})",
                    100.0 * spent / budget
                );
                tracing::warn!(experiment_id = %info.id, budget = label, %message, "budget alert");
                self.announce(
                    run,
                    NoticeKind::BudgetAlert,
                    &message,
                    vec![("budget".to_owned(), label.to_owned())],
                );
                self.send(Job::Event {
                    id: info.id.clone(),
                    at_ms: self.clock.now_ms(),
                    kind: "budget_alert".into(),
                    message,
                });
            }
        }
        // The kernel refused a fault at its cap, or a time-priced run used up its money. The
        // cap is the budget's when the budget cannot buy one more fault.
        let reason = match info.price {
            Price::PerMinute(_) if spent >= info.budget => BUDGET_EXHAUSTED,
            Price::PerFault(cost) | Price::PerPod(cost) | Price::PerQuery(cost)
                if counters.capped > 0 && spent + cost > info.budget =>
            {
                BUDGET_EXHAUSTED
            }
            _ if counters.capped > 0 => FAULT_CAP_REACHED,
            _ => return false,
        };
        if self
            .end_and_disarm(run, State::Completed, reason, now, "deadline")
            .is_some()
        {
            if reason == BUDGET_EXHAUSTED {
                m.budget_exhausted.inc();
                let spent = format!("{spent:.4} of {:.4}", info.budget);
                self.announce(
                    run,
                    NoticeKind::BudgetExhausted,
                    reason,
                    vec![("spent".to_owned(), spent)],
                );
            }
            self.send(Job::Finish(run.clone()));
            return true;
        }
        false
    }
}
