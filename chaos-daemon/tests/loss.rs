//! Packet loss in the real kernel: real cgroups, real UDP and TCP sockets on loopback.
//! Observed loss inside the target must match the configured rate (within 4 binomial sigma
//! over 20,000 datagrams) while a process outside sees none, at the same time.

mod support;

use chaos_api::experiment::{Direction, EgressDrop, NetFilter, PortRange, Protocol};
use support::*;

const N: u64 = 20_000;
const RATES: [f64; 3] = [0.05, 0.3, 1.0];

fn egress(drop: EgressDrop) {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "loss-eg");
    let engine = engine(&mount);
    for p in RATES {
        let armed = engine
            .start(&spec(cg.target(), loss(Direction::Egress, drop), p))
            .unwrap();
        let (inside_sink, outside_sink) = (UdpSink::new(), UdpSink::new());
        let n = N.to_string();
        let inside = workload_bg(
            Some(&cg.path),
            &["udp-send", "--to", &inside_sink.to(), "--count", &n],
        );
        let outside = workload_bg(
            None,
            &["udp-send", "--to", &outside_sink.to(), "--count", &n],
        );
        let (inside, outside) = (inside.join().unwrap(), outside.join().unwrap());
        let (got_in, got_out) = (inside_sink.settled(), outside_sink.settled());
        let lost = 1.0 - got_in as f64 / N as f64;
        assert_rate(&format!("egress {drop:?} loss p={p}"), lost, N, p, 4.0);
        match drop {
            // The sender sees exactly the drops, as EPERM.
            EgressDrop::Visible => assert_eq!(inside.get("EPERM"), N - got_in, "{inside:?}"),
            // The sender sees success for every datagram.
            EgressDrop::Silent => assert_eq!(inside.ok(), N, "{inside:?}"),
        }
        assert_eq!(
            (outside.ok(), got_out),
            (N, N),
            "outside the cgroup nothing is lost"
        );
        let c = engine.stop(armed).unwrap();
        assert_eq!(c.injected, N - got_in, "kernel counter = observed drops");
    }
    assert_eq!(cg.attached(), 0);
}

#[test]
fn egress_visible_loss_matches_rate_and_spares_outside() {
    egress(EgressDrop::Visible);
}

#[test]
fn egress_silent_loss_matches_rate_and_spares_outside() {
    egress(EgressDrop::Silent);
}

#[test]
fn ingress_loss_matches_rate_and_spares_outside() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "loss-in");
    let engine = engine(&mount);
    for p in RATES {
        let armed = engine
            .start(&spec(
                cg.target(),
                loss(Direction::Ingress, EgressDrop::Silent),
                p,
            ))
            .unwrap();
        // Receivers: one inside the target, one outside; the test process sends to both.
        let timeout = if p == 1.0 { 3_000 } else { 60_000 };
        let inside = Receiver::start(Some(&cg.path), 500, timeout);
        let outside = Receiver::start(None, 500, 60_000);
        let (a, b) = (inside.addr.to_string(), outside.addr.to_string());
        let t1 = workload_bg(None, &["udp-send", "--to", &a, "--count", &N.to_string()]);
        let t2 = workload_bg(None, &["udp-send", "--to", &b, "--count", &N.to_string()]);
        assert_eq!((t1.join().unwrap().ok(), t2.join().unwrap().ok()), (N, N));
        let (got_in, got_out) = (inside.received(), outside.received());
        assert_rate(
            &format!("ingress loss p={p}"),
            1.0 - got_in as f64 / N as f64,
            N,
            p,
            4.0,
        );
        assert_eq!(got_out, N, "outside the cgroup nothing is lost");
        assert_eq!(engine.stop(armed).unwrap().injected, N - got_in);
    }
    assert_eq!(cg.attached(), 0);
}

#[test]
fn tcp_completes_through_five_percent_loss() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "loss-tcp");
    let engine = engine(&mount);
    let mut s = spec(cg.target(), loss(Direction::Both, EgressDrop::Silent), 0.05);
    s.filter = NetFilter {
        protocol: Protocol::Tcp,
        ..NetFilter::default()
    };
    s.validate().unwrap();
    let armed = engine.start(&s).unwrap();
    let server = TcpServer::start("127.0.0.1:0");
    let bytes = (8u64 << 20).to_string();
    let r = workload(
        Some(&cg.path),
        &["tcp-send", "--to", &server.to(), "--bytes", &bytes],
    );
    assert_eq!(
        r.ok(),
        1,
        "8 MiB over TCP arrives complete despite loss: {r:?}"
    );
    let c = engine.stop(armed).unwrap();
    assert!(
        c.injected > 0,
        "segments were really dropped (and retransmitted): {c:?}"
    );
}

#[test]
fn protocol_and_port_filters_limit_loss() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "loss-filter");
    let engine = engine(&mount);
    let (hit, miss) = (UdpSink::new(), UdpSink::new());
    let mut s = spec(
        cg.target(),
        loss(Direction::Egress, EgressDrop::Visible),
        1.0,
    );
    s.filter = NetFilter {
        protocol: Protocol::Udp,
        ports: Some(PortRange {
            low: hit.addr.port(),
            high: hit.addr.port(),
        }),
        cidrs: vec!["127.0.0.0/8".parse().unwrap()],
    };
    s.validate().unwrap();
    let armed = engine.start(&s).unwrap();
    let a = workload(
        Some(&cg.path),
        &["udp-send", "--to", &hit.to(), "--count", "1000"],
    );
    let b = workload(
        Some(&cg.path),
        &["udp-send", "--to", &miss.to(), "--count", "1000"],
    );
    assert_eq!(
        (a.get("EPERM"), hit.settled()),
        (1000, 0),
        "the filtered port loses everything"
    );
    assert_eq!(
        (b.ok(), miss.settled()),
        (1000, 1000),
        "another port loses nothing"
    );
    engine.stop(armed).unwrap();

    // A CIDR that does not contain the destination spares it.
    s.filter.cidrs = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    s.validate().unwrap();
    let armed = engine.start(&s).unwrap();
    let c = workload(
        Some(&cg.path),
        &["udp-send", "--to", &hit.to(), "--count", "1000"],
    );
    assert_eq!(c.ok(), 1000);
    engine.stop(armed).unwrap();
}
