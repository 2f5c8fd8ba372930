//! The chaos config (`chaos/chaos.yaml`): the seed's `budget`, `experiments`, `safety_checks`,
//! `rollback`, `experiment_types` and `monitoring` sections, read exactly as the seed writes them,
//! and the daemon's own `state` section (how long its records are kept).
//!
//! This module owns the top level, the `budget` and `experiments` sections and the order of
//! validation; the private submodules `safety` (`safety_checks`), `rollback`, `experiment_types`,
//! `monitoring` and `state` own the other sections, and `admit` applies the config's limits to an
//! experiment ([`ChaosConfig::admit`]). Their types are re-exported here. Every key the seed is silent
//! about has a default, documented on its field; every struct rejects unknown keys. Read a config
//! with [`ChaosConfig::from_yaml`], which returns a value that passed [`ChaosConfig::validate`].

mod admit;
mod experiment_types;
mod guards;
mod monitoring;
mod notify;
mod rollback;
mod safety;
mod state;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Deserializer};

use crate::error::{ModelError, check_cost, check_range, check_ratio, invalid, parse_yaml};
use crate::experiment::{
    MAX_CONCURRENCY, MAX_QUERIES_PER_SECOND, MAX_RATE_BPS, MIN_RATE_BPS, Rate,
};
pub use admit::{Admission, Price, Refusal, wildcard_match};
pub use experiment_types::{
    ApiErrorInjectionParameters, ApiErrorInjectionType, ErrorType, ExperimentTypes,
    NetworkLatencyParameters, NetworkLatencyType, PodDeletionParameters, PodDeletionType,
};
pub use guards::{
    Comparison, HealthEndpoint, Hours, MAX_QUERY_LEN, MAX_SLO_FOR, Objective, SloDefinition,
    StatusRange, TimeWindow, Weekday, check_slos, is_guard_name,
};
pub use monitoring::{CustomMetrics, Grafana, Monitoring, Prometheus};
pub(crate) use notify::check_env_name;
pub use notify::{
    AlertmanagerChannel, Channel, DEFAULT_PAGERDUTY_URL, EmailChannel, HeaderValue,
    PagerDutyChannel, RollbackActions, SecretRef, SecretSource, SlackChannel, Webhook,
};
pub use rollback::{ManualTrigger, Rollback, RollbackStrategies};
pub use safety::{
    DEFAULT_PROTECTED_CGROUPS, HealthChecks, RollbackTriggers, SafetyChecks, SloValidation,
};
pub use state::{MAX_RETENTION_DAYS, StateStore};

/// The whole chaos config. Every section is optional; an omitted section takes the defaults
/// documented on its fields (mostly the seed's values).
///
/// Build it with [`ChaosConfig::from_yaml`]. The `Deserialize` impl alone does not validate; call
/// [`ChaosConfig::validate`] on a value obtained any other way.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a chaos config (a mapping)")]
pub struct ChaosConfig {
    /// Money limits and the cost model.
    pub budget: Budget,
    /// Per-fault-type limits: whether a type may run, its caps, its cost and impact threshold.
    pub experiments: ExperimentLimits,
    /// Guards evaluated while an experiment runs.
    pub safety_checks: SafetyChecks,
    /// What happens when a guard fires or someone pulls the emergency stop.
    pub rollback: Rollback,
    /// Descriptions and preset parameters (ramp steps) of the experiment types.
    pub experiment_types: ExperimentTypes,
    /// Prometheus, Grafana and custom-metrics settings.
    pub monitoring: Monitoring,
    /// Not in the seed: how long the daemon keeps its records.
    pub state: StateStore,
}

