//! VM tier: resource pressure on a pure cgroup v2 hierarchy with the cpu and memory
//! controllers (the hosts here bind them to cgroup v1). A CPU-bound workload's throughput drops
//! to about the configured share; `cpu.max` / `memory.high` are put back after a stop, after an
//! emergency stop, and after the daemon is SIGKILLed and restarted (the journal). One pressure
//! per cgroup: a second is refused (by the engine and by a daemon) and changes nothing, so the
//! first one's stop puts the original values back; shares below what the config allows and the
//! config's default shares.
#![cfg(feature = "vm-tests")]

mod support;

use std::{
    path::Path,
    process::Output,
    time::{Duration, Instant},
};

use chaos_api::experiment::{Fault, ResourceExhaustion};
use chaos_daemon::engine::EngineError;
use support::*;

fn knob(cg: &Path, name: &str) -> String {
    std::fs::read_to_string(cg.join(name))
        .unwrap_or_else(|e| panic!("{}/{name}: {e}", cg.display()))
        .trim()
        .to_string()
}

/// `cpu.max` and `memory.high` of `cg`.
fn knobs(cg: &Path) -> (String, String) {
    (knob(cg, "cpu.max"), knob(cg, "memory.high"))
}

fn cpus() -> usize {
    std::thread::available_parallelism().unwrap().get()
}

/// The `cpu.max` a pressure of `share` writes on a cgroup whose `cpu.max` is `old` (`max`).
fn tightened_cpu_max(old: &str, share: f64) -> String {
    let period: u64 = old.split_whitespace().nth(1).unwrap().parse().unwrap();
    let quota = ((period * cpus() as u64) as f64 * share).round() as u64;
    format!("{quota} {period}")
}

/// Loop iterations a CPU-bound workload with one thread per CPU does in the cgroup.
fn spin(cg: &Path) -> u64 {
    workload(
        Some(cg),
        &["spin", "--threads", &cpus().to_string(), "--ms", "2000"],
    )
    .ok()
}

/// `chaos-ctl experiment resource_exhaustion` on `cg` with `shares` (e.g. `--cpu-share 0.5`).
fn pressure(daemon: &Daemon, cg: &Path, shares: &[&str]) -> Output {
    let mut args = vec![
        "--output",
        "json",
        "experiment",
        "resource_exhaustion",
        "--cgroup",
        cg.to_str().unwrap(),
        "--duration",
        "300",
    ];
    args.extend_from_slice(shares);
    daemon.ctl(&args)
}

/// Starts a pressure of `shares` on `cg` and returns its id.
fn start_with(daemon: &Daemon, cg: &Path, shares: &[&str]) -> String {
    let out = pressure(daemon, cg, shares);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chaos-ctl experiment resource_exhaustion {shares:?} failed ({:?}): {}{stdout}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn start(daemon: &Daemon, cg: &Path, cpu: &str, mem: &str) -> String {
    start_with(daemon, cg, &["--cpu-share", cpu, "--memory-share", mem])
}

/// Asserts chaos-ctl exited 3 (refused by the daemon) with a message containing each of `want`.
fn assert_refused(out: &Output, want: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "refused: {err}");
    for w in want {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
}

/// Waits until the daemon lists no experiment (an emergency stop answers after the disarm
/// writes; releasing and recording finish on its recorder thread).
fn wait_until_none_listed(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = daemon.ctl_ok(&["--output", "json", "status"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        if v["experiments"].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        assert!(Instant::now() < deadline, "still listed: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cpu_pressure_cuts_throughput_to_the_share_and_stop_restores_the_knobs() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "pressure");
    let dir = TempDir::new("pressure");
    let daemon = Daemon::start(&dir.0);
    // A memory.max of 256 MiB: memory.high is set to the share of it, exactly.
    std::fs::write(cg.path.join("memory.max"), (256u64 << 20).to_string()).unwrap();
    let (cpu_old, mem_old) = knobs(&cg.path);

    // Throughput under TCG follows the host's load: each attempt measures its own baseline
    // right before the pressure and again after the stop.
    measured("cpu pressure", || {
        let base = spin(&cg.path);
        let id = start(&daemon, &cg.path, "0.5", "0.5");
        assert_eq!(knob(&cg.path, "cpu.max"), tightened_cpu_max(&cpu_old, 0.5));
        let high: u64 = knob(&cg.path, "memory.high").parse().expect("a number");
        assert_eq!(high, 128 << 20, "half of memory.max");
        let pressed = spin(&cg.path);
        daemon.ctl_ok(&["stop", &id]);
        assert_eq!(knobs(&cg.path), (cpu_old.clone(), mem_old.clone()));
        let after = spin(&cg.path);
        let (ratio, restored) = (pressed as f64 / base as f64, after as f64 / base as f64);
        println!(
            "throughput {pressed} / {base} = {ratio:.3} at cpu share 0.5; {restored:.3} after stop"
        );
        if !(0.35..=0.65).contains(&ratio) {
            return Err(format!("ratio {ratio:.3} at share 0.5"));
        }
        if restored <= 0.8 {
            return Err(format!(
                "throughput after stop {restored:.3} of the baseline"
            ));
        }
        Ok(())
    });
}

#[test]
fn emergency_stop_restores_the_knobs() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "pressure-es");
    let dir = TempDir::new("pressure-es");
    let daemon = Daemon::start(&dir.0);
    let old = knobs(&cg.path);
    start(&daemon, &cg.path, "0.25", "0.5");
    assert_ne!(knob(&cg.path, "cpu.max"), old.0);
    daemon.ctl_ok(&["emergency-stop", "--reason", "vm test"]);
    // Put back by the disarm itself, before the answer.
    assert_eq!(knobs(&cg.path), old);
    // Released and recorded after the answer: then the cgroup is free for a new pressure.
    wait_until_none_listed(&daemon);
    daemon.ctl_ok(&["emergency-stop", "--clear"]);
    let id = start(&daemon, &cg.path, "0.25", "0.5");
    assert_ne!(knob(&cg.path, "cpu.max"), old.0);
    daemon.ctl_ok(&["stop", &id]);
    assert_eq!(knobs(&cg.path), old);
}

#[test]
fn a_sigkilled_daemon_s_knobs_are_restored_by_the_next_start() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "pressure-kill");
    let dir = TempDir::new("pressure-kill");
    let old = knobs(&cg.path);
    let mut daemon = Daemon::start(&dir.0);
    start(&daemon, &cg.path, "0.25", "0.5");
    let tightened = knob(&cg.path, "cpu.max");
    assert_ne!(tightened, old.0);
    daemon.child.kill().unwrap(); // SIGKILL
    daemon.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(knob(&cg.path, "cpu.max"), tightened, "nothing undid it yet");
    drop(daemon);
    let daemon = Daemon::start(&dir.0);
    assert_eq!(knobs(&cg.path), old);
    let list = daemon.ctl_ok(&["--output", "json", "report", "--last", "1h"]);
    assert!(list.contains("aborted"), "{list}");
}

