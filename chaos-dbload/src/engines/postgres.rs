//! PostgreSQL through tokio-postgres (no TLS). Queries go over the simple query protocol, one
//! round trip and one transaction each (one `xact_commit` in `pg_stat_database`).

use std::error::Error as _;

use tokio_postgres::NoTls;

use super::DbError;
use crate::workload::{Query, RANGE_ROWS, SCRATCH_ROWS, Scratch};

#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

pub struct Conn {
    client: tokio_postgres::Client,
}

impl Target {
    pub async fn connect(&self) -> Result<Conn, DbError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .connect_timeout(super::CONNECT_TIMEOUT)
            .application_name("chaos-dbload");
        if !self.database.is_empty() {
            config.dbname(&self.database);
        }
        if let Some(user) = &self.user {
            config.user(user);
        }
        if let Some(password) = &self.password {
            config.password(password);
        }
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            let e = error(e);
            DbError::new(
                e.kind,
                format!(
                    "connecting to postgres at {}:{}: {}",
                    self.host, self.port, e.message
                ),
            )
        })?;
        tokio::spawn(async move {
            // The connection ends when the client is dropped or the server goes away; the
            // queries of the client report that error themselves.
            let _ = connection.await;
        });
        Ok(Conn { client })
    }
}

impl Conn {
    pub async fn prepare(&mut self, sql: &str) -> Result<(), DbError> {
        self.client.prepare(sql).await.map(drop).map_err(error)
    }

    pub async fn setup(&mut self, scratch: &Scratch) -> Result<(), DbError> {
        let t = scratch.table();
        self.client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {t}; \
                 CREATE TABLE {t} (id bigint PRIMARY KEY, v bigint NOT NULL, pad text NOT NULL); \
                 INSERT INTO {t} SELECT g, g, md5(g::text) FROM generate_series(1, {SCRATCH_ROWS}) g"
            ))
            .await
            .map_err(error)
    }

    pub async fn cleanup(&mut self, scratch: &Scratch) -> Result<(), DbError> {
        self.client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", scratch.table()))
            .await
            .map_err(error)
    }

    pub async fn execute(&mut self, scratch: &Scratch, query: &Query<'_>) -> Result<(), DbError> {
        let t = scratch.table();
        let sql = match query {
            Query::Statement(sql) => (*sql).to_owned(),
            Query::PointRead { id } => format!("SELECT v FROM {t} WHERE id = {id}"),
            Query::RangeScan { from } => format!(
                "SELECT id, v FROM {t} WHERE id BETWEEN {from} AND {}",
                from + RANGE_ROWS - 1
            ),
            Query::Write { id } => format!(
                "INSERT INTO {t} (id, v, pad) VALUES ({id}, 0, 'w') \
                 ON CONFLICT (id) DO UPDATE SET v = {t}.v + 1"
            ),
            Query::RowLock { id, hold } => {
                let locked = self
                    .client
                    .batch_execute(&format!(
                        "BEGIN; SELECT v FROM {t} WHERE id = {id} FOR UPDATE"
                    ))
                    .await;
                if locked.is_ok() {
                    tokio::time::sleep(*hold).await;
                }
                let end = if locked.is_ok() { "COMMIT" } else { "ROLLBACK" };
                let ended = self.client.batch_execute(end).await;
                return locked.and(ended).map_err(error);
            }
            Query::Ping => "SELECT 1".to_owned(),
        };
        self.client.batch_execute(&sql).await.map_err(error)
    }
}

/// The server's own message (severity, text, SQLSTATE), or the client's with its causes.
fn error(e: tokio_postgres::Error) -> DbError {
    if let Some(db) = e.as_db_error() {
        let message = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        return DbError::new(format!("sqlstate:{}", db.code().code()), message);
    }
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    DbError::new("connection", message)
}
