//! Engine benchmarks on the real kernel (root): disarm, stop and start latency, and the cost the
//! programs add per packet and per connect, as ratios to a no-program baseline measured in the
//! same run (conditions interleaved, medians over rounds; the machines are noisy, ±15%).
//! Run with `cargo xtask bench`; figures go to docs/performance.md.
//!
//! A benchmark promises nothing: what it runs is tested in `tests/` (cleanup after every stop
//! in each fault's tests, the HTTP rewrite in `http_errors.rs`). Its checks only refuse to print
//! figures measured on a run that did not do what it says (a status or count off).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use chaos_api::experiment::{
    CorruptChecksum, Direction, EgressDrop, Experiment, Fault, PacketCorruption,
};
use chaos_daemon::engine::Engine;
use support::*;

const LATENCY_RUNS: usize = 2000;
const STOP_RUNS: usize = 1000;
const ROUNDS: usize = 7;
const PACKETS: u64 = 100_000;
const CONNECTS: u64 = 4_000;

fn main() {
    let Some(mount) = kernel() else {
        eprintln!("benchmarks need root and cgroup2");
        std::process::exit(1);
    };
    let cg = TestCgroup::new(&mount, "bench");
    let engine = engine(&mount);
    println!(
        "chaos-ebpf engine benchmarks ({} CPUs, kernel {})",
        num_cpus(),
        kernel_release()
    );
    println!();

    // Two cgroup_skb links (the silent egress drop attaches one tc program per device, below).
    let loss_spec = spec(cg.target(), loss(Direction::Both, EgressDrop::Visible), 0.0);
    let armed = engine.start(&loss_spec).unwrap();
    let board = engine.switchboard();
    let disarm = sample(LATENCY_RUNS, || {
        time(|| board.disarm(&armed.switch).unwrap())
    });
    engine.stop(armed).unwrap();
    report("disarm (one slot write)", &disarm);

    let mut starts = Vec::with_capacity(STOP_RUNS);
    let mut stops = Vec::with_capacity(STOP_RUNS);
    for _ in 0..STOP_RUNS {
        let t = Instant::now();
        let armed = engine.start(&loss_spec).unwrap();
        starts.push(t.elapsed());
        stops.push(time(|| {
            engine.stop(armed).unwrap();
        }));
    }
    report("stop (disarm + detach 2 links)", &sorted(stops));
    report("start (resolve + attach 2 + arm)", &sorted(starts));
    println!();

    let sink = UdpSink::new();
    let send = [
        "udp-send",
        "--to",
        &sink.to(),
        "--count",
        &PACKETS.to_string(),
    ];
    per_event(
        &engine,
        &cg,
        "UDP sendto (cgroup_skb egress+ingress hooks)",
        &loss_spec,
        &send,
        PACKETS,
    );
    let corruption = Fault::PacketCorruption(PacketCorruption {
        checksum: CorruptChecksum::Wrong,
    });
    for (what, fault) in [
        (
            "UDP sendto (tc silent egress loss program)",
            loss(Direction::Egress, EgressDrop::Silent),
        ),
        (
            "UDP sendto (tc duplication program)",
            Fault::PacketDuplication,
        ),
        ("UDP sendto (tc corruption program)", corruption),
    ] {
        per_event(
            &engine,
            &cg,
            what,
            &spec(cg.target(), fault, 0.0),
            &send,
            PACKETS,
        );
    }

    let server = TcpServer::start("127.0.0.1:0");
    let conn_spec = spec(cg.target(), socket_error("ECONNREFUSED", &["connect"]), 0.0);
    let connect = [
        "connect",
        "--to",
        &server.to(),
        "--count",
        &CONNECTS.to_string(),
    ];
    per_event(
        &engine,
        &cg,
        "TCP connect (connect4/6 hooks)",
        &conn_spec,
        &connect,
        CONNECTS,
    );
    http_responses(&engine, &cg, &server);
}

/// One HTTP/1.1 GET on a new connection; returns how long it took and the status.
fn get(addr: std::net::SocketAddr, path: &str) -> (Duration, u16) {
    use std::io::{Read as _, Write as _};
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let status = std::str::from_utf8(&answer[9..12])
        .unwrap()
        .parse()
        .unwrap();
    (t.elapsed(), status)
}

