//! The local demo, the README's "run it" command: starts `chaos-daemon serve` with a demo
//! config (the shipped `chaos/chaos.yaml`'s budget), creates a cgroup, runs real UDP and TCP
//! workloads inside it and the same workloads outside it, and drives the daemon with
//! `chaos-ctl`: 30% egress loss (stopped; measured by UDP, TCP and ping), then ECONNREFUSED on
//! 25% of connects (ended by an emergency stop). It prints configured versus observed rates, a post-mortem report and the
//! daemon's metrics, checks the daemon's record (`--output json`: each experiment's type, final
//! state and count) against what the workloads saw, and proves from the kernel that nothing
//! stays attached. Then the daemon restarts with SLO guards and a guard rolls an experiment
//! back against a real Prometheus (`guard`). Everything it created is removed at the end, also
//! when it fails.
//!
//! * `ctl` — chaos-ctl against the demo's daemon.
//! * `guard` — the guard part: HTTP service, load, Prometheus, the rollback and its report.
//! * `process` — child processes, the cgroup and directory, HTTP GET.
//! * `prometheus` — Debian's Prometheus, installed when missing.

mod ctl;
mod guard;
mod process;
mod prometheus;

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
};

use anyhow::{Context as _, bail};

use self::{
    ctl::Ctl,
    process::{DemoDir, Proc, cgroup2_mount, http_get},
};
use crate::{cargo, require_root};

const DATAGRAMS: u64 = 20_000;
const CONNECTS: u64 = 2_000;
const TCP_BYTES: u64 = 1 << 20;

/// What every part of the demo uses: the binaries, the cgroup, the private directory (socket,
/// state, configs, Prometheus) and chaos-ctl.
pub struct Demo {
    root: PathBuf,
    daemon_bin: PathBuf,
    workload: PathBuf,
    cgroup: PathBuf,
    tmp: PathBuf,
    ctl: Ctl,
}

impl Demo {
    fn socket(&self) -> PathBuf {
        self.tmp.join("daemon.sock")
    }

    fn cgroup_str(&self) -> anyhow::Result<String> {
        Ok(self
            .cgroup
            .to_str()
            .context("non-UTF-8 cgroup path")?
            .to_string())
    }

    /// A daemon config: the shipped `chaos/chaos.yaml`'s budget section, then `extra`. The
    /// shipped file as a whole guards every experiment with SLOs from a Prometheus at
    /// 127.0.0.1:9090 and notifies channels whose secrets come from the environment.
    fn config(&self, extra: &str) -> anyhow::Result<String> {
        let shipped = self.root.join("chaos/chaos.yaml");
        let text = std::fs::read_to_string(&shipped)
            .with_context(|| format!("reading {}", shipped.display()))?;
        let mut budget = String::new();
        let mut inside = false;
        for line in text.lines() {
            if !line.is_empty() && !line.starts_with([' ', '#']) {
                inside = line.starts_with("budget:");
            }
            if inside {
                budget += line;
                budget += "\n";
            }
        }
        if budget.is_empty() {
            bail!("{} has no budget section", shipped.display());
        }
        Ok(budget + extra)
    }

    /// Starts `chaos-daemon serve` with `config` on the demo's socket and state directory; the
    /// daemon and its `metrics on URL` line.
    fn start_daemon(&self, config: &Path) -> anyhow::Result<(Proc, String)> {
        let mut daemon = Proc::spawn(
            Command::new(&self.daemon_bin)
                .arg("serve")
                .arg("--socket")
                .arg(self.socket())
                .arg("--state-dir")
                .arg(self.tmp.join("state"))
                .arg("--config")
                .arg(config)
                .args(["--metrics-addr", "127.0.0.1:0"])
                // Its log lines (the rollback's) go to the demo's output: plain text.
                .env("NO_COLOR", "1"),
        )?;
        let metrics = daemon.next_line()?;
        Ok((daemon, metrics))
    }

    /// The kernel's word (`chaos-daemon attached`) that no program is attached to the cgroup.
    fn kernel_check(&self) -> anyhow::Result<String> {
        let out = Command::new(&self.daemon_bin)
            .arg("attached")
            .arg(&self.cgroup)
            .output()?;
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        if !out.status.success() {
            bail!("cleanup check failed: {last}");
        }
        Ok(last)
    }
}

