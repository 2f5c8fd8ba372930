//! The database engines behind one interface: connect and authenticate, check (prepare) the
//! statements, create and drop the scratch data, and send one query. Each engine module owns its
//! client library and the translation of the workload's queries into its dialect.

pub mod mysql;
pub mod postgres;
pub mod redis;

use std::time::Duration;

use crate::spec::{Engine, Spec, SpecError};
use crate::workload::{Query, Scratch};

/// How long connecting and authenticating may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one query may take before it counts as a `timeout` error.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// An error of the database or of the way to it, with the database's own message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    /// The error's kind in the counts: `timeout`, `connection`, `sqlstate:<code>`,
    /// `mysql:<code>`, `redis:<kind>`, `client`.
    pub kind: String,
    pub message: String,
}

impl DbError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> DbError {
        DbError {
            kind: kind.into(),
            message: message.into(),
        }
    }

    pub fn timeout(what: &str) -> DbError {
        DbError::new("timeout", format!("{what} timed out"))
    }

    /// Whether the connection is unusable after this error (it is then reopened).
    pub fn breaks_connection(&self) -> bool {
        self.kind == "connection" || self.kind == "timeout"
    }
}

/// Where and how to connect, for one engine.
#[derive(Debug, Clone)]
pub enum Target {
    Postgres(postgres::Target),
    Mysql(mysql::Target),
    Redis(redis::Target),
}

/// One open, authenticated connection.
pub enum Conn {
    Postgres(postgres::Conn),
    Mysql(mysql::Conn),
    Redis(redis::Conn),
}

impl Target {
    pub fn from_spec(spec: &Spec) -> Result<Target, SpecError> {
        let password = spec.password()?;
        let (host, port) = spec.host_port();
        let user = (!spec.user.is_empty()).then(|| spec.user.clone());
        Ok(match spec.engine {
            Engine::Postgres => Target::Postgres(postgres::Target {
                host,
                port,
                database: spec.database.clone(),
                user,
                password,
            }),
            Engine::Mysql => Target::Mysql(mysql::Target {
                host,
                port,
                database: (!spec.database.is_empty()).then(|| spec.database.clone()),
                user,
                password,
            }),
            Engine::Redis => Target::Redis(redis::Target {
                host,
                port,
                db: spec.database.parse().unwrap_or(0),
                user,
                password,
            }),
        })
    }

    /// Opens and authenticates one connection (bounded by [`CONNECT_TIMEOUT`]).
    pub async fn connect(&self) -> Result<Conn, DbError> {
        let connecting = async {
            Ok(match self {
                Target::Postgres(t) => Conn::Postgres(t.connect().await?),
                Target::Mysql(t) => Conn::Mysql(t.connect().await?),
                Target::Redis(t) => Conn::Redis(t.connect().await?),
            })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(result) => result,
            Err(_) => Err(DbError::timeout(&format!(
                "connecting to {}",
                self.address()
            ))),
        }
    }

    pub fn address(&self) -> String {
        let (engine, host, port) = match self {
            Target::Postgres(t) => ("postgres", &t.host, t.port),
            Target::Mysql(t) => ("mysql", &t.host, t.port),
            Target::Redis(t) => ("redis", &t.host, t.port),
        };
        format!("{engine} at {host}:{port}")
    }
}

impl Conn {
    /// Prepares every statement on the server (redis: checks the command exists and its arity).
    pub async fn check<'a>(
        &mut self,
        statements: impl Iterator<Item = &'a str>,
    ) -> Result<(), DbError> {
        for sql in statements {
            let checked = match self {
                Conn::Postgres(c) => c.prepare(sql).await,
                Conn::Mysql(c) => c.prepare(sql).await,
                Conn::Redis(c) => c.check_command(sql).await,
            };
            checked
                .map_err(|e| DbError::new(e.kind, format!("statement {sql:?}: {}", e.message)))?;
        }
        Ok(())
    }

    /// Creates and fills the scratch table/keys (dropping leftovers of an earlier run first).
    pub async fn setup(&mut self, scratch: &Scratch) -> Result<(), DbError> {
        match self {
            Conn::Postgres(c) => c.setup(scratch).await,
            Conn::Mysql(c) => c.setup(scratch).await,
            Conn::Redis(c) => c.setup(scratch).await,
        }
    }

    /// Drops the scratch table/keys; succeeds when there is nothing to drop.
    pub async fn cleanup(&mut self, scratch: &Scratch) -> Result<(), DbError> {
        match self {
            Conn::Postgres(c) => c.cleanup(scratch).await,
            Conn::Mysql(c) => c.cleanup(scratch).await,
            Conn::Redis(c) => c.cleanup(scratch).await,
        }
    }

    /// Sends one query and waits for its result (bounded by [`QUERY_TIMEOUT`]).
    pub async fn execute(&mut self, scratch: &Scratch, query: &Query<'_>) -> Result<(), DbError> {
        let running = async {
            match self {
                Conn::Postgres(c) => c.execute(scratch, query).await,
                Conn::Mysql(c) => c.execute(scratch, query).await,
                Conn::Redis(c) => c.execute(scratch, query).await,
            }
        };
        match tokio::time::timeout(QUERY_TIMEOUT, running).await {
            Ok(result) => result,
            Err(_) => Err(DbError::timeout("query")),
        }
    }

    /// Closes the connection politely (the server sees it go at once).
    pub async fn close(self) {
        match self {
            Conn::Postgres(c) => drop(c),
            Conn::Mysql(c) => c.close().await,
            Conn::Redis(c) => drop(c),
        }
    }
}
