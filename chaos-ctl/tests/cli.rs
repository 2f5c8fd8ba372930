//! The chaos-ctl binary without a daemon: offline validation, usage errors, refusals and
//! failures each get their exit code (0 ok, 1 failure, 2 usage, 3 refused).

use std::process::{Command, Output};

const CTL: &str = env!("CARGO_BIN_EXE_chaos-ctl");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn ctl(args: &[&str]) -> Output {
    Command::new(CTL).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn shipped_files_validate_offline() {
    for f in ["packet-loss", "dependency-failure", "api-error-injection"] {
        let path = format!("{ROOT}/chaos/experiments/{f}.yaml");
        let out = ctl(&[
            "--daemon",
            "unix:///nonexistent.sock",
            "validate",
            "-f",
            &path,
        ]);
        assert_eq!(out.status.code(), Some(0), "{f}: {}", stderr(&out));
    }
    let out = ctl(&[
        "validate",
        "--config",
        &format!("{ROOT}/chaos/chaos.yaml"),
        "--output",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim().ends_with("\"valid\":true}"),
        "{stdout}"
    );
}

#[test]
fn new_fault_files_validate_offline_naming_their_type() {
    for (f, kind) in [
        ("network-latency", "NetworkLatency"),
        ("file-errors", "SyscallError"),
        ("pod-deletion", "PodDeletion"),
        ("resource-exhaustion", "ResourceExhaustion"),
    ] {
        let path = format!("{ROOT}/chaos/experiments/{f}.yaml");
        let out = ctl(&["validate", "-f", &path]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{f}: {}", stderr(&out));
        assert!(stdout.contains(&format!("({kind}, ")), "{stdout}");
    }
    // A filter on a host fault is a usage error naming `filter`.
    let dir = std::env::temp_dir().join(format!("chaos-ctl-cli-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("kill.yaml");
    std::fs::write(
        &bad,
        "name: k\ntype: pod_deletion\ntarget: {pid: 1}\nduration: 5m\nfilter: {ports: 80}\n",
    )
    .unwrap();
    let out = ctl(&["validate", "-f", bad.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("kill.yaml: filter: a filter is not allowed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_files_are_usage_errors_naming_the_path() {
    let dir = std::env::temp_dir().join(format!("chaos-ctl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\ntype: packet_loss\ntarget: {pid: 1}\nduration: 5m\nintensity: 1.5\n",
    )
    .unwrap();
    let out = ctl(&["validate", "-f", bad.to_str().unwrap()]);
    let config = dir.join("chaos.yaml");
    std::fs::write(&config, "budget:\n  alert_threshold: 1.5\n").unwrap();
    let out_cfg = ctl(&["validate", "--config", config.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("intensity: 1.5 is not allowed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out_cfg.status.code(), Some(2));
    assert!(
        stderr(&out_cfg).contains("budget.alert_threshold"),
        "{}",
        stderr(&out_cfg)
    );
    let missing = ctl(&["validate", "-f", "/nonexistent/exp.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn exit_codes_tell_usage_refusal_and_failure_apart() {
    // Usage (clap): unknown command, missing target, bad duration.
    assert_eq!(ctl(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(ctl(&["experiment", "packet_loss"]).status.code(), Some(2));
    assert_eq!(
        ctl(&[
            "experiment",
            "packet_loss",
            "--cgroup",
            "/x",
            "--duration",
            "soon"
        ])
        .status
        .code(),
        Some(2)
    );
    // Failure: no daemon there.
    let out = ctl(&["--daemon", "unix:///nonexistent.sock", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("connecting to unix:///nonexistent.sock"),
        "{}",
        stderr(&out)
    );
    // --daemons needs a readable list.
    assert_eq!(
        ctl(&["--daemons", "/nonexistent/list", "status"])
            .status
            .code(),
        Some(2)
    );
}
