//! The `experiment_types` section of the chaos config: descriptions and preset parameters (ramp
//! steps) of the experiment types, including the mixed `error_types` list, with their defaults and
//! range checks.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

use super::{check_names, check_ratios};
use crate::error::{ModelError, check_range, check_ratio, invalid};

/// `experiment_types`: descriptions and preset parameters of the experiment types. The
/// `implementation` strings are informational: every fault is injected with eBPF.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the experiment_types section (a mapping)"
)]
pub struct ExperimentTypes {
    /// Network latency.
    pub network_latency: NetworkLatencyType,
    /// Pod deletion.
    pub pod_deletion: PodDeletionType,
    /// API error injection.
    pub api_error_injection: ApiErrorInjectionType,
}

impl ExperimentTypes {
    /// `max_latency_ms` is `experiments.network_latency.max_latency_ms`.
    pub(super) fn validate(&self, max_latency_ms: u64) -> Result<(), ModelError> {
        let latency = &self.network_latency.parameters;
        let base = "experiment_types.network_latency.parameters";
        for (index, &value) in latency.latency_ms.iter().enumerate() {
            if !(1..=max_latency_ms).contains(&value) {
                return Err(invalid(
                    format!("{base}.latency_ms[{index}]"),
                    value,
                    format!("1 to {max_latency_ms} (experiments.network_latency.max_latency_ms)"),
                ));
            }
        }
        check_ratio(&format!("{base}.jitter"), latency.jitter)?;
        check_ratios(&format!("{base}.packet_loss"), &latency.packet_loss)?;

        let pods = &self.pod_deletion.parameters;
        let base = "experiment_types.pod_deletion.parameters";
        check_names(&format!("{base}.pods"), &pods.pods)?;
        check_range(&format!("{base}.max_pods"), pods.max_pods, 1, u32::MAX)?;
        check_ratio(
            &format!("{base}.impact_score_threshold"),
            pods.impact_score_threshold,
        )?;

        let api = &self.api_error_injection.parameters;
        let base = "experiment_types.api_error_injection.parameters";
        check_ratios(&format!("{base}.error_rate"), &api.error_rate)?;
        for (index, error_type) in api.error_types.iter().enumerate() {
            if let ErrorType::Status(status) = error_type
                && !(100..=599).contains(status)
            {
                return Err(invalid(
                    format!("{base}.error_types[{index}]"),
                    status,
                    ERROR_TYPE_ALLOWED,
                ));
            }
        }
        Ok(())
    }
}

/// `experiment_types.network_latency`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct NetworkLatencyType {
    /// Free text. Default: "Introduce controlled network latency".
    pub description: String,
    /// Informational. Default: "ebpf".
    pub implementation: String,
    /// Preset parameters.
    pub parameters: NetworkLatencyParameters,
}

impl Default for NetworkLatencyType {
    fn default() -> Self {
        Self {
            description: "Introduce controlled network latency".to_owned(),
            implementation: "ebpf".to_owned(),
            parameters: NetworkLatencyParameters::default(),
        }
    }
}

/// `experiment_types.network_latency.parameters`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct NetworkLatencyParameters {
    /// Ramp steps of added delay, in milliseconds; each 1 to
    /// `experiments.network_latency.max_latency_ms`. Default: [100, 500, 1000, 2000].
    pub latency_ms: Vec<u64>,
    /// Jitter as a fraction (0 to 1) of the added delay. Default: 0.1.
    pub jitter: f64,
    /// Ramp steps of packet loss probability, each 0 to 1. Default: [0.01, 0.05, 0.1].
    pub packet_loss: Vec<f64>,
}

impl Default for NetworkLatencyParameters {
    fn default() -> Self {
        Self {
            latency_ms: vec![100, 500, 1000, 2000],
            jitter: 0.1,
            packet_loss: vec![0.01, 0.05, 0.1],
        }
    }
}

