//! Packet duplication and corruption as a receiving application sees them: the datagrams of a
//! sender in the target cgroup carry a sequence number and a pattern derived from it
//! (`chaos-workload udp-send --size 64`), and a verifying receiver (`chaos-workload
//! udp-check`) counts every number, the duplicates, and the datagrams whose bytes are not
//! what was sent, with how many bytes differ.
//!
//! * Duplication on loopback: every datagram arrives, the configured fraction of them twice
//!   (4 sigma), never three times, none altered, the kernel's count equal to the duplicates
//!   received; a TCP transfer completes through it.
//! * Corruption with the checksum fixed, on loopback: nothing is lost, the configured fraction
//!   arrives with exactly one byte changed.
//! * Corruption with the checksum left wrong needs a sender whose device sums in software
//!   (loopback and veth trust the stack's own CHECKSUM_PARTIAL packets, so the receiver never
//!   looks): two network namespaces of the test's own joined by a veth pair with tx checksum
//!   offload off (`ethtool -K DEV tx off`). The receiver's stack drops the configured fraction
//!   and counts each in `Udp: InCsumErrors`; none reaches the application. With the checksum
//!   fixed, in the same setup, every datagram arrives and the fraction carries the change.
//!
//! Processes outside the target, at the same time, see neither; after each stop nothing is
//! left on the cgroup or on the devices' egress. The tests run one at a time: each checks what
//! is left on `lo`'s egress, which another test's running experiment would spoil.

mod support;

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use chaos_api::experiment::{CorruptChecksum, Fault, PacketCorruption};
use chaos_daemon::engine::{Armed, Engine};
use support::*;

/// Datagrams per loopback run (4 binomial sigma at p = 0.2 is 1.1 points).
const N: u64 = 20_000;
/// Datagrams per veth run (4 sigma at p = 0.2 is 2.3 points).
const N_VETH: u64 = 5_000;
/// The configured probability of every run.
const P: f64 = 0.2;
/// Bytes per datagram: the number, its complement and a 48-byte pattern.
const SIZE: &str = "64";
/// Bytes of the TCP transfer through duplication.
const TCP_BYTES: u64 = 32 << 20;

fn corruption(checksum: CorruptChecksum) -> Fault {
    Fault::PacketCorruption(PacketCorruption { checksum })
}

/// A `chaos-workload udp-check` process (in network namespace `netns` when given) that is
/// bound and ready; killed on drop.
struct Checker {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Checker {
    fn start(netns: Option<&Path>, bind: &str, expect: u64) -> Self {
        let mut cmd = Command::new(WORKLOAD);
        if let Some(ns) = netns {
            cmd.arg("--netns").arg(ns);
        }
        cmd.args(["udp-check", "--bind", bind, "--expect", &expect.to_string()])
            .args(["--size", SIZE, "--idle-ms", "500", "--timeout-ms", "120000"])
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn chaos-workload udp-check");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("udp-check: not a ready line: {line:?}"));
        let mut addr: SocketAddr = bind.parse().unwrap();
        addr.set_port(port);
        Self {
            child,
            stdout,
            addr,
        }
    }

    fn to(&self) -> String {
        self.addr.to_string()
    }

