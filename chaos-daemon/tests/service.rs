//! The daemon as users run it: `chaos-daemon serve` on a Unix socket, driven by `chaos-ctl`,
//! with real workloads in a real cgroup; the store after a SIGKILL; who may connect; the
//! user's type names in every answer; the config's limits; a dry run's plan is the plan that is
//! armed; the disarm times of stop and emergency stop.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use chaos_daemon::store::Store;
use support::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// Calls `f` every 20 ms until it gives a value; panics with `what` after `within`.
fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (exit code, stderr) of a chaos-ctl run.
fn failed(out: &std::process::Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The internal names the daemon once answered with; users never see them.
const INTERNAL_NAMES: [&str; 3] = ["socket_error", "pod_kill", "resource_pressure"];

fn assert_users_names(what: &str, text: &str) {
    for internal in INTERNAL_NAMES {
        assert!(
            !text.contains(internal),
            "{what} says {internal}, not the user's type name:\n{text}"
        );
    }
}

#[test]
fn experiments_over_the_unix_socket_end_to_end() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc");
    let dir = TempDir::new("svc");
    let daemon = Daemon::start(&dir.0);
    let cgs = cg.path.to_str().unwrap();
    let server = TcpServer::start("127.0.0.1:0");

    // A connect-error experiment, followed live: WatchExperiment's counters rise.
    let mut wait = Command::new(ctl_bin())
        .args([
            "--daemon",
            &daemon.addr(),
            "experiment",
            "dependency_failure",
            "--cgroup",
            cgs,
        ])
        .args([
            "--duration",
            "3s",
            "--intensity",
            "1",
            "--name",
            "db-down",
            "--wait",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(wait.stdout.take().unwrap());
    let load = std::thread::spawn({
        let (cg, to) = (cg.path.clone(), server.to());
        move || {
            (0..5)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(400));
                    workload(Some(&cg), &["connect", "--to", &to, "--count", "50"])
                        .get("ECONNREFUSED")
                })
                .sum::<u64>()
        }
    });
    let injected: Vec<u64> = lines
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            l.split("injected ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(wait.wait().unwrap().success());
    let refused = load.join().unwrap();
    assert_eq!(refused, 250, "every connect inside the cgroup was refused");
    assert!(injected.len() >= 3, "progress lines: {injected:?}");
    assert!(
        injected.windows(2).all(|w| w[0] <= w[1]),
        "counters never go down: {injected:?}"
    );
    assert!(
        injected.last() > injected.first(),
        "counters rose while watching: {injected:?}"
    );
    assert_eq!(*injected.last().unwrap(), 250);

    // A loss experiment, stopped by hand; the report has the timeline.
    let started = json(&daemon.ctl_ok(&[
        "--output",
        "json",
        "experiment",
        "packet_loss",
        "--cgroup",
        cgs,
        "--duration",
        "60",
        "--intensity",
        "1",
        "--direction",
        "egress",
        "--visible-drop",
    ]));
    let id = started["id"].as_str().unwrap().to_string();
    let sink = UdpSink::new();
    let r = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", "100"],
    );
    assert_eq!(r.get("EPERM"), 100);
    let status = json(&daemon.ctl_ok(&["--output", "json", "status"]));
    assert_eq!(status["experiments"][0]["counters"]["injected"], 100);
    let stopped = json(&daemon.ctl_ok(&["--output", "json", "stop", &id]));
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(
        workload(
            Some(&cg.path),
            &["udp-send", "--to", &sink.to(), "--count", "100"]
        )
        .ok(),
        100
    );
    let md = daemon.ctl_ok(&["report", &id]);
    assert!(
        md.contains("**armed**") && md.contains("stopped by uid 0"),
        "{md}"
    );
    let rep = json(&daemon.ctl_ok(&["report", &id, "--format", "json"]));
    assert_eq!(rep["timeline"].as_array().unwrap().len(), 2);
    let last = json(&daemon.ctl_ok(&["--output", "json", "report", "--last", "1h"]));
    let states: Vec<_> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, vec!["stopped", "completed"]);
    assert_eq!(cg.attached(), 0);
}

