//! database_load through the daemon and chaos-ctl, against a real PostgreSQL (Debian's, started
//! on loopback for this binary): the daemon runs chaos-dbload in a cgroup of its own; a stop,
//! an emergency stop and a SIGKILL of the daemon close the load's connections at once (the
//! server's own count is back to its baseline within 1 s) and leave no scratch table, runner
//! cgroup or spec file (after the restart in the SIGKILL case); a budget of N queries sends
//! exactly N; a wrong password, an unreachable server and an invalid statement are refused
//! before any load with the database's own message, with nothing left behind.

mod support;

#[path = "../../chaos-dbload/tests/servers/mod.rs"]
mod servers;

use std::{
    path::{Path, PathBuf},
    process::Output,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use servers::Db as _;
use support::*;

/// The daemon's per-query price is 1, so a budget is a number of queries.
const CONFIG: &str = "budget:\n  max_experiment_cost: 100000\n  max_daily_cost: 1000000\n  \
    cost_per_request: 0\nexperiments:\n  database_load:\n    cost_per_query: 1\n";

/// Tests of this binary run one at a time: the server's counters are shared.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One of the test servers.
type Server = &'static dyn servers::Db;

/// `chaos-ctl --output json experiment database_load` against `db`'s `database`, targeting
/// `cgroup`, with `args` added.
fn load(daemon: &Daemon, cgroup: &Path, db: Server, database: &str, args: &[&str]) -> Output {
    let (address, password) = (db.address(), db.password_file());
    load_to(daemon, cgroup, db, database, &address, &password, args)
}

/// [`load`] to the server at `address` with the password in `password`.
fn load_to(
    daemon: &Daemon,
    cgroup: &Path,
    db: Server,
    database: &str,
    address: &str,
    password: &Path,
    args: &[&str],
) -> Output {
    let mut all = vec![
        "--output",
        "json",
        "experiment",
        "database_load",
        "--cgroup",
        cgroup.to_str().unwrap(),
        "--engine",
        db.engine(),
        "--address",
        address,
        "--password-file",
        password.to_str().unwrap(),
    ];
    if !database.is_empty() {
        all.extend(["--database", database]);
    }
    if !db.user().is_empty() {
        all.extend(["--user", db.user()]);
    }
    all.extend_from_slice(args);
    daemon.ctl(&all)
}

/// The scratch name the daemon gives experiment `id` (host::dbload::scratch_name).
fn scratch_of(id: &str) -> String {
    let name = id.replace('-', "_");
    name[name.len().saturating_sub(32)..].to_owned()
}

/// What a run leaves while it runs: its runner cgroup and its spec file.
fn runner_cgroup(mount: &Path, id: &str) -> PathBuf {
    mount.join(format!("chaos-dbload-{}", scratch_of(id)))
}

fn spec_file(dir: &Path, id: &str) -> PathBuf {
    dir.join("state/dbload")
        .join(format!("{}.json", scratch_of(id)))
}

/// How long after `since` the server's connection count for `database` was back to
/// `baseline` (polled every 10 ms, for at most 5 s).
fn back_to(db: Server, database: &str, baseline: u64, since: Instant) -> Duration {
    eventually(
        "the load's connections closed",
        Duration::from_secs(5),
        || (db.connections(database) <= baseline).then(|| since.elapsed()),
    )
}

/// Starts a `writes` load (a scratch table or keys) and checks it runs: its connections are
/// open, its scratch data exists. Returns its id.
fn start_writes(
    daemon: &Daemon,
    cgroup: &Path,
    db: Server,
    database: &str,
    baseline: u64,
) -> String {
    let id = started_id(&load(
        daemon,
        cgroup,
        db,
        database,
        &[
            "--profile",
            "writes",
            "--rate",
            "100",
            "--concurrency",
            "4",
            "--duration",
            "60",
        ],
    ));
    // The start answers once the runner is ready: connected, scratch data made.
    assert!(db.scratch_exists(database, &scratch_of(&id)), "{id}");
    eventually("the load's 4 connections", Duration::from_secs(5), || {
        (db.connections(database) >= baseline + 4).then_some(())
    });
    id
}

/// Asserts that run `id`'s runner may use one CPU at most: `cpu.max` of its cgroup where the
/// cgroup2 root offers the cpu controller, else (a hybrid host, as CI's) the CFS quota of the
/// cgroup v1 `cpu` cgroup it runs in.
fn assert_cpu_limited(mount: &Path, id: &str) {
    let cgroup = runner_cgroup(mount, id);
    let pids = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    let pid = pids.lines().next().expect("the runner is in its cgroup");
    let v2 = std::fs::read_to_string(mount.join("cgroup.subtree_control")).unwrap();
    if v2.split_whitespace().any(|c| c == "cpu") {
        let max = std::fs::read_to_string(cgroup.join("cpu.max")).unwrap();
        assert_eq!(max.trim(), "100000 100000");
        return;
    }
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v1 = own
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == "cpu").then_some(path)
        })
        .expect("a cgroup v1 cpu controller on a hybrid host");
    let name = runner_cgroup(Path::new("/"), id);
    assert_eq!(Path::new(v1), name, "{own}");
    let quota =
        std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{v1}/cpu.cfs_quota_us")).unwrap();
    let period =
        std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{v1}/cpu.cfs_period_us")).unwrap();
    assert_eq!((quota.trim(), period.trim()), ("100000", "100000"));
}

