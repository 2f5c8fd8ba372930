//! The local demo, the README's "run it" command: starts `chaos-daemon serve` with the shipped
//! `chaos/chaos.yaml`, creates a cgroup, runs real UDP and TCP workloads inside it and the same
//! workloads outside it, and drives the daemon with `chaos-ctl`: 30% egress loss (stopped), then
//! ECONNREFUSED on 25% of connects (ended by an emergency stop). It prints configured versus
//! observed rates, a post-mortem report and the daemon's metrics, checks the daemon's record
//! (`--output json`: each experiment's type, final state and count) against what the workloads
//! saw, proves from the kernel that nothing stays attached, and removes everything it created.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cargo, require_root};

const DATAGRAMS: u64 = 20_000;
const CONNECTS: u64 = 2_000;
const TCP_BYTES: u64 = 1 << 20;

pub fn run() -> anyhow::Result<()> {
    require_root("the demo")?;
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
    let (daemon_bin, workload) = (bin.join("chaos-daemon"), bin.join("chaos-workload"));
    let mount = cgroup2_mount()?;
    let pid = std::process::id();
    let cg = DemoDir::cgroup(&mount.join(format!("chaos-demo-{pid}")))?;
    let tmp = DemoDir::private(&std::env::temp_dir().join(format!("chaos-demo-{pid}")))?;
    let cgs = cg.0.to_str().context("non-UTF-8 cgroup path")?.to_string();
    let socket = tmp.0.join("daemon.sock");

    let mut daemon = Proc::spawn(
        Command::new(&daemon_bin)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(tmp.0.join("state"))
            .arg("--config")
            .arg(root.join("chaos/chaos.yaml"))
            .args(["--metrics-addr", "127.0.0.1:0"]),
    )?;
    let metrics = daemon.next_line()?;
    println!("\n== chaos-ebpf demo");
    println!("   {}\n   {metrics}", daemon.first);
    println!(
        "   target cgroup {cgs}; workloads run as separate processes inside it and outside it\n"
    );
    let ctl = Ctl {
        bin: bin.join("chaos-ctl"),
        daemon: format!("unix://{}", socket.display()),
    };

    let tcp = Proc::ready(Command::new(&workload).args(["tcp-listen", "--timeout-ms", "120000"]))?;
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
        &workload,
        &cg.0,
        ["connect", "--to", &tcp_to, "--count", &n],
        ["connect", "--to", &tcp_to, "--count", &n],
    )?;
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
    ctl.wait_until_none_running(Duration::from_secs(10))?;
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
    let body = http_get(url)?;
    println!("$ curl {url}   (excerpt)");
    for l in body.lines().filter(|l| {
        l.starts_with("chaos_faults_injected_total")
            || l.starts_with("chaos_experiments_finished_total")
    }) {
        println!("{l}");
    }

    let out = Command::new(&daemon_bin)
        .args(["attached", &cgs])
        .output()?;
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    if !out.status.success() {
        bail!("cleanup check failed: {last}");
    }
    println!("\n   kernel check after the stops: {last}");
    daemon.terminate()?;
    drop(cg);
    drop(tmp);
    println!("   stopped the daemon, removed {cgs} and the demo's state\n");
    Ok(())
}

/// Runs chaos-ctl against the demo's daemon.
struct Ctl {
    bin: PathBuf,
    daemon: String,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("--daemon")
            .arg(&self.daemon)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "chaos-ctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `chaos-ctl --output json ARGS`, parsed.
    fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = self.run(&[&["--output", "json"], args].concat())?;
        serde_json::from_str(out.trim()).with_context(|| format!("chaos-ctl {args:?}: {out}"))
    }

    /// Waits until the daemon lists no experiment (its recorder released and recorded them).
    fn wait_until_none_running(&self, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        loop {
            let status = self.json(&["status"])?;
            if status["experiments"].as_array().is_some_and(Vec::is_empty) {
                return Ok(());
            }
            if Instant::now() >= until {
                bail!("experiments still listed after {within:?}: {status}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Checks the daemon's record of the demo's experiments, by name: the type (the user's
    /// name), the final state and, where given, the faults injected.
    fn check_record(&self, want: &[(&str, &str, &str, Option<u64>)]) -> anyhow::Result<()> {
        let list = self.json(&["report", "--last", "1h"])?;
        let list = list.as_array().context("report --last: not a list")?;
        for &(name, kind, state, injected) in want {
            let e = list
                .iter()
                .find(|e| e["name"] == name)
                .with_context(|| format!("{name} is not in the daemon's record"))?;
            let got = (
                e["experiment_type"].as_str(),
                e["state"].as_str(),
                e["counters"]["injected"].as_u64(),
            );
            if got.0 != Some(kind)
                || got.1 != Some(state)
                || injected.is_some_and(|n| got.2 != Some(n))
            {
                bail!(
                    "{name}: the daemon recorded {got:?}, expected {kind} {state} {injected:?}: {e}"
                );
            }
        }
        Ok(())
    }

    /// Starts an experiment, shows the command and its answer, returns the id.
    fn start(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args)?;
        println!("$ chaos-ctl {}\n{out}", args.join(" "));
        out.lines()
            .find_map(|l| l.strip_prefix("started "))
            .map(str::to_string)
            .context("no experiment id in chaos-ctl's answer")
    }
}

fn http_get(url: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let rest = url.strip_prefix("http://").context("http url")?;
    let (host, path) = rest.split_once('/').context("url path")?;
    let mut s = std::net::TcpStream::connect(host)?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
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
    first: String,
    port: u16,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("{cmd:?}"))?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        if first.is_empty() {
            bail!("{cmd:?} exited before announcing itself (see its error above)");
        }
        Ok(Self {
            child,
            stdout,
            first: first.trim().to_string(),
            port: 0,
        })
    }

    /// A workload that prints `ready PORT`.
    fn ready(cmd: &mut Command) -> anyhow::Result<Self> {
        let mut p = Self::spawn(cmd)?;
        p.port = p
            .first
            .strip_prefix("ready ")
            .and_then(|s| s.parse().ok())
            .with_context(|| p.first.clone())?;
        Ok(p)
    }

    fn next_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().to_string())
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

    /// SIGTERM and wait for a clean exit.
    fn terminate(mut self) -> anyhow::Result<()> {
        // SAFETY: plain syscall on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if !self.child.wait()?.success() {
            bail!("chaos-daemon did not stop cleanly");
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory the demo created: its cgroup (processes in it are killed first) or its private
/// state directory. Removed on drop, also when the demo fails.
struct DemoDir(PathBuf, bool);

impl DemoDir {
    fn cgroup(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir(path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self(path.to_path_buf(), true))
    }

    fn private(path: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path.to_path_buf(), false))
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
            return;
        }
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