#[test]
fn refusals_have_precise_exit_codes() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-codes");
    let dir = TempDir::new("svc-codes");
    let daemon = Daemon::start(&dir.0);
    let cgs = cg.path.to_str().unwrap();
    let code = |args: &[&str]| daemon.ctl(args).status.code();
    // Invalid spec: usage (2), refused by chaos-ctl naming the field. Missing or protected
    // target, unknown id: refused by the daemon (3).
    let (c, err) = failed(&daemon.ctl(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        cgs,
        "--intensity",
        "2",
    ]));
    assert_eq!(c, Some(2), "{err}");
    assert!(
        err.contains("intensity: 2 is not allowed; expected 0 to 1"),
        "{err}"
    );
    let (c, err) = failed(&daemon.ctl(&["experiment", "packet_loss", "--cgroup", cgs]));
    assert_eq!(c, Some(2), "{err}");
    assert!(
        err.contains("intensity: required field is missing"),
        "packet_loss has no default intensity: {err}"
    );
    assert_eq!(
        code(&[
            "experiment",
            "packet_loss",
            "--cgroup",
            "/no-such-cgroup",
            "--intensity",
            "1"
        ]),
        Some(3)
    );
    let (c, err) = failed(&daemon.ctl(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        "/",
        "--intensity",
        "1",
    ]));
    assert_eq!(c, Some(3), "{err}");
    assert!(err.contains("is protected: it is the root cgroup"), "{err}");
    assert_eq!(code(&["stop", "exp-0-0"]), Some(3));
    assert_eq!(
        code(&["experiment", "packet_loss", "--intensity", "1"]),
        Some(2),
        "clap: a target is required"
    );
    // The latch refuses new experiments until cleared.
    daemon.ctl_ok(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        cgs,
        "--duration",
        "60",
        "--intensity",
        "0",
    ]);
    let es = json(&daemon.ctl_ok(&["--output", "json", "emergency-stop", "--reason", "drill"]));
    assert_eq!(es["disarmed"], 1);
    let (c, err) = failed(&daemon.ctl(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        cgs,
        "--intensity",
        "0",
    ]));
    assert_eq!(c, Some(3), "{err}");
    assert!(err.contains("emergency stop is latched"), "{err}");
    daemon.ctl_ok(&["emergency-stop", "--clear"]);
    daemon.ctl_ok(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        cgs,
        "--duration",
        "1",
        "--intensity",
        "0",
    ]);
    // A daemon that is not there is a failure (1), and the message says which and what to do.
    let gone = Command::new(ctl_bin())
        .args(["--daemon", "unix:///nonexistent.sock", "status"])
        .output()
        .unwrap();
    let (c, err) = failed(&gone);
    assert_eq!(c, Some(1), "{err}");
    assert!(
        err.contains("cannot reach chaos-daemon at unix:///nonexistent.sock: no such socket")
            && err.contains("chaos-daemon serve"),
        "{err}"
    );
}

#[test]
fn only_root_can_reach_the_socket() {
    let Some(_) = kernel() else { return };
    let dir = TempDir::new("svc-perm");
    let daemon = Daemon::start(&dir.0);
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let state_mode = std::fs::metadata(&daemon.state)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(state_mode, 0o700);
    // Run chaos-ctl as nobody from a copy it can execute (the checkout may be private), in a
    // directory it can traverse, so that only the socket's own permissions decide.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctl = dir.0.join("chaos-ctl");
    std::fs::copy(ctl_bin(), &ctl).unwrap();
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = || {
        Command::new(&ctl)
            .args(["--daemon", &daemon.addr(), "emergency-stop"])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach chaos-daemon at")
            && err.contains("permission denied: the socket belongs to uid 0 with mode 0600"),
        "the 0600 socket refuses the connection: {err}"
    );
    // Even with the socket opened up by mistake, the daemon checks the peer's uid itself.
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("uid 65534 may not use this daemon"), "{err}");
    assert!(
        daemon.ctl_ok(&["status"]).contains("emergency stop: no"),
        "nobody stopped anything"
    );
}

#[test]
fn sigkill_mid_experiment_leaves_nothing_and_restart_marks_it_aborted() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-kill");
    let dir = TempDir::new("svc-kill");
    let cgs = cg.path.to_str().unwrap();
    let sink = UdpSink::new();
    let id = {
        let mut daemon = Daemon::start(&dir.0);
        let started = json(&daemon.ctl_ok(&[
            "--output",
            "json",
            "experiment",
            "packet_loss",
            "--cgroup",
            cgs,
            "--duration",
            "600",
            "--intensity",
            "1",
            "--direction",
            "egress",
            "--visible-drop",
            "--name",
            "killed",
        ]));
        let r = workload(
            Some(&cg.path),
            &["udp-send", "--to", &sink.to(), "--count", "50"],
        );
        assert_eq!(r.get("EPERM"), 50);
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        started["id"].as_str().unwrap().to_string()
    };
    // The kernel dropped the programs with the process.
    assert_eq!(cg.attached(), 0);
    assert_eq!(
        workload(
            Some(&cg.path),
            &["udp-send", "--to", &sink.to(), "--count", "50"]
        )
        .ok(),
        50
    );

    let daemon = Daemon::start(&dir.0);
    let list = json(&daemon.ctl_ok(&["--output", "json", "report", "--last", "1h"]));
    let e = &list.as_array().unwrap()[0];
    assert_eq!(
        (e["id"].as_str().unwrap(), e["state"].as_str().unwrap()),
        (id.as_str(), "aborted")
    );
    assert_eq!(e["reason"], "aborted (daemon restart)");
    drop(daemon);
    let store = Store::open(&dir.0.join("state")).unwrap();
    let audit = store.audit_log().unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.method == "StartExperiment" && a.caller == "uid 0" && a.outcome == "ok"),
        "{audit:?}"
    );
    let events = store.events(&id).unwrap();
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["armed", "aborted"]
    );
}

