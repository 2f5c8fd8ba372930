//! Shared helpers of the kernel tests: the kernel gate, RAII cgroups, workloads run as real
//! processes, loopback sinks and the statistics of the assertions; a real daemon driven by
//! chaos-ctl in [`daemon`], kubelet's pod layout and frozen processes in [`pods`], the HTTP
//! workload with its dependency and load in [`http`], a real Prometheus in [`prometheus`], a
//! daemon's `/metrics` read in [`metrics`].
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _},
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

#[path = "../../src/bin/chaos-workload/sockopt.rs"]
#[allow(dead_code, reason = "tests use only part of it")]
mod sockopt;

mod daemon;
pub mod http;
pub mod metrics;
pub mod nginx;
pub mod pki;
pub mod pods;
pub mod prometheus;
mod veth;
#[allow(
    unused_imports,
    reason = "each test binary uses a different subset of the helpers"
)]
pub use daemon::*;
#[allow(
    unused_imports,
    reason = "each test binary uses a different subset of the helpers"
)]
pub use veth::Veth;

use chaos_api::experiment::{
    CallName as _, Direction, EgressDrop, Errno, Experiment, Fault, NetFilter, PacketLoss,
    SocketCall, SocketError, SyscallCall, SyscallError, Target, TargetKind,
};
use chaos_daemon::{
    ebpf::{Hook, sys::attached_programs},
    engine::Engine,
    target::{Resolver, cgroup2_mount},
};

pub const DAEMON: &Bin = &DAEMON_BIN;
pub const WORKLOAD: &Bin = &WORKLOAD_BIN;
static DAEMON_BIN: Bin = Bin::new("chaos-daemon", env!("CARGO_BIN_EXE_chaos-daemon"));
static WORKLOAD_BIN: Bin = Bin::new("chaos-workload", env!("CARGO_BIN_EXE_chaos-workload"));

/// One of the workspace's executables: `$CHAOS_BIN_DIR/<name>` when that variable is set (the VM
/// tier copies the binaries there), else the path cargo built it at. Usable wherever a path is.
pub struct Bin {
    name: &'static str,
    built: &'static str,
    path: std::sync::OnceLock<PathBuf>,
}

impl Bin {
    const fn new(name: &'static str, built: &'static str) -> Self {
        Self {
            name,
            built,
            path: std::sync::OnceLock::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.path
            .get_or_init(|| match std::env::var_os("CHAOS_BIN_DIR") {
                Some(dir) => Path::new(&dir).join(self.name),
                None => PathBuf::from(self.built),
            })
    }
}

impl AsRef<std::ffi::OsStr> for Bin {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path().as_os_str()
    }
}

/// Returns the cgroup2 mount when this machine can run kernel tests (root, cgroup2, BPF).
/// Otherwise skips the test, or fails it when `CHAOS_REQUIRE_KERNEL=1` (CI).
pub fn kernel() -> Option<PathBuf> {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("not root".to_string())
    } else {
        match cgroup2_mount() {
            Ok(m) => return Some(m),
            Err(e) => Some(e.to_string()),
        }
    };
    let why = why.unwrap_or_default();
    if std::env::var("CHAOS_REQUIRE_KERNEL").as_deref() == Ok("1") {
        panic!("kernel test cannot run ({why}) but CHAOS_REQUIRE_KERNEL=1");
    }
    eprintln!("SKIP: kernel test needs root and cgroup2 ({why})");
    None
}

/// An engine that may target anything but the root and the test's own cgroup.
pub fn engine(mount: &Path) -> Engine {
    Engine::new(Resolver::new(mount.to_path_buf()).expect("resolver")).expect("engine loads")
}

