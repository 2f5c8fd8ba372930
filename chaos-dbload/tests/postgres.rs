//! chaos-dbload against a real PostgreSQL 15 (Debian's), started on loopback for this binary.

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Db, PASSWORD, TempDir};

const BIN: &str = "/usr/lib/postgresql/15/bin";

struct Pg {
    port: u16,
    /// Data directory parent, also the socket directory.
    dir: PathBuf,
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| {
        common::sh(Command::new("id").args([flag, "postgres"]))
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

fn server() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| {
        let dir = TempDir::new("pg");
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(&dir.0, Some(uid), Some(gid)).unwrap();
        let data = dir.0.join("data");
        // PostgreSQL refuses to run as root: initdb and the server run as postgres.
        common::sh(
            Command::new(format!("{BIN}/initdb"))
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-D",
                ])
                .arg(&data)
                .uid(uid)
                .gid(gid),
        );
        let port = common::free_port();
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
        common::keep(common::spawn_server("postgres", &mut cmd, dir));
        common::wait_until(
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
    fn psql_try(&self, sql: &str) -> Option<String> {
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

    fn psql(&self, sql: &str) -> String {
        self.psql_try(sql)
            .unwrap_or_else(|| panic!("psql {sql:?} failed"))
    }

    fn backends(&self, database: &str) -> u64 {
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
        common::wait_until("the runner's backends end", Duration::from_secs(10), || {
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
        let out = common::sh(
            Command::new("psql")
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
                )),
        );
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

#[test]
fn postgres_constant_rate_held_and_percentiles_reported() {
    common::constant_rate(server());
}

#[test]
fn postgres_cap_sends_exactly_n_queries() {
    common::cap_is_exact(server());
}

#[test]
fn postgres_bad_input_refused_before_load() {
    common::bad_input_refused(server());
}

#[test]
fn postgres_sigterm_stops_and_drops_the_scratch_table() {
    common::sigterm_cleans_up(server());
}

#[test]
fn postgres_sigkill_closes_connections_and_cleanup_drops_the_table() {
    common::sigkill_then_cleanup(server());
}

#[test]
fn postgres_every_profile_runs_without_errors() {
    common::every_profile_runs(server());
}

#[test]
fn postgres_stdin_changes_the_rate_and_stops() {
    common::stdin_changes_the_rate_and_stops(server());
}

#[test]
fn postgres_latency_counts_from_the_intended_start() {
    common::latency_counts_from_the_intended_start(server());
}