#[test]
fn emergency_stop_reaches_every_daemon_and_reports_each_answer() {
    let Some(mount) = kernel() else { return };
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new("svc-es")).collect();
    let daemons: Vec<Daemon> = dirs.iter().map(|d| Daemon::start(&d.0)).collect();
    let cgs: Vec<TestCgroup> = (0..3).map(|_| TestCgroup::new(&mount, "svc-es")).collect();
    let sink = UdpSink::new();
    for (d, cg) in daemons.iter().zip(&cgs) {
        d.ctl_ok(&[
            "experiment",
            "packet_loss",
            "--cgroup",
            cg.path.to_str().unwrap(),
            "--duration",
            "600",
            "--intensity",
            "1",
            "--direction",
            "egress",
            "--visible-drop",
        ]);
        let r = workload(
            Some(&cg.path),
            &["udp-send", "--to", &sink.to(), "--count", "20"],
        );
        assert_eq!(r.get("EPERM"), 20, "the fault is live before the stop");
    }
    let list_dir = TempDir::new("svc-es-list");
    let file = list_dir.0.join("daemons");
    let mut addrs: String = daemons
        .iter()
        .map(|d| format!("{}  # node\n", d.addr()))
        .collect();
    std::fs::write(&file, &addrs).unwrap();
    let ctl = |args: &[&str]| {
        Command::new(ctl_bin())
            .arg("--daemons")
            .arg(&file)
            .args(args)
            .output()
            .unwrap()
    };

    let out = ctl(&["--output", "json", "emergency-stop", "--reason", "drill"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = json(&String::from_utf8_lossy(&out.stdout));
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 3);
    for (a, d) in answers.iter().zip(&daemons) {
        assert_eq!(
            (a["daemon"].as_str().unwrap(), &a["answer"]["disarmed"]),
            (d.addr().as_str(), &serde_json::json!(1))
        );
        assert!(
            a["answer"]["disarm_ns"].as_u64().is_some_and(|ns| ns > 0),
            "each daemon reports its disarm time: {a}"
        );
    }
    for cg in &cgs {
        let r = workload(
            Some(&cg.path),
            &["udp-send", "--to", &sink.to(), "--count", "20"],
        );
        assert_eq!(r.ok(), 20, "faults are gone on every node");
        assert_eq!(cg.attached(), 0);
    }
    // The latch holds on every daemon until cleared everywhere.
    for (d, cg) in daemons.iter().zip(&cgs) {
        let refused = d.ctl(&[
            "experiment",
            "packet_loss",
            "--cgroup",
            cg.path.to_str().unwrap(),
            "--intensity",
            "1",
        ]);
        assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    }
    let status = json(&String::from_utf8_lossy(
        &ctl(&["--output", "json", "status"]).stdout,
    ));
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["answer"]["emergency_stop"] == true)
    );
    assert!(ctl(&["emergency-stop", "--clear"]).status.success());
    let status = json(&String::from_utf8_lossy(
        &ctl(&["--output", "json", "status"]).stdout,
    ));
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["answer"]["emergency_stop"] == false)
    );

    // One daemon down: the others still answer, every answer is shown, the exit is a failure.
    addrs.push_str("unix:///nonexistent/chaos.sock\n");
    std::fs::write(&file, &addrs).unwrap();
    let out = ctl(&["emergency-stop"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.matches("experiments disarmed").count(), 3, "{text}");
    assert!(
        text.contains(
            "== unix:///nonexistent/chaos.sock\nerror: cannot reach chaos-daemon at \
             unix:///nonexistent/chaos.sock: no such socket"
        ),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 4 daemons did not answer ok"));
}

/// GETs `http://addr/metrics` and returns the body.
fn scrape(addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "{resp}"
    );
    resp.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn try_metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn metric(body: &str, series: &str) -> f64 {
    try_metric(body, series).unwrap_or_else(|| panic!("no series {series} in\n{body}"))
}

#[test]
fn metrics_count_experiments_faults_requests_and_disarms() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-metrics");
    let dir = TempDir::new("svc-metrics");
    let mut daemon = Daemon::start_with(&dir.0, &["--metrics-addr", "127.0.0.1:0"]);
    let line = daemon.next_line();
    let addr = line
        .strip_prefix("metrics on http://")
        .and_then(|l| l.strip_suffix("/metrics"))
        .unwrap()
        .to_string();
    let server = TcpServer::start("127.0.0.1:0");
    let cgs = cg.path.to_str().unwrap();
    daemon.ctl_ok(&[
        "experiment",
        "dependency_failure",
        "--cgroup",
        cgs,
        "--duration",
        "600",
        "--intensity",
        "1",
    ]);
    let r = workload(
        Some(&cg.path),
        &["connect", "--to", &server.to(), "--count", "30"],
    );
    assert_eq!(r.get("ECONNREFUSED"), 30);
    // The reaper brings the fault counters up to date every 50 ms.
    let injected = r#"chaos_faults_injected_total{type="dependency_failure"}"#;
    let body = eventually("30 faults counted", Duration::from_secs(10), || {
        let body = scrape(&addr);
        (try_metric(&body, injected) == Some(30.0)).then_some(body)
    });
    assert_users_names("metrics", &body);
    assert_eq!(metric(&body, "chaos_experiments_running"), 1.0);
    assert_eq!(
        metric(
            &body,
            r#"chaos_events_seen_total{type="dependency_failure"}"#
        ),
        30.0
    );
    assert_eq!(
        metric(
            &body,
            r#"chaos_grpc_requests_total{code="Ok",method="StartExperiment"}"#
        ),
        1.0
    );
    assert_eq!(metric(&body, "chaos_emergency_stop_latched"), 0.0);

    let es = json(&daemon.ctl_ok(&["--output", "json", "emergency-stop"]));
    assert_eq!(es["disarmed"], 1);
    let disarm_ns = es["disarm_ns"].as_u64().unwrap();
    let refused = daemon.ctl(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        cgs,
        "--intensity",
        "1",
    ]);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    // Releasing and recording continue on the daemon's recorder: wait for its record.
    let body = eventually(
        "the emergency stop recorded",
        Duration::from_secs(10),
        || {
            let body = scrape(&addr);
            try_metric(
                &body,
                r#"chaos_experiments_finished_total{state="emergency_stopped"}"#,
            )
            .is_some_and(|n| n == 1.0)
            .then_some(body)
        },
    );
    assert_eq!(metric(&body, "chaos_experiments_running"), 0.0);
    assert_eq!(metric(&body, "chaos_emergency_stop_latched"), 1.0);
    assert_eq!(
        metric(
            &body,
            r#"chaos_disarm_latency_seconds_count{cause="emergency_stop"}"#
        ),
        1.0
    );
    // The histogram holds the very figure the answer reported (from the request's arrival).
    let sum = metric(
        &body,
        r#"chaos_disarm_latency_seconds_sum{cause="emergency_stop"}"#,
    );
    assert!(
        (sum - disarm_ns as f64 / 1e9).abs() < 1e-9,
        "metric {sum} s, answer {disarm_ns} ns"
    );
    assert_eq!(
        metric(
            &body,
            r#"chaos_grpc_requests_total{code="FailedPrecondition",method="StartExperiment"}"#
        ),
        1.0
    );
    assert_eq!(metric(&body, injected), 30.0, "monotonic after stop");
}

