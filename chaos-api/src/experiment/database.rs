//! The `fault` of a `database_load` experiment: which database receives the load (engine,
//! address, database, user, where the password is read from), what load (a built-in profile or
//! weighted statements), at what rate and concurrency, and from which network namespace, with
//! their checks. The parts as written (a document or a gRPC message) become a [`DatabaseLoad`]
//! in [`build_database_load`], shared by both readers.
//!
//! The password never appears in an experiment: `password_file` names a file on the node and
//! `password_env` an environment variable of the daemon, as for the notification channels'
//! secrets; a `password` key is refused.

use std::path::PathBuf;

use super::wire::keyword;
use crate::config::{SecretSource, check_env_name};
use crate::error::{ModelError, invalid};

/// Highest `fault.rate` (and ramp step), in queries per second; the daemon's
/// `experiments.database_load.max_queries_per_second` usually allows less.
pub const MAX_QUERIES_PER_SECOND: f64 = 100_000.0;
/// Most concurrent connections (`fault.concurrency`); the daemon's
/// `experiments.database_load.max_connections` usually allows less.
pub const MAX_CONCURRENCY: u32 = 1000;
/// `fault.concurrency` when none is given.
pub const DEFAULT_CONCURRENCY: u32 = 8;
/// Most entries of `fault.statements`.
pub const MAX_STATEMENTS: usize = 16;
/// Longest statement, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 4096;
/// Longest database or user name, in bytes (MySQL allows 64, PostgreSQL 63).
const MAX_NAME_BYTES: usize = 64;

/// What a database load's `fault.rate` and ramp steps allow.
pub const QUERY_RATE_ALLOWED: &str =
    "queries per second, more than 0 and at most 100000 (e.g. 200)";

/// `fault` of a `database_load` experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseLoad {
    /// `engine`: postgres, mysql (MySQL and MariaDB) or redis. Required.
    pub engine: Engine,
    /// `address`: `HOST:PORT` of the server (a name, an IPv4 address or `[IPv6]`). Required.
    pub address: String,
    /// `database`: the database name (postgres, mysql), or the database index (redis, 0 to
    /// 65535). Default: the server's (postgres: the user's name; redis: 0).
    pub database: Option<String>,
    /// `user`: the user to connect as; required for postgres and mysql. Default (redis): none.
    pub user: Option<String>,
    /// `password_file` (a file on the node, its whole content without the trailing newline) or
    /// `password_env` (an environment variable of the daemon), at most one. Default: none.
    pub password: Option<SecretSource>,
    /// `profile` or `statements`: what every query is. Exactly one is required.
    pub workload: Workload,
    /// `rate`: the queries per second the load holds, more than 0 and at most
    /// [`MAX_QUERIES_PER_SECOND`]. Required, except with a ramp, whose steps are rates and whose
    /// first step it then is.
    pub rate: f64,
    /// `concurrency`: connections the load runs on, 1 to [`MAX_CONCURRENCY`]. Default:
    /// [`DEFAULT_CONCURRENCY`].
    pub concurrency: u32,
    /// `network_namespace_of_target`: send the load from the target's network namespace (its
    /// pod's address), for a NetworkPolicy or an allow-list that expects it. Default: false (the
    /// daemon's namespace).
    pub network_namespace_of_target: bool,
}

/// `fault.engine` of a `database_load` experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `postgres`: PostgreSQL.
    Postgres,
    /// `mysql`: MySQL or MariaDB.
    Mysql,
    /// `redis`: Redis (statements are commands, e.g. `GET k`).
    Redis,
}

impl Engine {
    /// Every engine.
    pub const ALL: &'static [Self] = &[Self::Postgres, Self::Mysql, Self::Redis];

    /// The name as written in YAML and in the proto, e.g. `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
        }
    }
}

/// What the queries of a `database_load` experiment are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// `profile`: a built-in workload.
    Profile(Profile),
    /// `statements`: 1 to [`MAX_STATEMENTS`] statements (Redis: commands), each picked with
    /// the probability of its weight.
    Statements(Vec<Statement>),
}

/// `fault.profile` of a `database_load` experiment: a built-in workload. Those that write use a
/// scratch table (Redis: scratch keys) the experiment creates and drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `point_reads`: single-row reads by key.
    PointReads,
    /// `range_scans`: reads of ranges of rows (Redis: of a sorted set).
    RangeScans,
    /// `writes`: inserts and updates into the scratch table.
    Writes,
    /// `row_locks`: long transactions holding row locks (postgres and mysql only).
    RowLocks,
    /// `connection_storm`: a new connection for every query.
    ConnectionStorm,
}

