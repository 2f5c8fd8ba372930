//! The run specification: the JSON file given with `--spec`, its validation and the password
//! lookup (from a file or an environment variable, never inline).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a spec file is refused; each message names the field, the value and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read the spec file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid spec file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid spec: {0}")]
    Invalid(String),
    #[error("cannot read password_file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("password_env names {name}, which is not set (or not UTF-8) in the environment")]
    PasswordEnv { name: String },
}

/// The database engine the load is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Postgres,
    Mysql,
    Redis,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Redis => "redis",
        }
    }
}

/// A built-in workload profile (see the crate documentation for what each one sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    PointReads,
    RangeScans,
    Writes,
    RowLocks,
    ConnectionStorm,
}

/// One user statement and its relative weight.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// SQL text; for redis a command line split on whitespace (`GET k`).
    pub sql: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// What is sent: a built-in profile or weighted user statements.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Workload {
    Profile(Profile),
    Statements(Vec<Statement>),
}

/// The whole spec file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub engine: Engine,
    /// `host:port`.
    pub address: String,
    /// Database name; for redis the database index (`""` means 0).
    #[serde(default)]
    pub database: String,
    #[serde(default)]
    pub user: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub workload: Workload,
    /// Queries per second (> 0).
    pub rate: f64,
    /// Connections (>= 1).
    pub concurrency: u32,
    pub duration_ms: u64,
    /// The cap: exactly this many queries are sent, then the run ends.
    pub max_queries: Option<u64>,
    /// Suffix of the scratch table (`chaos_scratch_<scratch>`) and keys (`chaos:scratch:<scratch>:`).
    pub scratch: String,
    /// How long a `row_locks` transaction holds its lock, in milliseconds (default 100).
    #[serde(default = "default_lock_hold_ms")]
    pub lock_hold_ms: u64,
}

fn default_lock_hold_ms() -> u64 {
    100
}

/// The most connections one runner opens.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// The highest rate one runner accepts.
pub const MAX_RATE: f64 = 1_000_000.0;

