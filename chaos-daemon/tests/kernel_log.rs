//! The kernel programs' rare events reach the daemon's log (aya-log, issue 10 item 14a), with
//! the daemon's default log filter: one line when a slot reaches its fault cap, one when a
//! slot's kernel deadline passes before the daemon disarms it, each once per arm however many
//! events follow, and again for the next arm of the slot.

mod support;

use std::{path::Path, time::Duration};

use support::*;

/// The lines of the daemon's log at `log` that contain `needle`.
fn lines_with(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits until the log holds `n` lines with `needle` (the kernel log is drained by a thread of
/// its own), then checks that no more arrive.
fn logged(log: &Path, needle: &str, n: usize) {
    eventually(
        &format!("{n} log lines with {needle:?}"),
        Duration::from_secs(10),
        || (lines_with(log, needle) >= n).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(log).unwrap();
    for line in text.lines().filter(|l| l.contains(needle)) {
        println!("{line}");
    }
    assert_eq!(
        lines_with(log, needle),
        n,
        "{}",
        std::fs::read_to_string(log).unwrap()
    );
}

#[test]
fn a_fault_cap_reached_is_logged_once_per_arm() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "klog-cap");
    let dir = TempDir::new("klog-cap");
    let log = dir.0.join("daemon.log");
    std::fs::write(dir.0.join("chaos.yaml"), PERMISSIVE_CONFIG).unwrap();
    let config = dir.0.join("chaos.yaml");
    let daemon = Daemon::logged(&dir.0, &["--config", config.to_str().unwrap()], &log);
    let server = TcpServer::start("127.0.0.1:0");
    let args = ["--intensity", "1", "--max-faults", "3", "--duration", "60s"];
    for arm in 1..=2 {
        let id = daemon.started("dependency_failure", &cg.path, &args);
        // Three refused, then seven that pass: one line, not one per event past the cap.
        let t = server.connect_from(&cg.path, 10);
        assert_eq!((t.get("ECONNREFUSED"), t.ok()), (3, 7), "{t:?}");
        logged(&log, "fault cap of 3 reached; later events pass", arm);
        // The daemon ends an experiment whose cap is spent.
        daemon.ended(&id, Duration::from_secs(10));
        cg.released();
    }
    assert_eq!(
        lines_with(&log, "kernel deadline passed"),
        0,
        "no deadline passed"
    );
}

#[test]
fn a_kernel_deadline_passing_is_logged_once_per_arm() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "klog-late");
    let dir = TempDir::new("klog-late");
    let log = dir.0.join("daemon.log");
    std::fs::write(dir.0.join("chaos.yaml"), PERMISSIVE_CONFIG).unwrap();
    let config = dir.0.join("chaos.yaml");
    // The reaper looks once a minute, so the kernel's own deadline is what ends the faults.
    let daemon = Daemon::logged(
        &dir.0,
        &[
            "--config",
            config.to_str().unwrap(),
            "--reap-interval-ms",
            "60000",
        ],
        &log,
    );
    let server = TcpServer::start("127.0.0.1:0");
    for arm in 1..=2 {
        let id = daemon.started(
            "dependency_failure",
            &cg.path,
            &["--intensity", "1", "--duration", "1s"],
        );
        let during = server.connect_from(&cg.path, 5);
        assert_eq!(during.get("ECONNREFUSED"), 5, "{during:?}");
        std::thread::sleep(Duration::from_millis(1200));
        // Still armed in the daemon's books; the kernel passes everything.
        let after = server.connect_from(&cg.path, 20);
        assert_eq!(after.ok(), 20, "{after:?}");
        logged(&log, "kernel deadline passed", arm);
        daemon.ctl_ok(&["stop", &id]);
        cg.released();
    }
}
