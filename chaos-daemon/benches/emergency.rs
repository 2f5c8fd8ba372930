//! Emergency-stop latency under load (issue 7): the `EmergencyStop` RPC against a real daemon,
//! first idle (the baseline), then while 16 experiments are starting and stopping in a loop,
//! half of them pod deletions whose `cgroup.kill` waits for a process frozen in the cgroup v1
//! freezer. Prints p50/p99/max of the round trip seen by the client and of the disarm time the
//! daemon measured from the request's arrival, and their ratio to the idle baseline.
//! Run with `cargo xtask bench`; figures go to docs/performance.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chaos_api::proto;
use chaos_ctl::client::{TlsFiles, connect};
use support::*;

const IDLE_RUNS: usize = 200;
const LOADED_RUNS: usize = 300;
const NET_CHURNERS: usize = 8;
const KILL_CHURNERS: usize = 8;

fn main() {
    let Some(mount) = kernel() else {
        eprintln!("benchmarks need root and cgroup2");
        std::process::exit(1);
    };
    let v1_freezer = Path::new("/sys/fs/cgroup/freezer");
    let freezer = v1_freezer
        .join("cgroup.procs")
        .exists()
        .then_some(v1_freezer);
    if freezer.is_none() {
        println!(
            "note: no cgroup v1 freezer here (pure cgroup v2): the pod deletions kill live \
             processes, whose kills complete, instead of frozen ones\n"
        );
    }
    let dir = TempDir::new("bench-estop");
    let config = dir.0.join("chaos.yaml");
    std::fs::write(
        &config,
        "budget: {max_experiment_cost: 1000000, max_daily_cost: 1000000000, cost_per_request: 0}\n\
         experiments:\n  pod_deletion: {max_pods_deleted: 1000000, cost_per_pod: 0, \
         allowed_cgroups: ['chaos-test-*']}\n\
         experiment_types:\n  pod_deletion: {parameters: {max_pods: 1000000}}\n",
    )
    .unwrap();
    let daemon = Daemon::start_with(&dir.0.join("d"), &["--config", config.to_str().unwrap()]);
    let parent = TestCgroup::new(&mount, "bench-estop");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "chaos-ebpf emergency-stop benchmark ({} CPUs)\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let idle = rt.block_on(measure(&daemon.addr(), IDLE_RUNS));

    // The load: 8 loss experiments and 8 pod deletions of frozen processes, each started and
    // stopped in a loop by its own client.
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let mut frozen = Vec::new();
    let mut churners = Vec::new();
    for i in 0..NET_CHURNERS + KILL_CHURNERS {
        let cg = parent.child(&format!("c{i}"));
        let kill = i >= NET_CHURNERS;
        if kill {
            frozen.push(Frozen::start(&cg, freezer, i));
        }
        let (addr, stop, cycles) = (daemon.addr(), stop.clone(), cycles.clone());
        churners.push(std::thread::spawn(move || {
            churn(&addr, &cg, kill, &stop, &cycles);
        }));
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = cycles.load(Ordering::Relaxed);
    let loaded = rt.block_on(measure(&daemon.addr(), LOADED_RUNS));
    let churned = cycles.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::SeqCst);
    for c in churners {
        c.join().unwrap();
    }
    drop(frozen);

    println!(
        "idle daemon ({IDLE_RUNS} calls), then {} experiments starting and stopping ({churned} \
         start/stop cycles while measuring, {:.1} experiments disarmed per call on average):\n",
        NET_CHURNERS + KILL_CHURNERS,
        loaded.disarmed as f64 / LOADED_RUNS as f64
    );
    report("EmergencyStop round trip, idle", &idle.rtt, None);
    report(
        "EmergencyStop round trip, loaded",
        &loaded.rtt,
        Some(&idle.rtt),
    );
    report(
        "disarm at the daemon (from arrival), idle",
        &idle.disarm,
        None,
    );
    report(
        "disarm at the daemon (from arrival), loaded",
        &loaded.disarm,
        Some(&idle.disarm),
    );
    rt.block_on(async {
        let mut c = connect(&daemon.addr(), &TlsFiles::default()).await.unwrap();
        c.emergency_stop(proto::EmergencyStopRequest::default())
            .await
            .unwrap();
    });
    // Every experiment ends; nothing stays attached.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (0..NET_CHURNERS).any(|i| attached_count(&parent.path.join(format!("c{i}"))) > 0) {
        assert!(
            Instant::now() < deadline,
            "programs still attached after the run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What one series of emergency stops measured.
struct Series {
    rtt: Vec<Duration>,
    disarm: Vec<Duration>,
    disarmed: u64,
}

/// `runs` emergency stops, each followed by a clear and a short pause for the load to restart.
async fn measure(addr: &str, runs: usize) -> Series {
    let mut c = connect(addr, &TlsFiles::default()).await.unwrap();
    let mut s = Series {
        rtt: Vec::with_capacity(runs),
        disarm: Vec::with_capacity(runs),
        disarmed: 0,
    };
    for _ in 0..runs {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = Instant::now();
        let r = c
            .emergency_stop(proto::EmergencyStopRequest {
                reason: "benchmark".into(),
            })
            .await
            .unwrap()
            .into_inner();
        s.rtt.push(t.elapsed());
        s.disarm.push(Duration::from_nanos(r.disarm_ns));
        s.disarmed += u64::from(r.disarmed);
        c.clear_emergency_stop(proto::ClearEmergencyStopRequest {})
            .await
            .unwrap();
    }
    s
}

/// Starts and stops experiments on `cg` until `stop`: loss experiments, or pod deletions
/// every 100 ms (whose kills wait on a frozen process).
fn churn(addr: &str, cg: &Path, kill: bool, stop: &AtomicBool, cycles: &AtomicU64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = connect(addr, &TlsFiles::default()).await.unwrap();
        while !stop.load(Ordering::SeqCst) {
            let fault = if kill {
                proto::fault::Kind::PodDeletion(proto::PodDeletion { interval_ms: 100 })
            } else {
                proto::fault::Kind::PacketLoss(proto::PacketLoss {
                    direction: "egress".into(),
                    egress_drop: "silent".into(),
                })
            };
            let spec = proto::ExperimentSpec {
                name: "churn".into(),
                target: Some(proto::Target {
                    kind: Some(proto::target::Kind::Cgroup(cg.display().to_string())),
                    pod_name: String::new(),
                }),
                fault: Some(proto::Fault { kind: Some(fault) }),
                intensity: Some(0.5),
                duration_ms: 10_000,
                ..Default::default()
            };
            let started = c
                .start_experiment(proto::StartExperimentRequest {
                    spec: Some(spec),
                    dry_run: false,
                })
                .await;
            let pause = Duration::from_millis(if kill { 150 } else { 10 });
            tokio::time::sleep(pause).await;
            if let Ok(r) = started {
                // Refused when an emergency stop ended it first: that is the point.
                let _ = c
                    .stop_experiment(proto::StopExperimentRequest {
                        id: r.into_inner().id,
                    })
                    .await;
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// A `sleep` in cgroup `cg`, frozen by the cgroup v1 freezer (when there is one) so that
/// `cgroup.kill` cannot empty `cg`. Thawed (and so killed) on drop.
struct Frozen {
    child: Child,
    freezer: Option<PathBuf>,
}

impl Frozen {
    fn start(cg: &Path, freezer: Option<&Path>, i: usize) -> Self {
        let mut cmd = Command::new("sleep");
        cmd.arg("3600");
        start_in_cgroup(&mut cmd, cg);
        let child = cmd.spawn().unwrap();
        let freezer = freezer.map(|freezer| {
            let dir = freezer.join(format!("chaos-bench-{}-{i}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
            std::fs::write(dir.join("freezer.state"), "FROZEN").unwrap();
            dir
        });
        Self { child, freezer }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(dir) = &self.freezer {
            let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.freezer {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn quantile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, v: &[Duration], baseline: Option<&[Duration]>) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (p50, p99, max) = (quantile(v, 0.5), quantile(v, 0.99), quantile(v, 1.0));
    let ratio = baseline.map_or(String::new(), |b| {
        format!(
            "  (x{:.2} p50, x{:.2} p99 of idle)",
            us(p50) / us(quantile(b, 0.5)),
            us(p99) / us(quantile(b, 0.99))
        )
    });
    println!(
        "{what:<46} p50 {:>9.1} µs  p99 {:>9.1} µs  max {:>9.1} µs{ratio}",
        us(p50),
        us(p99),
        us(max)
    );
}
