//! A MariaDB (Debian's) on loopback: user `chaos`@`127.0.0.1` with [`PASSWORD`] and all
//! privileges, root over the socket in its directory.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{Db, PASSWORD, TempDir, free_port, keep, sh, spawn_server, wait_until};

pub struct Maria {
    port: u16,
    dir: PathBuf,
}

/// The MariaDB server of this test binary, started on first use.
pub fn mysql() -> &'static Maria {
    static MARIA: OnceLock<Maria> = OnceLock::new();
    MARIA.get_or_init(|| {
        let dir = TempDir::new("mariadb");
        let data = dir.0.join("data");
        sh(Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display())));
        let port = free_port();
        let mut cmd = Command::new("mariadbd");
        cmd.args([
            "--no-defaults",
            "--user=root",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .arg(format!("--socket={}", dir.0.join("s.sock").display()))
        .arg(format!("--pid-file={}", dir.0.join("m.pid").display()))
        .args([
            "--innodb-buffer-pool-size=64M",
            "--max-connections=300",
            "--skip-log-bin",
        ]);
        let maria = Maria {
            port,
            dir: dir.0.clone(),
        };
        keep(spawn_server("mariadbd", &mut cmd, dir));
        wait_until(
            "mariadb accepts connections",
            Duration::from_secs(30),
            || maria.sql_try("SELECT 1").is_some(),
        );
        maria.sql(&format!(
            "CREATE USER 'chaos'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; \
             GRANT ALL ON *.* TO 'chaos'@'127.0.0.1'"
        ));
        std::fs::write(maria.dir.join("password"), format!("{PASSWORD}\n")).unwrap();
        maria
    })
}

impl Maria {
    /// The mariadb client as root over the socket (unix_socket authentication): the trimmed
    /// output, `None` on failure.
    pub fn sql_try(&self, sql: &str) -> Option<String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "-N", "-B"])
            .arg(format!("--socket={}", self.dir.join("s.sock").display()))
            .args(["-e", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }

    /// [`Maria::sql_try`], panicking on failure.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_try(sql)
            .unwrap_or_else(|| panic!("mariadb {sql:?} failed"))
    }

    /// A `SHOW GLOBAL STATUS` counter, e.g. `Questions`.
    pub fn status(&self, name: &str) -> u64 {
        let line = self.sql(&format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Db for Maria {
    fn engine(&self) -> &'static str {
        "mysql"
    }
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn user(&self) -> &'static str {
        "chaos"
    }
    fn fresh_database(&self, name: &str) -> String {
        let database = format!("t_{name}");
        self.sql(&format!("CREATE DATABASE {database}"));
        database
    }
    /// `Questions` is server-wide; the tests run one at a time.
    fn queries(&self, _database: &str) -> u64 {
        self.status("Questions")
    }
    /// `Threads_connected` is server-wide (and counts the client asking).
    fn connections(&self, _database: &str) -> u64 {
        self.status("Threads_connected")
    }
    fn scratch_exists(&self, database: &str, scratch: &str) -> bool {
        self.sql(&format!(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = '{database}' AND table_name = 'chaos_scratch_{scratch}'"
        )) == "1"
    }
    fn simple_statement(&self) -> &'static str {
        "SELECT 1"
    }
    fn slow_statement(&self) -> &'static str {
        "SELECT SLEEP(0.05)"
    }
    fn invalid_statement(&self) -> (&'static str, &'static str) {
        ("SELEC 1", "You have an error in your SQL syntax")
    }
    fn wrong_password_message(&self) -> &'static str {
        "Access denied for user 'chaos'@'127.0.0.1'"
    }
    fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }
}
