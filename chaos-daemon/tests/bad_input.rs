//! Targets the daemon refuses, with a typed error that names the target and why, and nothing
//! attached or reserved afterwards: a missing cgroup, the root cgroup, the daemon's own cgroup
//! and its ancestors, and cgroups named in (or containing one named in)
//! `safety_checks.protected_cgroups`. The model's own checks (intensity, errno, filter) are
//! chaos-api's and tested there.

mod support;

use std::path::Path;

use chaos_api::{
    config::DEFAULT_PROTECTED_CGROUPS,
    experiment::{Direction, EgressDrop, Experiment, Target, TargetKind},
};
use chaos_common::MAX_SLOTS;
use chaos_daemon::{
    engine::{Engine, EngineError},
    target::{Resolver, TargetError},
};
use support::*;

/// An experiment on the cgroup `path` (as the user writes it), not validated: the daemon's
/// resolver must refuse what the model would too.
fn on(path: &str) -> Experiment {
    let mut e = spec(
        Target::new(TargetKind::Cgroup("/placeholder".into())),
        socket_error("EACCES", &["connect"]),
        1.0,
    );
    e.targets = vec![Target::new(TargetKind::Cgroup(path.into()))];
    e
}

fn cgroup(path: &Path) -> Experiment {
    on(&path.display().to_string())
}

/// Proves that no refusal kept a slot: all of them can still be reserved for a fault on the
/// (targetable) cgroup `path`, and are given back.
fn assert_every_slot_free(engine: &Engine, path: &Path) {
    let prepared = engine.prepare(&cgroup(path), u64::MAX).unwrap();
    let switches: Vec<_> = (0..MAX_SLOTS)
        .map(|i| {
            engine
                .reserve(&prepared)
                .unwrap_or_else(|e| panic!("slot {i} of {MAX_SLOTS} is taken: {e}"))
        })
        .collect();
    let extra = engine.reserve(&prepared);
    assert!(matches!(extra, Err(EngineError::NoFreeSlot)), "{extra:?}");
    for s in &switches {
        engine.unreserve(s);
    }
}

/// The reason of a `Protected` refusal, or a panic naming what came instead.
fn protected_reason(e: EngineError) -> String {
    match e {
        EngineError::Target(TargetError::Protected { reason, .. }) => reason,
        other => panic!("expected a protected-target refusal, got {other}"),
    }
}

#[test]
fn missing_cgroup_is_refused() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "missing");
    let engine = engine(&mount);
    let missing = mount.join(format!("chaos-test-missing-{}", std::process::id()));
    match engine.prepare(&cgroup(&missing), u64::MAX).unwrap_err() {
        EngineError::Target(TargetError::NotACgroup { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other}"),
    }
    // A relative path that escapes the mount is refused the same way (the model refuses `..`
    // too; the resolver does not rely on it).
    for path in ["../../etc", "chaos-test/../../../etc"] {
        let e = engine.start(&on(path));
        assert!(
            matches!(e, Err(EngineError::Target(TargetError::NotACgroup { .. }))),
            "{path}: {e:?}"
        );
    }
    // A file under the mount is not a cgroup either.
    let e = engine.start(&cgroup(&cg.path.join("cgroup.procs")));
    assert!(
        matches!(e, Err(EngineError::Target(TargetError::NotACgroup { .. }))),
        "{e:?}"
    );
    assert_every_slot_free(&engine, &cg.path);
    assert_eq!(cg.attached(), 0);
}

#[test]
fn root_cgroup_is_protected() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "root");
    let engine = engine(&mount);
    let before = attached_count(&mount);
    for path in [mount.display().to_string(), "/".into()] {
        let mut e = on(&path);
        e.fault = loss(Direction::Both, EgressDrop::Silent);
        let reason = protected_reason(engine.start(&e).unwrap_err());
        assert!(reason.contains("root cgroup"), "{path}: {reason}");
    }
    assert_eq!(
        attached_count(&mount),
        before,
        "nothing attached to the root cgroup"
    );
    assert_every_slot_free(&engine, &cg.path);
}