/// Waits until nothing of run `id` is left: its scratch data in `db`'s `database`, then its
/// runner.
fn gone(mount: &Path, dir: &Path, db: Server, database: &str, id: &str) {
    eventually("the scratch data dropped", Duration::from_secs(20), || {
        (!db.scratch_exists(database, &scratch_of(id))).then_some(())
    });
    runner_gone(mount, dir, id);
}

/// Waits until run `id`'s runner cgroup and spec file are removed.
fn runner_gone(mount: &Path, dir: &Path, id: &str) {
    eventually("the runner cgroup removed", Duration::from_secs(10), || {
        (!runner_cgroup(mount, id).exists()).then_some(())
    });
    eventually("the spec file removed", Duration::from_secs(10), || {
        (!spec_file(dir, id).exists()).then_some(())
    });
    let cpu_v1 = runner_cgroup(Path::new("/sys/fs/cgroup/cpu"), id);
    assert!(!cpu_v1.exists(), "{} is left", cpu_v1.display());
}

/// Issue test 3: stop, emergency stop and SIGKILL of the daemon, against PostgreSQL (a scratch
/// table) and Redis (scratch keys).
#[test]
fn stop_emergency_stop_and_sigkill_close_the_connections_and_leave_nothing() {
    let Some(mount) = kernel() else { return };
    let _serial = serial();
    stops_leave_nothing(&mount, servers::postgres());
    stops_leave_nothing(&mount, servers::redis());
}

