//! MySQL and MariaDB through mysql_async (no TLS). Queries go over the text protocol, one
//! statement each (one `Questions` in `SHOW GLOBAL STATUS`); connecting sends no query.

use mysql_async::prelude::Queryable;

use super::DbError;
use crate::workload::{Query, RANGE_ROWS, SCRATCH_ROWS, Scratch};

/// Rows per INSERT when filling the scratch table.
const FILL_CHUNK: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

pub struct Conn {
    conn: mysql_async::Conn,
}

impl Target {
    pub async fn connect(&self) -> Result<Conn, DbError> {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(self.user.clone())
            .pass(self.password.clone())
            .db_name(self.database.clone())
            // Given, so that connecting does not ask the server for them with a query.
            .prefer_socket(false)
            .max_allowed_packet(Some(16 * 1024 * 1024))
            .wait_timeout(Some(28_800))
            .stmt_cache_size(0);
        let conn = mysql_async::Conn::new(opts).await.map_err(|e| {
            let e = error(e);
            DbError::new(
                e.kind,
                format!(
                    "connecting to mysql at {}:{}: {}",
                    self.host, self.port, e.message
                ),
            )
        })?;
        Ok(Conn { conn })
    }
}

impl Conn {
    pub async fn prepare(&mut self, sql: &str) -> Result<(), DbError> {
        let statement = self.conn.prep(sql).await.map_err(error)?;
        self.conn.close(statement).await.map_err(error)
    }

    pub async fn setup(&mut self, scratch: &Scratch) -> Result<(), DbError> {
        let t = scratch.table();
        self.run(&format!("DROP TABLE IF EXISTS {t}")).await?;
        self.run(&format!(
            "CREATE TABLE {t} (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, pad VARCHAR(64) NOT NULL)"
        ))
        .await?;
        let mut from = 1;
        while from <= SCRATCH_ROWS {
            let to = (from + FILL_CHUNK - 1).min(SCRATCH_ROWS);
            let rows: Vec<String> = (from..=to).map(|i| format!("({i},{i},MD5({i}))")).collect();
            self.run(&format!(
                "INSERT INTO {t} (id, v, pad) VALUES {}",
                rows.join(",")
            ))
            .await?;
            from = to + 1;
        }
        Ok(())
    }

    pub async fn cleanup(&mut self, scratch: &Scratch) -> Result<(), DbError> {
        self.run(&format!("DROP TABLE IF EXISTS {}", scratch.table()))
            .await
    }

    pub async fn execute(&mut self, scratch: &Scratch, query: &Query<'_>) -> Result<(), DbError> {
        let t = scratch.table();
        match query {
            Query::Statement(sql) => self.run(sql).await,
            Query::PointRead { id } => {
                self.run(&format!("SELECT v FROM {t} WHERE id = {id}"))
                    .await
            }
            Query::RangeScan { from } => {
                let to = from + RANGE_ROWS - 1;
                self.run(&format!(
                    "SELECT id, v FROM {t} WHERE id BETWEEN {from} AND {to}"
                ))
                .await
            }
            Query::Write { id } => {
                self.run(&format!(
                    "INSERT INTO {t} (id, v, pad) VALUES ({id}, 0, 'w') \
                     ON DUPLICATE KEY UPDATE v = v + 1"
                ))
                .await
            }
            Query::RowLock { id, hold } => {
                self.run("BEGIN").await?;
                let locked = self
                    .run(&format!("SELECT v FROM {t} WHERE id = {id} FOR UPDATE"))
                    .await;
                if locked.is_ok() {
                    tokio::time::sleep(*hold).await;
                }
                let ended = self
                    .run(if locked.is_ok() { "COMMIT" } else { "ROLLBACK" })
                    .await;
                locked.and(ended)
            }
            Query::Ping => self.run("SELECT 1").await,
        }
    }

    pub async fn close(self) {
        // The server is told the connection ends (COM_QUIT); an error or a server too stalled
        // to answer changes nothing: the socket closes either way.
        let _ = tokio::time::timeout(super::CONNECT_TIMEOUT, self.conn.disconnect()).await;
    }

    async fn run(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.query_drop(sql).await.map_err(error)
    }
}

/// The server's own error (`ERROR code (state): message`, as the mysql client prints it), or
/// the client's.
fn error(e: mysql_async::Error) -> DbError {
    match e {
        mysql_async::Error::Server(s) => DbError::new(
            format!("mysql:{}", s.code),
            format!("ERROR {} ({}): {}", s.code, s.state, s.message),
        ),
        other => DbError::new("connection", other.to_string()),
    }
}
