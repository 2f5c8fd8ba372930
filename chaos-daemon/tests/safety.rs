//! The safety model in the real kernel: kill switch, kernel deadline, exact fault cap, cleanup
//! when the arming process dies, and many experiments at once.

mod support;

use std::time::{Duration, Instant};

use chaos_common::MAX_SLOTS;
use chaos_daemon::{
    engine::EngineError,
    fault::{Direction, EgressDrop},
};
use nix::sys::signal::Signal;
use support::*;

/// A separate `chaos-daemon inject` process dropping every egress packet of `cg` (visibly).
fn drop_all_egress(cg: &TestCgroup, duration: &str) -> Injector {
    let cgs = cg.path.to_str().unwrap();
    Injector::spawn(&[
        "--cgroup",
        cgs,
        "--fault",
        "packet-loss",
        "--probability",
        "1",
        "--direction",
        "egress",
        "--egress-drop",
        "visible",
        "--duration",
        duration,
    ])
}

#[test]
fn disarm_stops_every_fault_at_once() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "killswitch");
    let mut engine = engine(&mount);
    let sink = UdpSink::new();
    let server = TcpServer::start("127.0.0.1:0");
    engine
        .start(&spec(
            cg.target(),
            loss(Direction::Egress, EgressDrop::Visible),
            1.0,
        ))
        .unwrap();
    engine
        .start(&spec(
            cg.target(),
            socket_error("ECONNREFUSED", &["connect"]),
            1.0,
        ))
        .unwrap();
    let before_udp = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", "100"],
    );
    let before_tcp = workload(
        Some(&cg.path),
        &["connect", "--to", &server.to(), "--count", "100"],
    );
    assert_eq!(
        (before_udp.get("EPERM"), before_tcp.get("ECONNREFUSED")),
        (100, 100)
    );

    assert_eq!(engine.disarm_all().unwrap(), 2);
    // Programs stay attached; only the slot flag changed.
    assert_eq!(cg.attached(), 3);
    let udp = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", "10000"],
    );
    let tcp = workload(
        Some(&cg.path),
        &["connect", "--to", &server.to(), "--count", "1000"],
    );
    assert_eq!((udp.ok(), sink.settled()), (10_000, 10_000), "{udp:?}");
    assert_eq!(tcp.ok(), 1000, "{tcp:?}");
    let ids: Vec<_> = engine.running().map(|h| h.id).collect();
    for id in ids {
        engine.stop(id).unwrap();
    }
    assert_eq!(cg.attached(), 0);
}

#[test]
fn stop_detaches_even_while_a_forked_child_holds_the_links() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "forkheld");
    let mut engine = engine(&mount);
    let id = engine
        .start(&spec(
            cg.target(),
            loss(Direction::Both, EgressDrop::Silent),
            1.0,
        ))
        .unwrap()
        .id;
    // A child between fork and exec holds a copy of every descriptor, our links included.
    // SAFETY: the child only calls pause() and _exit(), both async-signal-safe.
    let child = match unsafe { nix::unistd::fork() }.unwrap() {
        // SAFETY: async-signal-safe calls only; the child never returns into Rust code.
        nix::unistd::ForkResult::Child => unsafe {
            libc::pause();
            libc::_exit(0)
        },
        nix::unistd::ForkResult::Parent { child } => child,
    };
    engine.stop(id).unwrap();
    let attached = cg.attached();
    nix::sys::signal::kill(child, Signal::SIGKILL).unwrap();
    nix::sys::wait::waitpid(child, None).unwrap();
    assert_eq!(
        attached, 0,
        "stop detached although another process held the link fds"
    );
}

#[test]
fn kernel_deadline_holds_while_the_armer_is_frozen() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "deadline");
    let sink = UdpSink::new();
    let inj = drop_all_egress(&cg, "300ms");
    inj.signal(Signal::SIGSTOP);
    // Inside the window the fault is live...
    let during = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", "200"],
    );
    assert!(
        inj.armed_at.elapsed() < Duration::from_millis(300),
        "too slow to observe the window"
    );
    assert_eq!(during.get("EPERM"), 200, "{during:?}");
    // ...and after it the kernel stops by itself although user space never disarmed.
    std::thread::sleep(Duration::from_millis(350).saturating_sub(inj.armed_at.elapsed()));
    assert_eq!(
        cg.attached(),
        1,
        "the frozen process still holds its program attached"
    );
    let after = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", "10000"],
    );
    assert_eq!((after.ok(), sink.settled()), (10_000, 10_000), "{after:?}");
    inj.signal(Signal::SIGKILL);
}

