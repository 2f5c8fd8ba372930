//! The `rollback` section of the chaos config: what happens after a guard fires or the emergency
//! stop is pulled (strategies, notification channels), with their defaults and checks.

use serde::Deserialize;

use super::check_names;
use crate::error::{ModelError, check_range};

/// `rollback`: what happens when a guard fires or the emergency stop is pulled. Disarming the
/// kernel faults always happens first; the strategies are extra steps after it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the rollback section (a mapping)"
)]
pub struct Rollback {
    /// Roll back by itself when a guard fires (false: only alert). Default: true.
    pub automatic: bool,
    /// The manual trigger; only `emergency_stop` (the `chaos-ctl emergency-stop` command).
    /// Default: `emergency_stop`.
    pub manual_trigger: ManualTrigger,
    /// Most time a rollback may take, in seconds; at least 1. Default: 300.
    pub max_rollback_time: u64,
    /// Where rollbacks are announced (e.g. `slack`, `email`, `pagerduty`); names must not be
    /// empty. Default: none.
    pub notification_channels: Vec<String>,
    /// Extra rollback steps.
    pub strategies: RollbackStrategies,
}

impl Default for Rollback {
    fn default() -> Self {
        Self {
            automatic: true,
            manual_trigger: ManualTrigger::EmergencyStop,
            max_rollback_time: 300,
            notification_channels: Vec::new(),
            strategies: RollbackStrategies::default(),
        }
    }
}

impl Rollback {
    pub(super) fn validate(&self) -> Result<(), ModelError> {
        check_range(
            "rollback.max_rollback_time",
            self.max_rollback_time,
            1,
            u64::MAX,
        )?;
        check_names(
            "rollback.notification_channels",
            &self.notification_channels,
        )
    }
}

/// `rollback.manual_trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualTrigger {
    /// `emergency_stop`: `chaos-ctl emergency-stop` disarms everything and latches.
    EmergencyStop,
}

/// `rollback.strategies`: extra steps after disarming. Each needs an integration outside the
/// daemon, so each defaults to false.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct RollbackStrategies {
    /// Restart the affected pods. Default: false.
    pub pod_restart: bool,
    /// Shift traffic away from the affected pods. Default: false.
    pub traffic_shift: bool,
    /// Turn off the feature flags of the experiment. Default: false.
    pub feature_flag_disable: bool,
    /// Scale the affected workload down. Default: false.
    pub scale_down: bool,
}
