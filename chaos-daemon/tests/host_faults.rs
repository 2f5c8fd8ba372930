//! Host-side facts of the daemon, through chaos-ctl where users see them: the capability table
//! of this kernel and the refusals it gives, the host-change journal putting a knob back after
//! a crash, and the per-minute price of network_latency. pod_deletion is in pod_deletion.rs.

mod support;

use std::sync::{Arc, Mutex};

use chaos_daemon::{
    engine::Engine,
    journal::{ChangeKind, HostChange, HostJournal as _},
    store::Store,
    target::Resolver,
};
use support::*;

#[test]
fn the_capability_table_is_this_kernels_and_unsupported_faults_are_refused_with_the_reason() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("caps");
    let daemon = Daemon::start(&dir.0);
    let caps = daemon.json(&["capabilities"]);
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
    // database_load: the daemon runs it with chaos-dbload, found beside it; a dry run shows
    // the runner and its cgroup and changes nothing (tests/database_load.rs runs real loads).
    assert_eq!(verdict("database_load"), (true, String::new()));
    let db = TestCgroup::new(&mount, "caps-db");
    let out = daemon.experiment_ok(
        "database_load",
        &db.path,
        &[
            "--dry-run",
            "--duration",
            "5",
            "--engine",
            "postgres",
            "--address",
            "127.0.0.1:5432",
            "--user",
            "app",
            "--profile",
            "point_reads",
            "--rate",
            "10",
        ],
    );
    let changes = out["plan"]["changes"].to_string();
    assert!(
        changes.contains("chaos-dbload in ") && changes.contains("cgroup.kill on disarm"),
        "{out}"
    );
    assert!(
        !std::fs::read_dir(&mount)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("chaos-dbload-")),
        "a dry run makes no runner cgroup"
    );
    daemon.none_listed(std::time::Duration::from_secs(2));
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
        for dry in [&["--dry-run"][..], &[][..]] {
            let args = [&["--duration", "5"][..], dry].concat();
            let (c, err) = failed(&daemon.experiment("resource_exhaustion", &cg.path, &args));
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
    // The test's own device: where the kernel has sch_fq the experiment runs, and must never
    // touch the host's interfaces.
    let veth = Veth::new("lb");
    let before = veth.root();
    let yaml = "experiments:\n  network_latency:\n    cost_per_minute: 0.10\n";
    let daemon = Daemon::with_config(&dir.0, yaml);
    let start = |budget: &str| {
        let args = [
            "--latency-ms",
            "20",
            "--duration",
            "10m",
            "--budget",
            budget,
            "--interface",
            &veth.0,
        ];
        daemon.experiment("network_latency", &cg.path, &args)
    };
    // Ten minutes at 0.10 a minute need 1.0.
    let (c, err) = failed(&start("0.5"));
    assert_eq!(c, Some(3), "{err}");
    assert!(
        err.contains("budget: 0.5 does not cover 1.0000 for 10m at 0.1 per minute")
            && err.contains("experiments.network_latency.cost_per_minute"),
        "{err}"
    );
    // Enough money: the kernel decides. Without sch_fq it refuses for that reason; with it the
    // experiment runs on the veth and is stopped, which puts its root qdisc back.
    let out = start("1.0");
    if out.status.success() {
        let id = started_id(&out);
        daemon.ctl_ok(&["stop", &id]);
    } else {
        let (_, err) = failed(&out);
        assert!(
            err.contains("network_latency is not supported on this node: sch_fq not available"),
            "{err}"
        );
    }
    assert_eq!(veth.root(), before, "the device is as it was");
}
