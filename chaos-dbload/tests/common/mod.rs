//! Shared by the engine test binaries: the runner as a child process and the scenarios every
//! engine must pass, against a server of [`servers`] (each binary calls the scenarios with its
//! engine's).

#[path = "../servers/mod.rs"]
pub mod servers;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use servers::{Db, TempDir, free_port, wait_until};

/// Tests of one binary run one at a time: MariaDB's and Redis's counters are server-wide.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A spec file for `db` in `dir`.
pub fn spec(db: &dyn Db, dir: &TempDir, database: &str, fields: Value) -> PathBuf {
    let mut spec = json!({
        "engine": db.engine(),
        "address": db.address(),
        "database": database,
        "user": db.user(),
        "password_file": db.password_file(),
        "rate": 200,
        "concurrency": 4,
        "duration_ms": 10_000,
        "scratch": "t",
        "workload": {"profile": "point_reads"},
    });
    for (k, v) in fields.as_object().unwrap() {
        if v.is_null() {
            spec.as_object_mut().unwrap().remove(k);
        } else {
            spec[k] = v.clone();
        }
    }
    static N: AtomicU32 = AtomicU32::new(0);
    let path = dir
        .0
        .join(format!("spec-{}.json", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&path, spec.to_string()).unwrap();
    path
}

fn runner() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chaos-dbload"))
}

/// `chaos-dbload <sub> --spec F`, to its end.
pub fn runner_once(sub: &str, spec: &Path) -> Output {
    runner().args([sub, "--spec"]).arg(spec).output().unwrap()
}

