//! The daemon's lifecycle as users run it: `chaos-daemon serve` on its Unix socket, driven by
//! `chaos-ctl`, with real workloads in a real cgroup: an experiment followed live and one
//! stopped by hand, with their reports; experiment files validated offline and applied; the
//! exit code of every refusal and the latch; who may connect; after a SIGKILL nothing stays
//! attached and the restart marks the experiment aborted.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    process::{Command, Stdio},
    time::Duration,
};

use chaos_daemon::store::Store;
use support::*;

#[test]
fn experiments_over_the_unix_socket_end_to_end() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc");
    let dir = TempDir::new("svc");
    let daemon = Daemon::start(&dir.0);
    let cgs = cg.path.to_str().unwrap();
    let server = TcpServer::start("127.0.0.1:0");

    // A connect-error experiment, followed live: WatchExperiment's counters rise. It lasts
    // until the load is done and it is stopped: a deadline the load must beat would fail on a
    // busy machine.
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
            "120s",
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
    let stopper = std::thread::spawn({
        let (addr, load) = (daemon.addr(), load);
        move || {
            let refused = load.join().unwrap();
            let out = ctl(&["--daemon", &addr, "--output", "json", "status"]);
            let status = json(&String::from_utf8_lossy(&out.stdout));
            let id = status["experiments"][0]["id"].as_str().unwrap().to_string();
            assert!(ctl(&["--daemon", &addr, "stop", &id]).status.success());
            refused
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
    let refused = stopper.join().unwrap();
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
    let id = daemon.drop_all_egress(&cg.path, "60");
    let sink = UdpSink::new();
    assert_eq!(sink.send_from(&cg.path, 100).get("EPERM"), 100);
    let status = daemon.json(&["status"]);
    assert_eq!(status["experiments"][0]["counters"]["injected"], 100);
    let stopped = daemon.json(&["stop", &id]);
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(sink.send_from(&cg.path, 100).ok(), 100);
    let md = daemon.ctl_ok(&["report", &id]);
    assert!(
        md.contains("**armed**") && md.contains("stopped by uid 0"),
        "{md}"
    );
    let rep = json(&daemon.ctl_ok(&["report", &id, "--format", "json"]));
    assert_eq!(rep["timeline"].as_array().unwrap().len(), 2);
    let last = daemon.json(&["report", "--last", "1h"]);
    let states: Vec<_> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, vec!["stopped", "stopped"]);
    assert_eq!(cg.attached(), 0);
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
    let (c, err) = failed(&ctl(&[
        "--daemon",
        "unix:///nonexistent.sock",
        "validate",
        "-f",
        f,
    ]));
    assert_eq!(c, Some(0), "{err}");
    let bad = dir.0.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\ntype: packet_loss\ntarget: {pid: 1}\nduration: 0s\nintensity: 0.1\n",
    )
    .unwrap();
    let (c, err) = failed(&ctl(&["validate", "-f", bad.to_str().unwrap()]));
    assert_eq!(c, Some(2));
    assert!(err.contains("duration"), "{err}");

    let daemon = Daemon::start(&dir.0);
    let dry = daemon.json(&["apply", "-f", f, "--dry-run"]);
    assert_eq!(dry["plan"]["cgroup"], cg.path.to_str().unwrap());
    assert_eq!(dry["plan"]["max_faults"], 5);
    assert_eq!(cg.attached(), 0, "a dry run attaches nothing");
    daemon.ctl_ok(&["apply", "-f", f]);
    let server = TcpServer::start("127.0.0.1:0");
    let r = server.connect_from(&cg.path, 20);
    assert_eq!(
        (r.get("EHOSTUNREACH"), r.ok()),
        (5, 15),
        "the file's errno and fault cap: {r:?}"
    );
}

