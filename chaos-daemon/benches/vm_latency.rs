//! VM-tier latency benchmark (needs `sch_fq` and `sch_netem`: a Debian kernel under QEMU), side
//! by side in one run on one veth pair:
//!
//! 1. accuracy: the added UDP round-trip time (median and spread over 200 echoes) for the same
//!    configured delay with EDT + fq (our fault, on one cgroup) and with `tc netem` on the
//!    device (everything on it);
//! 2. the TCP throughput of a flow outside the target cgroup through the same device without
//!    the fault and with it active (fq root + the delay program on every packet);
//! 3. bandwidth limits: the rate a TCP flow from the target reaches under our limiter (EDT +
//!    fq) and under `tc netem rate` for the same configured rate, and the cost of the limiter
//!    on every packet (the target's own flow with a limit far above the link, against no
//!    fault).
//!
//! Prints a Markdown table for docs/performance.md. Not a test: it asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    process::{Child, Command},
    time::Duration,
};

use chaos_api::experiment::{BandwidthLimit, Bytes, Distribution, Fault, NetworkLatency, Rate};
use support::*;

const DELAYS_MS: [u64; 2] = [20, 100];
const ROUNDS: usize = 5;
const BYTES: &str = "200000000";

/// Runs `measure` with `netem OPTIONS` as `dev`'s root qdisc, removed afterwards.
fn under_netem<T>(dev: &str, options: &[&str], measure: impl FnOnce() -> T) -> T {
    let mut args = vec!["qdisc", "replace", "dev", dev, "root", "netem"];
    args.extend_from_slice(options);
    run("tc", &args);
    let measured = measure();
    run("tc", &["qdisc", "del", "dev", dev, "root"]);
    measured
}

fn serve(ns: &str, mode: &str, bind: &str) -> (Child, String) {
    let (child, port) = spawn_ready(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(WORKLOAD)
            .args([mode, "--bind", bind]),
    );
    (child, port.to_string())
}

fn ping(cg: Option<&std::path::Path>, to: &str) -> (f64, f64) {
    let t = workload(cg, &["udp-ping", "--to", to, "--count", "200"]);
    (t.get("p50_ns") as f64 / 1e6, t.get("sd_ns") as f64 / 1e6)
}

fn throughput(to: &str) -> f64 {
    throughput_of(None, to, BYTES)
}

