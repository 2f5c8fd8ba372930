//! One experiment over many cgroups (the pods a selector matches on a node): real cgroups,
//! real sockets on loopback. Every target is faulted, nothing beside them is, the fault cap
//! counts across all of them, and stopping detaches from every one. Through the daemon, the
//! status, the plan and the report name every target, and the limit and overlaps are refused
//! with the field, the value and what is allowed.

mod support;

use std::time::Duration;

use chaos_api::experiment::{Direction, EgressDrop, MAX_TARGETS};
use support::{
    pods::{Pod, Sleeper},
    *,
};

/// `count` test cgroups tagged `tag-0`, `tag-1`, ...
fn cgroups(mount: &std::path::Path, tag: &str, count: usize) -> Vec<TestCgroup> {
    (0..count)
        .map(|i| TestCgroup::new(mount, &format!("{tag}-{i}")))
        .collect()
}

#[test]
fn a_connect_fault_over_three_cgroups_refuses_in_each_and_the_cap_spans_them() {
    let Some(mount) = kernel() else { return };
    let targets = cgroups(&mount, "many-conn", 3);
    let beside = TestCgroup::new(&mount, "many-conn-beside");
    let engine = engine(&mount);
    let mut s = spec(
        targets[0].target(),
        socket_error("ECONNREFUSED", &["connect"]),
        1.0,
    );
    s.targets = targets.iter().map(TestCgroup::target).collect();
    s.max_faults = Some(50);
    let armed = engine.start(&s).unwrap();
    assert_eq!(armed.targets.len(), 3);
    let server = TcpServer::start("127.0.0.1:0");
    // 15 from each target: 45 refused, under the cap.
    for cg in &targets {
        let r = server.connect_from(&cg.path, 15);
        assert_eq!(r.get("ECONNREFUSED"), 15, "{}: {r:?}", cg.path.display());
    }
    // A child of a target is a target; the cgroup beside them and the host are not.
    let leaf = targets[1].child("leaf");
    let spared = server.connect_from(&beside.path, 15);
    assert_eq!(spared.ok(), 15, "beside the targets: {spared:?}");
    // 5 left under the cap of 50, wherever the connects come from.
    let r = server.connect_from(&leaf, 10);
    assert_eq!((r.get("ECONNREFUSED"), r.ok()), (5, 5), "{r:?}");
    let r = server.connect_from(&targets[2].path, 10);
    assert_eq!(r.ok(), 10, "the cap is spent: {r:?}");
    let c = engine.stop(armed).unwrap();
    assert_eq!((c.injected, c.capped), (50, 15));
    for cg in &targets {
        assert_eq!(cg.attached(), 0, "{} detached", cg.path.display());
    }
    assert_eq!(server.connect_from(&targets[0].path, 10).ok(), 10);
}

#[test]
fn a_silent_egress_loss_over_two_cgroups_drops_only_their_packets() {
    let Some(mount) = kernel() else { return };
    let targets = cgroups(&mount, "many-loss", 2);
    let beside = TestCgroup::new(&mount, "many-loss-beside");
    let engine = engine(&mount);
    let mut s = spec(
        targets[0].target(),
        loss(Direction::Egress, EgressDrop::Silent),
        1.0,
    );
    s.targets = targets.iter().map(TestCgroup::target).collect();
    let armed = engine.start(&s).unwrap();
    let n = 2000;
    for cg in &targets {
        let sink = UdpSink::new();
        let sent = sink.send_from(&cg.path, n);
        assert_eq!(sent.ok(), n, "the sender sees success: {sent:?}");
        assert_eq!(
            sink.settled(),
            0,
            "{} lost every datagram",
            cg.path.display()
        );
    }
    let sink = UdpSink::new();
    sink.send_from(&beside.path, n);
    assert_eq!(sink.settled(), n, "beside the targets nothing is lost");
    let c = engine.stop(armed).unwrap();
    assert_eq!(c.injected, 2 * n, "the kernel counted both targets' drops");
    let sink = UdpSink::new();
    sink.send_from(&targets[1].path, n);
    assert_eq!(sink.settled(), n, "after the stop nothing is lost");
}

