//! Throwaway PostgreSQL 15, MariaDB and Redis servers on loopback, started once per test binary
//! (on first use) and stopped at its exit. Needs only `libc` and the installed servers, so
//! other crates' tests include it too:
//! `#[path = "../../chaos-dbload/tests/servers/mod.rs"] mod servers;`.
#![allow(dead_code)] // An including binary may use one server only.

mod mysql;
mod postgres;
mod redis;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

// Each binary uses only its engines' (`self::`: the redis crate is a chaos-dbload dependency).
#[allow(unused_imports)]
pub use self::{
    mysql::{Maria, mysql},
    postgres::{Pg, postgres},
    redis::{Redis, redis},
};

/// The password of the test user of every server.
pub const PASSWORD: &str = "chaos-test-pw";

/// A directory removed (with its contents) when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chaos-dbload-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process and its data directory: stopped (SIGTERM, then SIGKILL after 10 s) and
/// removed when dropped.
pub struct Server {
    pub name: &'static str,
    child: Child,
    /// Removed after the server stopped (fields drop after `drop`).
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop in 10 s: SIGKILL", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Servers shared by the tests of one binary; stopped at its exit (statics are never dropped).
static SERVERS: Mutex<Vec<Server>> = Mutex::new(Vec::new());

extern "C" fn stop_servers() {
    let servers = std::mem::take(&mut *SERVERS.lock().unwrap_or_else(|e| e.into_inner()));
    drop(servers);
}

/// Keeps `server` running until the test binary exits.
pub fn keep(server: Server) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: registers a plain extern "C" function without arguments; it only takes the
        // servers out of a static Mutex and drops them.
        let rc = unsafe { libc::atexit(stop_servers) };
        assert_eq!(rc, 0, "atexit");
    });
    SERVERS.lock().unwrap().push(server);
}

/// Starts `cmd` as the server `name`, its stderr in `server.log` of `dir`.
pub fn spawn_server(name: &'static str, cmd: &mut Command, dir: TempDir) -> Server {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.0.join("server.log")).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    Server {
        name,
        child,
        _dir: dir,
    }
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command, panics with its output unless it succeeds; returns stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Waits until `ready` holds (polling every 100 ms), panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let began = Instant::now();
    while !ready() {
        assert!(began.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One engine's test server, seen through its own counters.
pub trait Db: Sync {
    fn engine(&self) -> &'static str;
    fn address(&self) -> String;
    fn user(&self) -> &'static str;
    /// A database for one test (redis: an index).
    fn fresh_database(&self, name: &str) -> String;
    /// The server's own count of queries for `database`: `pg_stat_database.xact_commit`,
    /// `Questions`, `total_commands_processed` (read after the runner's connections are gone).
    fn queries(&self, database: &str) -> u64;
    /// Open client connections the server counts for `database`.
    fn connections(&self, database: &str) -> u64;
    fn scratch_exists(&self, database: &str, scratch: &str) -> bool;
    /// A harmless statement, sent as written.
    fn simple_statement(&self) -> &'static str;
    /// A statement that takes the server at least 50 ms (redis: 100 ms, its timer granularity).
    fn slow_statement(&self) -> &'static str;
    /// A statement the server refuses, and a piece of its own message about it.
    fn invalid_statement(&self) -> (&'static str, &'static str);
    /// A piece of the server's message for a wrong password.
    fn wrong_password_message(&self) -> &'static str;
    /// The password file of the test user.
    fn password_file(&self) -> PathBuf;
}