#[test]
fn experiment_files_validate_offline_and_apply() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-apply");
    let dir = TempDir::new("svc-apply");
    let file = dir.0.join("exp.yaml");
    std::fs::write(
        &file,
        format!(
            "name: apply-test\ntype: dependency_failure\ntarget:\n  cgroup: {}\nduration: 30s\n\
             intensity: 1\nmax_faults: 5\nfault:\n  errno: EHOSTUNREACH\n",
            cg.path.display()
        ),
    )
    .unwrap();
    // Offline: no daemon is running yet.
    let f = file.to_str().unwrap();
    let out = Command::new(ctl_bin())
        .args(["--daemon", "unix:///nonexistent.sock", "validate", "-f", f])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.0.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\ntype: packet_loss\ntarget: {pid: 1}\nduration: 0s\nintensity: 0.1\n",
    )
    .unwrap();
    let out = Command::new(ctl_bin())
        .args(["validate", "-f", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("duration"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let daemon = Daemon::start(&dir.0);
    let dry = json(&daemon.ctl_ok(&["--output", "json", "apply", "-f", f, "--dry-run"]));
    assert_eq!(dry["plan"]["cgroup"], cg.path.to_str().unwrap());
    assert_eq!(dry["plan"]["max_faults"], 5);
    assert_eq!(cg.attached(), 0, "a dry run attaches nothing");
    daemon.ctl_ok(&["apply", "-f", f]);
    let server = TcpServer::start("127.0.0.1:0");
    let r = workload(
        Some(&cg.path),
        &["connect", "--to", &server.to(), "--count", "20"],
    );
    assert_eq!(
        (r.get("EHOSTUNREACH"), r.ok()),
        (5, 15),
        "the file's errno and fault cap: {r:?}"
    );
}

#[test]
fn budgets_become_exact_fault_caps_and_the_daily_budget_refuses() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-budget");
    let dir = TempDir::new("svc-budget");
    let config = dir.0.join("chaos.yaml");
    std::fs::write(
        &config,
        "budget:\n  max_experiment_cost: 1.0\n  max_daily_cost: 1.5\n  cost_per_request: 0.01\n  alert_threshold: 0.8\n",
    )
    .unwrap();
    let daemon = Daemon::start_with(&dir.0, &["--config", config.to_str().unwrap()]);
    let cgs = cg.path.to_str().unwrap();
    let server = TcpServer::start("127.0.0.1:0");
    let start = |budget: &str| {
        daemon.ctl(&[
            "--output",
            "json",
            "experiment",
            "dependency_failure",
            "--cgroup",
            cgs,
            "--duration",
            "60",
            "--intensity",
            "1",
            "--budget",
            budget,
        ])
    };

    // 0.5 at 0.01 per fault buys exactly 50 faults: the 51st connect succeeds.
    let out = start("0.5");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (
            started["plan"]["max_faults"].as_u64(),
            started["plan"]["cgroup"].as_str()
        ),
        (Some(50), Some(cgs))
    );
    let r = workload(
        Some(&cg.path),
        &["connect", "--to", &server.to(), "--count", "80"],
    );
    assert_eq!((r.get("ECONNREFUSED"), r.ok()), (50, 30), "{r:?}");
    let id = started["id"].as_str().unwrap();
    daemon.ctl_ok(&["stop", id]);
    let md = daemon.ctl_ok(&["report", id]);
    assert!(md.contains("| spent / budget | 0.5000 / 0.5000 |"), "{md}");

    // Today: 0.5 spent. A budget of 1.0 still fits; while it runs (reserved), 0.1 does not.
    assert!(start("1.0").status.success());
    let out = start("0.1");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ResourceExhausted"));
    // More than max_experiment_cost is a limit of the config (refused, naming the key), not
    // an exhausted budget.
    let (c, err) = failed(&start("2"));
    assert_eq!(c, Some(3), "{err}");
    assert!(
        err.contains(
            "budget: 2 is not allowed; expected at most 1 (budget.max_experiment_cost) \
             (FailedPrecondition)"
        ),
        "{err}"
    );
}

