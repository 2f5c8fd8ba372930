//! One experiment model from chaos-ctl to the kernel, through a real `chaos-daemon serve`: every
//! answer names the user's experiment types; the config's limits are refused naming their key,
//! in a dry run as in a start; budgets become exact fault caps and the daily budget refuses; a
//! dry run shows exactly the plan the start arms; stop and emergency stop report their disarm
//! times and the recorder finishes.

mod support;

use std::time::Duration;

use support::{
    pods::{Pod, Sleeper},
    *,
};

/// The user's type names, the nine of the model.
const TYPES: [&str; 11] = [
    "packet_loss",
    "packet_duplication",
    "packet_corruption",
    "dependency_failure",
    "api_error_injection",
    "network_latency",
    "bandwidth_limit",
    "syscall_error",
    "pod_deletion",
    "resource_exhaustion",
    "database_load",
];

/// (id, experiment_type) of each experiment in a JSON list, sorted.
fn kinds(list: &serde_json::Value) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = list
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
    kinds.sort();
    kinds
}

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
        let args = ["--intensity", "1", "--duration", "120"];
        daemon.started(kind, &cg.path, &[&args[..], extra].concat())
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
    assert_eq!(
        server.connect_from(&cgs[0].path, 10).get("ECONNREFUSED"),
        10
    );
    assert_eq!(server.connect_from(&cgs[1].path, 10).get("ECONNRESET"), 10);
    assert_eq!(sink.send_from(&cgs[2].path, 10).get("EPERM"), 10);
    daemon.ctl_ok(&["stop", &dep]);
    let want = [
        (dep.as_str(), "dependency_failure"),
        (api.as_str(), "api_error_injection"),
        (loss.as_str(), "packet_loss"),
    ];
    let expected = |want: &[(&str, &str)]| {
        let mut v: Vec<(String, String)> = want
            .iter()
            .map(|(id, kind)| (id.to_string(), kind.to_string()))
            .collect();
        v.sort();
        v
    };

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
    let status = daemon.json(&["status"]);
    let experiments = &status["experiments"];
    assert_eq!(kinds(experiments), expected(&want[1..]), "{status}");
    for e in experiments.as_array().unwrap() {
        assert_eq!(e["counters"]["injected"], 10, "{status}");
    }

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
    let list = daemon.json(&["report", "--last", "1h"]);
    assert_eq!(kinds(&list), expected(&want));

    // capabilities: one line per user type, in JSON too.
    let caps = daemon.ctl_ok(&["capabilities"]);
    assert_users_names("capabilities", &caps);
    let mut named: Vec<&str> = caps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    named.sort_unstable();
    let mut types = TYPES.to_vec();
    types.sort_unstable();
    assert_eq!(named, types, "{caps}");
    let caps = daemon.json(&["capabilities"]);
    let mut named: Vec<&str> = caps["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["experiment_type"].as_str().unwrap())
        .collect();
    named.sort_unstable();
    assert_eq!(named, types, "{caps}");
    daemon.ctl_ok(&["emergency-stop"]);
    daemon.none_listed(Duration::from_secs(10));
    for cg in &cgs {
        cg.released();
    }
}

#[test]
fn the_daemon_enforces_the_configs_limits_naming_the_key() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-limits");
    let dir = TempDir::new("svc-limits");
    let daemon = Daemon::with_config(
        &dir.0,
        "experiments:\n  packet_loss:\n    max_probability: 0.05\n    cost_per_fault: 0.001\n  \
         dependency_failure:\n    enabled: false\n",
    );
    let experiment = |kind: &str, intensity: &str, extra: &[&str]| {
        let args = ["--intensity", intensity, "--duration", "60"];
        daemon.experiment(kind, &cg.path, &[&args[..], extra].concat())
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
    let args = ["--intensity", "1", "--dry-run"];
    let dry = daemon.experiment_ok("api_error_injection", &cg.path, &args);
    assert_eq!(dry["dry_run"], true, "{dry}");

    // At the limit: runs, and drops about 5% of a real workload's datagrams.
    let id = started_id(&experiment(
        "packet_loss",
        "0.05",
        &["--direction", "egress", "--visible-drop"],
    ));
    let sink = UdpSink::new();
    let n = 4000;
    let r = sink.send_from(&cg.path, n);
    assert_eq!(r.get("EPERM") + r.ok(), n);
    assert_rate(
        "visible egress drop at max_probability",
        r.get("EPERM") as f64 / n as f64,
        n,
        0.05,
        5.0,
    );
    let stopped = daemon.json(&["stop", &id]);
    assert_eq!(stopped["counters"]["injected"], r.get("EPERM"), "{stopped}");
    assert_eq!(cg.attached(), 0);
}

