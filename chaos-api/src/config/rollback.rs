//! The `rollback` section of the chaos config: what happens after a guard fires or the emergency
//! stop is pulled (strategies, notification channels), with their defaults and checks. The
//! channel and action definitions themselves live in `notify`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    check_names,
    notify::{Channel, RollbackActions},
};
use crate::error::{ModelError, check_range, invalid};

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
    /// Where experiments are announced (start, budget alert, rollback, budget exhausted,
    /// emergency stop, end): names of channels defined in `channels`, each once. Default: none.
    pub notification_channels: Vec<String>,
    /// The channel definitions: name -> definition tagged by `type` (`slack`, `pagerduty`,
    /// `email`, `webhook`, `alertmanager`). A channel defined but not listed in
    /// `notification_channels` is not used. Default: none.
    pub channels: BTreeMap<String, Channel>,
    /// Extra rollback steps, run after the kernel faults are disarmed.
    pub strategies: RollbackStrategies,
    /// The webhooks that carry out `traffic_shift`, `feature_flag_disable` and `scale_down`.
    /// Default: none (a strategy set true without one is skipped, and pre-flight says so).
    pub actions: RollbackActions,
}

impl Default for Rollback {
    fn default() -> Self {
        Self {
            automatic: true,
            manual_trigger: ManualTrigger::EmergencyStop,
            max_rollback_time: 300,
            notification_channels: Vec::new(),
            channels: BTreeMap::new(),
            strategies: RollbackStrategies::default(),
            actions: RollbackActions::default(),
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
        )?;
        for (name, channel) in &self.channels {
            if name.trim().is_empty() {
                return Err(invalid(
                    "rollback.channels",
                    format!("{name:?}"),
                    "non-empty channel names",
                ));
            }
            channel.validate(&format!("rollback.channels.{name}"))?;
        }
        for (index, name) in self.notification_channels.iter().enumerate() {
            let path = format!("rollback.notification_channels[{index}]");
            if !self.channels.contains_key(name) {
                let defined: Vec<&str> = self.channels.keys().map(String::as_str).collect();
                return Err(invalid(
                    path,
                    format!("{name:?}"),
                    format!(
                        "the name of a channel defined under rollback.channels (defined: {}); \
                         define {name:?} there",
                        if defined.is_empty() {
                            "none".to_owned()
                        } else {
                            defined.join(", ")
                        }
                    ),
                ));
            }
            if self.notification_channels[..index].contains(name) {
                return Err(invalid(
                    path,
                    format!("{name:?}"),
                    "each channel listed once",
                ));
            }
        }
        self.actions.validate()
    }
}

/// `rollback.manual_trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualTrigger {
    /// `emergency_stop`: `chaos-ctl emergency-stop` disarms everything and latches.
    EmergencyStop,
}

/// `rollback.strategies`: extra steps after disarming, each defaulting to false. `pod_restart`
/// kills the target's processes (`cgroup.kill`) so that its supervisor restarts it; the others
/// call their webhook in `rollback.actions`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct RollbackStrategies {
    /// Restart the target: `cgroup.kill` of its cgroup on the node, so that its supervisor
    /// (kubelet, systemd, the container runtime) starts it again. Default: false.
    pub pod_restart: bool,
    /// Shift traffic away from the target (`rollback.actions.traffic_shift`). Default: false.
    pub traffic_shift: bool,
    /// Turn off the experiment's feature flags (`rollback.actions.feature_flag_disable`).
    /// Default: false.
    pub feature_flag_disable: bool,
    /// Scale the target's workload down (`rollback.actions.scale_down`). Default: false.
    pub scale_down: bool,
}

impl RollbackStrategies {
    /// The names of the strategies set true, in the order they run: `pod_restart`,
    /// `traffic_shift`, `feature_flag_disable`, `scale_down`.
    pub fn enabled(&self) -> Vec<&'static str> {
        [
            ("pod_restart", self.pod_restart),
            ("traffic_shift", self.traffic_shift),
            ("feature_flag_disable", self.feature_flag_disable),
            ("scale_down", self.scale_down),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }
}