impl ChaosConfig {
    /// Parses and validates a chaos config. Errors name the dotted path of the offending key.
    /// A config with `safety_checks.slo_files` must be read with [`ChaosConfig::load`], which
    /// knows where the files are.
    pub fn from_yaml(text: &str) -> Result<Self, ModelError> {
        let config: Self = parse_yaml(text)?;
        if !config.safety_checks.slo_files.is_empty() {
            return Err(invalid(
                "safety_checks.slo_files",
                format!("{:?}", config.safety_checks.slo_files),
                "no files when the config is not read from a file (the paths are relative to \
                 it): read it with --config FILE",
            ));
        }
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates the chaos config at `path`, with the SLO definitions of its
    /// `safety_checks.slo_files` (relative to the config's directory) merged into
    /// `safety_checks.slos`.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let mut config: Self = parse_yaml(&read(path)?).map_err(|error| LoadError::Model {
            path: path.to_owned(),
            error,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for file in config.safety_checks.slo_files.clone() {
            let file = dir.join(file);
            let slos: BTreeMap<String, SloDefinition> =
                parse_yaml(&read(&file)?).map_err(|error| LoadError::Model {
                    path: file.clone(),
                    error,
                })?;
            check_slos("", &slos).map_err(|error| LoadError::Model {
                path: file.clone(),
                error,
            })?;
            for (name, slo) in slos {
                if config.safety_checks.slos.contains_key(&name) {
                    return Err(LoadError::Model {
                        path: file,
                        error: invalid(
                            name.clone(),
                            "a second definition",
                            "one definition per SLO name (it is also defined in the config \
                             or an earlier file)",
                        ),
                    });
                }
                config.safety_checks.slos.insert(name, slo);
            }
        }
        config.validate().map_err(|error| LoadError::Model {
            path: path.to_owned(),
            error,
        })?;
        Ok(config)
    }

    /// Checks every range and cross-field rule; the first failure is returned.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.budget.validate()?;
        self.experiments.validate()?;
        self.safety_checks.validate()?;
        self.rollback.validate()?;
        self.experiment_types
            .validate(self.experiments.network_latency.max_latency_ms)?;
        self.monitoring.validate()?;
        self.state.validate()
    }
}

/// Why [`ChaosConfig::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Model { path: PathBuf, error: ModelError },
}

/// `budget`: money limits, in the seed's cost unit (whatever currency the operator bills in).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the budget section (a mapping)"
)]
pub struct Budget {
    /// Most one experiment may spend. At least 0 and at most `max_daily_cost`. Default: 100.0.
    pub max_experiment_cost: f64,
    /// Most all experiments together may spend per UTC day. At least 0. Default: 500.0.
    pub max_daily_cost: f64,
    /// Cost of one injected fault (one dropped packet or failed call) unless the fault type sets
    /// `cost_per_fault`; the daemon turns the remaining budget into a fault cap with
    /// `floor(remaining / cost_per_request)`. 0 makes faults free. Default: 0.001.
    pub cost_per_request: f64,
    /// Fraction of a budget (experiment or daily) at which an alert fires; in (0, 1].
    /// Default: 0.8.
    pub alert_threshold: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_experiment_cost: 100.0,
            max_daily_cost: 500.0,
            cost_per_request: 0.001,
            alert_threshold: 0.8,
        }
    }
}

impl Budget {
    fn validate(&self) -> Result<(), ModelError> {
        check_cost("budget.max_experiment_cost", self.max_experiment_cost)?;
        check_cost("budget.max_daily_cost", self.max_daily_cost)?;
        check_cost("budget.cost_per_request", self.cost_per_request)?;
        if !(self.alert_threshold > 0.0 && self.alert_threshold <= 1.0) {
            return Err(invalid(
                "budget.alert_threshold",
                self.alert_threshold,
                "more than 0 and at most 1",
            ));
        }
        if self.max_experiment_cost > self.max_daily_cost {
            return Err(invalid(
                "budget.max_experiment_cost",
                self.max_experiment_cost,
                format!("at most budget.max_daily_cost ({})", self.max_daily_cost),
            ));
        }
        Ok(())
    }
}