impl Profile {
    /// Every profile.
    pub const ALL: &'static [Self] = &[
        Self::PointReads,
        Self::RangeScans,
        Self::Writes,
        Self::RowLocks,
        Self::ConnectionStorm,
    ];

    /// The name as written in YAML and in the proto, e.g. `point_reads`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PointReads => "point_reads",
            Self::RangeScans => "range_scans",
            Self::Writes => "writes",
            Self::RowLocks => "row_locks",
            Self::ConnectionStorm => "connection_storm",
        }
    }
}

/// One entry of `fault.statements`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `sql`: the statement as the server gets it (Redis: the command line), not empty, at most
    /// [`MAX_STATEMENT_BYTES`] bytes.
    pub sql: String,
    /// `weight`: how often it is picked relative to the others, at least 1. Default: 1.
    pub weight: u32,
}

/// A database_load's fault as written (`None`: the key is absent), before its checks.
pub(super) struct DatabaseLoadParts {
    pub engine: Option<String>,
    pub address: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub profile: Option<String>,
    /// `(sql, weight)`; `None` weight: 1.
    pub statements: Option<Vec<(String, Option<u32>)>>,
    /// `None` with a ramp: `ramp_start`.
    pub rate: Option<String>,
    pub concurrency: Option<u32>,
    pub network_namespace_of_target: Option<bool>,
}

/// Builds the fault from its parts; `ramp_start` is the rate of an experiment with a ramp
/// (its first step). Required keys, keywords and numbers are checked here, ranges by
/// [`DatabaseLoad::validate`]. Shared by the document and the gRPC message.
pub(super) fn build_database_load(
    parts: DatabaseLoadParts,
    ramp_start: Option<f64>,
) -> Result<DatabaseLoad, ModelError> {
    let required = |key: &str, what: &str| ModelError::Parse {
        path: format!("fault.{key}"),
        message: format!("required field is missing ({what})"),
    };
    let engine = match parts.engine {
        Some(text) => keyword("fault.engine", &text, Engine::ALL, Engine::as_str)?,
        None => return Err(required("engine", "postgres, mysql or redis")),
    };
    let address = parts
        .address
        .ok_or_else(|| required("address", "the server's HOST:PORT, e.g. 10.0.3.7:5432"))?;
    let password = match (parts.password_file, parts.password_env) {
        (Some(_), Some(name)) => {
            return Err(invalid(
                "fault.password_env",
                format!("{name:?}"),
                "nothing: fault.password_file is set too, and the password comes from at most \
                 one of them",
            ));
        }
        (Some(file), None) => Some(SecretSource::File(PathBuf::from(file))),
        (None, Some(name)) => Some(SecretSource::Env(name)),
        (None, None) => None,
    };
    let workload = match (parts.profile, parts.statements) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "fault.statements",
                "statements and a profile",
                "either fault.profile or fault.statements, not both",
            ));
        }
        (Some(text), None) => Workload::Profile(keyword(
            "fault.profile",
            &text,
            Profile::ALL,
            Profile::as_str,
        )?),
        (None, Some(statements)) => Workload::Statements(
            statements
                .into_iter()
                .map(|(sql, weight)| Statement {
                    sql,
                    weight: weight.unwrap_or(1),
                })
                .collect(),
        ),
        (None, None) => {
            return Err(ModelError::Parse {
                path: "fault.profile".to_owned(),
                message: "required field is missing: database_load needs a workload, \
                          fault.profile (point_reads, range_scans, writes, row_locks or \
                          connection_storm) or fault.statements"
                    .to_owned(),
            });
        }
    };
    let rate = match (parts.rate, ramp_start) {
        (Some(text), _) => match text.trim().parse::<f64>() {
            Ok(rate) => rate,
            Err(_) => {
                return Err(invalid(
                    "fault.rate",
                    format!("{text:?}"),
                    QUERY_RATE_ALLOWED,
                ));
            }
        },
        // A bad first step is the ramp's error (ramp.steps[0]), not the rate's.
        (None, Some(first)) if first > 0.0 && first <= MAX_QUERIES_PER_SECOND => first,
        (None, Some(_)) => 1.0,
        (None, None) => {
            return Err(required(
                "rate",
                "the queries per second to hold, e.g. 200, or a ramp of rates",
            ));
        }
    };
    Ok(DatabaseLoad {
        engine,
        address,
        database: parts.database,
        user: parts.user,
        password,
        workload,
        rate,
        concurrency: parts.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
        network_namespace_of_target: parts.network_namespace_of_target.unwrap_or(false),
    })
}

/// The error for a `password` key: a password is never written in an experiment.
pub(super) fn inline_password_error() -> ModelError {
    ModelError::Parse {
        path: "fault.password".to_owned(),
        message: "a password is never written in an experiment: use fault.password_file (a \
                  file on the node holding it) or fault.password_env (an environment variable \
                  of the daemon holding it)"
            .to_owned(),
    }
}