/// A uniquely named cgroup under the cgroup2 mount; killed and removed on drop, even when the
/// test fails.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new(mount: &Path, tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "chaos-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = mount.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    /// A child cgroup; removed with its parent.
    pub fn child(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn target(&self) -> Target {
        cgroup_target(&self.path)
    }

    /// Programs attached directly to this cgroup, over every hook we use.
    pub fn attached(&self) -> usize {
        attached_count(&self.path)
    }

    /// Waits until nothing is attached to this cgroup: after an emergency stop, which answers
    /// once every fault is disarmed, the detaching follows (a tc fault's tcx links wait for an
    /// RCU grace period each).
    pub fn released(&self) {
        eventually(
            &format!("{} released", self.path.display()),
            Duration::from_secs(10),
            || (self.attached() == 0).then_some(()),
        );
    }
}

/// Programs attached directly to `path`, over every hook we use.
pub fn attached_count(path: &Path) -> usize {
    let f = std::fs::File::open(path).unwrap();
    Hook::ALL
        .iter()
        .map(|h| attached_programs(&f, h.attach_type()).unwrap().len())
        .sum()
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The target of a cgroup directory.
pub fn cgroup_target(path: &Path) -> Target {
    Target::new(TargetKind::Cgroup(path.display().to_string()))
}

/// An experiment with defaults the tests override (two minutes, no filter, no cap). It is
/// validated as the daemon would.
pub fn spec(target: Target, fault: Fault, intensity: f64) -> Experiment {
    let e = Experiment {
        name: "test".into(),
        targets: vec![target],
        fault,
        duration: Duration::from_secs(120),
        intensity,
        budget: None,
        max_faults: None,
        dry_run: false,
        filter: NetFilter::default(),
        guards: Default::default(),
        ramp: None,
        lease: None,
    };
    e.validate()
        .unwrap_or_else(|err| panic!("invalid test experiment: {err}"));
    e
}

pub fn loss(direction: Direction, egress_drop: EgressDrop) -> Fault {
    Fault::PacketLoss(PacketLoss {
        direction,
        egress_drop,
    })
}

/// A dependency_failure with `errno` (name or number) on `calls`.
pub fn socket_error(errno: &str, calls: &[&str]) -> Fault {
    Fault::DependencyFailure(SocketError {
        errno: Errno::parse(errno).unwrap(),
        calls: calls
            .iter()
            .map(|c| SocketCall::from_name(c).unwrap())
            .collect(),
    })
}

/// A syscall_error with `errno` (name or number) on `calls`, only under `path_prefix` if given.
pub fn syscall_error_under(errno: &str, calls: &[&str], path_prefix: Option<String>) -> Fault {
    Fault::SyscallError(SyscallError {
        errno: Errno::parse(errno).unwrap(),
        calls: calls
            .iter()
            .map(|c| SyscallCall::from_name(c).unwrap())
            .collect(),
        path_prefix,
    })
}

/// A syscall_error with `errno` (name or number) on `calls`, on every path.
pub fn syscall_error(errno: &str, calls: &[&str]) -> Fault {
    syscall_error_under(errno, calls, None)
}

/// What a `chaos-workload` run reported: `ok` and counts by errno name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub counts: BTreeMap<String, u64>,
}

impl Tally {
    pub fn get(&self, key: &str) -> u64 {
        self.counts.get(key).copied().unwrap_or(0)
    }
    pub fn ok(&self) -> u64 {
        self.get("ok")
    }
    /// The median duration of one call of the workload.
    pub fn p50(&self) -> Duration {
        Duration::from_nanos(self.get("p50_ns"))
    }
    pub fn parse(line: &str) -> Self {
        let counts = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().expect("count")))
            .collect();
        Self { counts }
    }
}

/// Runs `chaos-workload` (inside `cgroup` when given) and parses its result line.
pub fn workload(cgroup: Option<&Path>, args: &[&str]) -> Tally {
    let mut cmd = Command::new(WORKLOAD);
    if let Some(cg) = cgroup {
        cmd.arg("--cgroup").arg(cg);
    }
    let out = cmd.args(args).output().expect("spawn chaos-workload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chaos-workload {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Tally::parse(stdout.lines().last().unwrap_or(""))
}

/// Runs `workload` on another thread.
pub fn workload_bg(cgroup: Option<&Path>, args: &[&str]) -> JoinHandle<Tally> {
    let cgroup = cgroup.map(Path::to_path_buf);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        workload(cgroup.as_deref(), &args)
    })
}

