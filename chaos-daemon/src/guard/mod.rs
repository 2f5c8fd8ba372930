//! Guards: pure decisions over samples and a clock, no I/O (the samplers in `crate::probe`
//! measure; the lifecycle's watcher feeds them and acts on the verdict).
//!
//! A [`GuardSet`] holds every guard of one experiment: its critical and warning SLOs
//! ([`slo::SloGuard`]), its health endpoints ([`health::HealthWindow`]), the rollback
//! triggers against the baseline ([`triggers`]), and the impact score ([`impact`]).
//! [`GuardSet::evaluate`] turns the latest samples into an [`Evaluation`]: every guard's state,
//! the impact score, the first violation, which rolls the experiment back, and the alerts
//! (warning SLOs, and critical SLOs when `rollback_triggers.slo_violation` is false).
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
    /// When the observation its value comes from was taken (a sample, a probe), if any.
    pub at: Option<Instant>,
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
    /// When the violating observation (a sample, a probe) was taken; the evaluation's time
    /// only when there was none.
    pub observed: Instant,
}

/// A rollback reason's prefix and its cause, the `reason` label of the rollbacks metric.
pub const ROLLBACK_CAUSES: [(&str, &str); 5] = [
    ("guard unavailable", "unavailable"),
    ("slo violation", "slo"),
    ("health check failed", "health"),
    ("rollback trigger", "trigger"),
    ("impact score", "impact"),
];

impl Violation {
    /// What kind of violation it is, for the rollbacks metric: one of [`ROLLBACK_CAUSES`].
    pub fn cause(&self) -> &'static str {
        ROLLBACK_CAUSES
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
    /// Breached SLOs that alert instead of rolling back.
    pub alerts: Vec<Alert>,
}

/// A breached SLO that alerts instead of rolling back: a warning SLO, or a critical one while
/// `safety_checks.rollback_triggers.slo_violation` is false.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// The SLO's name.
    pub guard: String,
    /// Whether it is a critical SLO (a `guard_alert`) rather than a warning (a `slo_warning`).
    pub critical: bool,
    /// What to tell, e.g. `error_rate: 0.3 misses <= 0.01 (for 0ns)`.
    pub message: String,
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
    /// Whether a breached critical SLO rolls back (`rollback_triggers.slo_violation`); when
    /// false it alerts and leaves the impact score. An unavailable one always rolls back.
    pub slo_rollback: bool,
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
            slo_rollback: true,
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
        let mut alerts = Vec::new();
        for slo in &self.slos {
            let state = slo.state(now);
            match slo.role {
                SloRole::Source => continue,
                SloRole::Critical if !state.ok => match slo.violation(now) {
                    // Breached while breaches only alert; unavailable still rolls back.
                    Some(v) if !self.slo_rollback && v.value.is_some() => alerts.push(Alert {
                        guard: v.guard,
                        critical: true,
                        message: format!(
                            "{} (safety_checks.rollback_triggers.slo_violation is false)",
                            v.reason
                        ),
                    }),
                    v => violation = violation.or(v),
                },
                SloRole::Warning if !state.ok => alerts.push(Alert {
                    guard: state.name.clone(),
                    critical: false,
                    message: format!("{}: {}", state.name, state.detail),
                }),
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
        let (score, driven_at) = impact::score(&guards, self.triggers.as_ref(), self.slo_rollback);
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
                at: driven_at,
            });
            if !ok {
                violation = violation.or_else(|| {
                    Some(Violation {
                        guard: "impact".to_owned(),
                        value: Some(score),
                        objective: format!("<= {threshold}"),
                        reason: format!("impact score {score:.3} > {threshold} ({key})"),
                        observed: driven_at.unwrap_or(now),
                    })
                });
            }
        }
        Evaluation {
            guards,
            impact: score,
            violation,
            alerts,
        }
    }
}
