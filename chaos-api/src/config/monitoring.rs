//! The `monitoring` section of the chaos config: Prometheus, Grafana and custom metrics, with their
//! defaults and range checks.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

use super::check_names;
use crate::error::{ModelError, check_duration, check_range, deserialize_duration, invalid};

/// `monitoring`: where metrics go and how often custom metrics are collected.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the monitoring section (a mapping)"
)]
pub struct Monitoring {
    /// Prometheus (SLO queries, alerts).
    pub prometheus: Prometheus,
    /// Grafana dashboards.
    pub grafana: Grafana,
    /// Custom metrics collection.
    pub custom_metrics: CustomMetrics,
}

impl Monitoring {
    pub(super) fn validate(&self) -> Result<(), ModelError> {
        let prometheus = &self.prometheus;
        check_range(
            "monitoring.prometheus.metrics_port",
            prometheus.metrics_port,
            1,
            u16::MAX,
        )?;
        check_range(
            "monitoring.prometheus.alertmanager_port",
            prometheus.alertmanager_port,
            1,
            u16::MAX,
        )?;
        prometheus.validate()?;
        check_names("monitoring.grafana.dashboards", &self.grafana.dashboards)?;
        check_duration(
            "monitoring.custom_metrics.collection_interval",
            self.custom_metrics.collection_interval,
            Duration::from_secs(1),
            Duration::MAX,
        )
    }
}

/// `monitoring.prometheus`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct Prometheus {
    /// Whether Prometheus is used (SLO guards need it). Default: true.
    pub enabled: bool,
    /// TCP port of Prometheus' HTTP API; 1 to 65535. Default: 9090.
    #[serde(deserialize_with = "deserialize_port")]
    pub metrics_port: u16,
    /// TCP port of Alertmanager; 1 to 65535. Default: 9093.
    #[serde(deserialize_with = "deserialize_port")]
    pub alertmanager_port: u16,
    /// Base URL of Prometheus' HTTP API (`http://` or `https://`). Default:
    /// `http://127.0.0.1:<metrics_port>` ([`Prometheus::base_url`]).
    pub url: Option<String>,
    /// File holding a bearer token sent with every query. Default: none.
    pub bearer_token_file: Option<PathBuf>,
    /// Environment variable holding a bearer token (instead of a file). Default: none.
    pub bearer_token_env: Option<String>,
    /// File holding `user:password` for HTTP basic auth. Default: none.
    pub basic_auth_file: Option<PathBuf>,
    /// Longest wait for one query; 10ms to 60s. A query that takes longer is a guard failure.
    /// Default: 2s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub query_timeout: Duration,
}

impl Default for Prometheus {
    fn default() -> Self {
        Self {
            enabled: true,
            metrics_port: 9090,
            alertmanager_port: 9093,
            url: None,
            bearer_token_file: None,
            bearer_token_env: None,
            basic_auth_file: None,
            query_timeout: Duration::from_secs(2),
        }
    }
}

impl Prometheus {
    /// The API's base URL, without a trailing `/`.
    pub fn base_url(&self) -> String {
        match &self.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://127.0.0.1:{}", self.metrics_port),
        }
    }

    fn validate(&self) -> Result<(), ModelError> {
        if let Some(url) = &self.url {
            let ok = ["http://", "https://"]
                .iter()
                .any(|s| url.starts_with(s) && url.len() > s.len())
                && !url.chars().any(char::is_whitespace);
            if !ok {
                return Err(invalid(
                    "monitoring.prometheus.url",
                    format!("{url:?}"),
                    "an http:// or https:// URL without spaces",
                ));
            }
        }
        let tokens = [
            self.bearer_token_file.is_some(),
            self.bearer_token_env.is_some(),
            self.basic_auth_file.is_some(),
        ];
        if tokens.iter().filter(|set| **set).count() > 1 {
            return Err(invalid(
                "monitoring.prometheus",
                "more than one of bearer_token_file, bearer_token_env, basic_auth_file",
                "at most one way to authenticate",
            ));
        }
        check_duration(
            "monitoring.prometheus.query_timeout",
            self.query_timeout,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )
    }
}

/// `monitoring.grafana`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct Grafana {
    /// Whether the dashboards are provisioned. Default: true.
    pub enabled: bool,
    /// Dashboard names (shipped in `deploy/`); non-empty.
    /// Default: [chaos-experiments, chaos-metrics].
    pub dashboards: Vec<String>,
}

impl Default for Grafana {
    fn default() -> Self {
        Self {
            enabled: true,
            dashboards: vec!["chaos-experiments".to_owned(), "chaos-metrics".to_owned()],
        }
    }
}

/// `monitoring.custom_metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct CustomMetrics {
    /// Whether custom metrics are collected. Default: true.
    pub enabled: bool,
    /// Collection period, a humantime duration (`30s`, `1m`); at least 1s. Default: 30s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub collection_interval: Duration,
}

impl Default for CustomMetrics {
    fn default() -> Self {
        Self {
            enabled: true,
            collection_interval: Duration::from_secs(30),
        }
    }
}

/// Reads a TCP port as any integer so that 70000 gets a clear message; 0 is rejected by
/// validation.
fn deserialize_port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let value = i64::deserialize(deserializer)?;
    u16::try_from(value)
        .map_err(|_| D::Error::custom(format_args!("{value} is not allowed; expected 1 to 65535")))
}
