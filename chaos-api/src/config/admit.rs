//! Where the experiment meets the node's config: [`ChaosConfig::admit`] enforces every limit of
//! `experiments.<type>`, `budget` and `experiment_types.pod_deletion.parameters` on a validated
//! [`Experiment`], fills the defaults the config decides (resource shares), prices it and turns
//! its budget into the kernel's fault cap (a database load's: its executed queries). Pure: the daemon adds what needs the node (today's
//! spend, the target's cgroup tree).

use std::time::Duration;

use super::{ChaosConfig, FaultLimits};
use crate::error::{ModelError, invalid};
use crate::experiment::{
    Distribution, Experiment, ExperimentType, Fault, HEALTH_GUARD, IMPACT_GUARD, RampSteps,
    TRIGGERS_GUARD, target_path,
};

/// What the config makes of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// The experiment as it runs: the config's defaults filled in.
    pub experiment: Experiment,
    /// How it is priced.
    pub price: Price,
    /// The money reserved for it: its `budget`, or `budget.max_experiment_cost`.
    pub budget: f64,
    /// The kernel's fault cap: the smallest of the experiment's `max_faults`, what the budget
    /// buys at the price, and the type's own cap (pods); `u64::MAX` = no cap.
    pub max_faults: u64,
}

/// How an experiment is priced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Price {
    /// Per injected fault (a dropped packet, a failed call, a tightened knob, a packet a
    /// bandwidth limit delays or drops).
    PerFault(f64),
    /// Per killed pod or container: `experiments.pod_deletion.cost_per_pod`.
    PerPod(f64),
    /// Per minute armed: `experiments.network_latency.cost_per_minute`.
    PerMinute(f64),
    /// Per executed query: `experiments.database_load.cost_per_query`.
    PerQuery(f64),
}

impl Price {
    /// Money spent after `injected` faults and `elapsed` armed, at most `budget`.
    pub fn spent(self, injected: u64, elapsed: Duration, budget: f64) -> f64 {
        let spent = match self {
            Self::PerFault(cost) | Self::PerPod(cost) | Self::PerQuery(cost) => {
                injected as f64 * cost
            }
            Self::PerMinute(cost) => cost * elapsed.as_secs_f64() / 60.0,
        };
        spent.min(budget)
    }
}

/// Why this node's config refuses an experiment.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// A limit of the config: the error names the experiment's field, its value and what the
    /// config allows (with the config key).
    #[error("{0}")]
    Limit(ModelError),
    /// The budget cannot pay for even one fault, or for the whole duration of a time-priced
    /// experiment.
    #[error("budget: {budget} does not cover {what} ({price_key})")]
    BudgetTooSmall {
        /// The experiment's budget.
        budget: f64,
        /// What it would have to cover, e.g. "one fault at 0.5".
        what: String,
        /// The config key of the price.
        price_key: String,
    },
}

