//! Silent egress loss as real clients see it: a lossy link, nothing else. ping counts the
//! configured loss and no local error (it re-sends on ENOBUFS, which would hide the loss), a
//! UDP sender that asks for every error (IP_RECVERR) gets none, and TCP delivers every byte
//! through its own retransmissions, one at least for every dropped segment (the kernel's
//! `TcpRetransSegs`). Processes outside the target lose nothing, at the same time, and after
//! the stop nothing is left attached and nothing drops.
//!
//! The tests run one at a time: each checks after its stop that no program is left on `lo`'s
//! egress, which another test's running experiment would spoil, and the TCP test reads a
//! counter of the whole network namespace.

mod support;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chaos_api::experiment::{Direction, EgressDrop};
use support::*;

/// Datagrams per UDP run (4 binomial sigma at p = 0.2 is 1.1 points).
const N: u64 = 20_000;
/// Echo requests per ping run (4 sigma at p = 0.2 is 5 points).
const PINGS: u64 = 1_000;

/// The default packet loss: egress, silent.
fn egress_loss() -> chaos_api::experiment::Fault {
    loss(Direction::Egress, EgressDrop::Silent)
}

fn ping_binary() -> &'static str {
    ["/usr/bin/ping", "/bin/ping"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("no ping binary: install iputils-ping")
}

/// A running `ping -q` of [`PINGS`] echo requests to 127.0.0.1, 2 ms apart (root may), inside
/// `cgroup` when given.
fn ping_start(cgroup: Option<&Path>) -> Child {
    let mut cmd = Command::new(ping_binary());
    cmd.args([
        "-n",
        "-q",
        "-c",
        &PINGS.to_string(),
        "-i",
        "0.002",
        "-W",
        "1",
    ])
    .arg("127.0.0.1")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(cg) = cgroup {
        start_in_cgroup(&mut cmd, cg);
    }
    cmd.spawn().expect("spawn ping")
}

/// What one ping run reported.
#[derive(Debug)]
struct Pinged {
    transmitted: u64,
    received: u64,
    /// Its stdout and stderr, for the messages.
    output: String,
}

impl Pinged {
    fn wait(child: Child) -> Self {
        let out = child.wait_with_output().expect("wait for ping");
        let output = format!(
            "status {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // "1000 packets transmitted, 800 received, 20% packet loss, time 2003ms"
        let summary = output
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("no ping summary in its output: {output}"))
            .to_string();
        let count_before = |word: &str| -> u64 {
            let words: Vec<&str> = summary
                .split([' ', ','])
                .filter(|w| !w.is_empty())
                .collect();
            let i = words
                .iter()
                .position(|w| *w == word)
                .unwrap_or_else(|| panic!("no {word:?} in {summary:?}"));
            words[i - 1]
                .parse()
                .unwrap_or_else(|_| panic!("no count before {word:?} in {summary:?}"))
        };
        let transmitted = count_before("packets");
        let received = count_before("received");
        Self {
            transmitted,
            received,
            output,
        }
    }

    fn lost_fraction(&self) -> f64 {
        1.0 - self.received as f64 / self.transmitted as f64
    }

    /// Whether ping met a local send error (ENOBUFS): a real link loses packets unseen.
    fn saw_enobufs(&self) -> bool {
        self.output.contains("No buffer space") || self.output.contains("ENOBUFS")
    }
}

/// Runs ping inside and outside `cgroup` at the same time.
fn ping_both(cgroup: &Path) -> (Pinged, Pinged) {
    let (inside, outside) = (ping_start(Some(cgroup)), ping_start(None));
    (Pinged::wait(inside), Pinged::wait(outside))
}

/// After the stop: nothing on the cgroup, nothing on `lo`.
fn assert_released(cg: &TestCgroup) {
    assert_eq!(cg.attached(), 0, "programs left on the target cgroup");
    assert_eq!(
        egress_programs("lo"),
        Vec::<String>::new(),
        "programs left on lo's egress"
    );
}

/// `TcpRetransSegs` of the calling thread's network namespace (`/proc/net/snmp`).
fn tcp_retrans_segs() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").expect("read /proc/net/snmp");
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (
        tcp.next().expect("Tcp: header"),
        tcp.next().expect("Tcp: values"),
    );
    let i = names
        .split_whitespace()
        .position(|n| n == "RetransSegs")
        .expect("RetransSegs in the Tcp: header");
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// [`tcp_retrans_segs`] once it stayed put for a second (the closing FINs of a transfer done).
fn tcp_retrans_settled() -> u64 {
    let mut last = tcp_retrans_segs();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = tcp_retrans_segs();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[test]
fn ping_counts_egress_loss() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let cg = TestCgroup::new(&mount, "lossc-ping");
    let engine = engine(&mount);
    let p = 0.2;
    let armed = engine.start(&spec(cg.target(), egress_loss(), p)).unwrap();
    let (inside, outside) = ping_both(&cg.path);
    eprintln!(
        "ping inside: {} transmitted, {} received, ENOBUFS seen: {}; outside: {} / {}",
        inside.transmitted,
        inside.received,
        inside.saw_enobufs(),
        outside.transmitted,
        outside.received
    );
    let c = engine.stop(armed).unwrap();
    assert!(
        !inside.saw_enobufs(),
        "ping met a local send error, not a lossy link: {}",
        inside.output
    );
    assert_eq!(
        inside.transmitted, PINGS,
        "ping sent each request once: {}",
        inside.output
    );
    assert_rate(
        "ping loss inside",
        inside.lost_fraction(),
        inside.transmitted,
        p,
        4.0,
    );
    assert_eq!(
        (outside.transmitted, outside.received),
        (PINGS, PINGS),
        "outside the cgroup ping loses nothing: {}",
        outside.output
    );
    assert!(c.injected > 0, "{c:?}");
    assert_released(&cg);

    // Nothing drops after the stop.
    let (again, _) = ping_both(&cg.path);
    assert_eq!(
        (again.transmitted, again.received, again.saw_enobufs()),
        (PINGS, PINGS, false),
        "ping after the stop: {}",
        again.output
    );
}

