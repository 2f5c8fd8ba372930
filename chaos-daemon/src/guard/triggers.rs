//! The rollback triggers: limits on how far the error rate, the availability and the health
//! checks' success rate may move from the baseline measured before arming (absolute
//! differences of ratios: 0.05 = 5 percentage points).

use std::time::Instant;

use chaos_api::config::RollbackTriggers;

use super::{GuardKind, GuardSet, GuardState, Sample, Violation};

/// The values measured before arming.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baseline {
    /// Mean of the error-rate SLO's samples.
    pub error_rate: Option<f64>,
    /// Mean of the availability SLO's samples.
    pub availability: Option<f64>,
    /// Lowest success rate of the health endpoints.
    pub health: Option<f64>,
    /// Mean of every SLO's samples, by name (for the report and the impact score).
    pub slos: Vec<(String, f64)>,
}

impl Baseline {
    /// The baseline from what `set` observed so far.
    pub fn measure(set: &GuardSet, config: &RollbackTriggers, now: Instant) -> Self {
        let slos: Vec<(String, f64)> = set
            .slos
            .iter()
            .filter(|s| !s.history.is_empty())
            .map(|s| {
                let mean = s.history.iter().map(|(_, v)| v).sum::<f64>() / s.history.len() as f64;
                (s.name.clone(), mean)
            })
            .collect();
        let mean_of = |name: &str| slos.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        Self {
            error_rate: mean_of(&config.error_rate_slo),
            availability: mean_of(&config.availability_slo),
            health: set
                .health
                .iter()
                .filter_map(|h| h.success_rate(now))
                .reduce(f64::min),
            slos: slos.clone(),
        }
    }

    /// The baseline value of the SLO `name`.
    pub fn slo(&self, name: &str) -> Option<f64> {
        self.slos.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// The triggers and the baseline they compare with.
pub struct Triggers {
    pub config: RollbackTriggers,
    pub baseline: Baseline,
}

/// One trigger's measured degradation against its limit.
pub struct Degradation {
    pub name: &'static str,
    /// How far it moved the bad way from the baseline (`None`: not measurable now).
    pub moved: Option<f64>,
    pub limit: f64,
    /// When the observation of its value now was taken (its SLO's last sample, the last probe).
    pub at: Option<Instant>,
}

impl Triggers {
    pub fn new(config: RollbackTriggers, baseline: Baseline) -> Self {
        Self { config, baseline }
    }

    /// Each active trigger's degradation at `now`: a trigger is active when its source (the
    /// SLO named by the config, or a health endpoint) is among the guards.
    pub fn degradations(&self, set: &GuardSet, now: Instant) -> Vec<(Degradation, String)> {
        let mut out = Vec::new();
        // The SLO's last value (if it has one) and when its last sample was taken.
        let slo_now = |name: &str| {
            set.slos
                .iter()
                .find(|s| s.name == name)
                .map(|s| match &s.last {
                    Some((at, Sample::Value(v))) => (Some(*v), Some(*at)),
                    Some((at, Sample::Unavailable(_))) => (None, Some(*at)),
                    None => (None, None),
                })
        };
        if let Some((now_value, at)) = slo_now(&self.config.error_rate_slo) {
            let moved = now_value.zip(self.baseline.error_rate).map(|(v, b)| v - b);
            let what = format!(
                "{} {} (baseline {})",
                self.config.error_rate_slo,
                fmt(now_value),
                fmt(self.baseline.error_rate)
            );
            out.push((
                Degradation {
                    name: "error_rate_increase",
                    moved,
                    limit: self.config.error_rate_increase,
                    at,
                },
                what,
            ));
        }
        if let Some((now_value, at)) = slo_now(&self.config.availability_slo) {
            let moved = now_value
                .zip(self.baseline.availability)
                .map(|(v, b)| b - v);
            let what = format!(
                "{} {} (baseline {})",
                self.config.availability_slo,
                fmt(now_value),
                fmt(self.baseline.availability)
            );
            out.push((
                Degradation {
                    name: "availability_drop",
                    moved,
                    limit: self.config.availability_drop,
                    at,
                },
                what,
            ));
        }
        if !set.health.is_empty() {
            let current = set
                .health
                .iter()
                .filter_map(|h| h.success_rate(now))
                .reduce(f64::min);
            let moved = current.zip(self.baseline.health).map(|(v, b)| b - v);
            let what = format!(
                "health success rate {} (baseline {})",
                fmt(current),
                fmt(self.baseline.health)
            );
            out.push((
                Degradation {
                    name: "health_degradation",
                    moved,
                    limit: self.config.health_degradation,
                    at: set.health.iter().filter_map(|h| h.last_probe).max(),
                },
                what,
            ));
        }
        out
    }

    /// The triggers' states at `now`, and the first violation.
    pub fn states(&self, set: &GuardSet, now: Instant) -> (Vec<GuardState>, Option<Violation>) {
        let mut violation = None;
        let states = self
            .degradations(set, now)
            .into_iter()
            .map(|(d, what)| {
                let ok = d.moved.is_some_and(|m| m <= d.limit);
                let objective = format!("<= {}", d.limit);
                if !ok && violation.is_none() {
                    violation = Some(Violation {
                        guard: d.name.to_owned(),
                        value: d.moved,
                        objective: objective.clone(),
                        reason: match d.moved {
                            Some(m) => format!(
                                "rollback trigger {}: moved {m:.4} > {} ({what})",
                                d.name, d.limit
                            ),
                            None => format!("guard unavailable: {}: {what}", d.name),
                        },
                        observed: d.at.unwrap_or(now),
                    });
                }
                GuardState {
                    name: d.name.to_owned(),
                    kind: GuardKind::Trigger,
                    objective,
                    threshold: d.limit,
                    value: d.moved,
                    ok,
                    detail: what,
                    at: d.at,
                }
            })
            .collect();
        (states, violation)
    }
}

fn fmt(value: Option<f64>) -> String {
    value.map_or_else(|| "unavailable".to_owned(), |v| format!("{v:.4}"))
}
