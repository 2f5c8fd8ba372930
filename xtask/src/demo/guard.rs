//! The demo's third part: a guard rolls an experiment back against a real Prometheus.
//!
//! An HTTP service (`chaos-workload http-serve`) runs in the demo cgroup and opens a connection
//! to its dependency (a listener on a thread of the demo) for every request; `http-load` drives
//! it from outside the cgroup at 100 requests/s; Debian's Prometheus scrapes it every second.
//! The daemon runs with a config whose critical SLO is `error_rate` from
//! `chaos/safety/http-slos.yaml`, evaluated every 100 ms after a 2 s baseline. ECONNREFUSED on
//! every connect of the cgroup turns the service's answers into 503s, and the guard rolls the
//! experiment back at the first scrape that sees them. Shows the pre-flight lines, the live
//! guard, the rollback and its timing, what the load saw before, during and after, the report
//! (its HTML page written to `target/`), and the kernel's word that nothing stays attached.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Demo,
    ctl::Ctl,
    process::{Proc, http_get},
    prometheus::{self, Prometheus},
};

/// Requests per second of the load.
const RPS: u64 = 100;
/// The load runs as back-to-back `http-load` processes of this long each (its slices).
const SLICE: Duration = Duration::from_millis(500);
/// How often the daemon evaluates the guard.
const GUARD_INTERVAL_MS: u64 = 100;
/// How long the load keeps running after the rollback, to show the recovery.
const AFTER: Duration = Duration::from_millis(2500);
/// Where the HTML report goes, under the workspace root (target/ is not tracked).
const HTML_REPORT: &str = "target/chaos-demo-report.html";

/// Runs the guard part on a fresh daemon (config in `demo.tmp`), the demo's cgroup and its
/// state directory; stops everything it started.
pub fn run(demo: &Demo) -> anyhow::Result<()> {
    println!("\n== a guard rolls an experiment back (a real Prometheus, a real HTTP service)");
    let dependency = Dependency::start()?;
    let service = Proc::ready(
        Command::new(&demo.workload)
            .arg("--cgroup")
            .arg(&demo.cgroup)
            .args(["http-serve", "--listen", "127.0.0.1:0", "--dependency"])
            .arg(dependency.addr.to_string()),
    )?;
    let service_addr = SocketAddr::from(([127, 0, 0, 1], service.port));
    let load = Load::start(&demo.workload, format!("http://{service_addr}/"));
    let prom = Prometheus::start(&demo.tmp.join("prometheus"), service_addr)?;
    let waited = prom.wait_for_data(
        "sum(rate(http_requests_total[10s]))",
        Duration::from_secs(30),
    )?;
    println!(
        "   http-serve {service_addr} in the cgroup, its dependency {} (connected to on every \
         request),\n   http-load {RPS} requests/s from outside, Prometheus {} scraping every {} s \
         (data after {:.1} s)",
        dependency.addr,
        prom.url,
        prometheus::SCRAPE.as_secs(),
        waited.as_secs_f64()
    );
    let config = demo.tmp.join("chaos-guarded.yaml");
    let guards = guard_config(&demo.root, &prom.url);
    std::fs::write(&config, demo.config(&guards)?)?;
    let (daemon, metrics) = demo.start_daemon(&config)?;
    println!(
        "   the daemon again, with {}: the shipped budget and\n{}   {}\n",
        config.display(),
        guards
            .lines()
            .map(|l| format!("     {l}\n"))
            .collect::<String>(),
        daemon.first
    );

    let before = Instant::now();
    let id = demo.ctl.start(&[
        "experiment",
        "dependency_failure",
        "--cgroup",
        &demo.cgroup_str()?,
        "--intensity",
        "1",
        "--errno",
        "ECONNREFUSED",
        "--duration",
        "60s",
        "--guard",
        "error_rate",
        "--name",
        "demo-guarded",
    ])?;
    let red_seen = watch_status(&demo.ctl, &id)?;
    let status = demo.ctl.wait_ended(&id, Duration::from_secs(30))?;
    let rolled = Instant::now();
    if status["state"] != "rolled_back" {
        bail!("{id} ended without a rollback: {status}");
    }
    if !red_seen {
        println!(
            "   (the evaluation that saw error_rate red rolled the experiment back at once, so no \
             status showed it red; the report's Guards table and the metrics below have the red \
             value)\n"
        );
    }
    thread::sleep(AFTER);
    let slices = load.finish()?;
    demo.ctl.wait_until_none_running(Duration::from_secs(10))?;
    let report = demo.ctl.report(&id)?;
    print_rollback(&report)?;
    let injected = report["status"]["counters"]["injected"]
        .as_u64()
        .with_context(|| format!("no injected count: {report}"))?;
    print_load(&slices, before, rolled, injected)?;

    println!(
        "\n$ chaos-ctl report {id}\n{}",
        demo.ctl.run(&["report", &id])?
    );
    let html = demo.ctl.run(&["report", &id, "--format", "html"])?;
    let html_path = demo.root.join(HTML_REPORT);
    std::fs::write(&html_path, &html)
        .with_context(|| format!("writing {}", html_path.display()))?;
    println!(
        "$ chaos-ctl report {id} --format html > {HTML_REPORT}\n   the HTML report ({} KiB, \
         self-contained; open it in a browser): {}",
        html.len() / 1024,
        html_path.display()
    );
    print_metrics(&metrics)?;
    println!(
        "\n   kernel check after the rollback: {}",
        demo.kernel_check()?
    );
    daemon.terminate()?;
    drop((prom, service, dependency));
    println!("   stopped the daemon, Prometheus, the HTTP service and its dependency");
    Ok(())
}