impl Spec {
    /// Reads, parses and validates the spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        let spec: Spec = serde_json::from_str(&text).map_err(|source| SpecError::Parse {
            path: path.to_owned(),
            source,
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every field against what is allowed.
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |msg: String| Err(SpecError::Invalid(msg));
        if !valid_address(&self.address) {
            return invalid(format!(
                "address {:?} is not host:port (a host name or IP and a port 1-65535)",
                self.address
            ));
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            return invalid("password_file and password_env are both set; give at most one".into());
        }
        if self.engine == Engine::Redis
            && !self.database.is_empty()
            && self.database.parse::<u32>().is_err()
        {
            return invalid(format!(
                "database {:?} is not a redis database index (a number, or empty for 0)",
                self.database
            ));
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return invalid(format!(
                "rate {} is not allowed: queries per second, > 0 and <= {MAX_RATE}",
                self.rate
            ));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return invalid(format!(
                "concurrency {} is not allowed: connections, 1 to {MAX_CONCURRENCY}",
                self.concurrency
            ));
        }
        if self.duration_ms == 0 {
            return invalid("duration_ms 0 is not allowed: give a duration > 0".into());
        }
        if self.max_queries == Some(0) {
            return invalid("max_queries 0 is not allowed: give a cap >= 1 or leave it out".into());
        }
        if !valid_scratch(&self.scratch) {
            return invalid(format!(
                "scratch {:?} is not allowed: 1 to 32 characters of [a-z0-9_]",
                self.scratch
            ));
        }
        if let Workload::Statements(statements) = &self.workload {
            if statements.is_empty() {
                return invalid("workload.statements is empty: give at least one statement".into());
            }
            for (i, s) in statements.iter().enumerate() {
                if s.sql.trim().is_empty() {
                    return invalid(format!("workload.statements[{i}].sql is empty"));
                }
                if s.weight == 0 {
                    return invalid(format!(
                        "workload.statements[{i}].weight 0 is not allowed: give a weight >= 1"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The password from `password_file` (one trailing newline removed) or `password_env`.
    pub fn password(&self) -> Result<Option<String>, SpecError> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|source| SpecError::PasswordFile {
                path: path.clone(),
                source,
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            return Ok(Some(text.strip_suffix('\r').unwrap_or(text).to_owned()));
        }
        if let Some(name) = &self.password_env {
            return std::env::var(name)
                .map(Some)
                .map_err(|_| SpecError::PasswordEnv { name: name.clone() });
        }
        Ok(None)
    }

    /// The host and port of `address` (validated by [`Spec::validate`]).
    pub fn host_port(&self) -> (String, u16) {
        split_address(&self.address).unwrap_or_default()
    }
}

fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
}

fn valid_address(address: &str) -> bool {
    split_address(address).is_some()
}

fn valid_scratch(scratch: &str) -> bool {
    (1..=32).contains(&scratch.len())
        && scratch
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Spec, String> {
        let spec: Spec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }

    const BASE: &str = r#""engine":"postgres","address":"127.0.0.1:5432","database":"d","user":"u","rate":200,"concurrency":4,"duration_ms":1000,"scratch":"e1""#;

    #[test]
    fn profile_and_statements_parse() {
        let spec = parse(&format!(
            r#"{{{BASE},"workload":{{"profile":"point_reads"}}}}"#
        ))
        .unwrap();
        assert_eq!(spec.workload, Workload::Profile(Profile::PointReads));
        assert_eq!(spec.lock_hold_ms, 100);
        let spec = parse(&format!(
            r#"{{{BASE},"workload":{{"statements":[{{"sql":"SELECT 1","weight":3}}]}},"max_queries":137}}"#
        ))
        .unwrap();
        assert_eq!(spec.max_queries, Some(137));
        assert_eq!(
            spec.workload,
            Workload::Statements(vec![Statement {
                sql: "SELECT 1".into(),
                weight: 3
            }])
        );
    }

    #[test]
    fn bad_fields_are_refused_with_their_name() {
        let cases = [
            (
                r#""password":"x","workload":{"profile":"writes"}"#,
                "unknown field `password`",
            ),
            (r#""workload":{"profile":"bulk"}"#, "unknown variant `bulk`"),
            (
                r#""workload":{"statements":[]}"#,
                "workload.statements is empty",
            ),
            (
                r#""workload":{"statements":[{"sql":"SELECT 1","weight":0}]}"#,
                "weight 0",
            ),
            (
                r#""workload":{"profile":"writes"},"password_file":"/a","password_env":"B""#,
                "both set",
            ),
            (
                r#""workload":{"profile":"writes"},"max_queries":0"#,
                "max_queries 0",
            ),
        ];
        for (extra, want) in cases {
            let err = parse(&format!("{{{BASE},{extra}}}")).unwrap_err();
            assert!(err.contains(want), "{extra}: {err}");
        }
        let err = parse(&format!("{{{BASE}}}")).unwrap_err();
        assert!(err.contains("missing field `workload`"), "{err}");
    }

    #[test]
    fn field_values_are_checked() {
        let with = |from: &str, to: &str| {
            parse(&format!(
                r#"{{{},"workload":{{"profile":"writes"}}}}"#,
                BASE.replace(from, to)
            ))
            .unwrap_err()
        };
        assert!(with("\"e1\"", "\"Bad-Name\"").contains("scratch \"Bad-Name\""));
        assert!(with("\"rate\":200", "\"rate\":0").contains("rate 0"));
        assert!(with("\"concurrency\":4", "\"concurrency\":0").contains("concurrency 0"));
        assert!(with("127.0.0.1:5432", "localhost").contains("address \"localhost\""));
        assert!(with("\"duration_ms\":1000", "\"duration_ms\":0").contains("duration_ms 0"));
    }
}