#[test]
fn budgets_become_exact_fault_caps_and_the_daily_budget_refuses() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-budget");
    let dir = TempDir::new("svc-budget");
    let daemon = Daemon::with_config(
        &dir.0,
        "budget:\n  max_experiment_cost: 1.0\n  max_daily_cost: 1.5\n  cost_per_request: 0.01\n  alert_threshold: 0.8\n",
    );
    let server = TcpServer::start("127.0.0.1:0");
    let start = |budget: &str| {
        let args = ["--duration", "60", "--intensity", "1", "--budget", budget];
        daemon.experiment("dependency_failure", &cg.path, &args)
    };

    // 0.5 at 0.01 per fault buys exactly 50 faults: the 51st connect succeeds.
    let out = start("0.5");
    let id = started_id(&out);
    let started = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (
            started["plan"]["max_faults"].as_u64(),
            started["plan"]["cgroup"].as_str()
        ),
        (Some(50), cg.path.to_str())
    );
    let r = server.connect_from(&cg.path, 80);
    assert_eq!((r.get("ECONNREFUSED"), r.ok()), (50, 30), "{r:?}");
    // The cap refused a fault: the experiment ends by itself, its budget spent.
    let status = daemon.ended(&id, Duration::from_secs(10));
    assert_eq!(
        (status["state"].as_str(), status["reason"].as_str()),
        (Some("completed"), Some("budget exhausted")),
        "{status}"
    );
    let md = daemon.ctl_ok(&["report", &id]);
    assert!(
        md.contains("| experiment | 0.5000 | 0.5000 | 100.0% |"),
        "{md}"
    );
    // One alert for the experiment's budget (0.4 of 0.5 is 80%); the day's 1.5 was not
    // reached (0.5 is 33%).
    let report = daemon.json(&["report", &id, "--format", "json"]);
    let alerts: Vec<&str> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "budget_alert")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(alerts.len(), 1, "{report}");
    assert!(
        alerts[0].contains("of the experiment's budget 0.5000 spent"),
        "{alerts:?}"
    );

    // Today: 0.5 spent. A budget of 1.0 still fits; while it runs (reserved), 0.1 does not.
    started_id(&start("1.0"));
    let (c, err) = failed(&start("0.1"));
    assert_eq!(c, Some(3), "{err}");
    assert!(err.contains("ResourceExhausted"), "{err}");
    assert!(
        err.contains(
            "the experiment needs 0.1000 but 0.0000 of today's budget.max_daily_cost is left"
        ),
        "the remaining amount: {err}"
    );
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

/// The plan's lines of a table answer: everything after its first line (`dry run: ...` or
/// `started ID`) up to the pre-flight checks (the day's budget left differs once it runs).
fn plan_lines(answer: &str) -> &str {
    let plan = answer.split_once('\n').unwrap().1;
    plan.split_once("pre-flight:")
        .map_or(plan, |(plan, _)| plan)
}