/// The daemon (`chaos-daemon serve`, driven by `chaos-ctl`) runs in a child cgroup of the test
/// cgroup: neither its own cgroup nor the ancestor may be targeted.
#[test]
fn the_daemons_own_cgroup_and_its_ancestors_are_protected() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "self");
    let own = cg.child("daemon");
    let dir = TempDir::new("self");
    let daemon = Daemon::permissive(&dir.0, Some(&own));
    for (target, says) in [(&own, "daemon's own cgroup"), (&cg.path, "it contains")] {
        let args = ["--intensity", "1", "--duration", "1s"];
        let out = daemon.experiment("packet_loss", target, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(3),
            "refused-target exit code; {stderr}"
        );
        assert!(
            stderr.contains("protected") && stderr.contains(says),
            "{stderr}"
        );
    }
    assert_eq!((cg.attached(), attached_count(&own)), (0, 0));
    assert_eq!(running(&daemon), 0, "nothing started");
}

/// The default `safety_checks.protected_cgroups`, as the daemon's config gives them.
fn protected_names() -> Vec<String> {
    DEFAULT_PROTECTED_CGROUPS
        .iter()
        .map(|n| n.to_string())
        .collect()
}

#[test]
fn cgroups_named_like_the_nodes_services_are_protected_and_so_is_what_contains_them() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "services");
    let kubelet = cg.child("kubelet.service");
    let nest = cg.child("nest");
    let runtime = cg.child("nest/inner/containerd.service");
    let app = cg.child("app");
    let resolver = Resolver::new(mount.clone())
        .unwrap()
        .protecting(&protected_names());
    let engine = Engine::new(resolver).expect("engine loads");
    for (target, found) in [
        (&kubelet, None),
        (&runtime, None),
        (&nest, Some(&runtime)),
        (&cg.path, None),
    ] {
        let reason = protected_reason(engine.start(&cgroup(target)).unwrap_err());
        assert!(
            reason.contains("safety_checks.protected_cgroups"),
            "{}: {reason}",
            target.display()
        );
        if target == &kubelet || target == &runtime {
            assert!(reason.starts_with("its name is"), "{reason}");
        } else {
            assert!(reason.starts_with("it contains"), "{reason}");
        }
        if let Some(found) = found {
            assert!(
                reason.contains(&found.display().to_string()),
                "names the protected descendant: {reason}"
            );
        }
        // The plan (a dry run) refuses it the same way.
        let e = engine.prepare(&cgroup(target), u64::MAX).unwrap_err();
        assert!(
            matches!(e, EngineError::Target(TargetError::Protected { .. })),
            "{e}"
        );
    }
    for dir in [&cg.path, &kubelet, &nest, &runtime] {
        assert_eq!(attached_count(dir), 0, "{}", dir.display());
    }
    assert_every_slot_free(&engine, &app);

    // The sibling with an ordinary name is an ordinary target.
    let armed = engine.start(&cgroup(&app)).unwrap();
    assert_eq!(armed.targets[0].path, app);
    let server = TcpServer::start("127.0.0.1:0");
    let hit = server.connect_from(&app, 20);
    assert_eq!(hit.get("EACCES"), 20, "{hit:?}");
    let spared = server.connect_from(&kubelet, 20);
    assert_eq!(spared.ok(), 20, "{spared:?}");
    engine.stop(armed).unwrap();
    assert_eq!(attached_count(&app), 0);
}

#[test]
fn the_daemon_refuses_a_protected_service_cgroup_by_its_config() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "ctl-services");
    let kubelet = cg.child("kubelet.service");
    let app = cg.child("app");
    let dir = TempDir::new("ctl-services");
    let daemon = Daemon::permissive(&dir.0, None);
    let start = |target: &Path| {
        let args = ["--intensity", "1", "--duration", "30s"];
        daemon.experiment("dependency_failure", target, &args)
    };
    for target in [&kubelet, &cg.path] {
        let out = start(target);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "refused; {stderr}");
        assert!(
            stderr.contains("protected") && stderr.contains("safety_checks.protected_cgroups"),
            "{stderr}"
        );
        assert_eq!(attached_count(target), 0);
    }
    assert_eq!(running(&daemon), 0, "nothing started");
    // The unprotected sibling starts, and stops.
    let id = started_id(&start(&app));
    assert_eq!(attached_count(&app), 2, "connect4 and connect6");
    assert_eq!(running(&daemon), 1);
    daemon.ctl_ok(&["stop", &id]);
    assert_eq!(attached_count(&app), 0);
}

/// How many experiments the daemon reports.
fn running(daemon: &Daemon) -> usize {
    daemon.json(&["status"])["experiments"]
        .as_array()
        .unwrap()
        .len()
}