/// `experiments`: per-type limits. Only the keys below are accepted; an omitted entry takes
/// its documented defaults (the type is enabled).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the experiments section (a mapping)"
)]
pub struct ExperimentLimits {
    /// Limits of network latency experiments.
    pub network_latency: NetworkLatencyLimits,
    /// Limits of bandwidth limit experiments.
    pub bandwidth_limit: BandwidthLimitLimits,
    /// Limits of pod (container) kill experiments.
    pub pod_deletion: PodDeletionLimits,
    /// Limits of CPU/memory pressure experiments.
    pub resource_exhaustion: ResourceExhaustionLimits,
    /// Limits of packet loss experiments.
    pub packet_loss: FaultLimits,
    /// Limits of packet duplication experiments.
    pub packet_duplication: FaultLimits,
    /// Limits of packet corruption experiments.
    pub packet_corruption: FaultLimits,
    /// Limits of dependency failure (failed `connect()` etc.) experiments.
    pub dependency_failure: FaultLimits,
    /// Limits of API error injection (reset connections) experiments.
    pub api_error_injection: FaultLimits,
    /// Limits of file and process syscall error experiments.
    pub syscall_error: FaultLimits,
    /// Limits of database load experiments.
    pub database_load: DatabaseLoadLimits,
}

impl ExperimentLimits {
    fn validate(&self) -> Result<(), ModelError> {
        let latency = &self.network_latency;
        check_range(
            "experiments.network_latency.max_latency_ms",
            latency.max_latency_ms,
            1,
            60_000,
        )?;
        check_cost(
            "experiments.network_latency.cost_per_minute",
            latency.cost_per_minute,
        )?;
        check_ratio(
            "experiments.network_latency.impact_threshold",
            latency.impact_threshold,
        )?;
        self.bandwidth_limit.validate()?;
        let pods = &self.pod_deletion;
        check_range(
            "experiments.pod_deletion.max_pods_deleted",
            pods.max_pods_deleted,
            1,
            u32::MAX,
        )?;
        check_cost("experiments.pod_deletion.cost_per_pod", pods.cost_per_pod)?;
        check_ratio(
            "experiments.pod_deletion.impact_threshold",
            pods.impact_threshold,
        )?;
        let resources = &self.resource_exhaustion;
        check_ratio(
            "experiments.resource_exhaustion.max_cpu_usage",
            resources.max_cpu_usage,
        )?;
        check_ratio(
            "experiments.resource_exhaustion.max_memory_usage",
            resources.max_memory_usage,
        )?;
        check_ratio(
            "experiments.resource_exhaustion.impact_threshold",
            resources.impact_threshold,
        )?;
        self.packet_loss.validate("experiments.packet_loss")?;
        self.packet_duplication
            .validate("experiments.packet_duplication")?;
        self.packet_corruption
            .validate("experiments.packet_corruption")?;
        self.dependency_failure
            .validate("experiments.dependency_failure")?;
        self.api_error_injection
            .validate("experiments.api_error_injection")?;
        self.syscall_error.validate("experiments.syscall_error")?;
        self.database_load.validate()?;
        check_cgroup_names(
            "experiments.pod_deletion.allowed_cgroups",
            &pods.allowed_cgroups,
        )
    }
}

/// `experiments.network_latency`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct NetworkLatencyLimits {
    /// Whether latency experiments may run. Default: true.
    pub enabled: bool,
    /// Largest delay an experiment may add, in milliseconds; 1 to 60000. Default: 2000.
    pub max_latency_ms: u64,
    /// Cost of one minute of latency injection. At least 0. Default: 0.10.
    pub cost_per_minute: f64,
    /// Impact score (0 to 1) above which the experiment is rolled back. Default: 0.3.
    pub impact_threshold: f64,
}

impl Default for NetworkLatencyLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            max_latency_ms: 2000,
            cost_per_minute: 0.10,
            impact_threshold: 0.3,
        }
    }
}

/// `experiments.bandwidth_limit`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct BandwidthLimitLimits {
    /// Whether bandwidth limit experiments may run. Default: true.
    pub enabled: bool,
    /// Lowest `fault.rate` an experiment may hold the target to, written as a rate (`100kbit`,
    /// see [`Rate`]); 8kbit to 100gbit. Default: 100kbit.
    #[serde(deserialize_with = "deserialize_min_rate")]
    pub min_rate: Rate,
    /// Cost of one fault, a packet the limiter delays or drops; at least 0. Default: unset,
    /// meaning `budget.cost_per_request`.
    pub cost_per_fault: Option<f64>,
    /// Impact score (0 to 1) above which the experiment is rolled back. Default: 0.5.
    pub impact_threshold: f64,
}

