//! What the API shows of experiments: one experiment (live while it runs), the running ones,
//! those of a period, and a report's data. Live views read the run table and the engine's
//! counters; ended ones come from the store.

use std::time::Duration;

use chaos_api::state::State;

use super::{ExperimentError, FaultEngine, Manager};
use crate::guard::GuardState;
use crate::host::dbload::Figures;
use crate::store::{
    EventRow, ExperimentRow, GuardSampleRow, LoadSampleRow, PageKey, RollbackRow, SnapshotRow,
};
use crate::sync::lock;

/// An experiment as the API shows it: the stored row, with live counters and guards while it
/// runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentView {
    pub row: ExperimentRow,
    /// The guards' last evaluation (empty once it ended).
    pub guards: Vec<GuardState>,
    /// The last impact score.
    pub impact: f64,
    /// Its ramp step while it runs.
    pub step: String,
    /// A database load's newest figures from its runner, until its record is all there is.
    pub load: Option<Figures>,
}

impl ExperimentView {
    /// A stored experiment's view.
    pub fn stored(row: ExperimentRow) -> Self {
        Self {
            row,
            guards: Vec::new(),
            impact: 0.0,
            step: String::new(),
            load: None,
        }
    }
}

/// A report: the experiment, its timeline, its counters, its guards and (a database load) its
/// load over time.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportData {
    pub row: ExperimentRow,
    pub events: Vec<EventRow>,
    pub snapshots: Vec<SnapshotRow>,
    pub guards: Vec<GuardSampleRow>,
    /// A database load's figures, a sample a second (empty for the other types).
    pub load: Vec<LoadSampleRow>,
    /// What rolled it back, if a guard did.
    pub rollback: Option<RollbackRow>,
    /// (spent today, `budget.max_daily_cost`) when the report is made.
    pub daily_budget: (f64, f64),
}

impl<E: FaultEngine> Manager<E> {
    /// The live view of a published run, or `None`.
    fn live(&self, id: &str) -> Option<ExperimentView> {
        let run = lock(&self.runs)
            .get(id)
            .filter(|r| r.published())
            .cloned()?;
        // Once its release took the armed fault: the counters observed last, which the
        // release observed before it took it.
        let counters = run
            .with_armed(|a| self.engine.counters(a).ok())
            .flatten()
            .unwrap_or_else(|| run.observed());
        // Ended but not yet recorded: shown with how and when it ended.
        let (state, reason, ended_ms) = run
            .ending()
            .map_or((State::Running, String::new(), 0), |e| {
                (e.state, e.reason, e.at_ms)
            });
        let mut row = self.row(&run, state, reason, ended_ms);
        (row.seen, row.matched, row.injected, row.capped) = (
            counters.seen,
            counters.matched,
            counters.injected,
            counters.capped,
        );
        let elapsed = self.clock.now().saturating_duration_since(run.info.started);
        row.spent = run
            .info
            .price
            .spent(counters.injected, elapsed, run.info.budget);
        let guards = run.guards();
        Some(ExperimentView {
            row,
            guards: guards.states,
            impact: guards.impact,
            step: run.step(),
            load: run.load(),
        })
    }

    /// One experiment, with live counters while it runs.
    pub fn get(&self, id: &str) -> Result<ExperimentView, ExperimentError> {
        if let Some(view) = self.live(id) {
            return Ok(view);
        }
        let row = lock(&self.store)
            .experiment(id)?
            .ok_or_else(|| ExperimentError::NotFound(id.into()))?;
        Ok(ExperimentView::stored(row))
    }

    /// At most `limit` experiments started in the last `since` (all when `None`), newest
    /// first, starting right after `after` (from the newest when `None`); running ones live.
    pub fn list(
        &self,
        since: Option<Duration>,
        after: Option<&PageKey>,
        limit: usize,
    ) -> Result<Vec<ExperimentView>, ExperimentError> {
        let since_ms = since.map_or(0, |d| {
            self.clock
                .now_ms()
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        let rows = lock(&self.store).experiments_page(since_ms, after, limit)?;
        Ok(rows
            .into_iter()
            .map(|row| match row.state {
                State::Running => self
                    .live(&row.id)
                    .unwrap_or_else(|| ExperimentView::stored(row)),
                _ => ExperimentView::stored(row),
            })
            .collect())
    }

    /// The published experiments (running, or ended and not yet recorded), with live
    /// counters, by id.
    pub fn running(&self) -> Vec<ExperimentView> {
        let ids: Vec<String> = lock(&self.runs).keys().cloned().collect();
        let mut views: Vec<_> = ids.iter().filter_map(|id| self.live(id)).collect();
        views.sort_by(|a, b| a.row.id.cmp(&b.row.id));
        views
    }

    /// An experiment's report data.
    pub fn report(&self, id: &str) -> Result<ReportData, ExperimentError> {
        let row = self.get(id)?.row;
        let store = lock(&self.store);
        Ok(ReportData {
            row,
            events: store.events(id)?,
            snapshots: store.snapshots(id)?,
            guards: store.guard_samples(id)?,
            load: store.load_samples(id)?,
            rollback: store.rollback(id)?,
            daily_budget: (
                lock(&self.ledger).spent(self.clock.now_ms()),
                self.config.budget.max_daily_cost,
            ),
        })
    }
}