fn stops_leave_nothing(mount: &Path, db: Server) {
    eprintln!("{}:", db.engine());
    let database = db.fresh_database("dl_stop");
    let cgroup = TestCgroup::new(mount, "dbload");
    let dir = support::TempDir::new("dbload-stop");
    let mut daemon = Daemon::with_config(&dir.0, CONFIG);
    let baseline = db.connections(&database);

    // chaos-ctl stop.
    let id = start_writes(&daemon, &cgroup.path, db, &database, baseline);
    assert_cpu_limited(mount, &id);
    std::thread::sleep(Duration::from_secs(2));
    // Status shows the live load.
    let status = daemon.json(&["status"]);
    let load = &status["experiments"][0]["load"];
    assert_eq!(load["target_rate"], 100.0, "{status}");
    assert!(load["sent"].as_u64().unwrap() >= 100, "{status}");
    assert!(load["p95_ms"].as_f64().is_some(), "{status}");
    let began = Instant::now();
    daemon.ctl_ok(&["stop", &id]);
    let closed = back_to(db, &database, baseline, began);
    eprintln!("stop: connections back to {baseline} after {closed:?}");
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    let status = daemon.ended(&id, Duration::from_secs(30));
    assert_eq!(status["state"], "stopped", "{status}");
    assert!(
        status["counters"]["injected"].as_u64().unwrap() > 0,
        "{status}"
    );
    gone(mount, &dir.0, db, &database, &id);

    // chaos-ctl emergency-stop.
    let id = start_writes(&daemon, &cgroup.path, db, &database, baseline);
    let began = Instant::now();
    daemon.ctl_ok(&["emergency-stop"]);
    let closed = back_to(db, &database, baseline, began);
    eprintln!("emergency stop: connections back to {baseline} after {closed:?}");
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    let status = daemon.ended(&id, Duration::from_secs(30));
    assert_eq!(status["state"], "emergency_stopped", "{status}");
    gone(mount, &dir.0, db, &database, &id);
    daemon.ctl_ok(&["emergency-stop", "--clear"]);

    // SIGKILL of the daemon: the runner dies with it; the restart drops the scratch table.
    let id = start_writes(&daemon, &cgroup.path, db, &database, baseline);
    let began = Instant::now();
    drop(daemon);
    let closed = back_to(db, &database, baseline, began);
    eprintln!("daemon SIGKILL: connections back to {baseline} after {closed:?}");
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    assert!(
        db.scratch_exists(&database, &scratch_of(&id)),
        "a killed runner cannot drop its table: the restart must"
    );
    daemon = Daemon::with_config(&dir.0, CONFIG);
    gone(mount, &dir.0, db, &database, &id);
    drop(daemon);
}

