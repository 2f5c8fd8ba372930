//! Samplers: the only code that measures guards over the network. [`Prometheus`] runs instant
//! PromQL queries; [`probe_health`] probes one HTTP health endpoint. Every call has its own
//! timeout, and every failure is a reason string (the guard becomes unavailable, which rolls
//! back): nothing here retries or waits longer than its timeout.

use std::time::Duration;

use chaos_api::config::{HealthEndpoint, Prometheus as PrometheusConfig};

/// A Prometheus HTTP API client.
#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    timeout: Duration,
}

#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

/// Why the Prometheus client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("monitoring.prometheus: {0}")]
    Config(String),
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Prometheus {
    /// A client for `config`; reads its token or password file now.
    pub fn new(config: &PrometheusConfig) -> Result<Self, ProbeError> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| ProbeError::Config(format!("reading {}: {e}", path.display())))
        };
        let auth =
            if let Some(path) = &config.bearer_token_file {
                Auth::Bearer(read(path)?)
            } else if let Some(var) = &config.bearer_token_env {
                Auth::Bearer(std::env::var(var).map_err(|_| {
                    ProbeError::Config(format!("bearer_token_env: ${var} is not set"))
                })?)
            } else if let Some(path) = &config.basic_auth_file {
                let text = read(path)?;
                let (user, password) = text.split_once(':').ok_or_else(|| {
                    ProbeError::Config(format!(
                        "basic_auth_file {}: expected user:password",
                        path.display()
                    ))
                })?;
                Auth::Basic(user.to_owned(), password.to_owned())
            } else {
                Auth::None
            };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(config.query_timeout)
                .build()?,
            base: config.base_url(),
            auth,
            timeout: config.query_timeout,
        })
    }

    /// The API's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Runs the instant query `promql`; its one value, or why there is none (unreachable, an
    /// HTTP or query error, no data, more than one series, NaN).
    pub async fn query(&self, promql: &str) -> Result<f64, String> {
        let mut req = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", promql)]);
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(token) => req.bearer_auth(token),
            Auth::Basic(user, password) => req.basic_auth(user, Some(password)),
        };
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = req.send().await.map_err(|e| describe(&e))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| format!("HTTP {status}: unreadable answer: {}", describe(&e)))?;
            Ok::<_, String>((status, body))
        })
        .await
        .map_err(|_| {
            format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )
        })?;
        let (status, body) = answer?;
        value_of(status, &body)
    }
}

/// The one value of a query answer.
fn value_of(status: reqwest::StatusCode, body: &serde_json::Value) -> Result<f64, String> {
    if body["status"] != "success" {
        let error = body["error"].as_str().unwrap_or("no error message");
        return Err(format!("query failed (HTTP {status}): {error}"));
    }
    let data = &body["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([]) | None => return Err("no data".to_owned()),
            Some([one]) => &one["value"],
            Some(many) => {
                return Err(format!(
                    "{} series; an SLO query must return one (aggregate it, e.g. sum(...))",
                    many.len()
                ));
            }
        },
        other => return Err(format!("unexpected result type {other:?}")),
    };
    let value: f64 = sample[1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unreadable sample {sample}"))?;
    if value.is_nan() {
        Err("NaN (no traffic in the query's range?)".to_owned())
    } else {
        Ok(value)
    }
}

/// A short description of a request failure (connection refused, timeout, ...).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Probes `endpoint` once: whether it answered with an expected status, and what was seen.
pub async fn probe_health(http: &reqwest::Client, endpoint: &HealthEndpoint) -> (bool, String) {
    let method =
        reqwest::Method::from_bytes(endpoint.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let request = http
        .request(method, &endpoint.url)
        .timeout(endpoint.timeout)
        .send();
    match tokio::time::timeout(endpoint.timeout, request).await {
        Err(_) => (
            false,
            format!(
                "no answer within {}",
                humantime::format_duration(endpoint.timeout)
            ),
        ),
        Ok(Err(e)) => (false, describe(&e)),
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            (
                endpoint.expect_status.contains(status),
                format!("HTTP {status} (expected {})", endpoint.expect_status),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Result<f64, String> {
        value_of(
            reqwest::StatusCode::OK,
            &serde_json::from_str(text).unwrap(),
        )
    }

    #[test]
    fn reads_one_value_and_refuses_everything_else() {
        let vector = |result: &str| {
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}}}"#)
        };
        assert_eq!(
            answer(&vector(r#"[{"metric":{},"value":[1,"0.25"]}]"#)),
            Ok(0.25)
        );
        assert_eq!(
            answer(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#),
            Ok(3.0)
        );
        assert_eq!(answer(&vector("[]")), Err("no data".to_owned()));
        let two = r#"[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]"#;
        assert!(answer(&vector(two)).unwrap_err().starts_with("2 series"));
        assert!(
            answer(&vector(r#"[{"metric":{},"value":[1,"NaN"]}]"#))
                .unwrap_err()
                .starts_with("NaN")
        );
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            answer(error),
            Err("query failed (HTTP 200 OK): parse error".to_owned())
        );
    }
}