#[test]
fn a_dry_run_shows_exactly_the_plan_the_start_arms() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-plan");
    let dir = TempDir::new("svc-plan");
    let daemon = Daemon::with_config(
        &dir.0,
        "experiments:\n  pod_deletion:\n    max_pods_deleted: 2\n    cost_per_pod: 1\n    \
         allowed_cgroups: ['chaos-test-svc-plan-*']\n",
    );
    let cgs = cg.path.to_str().unwrap();
    // The same experiment as a dry run and as a start, as a table and as JSON.
    let answers = |experiment: &[&str]| {
        let dry = [experiment, &["--dry-run"]].concat();
        let dry_text = daemon.ctl_ok(&dry);
        (dry_text, daemon.json(&dry))
    };

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
    let (dry_text, dry) = answers(&loss);
    assert!(
        dry_text.starts_with("dry run: nothing was changed\n"),
        "{dry_text}"
    );
    assert_eq!(cg.attached(), 0, "a dry run attaches nothing");
    let started = daemon.json(&loss);
    assert_eq!(dry["plan"], started["plan"], "JSON plans");
    assert_eq!(dry["plan"]["max_faults"], 50, "{dry}");
    assert_eq!(dry["plan"]["cgroup"], cgs, "{dry}");
    let cgroup_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg.path).unwrap());
    assert_eq!(dry["plan"]["cgroup_id"], cgroup_id, "{dry}");
    // The armed fault is that plan: 50 drops, then the cap.
    let sink = UdpSink::new();
    let r = sink.send_from(&cg.path, 80);
    assert_eq!((r.get("EPERM"), r.ok()), (50, 30), "{r:?}");
    // At the cap its budget is spent: it ends by itself.
    let ended = daemon.ended(started["id"].as_str().unwrap(), Duration::from_secs(10));
    assert_eq!(ended["reason"], "budget exhausted", "{ended}");
    // The table shows the same plan.
    let real_text = daemon.ctl_ok(&loss);
    assert!(real_text.starts_with("started exp-"), "{real_text}");
    assert_eq!(plan_lines(&dry_text), plan_lines(&real_text));
    daemon.ctl_ok(&["emergency-stop"]);
    daemon.ctl_ok(&["emergency-stop", "--clear"]);

    // pod_deletion on an allowed parent of two pods: the plan lists them as its changes.
    let mut pods: Vec<Pod> = (0..2).map(|_| Pod::empty(&cg.path)).collect();
    pods.sort_by(|a, b| a.dir.cmp(&b.dir));
    let mut victim = Sleeper::start(&pods[1].dir);
    let kill = [
        "experiment",
        "pod_deletion",
        "--cgroup",
        cgs,
        "--duration",
        "30",
    ];
    let (dry_text, dry) = answers(&kill);
    assert_eq!(
        victim.ended_by(Duration::ZERO),
        None,
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
            format!("  {}", pods[0].dir.display()),
            format!("  {}", pods[1].dir.display()),
        ],
        "{dry}"
    );
    assert_eq!(dry["plan"]["max_faults"], 2, "{dry}");
    let real_text = daemon.ctl_ok(&kill);
    assert_eq!(plan_lines(&dry_text), plan_lines(&real_text));
    // The one populated pod is killed.
    assert_eq!(
        victim.ended_by(Duration::from_secs(10)),
        Some(libc::SIGKILL),
        "the pod killed"
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
    let send = |cg: &TestCgroup| sink.send_from(&cg.path, 20);
    let ids: Vec<String> = cgs
        .iter()
        .map(|cg| {
            let id = daemon.drop_all_egress(&cg.path, "300");
            assert_eq!(send(cg).get("EPERM"), 20, "armed");
            id
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
    let stopped = daemon.json(&["stop", &ids[1]]);
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
            let s = daemon.json(&["status"]);
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
        cg.released();
    }
}

#[test]
fn the_days_books_survive_a_daemon_sigkill() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-books");
    let dir = TempDir::new("svc-books");
    let config = "budget:\n  max_experiment_cost: 1.0\n  max_daily_cost: 1.0\n  \
                  cost_per_request: 0.01\n";
    let mut daemon = Daemon::with_config(&dir.0, config);
    let server = TcpServer::start("127.0.0.1:0");
    let args = ["--duration", "60", "--intensity", "1", "--budget", "0.5"];
    let id = daemon.started("dependency_failure", &cg.path, &args);
    let r = server.connect_from(&cg.path, 30);
    assert_eq!(r.get("ECONNREFUSED"), 30, "{r:?}");
    // Spent 0.3: once a snapshot recorded it (every second), the daemon dies.
    eventually("the spend is recorded", Duration::from_secs(10), || {
        let rep = daemon.json(&["report", &id, "--format", "json"]);
        (rep["report"]["snapshots"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["injected"] == 30)))
        .then_some(())
    });
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    drop(daemon);

    let daemon = Daemon::with_config(&dir.0, config);
    let row = daemon.json(&["report", &id, "--format", "json"]);
    assert_eq!(row["status"]["state"], "aborted", "{row}");
    assert_eq!(cg.attached(), 0, "its programs died with it");
    // 0.3 of the day's 1.0 is gone: 0.8 does not fit, 0.7 does.
    let (code, err) = failed(&daemon.experiment(
        "dependency_failure",
        &cg.path,
        &["--intensity", "1", "--budget", "0.8"],
    ));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains(
            "the experiment needs 0.8000 but 0.7000 of today's budget.max_daily_cost is left"
        ),
        "{err}"
    );
    let id = daemon.started(
        "dependency_failure",
        &cg.path,
        &["--intensity", "1", "--budget", "0.7"],
    );
    daemon.ctl_ok(&["stop", &id]);
}