pub fn run() -> anyhow::Result<()> {
    require_root("the demo")?;
    prometheus::ensure_installed()?;
    // The loss row is measured by ping, a client that counts what never came back.
    crate::apt::ensure("demo", &["iputils-ping"])?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "chaos-daemon",
        "-p",
        "chaos-ctl",
        "--bins",
    ])?;
    let root = workspace_root();
    let bin = root.join("target/release");
    let mount = cgroup2_mount()?;
    let pid = std::process::id();
    let cg = DemoDir::cgroup(&mount.join(format!("chaos-demo-{pid}")))?;
    let tmp = DemoDir::private(&std::env::temp_dir().join(format!("chaos-demo-{pid}")))?;
    let demo = Demo {
        daemon_bin: bin.join("chaos-daemon"),
        workload: bin.join("chaos-workload"),
        cgroup: cg.0.clone(),
        tmp: tmp.0.clone(),
        ctl: Ctl {
            bin: bin.join("chaos-ctl"),
            daemon: format!("unix://{}", tmp.0.join("daemon.sock").display()),
        },
        root,
    };
    let cgs = demo.cgroup_str()?;

    let config = demo.tmp.join("chaos.yaml");
    std::fs::write(&config, demo.config("")?)?;
    let (daemon, metrics) = demo.start_daemon(&config)?;
    println!("\n== chaos-ebpf demo");
    println!("   {}\n   {metrics}", daemon.first);
    println!(
        "   config {}: the shipped chaos/chaos.yaml's budget, no guards yet",
        config.display()
    );
    println!(
        "   target cgroup {cgs}; workloads run as separate processes inside it and outside it\n"
    );
    let (ctl, workload) = (&demo.ctl, &demo.workload);

    let tcp = Proc::ready(Command::new(workload).args(["tcp-listen", "--timeout-ms", "120000"]))?;
    let tcp_to = format!("127.0.0.1:{}", tcp.port);
    let mut rows = Vec::new();

    // 1. 30% egress packet loss, stopped by hand.
    let loss_id = ctl.start(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        &cgs,
        "--direction",
        "egress",
        "--intensity",
        "0.3",
        "--duration",
        "120",
        "--name",
        "demo-loss",
    ])?;
    let (rx_in, rx_out) = (udp_receiver(workload)?, udp_receiver(workload)?);
    let (to_in, to_out) = (
        format!("127.0.0.1:{}", rx_in.port),
        format!("127.0.0.1:{}", rx_out.port),
    );
    let n = DATAGRAMS.to_string();
    let (a, b) = both(
        workload,
        &demo.cgroup,
        &["udp-send", "--to", &to_in, "--count", &n],
        &["udp-send", "--to", &to_out, "--count", &n],
    )?;
    let (got_in, got_out) = (rx_in.received()?, rx_out.received()?);
    check_sent(&a, DATAGRAMS)?;
    check_sent(&b, DATAGRAMS)?;
    let lost = |got: u64| pct(DATAGRAMS - got, DATAGRAMS);
    rows.push(row(
        "egress loss, UDP",
        "30.0%",
        lost(got_in),
        lost(got_out),
    ));
    let bytes = TCP_BYTES.to_string();
    let (a, b) = both(
        workload,
        &demo.cgroup,
        &["tcp-send", "--to", &tcp_to, "--bytes", &bytes],
        &["tcp-send", "--to", &tcp_to, "--bytes", &bytes],
    )?;
    let done = |t: &str| -> anyhow::Result<String> {
        check_sent(t, 1)?;
        Ok(format!(
            "1 MiB arrived in {:.2} s",
            field(t, "elapsed_us") as f64 / 1e6
        ))
    };
    rows.push(row("egress loss, TCP", "30.0%", done(&a)?, done(&b)?));
    let ping = [
        "exec",
        "ping",
        "-n",
        "-q",
        "-c",
        "500",
        "-i",
        "0.002",
        "-W",
        "1",
        "127.0.0.1",
    ];
    let (a, b) = both(workload, &demo.cgroup, &ping, &ping)?;
    rows.push(row(
        "egress loss, ping",
        "30.0%",
        ping_loss(&a)?,
        ping_loss(&b)?,
    ));
    println!(
        "$ chaos-ctl stop {loss_id}\n{}",
        ctl.run(&["stop", &loss_id])?
    );

    // 2. 25% of connects refused; ended by the emergency stop.
    ctl.start(&[
        "experiment",
        "dependency_failure",
        "--cgroup",
        &cgs,
        "--intensity",
        "0.25",
        "--duration",
        "120",
        "--name",
        "demo-db-down",
    ])?;
    let n = CONNECTS.to_string();
    let (a, b) = both(
        workload,
        &demo.cgroup,
        &["connect", "--to", &tcp_to, "--count", &n],
        &["connect", "--to", &tcp_to, "--count", &n],
    )?;
    drop(tcp);
    let refused_inside = field(&a, "ECONNREFUSED");
    let refused = |t: &str| pct(field(t, "ECONNREFUSED"), CONNECTS);
    rows.push(row(
        "connect ECONNREFUSED",
        "25.0%",
        refused(&a),
        refused(&b),
    ));
    println!("$ chaos-ctl status\n{}", ctl.run(&["status"])?);
    println!(
        "$ chaos-ctl emergency-stop\n{}",
        ctl.run(&["emergency-stop", "--reason", "demo"])?
    );
    println!(
        "$ chaos-ctl emergency-stop --clear\n{}",
        ctl.run(&["emergency-stop", "--clear"])?
    );
    // The emergency stop returned once the faults were disarmed; detaching and recording
    // continue on the daemon's recorder: wait for it before reading the record.
    ctl.wait_until_none_running(std::time::Duration::from_secs(10))?;
    ctl.check_record(&[
        ("demo-loss", "packet_loss", "stopped", None),
        (
            "demo-db-down",
            "dependency_failure",
            "emergency_stopped",
            Some(refused_inside),
        ),
    ])?;

    println!(
        "{}",
        row(
            "fault",
            "configured",
            "inside the cgroup".into(),
            "outside".into()
        )
    );
    for r in rows {
        println!("{r}");
    }
    println!(
        "\n$ chaos-ctl report --last 1h\n{}",
        ctl.run(&["report", "--last", "1h"])?
    );
    println!(
        "$ chaos-ctl report {loss_id}\n{}",
        ctl.run(&["report", &loss_id])?
    );
    let url = metrics
        .strip_prefix("metrics on ")
        .context("metrics line")?;
    let (_, body) = http_get(url)?;
    println!("$ curl {url}   (excerpt)");
    for l in body.lines().filter(|l| {
        l.starts_with("chaos_faults_injected_total")
            || l.starts_with("chaos_experiments_finished_total")
    }) {
        println!("{l}");
    }
    println!(
        "\n   kernel check after the stops: {}",
        demo.kernel_check()?
    );
    daemon.terminate()?;

    // 3. The daemon again, now with SLO guards: a guard rolls an experiment back.
    guard::run(&demo)?;
    drop(cg);
    drop(tmp);
    println!("   removed {cgs} and the demo's state\n");
    Ok(())
}

