//! VM tier: syscall errors (global LSM or fmod_ret programs) leave nothing behind when a daemon
//! ends them with an emergency stop or dies (SIGKILL), proven from the kernel's side: the
//! kernel's own link table holds no link of a program named `lsm_*` (the LSM programs and their
//! fmod_ret copies carry those names), and the calls succeed again.
#![cfg(feature = "vm-tests")]

mod support;

use std::{path::Path, time::Duration};

use support::*;

/// Links in the kernel's link table whose program is one of ours (`lsm_*`), from any process.
fn lsm_links_in_the_kernel() -> usize {
    let names: std::collections::HashMap<u32, String> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| (p.id(), p.name_as_str().unwrap_or_default().to_string()))
        .collect();
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .filter(|l| {
            names
                .get(&l.program_id())
                .is_some_and(|n| n.starts_with("lsm_"))
        })
        .count()
}

/// `open()` calls in `dir` from inside `cgroup`.
fn opens(cgroup: &Path, dir: &Path) -> Tally {
    let dir = dir.to_str().unwrap();
    workload(
        Some(cgroup),
        &["file", "--op", "open", "--dir", dir, "--count", "20"],
    )
}

/// A daemon running `open` EIO at p = 1 on a fresh cgroup; the calls fail and the kernel
/// holds our link.
fn armed(tag: &str) -> (TestCgroup, TempDir, TempDir, Daemon) {
    let mount = kernel().expect("the VM tier runs as root with cgroup2");
    let cg = TestCgroup::new(&mount, tag);
    let files = TempDir::new(&format!("{tag}-files"));
    std::fs::write(files.0.join("data"), [0u8; 4096]).unwrap();
    let dir = TempDir::new(tag);
    let daemon = Daemon::permissive(&dir.0, None);
    daemon.started(
        "syscall_error",
        &cg.path,
        &[
            "--errno",
            "EIO",
            "--calls",
            "open",
            "--intensity",
            "1",
            "--duration",
            "120s",
        ],
    );
    assert_eq!(opens(&cg.path, &files.0).get("EIO"), 20);
    assert!(lsm_links_in_the_kernel() >= 1, "the kernel holds our link");
    (cg, files, dir, daemon)
}

#[test]
fn syscall_errors_end_with_an_emergency_stop() {
    let _serial = one_at_a_time();
    let (cg, files, _dir, daemon) = armed("vmc-estop");
    daemon.ctl_ok(&["emergency-stop", "--reason", "cleanup test"]);
    eventually("no lsm link in the kernel", Duration::from_secs(10), || {
        (lsm_links_in_the_kernel() == 0).then_some(())
    });
    assert_eq!(opens(&cg.path, &files.0).ok(), 20, "opens succeed again");
}

#[test]
fn syscall_errors_end_with_a_sigkilled_daemon() {
    let _serial = one_at_a_time();
    let (cg, files, _dir, mut daemon) = armed("vmc-kill");
    daemon.child.kill().unwrap(); // SIGKILL
    daemon.child.wait().unwrap();
    eventually("no lsm link in the kernel", Duration::from_secs(10), || {
        (lsm_links_in_the_kernel() == 0).then_some(())
    });
    assert_eq!(opens(&cg.path, &files.0).ok(), 20, "opens succeed again");
}
