//! The daemon's Prometheus metrics (`/metrics`, text format): experiments by state, faults
//! injected and events seen by experiment type, the emergency-stop latch, disarm latency
//! (from the request's arrival or the reaper's decision), and gRPC requests by method and code.
//!
//! Kernel counters are per experiment slot; [`Metrics::observe_counters`] turns their growth
//! into monotonic Prometheus counters by experiment type.
//!
//! Counters whose label values are known up front (rollback reasons, budgets) start at 0, so
//! that an alert on `increase()` sees the first rollback or budget alert; a guard's violations
//! start at 0 with its first evaluation. The dashboards and alert rules in `deploy/` use these
//! names (a test checks every name they use is exported).

use prometheus::{
    Encoder as _, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// `chaos_budget_alerts_total{budget}` of an experiment's own budget.
pub const EXPERIMENT_BUDGET: &str = "experiment";
/// `chaos_budget_alerts_total{budget}` of `budget.max_daily_cost`.
pub const DAILY_BUDGET: &str = "daily";

pub struct Metrics {
    registry: Registry,
    pub experiments_running: IntGauge,
    pub experiments_finished: IntCounterVec,
    pub faults_injected: IntCounterVec,
    pub events_seen: IntCounterVec,
    pub emergency_stop: IntGauge,
    pub disarm_seconds: HistogramVec,
    pub grpc_requests: IntCounterVec,
    /// `chaos_notifications_total{channel, outcome}` (see [`crate::notify`]).
    pub notifications: IntCounterVec,
    pub guard_evaluations: IntCounterVec,
    pub guard_violations: IntCounterVec,
    pub guard_value: GaugeVec,
    pub guard_threshold: GaugeVec,
    pub impact_score: GaugeVec,
    pub rollbacks: IntCounterVec,
    pub decision_to_disarm_seconds: Histogram,
    pub budget_spent: GaugeVec,
    pub budget_remaining: GaugeVec,
    pub daily_budget_spent: Gauge,
    pub daily_budget_remaining: Gauge,
    pub budget_alerts: IntCounterVec,
    pub budget_exhausted: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let experiments_running = gauge("chaos_experiments_running", "Experiments injecting now.");
        let experiments_finished = counter(
            "chaos_experiments_finished_total",
            "Experiments that ended, by final state.",
            &["state"],
        );
        let faults_injected = counter(
            "chaos_faults_injected_total",
            "Faults injected, by experiment type.",
            &["type"],
        );
        let events_seen = counter(
            "chaos_events_seen_total",
            "Packets and syscalls the armed programs looked at, by experiment type.",
            &["type"],
        );
        let emergency_stop = gauge(
            "chaos_emergency_stop_latched",
            "1 while the emergency stop is latched.",
        );
        let notifications = counter(
            "chaos_notifications_total",
            "Notifications by channel and outcome (delivered, failed after its retries, or \
             dropped because a queue was full).",
            &["channel", "outcome"],
        );
        let grpc_requests = counter(
            "chaos_grpc_requests_total",
            "gRPC requests by method and status code.",
            &["method", "code"],
        );
        let disarm_seconds = HistogramVec::new(
            HistogramOpts::new(
                "chaos_disarm_latency_seconds",
                "From the request's arrival (or the reaper's decision) until the faults were \
                 disarmed, by cause.",
            )
            .buckets(vec![
                1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
            ]),
            &["cause"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(disarm_seconds.clone()))
            .expect("unique metric");
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let guard_evaluations = counter(
            "chaos_guard_evaluations_total",
            "Guard evaluations, by guard.",
            &["guard"],
        );
        let guard_violations = counter(
            "chaos_guard_violations_total",
            "Guard evaluations that found the guard red, by guard.",
            &["guard"],
        );
        let rollbacks = counter(
            "chaos_rollbacks_total",
            "Experiments rolled back by a guard, by reason (slo, health, trigger, impact, \
             unavailable).",
            &["reason"],
        );
        for cause in crate::guard::ROLLBACK_CAUSES.map(|(_, cause)| cause) {
            rollbacks.with_label_values(&[cause]);
        }
        // Per running experiment (removed when it ends): two experiments with the same guard
        // (an SLO, `impact` with its type's threshold) each have their own.
        let guard_value = gauge_vec(
            "chaos_guard_value",
            "A running experiment's guard's last value (NaN when unavailable), by experiment \
             and guard.",
            &["experiment_id", "guard"],
        );
        let guard_threshold = gauge_vec(
            "chaos_guard_threshold",
            "The bound of a running experiment's guard's objective, which its value is held \
             against, by experiment and guard.",
            &["experiment_id", "guard"],
        );
        let impact_score = gauge_vec(
            "chaos_impact_score",
            "A running experiment's impact score (0 to 1).",
            &["experiment_id"],
        );
        let decision_to_disarm_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "chaos_guard_decision_to_disarm_seconds",
                "From the guard evaluation that saw a violation until the kernel was disarmed.",
            )
            .buckets(vec![1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(decision_to_disarm_seconds.clone()))
            .expect("unique metric");
        let budget_spent = gauge_vec(
            "chaos_budget_spent",
            "Money a running experiment spent so far, in the budget's unit.",
            &["experiment_id"],
        );
        let budget_remaining = gauge_vec(
            "chaos_budget_remaining",
            "Money left of a running experiment's budget.",
            &["experiment_id"],
        );
        let float_gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let daily_budget_spent = float_gauge(
            "chaos_daily_budget_spent",
            "Money spent today (UTC), running experiments included.",
        );
        let daily_budget_remaining = float_gauge(
            "chaos_daily_budget_remaining",
            "Money left of budget.max_daily_cost today (UTC).",
        );
        let budget_alerts = counter(
            "chaos_budget_alerts_total",
            "Budget alerts raised at budget.alert_threshold, by budget (experiment, daily).",
            &["budget"],
        );
        for budget in [EXPERIMENT_BUDGET, DAILY_BUDGET] {
            budget_alerts.with_label_values(&[budget]);
        }
        let budget_exhausted = IntCounter::new(
            "chaos_budget_exhausted_total",
            "Experiments ended because their budget was spent (reason `budget exhausted`).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(budget_exhausted.clone()))
            .expect("unique metric");
        Self {
            registry,
            budget_spent,
            budget_remaining,
            daily_budget_spent,
            daily_budget_remaining,
            budget_alerts,
            budget_exhausted,
            guard_evaluations,
            guard_violations,
            guard_value,
            guard_threshold,
            impact_score,
            rollbacks,
            decision_to_disarm_seconds,
            experiments_running,
            experiments_finished,
            faults_injected,
            events_seen,
            emergency_stop,
            disarm_seconds,
            grpc_requests,
            notifications,
        }
    }

    /// Adds the growth of one experiment's kernel counters since the last observation.
    pub fn observe_counters(&self, kind: &str, injected_delta: u64, seen_delta: u64) {
        self.faults_injected
            .with_label_values(&[kind])
            .inc_by(injected_delta);
        self.events_seen
            .with_label_values(&[kind])
            .inc_by(seen_delta);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_with_known_labels_start_at_zero() {
        let body = Metrics::new().render();
        let mut expected: Vec<String> = crate::guard::ROLLBACK_CAUSES
            .iter()
            .map(|(_, cause)| format!("chaos_rollbacks_total{{reason=\"{cause}\"}} 0"))
            .collect();
        expected.extend([
            "chaos_budget_alerts_total{budget=\"experiment\"} 0".to_owned(),
            "chaos_budget_alerts_total{budget=\"daily\"} 0".to_owned(),
            "chaos_budget_exhausted_total 0".to_owned(),
        ]);
        for line in expected {
            assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
        }
    }
}
