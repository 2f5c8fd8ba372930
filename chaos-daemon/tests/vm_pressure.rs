//! VM tier: resource pressure on a pure cgroup v2 hierarchy with the cpu and memory
//! controllers (the hosts here bind them to cgroup v1). A CPU-bound workload's throughput drops
//! to about the configured share; `cpu.max` / `memory.high` are put back after a stop, after an
//! emergency stop, and after the daemon is SIGKILLed and restarted (the journal).
#![cfg(feature = "vm-tests")]

mod support;

use std::{path::Path, time::Duration};

use support::*;

fn knob(cg: &Path, name: &str) -> String {
    std::fs::read_to_string(cg.join(name))
        .unwrap_or_else(|e| panic!("{}/{name}: {e}", cg.display()))
        .trim()
        .to_string()
}

fn cpus() -> usize {
    std::thread::available_parallelism().unwrap().get()
}

/// Loop iterations a CPU-bound workload with one thread per CPU does in the cgroup.
fn spin(cg: &Path) -> u64 {
    workload(
        Some(cg),
        &["spin", "--threads", &cpus().to_string(), "--ms", "2000"],
    )
    .ok()
}

fn start(daemon: &Daemon, cg: &Path, cpu: &str, mem: &str) -> String {
    let out = daemon.ctl_ok(&[
        "--output",
        "json",
        "experiment",
        "resource_exhaustion",
        "--cgroup",
        cg.to_str().unwrap(),
        "--duration",
        "300",
        "--cpu-share",
        cpu,
        "--memory-share",
        mem,
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn cpu_pressure_cuts_throughput_to_the_share_and_stop_restores_the_knobs() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "pressure");
    let dir = TempDir::new("pressure");
    let daemon = Daemon::start(&dir.0);
    let (cpu_old, mem_old) = (knob(&cg.path, "cpu.max"), knob(&cg.path, "memory.high"));

    // Throughput under TCG follows the host's load: each attempt measures its own baseline
    // right before the pressure and again after the stop.
    measured("cpu pressure", || {
        let base = spin(&cg.path);
        let id = start(&daemon, &cg.path, "0.5", "0.5");
        let period: u64 = cpu_old.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(
            knob(&cg.path, "cpu.max"),
            format!("{} {period}", period * cpus() as u64 / 2)
        );
        let high: u64 = knob(&cg.path, "memory.high").parse().expect("a number");
        assert_eq!(high % 4096, 0);
        let pressed = spin(&cg.path);
        daemon.ctl_ok(&["stop", &id]);
        assert_eq!(knob(&cg.path, "cpu.max"), cpu_old);
        assert_eq!(knob(&cg.path, "memory.high"), mem_old);
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
    let (cpu_old, mem_old) = (knob(&cg.path, "cpu.max"), knob(&cg.path, "memory.high"));
    start(&daemon, &cg.path, "0.25", "0.5");
    assert_ne!(knob(&cg.path, "cpu.max"), cpu_old);
    daemon.ctl_ok(&["emergency-stop", "--reason", "vm test"]);
    assert_eq!(knob(&cg.path, "cpu.max"), cpu_old);
    assert_eq!(knob(&cg.path, "memory.high"), mem_old);
    daemon.ctl_ok(&["emergency-stop", "--clear"]);
}

#[test]
fn a_sigkilled_daemon_s_knobs_are_restored_by_the_next_start() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "pressure-kill");
    let dir = TempDir::new("pressure-kill");
    let (cpu_old, mem_old) = (knob(&cg.path, "cpu.max"), knob(&cg.path, "memory.high"));
    let mut daemon = Daemon::start(&dir.0);
    start(&daemon, &cg.path, "0.25", "0.5");
    let tightened = knob(&cg.path, "cpu.max");
    assert_ne!(tightened, cpu_old);
    daemon.child.kill().unwrap(); // SIGKILL
    daemon.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(knob(&cg.path, "cpu.max"), tightened, "nothing undid it yet");
    drop(daemon);
    let daemon = Daemon::start(&dir.0);
    assert_eq!(knob(&cg.path, "cpu.max"), cpu_old);
    assert_eq!(knob(&cg.path, "memory.high"), mem_old);
    let list = daemon.ctl_ok(&["--output", "json", "report", "--last", "1h"]);
    assert!(list.contains("aborted"), "{list}");
}
