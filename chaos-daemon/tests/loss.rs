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
        "segments were really dropped (that TCP retransmits them is shown by the kernel's \
         TcpRetransSegs in loss_clients.rs): {c:?}"
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

/// Loss on IPv6 (`::1`): a visible egress drop fails every datagram with EPERM when a CIDR
/// filter holds `::1`, and spares it with an IPv4 CIDR; the ingress drop loses IPv6 datagrams
/// arriving for the target.
#[test]
fn ipv6_packets_are_lost_and_filtered_by_ipv6_cidrs() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "loss-v6");
    let engine = engine(&mount);
    let sink = UdpSink::on("[::1]:0");
    for (cidr, lost) in [("::1/128", true), ("127.0.0.0/8", false)] {
        let mut s = spec(
            cg.target(),
            loss(Direction::Egress, EgressDrop::Visible),
            1.0,
        );
        s.filter.cidrs = vec![cidr.parse().unwrap()];
        s.validate().unwrap();
        let armed = engine.start(&s).unwrap();
        let before = sink.settled();
        let r = workload(
            Some(&cg.path),
            &["udp-send", "--to", &sink.to(), "--count", "500"],
        );
        let got = sink.settled() - before;
        if lost {
            assert_eq!((r.get("EPERM"), got), (500, 0), "{cidr}: {r:?}");
        } else {
            assert_eq!((r.ok(), got), (500, 500), "{cidr}: {r:?}");
        }
        engine.stop(armed).unwrap();
    }
    // Ingress: a receiver in the target on ::1 gets nothing while the drop is armed.
    let armed = engine
        .start(&spec(
            cg.target(),
            loss(Direction::Ingress, EgressDrop::Silent),
            1.0,
        ))
        .unwrap();
    let receiver = Receiver::on(Some(&cg.path), "[::1]:0", 500, 3000);
    let to = receiver.addr.to_string();
    assert_eq!(
        workload(None, &["udp-send", "--to", &to, "--count", "200"]).ok(),
        200
    );
    assert_eq!(receiver.received(), 0);
    let c = engine.stop(armed).unwrap();
    assert_eq!(c.injected, 200);
    assert_eq!(cg.attached(), 0);
}

/// On ingress the port filter is the remote side's, the source port: datagrams from the
/// filtered port are lost, those from another port arrive.
#[test]
fn ingress_port_filter_matches_the_source_port() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "loss-in-port");
    let engine = engine(&mount);
    let hit = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let miss = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut s = spec(
        cg.target(),
        loss(Direction::Ingress, EgressDrop::Silent),
        1.0,
    );
    let port = hit.local_addr().unwrap().port();
    s.filter.ports = Some(PortRange {
        low: port,
        high: port,
    });
    s.validate().unwrap();
    let armed = engine.start(&s).unwrap();
    let receiver = Receiver::start(Some(&cg.path), 500, 10_000);
    for _ in 0..100 {
        hit.send_to(b"lost", receiver.addr).unwrap();
        miss.send_to(b"kept", receiver.addr).unwrap();
    }
    assert_eq!(receiver.received(), 100, "only the other port's arrive");
    assert_eq!(engine.stop(armed).unwrap().injected, 100);
}

/// Packets without ports (ICMP) match only when no port filter is set: ping from the target
/// gets through a port-filtered drop, and not through a drop of ICMP.
#[test]
fn packets_without_ports_match_only_without_a_port_filter() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "loss-icmp");
    let engine = engine(&mount);
    let ping = |cg: &std::path::Path| {
        let bin = ["/usr/bin/ping", "/bin/ping"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("no ping binary: install iputils-ping");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["-n", "-q", "-c", "5", "-i", "0.01", "-W", "1", "127.0.0.1"]);
        start_in_cgroup(&mut cmd, cg);
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for (protocol, ports, passes) in [
        (Protocol::Any, Some(80), true),
        (Protocol::Icmp, None, false),
    ] {
        let mut s = spec(
            cg.target(),
            loss(Direction::Egress, EgressDrop::Visible),
            1.0,
        );
        s.filter.protocol = protocol;
        s.filter.ports = ports.map(|p| PortRange { low: p, high: p });
        s.validate().unwrap();
        let armed = engine.start(&s).unwrap();
        let (code, out) = ping(&cg.path);
        if passes {
            assert_eq!(code, Some(0), "{protocol:?} port {ports:?}: {out}");
            assert!(out.contains("5 received"), "{out}");
        } else {
            assert_ne!(code, Some(0), "{protocol:?}: {out}");
            assert!(out.contains(" 0 received"), "{out}");
        }
        engine.stop(armed).unwrap();
    }
}
