//! Target resolution against real cgroup directories: paths, PIDs, and synthetic kubelet
//! hierarchies (systemd and cgroupfs drivers; containerd and CRI-O names) made by the test.

mod support;

use std::{os::unix::fs::MetadataExt as _, path::PathBuf};

use chaos_api::experiment::{Target, TargetKind};
use chaos_daemon::target::{Resolver, TargetError};
use support::{
    pods::{Sleeper, hex, pod_uid},
    *,
};

struct Pod {
    uid: String,
    container: String,
    pod_dir: PathBuf,
    container_dir: PathBuf,
}

/// Creates a pod with one container under `root` in the layout of `driver` and `runtime`.
fn make_pod(cg: &TestCgroup, driver: &str, runtime: &str, qos: &str) -> Pod {
    let (uid, container) = (pod_uid(), hex(64));
    let pod_rel = match driver {
        "systemd" => format!(
            "kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{}.slice",
            uid.replace('-', "_")
        ),
        _ => format!("kubepods/{qos}/pod{uid}"),
    };
    let leaf = match (driver, runtime) {
        ("systemd", "containerd") => format!("cri-containerd-{container}.scope"),
        ("systemd", _) => format!("crio-{container}.scope"),
        (_, "containerd") => container.clone(),
        _ => format!("crio-{container}"),
    };
    let pod_dir = cg.child(&pod_rel);
    let container_dir = cg.child(&format!("{pod_rel}/{leaf}"));
    Pod {
        uid,
        container,
        pod_dir,
        container_dir,
    }
}

#[test]
fn pods_and_containers_resolve_in_every_kubelet_layout() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "kubepods");
    let resolver = Resolver::new(mount.clone()).unwrap();
    for (driver, runtime, qos) in [
        ("systemd", "containerd", "burstable"),
        ("systemd", "crio", "besteffort"),
        ("cgroupfs", "containerd", "burstable"),
        ("cgroupfs", "crio", "besteffort"),
    ] {
        let pod = make_pod(&cg, driver, runtime, qos);
        let what = format!("{driver}/{runtime}");
        let r = resolver
            .resolve(&TargetKind::PodUid(pod.uid.clone()))
            .unwrap();
        assert_eq!(r.path, pod.pod_dir, "{what} pod");
        assert_eq!(
            r.id,
            std::fs::metadata(&pod.pod_dir).unwrap().ino(),
            "id is the inode"
        );
        let r = resolver
            .resolve(&TargetKind::ContainerId(pod.container.clone()))
            .unwrap();
        assert_eq!(r.path, pod.container_dir, "{what} container");
        let short = TargetKind::ContainerId(pod.container[..12].to_uppercase());
        assert_eq!(
            resolver.resolve(&short).unwrap().path,
            pod.container_dir,
            "{what} prefix"
        );
    }
}

#[test]
fn unknown_ambiguous_and_malformed_ids_are_refused() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "ids");
    let resolver = Resolver::new(mount.clone()).unwrap();
    let e = resolver
        .resolve(&TargetKind::ContainerId(hex(64)))
        .unwrap_err();
    assert!(
        matches!(
            e,
            TargetError::NotFound {
                what: "target.container",
                ..
            }
        ),
        "{e}"
    );
    let e = resolver
        .resolve(&TargetKind::PodUid(pod_uid()))
        .unwrap_err();
    assert!(
        matches!(
            e,
            TargetError::NotFound {
                what: "target.pod_uid",
                ..
            }
        ),
        "{e}"
    );
    let id = hex(64);
    cg.child(&format!("a/cri-containerd-{id}.scope"));
    cg.child(&format!("b/docker-{id}.scope"));
    let e = resolver.resolve(&TargetKind::ContainerId(id)).unwrap_err();
    assert!(matches!(e, TargetError::Ambiguous { .. }), "{e}");
    for bad in ["abc", "not-hex-not-hex-not-hex"] {
        let e = resolver
            .resolve(&TargetKind::ContainerId(bad.into()))
            .unwrap_err();
        assert!(matches!(e, TargetError::BadContainerId { .. }), "{e}");
    }
    let e = resolver
        .resolve(&TargetKind::PodUid("1234".into()))
        .unwrap_err();
    assert!(matches!(e, TargetError::BadPodUid { .. }), "{e}");
}

#[test]
fn cgroup_paths_resolve_absolute_and_relative_to_the_mount() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "paths");
    let resolver = Resolver::new(mount.clone()).unwrap();
    let name = cg.path.file_name().unwrap().to_str().unwrap().to_string();
    for t in [
        cg.path.clone(),
        PathBuf::from(format!("/{name}")),
        PathBuf::from(&name),
    ] {
        assert_eq!(
            resolver
                .resolve(&TargetKind::Cgroup(t.display().to_string()))
                .unwrap()
                .path,
            cg.path,
            "{t:?}"
        );
    }
}

#[test]
fn a_pid_resolves_to_its_cgroup() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "pid");
    let inner = cg.child("app");
    let sleeper = Sleeper::start(&inner);
    let resolver = Resolver::new(mount.clone()).unwrap();
    let r = resolver.resolve(&TargetKind::Pid(sleeper.pid()));
    drop(sleeper);
    assert_eq!(r.unwrap().path, inner);
    let e = resolver
        .resolve(&TargetKind::Pid(u32::MAX - 1))
        .unwrap_err();
    assert!(matches!(e, TargetError::Pid { .. }), "{e}");
}

#[test]
fn a_pod_fault_reaches_its_containers_and_nothing_else() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "podfault");
    let pod = make_pod(&cg, "systemd", "containerd", "burstable");
    let other = make_pod(&cg, "systemd", "containerd", "burstable");
    let engine = engine(&mount);
    let s = spec(
        Target::new(TargetKind::PodUid(pod.uid.clone())),
        socket_error("ECONNREFUSED", &["connect"]),
        1.0,
    );
    let h = engine.start(&s).unwrap();
    assert_eq!(h.targets[0].path, pod.pod_dir);
    let server = TcpServer::start("127.0.0.1:0");
    let hit = server.connect_from(&pod.container_dir, 20);
    let spared = server.connect_from(&other.container_dir, 20);
    assert_eq!(
        (hit.get("ECONNREFUSED"), spared.ok()),
        (20, 20),
        "{hit:?} {spared:?}"
    );
    engine.stop(h).unwrap();
    assert_eq!(attached_count(&pod.pod_dir), 0);
}