/// An experiment file listing targets, as chaos-ctl sends one per node.
fn experiment_file(dir: &std::path::Path, targets: &[&std::path::Path]) -> std::path::PathBuf {
    let list: String = targets
        .iter()
        .map(|t| format!("  - cgroup: {}\n", t.display()))
        .collect();
    let path = dir.join("many.yaml");
    std::fs::write(
        &path,
        format!(
            "name: many-refused\ntype: dependency_failure\ntargets:\n{list}duration: 2m\n\
             intensity: 1\nfault:\n  errno: ECONNREFUSED\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_daemon_plans_runs_and_reports_every_target_of_one_experiment() {
    let Some(mount) = kernel() else { return };
    let targets = cgroups(&mount, "many-svc", 3);
    let dir = TempDir::new("many-svc");
    let daemon = Daemon::permissive(&dir.0, None);
    let paths: Vec<&std::path::Path> = targets.iter().map(|t| t.path.as_path()).collect();
    let file = experiment_file(&dir.0, &paths);
    let file = file.to_str().unwrap();

    let dry = daemon.json(&["apply", "-f", file, "--dry-run"]);
    let planned: Vec<&str> = dry["plan"]["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("the plan lists targets: {dry}"))
        .iter()
        .map(|t| t["cgroup"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(planned, expected, "{dry}");

    let id = started_id(&daemon.ctl(&["--output", "json", "apply", "-f", file]));
    let status = daemon.json(&["status"]);
    let shown = status["experiments"][0]["target"].as_str().unwrap();
    assert_eq!(shown, expected.join(", "), "{status}");
    let server = TcpServer::start("127.0.0.1:0");
    for p in &paths {
        assert_eq!(server.connect_from(p, 5).get("ECONNREFUSED"), 5);
    }
    daemon.ctl_ok(&["stop", &id]);
    let ended = daemon.ended(&id, Duration::from_secs(30));
    assert_eq!(ended["target"].as_str().unwrap(), expected.join(", "));
    let report = daemon.ctl_ok(&["report", &id]);
    for p in &expected {
        assert!(
            report.contains(p.as_str()),
            "the report names {p}:\n{report}"
        );
    }
    for cg in &targets {
        assert_eq!(cg.attached(), 0, "{} detached", cg.path.display());
    }
}

#[test]
fn too_many_or_nested_targets_are_refused_before_anything_is_attached() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("many-bad");
    let daemon = Daemon::permissive(&dir.0, None);
    let many = cgroups(&mount, "many-bad", MAX_TARGETS + 1);
    let paths: Vec<&std::path::Path> = many.iter().map(|t| t.path.as_path()).collect();
    let file = experiment_file(&dir.0, &paths);
    let out = daemon.ctl(&["apply", "-f", file.to_str().unwrap()]);
    let (code, err) = failed(&out);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "targets: {} targets is not allowed; expected at most {MAX_TARGETS} targets in one \
             experiment on one node",
            MAX_TARGETS + 1
        )),
        "{err}"
    );

    // A target inside another would be judged twice: refused, naming both.
    let child = many[0].child("inner");
    let file = experiment_file(&dir.0, &[&many[1].path, &many[0].path, &child]);
    let out = daemon.ctl(&["apply", "-f", file.to_str().unwrap()]);
    let (code, err) = failed(&out);
    assert_eq!(code, Some(3), "refused by the daemon: {err}");
    assert!(
        err.contains(&format!(
            "targets[2]: \"{}\" is inside \"{}\" (targets[1])",
            child.display(),
            many[0].path.display()
        )),
        "{err}"
    );
    for cg in &many {
        assert_eq!(
            cg.attached(),
            0,
            "nothing attached to {}",
            cg.path.display()
        );
    }
    daemon.none_listed(Duration::from_secs(5));
}

/// A pod deletion over two pods kills both (two against the cap), and not the pod beside them.
#[test]
fn a_pod_deletion_over_two_pods_kills_both_and_counts_each() {
    let Some(mount) = kernel() else { return };
    let node = TestCgroup::new(&mount, "many-kill");
    let outside = TestCgroup::new(&mount, "many-kill-out");
    let dir = TempDir::new("many-kill");
    let daemon = Daemon::with_config(
        &dir.0,
        "budget:\n  max_experiment_cost: 100\n  max_daily_cost: 500\n  cost_per_request: 0\n\
         experiments:\n  pod_deletion:\n    max_pods_deleted: 5\n    cost_per_pod: 10\n",
    );
    let mut pods = [Pod::new(&node.path), Pod::new(&node.path)];
    let mut neighbour = Pod::new(&node.path);
    let mut bystander = Sleeper::start(&outside.path);
    let file = dir.0.join("kill.yaml");
    std::fs::write(
        &file,
        format!(
            "name: kill-two\ntype: pod_deletion\ntargets:\n  - pod_uid: {}\n  - pod_uid: {}\n\
             duration: 30s\n",
            pods[0].uid, pods[1].uid
        ),
    )
    .unwrap();
    let id = started_id(&daemon.ctl(&["--output", "json", "apply", "-f", file.to_str().unwrap()]));
    for pod in &mut pods {
        assert!(pod.killed(Duration::from_secs(5)), "pod {}", pod.uid);
    }
    assert!(
        !neighbour.killed(Duration::from_millis(200)),
        "the pod beside them"
    );
    assert_eq!(bystander.ended_by(Duration::ZERO), None, "outside");
    let status = daemon.ended(&id, Duration::from_secs(5));
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["counters"]["injected"], 2, "{status}");
    assert_eq!(status["spent"], 20.0, "{status}");
}
