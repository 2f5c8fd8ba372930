//! The emergency-stop latch's record: why and since when, kept in the store so that a daemon
//! restarted after an emergency stop (SIGTERM, SIGKILL, a crash) comes back latched and starts
//! nothing until the latch is cleared.
//!
//! The switchboard's flag is what starts check (one atomic, see [`crate::switch`]); the record
//! is bookkeeping after the disarm: an emergency stop disarms first, then writes the record
//! before it answers (the gRPC handler, on the blocking pool). Clearing removes the record first, so that a store failure leaves the
//! node latched (and says so) rather than latched again after the next restart.

use std::time::{Duration, UNIX_EPOCH};

use super::{ExperimentError, FaultEngine, Manager};
use crate::{store::LatchRow, sync::lock};

impl<E: FaultEngine> Manager<E> {
    /// At start-up: a latch the store still holds latches this daemon again, and the log says
    /// so.
    pub(super) fn restore_latch(&self, latch: Option<LatchRow>) {
        let Some(latch) = latch else { return };
        self.engine.switchboard().latch();
        self.metrics.emergency_stop.set(1);
        tracing::warn!(
            reason = %latch.reason,
            latched_at = %rfc3339(latch.at_ms),
            "the emergency stop is still latched from before this daemon started: no experiment \
             starts until `chaos-ctl emergency-stop --clear`"
        );
        *lock(&self.latch) = Some(latch);
    }

    /// After [`Manager::emergency_stop`] disarmed everything: records why, in memory and in
    /// the store (on disk before it returns; it waits for the store, so call it off the async
    /// runtime). A store failure is logged; the latch then holds until this process ends. The
    /// store's lock orders it with [`Manager::clear_emergency_stop`].
    pub fn record_latch(&self, reason: &str) {
        let latch = LatchRow {
            reason: reason.to_owned(),
            at_ms: self.clock.now_ms(),
        };
        let store = lock(&self.store);
        // A clear that ran between the disarm and here lifted the flag: this stop came last.
        self.engine.switchboard().latch();
        *lock(&self.latch) = Some(latch.clone());
        if let Err(e) = store.set_latch(&latch) {
            tracing::error!(error = %e, "the emergency stop is latched but not recorded: a restarted daemon will not be latched");
        }
    }

    /// Lifts the emergency-stop latch: removed from the store first; when that fails the node
    /// stays latched and the error says why.
    pub fn clear_emergency_stop(&self) -> Result<(), ExperimentError> {
        let store = lock(&self.store);
        store.clear_latch()?;
        self.engine.switchboard().clear();
        *lock(&self.latch) = None;
        self.metrics.emergency_stop.set(0);
        Ok(())
    }

    /// Why and since when the emergency stop is latched; `None` when it is not.
    pub fn latch(&self) -> Option<LatchRow> {
        if !self.latched() {
            return None;
        }
        // Latched by a stop still writing its record: the flag is the truth, the reason follows.
        Some(lock(&self.latch).clone().unwrap_or(LatchRow {
            reason: String::new(),
            at_ms: 0,
        }))
    }
}

/// `at_ms` (Unix milliseconds) as RFC 3339 UTC, to the second.
fn rfc3339(at_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}