const MIN_RATE_KEY: &str = "experiments.bandwidth_limit.min_rate";

impl Default for BandwidthLimitLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            min_rate: Rate::from_bps(100_000),
            cost_per_fault: None,
            impact_threshold: 0.5,
        }
    }
}

impl BandwidthLimitLimits {
    fn validate(&self) -> Result<(), ModelError> {
        if !(MIN_RATE_BPS..=MAX_RATE_BPS).contains(&self.min_rate.bits_per_sec) {
            return Err(invalid(
                MIN_RATE_KEY,
                self.min_rate,
                format!(
                    "{} to {}",
                    Rate::from_bps(MIN_RATE_BPS),
                    Rate::from_bps(MAX_RATE_BPS)
                ),
            ));
        }
        if let Some(cost) = self.cost_per_fault {
            check_cost("experiments.bandwidth_limit.cost_per_fault", cost)?;
        }
        check_ratio(
            "experiments.bandwidth_limit.impact_threshold",
            self.impact_threshold,
        )
    }
}

/// `experiments.bandwidth_limit.min_rate`: a rate as written (`100kbit`); the failure of
/// [`Rate::parse`] without its path, which the reader adds.
fn deserialize_min_rate<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
    let text = String::deserialize(deserializer)?;
    Rate::parse(MIN_RATE_KEY, &text).map_err(|error| match error {
        ModelError::Invalid { value, allowed, .. } => {
            serde::de::Error::custom(format_args!("{value} is not allowed; expected {allowed}"))
        }
        other => serde::de::Error::custom(other),
    })
}

/// `experiments.pod_deletion`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct PodDeletionLimits {
    /// Whether pod kill experiments may run. Default: true.
    pub enabled: bool,
    /// Most pods one experiment may kill; at least 1 (use `enabled: false` to forbid).
    /// Default: 2.
    pub max_pods_deleted: u32,
    /// Cost of one killed pod. At least 0. Default: 50.0.
    pub cost_per_pod: f64,
    /// Impact score (0 to 1) above which the experiment is rolled back. Default: 0.2.
    pub impact_threshold: f64,
    /// Cgroup directory names (`*` wildcard) that a pod deletion may kill although they are
    /// not a pod or a container (a systemd service, a test cgroup); their pods, containers or
    /// else the cgroup itself count as the pods killed. `safety_checks.protected_cgroups`
    /// still applies. Default: none (only pods and containers).
    pub allowed_cgroups: Vec<String>,
}

impl Default for PodDeletionLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            max_pods_deleted: 2,
            cost_per_pod: 50.0,
            impact_threshold: 0.2,
            allowed_cgroups: Vec::new(),
        }
    }
}

/// `experiments.resource_exhaustion`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct ResourceExhaustionLimits {
    /// Whether CPU/memory pressure experiments may run. Default: true.
    pub enabled: bool,
    /// Largest fraction (0 to 1) of the target's CPU the pressure may take away. Default: 0.9.
    pub max_cpu_usage: f64,
    /// Largest fraction (0 to 1) of the target's memory the pressure may take away.
    /// Default: 0.85.
    pub max_memory_usage: f64,
    /// Impact score (0 to 1) above which the experiment is rolled back. Default: 0.7.
    pub impact_threshold: f64,
}

impl Default for ResourceExhaustionLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            max_cpu_usage: 0.9,
            max_memory_usage: 0.85,
            impact_threshold: 0.7,
        }
    }
}

