//! The daemon's Prometheus metrics (`/metrics`, text format): experiments by state, faults
//! injected and events seen by experiment type, the emergency-stop latch, disarm latency
//! (from the request's arrival or the reaper's decision), and gRPC requests by method and code.
//!
//! Kernel counters are per experiment slot; [`Metrics::observe_counters`] turns their growth
//! into monotonic Prometheus counters by experiment type.
//!
//! A running `database_load` exports its load runner's figures per experiment
//! ([`Metrics::observe_load`]): latency percentiles and connection time in seconds, achieved and
//! target rate, queries by outcome; they go when it ends ([`Metrics::remove_load`]).
//!
//! Counters whose label values are known up front (rollback reasons, budgets) start at 0, so
//! that an alert on `increase()` sees the first rollback or budget alert; a guard's violations
//! start at 0 with its first evaluation. The dashboards and alert rules in `deploy/` use these
//! names (a test checks every name they use is exported).

use crate::host::dbload::Figures;

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
    pub load_latency: GaugeVec,
    pub load_connect: GaugeVec,
    pub load_qps: GaugeVec,
    pub load_target_rate: GaugeVec,
    pub load_queries: GaugeVec,
}

/// A latency percentile of a load's figures, in microseconds.
type Percentile = fn(&Figures) -> Option<u64>;

/// `chaos_database_load_latency_seconds{quantile}` and the figure each is.
const LOAD_QUANTILES: [(&str, Percentile); 3] = [
    ("0.5", |f| f.p50_us),
    ("0.95", |f| f.p95_us),
    ("0.99", |f| f.p99_us),
];

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
        // Per running database load (removed when it ends), from its runner's newest figures.
        let load_latency = gauge_vec(
            "chaos_database_load_latency_seconds",
            "A running database load's query latency over the last second (from each query's \
             intended start: queueing included), by experiment and quantile (0.5, 0.95, 0.99); \
             absent while no query finished in it.",
            &["experiment_id", "quantile"],
        );
        let load_connect = gauge_vec(
            "chaos_database_load_connect_seconds",
            "A running database load's connection time (connect and authenticate) p95 over every \
             connection it opened.",
            &["experiment_id"],
        );
        let load_qps = gauge_vec(
            "chaos_database_load_queries_per_second",
            "Queries per second a running database load sent over the last second.",
            &["experiment_id"],
        );
        let load_target_rate = gauge_vec(
            "chaos_database_load_target_rate",
            "The rate a running database load holds now (a ramp moves it), in queries per \
             second.",
            &["experiment_id"],
        );
        let load_queries = gauge_vec(
            "chaos_database_load_queries",
            "Queries a running database load had answered since its start, by outcome (ok, \
             error).",
            &["experiment_id", "outcome"],
        );
        Self {
            load_latency,
            load_connect,
            load_qps,
            load_target_rate,
            load_queries,
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

    /// Publishes running database load `id`'s figures; a percentile it has none of (nothing
    /// finished in the last second, no connection yet) is removed until it has.
    pub fn observe_load(&self, id: &str, f: &Figures) {
        let seconds = |us: u64| us as f64 / 1e6;
        let set = |gauge: &GaugeVec, labels: &[&str], us: Option<u64>| match us {
            Some(us) => gauge.with_label_values(labels).set(seconds(us)),
            // Not found = it had none.
            None => {
                let _ = gauge.remove_label_values(labels);
            }
        };
        for (quantile, figure) in LOAD_QUANTILES {
            set(&self.load_latency, &[id, quantile], figure(f));
        }
        set(&self.load_connect, &[id], f.connect_p95_us);
        self.load_qps.with_label_values(&[id]).set(f.qps);
        self.load_target_rate.with_label_values(&[id]).set(f.rate);
        for (outcome, n) in [("ok", f.ok), ("error", f.failed())] {
            self.load_queries
                .with_label_values(&[id, outcome])
                .set(n as f64);
        }
    }

    /// Removes the database load series of experiment `id` (its finish does).
    pub fn remove_load(&self, id: &str) {
        // Not found = never published (not a database load, or ended before its first figures).
        for (quantile, _) in LOAD_QUANTILES {
            let _ = self.load_latency.remove_label_values(&[id, quantile]);
        }
        for gauge in [&self.load_connect, &self.load_qps, &self.load_target_rate] {
            let _ = gauge.remove_label_values(&[id]);
        }
        for outcome in ["ok", "error"] {
            let _ = self.load_queries.remove_label_values(&[id, outcome]);
        }
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

    /// The `chaos_database_load_*` samples on `/metrics`, sorted.
    fn load_series(m: &Metrics) -> Vec<String> {
        let mut lines: Vec<String> = m
            .render()
            .lines()
            .filter(|l| l.starts_with("chaos_database_load_"))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn a_database_loads_figures_are_published_in_seconds_until_it_ends() {
        let m = Metrics::new();
        let mut f = Figures {
            elapsed_ms: 3000,
            rate: 200.0,
            sent: 600,
            ok: 590,
            errors: [("timeout".to_owned(), 7), ("sqlstate:57014".to_owned(), 3)].into(),
            qps: 199.5,
            p50_us: Some(1_250),
            p95_us: Some(3_400),
            p99_us: Some(8_000),
            max_us: Some(12_000),
            connect_p95_us: Some(2_100),
        };
        m.observe_load("exp-a", &f);
        m.observe_load("exp-b", &Figures::default());
        let a = |rest: &str| format!("chaos_database_load_{rest}");
        let mut expected = vec![
            a("connect_seconds{experiment_id=\"exp-a\"} 0.0021"),
            a("latency_seconds{experiment_id=\"exp-a\",quantile=\"0.5\"} 0.00125"),
            a("latency_seconds{experiment_id=\"exp-a\",quantile=\"0.95\"} 0.0034"),
            a("latency_seconds{experiment_id=\"exp-a\",quantile=\"0.99\"} 0.008"),
            a("queries_per_second{experiment_id=\"exp-a\"} 199.5"),
            a("queries_per_second{experiment_id=\"exp-b\"} 0"),
            a("queries{experiment_id=\"exp-a\",outcome=\"error\"} 10"),
            a("queries{experiment_id=\"exp-a\",outcome=\"ok\"} 590"),
            a("queries{experiment_id=\"exp-b\",outcome=\"error\"} 0"),
            a("queries{experiment_id=\"exp-b\",outcome=\"ok\"} 0"),
            a("target_rate{experiment_id=\"exp-a\"} 200"),
            a("target_rate{experiment_id=\"exp-b\"} 0"),
        ];
        expected.sort();
        assert_eq!(load_series(&m), expected);

        // A second where nothing finished: its percentiles go, the connection time stays.
        (f.p50_us, f.p95_us, f.p99_us) = (None, None, None);
        m.observe_load("exp-a", &f);
        assert!(
            !load_series(&m)
                .iter()
                .any(|l| l.contains("latency_seconds")),
            "{:?}",
            load_series(&m)
        );
        assert!(load_series(&m).contains(&a("connect_seconds{experiment_id=\"exp-a\"} 0.0021")));

        m.remove_load("exp-a");
        assert!(
            load_series(&m).iter().all(|l| l.contains("exp-b")),
            "{:?}",
            load_series(&m)
        );
        m.remove_load("exp-b");
        m.remove_load("exp-never");
        assert_eq!(load_series(&m), Vec::<String>::new());
    }
}
