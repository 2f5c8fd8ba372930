//! The daemon's promises across restarts and against a second daemon, as root through real
//! daemons and chaos-ctl: an emergency-stop latch outlives SIGTERM and SIGKILL until it is
//! cleared, and a second `serve` on the same paths fails naming the state directory's lock,
//! having changed nothing of the first daemon's experiments, programs, journal or store.

mod support;

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::Mutex,
    time::Duration,
};

use chaos_api::state::State;
use chaos_daemon::{
    journal::{ChangeKind, HostChange, HostJournal as _},
    store::Store,
};
use nix::{sys::signal::Signal, unistd::Pid};
use support::*;

/// What every experiment of these tests runs: refused connections, at a low intensity.
const EXPERIMENT: [&str; 4] = ["--intensity", "0.1", "--duration", "30s"];

/// `chaos-daemon serve` on `dir`'s socket, state directory and config, as
/// [`Daemon::permissive`] starts it.
fn serve(dir: &Path) -> Command {
    let mut cmd = Command::new(DAEMON);
    cmd.arg("serve")
        .arg("--socket")
        .arg(dir.join("daemon.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--node", "test-node", "--config"])
        .arg(dir.join("chaos.yaml"));
    cmd
}

/// Waits for `child` to exit, failing after `within`.
fn exited(child: &mut Child, within: Duration) -> ExitStatus {
    eventually("the daemon exited", within, || child.try_wait().unwrap())
}

/// Stops `daemon` with `signal` and waits until it is gone (and its state directory's lock
/// with it).
fn stop(daemon: &mut Daemon, signal: Signal) -> ExitStatus {
    let pid = Pid::from_raw(i32::try_from(daemon.child.id()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
    exited(&mut daemon.child, Duration::from_secs(20))
}

/// Starts the daemon again on `dir` as [`Daemon::permissive`] did, its log (warnings and
/// above) written to `log`.
fn restart(dir: &Path, log: &Path) -> Daemon {
    let mut child = serve(dir)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.contains("listening"),
        "the daemon did not start again: {line:?}\n{}",
        std::fs::read_to_string(log).unwrap()
    );
    Daemon {
        child,
        stdout,
        socket: dir.join("daemon.sock"),
        state: dir.join("state"),
    }
}

/// Asserts that a start on `cg` is refused by the latch, and that nothing was attached.
fn assert_refused_by_the_latch(daemon: &Daemon, cg: &TestCgroup) {
    let (code, err) = failed(&daemon.experiment("dependency_failure", &cg.path, &EXPERIMENT));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("emergency stop is latched"), "{err}");
    assert_eq!(cg.attached(), 0);
}

/// Latches the emergency stop of `daemon` with `reason`; returns the time window it happened in.
fn latch(daemon: &Daemon, reason: &str) -> std::ops::RangeInclusive<u64> {
    let before = unix_ms();
    daemon.ctl_ok(&["emergency-stop", "--reason", reason]);
    before..=unix_ms()
}

/// Asserts that `daemon`'s status reports the latch with `reason`, latched within `when`.
fn assert_latched(daemon: &Daemon, reason: &str, when: &std::ops::RangeInclusive<u64>) {
    let status = daemon.json(&["status"]);
    assert_eq!(status["emergency_stop"], true, "{status}");
    let why = status["emergency_stop_reason"].as_str().unwrap();
    assert!(why.ends_with(&format!(": {reason}")), "{status}");
    let at = status["emergency_stop_unix_ms"].as_u64().unwrap();
    assert!(when.contains(&at), "latched at {at}, not within {when:?}");
    let text = daemon.ctl_ok(&["status"]);
    assert!(
        text.contains("emergency stop: LATCHED since ") && text.contains(reason),
        "{text}"
    );
}

