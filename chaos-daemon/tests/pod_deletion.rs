//! pod_deletion on the host kernel, through the daemon and chaos-ctl: every process of a pod
//! dies, nothing outside; each pod killed counts against `max_pods_deleted`, `max_pods` and the
//! budget; only pods, containers and allowed cgroups are killed, never the node's own services;
//! pod name patterns; the kill switch does not wait for a kill that waits for a frozen process.
//!
//! The test cgroups (`chaos-test-*`) are neither pods nor containers: tests build kubelet's
//! cgroupfs layout below them (`pod<uid>/<64 hex container id>`) or allow them by name in
//! `experiments.pod_deletion.allowed_cgroups`.

mod support;

use std::{path::Path, time::Duration};

use support::{
    pods::{Freezer, Pod, Sleeper, hex, sigkill_pending},
    *,
};

const KILL_CONFIG: &str = "budget:\n  max_experiment_cost: 100\n  max_daily_cost: 500\n  \
    cost_per_request: 0.001\n  alert_threshold: 0.8\nexperiments:\n  pod_deletion:\n    \
    max_pods_deleted: 2\n    cost_per_pod: 10\n";

/// [`KILL_CONFIG`] that also allows the test cgroups tagged `tag` as pod deletion targets.
fn allowing(tag: &str) -> String {
    format!("{KILL_CONFIG}    allowed_cgroups: ['chaos-test-{tag}-*']\n")
}

/// Runs `chaos-ctl --output json experiment pod_deletion --pod-uid UID ARGS`.
fn kill_pod(daemon: &Daemon, uid: &str, args: &[&str]) -> std::process::Output {
    let head = [
        "--output",
        "json",
        "experiment",
        "pod_deletion",
        "--pod-uid",
        uid,
    ];
    daemon.ctl(&[&head[..], args].concat())
}

