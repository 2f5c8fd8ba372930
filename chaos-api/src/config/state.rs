//! The `state` section of the chaos config (not in the seed): how long the daemon keeps what it
//! records in its store.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{ModelError, check_range};

/// The most days `state.retention_days` may be (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// `state`: the daemon's store (`<state-dir>/state.db`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the state section (a mapping)"
)]
pub struct StateStore {
    /// Days the daemon keeps a record: an ended experiment (with its timeline, counter
    /// snapshots and guard samples) counts from its end, an audit entry from its request, an
    /// undone host change from its undo. Older records are deleted when the daemon starts and
    /// every hour; running experiments and host changes not yet undone are kept. 1 to 3650
    /// (at least a day: today's spend is read back from the store). Default: 30.
    pub retention_days: u32,
}

impl Default for StateStore {
    fn default() -> Self {
        Self { retention_days: 30 }
    }
}

impl StateStore {
    /// How long records are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 24 * 60 * 60)
    }

    pub(super) fn validate(&self) -> Result<(), ModelError> {
        check_range(
            "state.retention_days",
            self.retention_days,
            1,
            MAX_RETENTION_DAYS,
        )
    }
}