impl DatabaseLoad {
    pub(super) fn validate(&self) -> Result<(), ModelError> {
        check_address(&self.address)?;
        if let Some(database) = &self.database {
            if self.engine == Engine::Redis {
                if database.parse::<u16>().is_err() {
                    return Err(invalid(
                        "fault.database",
                        format!("{database:?}"),
                        "a database index, 0 to 65535, for redis",
                    ));
                }
            } else {
                check_name("fault.database", database, "a database name")?;
            }
        }
        match &self.user {
            Some(user) => check_name("fault.user", user, "a user name")?,
            None if self.engine != Engine::Redis => {
                return Err(ModelError::Parse {
                    path: "fault.user".to_owned(),
                    message: format!(
                        "required field is missing: {} needs the user to connect as",
                        self.engine.as_str()
                    ),
                });
            }
            None => {}
        }
        match &self.password {
            Some(SecretSource::File(file)) if !file.is_absolute() => {
                return Err(invalid(
                    "fault.password_file",
                    format!("{:?}", file.display().to_string()),
                    "an absolute path of a file on the node holding the password",
                ));
            }
            Some(SecretSource::Env(name)) => check_env_name("fault.password_env", name)?,
            _ => {}
        }
        match &self.workload {
            Workload::Profile(Profile::RowLocks) if self.engine == Engine::Redis => {
                return Err(invalid(
                    "fault.profile",
                    "row_locks",
                    "point_reads, range_scans, writes or connection_storm for redis (Redis has \
                     no row locks)",
                ));
            }
            Workload::Profile(_) => {}
            Workload::Statements(statements) => check_statements(statements)?,
        }
        check_rate("fault.rate", self.rate)?;
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(invalid(
                "fault.concurrency",
                self.concurrency,
                format!(
                    "1 to {MAX_CONCURRENCY} connections (the daemon's \
                     experiments.database_load.max_connections may allow less)"
                ),
            ));
        }
        Ok(())
    }

    /// The proto's `password_file` and `password_env` ("" = not given).
    pub(super) fn password_parts(&self) -> (String, String) {
        match &self.password {
            Some(SecretSource::File(file)) => (file.display().to_string(), String::new()),
            Some(SecretSource::Env(name)) => (String::new(), name.clone()),
            None => (String::new(), String::new()),
        }
    }
}

/// Checks a rate in queries per second (`fault.rate`, a ramp step).
pub(super) fn check_rate(path: &str, rate: f64) -> Result<(), ModelError> {
    if rate > 0.0 && rate <= MAX_QUERIES_PER_SECOND {
        Ok(())
    } else {
        Err(invalid(path, rate, QUERY_RATE_ALLOWED))
    }
}

fn check_statements(statements: &[Statement]) -> Result<(), ModelError> {
    if statements.is_empty() || statements.len() > MAX_STATEMENTS {
        return Err(invalid(
            "fault.statements",
            format!("{} statements", statements.len()),
            format!("1 to {MAX_STATEMENTS} statements"),
        ));
    }
    for (i, statement) in statements.iter().enumerate() {
        let sql = &statement.sql;
        if sql.trim().is_empty() || sql.len() > MAX_STATEMENT_BYTES || sql.contains('\0') {
            return Err(invalid(
                format!("fault.statements[{i}].sql"),
                format!("{sql:?}"),
                format!("a statement of 1 to {MAX_STATEMENT_BYTES} bytes, without NUL"),
            ));
        }
        if statement.weight == 0 {
            return Err(invalid(
                format!("fault.statements[{i}].weight"),
                0,
                "at least 1 (how often it is picked relative to the others; default 1)",
            ));
        }
    }
    Ok(())
}

/// Checks a database or user name: 1 to 64 bytes, no control characters.
fn check_name(path: &str, name: &str, what: &str) -> Result<(), ModelError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        Err(invalid(
            path,
            format!("{name:?}"),
            format!("{what} of 1 to {MAX_NAME_BYTES} bytes without control characters"),
        ))
    } else {
        Ok(())
    }
}

/// Checks `HOST:PORT`: a host name, an IPv4 address or a bracketed IPv6 address, and a port
/// 1 to 65535.
fn check_address(address: &str) -> Result<(), ModelError> {
    let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => {
                (1..=253).contains(&host.len())
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                    && !host.starts_with(['.', '-'])
            }
        };
        port_ok && host_ok
    });
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "fault.address",
            format!("{address:?}"),
            "HOST:PORT of the server: a host name, an IPv4 address or [IPv6], and a port 1 to \
             65535, e.g. orders-db.shop.svc:5432",
        ))
    }
}

/// The `database_load` type's fault keys, for [`super::raw`]'s unknown-key errors.
pub(super) const FAULT_KEYS: &[&str] = &[
    "engine",
    "address",
    "database",
    "user",
    "password_file",
    "password_env",
    "profile",
    "statements",
    "rate",
    "concurrency",
    "network_namespace_of_target",
];