#[test]
fn pod_kill_kills_every_process_of_the_pod_and_nothing_outside() {
    let Some(mount) = kernel() else { return };
    let node = TestCgroup::new(&mount, "podkill");
    let outside = TestCgroup::new(&mount, "podkill-out");
    let dir = TempDir::new("podkill");
    let daemon = Daemon::with_config(&dir.0, KILL_CONFIG);
    let mut pod = Pod::new(&node.path);
    let mut neighbour = Pod::new(&node.path);
    // A second container and a process in a nested cgroup: the whole tree dies.
    let extra = pod.dir.join(hex(64)).join("nested");
    std::fs::create_dir_all(&extra).unwrap();
    pod.processes.push(Sleeper::start(&extra));
    let mut bystander = Sleeper::start(&outside.path);

    let out = kill_pod(&daemon, &pod.uid, &["--duration", "30"]);
    let id = started_id(&out);
    let started = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(started["plan"]["cgroup"], pod.dir.to_str().unwrap());
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
    let status = daemon.ended(&id, Duration::from_secs(5));
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
    let daemon = Daemon::with_config(&dir.0, KILL_CONFIG);
    let pod = Pod::empty(&node.path);
    let start = |budget: &str| {
        let args = [
            "--duration",
            "20",
            "--interval",
            "200ms",
            "--budget",
            budget,
        ];
        kill_pod(&daemon, &pod.uid, &args)
    };
    // Budget for 10 pods, but max_pods_deleted is 2: the "restarted" pod dies twice, then lives.
    let id = started_id(&start("100"));
    for round in 0..2 {
        let mut s = Sleeper::start(&pod.dir);
        assert_eq!(
            s.ended_by(Duration::from_secs(5)),
            Some(libc::SIGKILL),
            "kill {round}"
        );
    }
    let mut survivor = Sleeper::start(&pod.dir);
    let status = daemon.ended(&id, Duration::from_secs(5));
    assert_eq!(survivor.ended_by(Duration::from_millis(600)), None);
    assert_eq!(status["counters"]["injected"], 2, "{status}");
    assert_eq!(status["spent"], 20.0, "{status}");
    drop(survivor);

    // A budget of 15 buys one pod at 10 each.
    let id = started_id(&start("15"));
    let mut s = Sleeper::start(&pod.dir);
    assert_eq!(s.ended_by(Duration::from_secs(5)), Some(libc::SIGKILL));
    let mut survivor = Sleeper::start(&pod.dir);
    assert_eq!(survivor.ended_by(Duration::from_millis(600)), None);
    assert_eq!(
        daemon.ended(&id, Duration::from_secs(5))["counters"]["injected"],
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

/// `--max-faults` caps the kills below `max_pods_deleted` and the budget, and `--intensity` is
/// the probability of a kill at each check: at 0 nothing is killed in many checks.
#[test]
fn pod_kills_follow_max_faults_and_intensity() {
    let Some(mount) = kernel() else { return };
    let node = TestCgroup::new(&mount, "podkill-cap");
    let dir = TempDir::new("podkill-cap");
    let daemon = Daemon::with_config(&dir.0, KILL_CONFIG);
    let pod = Pod::empty(&node.path);
    let args = |extra: &[&'static str]| {
        let mut a = vec!["--duration", "20", "--interval", "100ms", "--budget", "100"];
        a.extend_from_slice(extra);
        a
    };
    // max_pods_deleted would allow 2: --max-faults 1 kills one.
    let id = started_id(&kill_pod(&daemon, &pod.uid, &args(&["--max-faults", "1"])));
    let mut s = Sleeper::start(&pod.dir);
    assert_eq!(s.ended_by(Duration::from_secs(5)), Some(libc::SIGKILL));
    let mut survivor = Sleeper::start(&pod.dir);
    let status = daemon.ended(&id, Duration::from_secs(5));
    assert_eq!(survivor.ended_by(Duration::from_millis(500)), None);
    assert_eq!(status["counters"]["injected"], 1, "{status}");
    assert_eq!(status["spent"], 10.0, "{status}");
    drop(survivor);
    // Intensity 0: a check every 100 ms for a second, no kill.
    let id = started_id(&kill_pod(&daemon, &pod.uid, &args(&["--intensity", "0"])));
    let mut survivor = Sleeper::start(&pod.dir);
    assert_eq!(survivor.ended_by(Duration::from_secs(1)), None);
    let stopped = daemon.json(&["stop", &id]);
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["counters"]["injected"], 0, "{stopped}");
}

#[test]
fn pod_deletion_counts_each_pod_it_kills() {
    let Some(mount) = kernel() else { return };
    let node = TestCgroup::new(&mount, "podcount");
    let dir = TempDir::new("podcount");
    let daemon = Daemon::with_config(&dir.0, &allowing("podcount"));
    let mut pods: Vec<Pod> = (0..3).map(|_| Pod::new(&node.path)).collect();
    pods.sort_by(|a, b| a.dir.cmp(&b.dir));
    let args = ["--duration", "30", "--budget", "100"];
    // The allowed parent holds three pods; the cap is max_pods_deleted = 2 (the budget buys 10).
    let dry = daemon.experiment_ok(
        "pod_deletion",
        &node.path,
        &[&args[..], &["--dry-run"]].concat(),
    );
    assert_eq!(dry["plan"]["max_faults"], 2, "{dry}");
    assert_eq!(
        dry["plan"]["changes"][0], "cgroup.kill once, at most 2 pods in all; 3 pod(s) now:",
        "{dry}"
    );
    let id = daemon.started("pod_deletion", &node.path, &args);
    let killed: Vec<bool> = pods
        .iter_mut()
        .map(|p| p.killed(Duration::from_secs(2)))
        .collect();
    // Pods are killed one by one in path order: the first two, not the third.
    assert_eq!(killed, [true, true, false]);
    let status = daemon.ended(&id, Duration::from_secs(5));
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
    let daemon = Daemon::with_config(&dir.0, &yaml);
    let kill = |cgroup: &Path, dry: bool| {
        let dry: &[&str] = if dry { &["--dry-run"] } else { &[] };
        failed(&daemon.experiment("pod_deletion", cgroup, dry))
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
    let list = daemon.json(&["report", "--last", "1h"]);
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
    let daemon = Daemon::with_config(&dir.0, &yaml);
    let mut pods: Vec<Pod> = (0..2).map(|_| Pod::new(&node.path)).collect();
    let start = |pod_name: Option<&str>| {
        let mut args = vec!["--duration", "30"];
        if let Some(name) = pod_name {
            args.extend(["--pod-name", name]);
        }
        daemon.experiment("pod_deletion", &node.path, &args)
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
    let status = daemon.ended(&id, Duration::from_secs(5));
    assert_eq!(status["counters"]["injected"], 1, "{status}");
    assert_eq!(status["spent"], 10.0, "{status}");
}

#[test]
fn the_kill_switch_does_not_wait_for_a_kill_of_a_frozen_pod() {
    let Some(mount) = kernel() else { return };
    let node = TestCgroup::new(&mount, "podfrozen");
    let dir = TempDir::new("podfrozen");
    let daemon = Daemon::with_config(&dir.0, KILL_CONFIG);
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

    let args = ["--interval", "200ms", "--duration", "60"];
    let id = started_id(&kill_pod(&daemon, &pod.uid, &args));
    // The worker wrote cgroup.kill and now waits for the pod to empty, which it cannot.
    eventually("cgroup.kill written", Duration::from_secs(5), || {
        sigkill_pending(victim).then_some(())
    });
    assert_eq!(freezer.state(), "FROZEN");
    let waited = std::time::Instant::now();
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
    daemon.none_listed(Duration::from_secs(10));
    assert_eq!(freezer.state(), "FROZEN");
    assert!(pod.populated(), "the frozen process is still there");
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
    eventually("the pod emptied", Duration::from_secs(5), || {
        (!pod.populated()).then_some(())
    });
    // And no later round killed anything: the experiment is over.
    let mut restarted = Sleeper::start(&pod.dir);
    assert_eq!(restarted.ended_by(Duration::from_millis(600)), None);
}