#[test]
fn the_seeds_commands_work_through_the_wrapper_script() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-seed");
    let dir = TempDir::new("svc-seed");
    let daemon = Daemon::start(&dir.0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = |args: &[&str]| {
        let out = Command::new(root.join("scripts/chaos-engineering.sh"))
            .args(args)
            .current_dir(&root)
            .env("CHAOS_CTL", ctl_bin())
            .env("CHAOS_DAEMON", daemon.addr())
            .env("CHAOS_TARGET", format!("--cgroup {}", cg.path.display()))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The examples of its --help, run as written (from the checkout's root).
    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, Some(0), "{help}");
    let examples: Vec<Vec<String>> = help
        .lines()
        .filter_map(|l| l.trim().strip_prefix("./scripts/chaos-engineering.sh "))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let commands: Vec<String> = examples.iter().map(|e| e.join(" ")).collect();
    assert_eq!(
        commands,
        [
            "experiment packet_loss --intensity 0.1 --duration 300",
            "experiment dependency_failure --intensity 0.25 --budget 50.00",
            "status",
            "emergency-stop",
            "report --last 24h",
        ],
        "the examples this test runs"
    );
    let mut answers = Vec::new();
    for example in &examples {
        let args: Vec<&str> = example.iter().map(String::as_str).collect();
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}{out}");
        answers.push(out);
    }
    assert!(answers[0].starts_with("started exp-"), "{}", answers[0]);
    assert!(answers[1].starts_with("started exp-"), "{}", answers[1]);
    let status = &answers[2];
    assert_eq!(status.matches(" running ").count(), 2, "{status}");
    assert!(
        status.contains("packet_loss") && status.contains("dependency_failure"),
        "{status}"
    );
    assert!(
        answers[3].starts_with("2 experiments disarmed in "),
        "{}",
        answers[3]
    );
    assert_eq!(
        answers[4].matches("emergency_stopped").count(),
        2,
        "{}",
        answers[4]
    );
    // The seed's network_latency as the model needs it (--latency-ms): it runs where the
    // kernel has sch_fq and is refused with that reason elsewhere (here while latched anyway).
    let (code, _, err) = run(&["experiment", "network_latency", "--duration", "300"]);
    assert_eq!(code, Some(2), "--latency-ms is required: {err}");
    assert!(err.contains("latency"), "{err}");
    daemon.ctl_ok(&["emergency-stop", "--clear"]);
    let caps = json(&daemon.ctl_ok(&["--output", "json", "capabilities"]));
    let fq = caps["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["experiment_type"] == "network_latency")
        .unwrap()
        .clone();
    let (code, out, err) = run(&[
        "experiment",
        "network_latency",
        "--latency-ms",
        "100",
        "--interface",
        "lo",
        "--duration",
        "300",
    ]);
    if fq["supported"] == true {
        assert_eq!(code, Some(0), "{err}{out}");
        daemon.ctl_ok(&["emergency-stop"]);
    } else {
        assert_eq!(code, Some(3), "{err}{out}");
        assert!(
            err.contains(fq["reason"].as_str().unwrap()),
            "refused with the kernel's reason: {err}"
        );
    }
    // Unknown commands are usage errors, with the usage.
    let (code, _, err) = run(&["frobnicate"]);
    assert_eq!(code, Some(2));
    assert!(err.starts_with("usage: chaos-engineering.sh"), "{err}");
    assert_eq!(cg.attached(), 0);
}

#[test]
fn fanned_out_start_and_stop_skip_nodes_without_the_target_or_id() {
    let Some(mount) = kernel() else { return };
    let dirs: Vec<TempDir> = (0..2).map(|_| TempDir::new("svc-fan")).collect();
    let daemons: Vec<Daemon> = dirs.iter().map(|d| Daemon::start(&d.0)).collect();
    let cg = TestCgroup::new(&mount, "svc-fan");
    let list = TempDir::new("svc-fan-list");
    let file = list.0.join("daemons");
    std::fs::write(
        &file,
        daemons.iter().map(|d| d.addr() + "\n").collect::<String>(),
    )
    .unwrap();
    let ctl = |args: &[&str]| {
        Command::new(ctl_bin())
            .arg("--daemons")
            .arg(&file)
            .args(args)
            .output()
            .unwrap()
    };

    // Every node has this cgroup here (one host): both start it.
    let cgs = cg.path.to_str().unwrap();
    let out = ctl(&[
        "--output",
        "json",
        "experiment",
        "packet_loss",
        "--cgroup",
        cgs,
        "--duration",
        "60",
        "--intensity",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = json(&String::from_utf8_lossy(&out.stdout));
    let ids: Vec<String> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["answer"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    // Ids are unique across nodes even when both start in the same millisecond.
    assert_ne!(ids[0], ids[1]);
    // An id lives on one node: the other answers "not on this node" and the stop succeeds.
    let out = ctl(&["stop", &ids[0]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        (
            text.matches("stopped").count() >= 1,
            text.matches("skipped: not on this node").count()
        ),
        (true, 1),
        "{text}"
    );
    // A target no node has: refused (3), every node says so.
    let out = ctl(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        "/chaos-no-such-cgroup",
        "--duration",
        "5",
        "--intensity",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("not on this node")
            .count(),
        2
    );
    assert!(ctl(&["stop", &ids[1]]).status.success());
    assert_eq!(cg.attached(), 0);
}

/// The user's type names, the seven of the model.
const TYPES: [&str; 7] = [
    "packet_loss",
    "dependency_failure",
    "api_error_injection",
    "network_latency",
    "syscall_error",
    "pod_deletion",
    "resource_exhaustion",
];

#[test]
fn every_answer_names_the_users_experiment_types() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("svc-names");
    let daemon = Daemon::start(&dir.0);
    let server = TcpServer::start("127.0.0.1:0");
    let sink = UdpSink::new();
    let cgs: Vec<TestCgroup> = (0..3)
        .map(|_| TestCgroup::new(&mount, "svc-names"))
        .collect();
    let start = |kind: &str, cg: &TestCgroup, extra: &[&str]| -> String {
        let mut args = vec![
            "--output",
            "json",
            "experiment",
            kind,
            "--cgroup",
            cg.path.to_str().unwrap(),
            "--intensity",
            "1",
            "--duration",
            "120",
        ];
        args.extend_from_slice(extra);
        json(&daemon.ctl_ok(&args))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Each fault injected into a real workload: refused connects, reset connects, dropped
    // datagrams.
    let dep = start("dependency_failure", &cgs[0], &[]);
    let api = start("api_error_injection", &cgs[1], &[]);
    let loss = start(
        "packet_loss",
        &cgs[2],
        &["--direction", "egress", "--visible-drop"],
    );
    let connect = |cg: &TestCgroup| {
        workload(
            Some(&cg.path),
            &["connect", "--to", &server.to(), "--count", "10"],
        )
    };
    assert_eq!(connect(&cgs[0]).get("ECONNREFUSED"), 10);
    assert_eq!(connect(&cgs[1]).get("ECONNRESET"), 10);
    let sent = workload(
        Some(&cgs[2].path),
        &["udp-send", "--to", &sink.to(), "--count", "10"],
    );
    assert_eq!(sent.get("EPERM"), 10);
    daemon.ctl_ok(&["stop", &dep]);
    let want = [
        (dep.as_str(), "dependency_failure"),
        (api.as_str(), "api_error_injection"),
        (loss.as_str(), "packet_loss"),
    ];

    // status: table and JSON (the running two).
    let table = daemon.ctl_ok(&["status"]);
    assert_users_names("status", &table);
    for (id, kind) in &want[1..] {
        let line = table.lines().find(|l| l.starts_with(id)).unwrap();
        assert_eq!(
            line.split_whitespace().nth(2),
            Some(*kind),
            "TYPE column: {table}"
        );
    }
    let status = json(&daemon.ctl_ok(&["--output", "json", "status"]));
    let mut kinds: Vec<(String, String, u64)> = status["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["experiment_type"].as_str().unwrap().to_string(),
                e["counters"]["injected"].as_u64().unwrap(),
            )
        })
        .collect();
    kinds.sort();
    let mut expected: Vec<(String, String, u64)> = want[1..]
        .iter()
        .map(|(id, kind)| (id.to_string(), kind.to_string(), 10))
        .collect();
    expected.sort();
    assert_eq!(kinds, expected, "{status}");

    // report: Markdown and JSON, of a stopped and of a running experiment.
    for (id, kind) in want {
        let md = daemon.ctl_ok(&["report", id]);
        assert_users_names("report", &md);
        assert!(md.contains(&format!("| type | {kind} |")), "{md}");
        assert!(md.contains(&format!("**armed** {kind} on ")), "{md}");
        let rep = json(&daemon.ctl_ok(&["report", id, "--format", "json"]));
        assert_eq!(rep["status"]["experiment_type"], kind, "{rep}");
        assert_users_names("report --format json", &rep.to_string());
    }

    // report --last: table and JSON, all three.
    let list = daemon.ctl_ok(&["report", "--last", "1h"]);
    assert_users_names("report --last", &list);
    for (id, kind) in want {
        let line = list.lines().find(|l| l.starts_with(id)).unwrap();
        assert_eq!(line.split_whitespace().nth(2), Some(kind), "{list}");
    }
    let list = json(&daemon.ctl_ok(&["--output", "json", "report", "--last", "1h"]));
    let mut listed: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["experiment_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    let mut expected: Vec<(String, String)> = want
        .iter()
        .map(|(id, kind)| (id.to_string(), kind.to_string()))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    // capabilities: one line per user type, in JSON too.
    let caps = daemon.ctl_ok(&["capabilities"]);
    assert_users_names("capabilities", &caps);
    let named: Vec<&str> = caps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut sorted = named.clone();
    sorted.sort_unstable();
    let mut types = TYPES.to_vec();
    types.sort_unstable();
    assert_eq!(sorted, types, "{caps}");
    let caps = json(&daemon.ctl_ok(&["--output", "json", "capabilities"]));
    let mut named: Vec<&str> = caps["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["experiment_type"].as_str().unwrap())
        .collect();
    named.sort_unstable();
    assert_eq!(named, types, "{caps}");
    daemon.ctl_ok(&["emergency-stop"]);
    eventually("the recorder finished", Duration::from_secs(10), || {
        let s = json(&daemon.ctl_ok(&["--output", "json", "status"]));
        s["experiments"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    for cg in &cgs {
        assert_eq!(cg.attached(), 0);
    }
}

#[test]
fn the_daemon_enforces_the_configs_limits_naming_the_key() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-limits");
    let dir = TempDir::new("svc-limits");
    let config = dir.0.join("chaos.yaml");
    std::fs::write(
        &config,
        "experiments:\n  packet_loss:\n    max_probability: 0.05\n    cost_per_fault: 0.001\n  \
         dependency_failure:\n    enabled: false\n",
    )
    .unwrap();
    let daemon = Daemon::start_with(&dir.0, &["--config", config.to_str().unwrap()]);
    let cgs = cg.path.to_str().unwrap();
    let experiment = |kind: &str, intensity: &str, extra: &[&str]| {
        let mut args = vec![
            "--output",
            "json",
            "experiment",
            kind,
            "--cgroup",
            cgs,
            "--intensity",
            intensity,
            "--duration",
            "60",
        ];
        args.extend_from_slice(extra);
        daemon.ctl(&args)
    };
    for dry in [&["--dry-run"][..], &[][..]] {
        // Above max_probability: refused (3), naming the field and the config key.
        let (c, err) = failed(&experiment("packet_loss", "1", dry));
        assert_eq!(c, Some(3), "{dry:?}: {err}");
        assert!(
            err.contains(
                "intensity: 1 is not allowed; expected at most 0.05 \
                 (experiments.packet_loss.max_probability)"
            ),
            "{dry:?}: {err}"
        );
        // A disabled type: refused whatever its intensity.
        for intensity in ["1", "0.01"] {
            let (c, err) = failed(&experiment("dependency_failure", intensity, dry));
            assert_eq!(c, Some(3), "{dry:?}: {err}");
            assert!(
                err.contains("experiments.dependency_failure.enabled is false"),
                "{dry:?}: {err}"
            );
        }
    }
    assert_eq!(cg.attached(), 0, "nothing was armed by a refusal");
    // Another type keeps its defaults.
    let dry = json(&daemon.ctl_ok(&[
        "--output",
        "json",
        "experiment",
        "api_error_injection",
        "--cgroup",
        cgs,
        "--intensity",
        "1",
        "--dry-run",
    ]));
    assert_eq!(dry["dry_run"], true, "{dry}");

    // At the limit: runs, and drops about 5% of a real workload's datagrams.
    let out = experiment(
        "packet_loss",
        "0.05",
        &["--direction", "egress", "--visible-drop"],
    );
    let (c, err) = failed(&out);
    assert_eq!(c, Some(0), "{err}");
    let id = json(&String::from_utf8_lossy(&out.stdout))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sink = UdpSink::new();
    let n = 4000;
    let r = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", &n.to_string()],
    );
    assert_eq!(r.get("EPERM") + r.ok(), n);
    assert_rate(
        "visible egress drop at max_probability",
        r.get("EPERM") as f64 / n as f64,
        n,
        0.05,
        5.0,
    );
    let stopped = json(&daemon.ctl_ok(&["--output", "json", "stop", &id]));
    assert_eq!(stopped["counters"]["injected"], r.get("EPERM"), "{stopped}");
    assert_eq!(cg.attached(), 0);
}

/// The plan's lines of a table answer: everything after its first line (`dry run: ...` or
/// `started ID`).
fn plan_lines(answer: &str) -> &str {
    answer.split_once('\n').unwrap().1
}

#[test]
fn a_dry_run_shows_exactly_the_plan_the_start_arms() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-plan");
    let dir = TempDir::new("svc-plan");
    let config = dir.0.join("chaos.yaml");
    std::fs::write(
        &config,
        "experiments:\n  pod_deletion:\n    max_pods_deleted: 2\n    cost_per_pod: 1\n    \
         allowed_cgroups: ['chaos-test-svc-plan-*']\n",
    )
    .unwrap();
    let daemon = Daemon::start_with(&dir.0, &["--config", config.to_str().unwrap()]);
    let cgs = cg.path.to_str().unwrap();

    // packet_loss: a budget of 0.05 at the default 0.001 per fault is a cap of 50.
    let loss = [
        "experiment",
        "packet_loss",
        "--cgroup",
        cgs,
        "--intensity",
        "1",
        "--direction",
        "egress",
        "--visible-drop",
        "--budget",
        "0.05",
        "--duration",
        "60",
    ];
    let dry_text = daemon.ctl_ok(&[&loss[..], &["--dry-run"]].concat());
    assert!(
        dry_text.starts_with("dry run: nothing was changed\n"),
        "{dry_text}"
    );
    let dry =
        json(&daemon.ctl_ok(&[&["--output", "json"][..], &loss[..], &["--dry-run"]].concat()));
    assert_eq!(cg.attached(), 0, "a dry run attaches nothing");
    let started = json(&daemon.ctl_ok(&[&["--output", "json"][..], &loss[..]].concat()));
    assert_eq!(dry["plan"], started["plan"], "JSON plans");
    assert_eq!(dry["plan"]["max_faults"], 50, "{dry}");
    assert_eq!(dry["plan"]["cgroup"], cgs, "{dry}");
    let cgroup_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg.path).unwrap());
    assert_eq!(dry["plan"]["cgroup_id"], cgroup_id, "{dry}");
    // The armed fault is that plan: 50 drops, then the cap.
    let sink = UdpSink::new();
    let r = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", "80"],
    );
    assert_eq!((r.get("EPERM"), r.ok()), (50, 30), "{r:?}");
    daemon.ctl_ok(&["stop", started["id"].as_str().unwrap()]);
    // The table shows the same plan.
    let real_text = daemon.ctl_ok(&loss);
    assert!(real_text.starts_with("started exp-"), "{real_text}");
    assert_eq!(plan_lines(&dry_text), plan_lines(&real_text));
    daemon.ctl_ok(&["emergency-stop"]);
    daemon.ctl_ok(&["emergency-stop", "--clear"]);

    // pod_deletion on an allowed parent of two pods: the plan lists them as its changes.
    let uid = |n: u32| format!("pod{:08x}-0000-4000-8000-{:012x}", std::process::id(), n);
    let pods: Vec<_> = (0..2).map(|n| cg.child(&uid(n))).collect();
    let mut victim = {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        start_in_cgroup(&mut cmd, &pods[1]);
        cmd.spawn().unwrap()
    };
    let kill = [
        "experiment",
        "pod_deletion",
        "--cgroup",
        cgs,
        "--duration",
        "30",
    ];
    let dry_text = daemon.ctl_ok(&[&kill[..], &["--dry-run"]].concat());
    let dry =
        json(&daemon.ctl_ok(&[&["--output", "json"][..], &kill[..], &["--dry-run"]].concat()));
    assert!(
        victim.try_wait().unwrap().is_none(),
        "a dry run kills nothing"
    );
    let changes: Vec<&str> = dry["plan"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        [
            "cgroup.kill once, at most 2 pods in all; 2 pod(s) now:".to_string(),
            format!("  {}", pods[0].display()),
            format!("  {}", pods[1].display()),
        ],
        "{dry}"
    );
    assert_eq!(dry["plan"]["max_faults"], 2, "{dry}");
    let real_text = daemon.ctl_ok(&kill);
    assert_eq!(plan_lines(&dry_text), plan_lines(&real_text));
    // The one populated pod is killed.
    let status = eventually("the pod killed", Duration::from_secs(10), || {
        victim.try_wait().unwrap()
    });
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert_eq!(cg.attached(), 0);
}

#[test]
fn stop_and_emergency_stop_report_their_disarm_times_and_the_recorder_finishes() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("svc-disarm");
    let daemon = Daemon::start(&dir.0);
    let sink = UdpSink::new();
    let cgs: Vec<TestCgroup> = (0..3)
        .map(|_| TestCgroup::new(&mount, "svc-disarm"))
        .collect();
    let send = |cg: &TestCgroup| {
        workload(
            Some(&cg.path),
            &["udp-send", "--to", &sink.to(), "--count", "20"],
        )
    };
    let ids: Vec<String> = cgs
        .iter()
        .map(|cg| {
            let out = daemon.ctl_ok(&[
                "--output",
                "json",
                "experiment",
                "packet_loss",
                "--cgroup",
                cg.path.to_str().unwrap(),
                "--intensity",
                "1",
                "--direction",
                "egress",
                "--visible-drop",
                "--duration",
                "300",
            ]);
            assert_eq!(send(cg).get("EPERM"), 20, "armed");
            json(&out)["id"].as_str().unwrap().to_string()
        })
        .collect();

    // stop, as a table: the experiment and the disarm time measured at the daemon.
    let text = daemon.ctl_ok(&["stop", &ids[0]]);
    let micros: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("disarmed in ")?
                .split_once(" µs (measured at the daemon from the request's arrival)")
        })
        .map(|(n, _)| n.parse().unwrap())
        .unwrap_or_else(|| panic!("no disarm time: {text}"));
    assert!(micros >= 0.0, "{text}");
    assert!(text.contains(&ids[0]) && text.contains("stopped"), "{text}");
    assert_eq!(send(&cgs[0]).ok(), 20, "disarmed");
    // stop, as JSON.
    let stopped = json(&daemon.ctl_ok(&["--output", "json", "stop", &ids[1]]));
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(
        stopped["disarm_ns"].as_u64().is_some_and(|ns| ns > 0),
        "{stopped}"
    );
    assert_eq!(stopped["counters"]["injected"], 20, "{stopped}");

    // emergency-stop: one experiment left, disarmed; its time reported.
    let text = daemon.ctl_ok(&["emergency-stop", "--reason", "drill"]);
    assert!(
        text.starts_with("1 experiment disarmed in ")
            && text.contains(" µs (measured at the daemon from the request's arrival)"),
        "{text}"
    );
    assert_eq!(send(&cgs[2]).ok(), 20, "disarmed at once");
    // Until the recorder has released and recorded it, status shows it ended, never running.
    eventually(
        "status shows no experiment",
        Duration::from_secs(10),
        || {
            let s = json(&daemon.ctl_ok(&["--output", "json", "status"]));
            let list = s["experiments"].as_array().unwrap();
            for e in list {
                assert_eq!(e["state"], "emergency_stopped", "{s}");
            }
            list.is_empty().then_some(())
        },
    );
    let md = daemon.ctl_ok(&["report", &ids[2]]);
    assert!(md.contains("| state | emergency_stopped |"), "{md}");
    assert!(
        md.contains("| reason | emergency stop by uid 0: drill |"),
        "{md}"
    );
    let rep = json(&daemon.ctl_ok(&["report", &ids[2], "--format", "json"]));
    assert_eq!(rep["status"]["state"], "emergency_stopped", "{rep}");
    assert_eq!(rep["status"]["counters"]["injected"], 20, "{rep}");
    for cg in &cgs {
        assert_eq!(cg.attached(), 0);
    }
}