/// A running `chaos-dbload run` and its stdout lines.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Running {
    /// Starts `run`; stdin is closed at once (the end of stdin must not stop it).
    pub fn start(spec: &Path) -> Running {
        Running::start_with(spec, Stdio::null())
    }

    pub fn start_with(spec: &Path, stdin: Stdio) -> Running {
        let mut child = runner()
            .args(["run", "--spec"])
            .arg(spec)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line {line:?} is not JSON: {e}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line whose `event` is `event`, within `limit`.
    pub fn wait_event(&mut self, event: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line["event"] == event {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no {event} line within {limit:?} ({e}); seen {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Writes one line on the runner's stdin (started with a piped stdin).
    pub fn tell(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the exit (within `limit`) and returns its status code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                began.elapsed() < limit,
                "the runner did not end within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one measurement of the counter costs on the counter itself (the admin query).
fn probe_cost(db: &dyn Db, database: &str) -> u64 {
    let a = db.queries(database);
    let b = db.queries(database);
    b - a
}

/// The server's count of what `f` sent, less the cost of measuring.
fn counted(db: &dyn Db, database: &str, f: impl FnOnce()) -> u64 {
    let cost = probe_cost(db, database);
    let before = db.queries(database);
    f();
    let after = db.queries(database);
    after - before - cost
}

fn run_to_end(spec: &Path) -> Value {
    let mut running = Running::start(spec);
    running.wait_event("ready", Duration::from_secs(30));
    let done = running.wait_event("done", Duration::from_secs(60));
    assert_eq!(running.wait(Duration::from_secs(10)), Some(0));
    done
}

/// Issue test 1: 200 qps for 10 s held within 5% by the server's count; percentiles reported;
/// the scratch table/keys are gone after the run.
pub fn constant_rate(db: &dyn Db) {
    let _serial = serial();
    let dir = TempDir::new("rate");
    let database = db.fresh_database("rate");
    // The setup and cleanup cost, measured with a run of one query.
    let one = spec(
        db,
        &dir,
        &database,
        json!({"max_queries": 1, "scratch": "rate1"}),
    );
    let overhead = counted(db, &database, || {
        run_to_end(&one);
    }) - 1;
    let full = spec(db, &dir, &database, json!({"scratch": "rate"}));
    let mut done = Value::Null;
    let sent = counted(db, &database, || done = run_to_end(&full)) - overhead;
    let qps = sent as f64 / 10.0;
    eprintln!(
        "{}: server counted {sent} queries in 10 s = {qps:.1} qps (setup/cleanup {overhead} subtracted); runner: sent {} p50 {} us p95 {} us p99 {} us max {} us connect p95 {} us",
        db.engine(),
        done["sent"],
        done["p50_us"],
        done["p95_us"],
        done["p99_us"],
        done["max_us"],
        done["connect_p95_us"]
    );
    assert!(
        (qps - 200.0).abs() <= 10.0,
        "{qps} qps is not within 5% of 200"
    );
    assert_eq!(done["stop_reason"], "duration");
    assert_eq!(done["errors"], json!({}), "{done}");
    let p = |k: &str| {
        done[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} missing: {done}"))
    };
    assert!(
        p("p50_us") > 0 && p("p50_us") <= p("p95_us") && p("p95_us") <= p("p99_us"),
        "{done}"
    );
    assert!(p("connect_p95_us") > 0, "{done}");
    assert_eq!(done["statements"][0]["name"], "point_read");
    assert!(
        !db.scratch_exists(&database, "rate"),
        "scratch left after the run"
    );
    assert!(
        !db.scratch_exists(&database, "rate1"),
        "scratch left after the run"
    );
}

/// Issue test 4: with `max_queries` N, exactly N queries reach the server, then the runner ends.
pub fn cap_is_exact(db: &dyn Db) {
    let _serial = serial();
    let dir = TempDir::new("cap");
    let database = db.fresh_database("cap");
    let statements = json!({"statements": [{"sql": db.simple_statement(), "weight": 1}]});
    let fields = json!({"workload": statements, "concurrency": 1, "rate": 500, "duration_ms": 60_000, "max_queries": 137});
    let path = spec(db, &dir, &database, fields);
    // `run` is `check` plus the load on the checked connection: the difference is the load.
    let check = counted(db, &database, || {
        let out = runner_once("check", &path);
        assert!(out.status.success(), "{out:?}");
    });
    let mut done = Value::Null;
    let began = Instant::now();
    let run = counted(db, &database, || done = run_to_end(&path));
    eprintln!(
        "{}: cap 137: server counted {} queries for the load ({run} for run, {check} for check), runner sent {} in {:?}",
        db.engine(),
        run - check,
        done["sent"],
        began.elapsed()
    );
    assert_eq!(run - check, 137);
    assert_eq!(done["sent"], 137);
    assert_eq!(done["stop_reason"], "max_queries");
    assert!(began.elapsed() < Duration::from_secs(20));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue test 5: a wrong password, an unreachable server and an invalid statement are refused
/// by `check` with the database's own message, and `run` refuses them before any load.
pub fn bad_input_refused(db: &dyn Db) {
    let _serial = serial();
    let dir = TempDir::new("bad");
    let database = db.fresh_database("bad");
    let wrong = dir.0.join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let closed = free_port();
    let (invalid, invalid_message) = db.invalid_statement();
    let cases = [
        (
            json!({"password_file": wrong}),
            db.wrong_password_message().to_owned(),
            false,
        ),
        (
            json!({"address": format!("127.0.0.1:{closed}")}),
            format!("127.0.0.1:{closed}"),
            true,
        ),
        (
            json!({"workload": {"statements": [{"sql": db.simple_statement()}, {"sql": invalid, "weight": 2}]}}),
            invalid_message.to_owned(),
            false,
        ),
    ];
    for (fields, want, unreachable) in cases {
        let path = spec(db, &dir, &database, fields.clone());
        let out = runner_once("check", &path);
        let message = stderr(&out);
        eprintln!("{}: check {fields}: {}", db.engine(), message.trim());
        assert_eq!(out.status.code(), Some(1), "{fields}: {out:?}");
        assert!(
            message.contains(&want),
            "{fields}: {message:?} does not contain {want:?}"
        );
        if unreachable {
            assert!(message.contains("Connection refused"), "{message}");
        }
        let mut loaded = None;
        let sent = counted(db, &database, || loaded = Some(runner_once("run", &path)));
        let loaded = loaded.unwrap();
        assert_eq!(loaded.status.code(), Some(1), "run {fields}: {loaded:?}");
        assert!(stderr(&loaded).contains(&want), "run {fields}: {loaded:?}");
        assert!(
            loaded.stdout.is_empty(),
            "run printed {:?}",
            String::from_utf8_lossy(&loaded.stdout)
        );
        // The pre-flight itself is a few commands at most; no load (200 qps) started.
        assert!(sent <= 4, "run {fields} sent {sent} queries");
    }
}

/// SIGTERM mid-run: the runner stops at once, drops the scratch data and reports; the
/// connections close.
pub fn sigterm_cleans_up(db: &dyn Db) {
    let _serial = serial();
    let dir = TempDir::new("term");
    let database = db.fresh_database("term");
    let baseline = db.connections(&database);
    let path = spec(
        db,
        &dir,
        &database,
        json!({"scratch": "term", "duration_ms": 60_000}),
    );
    let mut running = Running::start(&path);
    running.wait_event("ready", Duration::from_secs(30));
    running.wait_event("progress", Duration::from_secs(5));
    assert!(db.scratch_exists(&database, "term"));
    running.signal(libc::SIGTERM);
    let done = running.wait_event("done", Duration::from_secs(5));
    assert_eq!(running.wait(Duration::from_secs(5)), Some(0));
    assert_eq!(done["stop_reason"], "SIGTERM");
    assert!(
        !db.scratch_exists(&database, "term"),
        "scratch left after SIGTERM"
    );
    wait_until(
        "connections back to baseline",
        Duration::from_secs(1),
        || db.connections(&database) == baseline,
    );
}

/// SIGKILL mid-run: the server's connection count is back to its baseline within 1 s; the
/// scratch data survives the kill and `cleanup` removes it.
pub fn sigkill_then_cleanup(db: &dyn Db) {
    let _serial = serial();
    let dir = TempDir::new("kill");
    let database = db.fresh_database("kill");
    let baseline = db.connections(&database);
    let path = spec(
        db,
        &dir,
        &database,
        json!({"scratch": "kill", "concurrency": 8, "duration_ms": 60_000}),
    );
    let mut running = Running::start(&path);
    running.wait_event("ready", Duration::from_secs(30));
    running.wait_event("progress", Duration::from_secs(5));
    let during = db.connections(&database);
    assert!(
        during >= baseline + 8,
        "{during} connections during the run, baseline {baseline}"
    );
    running.signal(libc::SIGKILL);
    let killed = Instant::now();
    assert_eq!(running.wait(Duration::from_secs(1)), None);
    let mut now = during;
    while now != baseline {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "{now} connections 1 s after SIGKILL, baseline {baseline}"
        );
        std::thread::sleep(Duration::from_millis(20));
        now = db.connections(&database);
    }
    eprintln!(
        "{}: connections {during} -> {baseline} within {:?} of SIGKILL",
        db.engine(),
        killed.elapsed()
    );
    assert!(
        db.scratch_exists(&database, "kill"),
        "a SIGKILL cannot clean up"
    );
    let out = runner_once("cleanup", &path);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !db.scratch_exists(&database, "kill"),
        "scratch left after cleanup"
    );
}

/// Every profile runs against the server without errors, and leaves nothing behind.
pub fn every_profile_runs(db: &dyn Db) {
    let _serial = serial();
    let dir = TempDir::new("profiles");
    let database = db.fresh_database("profiles");
    for profile in [
        "point_reads",
        "range_scans",
        "writes",
        "row_locks",
        "connection_storm",
    ] {
        let fields = json!({
            "workload": {"profile": profile},
            "scratch": profile,
            "max_queries": 60,
            "lock_hold_ms": 20,
        });
        let done = run_to_end(&spec(db, &dir, &database, fields));
        eprintln!(
            "{}: {profile}: sent {} ok {} p50 {} us p99 {} us, {} connections opened",
            db.engine(),
            done["sent"],
            done["ok"],
            done["p50_us"],
            done["p99_us"],
            done["connections_opened"]
        );
        assert_eq!(done["ok"], 60, "{profile}: {done}");
        assert_eq!(done["errors"], json!({}), "{profile}: {done}");
        assert!(
            !db.scratch_exists(&database, profile),
            "{profile}: scratch left"
        );
    }
}

/// Rate changes and the stop arrive on stdin while the load runs.
pub fn stdin_changes_the_rate_and_stops(db: &dyn Db) {
    let _serial = serial();
    let dir = TempDir::new("stdin");
    let database = db.fresh_database("stdin");
    let path = spec(
        db,
        &dir,
        &database,
        json!({"scratch": "stdin", "rate": 50, "duration_ms": 60_000}),
    );
    let mut running = Running::start_with(&path, Stdio::piped());
    running.wait_event("ready", Duration::from_secs(30));
    let first = running.wait_event("progress", Duration::from_secs(5));
    running.tell(r#"{"rate": 400}"#);
    let mut last = first.clone();
    for _ in 0..2 {
        last = running.wait_event("progress", Duration::from_secs(5));
    }
    let per_second = last["sent"].as_u64().unwrap()
        - running.seen[running.seen.len() - 2]["sent"]
            .as_u64()
            .unwrap();
    eprintln!(
        "{}: rate 50 -> 400: {per_second} sent in the last second",
        db.engine()
    );
    assert_eq!(last["rate"], 400.0);
    assert!(
        (360..=440).contains(&per_second),
        "{per_second} queries in a second at 400 qps"
    );
    running.tell(r#"{"stop": true}"#);
    let done = running.wait_event("done", Duration::from_secs(5));
    assert_eq!(running.wait(Duration::from_secs(5)), Some(0));
    assert_eq!(done["stop_reason"], "stop");
    assert!(!db.scratch_exists(&database, "stdin"));
}

/// Coordinated omission corrected: a server slower than the rate (one connection, 50 ms per
/// query, 40 qps asked) shows the queueing delay in the latency instead of hiding it.
pub fn latency_counts_from_the_intended_start(db: &dyn Db) {
    let _serial = serial();
    let dir = TempDir::new("omission");
    let database = db.fresh_database("omission");
    let statements = json!({"statements": [{"sql": db.slow_statement()}]});
    let fields =
        json!({"workload": statements, "concurrency": 1, "rate": 40, "duration_ms": 2_000});
    let done = run_to_end(&spec(db, &dir, &database, fields));
    let us = |k: &str| done[k].as_u64().unwrap_or_else(|| panic!("{k}: {done}"));
    eprintln!(
        "{}: 40 qps of 50 ms on one connection: sent {} in {} ms, p50 {} us, max {} us",
        db.engine(),
        done["sent"],
        done["elapsed_ms"],
        us("p50_us"),
        us("max_us")
    );
    // 80 tickets in 2 s, served at 20/s: the last one starts about 2 s after it was meant to.
    assert_eq!(done["sent"], 80, "{done}");
    assert_eq!(done["errors"], json!({}), "{done}");
    assert!(us("max_us") >= 1_500_000, "{done}");
    assert!(us("p50_us") >= 500_000, "{done}");
}
