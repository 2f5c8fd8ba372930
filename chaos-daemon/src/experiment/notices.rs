//! What the lifecycle announces through the [`Notifier`]: a start, a budget alert, a guard
//! alert, a rollback (after its strategies, with their outcomes), an exhausted budget, an
//! emergency stop, and every end. [`Notifier::notify`] only queues (no I/O, no waiting), so
//! announcing never delays a disarm; it is called after the disarm.

use std::sync::{Arc, OnceLock};

use super::{FaultEngine, Manager, Run};
use crate::{
    notify::{Notice, NoticeKind, Notifier},
    store::ExperimentRow,
};

/// The notifier and this node's name, set once at start-up.
pub(super) type Announcer = OnceLock<(Notifier, String)>;

impl<E: FaultEngine> Manager<E> {
    /// Announces through `notifier` from now on, as node `node`.
    pub fn set_notifier(&self, notifier: Notifier, node: String) {
        let _ = self.announcer.set((notifier, node));
    }

    /// The notifier, once set.
    pub fn notifier(&self) -> Option<&Notifier> {
        self.announcer.get().map(|(n, _)| n)
    }

    /// What follows a rollback once `run` is disarmed, its violation recorded, and it is
    /// released and recorded as `row`: the rollback strategies, then the rollback's
    /// notification (`reason`, `fields` and every strategy's outcome), then the end's. On a
    /// thread of its own: the strategies wait for answers (up to
    /// `rollback.max_rollback_time`), which must hold neither the recorder nor a disarm.
    pub(super) fn after_rollback(
        self: &Arc<Self>,
        run: Arc<Run<E::Armed>>,
        row: ExperimentRow,
        reason: String,
        fields: Vec<(String, String)>,
    ) {
        if self.announcer.get().is_none() {
            return;
        }
        let manager = self.clone();
        let spawned = std::thread::Builder::new()
            .name("chaos-strategies".into())
            .spawn(move || manager.strategies_then_notify(&run, &row, &reason, fields));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "starting the rollback strategies failed: neither they nor the rollback's notifications ran");
        }
    }

    /// Runs the rollback strategies of `run` (`pod_restart` kills the target's processes, the
    /// others call their actions), each outcome a `strategy` event and a field
    /// `strategy_<name>` of the rollback's notification; then announces the rollback and the
    /// end (recorded as `row`). Blocks.
    fn strategies_then_notify(
        &self,
        run: &Run<E::Armed>,
        row: &ExperimentRow,
        reason: &str,
        mut fields: Vec<(String, String)>,
    ) {
        let (Some(notifier), Some(notice)) = (
            self.notifier(),
            self.notice(run, NoticeKind::RolledBack, reason, Vec::new()),
        ) else {
            return;
        };
        for (strategy, result) in notifier.run_strategies(&notice, &run.info.cgroups) {
            let (event, outcome) = match result {
                Ok(done) => (format!("{strategy}: {done}"), done),
                Err(e) => (format!("{strategy} failed: {e}"), format!("failed: {e}")),
            };
            self.event(&run.info.id, "strategy", event);
            fields.push((format!("strategy_{strategy}"), outcome));
        }
        self.announce(run, NoticeKind::RolledBack, reason, fields);
        self.announce_end(run, row);
    }

    /// The notice of `kind` about `run`.
    pub(super) fn notice(
        &self,
        run: &Run<E::Armed>,
        kind: NoticeKind,
        reason: &str,
        fields: Vec<(String, String)>,
    ) -> Option<Notice> {
        let (_, node) = self.announcer.get()?;
        Some(Notice {
            kind,
            experiment_id: run.info.id.clone(),
            name: run.info.name.clone(),
            experiment_type: run.info.kind.as_str().to_owned(),
            target: run.info.target.clone(),
            node: node.clone(),
            reason: reason.to_owned(),
            at_ms: self.clock.now_ms(),
            fields,
        })
    }

    /// Queues the notice of `kind` about `run` (returns at once).
    pub(super) fn announce(
        &self,
        run: &Run<E::Armed>,
        kind: NoticeKind,
        reason: &str,
        fields: Vec<(String, String)>,
    ) {
        if let (Some(notifier), Some(notice)) =
            (self.notifier(), self.notice(run, kind, reason, fields))
        {
            notifier.notify(notice);
        }
    }
}