#[test]
fn udp_with_ip_recverr_sees_no_error() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let cg = TestCgroup::new(&mount, "lossc-udp");
    let engine = engine(&mount);
    let p = 0.2;
    let n = N.to_string();
    let send = |cgroup: Option<&Path>, sink: &UdpSink| {
        workload_bg(
            cgroup,
            &["udp-send", "--to", &sink.to(), "--count", &n, "--recverr"],
        )
    };
    let armed = engine.start(&spec(cg.target(), egress_loss(), p)).unwrap();
    let (inside_sink, outside_sink) = (UdpSink::new(), UdpSink::new());
    let (inside, outside) = (
        send(Some(&cg.path), &inside_sink),
        send(None, &outside_sink),
    );
    let (inside, outside) = (inside.join().unwrap(), outside.join().unwrap());
    let (got_in, got_out) = (inside_sink.settled(), outside_sink.settled());
    eprintln!("udp inside: sender {inside:?}, sink got {got_in}; outside: {outside:?}, {got_out}");
    let c = engine.stop(armed).unwrap();
    assert_eq!(
        inside.ok(),
        N,
        "with IP_RECVERR the sender still sees no error: {inside:?}"
    );
    assert_rate("udp loss inside", 1.0 - got_in as f64 / N as f64, N, p, 4.0);
    assert_eq!(c.injected, N - got_in, "kernel counter = observed drops");
    assert_eq!(
        (outside.ok(), got_out),
        (N, N),
        "outside the cgroup nothing is lost: {outside:?}"
    );
    assert_released(&cg);

    // Nothing drops after the stop.
    let sink = UdpSink::new();
    let again = send(Some(&cg.path), &sink).join().unwrap();
    assert_eq!(
        (again.ok(), sink.settled()),
        (N, N),
        "udp after the stop: {again:?}"
    );
}

#[test]
fn tcp_recovers_through_its_own_retransmissions() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let cg = TestCgroup::new(&mount, "lossc-tcp");
    let engine = engine(&mount);
    let server = TcpServer::start("127.0.0.1:0");
    let bytes = BYTES.to_string();
    let transfer = || {
        let t = Instant::now();
        let r = workload(
            Some(&cg.path),
            &["tcp-send", "--to", &server.to(), "--bytes", &bytes],
        );
        (r, t.elapsed())
    };

    let before = tcp_retrans_segs();
    let armed = engine
        .start(&spec(cg.target(), egress_loss(), 0.05))
        .unwrap();
    let (r, took) = transfer();
    let c = engine.stop(armed).unwrap();
    // A FIN dropped just before the stop is retransmitted after it: count it here.
    let retrans = tcp_retrans_settled() - before;
    eprintln!(
        "tcp: {BYTES} bytes in {took:?}: {r:?}, {} injected, {retrans} retransmitted",
        c.injected
    );
    // tcp-send checks the server counted every byte.
    assert_eq!(r.ok(), 1, "the transfer completes, every byte: {r:?}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(c.injected > 0, "segments were really dropped: {c:?}");
    assert!(
        retrans >= c.injected / 2,
        "TCP retransmitted {retrans} segments for {} drops: it must have retransmitted them itself",
        c.injected
    );
    assert_released(&cg);

    // After the stop the same transfer completes. That nothing drops any more is what
    // `assert_released` proved (no program left) and the ping and UDP tests count exactly;
    // `TcpRetransSegs` is the whole namespace's, and other traffic on a busy host (CI saw 11
    // against 42 under loss) makes it no measure of one connection: printed only.
    let before = tcp_retrans_segs();
    let (r, took) = transfer();
    let retrans_after = tcp_retrans_settled() - before;
    eprintln!(
        "tcp after the stop: {took:?}: {r:?}, {retrans_after} retransmitted in the namespace"
    );
    assert_eq!(r.ok(), 1, "the transfer after the stop: {r:?}");
}

/// Bytes of the TCP transfer: a few MB, so that segments drop at 5 % and the retransmissions
/// (loopback's 200 ms minimum RTO at worst) fit in seconds.
const BYTES: u64 = 32 << 20;
