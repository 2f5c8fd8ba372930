//! One SLO guard: the last sample of its query against its objective, breached only once the
//! objective has been missed for the SLO's `for`. An unavailable sample is a failure at once
//! (fail safe: an experiment never runs blind).

use std::time::Instant;

use chaos_api::config::SloDefinition;

use super::{GuardKind, GuardState, Sample, Violation};

/// What an SLO's breach does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SloRole {
    /// Rolls back.
    Critical,
    /// Alerts.
    Warning,
    /// Only measured, for a rollback trigger (the experiment does not apply it as a guard).
    Source,
}

/// An SLO and what was last observed of it.
pub struct SloGuard {
    pub name: String,
    pub def: SloDefinition,
    pub role: SloRole,
    /// The last sample and when it was taken.
    pub last: Option<(Instant, Sample)>,
    /// Since when the objective has been missed (by the samples), if it is.
    missed_since: Option<Instant>,
    /// Every value observed so far, with its time (the baseline reads them).
    pub history: Vec<(Instant, f64)>,
}

impl SloGuard {
    pub fn new(name: String, def: SloDefinition, role: SloRole) -> Self {
        Self {
            name,
            def,
            role,
            last: None,
            missed_since: None,
            history: Vec::new(),
        }
    }

    /// Records a sample taken at `at`.
    pub fn observe(&mut self, at: Instant, sample: Sample) {
        match &sample {
            Sample::Value(v) if self.def.objective.holds(*v) => self.missed_since = None,
            Sample::Value(_) => {
                self.missed_since.get_or_insert(at);
            }
            Sample::Unavailable(_) => {}
        }
        if let Sample::Value(v) = sample {
            self.history.push((at, v));
        }
        self.last = Some((at, sample));
    }

    /// The last value, if the last sample had one.
    pub fn value(&self) -> Option<f64> {
        match &self.last {
            Some((_, Sample::Value(v))) => Some(*v),
            _ => None,
        }
    }

    /// Its state at `now`.
    pub fn state(&self, now: Instant) -> GuardState {
        let objective = self.def.objective.to_string();
        let (ok, detail) = match &self.last {
            None => (false, "guard unavailable: no sample yet".to_owned()),
            Some((_, Sample::Unavailable(why))) => (false, format!("guard unavailable: {why}")),
            Some((_, Sample::Value(v))) => match self.missed_since {
                None => (true, format!("{v} meets {objective}")),
                Some(since) if now.saturating_duration_since(since) >= self.def.for_ => (
                    false,
                    format!(
                        "{v} misses {objective} (for {:?})",
                        now.saturating_duration_since(since)
                    ),
                ),
                Some(since) => (
                    true,
                    format!(
                        "{v} misses {objective} since {:?}, breached after {}",
                        now.saturating_duration_since(since),
                        humantime::format_duration(self.def.for_)
                    ),
                ),
            },
        };
        GuardState {
            name: self.name.clone(),
            kind: if self.role == SloRole::Warning {
                GuardKind::WarningSlo
            } else {
                GuardKind::CriticalSlo
            },
            objective,
            threshold: self.def.objective.threshold,
            value: self.value(),
            ok,
            detail,
            at: self.last.as_ref().map(|(at, _)| *at),
        }
    }

    /// The violation it stands for at `now`, if it is red.
    pub fn violation(&self, now: Instant) -> Option<Violation> {
        let state = self.state(now);
        if state.ok {
            return None;
        }
        let (at, reason) = match &self.last {
            None => (
                now,
                format!("guard unavailable: {}: no sample yet", self.name),
            ),
            Some((at, Sample::Unavailable(why))) => {
                (*at, format!("guard unavailable: {}: {why}", self.name))
            }
            Some((at, Sample::Value(v))) => (
                *at,
                format!(
                    "slo violation: {} = {v} (objective {})",
                    self.name, state.objective
                ),
            ),
        };
        Some(Violation {
            guard: self.name.clone(),
            value: state.value,
            objective: state.objective,
            reason,
            observed: at,
        })
    }
}