#[test]
fn fault_cap_is_exact_across_two_cpus() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "cap");
    let mut engine = engine(&mount);
    let mut s = spec(
        cg.target(),
        loss(Direction::Egress, EgressDrop::Visible),
        1.0,
    );
    s.max_faults = Some(1000);
    let id = engine.start(&s).unwrap().id;
    let sink = UdpSink::new();
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2);
    let senders: Vec<_> = (0..2)
        .map(|i| {
            let cpu = (i % cpus).to_string();
            workload_bg(
                Some(&cg.path),
                &[
                    "--cpu",
                    &cpu,
                    "udp-send",
                    "--to",
                    &sink.to(),
                    "--count",
                    "5000",
                ],
            )
        })
        .collect();
    let faults: u64 = senders
        .into_iter()
        .map(|t| t.join().unwrap().get("EPERM"))
        .sum();
    assert_eq!(faults, 1000, "exactly max_faults datagrams were dropped");
    assert_eq!(sink.settled(), 9000);
    let c = engine.stop(id).unwrap();
    assert_eq!((c.injected, c.capped), (1000, 9000), "{c:?}");
}

#[test]
fn killing_the_armer_removes_every_fault_within_100ms() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "crash");
    let sink = UdpSink::new();
    let mut inj = drop_all_egress(&cg, "60s");
    let during = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", "100"],
    );
    assert_eq!(during.get("EPERM"), 100);
    assert_eq!(cg.attached(), 1);

    let killed = Instant::now();
    inj.signal(Signal::SIGKILL);
    inj.child.wait().unwrap();
    let flowing = loop {
        let r = workload(
            Some(&cg.path),
            &["udp-send", "--to", &sink.to(), "--count", "1"],
        );
        if r.ok() == 1 && cg.attached() == 0 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "fault outlived its process"
        );
    };
    eprintln!("traffic flows and nothing is attached {flowing:?} after SIGKILL");
    assert!(flowing < Duration::from_millis(100), "took {flowing:?}");
}

#[test]
fn sixteen_experiments_run_at_once_and_a_seventeenth_is_refused() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "slots");
    let mut engine = engine(&mount);
    let server = TcpServer::start("127.0.0.1:0");
    // Half on one shared cgroup, half on their own child cgroups.
    let children: Vec<_> = (0..MAX_SLOTS / 2)
        .map(|i| cg.child(&format!("c{i}")))
        .collect();
    let mut ids = Vec::new();
    for i in 0..MAX_SLOTS as usize {
        let target = if i % 2 == 0 {
            cg.target()
        } else {
            chaos_daemon::target::Target::CgroupPath(children[i / 2].clone())
        };
        ids.push(
            engine
                .start(&spec(
                    target,
                    socket_error("ECONNREFUSED", &["connect"]),
                    0.0,
                ))
                .unwrap()
                .id,
        );
    }
    let extra = engine.start(&spec(
        cg.target(),
        socket_error("ECONNREFUSED", &["connect"]),
        1.0,
    ));
    assert!(matches!(extra, Err(EngineError::NoFreeSlot)), "{extra:?}");
    // Every armed slot sees the connects of its cgroup (p = 0: seen, never injected). A child's
    // connect runs its own slot and the eight shared-cgroup slots (ancestor), each exactly once.
    let r = workload(
        Some(&children[0]),
        &["connect", "--to", &server.to(), "--count", "10"],
    );
    assert_eq!(r.ok(), 10);
    for (i, id) in ids.iter().enumerate() {
        let c = engine.counters(*id).unwrap();
        let expect = if i % 2 == 0 || i == 1 { 10 } else { 0 };
        assert_eq!((c.seen, c.injected), (expect, 0), "slot {i}");
    }
    for id in ids {
        engine.stop(id).unwrap();
    }
    assert_eq!(cg.attached(), 0);
    assert!(children.iter().all(|c| attached_count(c) == 0));
}
