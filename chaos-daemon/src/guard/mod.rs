//! Guards: pure decisions over samples and a clock, no I/O (the samplers in `crate::probe`
//! measure; the lifecycle's watcher feeds them and acts on the verdict).
//!
//! A [`GuardSet`] holds every guard of one experiment: its critical and warning SLOs
//! ([`slo::SloGuard`]), its health endpoints ([`health::HealthWindow`]), the rollback
//! triggers against the baseline ([`triggers`]), and the impact score ([`impact`]).
//! [`GuardSet::evaluate`] turns the latest samples into an [`Evaluation`]: every guard's state,
//! the impact score, and the first violation, which rolls the experiment back.
//!
//! * `slo` — an SLO's objective and its `for` window.
//! * `health` — a health endpoint's sliding window: success rate and availability.
//! * `triggers` — the baseline and the three rollback triggers.
//! * `impact` — the impact score.

pub mod health;
pub mod impact;
pub mod slo;
pub mod triggers;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use chaos_api::config::{HealthEndpoint, RollbackTriggers, SloDefinition};

pub use self::{
    health::HealthWindow,
    slo::{SloGuard, SloRole},
    triggers::{Baseline, Triggers},
};

/// What a sampler measured.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    /// A value.
    Value(f64),
    /// The guard could not be measured: why (Prometheus unreachable, a query error, no data).
    Unavailable(String),
}

/// What kind of guard a state belongs to (the report and status group by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardKind {
    CriticalSlo,
    WarningSlo,
    Health,
    Trigger,
    Impact,
}

impl GuardKind {
    /// The name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CriticalSlo => "critical_slo",
            Self::WarningSlo => "warning_slo",
            Self::Health => "health",
            Self::Trigger => "trigger",
            Self::Impact => "impact",
        }
    }
}

/// One guard's last evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardState {
    pub name: String,
    pub kind: GuardKind,
    /// e.g. `<= 0.01`.
    pub objective: String,
    pub threshold: f64,
    /// `None` when it could not be measured (or has no sample yet).
    pub value: Option<f64>,
    pub ok: bool,
    /// Why it is red, or what it measured.
    pub detail: String,
}

/// Why an experiment must be rolled back.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// The guard's name.
    pub guard: String,
    pub value: Option<f64>,
    pub objective: String,
    /// The rollback reason as recorded, e.g. `slo violation: error_rate = 0.31 (objective <= 0.01)`.
    pub reason: String,
    /// When the violating sample was taken.
    pub observed: Instant,
}

impl Violation {
    /// What kind of violation it is, for the rollbacks metric: `unavailable`, `slo`,
    /// `health`, `trigger` or `impact`.
    pub fn cause(&self) -> &'static str {
        [
            ("guard unavailable", "unavailable"),
            ("slo violation", "slo"),
            ("health check failed", "health"),
            ("rollback trigger", "trigger"),
            ("impact score", "impact"),
        ]
        .into_iter()
        .find(|(prefix, _)| self.reason.starts_with(prefix))
        .map_or("other", |(_, cause)| cause)
    }
}

/// One evaluation of every guard.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub guards: Vec<GuardState>,
    /// In [0, 1]; see [`impact`].
    pub impact: f64,
    /// The first violation that rolls back, if any.
    pub violation: Option<Violation>,
    /// Warning SLOs that are breached (alert only).
    pub warnings: Vec<String>,
}

impl Evaluation {
    /// Whether every guard is green (a ramp step may start).
    pub fn all_green(&self) -> bool {
        self.violation.is_none() && self.guards.iter().all(|g| g.ok)
    }
}

/// Every guard of one experiment.
pub struct GuardSet {
    pub slos: Vec<SloGuard>,
    pub health: Vec<HealthWindow>,
    pub triggers: Option<Triggers>,
    /// The impact threshold and the config key it comes from, when the impact guard applies.
    pub impact: Option<(f64, &'static str)>,
    /// Health thresholds.
    pub min_success_rate: f64,
    pub min_availability: f64,
}

impl GuardSet {
    /// Guards for `slos` (name, definition, role) and health `endpoints`.
    pub fn new(
        slos: Vec<(String, SloDefinition, SloRole)>,
        endpoints: Vec<HealthEndpoint>,
        health_window: Duration,
        min_success_rate: f64,
        min_availability: f64,
    ) -> Self {
        Self {
            slos: slos
                .into_iter()
                .map(|(name, def, role)| SloGuard::new(name, def, role))
                .collect(),
            health: endpoints
                .into_iter()
                .map(|e| HealthWindow::new(e, health_window))
                .collect(),
            triggers: None,
            impact: None,
            min_success_rate,
            min_availability,
        }
    }

    /// Whether there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.slos.is_empty() && self.health.is_empty() && self.impact.is_none()
    }

    /// Takes the baseline from what was observed so far (the samples of the baseline window)
    /// and arms the rollback triggers against it.
    pub fn set_baseline(&mut self, config: &RollbackTriggers, now: Instant) {
        let baseline = Baseline::measure(self, config, now);
        self.triggers = Some(Triggers::new(config.clone(), baseline));
    }

    /// Evaluates every guard at `now`.
    pub fn evaluate(&mut self, now: Instant) -> Evaluation {
        let mut guards = Vec::new();
        let mut violation = None;
        let mut warnings = Vec::new();
        for slo in &self.slos {
            let state = slo.state(now);
            match slo.role {
                SloRole::Source => continue,
                SloRole::Critical if !state.ok => {
                    violation = violation.or_else(|| slo.violation(now));
                }
                SloRole::Warning if !state.ok => {
                    warnings.push(format!("{}: {}", state.name, state.detail));
                }
                _ => {}
            }
            guards.push(state);
        }
        for window in &self.health {
            let (states, red) = window.states(now, self.min_success_rate, self.min_availability);
            guards.extend(states);
            violation = violation.or(red);
        }
        if let Some(triggers) = &self.triggers {
            let (states, red) = triggers.states(self, now);
            guards.extend(states);
            violation = violation.or(red);
        }
        let score = impact::score(&guards, self.triggers.as_ref());
        if let Some((threshold, key)) = self.impact {
            let ok = score <= threshold;
            guards.push(GuardState {
                name: "impact".to_owned(),
                kind: GuardKind::Impact,
                objective: format!("<= {threshold}"),
                threshold,
                value: Some(score),
                ok,
                detail: format!("{key} = {threshold}"),
            });
            if !ok {
                violation = violation.or_else(|| {
                    Some(Violation {
                        guard: "impact".to_owned(),
                        value: Some(score),
                        objective: format!("<= {threshold}"),
                        reason: format!("impact score {score:.3} > {threshold} ({key})"),
                        observed: now,
                    })
                });
            }
        }
        Evaluation {
            guards,
            impact: score,
            violation,
            warnings,
        }
    }
}