    /// Waits for the receiver to go idle and returns its counts.
    fn result(mut self) -> Tally {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        assert!(self.child.wait().unwrap().success(), "udp-check: {rest}");
        let counts = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().expect("count")))
            .collect();
        let t = Tally { counts };
        assert!(
            t.counts.contains_key("received") && t.counts.contains_key("corrupted_bytes_max"),
            "udp-check printed {rest:?}"
        );
        t
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chaos-workload udp-send --size 64`: `count` checkable datagrams to `to`, from inside
/// `cgroup` and network namespace `netns` when given, on another thread.
fn send_bg(cgroup: Option<&Path>, netns: Option<&Path>, to: &str, count: u64) -> JoinHandle<Tally> {
    let mut args: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["--netns".into(), ns.display().to_string()]);
    }
    let count = count.to_string();
    args.extend(["udp-send", "--to", to, "--count", &count, "--size", SIZE].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    workload_bg(cgroup, &args)
}

/// The programs of these two faults among `programs` (the egress listing of one device).
fn ours(programs: Vec<String>) -> Vec<String> {
    programs
        .into_iter()
        .filter(|p| p.contains("dup_eg_") || p.contains("cor_eg_"))
        .collect()
}

/// After a stop: nothing on the cgroup, no duplication or corruption program on `lo`.
fn assert_released(cg: &TestCgroup) {
    assert_eq!(cg.attached(), 0, "programs left on the target cgroup");
    assert_eq!(
        ours(egress_programs("lo")),
        Vec::<String>::new(),
        "programs left on lo's egress"
    );
}

/// An intact run of `expect` datagrams: each number once, nothing altered.
fn assert_intact(what: &str, r: &Tally, expect: u64) {
    assert_eq!(
        (
            r.get("received"),
            r.get("unique"),
            r.get("duplicates"),
            r.get("corrupted")
        ),
        (expect, expect, 0, 0),
        "{what}: {r:?}"
    );
}

/// One counter of `/proc/net/snmp` (`Udp:`, `Tcp:`, ...) or `/proc/net/netstat` (`TcpExt:`)
/// as printed by `text`.
fn counter(text: &str, group: &str, name: &str) -> u64 {
    let mut lines = text.lines().filter(|l| l.starts_with(group));
    let (names, values) = (
        lines.next().unwrap_or_else(|| panic!("no {group} header")),
        lines.next().unwrap_or_else(|| panic!("no {group} values")),
    );
    let i = names
        .split_whitespace()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no {name} in {names:?}"));
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// Starts `fault` on `cg` at [`P`].
fn start(engine: &Engine, cg: &TestCgroup, fault: Fault) -> Armed {
    engine.start(&spec(cg.target(), fault, P)).unwrap()
}

#[test]
fn duplication_at_the_configured_rate() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let cg = TestCgroup::new(&mount, "dup");
    let engine = engine(&mount);
    let began = Instant::now();

    let armed = start(&engine, &cg, Fault::PacketDuplication);
    let (inside_rx, outside_rx) = (
        Checker::start(None, "127.0.0.1:0", N),
        Checker::start(None, "127.0.0.1:0", N),
    );
    let inside = send_bg(Some(&cg.path), None, &inside_rx.to(), N);
    let outside = send_bg(None, None, &outside_rx.to(), N);
    let (inside, outside) = (inside.join().unwrap(), outside.join().unwrap());
    let (got_in, got_out) = (inside_rx.result(), outside_rx.result());
    let c = engine.stop(armed).unwrap();
    eprintln!(
        "duplication: inside sent {inside:?}, got {got_in:?}; outside got {got_out:?}; {c:?}"
    );
    assert_released(&cg);
    assert_eq!((inside.ok(), outside.ok()), (N, N), "every send succeeds");
    let dups = got_in.get("duplicates");
    assert_eq!(
        (got_in.get("unique"), got_in.get("corrupted")),
        (N, 0),
        "every number arrives, none altered: {got_in:?}"
    );
    assert_eq!(
        got_in.get("received"),
        N + dups,
        "received = sent + duplicates: {got_in:?}"
    );
    assert_rate("duplicated fraction", dups as f64 / N as f64, N, P, 4.0);
    assert_eq!(c.injected, dups, "kernel counter = duplicates received");
    assert_intact("outside the cgroup", &got_out, N);

    // TCP through duplication, in a namespace of the test's own so that its counters count
    // this connection only: the receiver discards each second copy of a data segment and
    // says so with a D-SACK (`TCPDSACKOldSent`); every byte arrives once (tcp-send checks the
    // server's count). The cgroup's process in the namespace makes it the target's.
    let ns = Netns::new("dup-tcp");
    ns.run(&["ip", "link", "set", "lo", "up"]);
    let _holder = Holder::start(&cg, &ns.path());
    let server = NsTcpServer::start(&ns);
    let dsack_before = ns.counter("/proc/net/netstat", "TcpExt:", "TCPDSACKOldSent");
    let retrans_before = ns.counter("/proc/net/snmp", "Tcp:", "RetransSegs");
    let armed = start(&engine, &cg, Fault::PacketDuplication);
    let t = Instant::now();
    let r = workload(
        Some(&cg.path),
        &[
            "--netns",
            &ns.path().display().to_string(),
            "tcp-send",
            "--to",
            &server.to,
            "--bytes",
            &TCP_BYTES.to_string(),
        ],
    );
    let took = t.elapsed();
    let c = engine.stop(armed).unwrap();
    let dsack = ns.counter("/proc/net/netstat", "TcpExt:", "TCPDSACKOldSent") - dsack_before;
    let retrans = ns.counter("/proc/net/snmp", "Tcp:", "RetransSegs") - retrans_before;
    eprintln!(
        "tcp through duplication: {TCP_BYTES} bytes in {took:?}: {r:?}; {c:?}; \
         D-SACKs sent for old data {dsack}, segments retransmitted {retrans}"
    );
    assert_eq!(cg.attached(), 0, "programs left on the target cgroup");
    assert_eq!(
        ns.enter(|| ours(egress_programs("lo"))),
        Vec::<String>::new(),
        "programs left on the namespace's lo"
    );
    assert_eq!(r.ok(), 1, "the transfer completes, every byte once: {r:?}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(c.injected > 0, "segments were duplicated: {c:?}");
    // Each second copy of a data segment (a FIN counts) reaches the receiver, which discards
    // it and answers with a D-SACK; the duplicated SYN draws one from the client (for the
    // second SYN-ACK), the duplicated pure ACKs (of the handshake, of the server's answer and
    // FIN) none. More D-SACKs than duplicates do occur (up to 8 % more at p = 1, with no
    // retransmission of data; the cause is not established), so only the lower bound is asserted.
    assert!(
        dsack + 3 >= c.injected,
        "the receiver discarded {dsack} duplicate segments (D-SACKs) of {} duplicated packets",
        c.injected
    );
    eprintln!("duplication test took {:?}", began.elapsed());
}

#[test]
fn corruption_fixed_reaches_the_application() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let cg = TestCgroup::new(&mount, "corfix");
    let engine = engine(&mount);
    let began = Instant::now();

    let armed = start(&engine, &cg, corruption(CorruptChecksum::Fixed));
    let (inside_rx, outside_rx) = (
        Checker::start(None, "127.0.0.1:0", N),
        Checker::start(None, "127.0.0.1:0", N),
    );
    let inside = send_bg(Some(&cg.path), None, &inside_rx.to(), N);
    let outside = send_bg(None, None, &outside_rx.to(), N);
    let (inside, outside) = (inside.join().unwrap(), outside.join().unwrap());
    let (got_in, got_out) = (inside_rx.result(), outside_rx.result());
    let c = engine.stop(armed).unwrap();
    eprintln!(
        "corruption (fixed): inside sent {inside:?}, got {got_in:?}; outside got {got_out:?}; {c:?}"
    );
    assert_released(&cg);
    assert_eq!((inside.ok(), outside.ok()), (N, N), "every send succeeds");
    assert_fixed_corruption(&got_in, N, c.injected);
    assert_intact("outside the cgroup", &got_out, N);
    eprintln!("corruption (fixed) test took {:?}", began.elapsed());
}

/// What corruption with the checksum fixed must look like at the receiver: every number once,
/// the configured fraction with exactly one byte changed, as many as the kernel counted.
fn assert_fixed_corruption(got: &Tally, n: u64, injected: u64) {
    let corrupted = got.get("corrupted");
    assert_eq!(
        (
            got.get("received"),
            got.get("unique"),
            got.get("duplicates"),
            got.get("wrong_size")
        ),
        (n, n, 0, 0),
        "nothing lost, nothing duplicated: {got:?}"
    );
    assert_rate("corrupted fraction", corrupted as f64 / n as f64, n, P, 4.0);
    assert_eq!(
        (
            got.get("corrupted_bytes_min"),
            got.get("corrupted_bytes_max")
        ),
        (1, 1),
        "each corrupted datagram differs in exactly one byte: {got:?}"
    );
    assert_eq!(
        injected, corrupted,
        "kernel counter = corrupted datagrams received"
    );
}

#[test]
fn corruption_wrong_is_dropped_by_a_verifying_receiver() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let began = Instant::now();
    let link = Link::new();
    let cg = TestCgroup::new(&mount, "corwrong");
    // The daemon takes the target's namespace from its processes: one must be in A first.
    let _holder = Holder::start(&cg, &link.a.path());
    let engine = engine(&mount);
    let to = format!("{}:0", Link::ADDR_B);

    for checksum in [CorruptChecksum::Wrong, CorruptChecksum::Fixed] {
        let csum_before = link.b.udp("InCsumErrors");
        let armed = start(&engine, &cg, corruption(checksum));
        let (inside_rx, outside_rx) = (
            Checker::start(Some(&link.b.path()), &to, N_VETH),
            Checker::start(Some(&link.b.path()), &to, N_VETH),
        );
        let a = link.a.path();
        let inside = send_bg(Some(&cg.path), Some(&a), &inside_rx.to(), N_VETH);
        let outside = send_bg(None, Some(&a), &outside_rx.to(), N_VETH);
        let (inside, outside) = (inside.join().unwrap(), outside.join().unwrap());
        let (got_in, got_out) = (inside_rx.result(), outside_rx.result());
        let c = engine.stop(armed).unwrap();
        let csum_errors = link.b.udp("InCsumErrors") - csum_before;
        eprintln!(
            "corruption ({}) over veth: inside sent {inside:?}, got {got_in:?}; outside got \
             {got_out:?}; {c:?}; receiver's InCsumErrors +{csum_errors}",
            checksum.as_str()
        );
        assert_eq!(cg.attached(), 0, "programs left on the target cgroup");
        let left = link
            .a
            .enter(|| [Link::DEV_A, "lo"].map(|dev| (dev, ours(egress_programs(dev)))));
        for (dev, programs) in left {
            assert_eq!(
                programs,
                Vec::<String>::new(),
                "programs left on {dev}'s egress in A"
            );
        }
        assert_eq!(
            (inside.ok(), outside.ok()),
            (N_VETH, N_VETH),
            "every send succeeds"
        );
        assert_intact("outside the cgroup", &got_out, N_VETH);
        match checksum {
            CorruptChecksum::Wrong => {
                let lost = got_in.get("missing");
                assert_eq!(
                    (
                        got_in.get("received"),
                        got_in.get("duplicates"),
                        got_in.get("corrupted")
                    ),
                    (N_VETH - lost, 0, 0),
                    "no corrupted datagram reaches the application: {got_in:?}"
                );
                assert_rate(
                    "dropped fraction",
                    lost as f64 / N_VETH as f64,
                    N_VETH,
                    P,
                    4.0,
                );
                assert_eq!(c.injected, lost, "kernel counter = datagrams lost");
                assert_eq!(
                    csum_errors, c.injected,
                    "the receiver's stack dropped each corrupted datagram for its checksum"
                );
            }
            CorruptChecksum::Fixed => {
                assert_fixed_corruption(&got_in, N_VETH, c.injected);
                assert_eq!(csum_errors, 0, "a fixed checksum is right");
            }
        }
    }
    eprintln!("corruption over veth took {:?}", began.elapsed());
}

/// A network namespace of the test's own (`ip netns add`), deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "chaos-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        Self { name }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `cmd` inside the namespace (`nsenter --net`), panicking unless it succeeds; its
    /// stdout.
    fn run(&self, cmd: &[&str]) -> String {
        let net = format!("--net={}", self.path().display());
        let mut args = vec![net.as_str(), "--"];
        args.extend(cmd);
        run("nsenter", &args)
    }

    /// A `Udp:` counter of the namespace's `/proc/net/snmp`.
    fn udp(&self, name: &str) -> u64 {
        self.counter("/proc/net/snmp", "Udp:", name)
    }

    /// Counter `name` of `group` in the namespace's `file` (`/proc/net/snmp` or `netstat`).
    fn counter(&self, file: &str, group: &str, name: &str) -> u64 {
        counter(&self.run(&["cat", file]), group, name)
    }

    /// Runs `f` on a thread inside the namespace (the kernel's device queries and the
    /// processes it spawns see the namespace's devices).
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let file = std::fs::File::open(&path).unwrap();
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("entering {}: {e}", path.display()));
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair, A (the sender's, tx checksum offload off on its end)
/// and B (the receiver's), in a private /30; the neighbour entries are static, so no ARP
/// exchange races the first datagrams.
struct Link {
    a: Netns,
    b: Netns,
}

impl Link {
    const DEV_A: &str = "chaos-a";
    const DEV_B: &str = "chaos-b";
    const ADDR_A: &str = "10.231.0.1";
    const ADDR_B: &str = "10.231.0.2";
    const MAC_A: &str = "02:00:0a:e7:00:01";
    const MAC_B: &str = "02:00:0a:e7:00:02";

    fn new() -> Self {
        let ethtool = ["/usr/sbin/ethtool", "/sbin/ethtool"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("no ethtool binary: install the Debian package ethtool");
        let link = Self {
            a: Netns::new("dc-a"),
            b: Netns::new("dc-b"),
        };
        let (a, b) = (link.a.name.as_str(), link.b.name.as_str());
        // The devices are created in their namespaces, so the names cannot clash.
        run(
            "ip",
            &[
                "link",
                "add",
                Self::DEV_A,
                "address",
                Self::MAC_A,
                "netns",
                a,
                "type",
                "veth",
                "peer",
                "name",
                Self::DEV_B,
                "address",
                Self::MAC_B,
                "netns",
                b,
            ],
        );
        for (ns, dev, addr, peer, peer_mac) in [
            (a, Self::DEV_A, Self::ADDR_A, Self::ADDR_B, Self::MAC_B),
            (b, Self::DEV_B, Self::ADDR_B, Self::ADDR_A, Self::MAC_A),
        ] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev],
            );
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    peer,
                    "lladdr",
                    peer_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            );
        }
        link.a.run(&[ethtool, "-K", Self::DEV_A, "tx", "off"]);
        let features = link.a.run(&[ethtool, "-k", Self::DEV_A]);
        assert!(
            features.contains("tx-checksumming: off"),
            "tx checksum offload still on: {features}"
        );
        link
    }
}

/// `chaos-workload tcp-listen` on 127.0.0.1 inside a namespace; killed on drop.
struct NsTcpServer {
    child: Child,
    to: String,
}

impl NsTcpServer {
    fn start(ns: &Netns) -> Self {
        let mut child = Command::new(WORKLOAD)
            .arg("--netns")
            .arg(ns.path())
            .args(["tcp-listen", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn chaos-workload tcp-listen");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("tcp-listen: not a ready line: {line:?}"));
        Self {
            child,
            to: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for NsTcpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process that holds the target cgroup in a namespace: `chaos-workload --netns NS --cgroup
/// CG exec -- sleep`, in the cgroup once `start` returns; killed on drop.
struct Holder(Child);

impl Holder {
    fn start(cg: &TestCgroup, netns: &Path) -> Self {
        let child = Command::new(WORKLOAD)
            .arg("--netns")
            .arg(netns)
            .arg("--cgroup")
            .arg(&cg.path)
            .args(["exec", "--", "sleep", "600"])
            .spawn()
            .expect("spawn the holder");
        let pid = child.id().to_string();
        let holder = Self(child);
        eventually(
            "the holder joins the cgroup",
            Duration::from_secs(5),
            || {
                let procs = std::fs::read_to_string(cg.path.join("cgroup.procs")).unwrap();
                procs.lines().any(|l| l == pid).then_some(())
            },
        );
        holder
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
