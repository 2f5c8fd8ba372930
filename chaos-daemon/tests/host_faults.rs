//! Faults made with cgroup files, on the host kernel, through the daemon and chaos-ctl: pod
//! deletion (every process of a pod dies, nothing outside; each pod killed counts against
//! `max_pods_deleted`, `max_pods` and the budget; only pods, containers and allowed cgroups,
//! never the node's own services; pod name patterns; the kill switch does not wait for a kill
//! that waits for a frozen process), the capability table of this kernel and the refusals it
//! gives, and the host-change journal putting a knob back after a crash.
//!
//! The test cgroups (`chaos-test-*`) are neither pods nor containers: tests build kubelet's
//! cgroupfs layout below them (`pod<uid>/<64 hex container id>`) or allow them by name in
//! `experiments.pod_deletion.allowed_cgroups`.

mod support;

use std::{
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chaos_daemon::{
    engine::Engine,
    host::random_u64,
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

    fn pid(&self) -> u32 {
        self.0.id()
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

/// `n` random hex digits.
fn hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s += &format!("{:016x}", random_u64());
    }
    s.truncate(n);
    s
}

/// A pod in kubelet's cgroupfs layout under `parent`: `pod<uid>` with one container cgroup
/// (`<64 hex>`), a "pause" process in the pod and an "app" process in the container.
struct Pod {
    uid: String,
    dir: PathBuf,
    processes: Vec<Sleeper>,
}

impl Pod {
    /// The pod with its processes.
    fn new(parent: &Path) -> Self {
        let (mut pod, container) = Self::layout(parent);
        pod.processes = vec![Sleeper::start(&pod.dir), Sleeper::start(&container)];
        pod
    }

    /// The pod's cgroups without processes.
    fn empty(parent: &Path) -> Self {
        Self::layout(parent).0
    }

    /// Creates `pod<uid>/<container id>` under `parent`; returns the pod and its container.
    fn layout(parent: &Path) -> (Self, PathBuf) {
        let h = hex(32);
        let uid = format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        let dir = parent.join(format!("pod{uid}"));
        let container = dir.join(hex(64));
        std::fs::create_dir_all(&container).unwrap();
        let pod = Self {
            uid,
            dir,
            processes: Vec::new(),
        };
        (pod, container)
    }

    /// Whether every process of the pod was SIGKILLed within `within` (`false`: all alive).
    /// Panics on a mix: a pod dies whole or not at all.
    fn killed(&mut self, within: Duration) -> bool {
        let ends: Vec<Option<i32>> = self
            .processes
            .iter_mut()
            .map(|p| p.ended_by(within))
            .collect();
        match ends.as_slice() {
            e if e.iter().all(|s| *s == Some(libc::SIGKILL)) => true,
            e if e.iter().all(Option::is_none) => false,
            e => panic!("pod {} died in part: {e:?}", self.uid),
        }
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

/// (exit code, stderr) of a chaos-ctl run.
fn failed(out: &std::process::Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// Waits until the daemon lists no experiment as running or ending (its recorder finished).
fn none_running(daemon: &Daemon, within: Duration) {
    let until = Instant::now() + within;
    loop {
        let status = json(&daemon.ctl_ok(&["--output", "json", "status"]));
        if status["experiments"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(Instant::now() < until, "still listed: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const KILL_CONFIG: &str = "budget:\n  max_experiment_cost: 100\n  max_daily_cost: 500\n  \
    cost_per_request: 0.001\n  alert_threshold: 0.8\nexperiments:\n  pod_deletion:\n    \
    max_pods_deleted: 2\n    cost_per_pod: 10\n";

/// [`KILL_CONFIG`] that also allows the test cgroups tagged `tag` as pod deletion targets.
fn allowing(tag: &str) -> String {
    format!("{KILL_CONFIG}    allowed_cgroups: ['chaos-test-{tag}-*']\n")
}

#[test]
fn pod_kill_kills_every_process_of_the_pod_and_nothing_outside() {
    let Some(mount) = kernel() else { return };
    let node = TestCgroup::new(&mount, "podkill");
    let outside = TestCgroup::new(&mount, "podkill-out");
    let dir = TempDir::new("podkill");
    let daemon = Daemon::start_with(&dir.0, &["--config", &config(&dir.0, KILL_CONFIG)]);
    let mut pod = Pod::new(&node.path);
    let mut neighbour = Pod::new(&node.path);
    // A second container and a process in a nested cgroup: the whole tree dies.
    let extra = pod.dir.join(hex(64)).join("nested");
    std::fs::create_dir_all(&extra).unwrap();
    pod.processes.push(Sleeper::start(&extra));
    let mut bystander = Sleeper::start(&outside.path);

    let out = daemon.ctl_ok(&[
        "--output",
        "json",
        "experiment",
        "pod_deletion",
        "--pod-uid",
        &pod.uid,
        "--duration",
        "30",
    ]);
    let started = json(&out);
    assert_eq!(started["plan"]["cgroup"], pod.dir.to_str().unwrap());
    let id = started["id"].as_str().unwrap().to_string();
    assert!(
        pod.killed(Duration::from_secs(5)),
        "every process of the pod"
    );
    assert!(
        !neighbour.killed(Duration::from_millis(200)),
        "the pod next to it"
    );
    assert_eq!(bystander.ended_by(Duration::ZERO), None, "outside");
    // A one-shot kill ends the experiment at once, charged one pod.
    let status = ended(&daemon, &id, Duration::from_secs(5));
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["experiment_type"], "pod_deletion", "{status}");
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
    let node = TestCgroup::new(&mount, "podkill-rep");
    let dir = TempDir::new("podkill-rep");
    let daemon = Daemon::start_with(&dir.0, &["--config", &config(&dir.0, KILL_CONFIG)]);
    let pod = Pod::empty(&node.path);
    let start = |budget: &str| {
        daemon.ctl(&[
            "--output",
            "json",
            "experiment",
            "pod_deletion",
            "--pod-uid",
            &pod.uid,
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
        let mut s = Sleeper::start(&pod.dir);
        assert_eq!(
            s.ended_by(Duration::from_secs(5)),
            Some(libc::SIGKILL),
            "kill {round}"
        );
    }
    let mut survivor = Sleeper::start(&pod.dir);
    let status = ended(&daemon, &id, Duration::from_secs(5));
    assert_eq!(survivor.ended_by(Duration::from_millis(600)), None);
    assert_eq!(status["counters"]["injected"], 2, "{status}");
    assert_eq!(status["spent"], 20.0, "{status}");
    drop(survivor);

    // A budget of 15 buys one pod at 10 each.
    let out = start("15");
    let id = started_id(&out);
    let mut s = Sleeper::start(&pod.dir);
    assert_eq!(s.ended_by(Duration::from_secs(5)), Some(libc::SIGKILL));
    let mut survivor = Sleeper::start(&pod.dir);
    assert_eq!(survivor.ended_by(Duration::from_millis(600)), None);
    assert_eq!(
        ended(&daemon, &id, Duration::from_secs(5))["counters"]["injected"],
        1
    );
    drop(survivor);

    // A budget below one pod is refused (3) before anything is killed.
    let mut s = Sleeper::start(&pod.dir);
    let (c, err) = failed(&start("5"));
    assert_eq!(c, Some(3), "{err}");
    assert!(
        err.contains("budget: 5 does not cover") && err.contains("cost_per_pod"),
        "{err}"
    );
    assert_eq!(s.ended_by(Duration::from_millis(300)), None);
}

#[test]
fn pod_deletion_counts_each_pod_it_kills() {
    let Some(mount) = kernel() else { return };
    let node = TestCgroup::new(&mount, "podcount");
    let dir = TempDir::new("podcount");
    let daemon = Daemon::start_with(
        &dir.0,
        &["--config", &config(&dir.0, &allowing("podcount"))],
    );
    let mut pods: Vec<Pod> = (0..3).map(|_| Pod::new(&node.path)).collect();
    pods.sort_by(|a, b| a.dir.cmp(&b.dir));
    let args = [
        "--output",
        "json",
        "experiment",
        "pod_deletion",
        "--cgroup",
        node.path.to_str().unwrap(),
        "--duration",
        "30",
        "--budget",
        "100",
    ];
    // The allowed parent holds three pods; the cap is max_pods_deleted = 2 (the budget buys 10).
    let dry = json(&daemon.ctl_ok(&[&args[..], &["--dry-run"]].concat()));
    assert_eq!(dry["plan"]["max_faults"], 2, "{dry}");
    assert_eq!(
        dry["plan"]["changes"][0], "cgroup.kill once, at most 2 pods in all; 3 pod(s) now:",
        "{dry}"
    );
    let id = started_id(&daemon.ctl(&args));
    let killed: Vec<bool> = pods
        .iter_mut()
        .map(|p| p.killed(Duration::from_secs(2)))
        .collect();
    // Pods are killed one by one in path order: the first two, not the third.
    assert_eq!(killed, [true, true, false]);
    let status = ended(&daemon, &id, Duration::from_secs(5));
    assert_eq!(status["state"], "completed", "{status}");
    let c = &status["counters"];
    assert_eq!(
        [&c["matched"], &c["injected"], &c["capped"]],
        [3, 2, 1],
        "3 populated pods, 2 killed, 1 spared by the cap: {status}"
    );
    assert_eq!(status["spent"], 20.0, "2 x cost_per_pod: {status}");
    assert!(
        !pods[2].killed(Duration::from_millis(300)),
        "the third lives"
    );
}

#[test]
fn only_pods_containers_and_allowed_cgroups_are_killed_and_protected_wins() {
    let Some(mount) = kernel() else { return };
    let plain = TestCgroup::new(&mount, "podrefuse");
    let dir = TempDir::new("podrefuse");
    let yaml = format!(
        "{KILL_CONFIG}    allowed_cgroups: ['chaos-test-podrefuse-allowed-*', 'kubelet.service']\n"
    );
    let daemon = Daemon::start_with(&dir.0, &["--config", &config(&dir.0, &yaml)]);
    let kill = |cgroup: &Path, dry: bool| {
        let mut args = vec![
            "experiment",
            "pod_deletion",
            "--cgroup",
            cgroup.to_str().unwrap(),
        ];
        if dry {
            args.push("--dry-run");
        }
        failed(&daemon.ctl(&args))
    };

    // Neither a pod nor a container nor allowed.
    let mut alive = Sleeper::start(&plain.path);
    for dry in [true, false] {
        let (c, err) = kill(&plain.path, dry);
        assert_eq!(c, Some(3), "{err}");
        assert!(
            err.contains("not a pod or a container cgroup")
                && err.contains("experiments.pod_deletion.allowed_cgroups"),
            "{err}"
        );
    }

    // The node's own services: a kubelet.service, and an allowed cgroup holding one.
    let allowed = TestCgroup::new(&mount, "podrefuse-allowed");
    let kubelet = allowed.child("kubelet.service");
    let mut kubelet_proc = Sleeper::start(&kubelet);
    for (target, why) in [
        (&kubelet, "its name is in safety_checks.protected_cgroups"),
        (
            &allowed.path,
            "whose name is in safety_checks.protected_cgroups",
        ),
    ] {
        for dry in [true, false] {
            let (c, err) = kill(target, dry);
            assert_eq!(c, Some(3), "{err}");
            assert!(
                err.contains("is protected") && err.contains(why),
                "protected wins over allowed_cgroups: {err}"
            );
        }
    }
    // Also below a plain cgroup, allowed or not.
    let nested = plain.child("kubelet.service");
    let (c, err) = kill(&nested, false);
    assert_eq!(c, Some(3), "{err}");
    assert!(err.contains("safety_checks.protected_cgroups"), "{err}");
    assert_eq!(alive.ended_by(Duration::from_millis(300)), None);
    assert_eq!(kubelet_proc.ended_by(Duration::ZERO), None);
    let list = json(&daemon.ctl_ok(&["--output", "json", "report", "--last", "1h"]));
    assert_eq!(list, serde_json::json!([]), "nothing was started");
}

#[test]
fn pod_name_patterns_and_max_pods_from_experiment_types() {
    let Some(mount) = kernel() else { return };
    let node = TestCgroup::new(&mount, "podnames");
    let dir = TempDir::new("podnames");
    let yaml = format!(
        "{}experiment_types:\n  pod_deletion:\n    parameters:\n      pods: ['frontend-*']\n      \
         max_pods: 1\n",
        allowing("podnames")
    );
    let daemon = Daemon::start_with(&dir.0, &["--config", &config(&dir.0, &yaml)]);
    let mut pods: Vec<Pod> = (0..2).map(|_| Pod::new(&node.path)).collect();
    let start = |pod_name: Option<&str>| {
        let mut args = vec![
            "--output",
            "json",
            "experiment",
            "pod_deletion",
            "--cgroup",
            node.path.to_str().unwrap(),
            "--duration",
            "30",
        ];
        if let Some(name) = pod_name {
            args.extend(["--pod-name", name]);
        }
        daemon.ctl(&args)
    };
    let (c, err) = failed(&start(None));
    assert_eq!(c, Some(3), "{err}");
    assert!(
        err.contains("target.pod_name")
            && err.contains(
                "a pod named like frontend-* (experiment_types.pod_deletion.parameters.pods)"
            ),
        "{err}"
    );
    let (c, err) = failed(&start(Some("shop/backend-1")));
    assert_eq!(c, Some(3), "{err}");
    assert!(
        err.contains("\"shop/backend-1\"")
            && err.contains("experiment_types.pod_deletion.parameters.pods"),
        "{err}"
    );
    for p in &mut pods {
        assert!(!p.killed(Duration::ZERO), "a refusal kills nothing");
    }
    // A matching name runs; max_pods 1 is below max_pods_deleted 2: one pod of the two.
    let out = start(Some("shop/frontend-1"));
    let started = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(started["plan"]["max_faults"], 1, "{out:?}");
    let id = started_id(&out);
    let killed: Vec<bool> = pods
        .iter_mut()
        .map(|p| p.killed(Duration::from_secs(2)))
        .collect();
    assert_eq!(killed.iter().filter(|k| **k).count(), 1, "{killed:?}");
    let status = ended(&daemon, &id, Duration::from_secs(5));
    assert_eq!(status["counters"]["injected"], 1, "{status}");
    assert_eq!(status["spent"], 10.0, "{status}");
}

/// A cgroup v1 freezer group, thawed, emptied and removed on drop.
struct Freezer(PathBuf);

impl Freezer {
    const ROOT: &str = "/sys/fs/cgroup/freezer";

    fn available() -> bool {
        Path::new(Self::ROOT).join("freezer.state").exists()
            || Path::new(Self::ROOT).join("tasks").exists()
    }

    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = Path::new(Self::ROOT).join(format!(
            "chaos-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).unwrap();
        Self(path)
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    fn state(&self) -> String {
        std::fs::read_to_string(self.0.join("freezer.state"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Freezes the group and waits until every task is frozen.
    fn freeze(&self) {
        std::fs::write(self.0.join("freezer.state"), "FROZEN").unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while self.state() != "FROZEN" {
            assert!(Instant::now() < until, "freezer state {}", self.state());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn thaw(&self) {
        std::fs::write(self.0.join("freezer.state"), "THAWED").unwrap();
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        if let Ok(procs) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: a plain syscall; the pids are the test's own processes.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let until = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.0).is_err() && self.0.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether SIGKILL is pending for `pid` (sent, not yet acted on).
fn sigkill_pending(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|l| {
        ["SigPnd:", "ShdPnd:"].iter().any(|k| {
            l.strip_prefix(k)
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .is_some_and(|mask| mask & (1 << (libc::SIGKILL - 1)) != 0)
        })
    })
}

#[test]
fn the_kill_switch_does_not_wait_for_a_kill_of_a_frozen_pod() {
    let Some(mount) = kernel() else { return };
    let node = TestCgroup::new(&mount, "podfrozen");
    let dir = TempDir::new("podfrozen");
    let daemon = Daemon::start_with(&dir.0, &["--config", &config(&dir.0, KILL_CONFIG)]);
    let mut pod = Pod::new(&node.path);
    pod.processes.truncate(1);
    // A process cgroup.kill cannot take away: frozen by the v1 freezer, SIGKILL stays pending
    // (a SIGSTOPped process would die at once).
    assert!(
        Freezer::available(),
        "this test needs the cgroup v1 freezer at {}",
        Freezer::ROOT
    );
    let freezer = Freezer::new("podfrozen");
    let victim = pod.processes[0].pid();
    freezer.add(victim);
    freezer.freeze();

    let out = daemon.ctl(&[
        "--output",
        "json",
        "experiment",
        "pod_deletion",
        "--pod-uid",
        &pod.uid,
        "--interval",
        "200ms",
        "--duration",
        "60",
    ]);
    let id = started_id(&out);
    // The worker wrote cgroup.kill and now waits for the pod to empty, which it cannot.
    let until = Instant::now() + Duration::from_secs(5);
    while !sigkill_pending(victim) {
        assert!(Instant::now() < until, "cgroup.kill was never written");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(freezer.state(), "FROZEN");
    let waited = Instant::now();
    let out = daemon.ctl(&["--output", "json", "emergency-stop", "--reason", "frozen"]);
    let took = waited.elapsed();
    let (c, err) = failed(&out);
    assert_eq!(c, Some(0), "{err}");
    let es = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(es["disarmed"], 1, "{es}");
    let disarm_ns = es["disarm_ns"].as_u64().unwrap();
    println!(
        "emergency-stop during a kill of a frozen pod: chaos-ctl {:.1} ms, disarmed at the \
         daemon in {:.1} µs",
        took.as_secs_f64() * 1e3,
        disarm_ns as f64 / 1e3
    );
    // Still frozen, still populated: nothing waited for it. The recorder finishes anyway.
    none_running(&daemon, Duration::from_secs(10));
    assert_eq!(freezer.state(), "FROZEN");
    assert!(
        std::fs::read_to_string(pod.dir.join("cgroup.events"))
            .unwrap()
            .contains("populated 1"),
        "the frozen process is still there"
    );
    let rep = json(&daemon.ctl_ok(&["report", &id, "--format", "json"]));
    assert_eq!(rep["status"]["state"], "emergency_stopped", "{rep}");
    assert_eq!(
        rep["status"]["counters"]["injected"], 1,
        "the kill was sent: {rep}"
    );
    assert!(
        rep["status"]["reason"]
            .as_str()
            .unwrap()
            .ends_with(": frozen"),
        "{rep}"
    );
    // Thawed, the pending SIGKILL takes it: nothing is left.
    freezer.thaw();
    assert_eq!(
        pod.processes[0].ended_by(Duration::from_secs(5)),
        Some(libc::SIGKILL)
    );
    let until = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(pod.dir.join("cgroup.events"))
        .unwrap()
        .contains("populated 1")
    {
        assert!(Instant::now() < until, "the pod still has processes");
        std::thread::sleep(Duration::from_millis(5));
    }
    // And no later round killed anything: the experiment is over.
    let mut restarted = Sleeper::start(&pod.dir);
    assert_eq!(restarted.ended_by(Duration::from_millis(600)), None);
}

#[test]
fn the_capability_table_is_this_kernels_and_unsupported_faults_are_refused_with_the_reason() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("caps");
    let daemon = Daemon::start(&dir.0);
    let caps = json(&daemon.ctl_ok(&["--output", "json", "capabilities"]));
    let verdict = |kind: &str| {
        let c = caps["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["experiment_type"] == kind)
            .unwrap_or_else(|| panic!("{kind} missing: {caps}"))
            .clone();
        (
            c["supported"].as_bool().unwrap(),
            c["reason"].as_str().unwrap().to_string(),
        )
    };
    let uname = nix::sys::utsname::uname().unwrap();
    assert_eq!(caps["kernel"], uname.release().to_str().unwrap());
    for kind in [
        "packet_loss",
        "dependency_failure",
        "api_error_injection",
        "pod_deletion",
    ] {
        assert_eq!(verdict(kind), (true, String::new()), "{kind}");
    }
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap();
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    let (ok, reason) = verdict("resource_exhaustion");
    assert_eq!(ok, has("cpu") && has("memory"), "{reason}");
    if !ok {
        // The hosts here: cpu and memory are bound to cgroup v1.
        assert!(
            reason.contains("controller") && reason.contains("cgroup v1"),
            "{reason}"
        );
        let cg = TestCgroup::new(&mount, "caps");
        for dry in [true, false] {
            let mut args = vec![
                "experiment",
                "resource_exhaustion",
                "--cgroup",
                cg.path.to_str().unwrap(),
                "--duration",
                "5",
            ];
            if dry {
                args.push("--dry-run");
            }
            let (c, err) = failed(&daemon.ctl(&args));
            assert_eq!(c, Some(3), "{err}");
            assert!(
                err.contains("resource_exhaustion is not supported on this node")
                    && err.contains(&reason),
                "says why: {err}"
            );
        }
        let store = Mutex::new(Store::open(&daemon.state).unwrap());
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
        let store = Mutex::new(Store::open(&dir.0).unwrap());
        let change = HostChange {
            kind: ChangeKind::CgroupKnob,
            path: knob.display().to_string(),
            old_value: old.clone(),
        };
        store.record("exp-crashed", &change).unwrap();
        std::fs::write(&knob, "3").unwrap();
    }
    assert_eq!(std::fs::read_to_string(&knob).unwrap().trim(), "3");
    let journal = Arc::new(Mutex::new(Store::open(&dir.0).unwrap()));
    let engine =
        Engine::with_journal(Resolver::new(mount.clone()).unwrap(), journal).expect("engine");
    assert_eq!(std::fs::read_to_string(&knob).unwrap().trim(), old);
    assert_eq!(
        Mutex::new(Store::open(&dir.0).unwrap()).pending().unwrap(),
        vec![]
    );
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
    let (c, err) = failed(&start("0.5"));
    assert_eq!(c, Some(3), "{err}");
    assert!(
        err.contains("budget: 0.5 does not cover 1.0000 for 10m at 0.1 per minute")
            && err.contains("experiments.network_latency.cost_per_minute"),
        "{err}"
    );
    // Enough money: what refuses it now (on a kernel without sch_fq) is the kernel, or it runs.
    let (_, err) = failed(&start("1.0"));
    assert!(!err.contains("does not cover"), "{err}");
}
