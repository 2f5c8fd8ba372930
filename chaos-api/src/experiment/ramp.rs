//! Gradual intensity (`ramp:` in a file, `--ramp` on the command line): the experiment arms at
//! its first step and moves to the next every `hold`, each step only while every guard is
//! green. A step is a probability (0 to 1) for the types that drop or fail something, a
//! delay in whole milliseconds for network_latency and a rate in queries per second for
//! database_load; the seed's `experiment_types.*.parameters` lists are ready-made ramps
//! (`steps: preset`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, de::Error as _};

use super::database::check_rate;
use super::{ExperimentType, MAX_LATENCY};
use crate::error::{ModelError, check_duration_ms, check_ratio, deserialize_duration, invalid};

/// Most steps of a ramp.
pub const MAX_RAMP_STEPS: usize = 16;

/// An experiment's ramp.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a ramp (steps, hold)")]
pub struct Ramp {
    /// The intensities, in order, or `preset`: the config's list for the type.
    pub steps: RampSteps,
    /// How long each step holds before the next may start; 1s to 24h. The last step holds
    /// until the experiment ends.
    #[serde(deserialize_with = "deserialize_duration")]
    pub hold: Duration,
}

/// A ramp's steps.
#[derive(Debug, Clone, PartialEq)]
pub enum RampSteps {
    /// The config's `experiment_types` list for the experiment's type (resolved on admission).
    Preset,
    /// Probabilities 0 to 1, for network_latency delays in milliseconds, for database_load
    /// queries per second.
    Values(Vec<f64>),
}

impl<'de> Deserialize<'de> for RampSteps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Values(Vec<f64>),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Word(w) if w == "preset" => Ok(Self::Preset),
            Raw::Word(w) => Err(D::Error::custom(format_args!(
                "{w:?} is not allowed; expected `preset` or a list of probabilities"
            ))),
            Raw::Values(v) => Ok(Self::Values(v)),
        }
    }
}

impl Ramp {
    /// The steps, once resolved (`None` for an unresolved preset).
    pub fn values(&self) -> Option<&[f64]> {
        match &self.steps {
            RampSteps::Values(v) => Some(v),
            RampSteps::Preset => None,
        }
    }

    /// Checks the ramp of an experiment of `kind` lasting `duration`.
    pub fn validate(&self, kind: ExperimentType, duration: Duration) -> Result<(), ModelError> {
        if !kind.takes_ramp() {
            return Err(invalid(
                "ramp",
                "a ramp",
                format!(
                    "no ramp for {kind} (remove `ramp`): a ramp only for packet_loss, \
                     packet_duplication, packet_corruption, dependency_failure, \
                     api_error_injection, syscall_error (intensity steps), network_latency \
                     (delay steps) and database_load (rate steps)"
                ),
            ));
        }
        check_duration_ms(
            "ramp.hold",
            self.hold,
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
        )?;
        if let Some(steps) = self.values() {
            if steps.is_empty() || steps.len() > MAX_RAMP_STEPS {
                return Err(invalid(
                    "ramp.steps",
                    format!("{} steps", steps.len()),
                    format!("1 to {MAX_RAMP_STEPS} steps"),
                ));
            }
            for (i, step) in steps.iter().enumerate() {
                let path = format!("ramp.steps[{i}]");
                if kind == ExperimentType::NetworkLatency {
                    let max = MAX_LATENCY.as_millis() as f64;
                    if !(step.fract() == 0.0 && (1.0..=max).contains(step)) {
                        return Err(invalid(
                            path,
                            step,
                            format!("a delay of whole milliseconds, 1 to {max}"),
                        ));
                    }
                } else if kind == ExperimentType::DatabaseLoad {
                    check_rate(&path, *step)?;
                } else {
                    check_ratio(&path, *step)?;
                }
            }
            let before_last = self.hold * (steps.len() as u32 - 1);
            if before_last >= duration {
                return Err(invalid(
                    "ramp",
                    format!(
                        "{} steps held {} each",
                        steps.len(),
                        humantime::format_duration(self.hold)
                    ),
                    format!(
                        "a last step that starts before the duration ({}) ends",
                        humantime::format_duration(duration)
                    ),
                ));
            }
        }
        Ok(())
    }
}