/// `experiment_types.pod_deletion`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct PodDeletionType {
    /// Free text. Default: "Terminate specific pods during experiments".
    pub description: String,
    /// Informational. Default: "ebpf" (the daemon writes `cgroup.kill`).
    pub implementation: String,
    /// Preset parameters.
    pub parameters: PodDeletionParameters,
}

impl Default for PodDeletionType {
    fn default() -> Self {
        Self {
            description: "Terminate specific pods during experiments".to_owned(),
            implementation: "ebpf".to_owned(),
            parameters: PodDeletionParameters::default(),
        }
    }
}

/// `experiment_types.pod_deletion.parameters`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct PodDeletionParameters {
    /// Pod name patterns (`*` wildcard) that may be killed; non-empty. Default: none.
    pub pods: Vec<String>,
    /// Most pods per run; at least 1. The effective cap is the smaller of this and
    /// `experiments.pod_deletion.max_pods_deleted`. Default: 3.
    pub max_pods: u32,
    /// Impact score (0 to 1) above which the run is rolled back. Default: 0.3.
    pub impact_score_threshold: f64,
}

impl Default for PodDeletionParameters {
    fn default() -> Self {
        Self {
            pods: Vec::new(),
            max_pods: 3,
            impact_score_threshold: 0.3,
        }
    }
}

/// `experiment_types.api_error_injection`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct ApiErrorInjectionType {
    /// Free text. Default: "Simulate API failures".
    pub description: String,
    /// Informational. Default: "ebpf".
    pub implementation: String,
    /// Preset parameters.
    pub parameters: ApiErrorInjectionParameters,
}

impl Default for ApiErrorInjectionType {
    fn default() -> Self {
        Self {
            description: "Simulate API failures".to_owned(),
            implementation: "ebpf".to_owned(),
            parameters: ApiErrorInjectionParameters::default(),
        }
    }
}

/// `experiment_types.api_error_injection.parameters`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct ApiErrorInjectionParameters {
    /// Ramp steps of error probability, each 0 to 1. Default: [0.01, 0.05, 0.1].
    pub error_rate: Vec<f64>,
    /// Errors to simulate: HTTP statuses 100 to 599 and/or `timeout`.
    /// Default: [500, 502, 503, timeout].
    pub error_types: Vec<ErrorType>,
}

impl Default for ApiErrorInjectionParameters {
    fn default() -> Self {
        Self {
            error_rate: vec![0.01, 0.05, 0.1],
            error_types: vec![
                ErrorType::Status(500),
                ErrorType::Status(502),
                ErrorType::Status(503),
                ErrorType::Timeout,
            ],
        }
    }
}

const ERROR_TYPE_ALLOWED: &str = "an HTTP status 100 to 599 or `timeout`";

/// One entry of `error_types`: written as a number (`503`) or the word `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// An HTTP status code, 100 to 599 once validated.
    Status(u16),
    /// The request times out.
    Timeout,
}

impl<'de> Deserialize<'de> for ErrorType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ErrorTypeVisitor;

        impl Visitor<'_> for ErrorTypeVisitor {
            type Value = ErrorType;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ERROR_TYPE_ALLOWED)
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<ErrorType, E> {
                u16::try_from(value).map(ErrorType::Status).map_err(|_| {
                    E::custom(format_args!(
                        "{value} is not allowed; expected {ERROR_TYPE_ALLOWED}"
                    ))
                })
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<ErrorType, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::custom(format_args!(
                        "{value} is not allowed; expected {ERROR_TYPE_ALLOWED}"
                    ))),
                }
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ErrorType, E> {
                if value == "timeout" {
                    Ok(ErrorType::Timeout)
                } else {
                    Err(E::custom(format_args!(
                        "{value:?} is not allowed; expected {ERROR_TYPE_ALLOWED}"
                    )))
                }
            }
        }

        deserializer.deserialize_any(ErrorTypeVisitor)
    }
}
