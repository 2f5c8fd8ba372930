//! Several daemons driven at once and the daemon seen from outside: chaos-ctl `--daemons`
//! fans an emergency stop out to every daemon and reports each answer (one down fails the
//! run), and fans starts and stops out, skipping nodes without the target or the id; the
//! Prometheus metrics count experiments, faults, requests and disarms; the seed's wrapper
//! script runs the examples of its `--help` as written.

mod support;

use std::{path::PathBuf, process::Command, time::Duration};

use support::*;

/// `n` daemons and a `--daemons` list naming each (with a comment, as operators write them).
/// The daemons are killed before their directories are removed.
struct Fleet {
    daemons: Vec<Daemon>,
    list: PathBuf,
    _dirs: Vec<TempDir>,
    _list_dir: TempDir,
}

impl Fleet {
    fn start(n: usize, tag: &str) -> Self {
        let dirs: Vec<TempDir> = (0..n).map(|_| TempDir::new(tag)).collect();
        let daemons: Vec<Daemon> = dirs.iter().map(|d| Daemon::start(&d.0)).collect();
        let list_dir = TempDir::new(&format!("{tag}-list"));
        let list = list_dir.0.join("daemons");
        let fleet = Self {
            daemons,
            list,
            _dirs: dirs,
            _list_dir: list_dir,
        };
        fleet.list_with(&[]);
        fleet
    }

    /// Rewrites the list: every daemon of the fleet, then `more` addresses.
    fn list_with(&self, more: &[&str]) {
        let mut text: String = self
            .daemons
            .iter()
            .map(|d| format!("{}  # node\n", d.addr()))
            .collect();
        text.extend(more.iter().map(|addr| format!("{addr}\n")));
        std::fs::write(&self.list, text).unwrap();
    }

    /// Runs `chaos-ctl --daemons LIST ARGS`.
    fn ctl(&self, args: &[&str]) -> std::process::Output {
        ctl(&[&["--daemons", self.list.to_str().unwrap()], args].concat())
    }

    /// The JSON answers (one per daemon) of `chaos-ctl --daemons LIST --output json ARGS`,
    /// asserting success.
    fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let out = self.ctl(&[&["--output", "json"], args].concat());
        let (c, err) = failed(&out);
        assert_eq!(c, Some(0), "{err}");
        let answers = json(&String::from_utf8_lossy(&out.stdout));
        answers.as_array().unwrap().clone()
    }
}

#[test]
fn emergency_stop_reaches_every_daemon_and_reports_each_answer() {
    let Some(mount) = kernel() else { return };
    let fleet = Fleet::start(3, "svc-es");
    let cgs: Vec<TestCgroup> = (0..3).map(|_| TestCgroup::new(&mount, "svc-es")).collect();
    let sink = UdpSink::new();
    for (d, cg) in fleet.daemons.iter().zip(&cgs) {
        d.drop_all_egress(&cg.path, "600");
        let r = sink.send_from(&cg.path, 20);
        assert_eq!(r.get("EPERM"), 20, "the fault is live before the stop");
    }

    let answers = fleet.json(&["emergency-stop", "--reason", "drill"]);
    assert_eq!(answers.len(), 3);
    for (a, d) in answers.iter().zip(&fleet.daemons) {
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
        let r = sink.send_from(&cg.path, 20);
        assert_eq!(r.ok(), 20, "faults are gone on every node");
        cg.released();
    }
    // The latch holds on every daemon until cleared everywhere.
    for (d, cg) in fleet.daemons.iter().zip(&cgs) {
        let refused = d.experiment("packet_loss", &cg.path, &["--intensity", "1"]);
        assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    }
    let latched = |on: bool| {
        fleet
            .json(&["status"])
            .iter()
            .all(|a| a["answer"]["emergency_stop"] == on)
    };
    assert!(latched(true));
    assert!(fleet.ctl(&["emergency-stop", "--clear"]).status.success());
    assert!(latched(false));

    // One daemon down: the others still answer, every answer is shown, the exit is a failure.
    fleet.list_with(&["unix:///nonexistent/chaos.sock"]);
    let out = fleet.ctl(&["emergency-stop"]);
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

#[test]
fn fanned_out_start_and_stop_skip_nodes_without_the_target_or_id() {
    let Some(mount) = kernel() else { return };
    let fleet = Fleet::start(2, "svc-fan");
    let cg = TestCgroup::new(&mount, "svc-fan");

    // Every node has this cgroup here (one host): both start it.
    let cgs = cg.path.to_str().unwrap();
    fn start(cgroup: &str) -> Vec<&str> {
        let head = ["experiment", "packet_loss", "--cgroup", cgroup];
        [&head[..], &["--duration", "60", "--intensity", "0"]].concat()
    }
    let ids: Vec<String> = fleet
        .json(&start(cgs))
        .iter()
        .map(|a| a["answer"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    // Ids are unique across nodes even when both start in the same millisecond.
    assert_ne!(ids[0], ids[1]);
    // An id lives on one node: the other answers "not on this node" and the stop succeeds.
    let out = fleet.ctl(&["stop", &ids[0]]);
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
    let out = fleet.ctl(&start("/chaos-no-such-cgroup"));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("not on this node")
            .count(),
        2
    );
    assert!(fleet.ctl(&["stop", &ids[1]]).status.success());
    assert_eq!(cg.attached(), 0);
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

/// Scrapes `addr` until `series` has the value `value`; returns that body.
fn scraped_once(addr: &str, series: &str, value: f64) -> String {
    eventually(
        &format!("{series} at {value}"),
        Duration::from_secs(10),
        || {
            let body = scrape(addr);
            (try_metric(&body, series) == Some(value)).then_some(body)
        },
    )
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
    let args = ["--duration", "600", "--intensity", "1"];
    daemon.started("dependency_failure", &cg.path, &args);
    let r = server.connect_from(&cg.path, 30);
    assert_eq!(r.get("ECONNREFUSED"), 30);
    // The reaper brings the fault counters up to date every 50 ms.
    let injected = r#"chaos_faults_injected_total{type="dependency_failure"}"#;
    let body = scraped_once(&addr, injected, 30.0);
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

    let es = daemon.json(&["emergency-stop"]);
    assert_eq!(es["disarmed"], 1);
    let disarm_ns = es["disarm_ns"].as_u64().unwrap();
    let refused = daemon.experiment("packet_loss", &cg.path, &["--intensity", "1"]);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    // Releasing and recording continue on the daemon's recorder: wait for its record.
    let body = scraped_once(
        &addr,
        r#"chaos_experiments_finished_total{state="emergency_stopped"}"#,
        1.0,
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
    let caps = daemon.json(&["capabilities"]);
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
    cg.released();
}
