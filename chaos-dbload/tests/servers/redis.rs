//! A Redis (Debian's) on loopback: the default user with [`PASSWORD`], no persistence.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{Db, PASSWORD, TempDir, free_port, keep, sh, spawn_server, wait_until};

pub struct Redis {
    port: u16,
    dir: PathBuf,
}

/// The Redis server of this test binary, started on first use.
pub fn redis() -> &'static Redis {
    static REDIS: OnceLock<Redis> = OnceLock::new();
    REDIS.get_or_init(|| {
        let dir = TempDir::new("redis");
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--requirepass",
            PASSWORD,
        ])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
        ])
        .arg(&dir.0);
        let redis = Redis {
            port,
            dir: dir.0.clone(),
        };
        keep(spawn_server("redis-server", &mut cmd, dir));
        wait_until("redis accepts connections", Duration::from_secs(30), || {
            redis.cli_try(&["PING"]).is_some_and(|out| out == "PONG")
        });
        std::fs::write(redis.dir.join("password"), format!("{PASSWORD}\n")).unwrap();
        redis
    })
}

impl Redis {
    /// `redis-cli` connected and authenticated, without a command yet.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-a",
            PASSWORD,
            "--no-auth-warning",
        ]);
        cmd
    }

    /// `redis-cli ARGS`: the trimmed output, `None` on failure.
    pub fn cli_try(&self, args: &[&str]) -> Option<String> {
        let out = self.cli().args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }

    /// A numeric field of `INFO section`, e.g. `("stats", "total_commands_processed")`.
    pub fn info(&self, section: &str, field: &str) -> u64 {
        let out = self.cli_try(&["INFO", section]).unwrap();
        let prefix = format!("{field}:");
        out.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {field} in INFO {section}: {out}"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Db for Redis {
    fn engine(&self) -> &'static str {
        "redis"
    }
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// The default user (AUTH with the password only).
    fn user(&self) -> &'static str {
        ""
    }
    /// Database 0: the scratch keys of each test have a prefix of their own.
    fn fresh_database(&self, _name: &str) -> String {
        String::new()
    }
    /// `total_commands_processed` is server-wide; the tests run one at a time.
    fn queries(&self, _database: &str) -> u64 {
        self.info("stats", "total_commands_processed")
    }
    /// `connected_clients` is server-wide (and counts the client asking).
    fn connections(&self, _database: &str) -> u64 {
        self.info("clients", "connected_clients")
    }
    fn scratch_exists(&self, _database: &str, scratch: &str) -> bool {
        let pattern = format!("chaos:scratch:{scratch}:*");
        !sh(self.cli().args(["--scan", "--pattern", &pattern]))
            .trim()
            .is_empty()
    }
    fn simple_statement(&self) -> &'static str {
        "GET chaos_probe"
    }
    fn slow_statement(&self) -> &'static str {
        "BLPOP chaos_probe_empty 0.05"
    }
    fn invalid_statement(&self) -> (&'static str, &'static str) {
        ("FROBNICATE chaos_probe", "unknown command 'FROBNICATE'")
    }
    fn wrong_password_message(&self) -> &'static str {
        "WRONGPASS"
    }
    fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }
}
