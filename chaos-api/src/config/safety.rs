//! The `safety_checks` section of the chaos config: the guards evaluated while an experiment
//! runs, with their defaults and range checks.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{
    check_cgroup_names, check_names,
    guards::{HealthEndpoint, SloDefinition, TimeWindow, check_endpoints, check_slos},
};
use crate::error::{
    ModelError, check_duration, check_range, check_ratio, deserialize_duration, invalid,
};

/// `safety_checks`: the guards evaluated while an experiment runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the safety_checks section (a mapping)"
)]
pub struct SafetyChecks {
    /// SLO guards (PromQL against Prometheus).
    pub slo_validation: SloValidation,
    /// What each SLO name means: name -> {query, objective, for}. Every name in
    /// `slo_validation.critical_slos` and `warning_slos` must be defined here or in a file of
    /// `slo_files`. Default: none.
    pub slos: BTreeMap<String, SloDefinition>,
    /// Files of SLO definitions (a mapping name -> definition, like `slos`), relative to the
    /// config file, e.g. `safety/http-slos.yaml`. A name may be defined once. Default: none.
    pub slo_files: Vec<PathBuf>,
    /// HTTP health-check guards.
    pub health_checks: HealthChecks,
    /// Rollback triggers relative to the baseline measured before arming.
    pub rollback_triggers: RollbackTriggers,
    /// How often every guard is evaluated, in milliseconds; 50 to 60000. A violation disarms
    /// the experiment within one interval. Default: 1000.
    pub guard_interval_ms: u64,
    /// How long every guard is measured before arming; the rollback triggers compare with
    /// this baseline. 0 to 1h (0: one evaluation). Default: 30s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub baseline: Duration,
    /// When experiments may start (outside it they are refused). Default: any time.
    pub time_window: Option<TimeWindow>,
    /// Cgroup directory names (`*` wildcard) that no experiment may target, nor any cgroup that
    /// contains one: the node's own services. The root cgroup and the daemon's own cgroup are
    /// always protected. Default: [`DEFAULT_PROTECTED_CGROUPS`].
    pub protected_cgroups: Vec<String>,
}

/// The node's own services: init, the system slice, the kubelet and the container runtimes,
/// and the parents of every pod (`kubepods.slice` under systemd, `kubepods` under cgroupfs).
pub const DEFAULT_PROTECTED_CGROUPS: &[&str] = &[
    "init.scope",
    "system.slice",
    "kubelet.service",
    "kubelet.slice",
    "containerd.service",
    "crio.service",
    "docker.service",
    "kubepods.slice",
    "kubepods",
];

impl Default for SafetyChecks {
    fn default() -> Self {
        Self {
            slo_validation: SloValidation::default(),
            health_checks: HealthChecks::default(),
            rollback_triggers: RollbackTriggers::default(),
            guard_interval_ms: 1000,
            slos: BTreeMap::new(),
            slo_files: Vec::new(),
            baseline: Duration::from_secs(30),
            time_window: None,
            protected_cgroups: DEFAULT_PROTECTED_CGROUPS
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
        }
    }
}

