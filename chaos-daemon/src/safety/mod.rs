//! The safety layer around a start: which guards an experiment gets, the pre-flight checks, the
//! baseline window, and the watcher that evaluates the guards every interval and rolls the
//! experiment back on a violation (docs/guards.md).
//!
//! Each experiment's watcher is a task of its own: a slow Prometheus or health endpoint delays
//! only that experiment's next evaluation (never by more than its timeout, after which the
//! guard is unavailable and rolls back), never another experiment's guards, the reaper or an
//! emergency stop. A rollback disarms on the watcher's task through the switchboard
//! ([`Manager::rollback`]); recording, releasing, the strategies and the notifications come
//! after, in that order.
//!
//! * `preflight` — the ordered pre-flight checks.

mod preflight;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chaos_api::{
    config::ChaosConfig,
    experiment::{Experiment, ExperimentType, HEALTH_GUARD, IMPACT_GUARD, TRIGGERS_GUARD},
};
use futures_util::future::join_all;

pub use self::preflight::{BUDGET_CHECK, Check, Preflight, Refusal};
use crate::{
    experiment::{FaultEngine, Manager},
    guard::{GuardSet, Sample, SloRole},
    probe::{ProbeError, Prometheus, probe_health},
};

/// The guards' samplers and settings, shared by every experiment of the daemon.
pub struct Safety {
    config: Arc<ChaosConfig>,
    prometheus: Option<Prometheus>,
    http: reqwest::Client,
}

impl Safety {
    /// The samplers for `config`.
    pub fn new(config: Arc<ChaosConfig>) -> Result<Arc<Self>, ProbeError> {
        let prometheus = if config.monitoring.prometheus.enabled {
            Some(Prometheus::new(&config.monitoring.prometheus)?)
        } else {
            None
        };
        Ok(Arc::new(Self {
            prometheus,
            http: reqwest::Client::builder().build()?,
            config,
        }))
    }

    /// The guards of `experiment` (an admitted one): the config's SLOs, health endpoints and
    /// impact threshold and the experiment's extra SLOs, as far as its `guards.apply` lets
    /// them; the SLOs the rollback triggers read are measured too.
    pub fn guards_for(&self, experiment: &Experiment) -> GuardSet {
        let safety = &self.config.safety_checks;
        let own = &experiment.guards;
        let mut slos = Vec::new();
        if safety.slo_validation.enabled {
            for (names, role) in [
                (&safety.slo_validation.critical_slos, SloRole::Critical),
                (&safety.slo_validation.warning_slos, SloRole::Warning),
            ] {
                for name in names.iter().filter(|n| own.applies(n)) {
                    if let Some(def) = safety.slos.get(name) {
                        slos.push((name.clone(), def.clone(), role));
                    }
                }
            }
        }
        for (name, def) in own.slos.iter().filter(|(n, _)| own.applies(n)) {
            slos.push((name.clone(), def.clone(), SloRole::Critical));
        }
        let triggers = own.applies(TRIGGERS_GUARD);
        if triggers {
            let t = &safety.rollback_triggers;
            for source in [&t.error_rate_slo, &t.availability_slo] {
                if !slos.iter().any(|(n, ..)| n == source)
                    && let Some(def) = safety.slos.get(source)
                {
                    slos.push((source.clone(), def.clone(), SloRole::Source));
                }
            }
        }
        let health = &safety.health_checks;
        let endpoints = if health.enabled && own.applies(HEALTH_GUARD) {
            health.endpoints.clone()
        } else {
            Vec::new()
        };
        let mut set = GuardSet::new(
            slos,
            endpoints,
            health.window,
            health.min_success_rate,
            health.min_availability,
        );
        set.slo_rollback = safety.rollback_triggers.slo_violation;
        if own.applies(IMPACT_GUARD) && !set.is_empty() {
            set.impact = Some(self.config.impact_threshold(experiment.kind()));
        }
        set
    }

    /// How often `experiment`'s guards are evaluated.
    pub fn interval(&self, experiment: &Experiment) -> Duration {
        experiment.guards.interval.unwrap_or(Duration::from_millis(
            self.config.safety_checks.guard_interval_ms,
        ))
    }

    /// How long `experiment`'s baseline is measured.
    pub fn baseline_window(&self, experiment: &Experiment) -> Duration {
        experiment
            .guards
            .baseline
            .unwrap_or(self.config.safety_checks.baseline)
    }

    /// Samples every SLO of `set` and every health endpoint that is due, all at once, each
    /// within its own timeout; records each sample at the time it arrived.
    pub async fn sample(&self, set: &mut GuardSet) {
        let slo_samples = set.slos.iter().map(|slo| async move {
            let sample = match &self.prometheus {
                None => Sample::Unavailable(
                    "Prometheus is disabled (monitoring.prometheus.enabled: false)".to_owned(),
                ),
                Some(p) => match p.query(&slo.def.query).await {
                    Ok(v) => Sample::Value(v),
                    Err(why) => Sample::Unavailable(format!("{} at {}", why, p.url())),
                },
            };
            (Instant::now(), sample)
        });
        let now = Instant::now();
        let due: Vec<usize> = (0..set.health.len())
            .filter(|&i| set.health[i].due(now))
            .collect();
        let probes = due.iter().map(|&i| {
            let endpoint = set.health[i].endpoint.clone();
            let http = &self.http;
            async move {
                let (ok, seen) = probe_health(http, &endpoint).await;
                (i, Instant::now(), ok, seen)
            }
        });
        let (slo_samples, probes) =
            futures_util::future::join(join_all(slo_samples), join_all(probes)).await;
        for (slo, (at, sample)) in set.slos.iter_mut().zip(slo_samples) {
            slo.observe(at, sample);
        }
        for (i, at, ok, seen) in probes {
            set.health[i].record(at, ok, seen);
        }
    }

