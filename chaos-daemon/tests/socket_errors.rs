//! Network syscall errors in the real kernel: cgroup sock_addr / sock_create programs fail
//! real calls of a process in the target cgroup with the chosen errno, and nobody else's.

mod support;

use chaos_api::experiment::{NetFilter, PortRange};
use support::*;

#[test]
fn connect_refused_at_configured_rate_only_inside() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "connect");
    let engine = engine(&mount);
    let armed = engine
        .start(&spec(
            cg.target(),
            socket_error("ECONNREFUSED", &["connect"]),
            0.25,
        ))
        .unwrap();
    let server = TcpServer::start("127.0.0.1:0");
    let n = 4000u64;
    let inside = workload_bg(
        Some(&cg.path),
        &["connect", "--to", &server.to(), "--count", &n.to_string()],
    );
    let outside = workload_bg(
        None,
        &["connect", "--to", &server.to(), "--count", &n.to_string()],
    );
    let (inside, outside) = (inside.join().unwrap(), outside.join().unwrap());
    assert_eq!(
        inside.ok() + inside.get("ECONNREFUSED"),
        n,
        "only ECONNREFUSED: {inside:?}"
    );
    assert_rate(
        "connect ECONNREFUSED",
        inside.get("ECONNREFUSED") as f64 / n as f64,
        n,
        0.25,
        4.0,
    );
    assert_eq!(outside.ok(), n, "outside: {outside:?}");
    let c = engine.stop(armed).unwrap();
    assert_eq!(c.injected, inside.get("ECONNREFUSED"));
    assert_eq!(cg.attached(), 0);
}

#[test]
fn chosen_errnos_are_returned_on_ipv4_and_ipv6() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "errnos");
    let engine = engine(&mount);
    let v4 = TcpServer::start("127.0.0.1:0");
    let v6 = TcpServer::start("[::1]:0");
    for errno in ["ETIMEDOUT", "ENETUNREACH", "EACCES", "ECONNREFUSED"] {
        let armed = engine
            .start(&spec(cg.target(), socket_error(errno, &["connect"]), 1.0))
            .unwrap();
        for to in [v4.to(), v6.to()] {
            let r = workload(Some(&cg.path), &["connect", "--to", &to, "--count", "50"]);
            assert_eq!(r.get(errno), 50, "{errno} to {to}: {r:?}");
        }
        engine.stop(armed).unwrap();
    }
}

#[test]
fn port_and_cidr_filters_fail_only_matching_connects() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "connect-filter");
    let engine = engine(&mount);
    let (a, b) = (
        TcpServer::start("127.0.0.1:0"),
        TcpServer::start("127.0.0.1:0"),
    );
    let mut s = spec(cg.target(), socket_error("ECONNREFUSED", &["connect"]), 1.0);
    s.filter = NetFilter {
        ports: Some(PortRange {
            low: a.addr.port(),
            high: a.addr.port(),
        }),
        ..NetFilter::default()
    };
    s.validate().unwrap();
    let armed = engine.start(&s).unwrap();
    let ra = workload(
        Some(&cg.path),
        &["connect", "--to", &a.to(), "--count", "200"],
    );
    let rb = workload(
        Some(&cg.path),
        &["connect", "--to", &b.to(), "--count", "200"],
    );
    assert_eq!(
        (ra.get("ECONNREFUSED"), rb.ok()),
        (200, 200),
        "{ra:?} {rb:?}"
    );
    engine.stop(armed).unwrap();

    // A dependency at 127.0.0.2 is down; 127.0.0.1 is fine.
    let dep = TcpServer::start("127.0.0.2:0");
    s.filter = NetFilter {
        cidrs: vec!["127.0.0.2/32".parse().unwrap()],
        ..NetFilter::default()
    };
    s.validate().unwrap();
    let armed = engine.start(&s).unwrap();
    let rd = workload(
        Some(&cg.path),
        &["connect", "--to", &dep.to(), "--count", "200"],
    );
    let ra = workload(
        Some(&cg.path),
        &["connect", "--to", &a.to(), "--count", "200"],
    );
    assert_eq!(
        (rd.get("ECONNREFUSED"), ra.ok()),
        (200, 200),
        "{rd:?} {ra:?}"
    );
    engine.stop(armed).unwrap();
}

