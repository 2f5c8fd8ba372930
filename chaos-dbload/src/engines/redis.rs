//! Redis through the redis crate (tokio, no TLS). One command per query (one
//! `total_commands_processed` in `INFO stats`); connecting sends only AUTH (when a password is
//! given) and SELECT (when the database index is not 0), never CLIENT SETINFO. AUTH and SELECT
//! are sent by this module rather than by the crate, whose own AUTH hides the server's message
//! (`WRONGPASS ...`) behind a generic one.
//!
//! The profiles use keys under `chaos:scratch:<scratch>:`: `k:<id>` strings (point reads,
//! writes), the list `list` (range scans: LRANGE), and `lock:<id>` (row locks, approximated as
//! `SET lock:<id> 1 NX PX <hold>`: the lock is held for the hold time by the key's expiry, without
//! keeping the connection busy).

use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value,
};

use super::DbError;
use crate::workload::{Query, RANGE_ROWS, SCRATCH_ROWS, Scratch};

/// Keys per MSET/RPUSH when filling, and per SCAN/DEL when cleaning up.
const CHUNK: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub user: Option<String>,
    pub password: Option<String>,
}

pub struct Conn {
    conn: redis::aio::MultiplexedConnection,
    address: String,
}

impl Target {
    pub async fn connect(&self) -> Result<Conn, DbError> {
        let address = format!("{}:{}", self.host, self.port);
        let settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        let connecting = async {
            let info = ConnectionAddr::Tcp(self.host.clone(), self.port)
                .into_connection_info()?
                .set_redis_settings(settings);
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(super::CONNECT_TIMEOUT))
                .set_response_timeout(None);
            let mut conn = redis::Client::open(info)?
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            if let Some(password) = &self.password {
                let mut auth = redis::cmd("AUTH");
                if let Some(user) = &self.user {
                    auth.arg(user);
                }
                auth.arg(password).query_async::<Value>(&mut conn).await?;
            }
            if self.db != 0 {
                redis::cmd("SELECT")
                    .arg(self.db)
                    .query_async::<Value>(&mut conn)
                    .await?;
            }
            Ok::<_, redis::RedisError>(conn)
        };
        let conn = connecting.await.map_err(|e| {
            let e = error(e);
            DbError::new(
                e.kind,
                format!("connecting to redis at {address}: {}", e.message),
            )
        })?;
        Ok(Conn { conn, address })
    }
}

impl Conn {
    /// Checks that the server knows the command (COMMAND INFO) and that the argument count fits
    /// its arity; nothing is executed.
    pub async fn check_command(&mut self, line: &str) -> Result<(), DbError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let name = words.first().copied().unwrap_or_default();
        let info: Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(name)
            .query_async(&mut self.conn)
            .await
            .map_err(error)?;
        let arity = match &info {
            Value::Array(items) => match items.first() {
                Some(Value::Array(fields)) => match fields.get(1) {
                    Some(Value::Int(arity)) => Some(*arity),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        let Some(arity) = arity else {
            return Err(DbError::new(
                "redis:unknown_command",
                format!(
                    "ERR unknown command '{name}': redis at {} does not know it (COMMAND INFO {name} returned nil)",
                    self.address
                ),
            ));
        };
        let given = i64::try_from(words.len()).unwrap_or(i64::MAX);
        let fits = if arity >= 0 {
            given == arity
        } else {
            given >= -arity
        };
        if !fits {
            return Err(DbError::new(
                "redis:arity",
                format!(
                    "ERR wrong number of arguments for '{}' command (COMMAND INFO arity {arity}, given {given})",
                    name.to_lowercase()
                ),
            ));
        }
        Ok(())
    }

    pub async fn setup(&mut self, scratch: &Scratch) -> Result<(), DbError> {
        self.cleanup(scratch).await?;
        let prefix = scratch.key_prefix();
        let mut from = 1;
        while from <= SCRATCH_ROWS {
            let to = (from + CHUNK - 1).min(SCRATCH_ROWS);
            let mut mset = redis::cmd("MSET");
            let mut rpush = redis::cmd("RPUSH");
            rpush.arg(format!("{prefix}list"));
            for i in from..=to {
                mset.arg(format!("{prefix}k:{i}")).arg(i);
                rpush.arg(i);
            }
            redis::pipe()
                .add_command(mset)
                .add_command(rpush)
                .query_async::<Value>(&mut self.conn)
                .await
                .map_err(error)?;
            from = to + 1;
        }
        Ok(())
    }

    /// Deletes every key under the prefix (SCAN MATCH, then DEL).
    pub async fn cleanup(&mut self, scratch: &Scratch) -> Result<(), DbError> {
        let pattern = format!("{}*", scratch.key_prefix());
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(CHUNK)
                .query_async(&mut self.conn)
                .await
                .map_err(error)?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<Value>(&mut self.conn)
                    .await
                    .map_err(error)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    pub async fn execute(&mut self, scratch: &Scratch, query: &Query<'_>) -> Result<(), DbError> {
        let prefix = scratch.key_prefix();
        let mut cmd;
        match query {
            Query::Statement(line) => {
                let mut words = line.split_whitespace();
                cmd = redis::cmd(words.next().unwrap_or_default());
                for word in words {
                    cmd.arg(word);
                }
            }
            Query::PointRead { id } => {
                cmd = redis::cmd("GET");
                cmd.arg(format!("{prefix}k:{id}"));
            }
            Query::RangeScan { from } => {
                cmd = redis::cmd("LRANGE");
                cmd.arg(format!("{prefix}list"))
                    .arg(from - 1)
                    .arg(from + RANGE_ROWS - 2);
            }
            Query::Write { id } => {
                cmd = redis::cmd("SET");
                cmd.arg(format!("{prefix}k:{id}")).arg("w");
            }
            Query::RowLock { id, hold } => {
                cmd = redis::cmd("SET");
                let ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1);
                cmd.arg(format!("{prefix}lock:{id}"))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms);
            }
            Query::Ping => cmd = redis::cmd("PING"),
        }
        cmd.query_async::<Value>(&mut self.conn)
            .await
            .map(drop)
            .map_err(error)
    }
}

/// The server's own error (`CODE message`) or the client's; kinds `redis:<CODE>`, `timeout`,
/// `connection`.
fn error(e: redis::RedisError) -> DbError {
    let kind = if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        "connection".to_owned()
    } else if let Some(code) = e.code() {
        // The server's error line as it sent it: `CODE detail`.
        let message = format!("{code} {}", e.detail().unwrap_or_default());
        return DbError::new(format!("redis:{code}"), message.trim_end());
    } else {
        format!("redis:{}", e.category().replace(' ', "_"))
    };
    DbError::new(kind, e.to_string())
}
