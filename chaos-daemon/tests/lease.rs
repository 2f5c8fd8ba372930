//! The dead-man switch, as root on the host kernel through a real daemon and chaos-ctl: an
//! experiment started with a lease is disarmed with reason `lease expired` when its renewals
//! stop (nobody renews, or the `chaos-ctl --wait` that renewed it is killed), and runs its
//! whole duration while they come.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use support::*;

fn ms(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap()
}

/// The daemon's reaper tick (the default) plus a loaded CI machine's scheduling.
const MARGIN_MS: u64 = 700;

#[test]
fn an_unrenewed_lease_disarms_within_its_length() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lease-none");
    let dir = TempDir::new("lease-none");
    let daemon = Daemon::permissive(&dir.0, None);
    let args = ["--intensity", "0.5", "--duration", "60s", "--lease", "1s"];
    let id = daemon.started("dependency_failure", &cg.path, &args);
    let status = daemon.ended(&id, Duration::from_secs(10));
    assert_eq!(status["state"], "stopped", "{status}");
    assert_eq!(
        status["reason"], "lease expired: no renewal for 1s",
        "{status}"
    );
    let lived = ms(&status["ended_unix_ms"]) - ms(&status["started_unix_ms"]);
    assert!(
        (1000..1000 + MARGIN_MS).contains(&lived),
        "disarmed after {lived} ms"
    );
    daemon.none_listed(Duration::from_secs(5));
    assert_eq!(cg.attached(), 0);

    // Renewing by hand keeps it armed; an experiment without a lease has nothing to renew.
    let id = daemon.started("dependency_failure", &cg.path, &args);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(400));
        let renewed = daemon.json(&["renew", &id]);
        assert_eq!(renewed["lease_ms"], 1000, "{renewed}");
    }
    assert!(daemon.json(&["report", &id, "--format", "json"])["status"]["state"] == "running");
    daemon.ctl_ok(&["stop", &id]);
    let plain = daemon.started("dependency_failure", &cg.path, &["--intensity", "0.5"]);
    let (code, err) = failed(&daemon.ctl(&["renew", &plain]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("has no lease to renew"), "{err}");
    daemon.ctl_ok(&["stop", &plain]);
}

#[test]
fn wait_renews_the_lease_and_a_killed_follower_lets_it_expire() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lease-wait");
    let dir = TempDir::new("lease-wait");
    let daemon = Daemon::permissive(&dir.0, None);
    let cgs = cg.path.to_str().unwrap();
    let follow = |duration: &str| {
        Command::new(ctl_bin())
            .args([
                "--daemon",
                &daemon.addr(),
                "experiment",
                "dependency_failure",
            ])
            .args([
                "--cgroup",
                cgs,
                "--intensity",
                "0.5",
                "--lease",
                "1s",
                "--wait",
            ])
            .args(["--duration", duration])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Followed to the end: four times the lease, renewed all along.
    let out = follow("4s").wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let id = text.split_whitespace().nth(1).unwrap().to_owned();
    let status = daemon.ended(&id, Duration::from_secs(5));
    assert_eq!(
        (status["state"].as_str(), status["reason"].as_str()),
        (Some("completed"), Some("duration elapsed")),
        "{status}"
    );

    // The follower dies (a CI runner killed): the lease runs out.
    let mut child = follow("60s");
    // Its output is read (kept open) until the kill, as a terminal would.
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    output.read_line(&mut first).unwrap();
    let id = first.split_whitespace().nth(1).unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the follower still runs"
    );
    child.kill().unwrap();
    let killed_ms = unix_ms();
    child.wait().unwrap();
    drop(output);
    let status = daemon.ended(&id, Duration::from_secs(10));
    assert_eq!(
        status["reason"], "lease expired: no renewal for 1s",
        "{status}"
    );
    // The last renewal came at most a third of the lease before the kill.
    let after_kill = ms(&status["ended_unix_ms"]).saturating_sub(killed_ms);
    assert!(
        after_kill < 1000 + MARGIN_MS,
        "disarmed {after_kill} ms after the kill"
    );
    assert_eq!(cg.attached(), 0);
}
