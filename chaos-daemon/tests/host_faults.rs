//! Faults made with cgroup files, on the host kernel: pod kill through the daemon and
//! chaos-ctl (every process of the target tree dies, nothing outside; the kill cap and the
//! budget hold), the capability table of this kernel and the refusals it gives, and the
//! host-change journal putting a knob back after a crash.

mod support;

use std::{
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chaos_daemon::{
    engine::Engine,
    journal::{ChangeKind, HostChange, HostJournal as _},
    store::Store,
    target::Resolver,
};
use support::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// A `sleep` in `cgroup`, killed on drop if still alive.
struct Sleeper(Child);

impl Sleeper {
    fn start(cgroup: &Path) -> Self {
        let mut cmd = Command::new("sleep");
        cmd.arg("600").stdout(Stdio::null());
        start_in_cgroup(&mut cmd, cgroup);
        Self(cmd.spawn().unwrap())
    }

    /// The signal that ended it, if it ended within `within`.
    fn ended_by(&mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.signal();
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("chaos.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// The id of the experiment a `chaos-ctl --output json experiment` run started.
fn started_id(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{out:?}");
    json(&String::from_utf8_lossy(&out.stdout))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until the experiment is no longer running; returns its status JSON.
fn ended(daemon: &Daemon, id: &str, within: Duration) -> serde_json::Value {
    let until = Instant::now() + within;
    loop {
        let rep = json(&daemon.ctl_ok(&["report", id, "--format", "json"]));
        let status = rep["status"].clone();
        if status["state"] != "running" {
            return status;
        }
        assert!(Instant::now() < until, "{id} still running: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const KILL_CONFIG: &str = "budget:\n  max_experiment_cost: 100\n  max_daily_cost: 500\n  \
    cost_per_request: 0.001\n  alert_threshold: 0.8\nexperiments:\n  pod_deletion:\n    \
    max_pods_deleted: 2\n    cost_per_pod: 10\n";

#[test]
fn pod_kill_kills_every_process_in_the_target_tree_and_nothing_outside() {
    let Some(mount) = kernel() else { return };
    let pod = TestCgroup::new(&mount, "podkill");
    let outside = TestCgroup::new(&mount, "podkill-out");
    let dir = TempDir::new("podkill");
    let daemon = Daemon::start_with(&dir.0, &["--config", &config(&dir.0, KILL_CONFIG)]);
    let (c1, c2) = (pod.child("app"), pod.child("app/sidecar"));
    let mut victims: Vec<Sleeper> = [&pod.path, &pod.path, &c1, &c2]
        .iter()
        .map(|cg| Sleeper::start(cg))
        .collect();
    let mut bystander = Sleeper::start(&outside.path);

    let out = daemon.ctl_ok(&[
        "--output",
        "json",
        "experiment",
        "pod_deletion",
        "--cgroup",
        pod.path.to_str().unwrap(),
        "--duration",
        "30",
    ]);
    let id = json(&out)["id"].as_str().unwrap().to_string();
    for (i, v) in victims.iter_mut().enumerate() {
        assert_eq!(
            v.ended_by(Duration::from_secs(5)),
            Some(libc::SIGKILL),
            "victim {i}"
        );
    }
    assert_eq!(bystander.ended_by(Duration::from_millis(200)), None);
    // A one-shot kill ends the experiment at once, charged one pod.
    let status = ended(&daemon, &id, Duration::from_secs(5));
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["counters"]["injected"], 1, "{status}");
    assert_eq!(status["spent"], 10.0, "{status}");
    assert_eq!(
        bystander.ended_by(Duration::ZERO),
        None,
        "outside still alive"
    );
}

#[test]
fn repeated_pod_kills_stop_at_max_pods_deleted_and_the_budget() {
    let Some(mount) = kernel() else { return };
    let pod = TestCgroup::new(&mount, "podkill-rep");
    let dir = TempDir::new("podkill-rep");
    let daemon = Daemon::start_with(&dir.0, &["--config", &config(&dir.0, KILL_CONFIG)]);
    let start = |budget: &str| {
        daemon.ctl(&[
            "--output",
            "json",
            "experiment",
            "pod_deletion",
            "--cgroup",
            pod.path.to_str().unwrap(),
            "--duration",
            "20",
            "--interval",
            "200ms",
            "--budget",
            budget,
        ])
    };
    // Budget for 10 pods, but max_pods_deleted is 2: the "restarted" pod dies twice, then lives.
    let out = start("100");
    let id = started_id(&out);
    for round in 0..2 {
        let mut s = Sleeper::start(&pod.path);
        assert_eq!(
            s.ended_by(Duration::from_secs(5)),
            Some(libc::SIGKILL),
            "kill {round}"
        );
    }
    let mut survivor = Sleeper::start(&pod.path);
    let status = ended(&daemon, &id, Duration::from_secs(5));
    assert_eq!(survivor.ended_by(Duration::from_millis(600)), None);
    assert_eq!(status["counters"]["injected"], 2, "{status}");
    assert_eq!(status["spent"], 20.0, "{status}");
    drop(survivor);

    // A budget of 15 buys one pod at 10 each.
    let out = start("15");
    let id = started_id(&out);
    let mut s = Sleeper::start(&pod.path);
    assert_eq!(s.ended_by(Duration::from_secs(5)), Some(libc::SIGKILL));
    let mut survivor = Sleeper::start(&pod.path);
    assert_eq!(survivor.ended_by(Duration::from_millis(600)), None);
    assert_eq!(
        ended(&daemon, &id, Duration::from_secs(5))["counters"]["injected"],
        1
    );
    drop(survivor);

    // A budget below one pod is refused before anything is killed.
    let mut s = Sleeper::start(&pod.path);
    let out = start("5");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("budget"),
        "{out:?}"
    );
    assert_eq!(s.ended_by(Duration::from_millis(300)), None);
}

#[test]
fn the_capability_table_is_this_kernels_and_unsupported_faults_are_refused_with_the_reason() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("caps");
    let daemon = Daemon::start(&dir.0);
    let caps = json(&daemon.ctl_ok(&["--output", "json", "capabilities"]));
    let verdict = |fault: &str| {
        let c = caps["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["fault"] == fault)
            .unwrap_or_else(|| panic!("{fault} missing: {caps}"))
            .clone();
        (
            c["supported"].as_bool().unwrap(),
            c["reason"].as_str().unwrap().to_string(),
        )
    };
    let uname = nix::sys::utsname::uname().unwrap();
    assert_eq!(caps["kernel"], uname.release().to_str().unwrap());
    for fault in ["packet_loss", "socket_error", "pod_kill"] {
        assert_eq!(verdict(fault), (true, String::new()), "{fault}");
    }
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap();
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    let (ok, reason) = verdict("resource_pressure");
    assert_eq!(ok, has("cpu") && has("memory"), "{reason}");
    if !ok {
        // The hosts here: cpu and memory are bound to cgroup v1.
        assert!(reason.contains("controller"), "{reason}");
        let cg = TestCgroup::new(&mount, "caps");
        let out = daemon.ctl(&[
            "experiment",
            "resource_exhaustion",
            "--cgroup",
            cg.path.to_str().unwrap(),
            "--duration",
            "5",
        ]);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("resource_pressure is not supported") && err.contains("controller"),
            "{err}"
        );
        let store = Store::open(&daemon.state).unwrap();
        assert_eq!(store.pending().unwrap(), vec![], "nothing journaled");
    }
    // The probe cleaned up after itself.
    let leftovers: Vec<_> = std::fs::read_dir(&mount)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("chaos-probe-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_knob_left_changed_by_a_killed_daemon_is_put_back_at_the_next_start() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "journal");
    let dir = TempDir::new("journal");
    // cgroup.max.depth is a core knob every cgroup2 has (cpu/memory are not on this host).
    let knob = cg.path.join("cgroup.max.depth");
    let old = std::fs::read_to_string(&knob).unwrap().trim().to_string();
    {
        // What a daemon does before tightening a knob, then dies without undoing it.
        let store = Store::open(&dir.0).unwrap();
        let change = HostChange {
            kind: ChangeKind::CgroupKnob,
            path: knob.display().to_string(),
            old_value: old.clone(),
        };
        store.record("exp-crashed", &change).unwrap();
        std::fs::write(&knob, "3").unwrap();
    }
    assert_eq!(std::fs::read_to_string(&knob).unwrap().trim(), "3");
    let journal = Box::new(Store::open(&dir.0).unwrap());
    let engine =
        Engine::with_journal(Resolver::new(mount.clone()).unwrap(), journal).expect("engine");
    assert_eq!(std::fs::read_to_string(&knob).unwrap().trim(), old);
    assert_eq!(Store::open(&dir.0).unwrap().pending().unwrap(), vec![]);
    drop(engine);
}

#[test]
fn latency_is_priced_per_minute_and_a_budget_that_cannot_cover_the_duration_is_refused() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "latency-budget");
    let dir = TempDir::new("latency-budget");
    let yaml = "experiments:\n  network_latency:\n    cost_per_minute: 0.10\n";
    let daemon = Daemon::start_with(&dir.0, &["--config", &config(&dir.0, yaml)]);
    let start = |budget: &str| {
        daemon.ctl(&[
            "experiment",
            "network_latency",
            "--cgroup",
            cg.path.to_str().unwrap(),
            "--latency-ms",
            "20",
            "--duration",
            "10m",
            "--budget",
            budget,
        ])
    };
    // Ten minutes at 0.10 a minute need 1.0.
    let out = start("0.5");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not cover") && err.contains("1.0000"),
        "{err}"
    );
    // Enough money: what refuses it now (on a kernel without sch_fq) is the kernel, or it runs.
    let out = start("1.0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("does not cover"), "{err}");
}