impl SafetyChecks {
    pub(super) fn validate(&self) -> Result<(), ModelError> {
        let slo = &self.slo_validation;
        check_names(
            "safety_checks.slo_validation.critical_slos",
            &slo.critical_slos,
        )?;
        check_names(
            "safety_checks.slo_validation.warning_slos",
            &slo.warning_slos,
        )?;
        check_slos("safety_checks.slos", &self.slos)?;
        for (list, names) in [
            ("critical_slos", &slo.critical_slos),
            ("warning_slos", &slo.warning_slos),
        ] {
            if let Some((i, name)) = names
                .iter()
                .enumerate()
                .find(|(_, name)| !self.slos.contains_key(*name))
            {
                return Err(invalid(
                    format!("safety_checks.slo_validation.{list}[{i}]"),
                    format!("{name:?}"),
                    format!(
                        "the name of an SLO defined under safety_checks.slos or in \
                         safety_checks.slo_files (defined: {})",
                        defined(&self.slos)
                    ),
                ));
            }
        }
        let health = &self.health_checks;
        check_ratio(
            "safety_checks.health_checks.min_availability",
            health.min_availability,
        )?;
        check_ratio(
            "safety_checks.health_checks.min_success_rate",
            health.min_success_rate,
        )?;
        check_endpoints("safety_checks.health_checks.endpoints", &health.endpoints)?;
        check_duration(
            "safety_checks.health_checks.window",
            health.window,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        let triggers = &self.rollback_triggers;
        check_ratio(
            "safety_checks.rollback_triggers.error_rate_increase",
            triggers.error_rate_increase,
        )?;
        check_ratio(
            "safety_checks.rollback_triggers.availability_drop",
            triggers.availability_drop,
        )?;
        check_ratio(
            "safety_checks.rollback_triggers.health_degradation",
            triggers.health_degradation,
        )?;
        check_range(
            "safety_checks.guard_interval_ms",
            self.guard_interval_ms,
            50,
            60_000,
        )?;
        check_duration(
            "safety_checks.baseline",
            self.baseline,
            Duration::ZERO,
            Duration::from_secs(3600),
        )?;
        if let Some(window) = &self.time_window {
            window.validate("safety_checks.time_window")?;
        }
        check_cgroup_names("safety_checks.protected_cgroups", &self.protected_cgroups)
    }
}

/// `safety_checks.slo_validation`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct SloValidation {
    /// Whether SLOs are checked before arming and while running. Default: true.
    pub enabled: bool,
    /// SLOs whose violation rolls the experiment back (names of the SLO definitions the daemon
    /// queries in Prometheus). Default: none.
    pub critical_slos: Vec<String>,
    /// SLOs whose violation only raises an alert. Default: none.
    pub warning_slos: Vec<String>,
}

impl Default for SloValidation {
    fn default() -> Self {
        Self {
            enabled: true,
            critical_slos: Vec::new(),
            warning_slos: Vec::new(),
        }
    }
}

/// `safety_checks.health_checks`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct HealthChecks {
    /// Whether health checks guard the experiment. Default: true.
    pub enabled: bool,
    /// Lowest availability (fraction of time healthy, 0 to 1) before rollback. Default: 0.99.
    pub min_availability: f64,
    /// Lowest health-check success rate (0 to 1) before rollback. Default: 0.95.
    pub min_success_rate: f64,
    /// The endpoints probed. Default: none.
    pub endpoints: Vec<HealthEndpoint>,
    /// The sliding window over which the success rate and availability are judged; 1s to 1h.
    /// Default: 60s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub window: Duration,
}

impl Default for HealthChecks {
    fn default() -> Self {
        Self {
            enabled: true,
            min_availability: 0.99,
            min_success_rate: 0.95,
            endpoints: Vec::new(),
            window: Duration::from_secs(60),
        }
    }
}

/// `safety_checks.rollback_triggers`: limits on the change against the baseline measured
/// before arming. The ratios are absolute differences (0.05 = 5 percentage points).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct RollbackTriggers {
    /// Whether a violated critical SLO rolls the experiment back; false: it only alerts (a
    /// `guard_alert` notification and timeline event, once per SLO per experiment) and no
    /// longer counts in the impact score. Default: true.
    pub slo_violation: bool,
    /// Largest rise of the error rate (0 to 1) before rollback. Default: 0.5.
    pub error_rate_increase: f64,
    /// Largest fall of availability (0 to 1) before rollback. Default: 0.05.
    pub availability_drop: f64,
    /// Largest fall of the health-check success rate (0 to 1) before rollback. Default: 0.1.
    pub health_degradation: f64,
    /// The SLO whose value is the error rate (a ratio) for `error_rate_increase`; the trigger
    /// is off when no SLO of that name is defined. Default: `error_rate`.
    pub error_rate_slo: String,
    /// The SLO whose value is the availability (a ratio) for `availability_drop`; off when
    /// undefined. Default: `api_availability`.
    pub availability_slo: String,
}

impl Default for RollbackTriggers {
    fn default() -> Self {
        Self {
            slo_violation: true,
            error_rate_increase: 0.5,
            availability_drop: 0.05,
            health_degradation: 0.1,
            error_rate_slo: "error_rate".to_owned(),
            availability_slo: "api_availability".to_owned(),
        }
    }
}

/// The defined SLO names, for messages.
fn defined(slos: &BTreeMap<String, SloDefinition>) -> String {
    if slos.is_empty() {
        "none".to_owned()
    } else {
        slos.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}