/// The HTTP error program on the server's responses: median request time through a server in
/// the target (`chaos-workload http-serve`, its `/metrics` page) with no program, armed at
/// p = 0 (every response parsed, none changed) and at p = 1 (every status rewritten).
fn http_responses(engine: &Engine, cg: &TestCgroup, dependency: &TcpServer) {
    use chaos_api::experiment::{ApiError, Fault, HttpError, HttpStatus, PortRange};
    const REQUESTS: usize = 2_000;
    let mut serve = std::process::Command::new(WORKLOAD);
    serve.args(["--cgroup", cg.path.to_str().unwrap()]);
    serve.args(["http-serve", "--dependency", &dependency.to()]);
    let (mut server, port) = spawn_ready(&mut serve);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let fault = |p: f64| {
        let http = HttpError {
            error_types: vec![HttpStatus::Code(503)],
            server_ports: Some(PortRange {
                low: port,
                high: port,
            }),
        };
        spec(
            cg.target(),
            Fault::ApiErrorInjection(ApiError::Http(http)),
            p,
        )
    };
    let labels = ["no program", "armed, p = 0", "armed, p = 1 (rewritten)"];
    let mut cost: [Vec<Duration>; 3] = Default::default();
    for _ in 0..ROUNDS {
        for (i, c) in cost.iter_mut().enumerate() {
            let armed = match i {
                0 => None,
                1 => Some(engine.start(&fault(0.0)).unwrap()),
                _ => Some(engine.start(&fault(1.0)).unwrap()),
            };
            let want = if i == 2 { 503 } else { 200 };
            let mut times: Vec<Duration> = (0..REQUESTS)
                .map(|_| {
                    let (t, status) = get(addr, "/metrics");
                    assert_eq!(status, want, "{}", labels[i]);
                    t
                })
                .collect();
            times.sort();
            c.push(times[REQUESTS / 2]);
            if let Some(armed) = armed {
                engine.stop(armed).unwrap();
            }
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let medians: Vec<Duration> = cost.into_iter().map(|c| sorted(c)[ROUNDS / 2]).collect();
    println!(
        "HTTP GET /metrics from a server in the target (tc HTTP error program): median request, \
         median of {ROUNDS} rounds x {REQUESTS} requests:"
    );
    for (label, m) in labels.iter().zip(&medians) {
        let ratio = m.as_secs_f64() / medians[0].as_secs_f64();
        println!(
            "  {label:<26} {:>9.2} µs   {ratio:.2}x",
            m.as_secs_f64() * 1e6
        );
    }
    println!();
}

/// Median cost of one call of a workload inside the cgroup with no program, with the programs
/// attached but disarmed, and armed at p = 0; conditions interleaved round by round.
fn per_event(engine: &Engine, cg: &TestCgroup, what: &str, s: &Experiment, args: &[&str], n: u64) {
    let mut cost: [Vec<Duration>; 3] = Default::default();
    for _ in 0..ROUNDS {
        for (i, c) in cost.iter_mut().enumerate() {
            let armed = (i > 0).then(|| engine.start(s).unwrap());
            if let (1, Some(armed)) = (i, &armed) {
                engine.switchboard().disarm(&armed.switch).unwrap();
            }
            let t = workload(Some(&cg.path), args);
            assert_eq!(t.ok(), n, "{t:?}");
            c.push(t.p50());
            if let Some(armed) = armed {
                engine.stop(armed).unwrap();
            }
        }
    }
    let medians: Vec<Duration> = cost.into_iter().map(|c| sorted(c)[ROUNDS / 2]).collect();
    println!("{what}: median call, median of {ROUNDS} rounds x {n} calls:");
    for (label, m) in ["no program", "attached, disarmed", "armed, p = 0"]
        .iter()
        .zip(&medians)
    {
        let ratio = m.as_secs_f64() / medians[0].as_secs_f64();
        println!(
            "  {label:<22} {:>9.2} µs   {ratio:.2}x",
            m.as_secs_f64() * 1e6
        );
    }
    println!();
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn sample(n: usize, mut f: impl FnMut() -> Duration) -> Vec<Duration> {
    sorted((0..n).map(|_| f()).collect())
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

fn report(what: &str, sorted: &[Duration]) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what:<34} min {:>8.1} µs  median {:>8.1} µs  p99 {:>8.1} µs  (n={})",
        us(sorted[0]),
        us(p(0.5)),
        us(p(0.99)),
        sorted.len()
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}
