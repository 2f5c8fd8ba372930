//! Bad input gets a typed error that names the field and value, and nothing is attached.

mod support;

use std::process::Command;

use chaos_daemon::{
    engine::EngineError,
    fault::{Direction, EgressDrop, NetFilter},
    target::{Target, TargetError},
};
use support::*;

fn refused_spec(err: EngineError, field: &str) {
    match err {
        EngineError::Spec(e) => assert_eq!(e.field, field, "{e}"),
        other => panic!("expected a spec error on {field}, got {other}"),
    }
}

#[test]
fn out_of_range_probability_is_refused_and_nothing_attached() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "bad-p");
    let mut engine = engine(&mount);
    for p in [-0.1, 1.01, f64::NAN] {
        let e = engine.start(&spec(
            cg.target(),
            loss(Direction::Both, EgressDrop::Silent),
            p,
        ));
        refused_spec(e.unwrap_err(), "probability");
    }
    assert_eq!((cg.attached(), engine.running().count()), (0, 0));
}

#[test]
fn invalid_errno_is_refused_by_name_and_number() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "bad-errno");
    for errno in ["EFOO", "0", "4095", "-5"] {
        let out = Command::new(DAEMON)
            .args([
                "inject",
                "--cgroup",
                cg.path.to_str().unwrap(),
                "--fault",
                "socket-error",
            ])
            .args([
                "--probability",
                "1",
                "--duration",
                "1s",
                &format!("--errno={errno}"),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "usage error exit code; {stderr}"
        );
        assert!(
            stderr.contains("fault.errno") && stderr.contains(errno),
            "{stderr}"
        );
    }
    assert_eq!(cg.attached(), 0);
}

#[test]
fn empty_cidr_list_is_an_error_not_match_nothing() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "bad-cidr");
    let mut engine = engine(&mount);
    let mut s = spec(cg.target(), socket_error("ECONNREFUSED", &["connect"]), 1.0);
    s.filter = NetFilter {
        cidrs: Some(vec![]),
        ..NetFilter::default()
    };
    refused_spec(engine.start(&s).unwrap_err(), "filter.cidrs");
    assert_eq!((cg.attached(), engine.running().count()), (0, 0));
}

#[test]
fn missing_cgroup_is_refused() {
    let Some(mount) = kernel() else { return };
    let mut engine = engine(&mount);
    let missing = mount.join(format!("chaos-test-missing-{}", std::process::id()));
    let e = engine.start(&spec(
        Target::CgroupPath(missing.clone()),
        socket_error("EACCES", &["connect"]),
        1.0,
    ));
    match e.unwrap_err() {
        EngineError::Target(TargetError::NotACgroup { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other}"),
    }
    // A relative path that escapes the mount is refused the same way.
    let e = engine.start(&spec(
        Target::CgroupPath("../../etc".into()),
        socket_error("EACCES", &["connect"]),
        1.0,
    ));
    assert!(
        matches!(e, Err(EngineError::Target(TargetError::NotACgroup { .. }))),
        "{e:?}"
    );
    assert_eq!(engine.running().count(), 0);
}

#[test]
fn root_cgroup_is_protected() {
    let Some(mount) = kernel() else { return };
    let mut engine = engine(&mount);
    let before = attached_count(&mount);
    for target in [
        Target::CgroupPath(mount.clone()),
        Target::CgroupPath("/".into()),
    ] {
        let e = engine.start(&spec(
            target,
            loss(Direction::Both, EgressDrop::Silent),
            1.0,
        ));
        match e.unwrap_err() {
            EngineError::Target(TargetError::Protected { reason, .. }) => {
                assert!(reason.contains("root cgroup"), "{reason}")
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(
        attached_count(&mount),
        before,
        "nothing attached to the root cgroup"
    );
}

#[test]
fn the_daemons_own_cgroup_and_its_ancestors_are_protected() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "self");
    let own = cg.child("daemon");
    for (target, says) in [(&own, "daemon's own cgroup"), (&cg.path, "it contains")] {
        let mut cmd = Command::new(DAEMON);
        cmd.args([
            "inject",
            "--cgroup",
            target.to_str().unwrap(),
            "--fault",
            "packet-loss",
        ])
        .args(["--probability", "1", "--duration", "1s"]);
        start_in_cgroup(&mut cmd, &own);
        let out = cmd.output().unwrap();
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
}