/// A `chaos-workload udp-recv` process (inside `cgroup` when given) that is bound and ready.
pub struct Receiver {
    child: Child,
    stdout: BufReader<ChildStdout>,
    pub addr: SocketAddr,
}

impl Receiver {
    pub fn start(cgroup: Option<&Path>, idle_ms: u64, timeout_ms: u64) -> Self {
        Self::on(cgroup, "127.0.0.1:0", idle_ms, timeout_ms)
    }

    /// A receiver bound to `bind` (e.g. `[::1]:0`).
    pub fn on(cgroup: Option<&Path>, bind: &str, idle_ms: u64, timeout_ms: u64) -> Self {
        let mut cmd = Command::new(WORKLOAD);
        if let Some(cg) = cgroup {
            cmd.arg("--cgroup").arg(cg);
        }
        cmd.args([
            "udp-recv",
            "--bind",
            bind,
            "--idle-ms",
            &idle_ms.to_string(),
        ])
        .args(["--timeout-ms", &timeout_ms.to_string()]);
        let (child, stdout, line) = announced(&mut cmd);
        let mut addr: SocketAddr = bind.parse().unwrap();
        addr.set_port(ready_port(&line));
        Self {
            child,
            stdout,
            addr,
        }
    }

    /// Waits for the receiver to go idle and returns how many datagrams it got.
    pub fn received(mut self) -> u64 {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        assert!(self.child.wait().unwrap().success());
        rest.trim()
            .strip_prefix("received=")
            .expect("received line")
            .parse()
            .unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with its stdout piped and returns its first line (a `ready PORT` or `armed ...`
/// announcement) with the rest of its stdout.
fn announced(cmd: &mut Command) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    (child, stdout, line)
}

/// Spawns `cmd` (a `chaos-workload` mode that announces `ready PORT`) and waits for the line.
pub fn spawn_ready(cmd: &mut Command) -> (Child, u16) {
    let (child, _, line) = announced(cmd);
    (child, ready_port(&line))
}

fn ready_port(line: &str) -> u16 {
    line.trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a ready line: {line:?}"))
}

/// A UDP sink in the test process (outside every test cgroup) counting datagrams.
pub struct UdpSink {
    pub addr: SocketAddr,
    /// The socket the reader thread reads, for its queue length.
    queue: UdpSocket,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpSink {
    pub fn new() -> Self {
        Self::on("127.0.0.1:0")
    }

    /// A sink bound to `addr` (e.g. `[::1]:0`).
    pub fn on(addr: &str) -> Self {
        let sock = UdpSocket::bind(addr).unwrap();
        sockopt::raise_rcvbuf(&sock).expect("SO_RCVBUFFORCE");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let queue = sock.try_clone().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            addr,
            queue,
            count,
            stop,
            thread: Some(thread),
        }
    }

    pub fn to(&self) -> String {
        self.addr.to_string()
    }

    /// `chaos-workload udp-send`: `count` datagrams to this sink from inside `cgroup`.
    pub fn send_from(&self, cgroup: &Path, count: u64) -> Tally {
        let count = count.to_string();
        workload(
            Some(cgroup),
            &["udp-send", "--to", &self.to(), "--count", &count],
        )
    }

    /// The count once every datagram queued so far is read: the socket's receive queue is
    /// empty (`FIONREAD`) and the count held still for 50 ms (a datagram taken but not yet
    /// counted). On loopback a datagram is queued during its `sendto`, so after the sender
    /// exited nothing more comes. Waits up to 30 s for that, not for a fixed time.
    pub fn settled(&self) -> u64 {
        eventually("the UDP sink drained", Duration::from_secs(30), || {
            let before = self.count.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
            let mut queued: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int through the pointer, which is valid for the call.
            let rc = unsafe { libc::ioctl(self.queue.as_raw_fd(), libc::FIONREAD, &mut queued) };
            assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
            let after = self.count.load(Ordering::Relaxed);
            (queued == 0 && before == after).then_some(after)
        })
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `chaos-workload tcp-listen` process outside every test cgroup: accepts every connection
/// and answers a sender with the byte count it read. Killed on drop.
pub struct TcpServer {
    pub addr: SocketAddr,
    child: Child,
}

impl TcpServer {
    pub fn start(bind: &str) -> Self {
        let (child, _, line) =
            announced(Command::new(WORKLOAD).args(["tcp-listen", "--bind", bind]));
        let mut addr: SocketAddr = bind.parse().unwrap();
        addr.set_port(ready_port(&line));
        Self { addr, child }
    }

    pub fn to(&self) -> String {
        self.addr.to_string()
    }

    /// `chaos-workload connect`: `count` connects to this server from inside `cgroup`.
    pub fn connect_from(&self, cgroup: &Path, count: u64) -> Tally {
        let count = count.to_string();
        workload(
            Some(cgroup),
            &["connect", "--to", &self.to(), "--count", &count],
        )
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `f` every 20 ms until it gives a value; panics with `what` after `within`.
pub fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Measurements of one timing figure before its tolerance counts as missed.
pub const ATTEMPTS: usize = 3;

/// Runs `measure` until it reports no miss, at most [`ATTEMPTS`] times, and panics with the last
/// miss. For figures a busy host skews (latency, CPU throughput under TCG): one noisy burst
/// does not fail a run, a wrong result fails every attempt. Each miss is printed.
pub fn measured<T>(what: &str, mut measure: impl FnMut() -> Result<T, String>) -> T {
    let mut miss = String::new();
    for attempt in 1..=ATTEMPTS {
        match measure() {
            Ok(t) => return t,
            Err(m) => {
                println!("{what}: attempt {attempt}/{ATTEMPTS} missed: {m}");
                miss = m;
            }
        }
    }
    panic!("{what}: {miss} (in each of {ATTEMPTS} attempts)");
}

/// Asserts `observed` (a fraction of `n` trials) is within `k` binomial standard deviations of `p`.
pub fn assert_rate(what: &str, observed: f64, n: u64, p: f64, k: f64) {
    let sigma = (p * (1.0 - p) / n as f64).sqrt();
    eprintln!("{what}: observed {observed:.4} configured {p} (n={n}, sigma={sigma:.5})");
    assert!(
        (observed - p).abs() <= k * sigma + 1e-12,
        "{what}: observed {observed:.4}, configured {p}: more than {k} sigma ({sigma:.5}) apart over {n}"
    );
}

/// Makes `cmd` start inside `cgroup` (joined between fork and exec, with raw syscalls only).
pub fn start_in_cgroup(cmd: &mut Command, cgroup: &Path) {
    use std::os::unix::{ffi::OsStrExt as _, process::CommandExt as _};
    let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
    // SAFETY: the closure only calls async-signal-safe functions (open, write, close) on memory
    // prepared before fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" means "the writing process" in cgroup.procs.
            let rc = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if rc != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "chaos-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The programs on `dev`'s egress as the kernel and `tc` list them: tcx links (6.6+) as
/// `tcx NAME`, legacy filters as `tc filter: LINE`.
pub fn egress_programs(dev: &str) -> Vec<String> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let (_, tcx) = SchedClassifier::query_tcx(dev, TcAttachType::Egress)
        .unwrap_or_else(|e| panic!("query tcx of {dev}: {e}"));
    let mut found: Vec<String> = tcx
        .iter()
        .map(|p| format!("tcx {}", p.name_as_str().unwrap_or("?")))
        .collect();
    let out = Command::new("tc")
        .args(["filter", "show", "dev", dev, "egress"])
        .output()
        .expect("run tc (iproute2)");
    assert!(out.status.success(), "tc filter show: {out:?}");
    found.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("tc filter: {l}")),
    );
    found
}

/// Holds the other tests of the calling test binary off until the guard drops: for tests that
/// check what is on a shared device (`lo`) or read namespace-wide counters.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `program` with `args`, panicking with its output unless it succeeds; its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Milliseconds since the Unix epoch, as the daemon stamps its records.
pub fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_millis()).unwrap()
}
