//! The daemon as users run it: `chaos-daemon serve` on a Unix socket, driven by `chaos-ctl`,
//! with real workloads in a real cgroup; the store after a SIGKILL; who may connect.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    process::{Command, Stdio},
    time::Duration,
};

use chaos_daemon::store::Store;
use support::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
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
    // Invalid spec: usage (2). Missing or protected target, unknown id: refused (3).
    assert_eq!(
        code(&[
            "experiment",
            "packet_loss",
            "--cgroup",
            cgs,
            "--intensity",
            "2"
        ]),
        Some(2)
    );
    assert_eq!(
        code(&["experiment", "packet_loss", "--cgroup", "/no-such-cgroup"]),
        Some(3)
    );
    assert_eq!(
        code(&["experiment", "packet_loss", "--cgroup", "/"]),
        Some(3)
    );
    assert_eq!(code(&["stop", "exp-0-0"]), Some(3));
    assert_eq!(
        code(&["experiment", "packet_loss"]),
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
    assert_eq!(
        code(&["experiment", "packet_loss", "--cgroup", cgs]),
        Some(3)
    );
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
    // A daemon that is not there is a failure (1).
    let gone = Command::new(ctl_bin())
        .args(["--daemon", "unix:///nonexistent.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1));
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
        err.contains("connecting"),
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
        ]);
        assert_eq!(refused.status.code(), Some(3));
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
        text.contains("== unix:///nonexistent/chaos.sock\nerror: connecting"),
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

fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{body}"))
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
    std::thread::sleep(Duration::from_millis(300));
    let body = scrape(&addr);
    assert_eq!(metric(&body, "chaos_experiments_running"), 1.0);
    assert_eq!(
        metric(
            &body,
            r#"chaos_faults_injected_total{fault="socket_error"}"#
        ),
        30.0
    );
    assert_eq!(
        metric(&body, r#"chaos_events_seen_total{fault="socket_error"}"#),
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

    daemon.ctl_ok(&["emergency-stop"]);
    let refused = daemon.ctl(&["experiment", "packet_loss", "--cgroup", cgs]);
    assert_eq!(refused.status.code(), Some(3));
    let body = scrape(&addr);
    assert_eq!(metric(&body, "chaos_experiments_running"), 0.0);
    assert_eq!(metric(&body, "chaos_emergency_stop_latched"), 1.0);
    assert_eq!(
        metric(
            &body,
            r#"chaos_experiments_finished_total{state="emergency_stopped"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &body,
            r#"chaos_disarm_latency_seconds_count{cause="emergency_stop"}"#
        ),
        1.0
    );
    assert!(
        metric(
            &body,
            r#"chaos_disarm_latency_seconds_sum{cause="emergency_stop"}"#
        ) < 0.01
    );
    assert_eq!(
        metric(
            &body,
            r#"chaos_grpc_requests_total{code="FailedPrecondition",method="StartExperiment"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &body,
            r#"chaos_faults_injected_total{fault="socket_error"}"#
        ),
        30.0,
        "monotonic after stop"
    );
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
    // More than max_experiment_cost is invalid, not exhausted.
    let out = start("2");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("budget: 2 is not allowed"));
}

#[test]
fn the_seeds_commands_work_through_the_wrapper_script() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-seed");
    let dir = TempDir::new("svc-seed");
    let daemon = Daemon::start(&dir.0);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/chaos-engineering.sh");
    let run = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .env("CHAOS_CTL", ctl_bin())
            .env("CHAOS_DAEMON", daemon.addr())
            .env("CHAOS_TARGET", format!("--cgroup {}", cg.path.display()))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // As the seed writes them (the seed's network_latency/pod_deletion are refused with the
    // reason until those faults exist).
    let (code, out) = run(&["experiment", "packet_loss", "--duration", "300"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["experiment", "dependency_failure", "--budget", "50.00"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        run(&["experiment", "network_latency", "--duration", "300"]).0,
        Some(3)
    );
    let (code, out) = run(&["status"]);
    assert_eq!(
        (code, out.matches("running").count()),
        (Some(0), 2),
        "{out}"
    );
    let (code, out) = run(&["emergency-stop"]);
    assert!(
        code == Some(0) && out.contains("2 experiments disarmed"),
        "{out}"
    );
    let (code, out) = run(&["report", "--last", "24h"]);
    assert_eq!(
        (code, out.matches("emergency_stopped").count()),
        (Some(0), 2),
        "{out}"
    );
    assert_eq!(run(&["frobnicate"]).0, Some(2));
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
