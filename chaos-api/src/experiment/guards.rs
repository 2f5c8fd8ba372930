//! An experiment's own guard settings (`guards:` in a file, `--guard`, `--slo`,
//! `--guard-interval` and `--baseline` on the command line): which of the node's guards apply,
//! extra SLOs, and the evaluation interval and baseline window overriding the config's.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use crate::{
    config::{SloDefinition, check_slos, is_guard_name},
    error::{ModelError, check_duration_ms, deserialize_duration, invalid},
};

/// The guard of the health checks, as named in `guards.apply`.
pub const HEALTH_GUARD: &str = "health_checks";
/// The baseline rollback triggers, as named in `guards.apply`.
pub const TRIGGERS_GUARD: &str = "rollback_triggers";
/// The impact score, as named in `guards.apply`.
pub const IMPACT_GUARD: &str = "impact";

/// Shortest guard interval.
pub const MIN_GUARD_INTERVAL: Duration = Duration::from_millis(50);

/// An experiment's guard settings. Every field is optional; the default applies every guard
/// the node's config defines, at its interval, after its baseline.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the guards settings (a mapping)"
)]
pub struct ExperimentGuards {
    /// Only these guards apply: SLO names (the config's or `slos` here), `health_checks`,
    /// `rollback_triggers`, `impact`. Unset: all of them. An empty list runs no guard.
    pub apply: Option<Vec<String>>,
    /// Extra critical SLOs for this experiment, like `safety_checks.slos`.
    pub slos: BTreeMap<String, SloDefinition>,
    /// Evaluation interval, 50ms to 60s; unset: `safety_checks.guard_interval_ms`.
    #[serde(default, deserialize_with = "some_duration")]
    pub interval: Option<Duration>,
    /// Baseline window before arming, 0 to 1h; unset: `safety_checks.baseline`.
    #[serde(default, deserialize_with = "some_duration")]
    pub baseline: Option<Duration>,
}

fn some_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    deserialize_duration(d).map(Some)
}

impl ExperimentGuards {
    /// Whether nothing is set (every default applies).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks everything that needs no config.
    pub fn validate(&self) -> Result<(), ModelError> {
        if let Some(apply) = &self.apply
            && let Some((i, name)) = apply.iter().enumerate().find(|(_, n)| !is_guard_name(n))
        {
            return Err(invalid(
                format!("guards.apply[{i}]"),
                format!("{name:?}"),
                "a guard name: an SLO name, health_checks, rollback_triggers or impact",
            ));
        }
        check_slos("guards.slos", &self.slos)?;
        if let Some(interval) = self.interval {
            check_duration_ms(
                "guards.interval",
                interval,
                MIN_GUARD_INTERVAL,
                Duration::from_secs(60),
            )?;
        }
        if let Some(baseline) = self.baseline {
            check_duration_ms(
                "guards.baseline",
                baseline,
                Duration::ZERO,
                Duration::from_secs(3600),
            )?;
        }
        Ok(())
    }

    /// Whether the guard `name` applies.
    pub fn applies(&self, name: &str) -> bool {
        self.apply
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }
}