#[test]
fn the_latch_survives_a_restart_until_cleared() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "latch-term");
    let dir = TempDir::new("latch-term");
    let log = dir.0.join("daemon.log");
    let mut daemon = Daemon::permissive(&dir.0, None);
    let id = daemon.started("dependency_failure", &cg.path, &EXPERIMENT);
    let when = latch(&daemon, "hardening drill");
    cg.released();
    assert_eq!(
        daemon.ended(&id, Duration::from_secs(10))["state"],
        "emergency_stopped"
    );
    assert!(stop(&mut daemon, Signal::SIGTERM).success());

    let daemon = restart(&dir.0, &log);
    assert_latched(&daemon, "hardening drill", &when);
    let warned = std::fs::read_to_string(&log).unwrap();
    assert!(
        warned.lines().any(|l| l.contains("WARN")
            && l.contains("still latched")
            && l.contains("hardening drill")
            && l.contains("latched_at=")),
        "the log does not say why and since when it is latched:\n{warned}"
    );
    assert_refused_by_the_latch(&daemon, &cg);

    daemon.ctl_ok(&["emergency-stop", "--clear"]);
    let status = daemon.json(&["status"]);
    assert_eq!(status["emergency_stop"], false, "{status}");
    assert_eq!(status["emergency_stop_reason"], "", "{status}");
    let id = daemon.started("dependency_failure", &cg.path, &EXPERIMENT);
    assert!(cg.attached() > 0);
    daemon.ctl_ok(&["stop", &id]);
    cg.released();

    // Cleared for good: the next daemon is not latched and starts experiments.
    let mut daemon = daemon;
    assert!(stop(&mut daemon, Signal::SIGTERM).success());
    let daemon = restart(&dir.0, &log);
    let status = daemon.json(&["status"]);
    assert_eq!(status["emergency_stop"], false, "{status}");
    let warned = std::fs::read_to_string(&log).unwrap();
    assert!(!warned.contains("still latched"), "{warned}");
    daemon.started("dependency_failure", &cg.path, &EXPERIMENT);
    assert!(cg.attached() > 0);
}

#[test]
fn the_latch_survives_sigkill() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "latch-kill");
    let dir = TempDir::new("latch-kill");
    let mut daemon = Daemon::permissive(&dir.0, None);
    let when = latch(&daemon, "killed drill");
    // Killed at once after the answer: the latch was on disk before it.
    assert!(!stop(&mut daemon, Signal::SIGKILL).success());

    let daemon = restart(&dir.0, &dir.0.join("daemon.log"));
    assert_latched(&daemon, "killed drill", &when);
    assert_refused_by_the_latch(&daemon, &cg);
}

#[test]
fn a_second_serve_on_the_same_paths_changes_nothing() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "second-serve");
    let dir = TempDir::new("second-serve");
    let daemon = Daemon::permissive(&dir.0, None);
    let id = daemon.started("dependency_failure", &cg.path, &EXPERIMENT);
    let attached = cg.attached();
    assert!(attached > 0);
    // A host change the first daemon has in force: a second daemon that recovered the state
    // would put the old value back.
    let knob = dir.0.join("knob");
    std::fs::write(&knob, "during").unwrap();
    let journal = Mutex::new(Store::open(&daemon.state).unwrap());
    let change = HostChange {
        kind: ChangeKind::CgroupKnob,
        path: knob.display().to_string(),
        old_value: "before".into(),
    };
    let entry = journal.record(&id, &change).unwrap();

    let mut second = serve(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exited(&mut second, Duration::from_secs(10));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    let lock = daemon.state.join("daemon.lock");
    assert!(
        err.contains(&format!(
            "{} is locked by another chaos-daemon (pid {})",
            lock.display(),
            daemon.child.id()
        )),
        "{err}"
    );

    assert_eq!(std::fs::read_to_string(&knob).unwrap(), "during");
    let pending: Vec<i64> = journal.pending().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(pending, vec![entry], "the journal entry is still pending");
    let row = journal.lock().unwrap().experiment(&id).unwrap().unwrap();
    assert_eq!((row.state, row.reason.as_str()), (State::Running, ""));
    assert_eq!(cg.attached(), attached, "the programs are still attached");
    let status = daemon.json(&["status"]);
    let listed = &status["experiments"][0];
    assert_eq!(listed["id"], id.as_str(), "{status}");
    assert_eq!(listed["state"], "running", "{status}");

    // The first daemon still owns it: a stop ends it as stopped, not aborted.
    daemon.ctl_ok(&["stop", &id]);
    assert_eq!(
        daemon.ended(&id, Duration::from_secs(10))["state"],
        "stopped"
    );
    cg.released();
}
