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

/// `chaos-ctl --output json experiment database_load` against the test PostgreSQL's
/// `database`, targeting `cgroup`, with `args` added.
fn load(daemon: &Daemon, cgroup: &Path, database: &str, args: &[&str]) -> Output {
    let pg = servers::postgres();
    load_to(
        daemon,
        cgroup,
        database,
        &pg.address(),
        &pg.password_file(),
        args,
    )
}

/// [`load`] to the server at `address` with the password in `password`.
fn load_to(
    daemon: &Daemon,
    cgroup: &Path,
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
        "postgres",
        "--address",
        address,
        "--database",
        database,
        "--user",
        servers::postgres().user(),
        "--password-file",
        password.to_str().unwrap(),
    ];
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
fn back_to(database: &str, baseline: u64, since: Instant) -> Duration {
    let pg = servers::postgres();
    eventually(
        "the load's connections closed",
        Duration::from_secs(5),
        || (pg.connections(database) <= baseline).then(|| since.elapsed()),
    )
}

/// Starts a `writes` load (a scratch table) and checks it runs: its connections are open, its
/// table and runner cgroup exist. Returns its id.
fn start_writes(daemon: &Daemon, cgroup: &Path, database: &str, baseline: u64) -> String {
    let pg = servers::postgres();
    let id = started_id(&load(
        daemon,
        cgroup,
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
    // The start answers once the runner is ready: connected, scratch table made.
    assert!(pg.scratch_exists(database, &scratch_of(&id)), "{id}");
    eventually("the load's 4 connections", Duration::from_secs(5), || {
        (pg.connections(database) >= baseline + 4).then_some(())
    });
    id
}

fn gone(mount: &Path, dir: &Path, database: &str, id: &str) {
    let pg = servers::postgres();
    eventually("the scratch table dropped", Duration::from_secs(20), || {
        (!pg.scratch_exists(database, &scratch_of(id))).then_some(())
    });
    eventually("the runner cgroup removed", Duration::from_secs(10), || {
        (!runner_cgroup(mount, id).exists()).then_some(())
    });
    eventually("the spec file removed", Duration::from_secs(10), || {
        (!spec_file(dir, id).exists()).then_some(())
    });
}

/// Issue test 3: stop, emergency stop and SIGKILL of the daemon.
#[test]
fn stop_emergency_stop_and_sigkill_close_the_connections_and_leave_nothing() {
    let Some(mount) = kernel() else { return };
    let _serial = serial();
    let pg = servers::postgres();
    let database = pg.fresh_database("dl_stop");
    let cgroup = TestCgroup::new(&mount, "dbload");
    let dir = support::TempDir::new("dbload-stop");
    let mut daemon = Daemon::with_config(&dir.0, CONFIG);
    let baseline = pg.connections(&database);

    // chaos-ctl stop.
    let id = start_writes(&daemon, &cgroup.path, &database, baseline);
    assert!(runner_cgroup(&mount, &id).exists());
    std::thread::sleep(Duration::from_secs(2));
    let began = Instant::now();
    daemon.ctl_ok(&["stop", &id]);
    let closed = back_to(&database, baseline, began);
    eprintln!("stop: connections back to {baseline} after {closed:?}");
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    let status = daemon.ended(&id, Duration::from_secs(30));
    assert_eq!(status["state"], "stopped", "{status}");
    assert!(
        status["counters"]["injected"].as_u64().unwrap() > 0,
        "{status}"
    );
    gone(&mount, &dir.0, &database, &id);

    // chaos-ctl emergency-stop.
    let id = start_writes(&daemon, &cgroup.path, &database, baseline);
    let began = Instant::now();
    daemon.ctl_ok(&["emergency-stop"]);
    let closed = back_to(&database, baseline, began);
    eprintln!("emergency stop: connections back to {baseline} after {closed:?}");
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    let status = daemon.ended(&id, Duration::from_secs(30));
    assert_eq!(status["state"], "emergency_stopped", "{status}");
    gone(&mount, &dir.0, &database, &id);
    daemon.ctl_ok(&["emergency-stop", "--clear"]);

    // SIGKILL of the daemon: the runner dies with it; the restart drops the scratch table.
    let id = start_writes(&daemon, &cgroup.path, &database, baseline);
    let began = Instant::now();
    drop(daemon);
    let closed = back_to(&database, baseline, began);
    eprintln!("daemon SIGKILL: connections back to {baseline} after {closed:?}");
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    assert!(
        pg.scratch_exists(&database, &scratch_of(&id)),
        "a killed runner cannot drop its table: the restart must"
    );
    daemon = Daemon::with_config(&dir.0, CONFIG);
    gone(&mount, &dir.0, &database, &id);
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
    gone(&mount, &dir.0, &database, &id);
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
        let out = load_to(&daemon, &cgroup.path, &database, address, password, &args);
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
    back_to(&database, baseline, Instant::now());
    let sent = status["counters"]["injected"].as_u64().unwrap();
    assert!((250..=50 * 7 + 200 * 6).contains(&sent), "{sent}");
    gone(&mount, &dir.0, &database, &id);
}