#[test]
fn socket_fails_with_emfile_half_the_time() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "socket");
    let engine = engine(&mount);
    let armed = engine
        .start(&spec(cg.target(), socket_error("EMFILE", &["socket"]), 0.5))
        .unwrap();
    let n = 4000u64;
    let inside = workload(Some(&cg.path), &["socket", "--count", &n.to_string()]);
    let outside = workload(None, &["socket", "--count", &n.to_string()]);
    assert_eq!(inside.ok() + inside.get("EMFILE"), n, "{inside:?}");
    assert_rate(
        "socket EMFILE",
        inside.get("EMFILE") as f64 / n as f64,
        n,
        0.5,
        4.0,
    );
    assert_eq!(outside.ok(), n);
    engine.stop(armed).unwrap();
}

#[test]
fn unconnected_udp_sendto_fails_with_enetunreach() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "sendto");
    let engine = engine(&mount);
    let armed = engine
        .start(&spec(
            cg.target(),
            socket_error("ENETUNREACH", &["sendmsg"]),
            1.0,
        ))
        .unwrap();
    let sink = UdpSink::new();
    let inside = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", "1000"],
    );
    assert_eq!(inside.get("ENETUNREACH"), 1000, "{inside:?}");
    assert_eq!(sink.settled(), 0, "nothing was sent");
    let outside = workload(None, &["udp-send", "--to", &sink.to(), "--count", "1000"]);
    assert_eq!((outside.ok(), sink.settled()), (1000, 1000));
    engine.stop(armed).unwrap();
}

#[test]
fn bind_fails_with_eaddrinuse() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "bind");
    let engine = engine(&mount);
    let armed = engine
        .start(&spec(
            cg.target(),
            socket_error("EADDRINUSE", &["bind"]),
            1.0,
        ))
        .unwrap();
    let inside = workload(Some(&cg.path), &["bind", "--count", "100"]);
    assert_eq!(inside.get("EADDRINUSE"), 100, "{inside:?}");
    assert_eq!(workload(None, &["bind", "--count", "100"]).ok(), 100);
    engine.stop(armed).unwrap();
}

/// IPv4-mapped IPv6 destinations (`::ffff:127.0.0.1`) from dual-stack sockets are matched
/// against IPv4 CIDRs (docs/faults.md): a CIDR that holds the address fails the connect, one
/// that does not spares it.
#[test]
fn ipv4_mapped_destinations_match_ipv4_cidrs() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "connect-mapped");
    let engine = engine(&mount);
    let server = TcpServer::start("127.0.0.1:0");
    let mapped = format!("[::ffff:127.0.0.1]:{}", server.addr.port());
    let connect = || {
        workload(
            Some(&cg.path),
            &["connect", "--to", &mapped, "--count", "20"],
        )
    };
    assert_eq!(connect().ok(), 20, "reachable before the fault");
    let mut s = spec(cg.target(), socket_error("ECONNREFUSED", &["connect"]), 1.0);
    s.filter.cidrs = vec!["127.0.0.0/8".parse().unwrap()];
    s.validate().unwrap();
    let armed = engine.start(&s).unwrap();
    let r = connect();
    assert_eq!(r.get("ECONNREFUSED"), 20, "{r:?}");
    engine.stop(armed).unwrap();
    s.filter.cidrs = vec!["10.0.0.0/8".parse().unwrap()];
    let armed = engine.start(&s).unwrap();
    let r = connect();
    assert_eq!(r.ok(), 20, "{r:?}");
    engine.stop(armed).unwrap();
    assert_eq!(cg.attached(), 0);
}