    /// Measures the baseline: samples every `interval` across the whole `window`, the last
    /// sample at its end (once for an empty window), then arms the rollback triggers against it
    /// when they apply.
    pub async fn baseline(
        &self,
        set: &mut GuardSet,
        experiment: &Experiment,
        window: Duration,
        interval: Duration,
    ) {
        let until = Instant::now() + window;
        loop {
            self.sample(set).await;
            let now = Instant::now();
            if now >= until {
                break;
            }
            tokio::time::sleep(interval.min(until - now)).await;
        }
        if experiment.guards.applies(TRIGGERS_GUARD) {
            set.set_baseline(&self.config.safety_checks.rollback_triggers, Instant::now());
        }
    }

    /// Watches experiment `id` with `set` every `interval` until it ends: records each
    /// evaluation, alerts (once per guard) on warning SLOs and on critical SLOs whose breaches
    /// only alert, rolls it back on the first violation (or only alerts, when
    /// `rollback.automatic` is false), and moves it along its `ramp` (steps after the first,
    /// each held `hold`): a step starts only while every guard is green.
    pub fn watch<E: FaultEngine>(
        self: &Arc<Self>,
        manager: Arc<Manager<E>>,
        id: String,
        mut set: GuardSet,
        interval: Duration,
        kind: ExperimentType,
        ramp: Option<(Vec<f64>, Duration)>,
    ) {
        let safety = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut alerted: Vec<String> = Vec::new();
            let mut step = Step::new(kind, ramp);
            loop {
                ticks.tick().await;
                if !manager.is_running(&id) {
                    return;
                }
                let green = if set.is_empty() {
                    true
                } else {
                    safety.sample(&mut set).await;
                    let evaluated = Instant::now();
                    let evaluation = set.evaluate(evaluated);
                    // Nothing waits in front of a disarm: a rollback comes before the record.
                    if let Some(violation) = &evaluation.violation
                        && safety.config.rollback.automatic
                    {
                        // Recording, releasing, the strategies and the notifications follow
                        // on the recorder, in that order.
                        let rolled = manager.rollback(&id, violation, evaluated);
                        manager.observe_guards(&id, &evaluation, evaluated);
                        if let Some(rolled) = rolled {
                            tracing::warn!(
                                experiment_id = %id,
                                reason = %violation.reason,
                                decision_to_disarm_us = rolled.decision_to_disarm.as_micros() as u64,
                                observation_to_disarm_us = rolled.observation_to_disarm.as_micros() as u64,
                                "rolled back"
                            );
                        }
                        return;
                    }
                    manager.observe_guards(&id, &evaluation, evaluated);
                    let alerts = evaluation.alerts.iter().map(|a| {
                        let kind = if a.critical {
                            "guard_alert"
                        } else {
                            "slo_warning"
                        };
                        (kind, &a.guard, a.message.clone())
                    });
                    // rollback.automatic is false: the violation alerts too.
                    let unrolled = evaluation.violation.iter().map(|v| {
                        let message = format!("{} (rollback.automatic is false)", v.reason);
                        ("guard_alert", &v.guard, message)
                    });
                    for (kind, guard, message) in alerts.chain(unrolled) {
                        if !alerted.contains(guard) {
                            manager.guard_alert(&id, kind, guard, message);
                            alerted.push(guard.clone());
                        }
                    }
                    evaluation.all_green()
                };
                if green && !step.advance(&manager, &id) {
                    return;
                }
            }
        });
    }
}

/// A ramp step as the timeline and status show it: a delay for network_latency, a rate for
/// database_load, else an intensity.
pub fn step_text(kind: ExperimentType, value: f64, step: usize, of: usize) -> String {
    match kind {
        ExperimentType::NetworkLatency => format!("latency {value} ms (step {step} of {of})"),
        ExperimentType::DatabaseLoad => format!("rate {value} qps (step {step} of {of})"),
        _ => format!("intensity {value} (step {step} of {of})"),
    }
}

/// Where a running experiment is on its ramp.
struct Step {
    kind: ExperimentType,
    steps: Vec<f64>,
    hold: Duration,
    /// The index of the step in force.
    at: usize,
    since: Instant,
}

impl Step {
    fn new(kind: ExperimentType, ramp: Option<(Vec<f64>, Duration)>) -> Self {
        let (steps, hold) = ramp.unwrap_or_default();
        Self {
            kind,
            steps,
            hold,
            at: 0,
            since: Instant::now(),
        }
    }

    /// Moves to the next step when the current one has held long enough (the guards are
    /// green: the caller checked). False when the experiment is no longer running.
    fn advance<E: FaultEngine>(&mut self, manager: &Manager<E>, id: &str) -> bool {
        if self.at + 1 >= self.steps.len() || self.since.elapsed() < self.hold {
            return true;
        }
        let next = self.steps[self.at + 1];
        match manager.ramp_to(
            id,
            next,
            step_text(self.kind, next, self.at + 2, self.steps.len()),
        ) {
            Ok(true) => {
                self.at += 1;
                self.since = Instant::now();
                true
            }
            Ok(false) => false,
            Err(e) => {
                manager.event(id, "error", format!("ramp step to {next} failed: {e}"));
                true
            }
        }
    }
}