/// `experiments.database_load`: how hard a database_load experiment may press on a database.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct DatabaseLoadLimits {
    /// Whether database load experiments may run. Default: true.
    pub enabled: bool,
    /// Highest `fault.rate` (and ramp step) an experiment may ask for, in queries per second;
    /// 1 to 100000. Default: 500.
    pub max_queries_per_second: u32,
    /// Highest `fault.concurrency` (connections) an experiment may ask for; 1 to 1000.
    /// Default: 50.
    pub max_connections: u32,
    /// Cost of one executed query; at least 0. The budget caps the queries at
    /// `floor(budget / cost_per_query)`. Default: 0.001.
    pub cost_per_query: f64,
    /// Impact score (0 to 1) above which the experiment is rolled back. Default: 0.2.
    pub impact_threshold: f64,
}

impl Default for DatabaseLoadLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            max_queries_per_second: 500,
            max_connections: 50,
            cost_per_query: 0.001,
            impact_threshold: 0.2,
        }
    }
}

impl DatabaseLoadLimits {
    fn validate(&self) -> Result<(), ModelError> {
        let path = "experiments.database_load";
        check_range(
            &format!("{path}.max_queries_per_second"),
            self.max_queries_per_second,
            1,
            MAX_QUERIES_PER_SECOND as u32,
        )?;
        check_range(
            &format!("{path}.max_connections"),
            self.max_connections,
            1,
            MAX_CONCURRENCY,
        )?;
        check_cost(&format!("{path}.cost_per_query"), self.cost_per_query)?;
        check_ratio(&format!("{path}.impact_threshold"), self.impact_threshold)
    }
}

/// `experiments.packet_loss`, `experiments.packet_duplication`,
/// `experiments.packet_corruption`, `experiments.dependency_failure`,
/// `experiments.api_error_injection`, `experiments.syscall_error`: limits of the eBPF fault
/// types the seed does not list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct FaultLimits {
    /// Whether experiments of this type may run. Default: true.
    pub enabled: bool,
    /// Highest `intensity` (fault probability, 0 to 1) an experiment may ask for. Default: 1.0.
    pub max_probability: f64,
    /// Cost of one injected fault; at least 0. Default: unset, meaning
    /// `budget.cost_per_request`.
    pub cost_per_fault: Option<f64>,
    /// Impact score (0 to 1) above which the experiment is rolled back. Default: 0.5.
    pub impact_threshold: f64,
}

impl Default for FaultLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            max_probability: 1.0,
            cost_per_fault: None,
            impact_threshold: 0.5,
        }
    }
}

impl FaultLimits {
    fn validate(&self, path: &str) -> Result<(), ModelError> {
        check_ratio(&format!("{path}.max_probability"), self.max_probability)?;
        if let Some(cost) = self.cost_per_fault {
            check_cost(&format!("{path}.cost_per_fault"), cost)?;
        }
        check_ratio(&format!("{path}.impact_threshold"), self.impact_threshold)
    }
}

/// Checks that every name in `names` has visible characters.
fn check_names(path: &str, names: &[String]) -> Result<(), ModelError> {
    match names.iter().position(|name| name.trim().is_empty()) {
        Some(index) => Err(invalid(
            format!("{path}[{index}]"),
            format!("{:?}", names[index]),
            "a non-empty name",
        )),
        None => Ok(()),
    }
}

/// Checks a list of cgroup directory name patterns: not empty, no `/`, no control characters.
fn check_cgroup_names(path: &str, names: &[String]) -> Result<(), ModelError> {
    match names.iter().position(|name| {
        name.trim().is_empty() || name.contains('/') || name.chars().any(char::is_control)
    }) {
        Some(index) => Err(invalid(
            format!("{path}[{index}]"),
            format!("{:?}", names[index]),
            "a cgroup directory name without '/', `*` matching any characters \
             (e.g. kubelet.service, chaos-test-*)",
        )),
        None => Ok(()),
    }
}

/// Checks that every value in `values` is a ratio in [0, 1].
fn check_ratios(path: &str, values: &[f64]) -> Result<(), ModelError> {
    for (index, &value) in values.iter().enumerate() {
        check_ratio(&format!("{path}[{index}]"), value)?;
    }
    Ok(())
}