#[test]
fn refusals_have_precise_exit_codes() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "svc-codes");
    let dir = TempDir::new("svc-codes");
    let daemon = Daemon::start(&dir.0);
    let loss = |cgroup: &str, args: &[&str]| {
        let head = ["experiment", "packet_loss", "--cgroup", cgroup];
        failed(&daemon.ctl(&[&head[..], args].concat()))
    };
    let cgs = cg.path.to_str().unwrap();
    // Invalid spec: usage (2), refused by chaos-ctl naming the field. Missing or protected
    // target, unknown id: refused by the daemon (3).
    let (c, err) = loss(cgs, &["--intensity", "2"]);
    assert_eq!(c, Some(2), "{err}");
    assert!(
        err.contains("intensity: 2 is not allowed; expected 0 to 1"),
        "{err}"
    );
    let (c, err) = loss(cgs, &[]);
    assert_eq!(c, Some(2), "{err}");
    assert!(
        err.contains("intensity: required field is missing"),
        "packet_loss has no default intensity: {err}"
    );
    let (c, err) = loss("/no-such-cgroup", &["--intensity", "1"]);
    assert_eq!(c, Some(3), "{err}");
    let (c, err) = loss("/", &["--intensity", "1"]);
    assert_eq!(c, Some(3), "{err}");
    assert!(err.contains("is protected: it is the root cgroup"), "{err}");
    let code = |args: &[&str]| daemon.ctl(args).status.code();
    assert_eq!(code(&["stop", "exp-0-0"]), Some(3));
    assert_eq!(
        code(&["experiment", "packet_loss", "--intensity", "1"]),
        Some(2),
        "clap: a target is required"
    );
    // The latch refuses new experiments until cleared.
    daemon.started(
        "packet_loss",
        &cg.path,
        &["--duration", "60", "--intensity", "0"],
    );
    let es = daemon.json(&["emergency-stop", "--reason", "drill"]);
    assert_eq!(es["disarmed"], 1);
    let (c, err) = loss(cgs, &["--intensity", "0"]);
    assert_eq!(c, Some(3), "{err}");
    assert!(err.contains("emergency stop is latched"), "{err}");
    daemon.ctl_ok(&["emergency-stop", "--clear"]);
    daemon.started(
        "packet_loss",
        &cg.path,
        &["--duration", "1", "--intensity", "0"],
    );
    // A daemon that is not there is a failure (1), and the message says which and what to do.
    let (c, err) = failed(&ctl(&["--daemon", "unix:///nonexistent.sock", "status"]));
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
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&daemon.socket), 0o600);
    assert_eq!(mode(&daemon.state), 0o700);
    // Run chaos-ctl as nobody from a copy it can execute (the checkout may be private), in a
    // directory it can traverse, so that only the socket's own permissions decide.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctl = dir.0.join("chaos-ctl");
    std::fs::copy(ctl_bin(), &ctl).unwrap();
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = || {
        failed(
            &Command::new(&ctl)
                .args(["--daemon", &daemon.addr(), "emergency-stop"])
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap(),
        )
    };
    let (c, err) = as_nobody();
    assert_eq!(c, Some(1), "{err}");
    assert!(
        err.contains("cannot reach chaos-daemon at")
            && err.contains("permission denied: the socket belongs to uid 0 with mode 0600"),
        "the 0600 socket refuses the connection: {err}"
    );
    // Even with the socket opened up by mistake, the daemon checks the peer's uid itself.
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (c, err) = as_nobody();
    assert_eq!(c, Some(3), "{err}");
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
    let sink = UdpSink::new();
    let id = {
        let mut daemon = Daemon::start(&dir.0);
        let id = daemon.drop_all_egress(&cg.path, "600");
        assert_eq!(sink.send_from(&cg.path, 50).get("EPERM"), 50);
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        id
    };
    // The kernel dropped the programs with the process.
    assert_eq!(cg.attached(), 0);
    assert_eq!(sink.send_from(&cg.path, 50).ok(), 50);

    let daemon = Daemon::start(&dir.0);
    let list = daemon.json(&["report", "--last", "1h"]);
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
