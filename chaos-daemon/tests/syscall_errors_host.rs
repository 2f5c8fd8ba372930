//! File and process syscall errors on a kernel that can run neither BPF LSM nor `fmod_ret`
//! programs (the host kernel of CI): the fault is refused up front with a reason naming the
//! missing kernel feature, and nothing stays behind. On a kernel that can run them, the same
//! start must succeed and its stop must leave nothing attached (vm_lsm.rs measures the errors).

mod support;

use chaos_api::experiment::ExperimentType;
use chaos_daemon::{ebpf::lsm::LsmSupport, engine::EngineError};
use support::*;

#[test]
fn lsm_fault_is_refused_naming_the_missing_feature_or_runs_and_cleans_up() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-refused");
    let engine = engine(&mount);
    let support = engine.lsm_support();
    let started = engine.start(&spec(
        cg.target(),
        syscall_error("EIO", &["open", "fork"]),
        0.5,
    ));
    match support {
        LsmSupport::Unsupported { reason } => {
            let err = started.expect_err("an unsupported kernel must refuse, not pretend");
            let msg = err.to_string();
            assert!(
                matches!(
                    err,
                    EngineError::Unsupported {
                        kind: ExperimentType::SyscallError,
                        ..
                    }
                ),
                "refused as unsupported: {msg}"
            );
            eprintln!("refused: {msg}");
            assert!(msg.contains(&reason), "{msg}");
            assert!(msg.contains("BPF LSM"), "names the BPF LSM: {msg}");
            assert!(
                msg.contains("fmod_ret"),
                "names the fmod_ret fallback: {msg}"
            );
            assert!(
                msg.contains("not active") || msg.contains("os error"),
                "says why each mechanism is missing: {msg}"
            );
        }
        LsmSupport::Lsm | LsmSupport::FmodRet => {
            let armed = started.expect("a supporting kernel runs it");
            assert_eq!(engine.lsm_links_attached(), 2, "file_open and task_alloc");
            engine.stop(armed).unwrap();
        }
    }
    assert_eq!(
        engine.lsm_links_attached(),
        0,
        "no LSM program is left attached"
    );
    assert_eq!(cg.attached(), 0, "no cgroup program is left attached");
    // No slot was leaked: a network fault still gets slot 0.
    let armed = engine
        .start(&spec(
            cg.target(),
            socket_error("ECONNREFUSED", &["connect"]),
            0.5,
        ))
        .unwrap();
    assert_eq!(armed.slot(), Some(0));
    engine.stop(armed).unwrap();
    assert_eq!(cg.attached(), 0);
}

#[test]
fn daemon_and_ctl_report_the_refusal_and_the_capability() {
    let Some(mount) = kernel() else { return };
    let support = engine(&mount).lsm_support();
    let cg = TestCgroup::new(&mount, "lsm-ctl");
    let dir = TempDir::new("lsm-ctl");
    let daemon = Daemon::start(&dir.0);
    let caps: serde_json::Value =
        serde_json::from_str(&daemon.ctl_ok(&["--output", "json", "capabilities"])).unwrap();
    let cap = caps
        .pointer("/capabilities")
        .and_then(|c| c.as_array())
        .and_then(|c| c.iter().find(|c| c["experiment_type"] == "syscall_error"))
        .unwrap_or_else(|| panic!("no syscall_error capability: {caps}"));
    let LsmSupport::Unsupported { reason } = support else {
        // A kernel that runs it: the capability says supported, with no reason.
        assert_eq!(
            (&cap["supported"], &cap["reason"]),
            (&true.into(), &"".into()),
            "{cap}"
        );
        return;
    };
    assert_eq!(cap["supported"], false, "{cap}");
    assert_eq!(cap["reason"], reason.as_str(), "{cap}");
    let cgroup = cg.path.to_str().unwrap();
    let out = daemon.ctl(&[
        "experiment",
        "syscall_error",
        "--errno",
        "EIO",
        "--calls",
        "open,read",
        "--cgroup",
        cgroup,
        "--intensity",
        "1",
        "--duration",
        "30",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a refusal: {err}");
    assert!(
        err.contains("syscall_error is not supported on this node")
            && err.contains("BPF LSM")
            && err.contains("fmod_ret"),
        "{err}"
    );
    assert_eq!(cg.attached(), 0);
}