fn row(fault: &str, configured: &str, inside: String, outside: String) -> String {
    format!("   {fault:<22} {configured:<11} {inside:<28} {outside}")
}

fn pct(part: u64, whole: u64) -> String {
    format!(
        "{:.1}% ({part}/{whole})",
        100.0 * part as f64 / whole as f64
    )
}

/// A `key=value` count from a workload's result line (0 when absent).
fn field(tally: &str, key: &str) -> u64 {
    tally
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn check_sent(tally: &str, expected_ok: u64) -> anyhow::Result<()> {
    if field(tally, "ok") != expected_ok {
        bail!("workload did not complete: {tally}");
    }
    Ok(())
}

/// Runs the same kind of workload inside the cgroup and outside it, at the same time.
fn both(
    workload: &Path,
    cgroup: &Path,
    inside: &[&str],
    outside: &[&str],
) -> anyhow::Result<(String, String)> {
    let run = |cg: Option<&Path>, args: &[&str]| -> anyhow::Result<String> {
        let mut cmd = Command::new(workload);
        if let Some(cg) = cg {
            cmd.arg("--cgroup").arg(cg);
        }
        let out = cmd.args(args).output()?;
        if !out.status.success() {
            bail!(
                "chaos-workload {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    thread::scope(|s| {
        let a = s.spawn(|| run(Some(cgroup), inside));
        let b = s.spawn(|| run(None, outside));
        Ok((
            a.join().expect("inside workload")?,
            b.join().expect("outside workload")?,
        ))
    })
}

/// The loss ping reports in its summary (`500 packets transmitted, 349 received, ...`).
fn ping_loss(summary: &str) -> anyhow::Result<String> {
    let counts = summary
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| {
            let mut words = l.split_whitespace();
            let sent: u64 = words.next()?.parse().ok()?;
            let got: u64 = words.nth(2)?.parse().ok()?;
            Some((sent, got))
        });
    match counts {
        Some((sent, got)) if got <= sent && sent > 0 => Ok(pct(sent - got, sent)),
        _ => bail!("no ping summary in {summary:?}"),
    }
}

fn udp_receiver(workload: &Path) -> anyhow::Result<Proc> {
    Proc::ready(Command::new(workload).args(["udp-recv", "--idle-ms", "500"]))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