/// Issue test 4: with a budget of N queries, exactly N reach the server.
#[test]
fn a_budget_of_n_queries_sends_exactly_n() {
    let Some(mount) = kernel() else { return };
    let _serial = serial();
    let pg = servers::postgres();
    let database = pg.fresh_database("dl_cap");
    let cgroup = TestCgroup::new(&mount, "dbload-cap");
    let dir = support::TempDir::new("dbload-cap");
    let daemon = Daemon::with_config(&dir.0, CONFIG);
    let measure = || {
        let a = pg.queries(&database);
        let b = pg.queries(&database);
        (b, b - a)
    };
    // The runner's pre-flight prepares the statement on the server before the load: what
    // that costs is measured with `chaos-dbload check` on the same statement.
    let spec = dir.0.join("check.json");
    let spec_json = serde_json::json!({
        "engine": "postgres", "address": pg.address(), "database": database,
        "user": pg.user(), "password_file": pg.password_file(),
        "workload": {"statements": [{"sql": pg.simple_statement()}]},
        "rate": 1, "concurrency": 1, "duration_ms": 1000, "scratch": "check",
    });
    std::fs::write(&spec, spec_json.to_string()).unwrap();
    let (before, probe) = measure();
    let checked = std::process::Command::new(DAEMON.path().with_file_name("chaos-dbload"))
        .args(["check", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(checked.status.success(), "{checked:?}");
    let (after_check, _) = measure();
    let check = after_check - before - probe;
    let (before, probe) = measure();
    let id = started_id(&load(
        &daemon,
        &cgroup.path,
        pg,
        &database,
        &[
            "--statement",
            pg.simple_statement(),
            "--rate",
            "500",
            "--concurrency",
            "1",
            "--duration",
            "60",
            "--budget",
            "137",
        ],
    ));
    let status = daemon.ended(&id, Duration::from_secs(30));
    let (after, _) = measure();
    let counted = after - before - probe - check;
    eprintln!(
        "budget 137: the server counted {counted} queries for the load (and {check} for its \
         pre-flight); status {status}"
    );
    assert_eq!(counted, 137);
    assert_eq!(status["counters"]["injected"], 137, "{status}");
    assert_eq!(status["spent"], 137.0, "{status}");
    assert_eq!(status["state"], "completed", "{status}");
    gone(&mount, &dir.0, pg, &database, &id);
}

/// Issue test 5 through the daemon: refused before any load, with the database's message, and
/// nothing left.
#[test]
fn bad_databases_are_refused_before_any_load_with_their_message() {
    let Some(mount) = kernel() else { return };
    let _serial = serial();
    let pg = servers::postgres();
    let database = pg.fresh_database("dl_bad");
    let cgroup = TestCgroup::new(&mount, "dbload-bad");
    let dir = support::TempDir::new("dbload-bad");
    let daemon = Daemon::with_config(&dir.0, CONFIG);
    let wrong = dir.0.join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let closed = format!("127.0.0.1:{}", servers::free_port());
    let address = pg.address();
    let right = pg.password_file();
    let (invalid, invalid_message) = pg.invalid_statement();
    let profile: &[&str] = &["--profile", "point_reads"];
    let cases = [
        (
            address.as_str(),
            wrong.as_path(),
            profile,
            pg.wrong_password_message(),
        ),
        (
            closed.as_str(),
            right.as_path(),
            profile,
            "Connection refused",
        ),
        (
            address.as_str(),
            right.as_path(),
            &["--statement", invalid][..],
            invalid_message,
        ),
    ];
    for (address, password, workload, message) in cases {
        let before = pg.queries(&database);
        let mut args = vec!["--rate", "50", "--duration", "30"];
        args.extend_from_slice(workload);
        let out = load_to(
            &daemon,
            &cgroup.path,
            pg,
            &database,
            address,
            password,
            &args,
        );
        let (code, err) = failed(&out);
        eprintln!("refused: {err}");
        assert_eq!(code, Some(3), "{address} {workload:?}: {err}");
        assert!(
            err.contains("pre-flight") && err.contains(message),
            "{address} {workload:?}: {err}"
        );
        // Nothing was sent but the pre-flight, nothing is left.
        assert!(pg.queries(&database) - before <= 3, "{workload:?}");
        let leftovers: Vec<_> = std::fs::read_dir(&mount)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("chaos-dbload-"))
            .map(|e| e.path())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let specs = std::fs::read_dir(dir.0.join("state/dbload"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(specs, 0, "{workload:?}");
    }
    daemon.none_listed(Duration::from_secs(5));
}

/// Issue test 2: a ramp 50 -> 200 -> 500 qps stops at the step where a guard on the runner's
/// own p95 latency (exported by the daemon, scraped by a real Prometheus) turns red, and the
/// next step never starts. The statement takes the server 30 ms on 4 connections: about 133
/// queries a second at most, so 50 qps is served at once and 200 qps queues (the latency is
/// measured from each query's intended start).
#[test]
fn a_ramp_stops_at_the_step_where_the_latency_guard_turns_red() {
    let Some(mount) = kernel() else { return };
    let _serial = serial();
    let pg = servers::postgres();
    let database = pg.fresh_database("dl_ramp");
    let cgroup = TestCgroup::new(&mount, "dbload-ramp");
    let dir = support::TempDir::new("dbload-ramp");
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", servers::free_port())
        .parse()
        .unwrap();
    // Scraping the daemon's /metrics before it listens: its first scrape is a failed one.
    let prometheus = prometheus::Prometheus::start(&[metrics], Duration::from_millis(250));
    let config = format!(
        "{CONFIG}safety_checks:\n  guard_interval_ms: 100\n  baseline: 0s\n  slo_validation:\n    \
         enabled: false\nmonitoring:\n  prometheus:\n    url: '{}'\n    query_timeout: 500ms\n",
        prometheus.url()
    );
    let config_file = dir.0.join("chaos.yaml");
    std::fs::write(&config_file, config).unwrap();
    let metrics_arg = metrics.to_string();
    let daemon = Daemon::start_in(
        &dir.0,
        None,
        &[
            "--config",
            config_file.to_str().unwrap(),
            "--metrics-addr",
            &metrics_arg,
        ],
    );
    let baseline = pg.connections(&database);
    let slo = "load_p95:<= 0.1:max(chaos_database_load_latency_seconds{quantile=\"0.95\"}) \
               or vector(0)";
    let id = started_id(&load(
        &daemon,
        &cgroup.path,
        pg,
        &database,
        &[
            "--statement",
            "SELECT pg_sleep(0.03)",
            "--concurrency",
            "4",
            "--ramp",
            "50,200,500",
            "--ramp-hold",
            "6s",
            "--slo",
            slo,
            "--guard",
            "load_p95",
            "--duration",
            "60s",
        ],
    ));
    let status = daemon.ended(&id, Duration::from_secs(40));
    eprintln!("ramp: {status}");
    assert_eq!(status["state"], "rolled_back", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.starts_with("slo violation: load_p95 = "), "{reason}");
    assert_eq!(
        daemon.events(&id, "step"),
        ["rate 50 qps (step 1 of 3)", "rate 200 qps (step 2 of 3)"]
    );
    // The runner held 50, then 200 qps, and never 500: what Prometheus saw of it.
    let held = prometheus
        .query(&format!(
            "max_over_time(chaos_database_load_target_rate{{experiment_id=\"{id}\"}}[5m])"
        ))
        .unwrap();
    assert_eq!(held, 200.0);
    // The rollback killed the load: its connections are gone, and its counters stop.
    back_to(pg, &database, baseline, Instant::now());
    let sent = status["counters"]["injected"].as_u64().unwrap();
    assert!((250..=50 * 7 + 200 * 6).contains(&sent), "{sent}");
    gone(&mount, &dir.0, pg, &database, &id);
}

/// A network namespace of the test's own (`ip netns add`), its loopback up; deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn new(tag: &str) -> Self {
        let name = format!("chaos-t-{tag}-{}", std::process::id());
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        ip(&["netns", "add", &name]);
        let ns = Self(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME PROGRAM`.
    fn command(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.0, program]);
        cmd
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

/// Issue item 4: with `--in-target-netns` the load comes from the target's network namespace.
/// The target is a Redis of its own, alone in a namespace the test made, on 127.0.0.1 there:
/// only a runner inside that namespace reaches it, and the same load from the daemon's
/// namespace finds nothing at that address.
#[test]
fn the_load_can_come_from_the_target_network_namespace() {
    let Some(mount) = kernel() else { return };
    let _serial = serial();
    let cgroup = TestCgroup::new(&mount, "dbload-netns");
    let dir = support::TempDir::new("dbload-netns");
    let ns = TestNetns::new("dbload");
    let port = servers::free_port().to_string();
    let mut redis = ns.command("redis-server");
    redis
        .args(["--bind", "127.0.0.1", "--port", &port, "--save", ""])
        .args(["--appendonly", "no", "--dir"])
        .arg(&dir.0)
        .stdout(std::process::Stdio::null());
    start_in_cgroup(&mut redis, &cgroup.path);
    let redis = ChildGuard(redis.spawn().unwrap());
    let commands = || -> Option<u64> {
        let out = ns
            .command("redis-cli")
            .args(["-p", &port, "INFO", "stats"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse().ok())
    };
    eventually(
        "redis in the namespace answers",
        Duration::from_secs(20),
        commands,
    );
    let daemon = Daemon::with_config(&dir.0, CONFIG);
    let address = format!("127.0.0.1:{port}");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--output",
            "json",
            "experiment",
            "database_load",
            "--cgroup",
            cgroup.path.to_str().unwrap(),
            "--engine",
            "redis",
            "--address",
            &address,
            "--statement",
            "PING",
            "--rate",
            "200",
            "--concurrency",
            "2",
            "--duration",
            "30",
            "--budget",
            "100",
        ];
        args.extend_from_slice(extra);
        daemon.ctl(&args)
    };

    // From the daemon's namespace: nothing listens there.
    let (code, err) = failed(&run(&[]));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("pre-flight") && err.contains("refused"),
        "{err}"
    );

    // From the target's: the namespace's Redis gets the 100 queries the budget buys.
    let before = commands().unwrap();
    let id = started_id(&run(&["--in-target-netns"]));
    let status = daemon.ended(&id, Duration::from_secs(30));
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["counters"]["injected"], 100, "{status}");
    // The 100 PINGs, the pre-flight's COMMAND INFO, and our own INFO.
    let counted = commands().unwrap() - before;
    assert!((101..=104).contains(&counted), "{counted}");
    runner_gone(&mount, &dir.0, &id);
    drop(daemon);
    drop(redis);
}

/// A child process killed on drop.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
