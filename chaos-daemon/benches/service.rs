//! Service benchmarks on the real kernel (root), measured from outside the daemon:
//! StartExperiment to the first fault a workload in the target sees, StopExperiment to its
//! first successful send again, `chaos-ctl emergency-stop` fanned out to 10, 50 and 100 daemons
//! on loopback, and the daemon's resident memory idle and with 16 experiments.
//! Run with `cargo xtask bench`; figures go to docs/performance.md.
//!
//! A benchmark promises nothing: the fan-out is tested in `tests/service_fleet.rs`, cleanup
//! after the daemon in `tests/service.rs` and `tests/safety.rs`. Its checks only refuse to
//! print figures measured on a run that did not do what it says.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    io::{BufRead as _, Read as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use chaos_api::proto::{self, fault, target};
use chaos_ctl::client::{TlsFiles, connect};
use support::*;

const LIFECYCLE_RUNS: usize = 40;
const FANOUT_RUNS: usize = 15;

fn main() {
    let Some(mount) = kernel() else {
        eprintln!("benchmarks need root and cgroup2");
        std::process::exit(1);
    };
    let dir = TempDir::new("bench-svc");
    let config = dir.0.join("chaos.yaml");
    // No money limits here: this measures latency, not budgets.
    std::fs::write(&config, "budget:\n  max_experiment_cost: 1000000\n  max_daily_cost: 1000000000\n  cost_per_request: 0\n").unwrap();
    let daemon = Daemon::start_with(&dir.0.join("main"), &["--config", config.to_str().unwrap()]);
    let cg = TestCgroup::new(&mount, "bench-svc");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "chaos-ebpf service benchmarks ({} CPUs)\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // 1. Start -> first fault, stop -> first success, as the workload in the cgroup sees them.
    let sink = UdpSink::new();
    let (mut to_fault, mut to_clear) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let mut c = connect(&daemon.addr(), &TlsFiles::default()).await.unwrap();
        for _ in 0..LIFECYCLE_RUNS {
            let mut w = Command::new(WORKLOAD)
                .arg("--cgroup")
                .arg(&cg.path)
                .args(["udp-flip", "--to", &sink.to(), "--max-ms", "3000"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = std::io::BufReader::new(w.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            let t0 = mono_ns();
            let r = c
                .start_experiment(start_request(&cg.path))
                .await
                .unwrap()
                .into_inner();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let t1 = mono_ns();
            c.stop_experiment(proto::StopExperimentRequest { id: r.id })
                .await
                .unwrap();
            let mut rest = String::new();
            out.read_to_string(&mut rest).unwrap();
            w.wait().unwrap();
            let field = |k: &str| -> u64 {
                rest.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                    .unwrap()
            };
            let (err, ok) = (field("first_error_ns"), field("recovered_ns"));
            assert!(
                err > t0 && ok > t1,
                "the workload saw the fault start and end: {rest}"
            );
            to_fault.push(Duration::from_nanos(err - t0));
            to_clear.push(Duration::from_nanos(ok - t1));
        }
    });
    report("StartExperiment -> first fault seen", to_fault);
    report("StopExperiment -> first send ok again", to_clear);

    // 2. Resident memory, idle and with 16 experiments.
    let rss_idle = rss_kib(daemon.child.id());
    let children: Vec<_> = (0..16).map(|i| cg.child(&format!("e{i}"))).collect();
    for c in &children {
        daemon.ctl_ok(&[
            "experiment",
            "dependency_failure",
            "--cgroup",
            c.to_str().unwrap(),
            "--duration",
            "120",
            "--intensity",
            "0.5",
        ]);
    }
    let rss_busy = rss_kib(daemon.child.id());
    daemon.ctl_ok(&["emergency-stop"]);
    println!(
        "\ndaemon RSS: idle {} MiB, with 16 experiments {} MiB\n",
        rss_idle / 1024,
        rss_busy / 1024
    );

    // 3. Emergency stop fanned out to many daemons on loopback.
    let t = Instant::now();
    let fleet: Vec<Daemon> = (0..100)
        .map(|i| Daemon::start(&dir.0.join(format!("d{i}"))))
        .collect();
    println!(
        "(started 100 daemons in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    for n in [10, 50, 100] {
        let file = dir.0.join(format!("daemons-{n}"));
        std::fs::write(
            &file,
            fleet[..n]
                .iter()
                .map(|d| d.addr() + "\n")
                .collect::<String>(),
        )
        .unwrap();
        let mut times = Vec::new();
        for _ in 0..FANOUT_RUNS {
            let t = Instant::now();
            let out = Command::new(ctl_bin())
                .arg("--daemons")
                .arg(&file)
                .arg("emergency-stop")
                .output()
                .unwrap();
            times.push(t.elapsed());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout)
                    .matches("disarmed")
                    .count(),
                n
            );
        }
        report(
            &format!("emergency-stop to {n} daemons (chaos-ctl wall)"),
            times,
        );
    }
    drop(fleet);
}

fn start_request(cgroup: &std::path::Path) -> proto::StartExperimentRequest {
    proto::StartExperimentRequest {
        spec: Some(proto::ExperimentSpec {
            name: "bench".into(),
            target: Some(proto::Target {
                kind: Some(target::Kind::Cgroup(cgroup.display().to_string())),
                pod_name: String::new(),
            }),
            fault: Some(proto::Fault {
                kind: Some(fault::Kind::PacketLoss(proto::PacketLoss {
                    direction: "egress".into(),
                    egress_drop: "visible".into(),
                })),
            }),
            intensity: Some(1.0),
            duration_ms: 60_000,
            ..Default::default()
        }),
        dry_run: false,
    }
}

fn mono_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap()
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{what:<44} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  (n={})",
        q(0.5),
        q(0.99),
        q(1.0),
        v.len()
    );
}