/// Two pressures on one cgroup would each journal the value they found, and stopping both
/// would leave the first one's tightened value behind: the engine refuses the second.
#[test]
fn the_engine_refuses_a_second_pressure_and_the_stop_restores_the_original() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "pressure-two");
    let engine = engine(&mount);
    let pressure = |cpu, memory| {
        spec(
            cg.target(),
            Fault::ResourceExhaustion(ResourceExhaustion {
                cpu_share: Some(cpu),
                memory_share: Some(memory),
            }),
            1.0,
        )
    };
    let old = knobs(&cg.path);
    let first = engine.start(&pressure(0.5, 0.5)).unwrap();
    let tightened = knobs(&cg.path);
    assert_eq!(tightened.0, tightened_cpu_max(&old.0, 0.5));
    assert_ne!(tightened.1, old.1, "memory.high tightened");

    let e = engine.start(&pressure(0.25, 0.25)).unwrap_err();
    assert!(
        matches!(e, EngineError::Host(_))
            && e.to_string()
                .contains("another resource_exhaustion experiment holds this cgroup"),
        "{e:?}: {e}"
    );
    assert_eq!(
        knobs(&cg.path),
        tightened,
        "the refused one changed nothing"
    );

    assert_eq!(engine.stop(first).unwrap().injected, 2, "two knobs");
    assert_eq!(
        knobs(&cg.path),
        old,
        "the original values, not the tightened ones"
    );

    // Given back: a new pressure may start.
    let again = engine.start(&pressure(0.25, 0.5)).unwrap();
    assert_eq!(knob(&cg.path, "cpu.max"), tightened_cpu_max(&old.0, 0.25));
    engine.stop(again).unwrap();
    assert_eq!(knobs(&cg.path), old);
}

/// Through a daemon with the default config: a second pressure on one cgroup and a share below
/// `1 - experiments.resource_exhaustion.max_cpu_usage` (0.9) are refused (exit 3) and change
/// nothing; without shares the daemon takes away the most the config allows (cpu share 0.1).
#[test]
fn a_daemon_refuses_a_second_pressure_and_a_share_below_its_config() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "pressure-refused");
    let dir = TempDir::new("pressure-refused");
    let daemon = Daemon::start(&dir.0);
    let old = knobs(&cg.path);

    let first = start(&daemon, &cg.path, "0.5", "0.5");
    let tightened = knobs(&cg.path);
    assert_eq!(tightened.0, tightened_cpu_max(&old.0, 0.5));
    let second = pressure(&daemon, &cg.path, &["--cpu-share", "0.25"]);
    assert_refused(
        &second,
        &[
            cg.path.to_str().unwrap(),
            "another resource_exhaustion experiment holds this cgroup",
        ],
    );
    assert_eq!(
        knobs(&cg.path),
        tightened,
        "the refused one changed nothing"
    );
    daemon.ctl_ok(&["stop", &first]);
    assert_eq!(
        knobs(&cg.path),
        old,
        "the original values, not the tightened ones"
    );

    let below = pressure(&daemon, &cg.path, &["--cpu-share", "0.001"]);
    assert_refused(
        &below,
        &[
            "fault.cpu_share",
            "0.001",
            "experiments.resource_exhaustion.max_cpu_usage",
        ],
    );
    assert_eq!(knobs(&cg.path), old, "the refused share changed nothing");

    // No share given: 1 - max_cpu_usage and 1 - max_memory_usage, the most the config allows.
    let defaults = start_with(&daemon, &cg.path, &[]);
    assert_eq!(
        knob(&cg.path, "cpu.max"),
        tightened_cpu_max(&old.0, 1.0 - 0.9)
    );
    let high: u64 = knob(&cg.path, "memory.high").parse().expect("a number");
    assert_eq!(high % 4096, 0);
    daemon.ctl_ok(&["stop", &defaults]);
    assert_eq!(knobs(&cg.path), old);
}