impl ChaosConfig {
    /// Checks `experiment` (already validated) against every limit of this config and prices
    /// it. The first refusal is returned.
    pub fn admit(&self, experiment: &Experiment) -> Result<Admission, Refusal> {
        let kind = experiment.kind();
        let limits = &self.experiments;
        let mut experiment = experiment.clone();
        let (enabled, enabled_key) = match kind {
            ExperimentType::NetworkLatency => (
                limits.network_latency.enabled,
                "experiments.network_latency.enabled",
            ),
            ExperimentType::BandwidthLimit => (
                limits.bandwidth_limit.enabled,
                "experiments.bandwidth_limit.enabled",
            ),
            ExperimentType::PodDeletion => (
                limits.pod_deletion.enabled,
                "experiments.pod_deletion.enabled",
            ),
            ExperimentType::ResourceExhaustion => (
                limits.resource_exhaustion.enabled,
                "experiments.resource_exhaustion.enabled",
            ),
            ExperimentType::DatabaseLoad => (
                limits.database_load.enabled,
                "experiments.database_load.enabled",
            ),
            other => {
                let (fault_limits, key) = self.fault_limits(other);
                (fault_limits.enabled, key)
            }
        };
        if !enabled {
            return Err(limit(
                "type",
                kind,
                format!("a type this node runs ({enabled_key} is false)"),
            ));
        }
        self.check_guard_names(&experiment)?;
        self.resolve_ramp(&mut experiment)?;
        let mut type_cap = u64::MAX;
        let price = match &mut experiment.fault {
            Fault::NetworkLatency(latency) => {
                let worst = match latency.distribution {
                    Distribution::Uniform => latency.latency + latency.jitter,
                    // The kernel's Irwin-Hall sample reaches 6 standard deviations.
                    Distribution::Normal => latency.latency + latency.jitter * 6,
                };
                let max = limits.network_latency.max_latency_ms;
                if worst > Duration::from_millis(max) {
                    let spread = match latency.distribution {
                        Distribution::Uniform => "latency + jitter",
                        Distribution::Normal => "latency + 6 x jitter (normal)",
                    };
                    return Err(limit(
                        "fault.latency",
                        format!(
                            "{} ({spread} = {} ms)",
                            humantime::format_duration(latency.latency),
                            worst.as_millis()
                        ),
                        format!(
                            "a worst-case delay of at most {max} ms \
                             (experiments.network_latency.max_latency_ms)"
                        ),
                    ));
                }
                Price::PerMinute(limits.network_latency.cost_per_minute)
            }
            Fault::BandwidthLimit(bandwidth) => {
                let l = &limits.bandwidth_limit;
                if bandwidth.rate.bits_per_sec < l.min_rate.bits_per_sec {
                    return Err(limit(
                        "fault.rate",
                        bandwidth.rate,
                        format!(
                            "at least {} (experiments.bandwidth_limit.min_rate)",
                            l.min_rate
                        ),
                    ));
                }
                Price::PerFault(l.cost_per_fault.unwrap_or(self.budget.cost_per_request))
            }
            Fault::PodDeletion(_) => {
                let pods = &self.experiment_types.pod_deletion.parameters;
                if !pods.pods.is_empty() {
                    let allowed = format!(
                        "a pod named like {} (experiment_types.pod_deletion.parameters.pods)",
                        pods.pods.join(", ")
                    );
                    let count = experiment.targets.len();
                    for (i, target) in experiment.targets.iter().enumerate() {
                        let path = format!("{}.pod_name", target_path(i, count));
                        match target.pod() {
                            None => {
                                return Err(limit(
                                    path,
                                    "no pod name",
                                    format!("{allowed}; give the pod's NAMESPACE/NAME"),
                                ));
                            }
                            Some(name) if !pods.pods.iter().any(|p| wildcard_match(p, name)) => {
                                return Err(limit(
                                    path,
                                    format!("{:?}", target.pod_name.as_deref().unwrap_or("")),
                                    allowed,
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                }
                type_cap = u64::from(limits.pod_deletion.max_pods_deleted.min(pods.max_pods));
                Price::PerPod(limits.pod_deletion.cost_per_pod)
            }
            Fault::ResourceExhaustion(pressure) => {
                let l = &limits.resource_exhaustion;
                if pressure.cpu_share.is_none() && pressure.memory_share.is_none() {
                    // The most the config allows: take away max_*_usage.
                    pressure.cpu_share = Some(1.0 - l.max_cpu_usage);
                    pressure.memory_share = Some(1.0 - l.max_memory_usage);
                }
                for (path, share, max, key) in [
                    (
                        "fault.cpu_share",
                        pressure.cpu_share,
                        l.max_cpu_usage,
                        "experiments.resource_exhaustion.max_cpu_usage",
                    ),
                    (
                        "fault.memory_share",
                        pressure.memory_share,
                        l.max_memory_usage,
                        "experiments.resource_exhaustion.max_memory_usage",
                    ),
                ] {
                    if let Some(share) = share
                        && 1.0 - share > max + 1e-9
                    {
                        return Err(limit(
                            path,
                            share,
                            format!(
                                "at least {} (it takes away 1 - share; {key} is {max})",
                                round4(1.0 - max)
                            ),
                        ));
                    }
                }
                // A share of 0 (max usage 1) would stop the target: keep a sliver.
                for share in [&mut pressure.cpu_share, &mut pressure.memory_share]
                    .into_iter()
                    .flatten()
                {
                    *share = share.max(0.001);
                }
                Price::PerFault(self.budget.cost_per_request)
            }
            Fault::DatabaseLoad(load) => {
                let l = &limits.database_load;
                // The ramp's steps were checked against the same limit (resolve_ramp).
                if load.rate > f64::from(l.max_queries_per_second) {
                    return Err(limit(
                        "fault.rate",
                        load.rate,
                        format!(
                            "at most {} queries per second \
                             (experiments.database_load.max_queries_per_second)",
                            l.max_queries_per_second
                        ),
                    ));
                }
                if load.concurrency > l.max_connections {
                    return Err(limit(
                        "fault.concurrency",
                        load.concurrency,
                        format!(
                            "at most {} connections (experiments.database_load.max_connections)",
                            l.max_connections
                        ),
                    ));
                }
                Price::PerQuery(l.cost_per_query)
            }
            _ => {
                let (fault_limits, key) = self.fault_limits(kind);
                let steps = experiment.ramp.as_ref().and_then(|r| r.values());
                if let Some((i, step)) = steps
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .find(|(_, s)| **s > fault_limits.max_probability)
                {
                    let key = key.replace(".enabled", ".max_probability");
                    return Err(limit(
                        format!("ramp.steps[{i}]"),
                        step,
                        format!("at most {} ({key})", fault_limits.max_probability),
                    ));
                }
                if experiment.intensity > fault_limits.max_probability {
                    let key = key.replace(".enabled", ".max_probability");
                    return Err(limit(
                        "intensity",
                        experiment.intensity,
                        format!("at most {} ({key})", fault_limits.max_probability),
                    ));
                }
                Price::PerFault(
                    fault_limits
                        .cost_per_fault
                        .unwrap_or(self.budget.cost_per_request),
                )
            }
        };
        let budget = experiment.budget.unwrap_or(self.budget.max_experiment_cost);
        if budget > self.budget.max_experiment_cost {
            return Err(limit(
                "budget",
                budget,
                format!(
                    "at most {} (budget.max_experiment_cost)",
                    self.budget.max_experiment_cost
                ),
            ));
        }
        let bought = match price {
            Price::PerFault(cost) | Price::PerPod(cost) | Price::PerQuery(cost) => {
                let bought = if cost > 0.0 {
                    (budget / cost).floor().min(u64::MAX as f64) as u64
                } else {
                    u64::MAX
                };
                if bought == 0 {
                    let unit = match price {
                        Price::PerPod(_) => "pod",
                        Price::PerQuery(_) => "query",
                        _ => "fault",
                    };
                    return Err(Refusal::BudgetTooSmall {
                        budget,
                        what: format!("one {unit} at {cost}"),
                        price_key: price_key(kind),
                    });
                }
                bought
            }
            Price::PerMinute(cost) => {
                let needed = cost * experiment.duration.as_secs_f64() / 60.0;
                if needed > budget {
                    return Err(Refusal::BudgetTooSmall {
                        budget,
                        what: format!(
                            "{needed:.4} for {} at {cost} per minute",
                            humantime::format_duration(experiment.duration)
                        ),
                        price_key: price_key(kind),
                    });
                }
                u64::MAX
            }
        };
        let max_faults = experiment
            .max_faults
            .unwrap_or(u64::MAX)
            .min(bought)
            .min(type_cap);
        Ok(Admission {
            experiment,
            price,
            budget,
            max_faults,
        })
    }

    /// The `experiments.<type>` limits of a type priced per fault, and its `enabled` key.
    /// The impact score above which an experiment of type `kind` is rolled back, and its key.
    pub fn impact_threshold(&self, kind: ExperimentType) -> (f64, &'static str) {
        let l = &self.experiments;
        match kind {
            ExperimentType::NetworkLatency => (
                l.network_latency.impact_threshold,
                "experiments.network_latency.impact_threshold",
            ),
            ExperimentType::BandwidthLimit => (
                l.bandwidth_limit.impact_threshold,
                "experiments.bandwidth_limit.impact_threshold",
            ),
            ExperimentType::PodDeletion => {
                let seed = self
                    .experiment_types
                    .pod_deletion
                    .parameters
                    .impact_score_threshold;
                if seed < l.pod_deletion.impact_threshold {
                    (
                        seed,
                        "experiment_types.pod_deletion.parameters.impact_score_threshold",
                    )
                } else {
                    (
                        l.pod_deletion.impact_threshold,
                        "experiments.pod_deletion.impact_threshold",
                    )
                }
            }
            ExperimentType::ResourceExhaustion => (
                l.resource_exhaustion.impact_threshold,
                "experiments.resource_exhaustion.impact_threshold",
            ),
            ExperimentType::DependencyFailure => (
                l.dependency_failure.impact_threshold,
                "experiments.dependency_failure.impact_threshold",
            ),
            ExperimentType::ApiErrorInjection => (
                l.api_error_injection.impact_threshold,
                "experiments.api_error_injection.impact_threshold",
            ),
            ExperimentType::SyscallError => (
                l.syscall_error.impact_threshold,
                "experiments.syscall_error.impact_threshold",
            ),
            ExperimentType::PacketLoss => (
                l.packet_loss.impact_threshold,
                "experiments.packet_loss.impact_threshold",
            ),
            ExperimentType::PacketDuplication => (
                l.packet_duplication.impact_threshold,
                "experiments.packet_duplication.impact_threshold",
            ),
            ExperimentType::PacketCorruption => (
                l.packet_corruption.impact_threshold,
                "experiments.packet_corruption.impact_threshold",
            ),
            ExperimentType::DatabaseLoad => (
                l.database_load.impact_threshold,
                "experiments.database_load.impact_threshold",
            ),
        }
    }

    /// Replaces a preset ramp by the config's list for the type (`experiment_types`), checks
    /// it, and arms at its first step.
    fn resolve_ramp(&self, experiment: &mut Experiment) -> Result<(), Refusal> {
        let kind = experiment.kind();
        let Some(ramp) = &mut experiment.ramp else {
            return Ok(());
        };
        if ramp.steps == RampSteps::Preset {
            let types = &self.experiment_types;
            let latency_ms: Vec<f64>;
            let (list, key) = match kind {
                ExperimentType::NetworkLatency => {
                    latency_ms = types
                        .network_latency
                        .parameters
                        .latency_ms
                        .iter()
                        .map(|ms| *ms as f64)
                        .collect();
                    (
                        &latency_ms,
                        "experiment_types.network_latency.parameters.latency_ms",
                    )
                }
                ExperimentType::PacketLoss => (
                    &types.network_latency.parameters.packet_loss,
                    "experiment_types.network_latency.parameters.packet_loss",
                ),
                ExperimentType::ApiErrorInjection | ExperimentType::DependencyFailure => (
                    &types.api_error_injection.parameters.error_rate,
                    "experiment_types.api_error_injection.parameters.error_rate",
                ),
                other => {
                    let steps = if other == ExperimentType::DatabaseLoad {
                        "rates in queries per second"
                    } else {
                        "probabilities"
                    };
                    return Err(limit(
                        "ramp.steps",
                        "preset",
                        format!(
                            "a list of {steps}: the config has no preset ramp for {other} \
                             (presets: network_latency, packet_loss, dependency_failure, \
                             api_error_injection)"
                        ),
                    ));
                }
            };
            if list.is_empty() {
                return Err(limit(
                    "ramp.steps",
                    "preset",
                    format!("a list: {key} is empty"),
                ));
            }
            ramp.steps = RampSteps::Values(list.clone());
            ramp.validate(kind, experiment.duration)
                .map_err(Refusal::Limit)?;
        }
        let steps = ramp.values().unwrap_or_default().to_vec();
        match &mut experiment.fault {
            Fault::NetworkLatency(latency) => {
                // Every step's worst case must fit, as the first one's does below.
                let spread = match latency.distribution {
                    Distribution::Uniform => latency.jitter,
                    Distribution::Normal => latency.jitter * 6,
                };
                let max = self.experiments.network_latency.max_latency_ms;
                for (i, step) in steps.iter().enumerate() {
                    let worst = Duration::from_millis(*step as u64) + spread;
                    if worst > Duration::from_millis(max) {
                        return Err(limit(
                            format!("ramp.steps[{i}]"),
                            step,
                            format!(
                                "a step whose worst case ({} with the jitter) is at most {max} ms \
                                 (experiments.network_latency.max_latency_ms)",
                                humantime::format_duration(worst)
                            ),
                        ));
                    }
                }
                if let Some(&first) = steps.first() {
                    latency.latency = Duration::from_millis(first as u64);
                }
            }
            Fault::DatabaseLoad(load) => {
                let max = self.experiments.database_load.max_queries_per_second;
                if let Some((i, step)) =
                    steps.iter().enumerate().find(|(_, s)| **s > f64::from(max))
                {
                    return Err(limit(
                        format!("ramp.steps[{i}]"),
                        step,
                        format!(
                            "at most {max} queries per second \
                             (experiments.database_load.max_queries_per_second)"
                        ),
                    ));
                }
                if let Some(&first) = steps.first() {
                    load.rate = first;
                }
            }
            _ => {
                if let Some(&first) = steps.first() {
                    experiment.intensity = first;
                }
            }
        }
        Ok(())
    }

    /// Every name in the experiment's `guards.apply` must name a guard: an SLO of the config
    /// or of the experiment, or one of the fixed guards. An extra SLO may not redefine one of
    /// the config's.
    fn check_guard_names(&self, experiment: &Experiment) -> Result<(), Refusal> {
        let safety = &self.safety_checks;
        if let Some(name) = experiment
            .guards
            .slos
            .keys()
            .find(|name| safety.slos.contains_key(*name))
        {
            return Err(limit(
                format!("guards.slos.{name}"),
                "a second definition",
                "a name the node's config does not define (safety_checks.slos defines it)",
            ));
        }
        let Some(apply) = &experiment.guards.apply else {
            return Ok(());
        };
        let fixed = [HEALTH_GUARD, TRIGGERS_GUARD, IMPACT_GUARD];
        let known = |name: &str| {
            fixed.contains(&name)
                || safety.slos.contains_key(name)
                || experiment.guards.slos.contains_key(name)
        };
        match apply.iter().enumerate().find(|(_, name)| !known(name)) {
            None => Ok(()),
            Some((i, name)) => {
                let mut names: Vec<&str> = fixed.to_vec();
                names.extend(safety.slos.keys().map(String::as_str));
                names.extend(experiment.guards.slos.keys().map(String::as_str));
                Err(limit(
                    format!("guards.apply[{i}]"),
                    format!("{name:?}"),
                    format!("a guard of this node or experiment: {}", names.join(", ")),
                ))
            }
        }
    }

    fn fault_limits(&self, kind: ExperimentType) -> (&FaultLimits, &'static str) {
        let l = &self.experiments;
        match kind {
            ExperimentType::DependencyFailure => (
                &l.dependency_failure,
                "experiments.dependency_failure.enabled",
            ),
            ExperimentType::ApiErrorInjection => (
                &l.api_error_injection,
                "experiments.api_error_injection.enabled",
            ),
            ExperimentType::SyscallError => (&l.syscall_error, "experiments.syscall_error.enabled"),
            ExperimentType::PacketDuplication => (
                &l.packet_duplication,
                "experiments.packet_duplication.enabled",
            ),
            ExperimentType::PacketCorruption => (
                &l.packet_corruption,
                "experiments.packet_corruption.enabled",
            ),
            _ => (&l.packet_loss, "experiments.packet_loss.enabled"),
        }
    }
}

/// The config key that prices `kind`.
fn price_key(kind: ExperimentType) -> String {
    match kind {
        ExperimentType::NetworkLatency => "experiments.network_latency.cost_per_minute".into(),
        ExperimentType::PodDeletion => "experiments.pod_deletion.cost_per_pod".into(),
        ExperimentType::ResourceExhaustion => "budget.cost_per_request".into(),
        ExperimentType::DatabaseLoad => "experiments.database_load.cost_per_query".into(),
        _ => format!("experiments.{kind}.cost_per_fault, else budget.cost_per_request"),
    }
}

fn limit(
    path: impl Into<String>,
    value: impl std::fmt::Display,
    allowed: impl Into<String>,
) -> Refusal {
    Refusal::Limit(invalid(path, value, allowed))
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (also none) and
/// every other character itself.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it was last tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        for (pattern, text) in [
            ("frontend-*", "frontend-7d9f"),
            ("*", ""),
            ("*-pod*", "kubelet-kubepods-pod123"),
            ("a*b*c", "aXXbYYc"),
            ("init.scope", "init.scope"),
        ] {
            assert!(wildcard_match(pattern, text), "{pattern} {text}");
        }
        for (pattern, text) in [
            ("frontend-*", "backend-1"),
            ("frontend-*", "frontend"),
            ("a*b", "ab-"),
            ("init.scope", "init.scopes"),
        ] {
            assert!(!wildcard_match(pattern, text), "{pattern} {text}");
        }
    }
}