/// Mbit/s of payload of one TCP transfer of `bytes` from `cg` (or outside).
fn throughput_of(cg: Option<&std::path::Path>, to: &str, bytes: &str) -> f64 {
    let t = workload(cg, &["tcp-send", "--to", to, "--bytes", bytes]);
    let secs = t.get("elapsed_us") as f64 / 1e6;
    bytes.parse::<f64>().unwrap() * 8.0 / secs / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(mount) = kernel() else {
        eprintln!("the benchmark needs root and cgroup2");
        std::process::exit(1);
    };
    let (ns, dev, peer) = ("chaos-bench", "vbench", "vbenchp");
    run("ip", &["netns", "add", ns]);
    run(
        "ip",
        &["link", "add", dev, "type", "veth", "peer", "name", peer],
    );
    run("ip", &["link", "set", peer, "netns", ns]);
    run("ip", &["addr", "add", "10.78.0.1/24", "dev", dev]);
    run("ip", &["link", "set", dev, "up"]);
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "ip",
            "addr",
            "add",
            "10.78.0.2/24",
            "dev",
            peer,
        ],
    );
    run(
        "ip",
        &["netns", "exec", ns, "ip", "link", "set", peer, "up"],
    );
    let (mut echo, echo_port) = serve(ns, "udp-echo", "10.78.0.2:0");
    let (mut sink, sink_port) = serve(ns, "tcp-listen", "10.78.0.2:0");
    let (echo_to, sink_to) = (
        format!("10.78.0.2:{echo_port}"),
        format!("10.78.0.2:{sink_port}"),
    );
    let cg = TestCgroup::new(&mount, "bench-lat");
    let engine = engine(&mount);
    let latency = |ms: u64| {
        Fault::NetworkLatency(NetworkLatency {
            latency: Duration::from_millis(ms),
            jitter: Duration::ZERO,
            distribution: Distribution::Uniform,
            interface: Some(dev.into()),
        })
    };

    println!("| configured | EDT+fq added (p50) | EDT+fq sd | netem added (p50) | netem sd |");
    println!("|---|---|---|---|---|");
    let (base, _) = ping(Some(&cg.path), &echo_to);
    for d in DELAYS_MS {
        let armed = engine.start(&spec(cg.target(), latency(d), 1.0)).unwrap();
        let (edt, edt_sd) = ping(Some(&cg.path), &echo_to);
        engine.stop(armed).unwrap();
        let (netem, netem_sd) = under_netem(dev, &["delay", &format!("{d}ms")], || {
            ping(Some(&cg.path), &echo_to)
        });
        println!(
            "| {d} ms | {:.2} ms | {edt_sd:.2} ms | {:.2} ms | {netem_sd:.2} ms |",
            edt - base,
            netem - base
        );
    }
    println!("\n(baseline round trip {base:.2} ms)\n");

    // Throughput of a flow outside the target, interleaved rounds, medians.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        off.push(throughput(&sink_to));
        let armed = engine.start(&spec(cg.target(), latency(100), 1.0)).unwrap();
        on.push(throughput(&sink_to));
        engine.stop(armed).unwrap();
    }
    let (off, on) = (median(off), median(on));
    println!("| unaffected TCP flow through the device | Mbit/s (median of {ROUNDS}) | ratio |");
    println!("|---|---|---|");
    println!("| no fault | {off:.0} | 1.00x |");
    println!(
        "| 100 ms fault on another cgroup active | {on:.0} | {:.2}x |",
        on / off
    );

    // Bandwidth: our limiter against netem's rate, the same configured rate, on the wire
    // (1500-byte frames carry 1448 bytes of payload: the payload rate is scaled back).
    let limit = |bits_per_sec: u64| {
        Fault::BandwidthLimit(BandwidthLimit {
            rate: Rate::from_bps(bits_per_sec),
            burst: Bytes(0),
            interface: Some(dev.into()),
        })
    };
    let wire = 1514.0 / 1448.0;
    println!("\n| configured rate | EDT+fq limiter (wire, median of {ROUNDS}) | netem rate |");
    println!("|---|---|---|");
    for mbit in [1u64, 10, 100] {
        // About 3 s of transfer at the rate.
        let bytes = (mbit * 1_000_000 * 3 / 8).to_string();
        let (mut edt, mut netem) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let armed = engine
                .start(&spec(cg.target(), limit(mbit * 1_000_000), 1.0))
                .unwrap();
            edt.push(throughput_of(Some(&cg.path), &sink_to, &bytes) * wire);
            engine.stop(armed).unwrap();
            netem.push(under_netem(dev, &["rate", &format!("{mbit}mbit")], || {
                throughput_of(Some(&cg.path), &sink_to, &bytes) * wire
            }));
        }
        let (edt, netem) = (median(edt), median(netem));
        println!(
            "| {mbit} Mbit/s | {edt:.3} Mbit/s ({:.3}x) | {netem:.3} Mbit/s ({:.3}x) |",
            edt / mbit as f64,
            netem / mbit as f64
        );
    }
    // The limiter's cost on every packet of the target: a limit the link never reaches.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        off.push(throughput_of(Some(&cg.path), &sink_to, BYTES));
        let armed = engine
            .start(&spec(cg.target(), limit(100_000_000_000), 1.0))
            .unwrap();
        on.push(throughput_of(Some(&cg.path), &sink_to, BYTES));
        engine.stop(armed).unwrap();
    }
    let (off, on) = (median(off), median(on));
    println!("\n| the target's own TCP flow | Mbit/s (median of {ROUNDS}) | ratio |");
    println!("|---|---|---|");
    println!("| no fault | {off:.0} | 1.00x |");
    println!(
        "| 100 Gbit/s limit (the rate program on every packet, never holding) | {on:.0} | {:.2}x |",
        on / off
    );

    drop(engine);
    let _ = (echo.kill(), sink.kill(), echo.wait(), sink.wait());
    let _ = Command::new("ip").args(["link", "del", dev]).status();
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}
