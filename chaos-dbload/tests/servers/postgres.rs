//! A PostgreSQL 15 (Debian's) on loopback: user `chaos` with [`PASSWORD`] over TCP, `postgres`
//! trusted over the socket in its directory.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{Db, PASSWORD, TempDir, free_port, keep, sh, spawn_server, wait_until};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Pg {
    port: u16,
    /// Data directory parent, also the socket directory.
    dir: PathBuf,
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| {
        sh(Command::new("id").args([flag, "postgres"]))
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// The PostgreSQL server of this test binary, started on first use.
pub fn postgres() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| {
        let dir = TempDir::new("pg");
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(&dir.0, Some(uid), Some(gid)).unwrap();
        let data = dir.0.join("data");
        // PostgreSQL refuses to run as root: initdb and the server run as postgres.
        sh(Command::new(format!("{BIN}/initdb"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-D",
            ])
            .arg(&data)
            .uid(uid)
            .gid(gid));
        let port = free_port();
        let mut cmd = Command::new(format!("{BIN}/postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir.0)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .uid(uid)
            .gid(gid);
        let pg = Pg {
            port,
            dir: dir.0.clone(),
        };
        keep(spawn_server("postgres", &mut cmd, dir));
        wait_until(
            "postgres accepts connections",
            Duration::from_secs(30),
            || pg.psql_try("SELECT 1").is_some(),
        );
        pg.psql(&format!("CREATE ROLE chaos LOGIN PASSWORD '{PASSWORD}'"));
        std::fs::write(pg.dir.join("password"), format!("{PASSWORD}\n")).unwrap();
        pg
    })
}

impl Pg {
    /// `psql` as `postgres` on database `postgres`: the trimmed output, `None` on failure.
    pub fn psql_try(&self, sql: &str) -> Option<String> {
        let out = Command::new("psql")
            .args(["-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atqc",
                sql,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }

    /// [`Pg::psql_try`], panicking on failure.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_try(sql)
            .unwrap_or_else(|| panic!("psql {sql:?} failed"))
    }

    /// The backends connected to `database` (`pg_stat_activity`).
    pub fn backends(&self, database: &str) -> u64 {
        self.psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"
        ))
        .parse()
        .unwrap()
    }
}

impl Db for Pg {
    fn engine(&self) -> &'static str {
        "postgres"
    }
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn user(&self) -> &'static str {
        "chaos"
    }
    fn fresh_database(&self, name: &str) -> String {
        let database = format!("t_{name}");
        self.psql(&format!("CREATE DATABASE {database} OWNER chaos"));
        database
    }
    fn queries(&self, database: &str) -> u64 {
        // Backends report their counts when they end (or within a second when idle): wait
        // until the runner's are gone, then read.
        wait_until("the runner's backends end", Duration::from_secs(10), || {
            self.backends(database) == 0
        });
        self.psql(&format!(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = '{database}'"
        ))
        .parse()
        .unwrap()
    }
    fn connections(&self, database: &str) -> u64 {
        self.backends(database)
    }
    fn scratch_exists(&self, database: &str, scratch: &str) -> bool {
        let out = sh(Command::new("psql")
            .args(["-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-Atqc",
            ])
            .arg(format!(
                "SELECT to_regclass('chaos_scratch_{scratch}') IS NOT NULL"
            )));
        out.trim() == "t"
    }
    fn simple_statement(&self) -> &'static str {
        "SELECT 1"
    }
    fn slow_statement(&self) -> &'static str {
        "SELECT pg_sleep(0.05)"
    }
    fn invalid_statement(&self) -> (&'static str, &'static str) {
        ("SELEC 1", "syntax error at or near \"SELEC\"")
    }
    fn wrong_password_message(&self) -> &'static str {
        "password authentication failed for user \"chaos\""
    }
    fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }
}