/// The daemon config's guard part: `<repo>/chaos/safety/http-slos.yaml`, `error_rate` the one
/// critical SLO, guards every [`GUARD_INTERVAL_MS`] after a 2 s baseline, the demo's
/// Prometheus, and no notification channel (the shipped ones read secrets the demo has not).
fn guard_config(root: &Path, prometheus: &str) -> String {
    let slos = root.join("chaos/safety/http-slos.yaml");
    format!(
        "safety_checks:\n  slo_validation:\n    critical_slos: [error_rate]\n    warning_slos: \
         []\n  slo_files: ['{}']\n  guard_interval_ms: {GUARD_INTERVAL_MS}\n  baseline: 2s\n\
         monitoring:\n  prometheus:\n    url: '{prometheus}'\n    query_timeout: 1s\n\
         rollback:\n  notification_channels: []\n",
        slos.display()
    )
}

/// Polls `chaos-ctl status` while `id` is listed; prints the first answer that shows its guard
/// green and the first that shows it red (rolled back, not yet recorded). Whether red was seen.
fn watch_status(ctl: &Ctl, id: &str) -> anyhow::Result<bool> {
    let t0 = Instant::now();
    let mut green = false;
    while t0.elapsed() < Duration::from_secs(30) {
        let text = ctl.run(&["status"])?;
        if !text.contains(id) {
            return Ok(false);
        }
        let guards = text
            .split_once(&format!("guards of {id}:"))
            .map_or("", |(_, g)| g);
        let red = guards.lines().any(|l| l.starts_with("  RED"));
        if red || (!green && guards.lines().any(|l| l.starts_with("  green"))) {
            println!(
                "$ chaos-ctl status      ({:.2} s after the start returned)\n{text}",
                t0.elapsed().as_secs_f64()
            );
            if red {
                return Ok(true);
            }
            green = true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    bail!("{id} still listed after 30 s")
}

/// The rollback as the daemon recorded it: state, reason, arming to rollback, and the guard's
/// decision to the kernel disarmed (the timeline's rollback event).
fn print_rollback(report: &serde_json::Value) -> anyhow::Result<()> {
    let status = &report["status"];
    let reason = status["reason"].as_str().unwrap_or_default();
    if !reason.starts_with("slo violation: error_rate = ") {
        bail!("rolled back for another reason: {status}");
    }
    let ms = |key: &str| {
        status[key]
            .as_u64()
            .with_context(|| format!("{key}: {status}"))
    };
    let armed_for = ms("ended_unix_ms")?.saturating_sub(ms("started_unix_ms")?);
    let event = report["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["kind"] == "rollback"))
        .and_then(|e| e["message"].as_str())
        .with_context(|| format!("no rollback event on the timeline: {report}"))?;
    let disarm_us = event
        .split_once("disarmed ")
        .and_then(|(_, rest)| rest.split_once(" µs after the evaluation"))
        .map(|(n, _)| n)
        .with_context(|| format!("no decision-to-disarm time in {event:?}"))?;
    println!(
        "   state {}, reason: {reason}\n   armed -> rolled back: {:.2} s (Prometheus scrapes \
         every {} s, the guard evaluates every {GUARD_INTERVAL_MS} ms)\n   the guard's decision \
         -> kernel disarmed: {disarm_us} µs (the timeline's rollback event)",
        status["state"].as_str().unwrap_or_default(),
        armed_for as f64 / 1000.0,
        prometheus::SCRAPE.as_secs()
    );
    Ok(())
}

/// What the HTTP load saw before the start, while the experiment ran, and after the rollback;
/// fails unless the service answered every request before and after and the fault turned
/// exactly the `injected` refused connects into 503s.
fn print_load(
    slices: &[Slice],
    start: Instant,
    rolled: Instant,
    injected: u64,
) -> anyhow::Result<()> {
    let mut phases: [BTreeMap<String, u64>; 3] = Default::default();
    for s in slices {
        let phase = if s.began + SLICE <= start {
            0
        } else if s.began >= rolled {
            2
        } else {
            1
        };
        for (key, n) in &s.tally {
            *phases[phase].entry(key.clone()).or_default() += n;
        }
    }
    println!(
        "\n   what the HTTP load saw ({RPS} GET/s from outside the cgroup, in {} ms slices):",
        SLICE.as_millis()
    );
    let names = [
        "before the start",
        "start to rollback",
        "after the rollback",
    ];
    for (name, tally) in names.iter().zip(&phases) {
        let text: Vec<String> = tally
            .iter()
            .map(|(k, n)| match k.strip_prefix("status_") {
                Some(code) => format!("{n} answered {code}"),
                None if k == "ok" => format!("{n} answered 2xx"),
                None => format!("{n} {k}"),
            })
            .collect();
        println!("     {name:<26} {}", text.join(", "));
    }
    let clean = |t: &BTreeMap<String, u64>| t.get("ok") > Some(&0) && t.len() == 1;
    if !clean(&phases[0]) || !clean(&phases[2]) {
        bail!("the service was not healthy before the start and after the rollback: {phases:?}");
    }
    let refused = phases[1].get("status_503").copied().unwrap_or(0);
    if refused == 0 || refused != injected {
        bail!(
            "the load saw {refused} 503s but the daemon injected {injected} faults: {:?}",
            phases[1]
        );
    }
    println!(
        "     one 503 per fault the daemon counted ({injected}); every request after the rollback \
         succeeded: the service recovered"
    );
    Ok(())
}

/// The guard metrics of the daemon's `/metrics`.
fn print_metrics(metrics_line: &str) -> anyhow::Result<()> {
    let url = metrics_line
        .strip_prefix("metrics on ")
        .context("metrics line")?;
    let (_, body) = http_get(url)?;
    println!("$ curl {url}   (excerpt)");
    for l in body.lines().filter(|l| {
        l.starts_with("chaos_rollbacks_total")
            || l.starts_with("chaos_guard_violations_total")
            || l.starts_with("chaos_guard_value")
            || l.starts_with("chaos_guard_decision_to_disarm_seconds_count")
    }) {
        println!("{l}");
    }
    Ok(())
}

/// A loopback TCP listener on a thread of the demo that accepts every connection and closes
/// it: the service's dependency. Stops on drop.
struct Dependency {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Dependency {
    fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
                if flag.load(Ordering::Acquire) {
                    return;
                }
            }
        });
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Dependency {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the blocked accept(), which then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `http-load` run of the load: when it began sending and its counts (`ok`, `status_503`).
struct Slice {
    began: Instant,
    tally: BTreeMap<String, u64>,
}

/// Open-loop load from outside every cgroup of the demo, as back-to-back [`SLICE`]-long
/// `chaos-workload http-load` runs on a thread. Stops (after the running slice) on
/// [`finish`](Self::finish) or drop.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<Vec<Slice>>>>,
}

impl Load {
    fn start(workload: &Path, url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, workload): (_, PathBuf) = (stop.clone(), workload.to_path_buf());
        let thread = thread::spawn(move || {
            let mut slices = Vec::new();
            while !flag.load(Ordering::Acquire) {
                let began = Instant::now();
                let out = Command::new(&workload)
                    .args(["http-load", "--url", &url, "--rps", &RPS.to_string()])
                    .args(["--duration-ms", &SLICE.as_millis().to_string()])
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() {
                    bail!(
                        "chaos-workload http-load: {text}{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let tally = text
                    .split_whitespace()
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        let timing = k == "elapsed_us" || k == "p50_ns";
                        Some((k.to_owned(), v.parse().ok()?)).filter(|_| !timing)
                    })
                    .collect();
                slices.push(Slice { began, tally });
            }
            Ok(slices)
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the load; every slice it ran.
    fn finish(mut self) -> anyhow::Result<Vec<Slice>> {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.take().context("the load already stopped")?;
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))?
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
