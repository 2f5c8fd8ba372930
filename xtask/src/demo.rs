//! The local demo, the README's "run it" command: creates a cgroup, runs real UDP and TCP
//! workloads inside it and the same workloads outside it, injects 30% egress loss and then
//! ECONNREFUSED on 25% of connects with `chaos-daemon inject`, prints configured versus observed
//! rates, proves from the kernel that nothing stays attached, and removes the cgroup.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    thread,
};

use anyhow::{Context as _, bail};

use crate::{cargo, require_root};

const DATAGRAMS: u64 = 20_000;
const CONNECTS: u64 = 2_000;
const TCP_BYTES: u64 = 1 << 20;

pub fn run() -> anyhow::Result<()> {
    require_root("the demo")?;
    cargo(&["build", "--release", "-p", "chaos-daemon", "--bins"])?;
    let bin = workspace_root().join("target/release");
    let (daemon, workload) = (bin.join("chaos-daemon"), bin.join("chaos-workload"));
    let mount = cgroup2_mount()?;
    let cg = DemoCgroup::create(&mount.join(format!("chaos-demo-{}", std::process::id())))?;
    let cgs = cg.0.to_str().context("non-UTF-8 cgroup path")?.to_string();
    println!("\n== chaos-ebpf demo: target cgroup {cgs}");
    println!("   (workloads run as separate processes, inside the cgroup and outside it)\n");

    let tcp = Proc::ready(Command::new(&workload).args(["tcp-listen", "--timeout-ms", "120000"]))?;
    let tcp_to = format!("127.0.0.1:{}", tcp.port);
    let mut rows = Vec::new();

    // 1. 30% egress packet loss.
    let inject = Proc::armed(Command::new(&daemon).args([
        "inject",
        "--cgroup",
        &cgs,
        "--fault",
        "packet-loss",
        "--probability",
        "0.3",
        "--direction",
        "egress",
        "--egress-drop",
        "silent",
        "--duration",
        "60s",
        "--report-interval-ms",
        "0",
    ]))?;
    let (rx_in, rx_out) = (udp_receiver(&workload)?, udp_receiver(&workload)?);
    let (to_in, to_out) = (
        format!("127.0.0.1:{}", rx_in.port),
        format!("127.0.0.1:{}", rx_out.port),
    );
    let n = DATAGRAMS.to_string();
    let (a, b) = both(
        &workload,
        &cg.0,
        ["udp-send", "--to", &to_in, "--count", &n],
        ["udp-send", "--to", &to_out, "--count", &n],
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
        &workload,
        &cg.0,
        ["tcp-send", "--to", &tcp_to, "--bytes", &bytes],
        ["tcp-send", "--to", &tcp_to, "--bytes", &bytes],
    )?;
    let done = |t: &str| -> anyhow::Result<String> {
        check_sent(t, 1)?;
        Ok(format!(
            "1 MiB arrived in {:.2} s",
            field(t, "elapsed_us") as f64 / 1e6
        ))
    };
    rows.push(row("egress loss, TCP", "30.0%", done(&a)?, done(&b)?));
    println!("   {}", inject.stop()?);

    // 2. 25% of connects refused.
    let inject = Proc::armed(Command::new(&daemon).args([
        "inject",
        "--cgroup",
        &cgs,
        "--fault",
        "socket-error",
        "--calls",
        "connect",
        "--errno",
        "ECONNREFUSED",
        "--probability",
        "0.25",
        "--duration",
        "60s",
        "--report-interval-ms",
        "0",
    ]))?;
    let n = CONNECTS.to_string();
    let (a, b) = both(
        &workload,
        &cg.0,
        ["connect", "--to", &tcp_to, "--count", &n],
        ["connect", "--to", &tcp_to, "--count", &n],
    )?;
    let refused = |t: &str| pct(field(t, "ECONNREFUSED"), CONNECTS);
    rows.push(row(
        "connect ECONNREFUSED",
        "25.0%",
        refused(&a),
        refused(&b),
    ));
    println!("   {}\n", inject.stop()?);

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

    let out = Command::new(&daemon).args(["attached", &cgs]).output()?;
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    if !out.status.success() {
        bail!("cleanup check failed: {last}");
    }
    println!("\n   kernel check after stop: {last}");
    drop(cg);
    println!("   removed {cgs}\n");
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
    inside: [&str; 5],
    outside: [&str; 5],
) -> anyhow::Result<(String, String)> {
    let run = |cg: Option<&Path>, args: [&str; 5]| -> anyhow::Result<String> {
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

fn udp_receiver(workload: &Path) -> anyhow::Result<Proc> {
    Proc::ready(Command::new(workload).args(["udp-recv", "--idle-ms", "500"]))
}

/// A child process that announced itself on its first stdout line; killed on drop.
struct Proc {
    child: Child,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> anyhow::Result<(Self, String)> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("{cmd:?}"))?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        Ok((
            Self {
                child,
                stdout,
                port: 0,
            },
            line.trim().to_string(),
        ))
    }

    /// A workload that prints `ready PORT`.
    fn ready(cmd: &mut Command) -> anyhow::Result<Self> {
        let (mut p, line) = Self::spawn(cmd)?;
        p.port = line
            .strip_prefix("ready ")
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{line:?}"))?;
        Ok(p)
    }

    /// `chaos-daemon inject` once it printed its `armed ...` line.
    fn armed(cmd: &mut Command) -> anyhow::Result<Self> {
        let (p, line) = Self::spawn(cmd)?;
        if !line.starts_with("armed") {
            bail!("chaos-daemon did not arm (see its error above)");
        }
        println!("   {line}");
        Ok(p)
    }

    /// A udp-recv's count once it went idle.
    fn received(mut self) -> anyhow::Result<u64> {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        rest.trim()
            .strip_prefix("received=")
            .and_then(|s| s.parse().ok())
            .with_context(|| rest.clone())
    }

    /// SIGTERM, then the last line the process printed.
    fn stop(mut self) -> anyhow::Result<String> {
        // SAFETY: plain syscall on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        if !self.child.wait()?.success() {
            bail!("chaos-daemon failed while stopping");
        }
        Ok(rest.lines().last().unwrap_or_default().to_string())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo's cgroup; processes in it are killed and it is removed on drop.
struct DemoCgroup(PathBuf);

impl DemoCgroup {
    fn create(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir(path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for DemoCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!("xtask demo: could not remove {}", self.0.display());
    }
}

/// The cgroup2 mount, as util-linux's findmnt reports it.
fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let out = Command::new("findmnt")
        .args(["-n", "-t", "cgroup2", "-o", "TARGET"])
        .output()?;
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string);
    first
        .map(PathBuf::from)
        .context("no cgroup2 filesystem is mounted")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
