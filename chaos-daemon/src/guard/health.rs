//! One health endpoint's sliding window of probe results: the success rate (successful probes
//! over all probes in the window) and the availability (the fraction of the window's time the
//! endpoint was healthy, each probe's result holding until the next one).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use chaos_api::config::HealthEndpoint;

use super::{GuardKind, GuardState, Violation};

/// Probe results of one endpoint over a sliding window.
pub struct HealthWindow {
    pub endpoint: HealthEndpoint,
    window: Duration,
    /// (when, healthy, what was seen), oldest first.
    results: VecDeque<(Instant, bool, String)>,
    /// When it was last probed.
    pub last_probe: Option<Instant>,
}

impl HealthWindow {
    pub fn new(endpoint: HealthEndpoint, window: Duration) -> Self {
        Self {
            endpoint,
            window,
            results: VecDeque::new(),
            last_probe: None,
        }
    }

    /// The guard's name: `health <url>`.
    pub fn name(&self) -> String {
        format!("health {}", self.endpoint.url)
    }

    /// Whether a probe is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.last_probe
            .is_none_or(|last| now.saturating_duration_since(last) >= self.endpoint.interval)
    }

    /// Records a probe's result at `at`; drops what left the window.
    pub fn record(&mut self, at: Instant, healthy: bool, seen: String) {
        self.last_probe = Some(at);
        self.results.push_back((at, healthy, seen));
        while self
            .results
            .front()
            .is_some_and(|(t, ..)| at.saturating_duration_since(*t) > self.window)
        {
            self.results.pop_front();
        }
    }

    /// Successful probes over all probes in the window at `now`; `None` without probes.
    pub fn success_rate(&self, now: Instant) -> Option<f64> {
        let in_window = self.in_window(now);
        let total = in_window.clone().count();
        (total > 0).then(|| in_window.filter(|(_, ok, _)| *ok).count() as f64 / total as f64)
    }

    /// The fraction of the window's time (from its first probe) the endpoint was healthy.
    pub fn availability(&self, now: Instant) -> Option<f64> {
        let probes: Vec<_> = self.in_window(now).collect();
        let first = probes.first()?.0;
        let span = now.saturating_duration_since(first);
        if span.is_zero() {
            return Some(if probes[0].1 { 1.0 } else { 0.0 });
        }
        let mut healthy = Duration::ZERO;
        for (i, (at, ok, _)) in probes.iter().enumerate() {
            let until = probes.get(i + 1).map_or(now, |next| next.0);
            if *ok {
                healthy += until.saturating_duration_since(*at);
            }
        }
        Some(healthy.as_secs_f64() / span.as_secs_f64())
    }

    fn in_window(
        &self,
        now: Instant,
    ) -> impl Iterator<Item = &(Instant, bool, String)> + Clone + '_ {
        self.results
            .iter()
            .filter(move |(t, ..)| now.saturating_duration_since(*t) <= self.window)
    }

    /// The two states (success rate, availability) at `now`, and the violation if one is red.
    pub fn states(
        &self,
        now: Instant,
        min_success_rate: f64,
        min_availability: f64,
    ) -> (Vec<GuardState>, Option<Violation>) {
        let last_seen = self
            .results
            .back()
            .map_or_else(|| "not probed yet".to_owned(), |(_, _, seen)| seen.clone());
        let mut violation = None;
        let mut states = Vec::new();
        for (what, value, min) in [
            ("success rate", self.success_rate(now), min_success_rate),
            ("availability", self.availability(now), min_availability),
        ] {
            let name = format!("{} {what}", self.name());
            let ok = value.is_some_and(|v| v >= min);
            let objective = format!(">= {min}");
            if !ok && violation.is_none() {
                let observed = self.results.back().map_or(now, |r| r.0);
                violation = Some(Violation {
                    guard: name.clone(),
                    value,
                    objective: objective.clone(),
                    reason: match value {
                        Some(v) => format!(
                            "health check failed: {} {what} {v:.3} < {min} (last: {last_seen})",
                            self.endpoint.url
                        ),
                        None => {
                            format!("guard unavailable: {} was never probed", self.endpoint.url)
                        }
                    },
                    observed,
                });
            }
            states.push(GuardState {
                name,
                kind: GuardKind::Health,
                objective,
                threshold: min,
                value,
                ok,
                detail: last_seen.clone(),
                at: self.last_probe,
            });
        }
        (states, violation)
    }
}
