//! What the lifecycle announces through the [`Notifier`]: a start, a budget alert, a rollback,
//! an exhausted budget, an emergency stop, and every end. [`Notifier::notify`] only queues
//! (no I/O, no waiting), so announcing never delays a disarm; it is called after the disarm.

use std::{path::Path, sync::OnceLock};

use super::{FaultEngine, Manager, RolledBack, Run};
use crate::notify::{Notice, NoticeKind, Notifier};

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

    /// Runs the rollback strategies for experiment `id`, rolled back as `rolled` for
    /// `reason`, once its programs are released (it waits for the recorder): `pod_restart`
    /// kills the target's processes, the others call their actions. Each outcome is a
    /// `strategy` event. Blocks (up to `rollback.max_rollback_time`): call it off the async
    /// runtime, after the disarm.
    pub fn run_strategies(&self, id: &str, rolled: &RolledBack, reason: &str) {
        let Some((notifier, node)) = self.announcer.get() else {
            return;
        };
        self.flush();
        let notice = Notice {
            kind: NoticeKind::RolledBack,
            experiment_id: id.to_owned(),
            name: rolled.name.clone(),
            experiment_type: rolled.kind.clone(),
            target: rolled.target.clone(),
            node: node.clone(),
            reason: reason.to_owned(),
            at_ms: self.clock.now_ms(),
            fields: Vec::new(),
        };
        for (strategy, result) in notifier.run_strategies(&notice, Path::new(&rolled.target)) {
            let message = match result {
                Ok(done) => format!("{strategy}: {done}"),
                Err(e) => format!("{strategy} failed: {e}"),
            };
            self.event(id, "strategy", message);
        }
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
