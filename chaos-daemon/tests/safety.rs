//! The safety model in the real kernel: kill switch, kernel deadline, exact fault cap, cleanup
//! when the daemon dies, and many experiments at once.

mod support;

use std::time::{Duration, Instant};

use chaos_api::experiment::{Direction, EgressDrop};
use chaos_common::MAX_SLOTS;
use chaos_daemon::engine::EngineError;
use nix::{sys::signal::Signal, unistd::Pid};
use support::*;

fn signal(daemon: &Daemon, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(daemon.child.id()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}

#[test]
fn disarm_stops_every_fault_at_once() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "killswitch");
    let engine = engine(&mount);
    let sink = UdpSink::new();
    let server = TcpServer::start("127.0.0.1:0");
    let lossy = engine
        .start(&spec(
            cg.target(),
            loss(Direction::Egress, EgressDrop::Visible),
            1.0,
        ))
        .unwrap();
    let refused = engine
        .start(&spec(
            cg.target(),
            socket_error("ECONNREFUSED", &["connect"]),
            1.0,
        ))
        .unwrap();
    let before_udp = sink.send_from(&cg.path, 100);
    let before_tcp = server.connect_from(&cg.path, 100);
    assert_eq!(
        (before_udp.get("EPERM"), before_tcp.get("ECONNREFUSED")),
        (100, 100)
    );
    assert_eq!(sink.settled(), 0);

    let board = engine.switchboard();
    let failed = board.emergency_stop();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(board.latched());
    // Programs stay attached; only the slot flags changed.
    assert_eq!(cg.attached(), 3);
    let udp = sink.send_from(&cg.path, 10000);
    let tcp = server.connect_from(&cg.path, 1000);
    assert_eq!((udp.ok(), sink.settled()), (10_000, 10_000), "{udp:?}");
    assert_eq!(tcp.ok(), 1000, "{tcp:?}");
    // Lifting the latch re-arms nothing.
    board.clear();
    assert!(!board.latched());
    let tcp = server.connect_from(&cg.path, 100);
    assert_eq!(tcp.ok(), 100, "{tcp:?}");
    // The kernel counted the faults before the stop and none after.
    assert_eq!(engine.stop(lossy).unwrap().injected, 100);
    assert_eq!(engine.stop(refused).unwrap().injected, 100);
    assert_eq!(cg.attached(), 0);
}

#[test]
fn stop_detaches_even_while_a_forked_child_holds_the_links() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "forkheld");
    let engine = engine(&mount);
    let armed = engine
        .start(&spec(
            cg.target(),
            loss(Direction::Both, EgressDrop::Silent),
            1.0,
        ))
        .unwrap();
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
    engine.stop(armed).unwrap();
    let attached = cg.attached();
    nix::sys::signal::kill(child, Signal::SIGKILL).unwrap();
    nix::sys::wait::waitpid(child, None).unwrap();
    assert_eq!(
        attached, 0,
        "stop detached although another process held the link fds"
    );
}

#[test]
fn kernel_deadline_holds_while_the_daemon_is_frozen() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "deadline");
    let dir = TempDir::new("deadline");
    let daemon = Daemon::permissive(&dir.0, None);
    let sink = UdpSink::new();
    // Armed between `asked` and `answered`: the kernel deadline lies 2 s after that, a window
    // a busy machine's process start fits in.
    let asked = Instant::now();
    daemon.drop_all_egress(&cg.path, "2s");
    let answered = Instant::now();
    signal(&daemon, Signal::SIGSTOP);
    // Inside the window the fault is live...
    let during = sink.send_from(&cg.path, 200);
    let inside = asked.elapsed();
    eprintln!(
        "armed within {:?} of asking; the burst ended {inside:?} after asking",
        answered - asked
    );
    assert!(
        inside < Duration::from_secs(2),
        "too slow to observe the window ({inside:?})"
    );
    assert_eq!(during.get("EPERM"), 200, "{during:?}");
    // ...and after it the kernel stops by itself although the daemon, frozen, never disarmed.
    std::thread::sleep(Duration::from_millis(2050).saturating_sub(answered.elapsed()));
    assert_eq!(
        cg.attached(),
        1,
        "the frozen daemon still holds its program attached"
    );
    let after = sink.send_from(&cg.path, 10000);
    assert_eq!((after.ok(), sink.settled()), (10_000, 10_000), "{after:?}");
    signal(&daemon, Signal::SIGKILL);
}

#[test]
fn fault_cap_is_exact_across_two_cpus() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "cap");
    let engine = engine(&mount);
    let mut s = spec(
        cg.target(),
        loss(Direction::Egress, EgressDrop::Visible),
        1.0,
    );
    s.max_faults = Some(1000);
    s.validate().unwrap();
    let armed = engine.start(&s).unwrap();
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
    let c = engine.stop(armed).unwrap();
    assert_eq!((c.injected, c.capped), (1000, 9000), "{c:?}");
}

#[test]
fn killing_the_daemon_removes_every_fault() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "crash");
    let dir = TempDir::new("crash");
    let mut daemon = Daemon::permissive(&dir.0, None);
    let sink = UdpSink::new();
    daemon.drop_all_egress(&cg.path, "60s");
    let during = sink.send_from(&cg.path, 100);
    assert_eq!(during.get("EPERM"), 100, "{during:?}");
    assert_eq!(cg.attached(), 1);

    let killed = Instant::now();
    signal(&daemon, Signal::SIGKILL);
    daemon.child.wait().unwrap();
    let flowing = loop {
        let r = sink.send_from(&cg.path, 1);
        if r.ok() == 1 && cg.attached() == 0 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "fault outlived its daemon"
        );
    };
    // How fast is a benchmark figure (docs/performance.md, "Reaction time after a crash");
    // the test holds the promise itself, within a bound a busy machine meets.
    eprintln!("traffic flows and nothing is attached {flowing:?} after SIGKILL");
}

/// Socket errors (cgroup `sock_addr` programs) end with a SIGKILLed daemon too: connects from
/// the target succeed again and the kernel lists nothing attached to the cgroup.
#[test]
fn socket_errors_end_with_the_daemon() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "crash-sock");
    let dir = TempDir::new("crash-sock");
    let mut daemon = Daemon::permissive(&dir.0, None);
    let server = TcpServer::start("127.0.0.1:0");
    daemon.started(
        "dependency_failure",
        &cg.path,
        &["--intensity", "1", "--duration", "60s"],
    );
    let during = server.connect_from(&cg.path, 20);
    assert_eq!(during.get("ECONNREFUSED"), 20, "{during:?}");
    assert!(cg.attached() > 0);
    signal(&daemon, Signal::SIGKILL);
    daemon.child.wait().unwrap();
    eventually(
        "connects succeed, nothing attached",
        Duration::from_secs(2),
        || (server.connect_from(&cg.path, 1).ok() == 1 && cg.attached() == 0).then_some(()),
    );
    let after = server.connect_from(&cg.path, 20);
    assert_eq!(after.ok(), 20, "{after:?}");
}

#[test]
fn sixteen_experiments_run_at_once_and_a_seventeenth_is_refused() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "slots");
    let engine = engine(&mount);
    let server = TcpServer::start("127.0.0.1:0");
    // Half on one shared cgroup, half on their own child cgroups.
    let children: Vec<_> = (0..MAX_SLOTS / 2)
        .map(|i| cg.child(&format!("c{i}")))
        .collect();
    let mut armed = Vec::new();
    for i in 0..MAX_SLOTS as usize {
        let target = if i % 2 == 0 {
            cg.target()
        } else {
            cgroup_target(&children[i / 2])
        };
        armed.push(
            engine
                .start(&spec(
                    target,
                    socket_error("ECONNREFUSED", &["connect"]),
                    0.0,
                ))
                .unwrap(),
        );
    }
    let mut slots: Vec<u32> = armed.iter().filter_map(|a| a.slot()).collect();
    slots.sort_unstable();
    assert_eq!(slots, (0..MAX_SLOTS).collect::<Vec<_>>(), "one slot each");
    // connect4 and connect6 of the eight experiments on the shared cgroup.
    let shared = cg.attached();
    assert_eq!(shared, MAX_SLOTS as usize);
    let extra = engine.start(&spec(
        cg.target(),
        socket_error("ECONNREFUSED", &["connect"]),
        1.0,
    ));
    assert!(matches!(extra, Err(EngineError::NoFreeSlot)), "{extra:?}");
    assert_eq!(cg.attached(), shared, "the refused start attached nothing");
    // Every armed slot sees the connects of its cgroup (p = 0: seen, never injected). A child's
    // connect runs its own slot and the eight shared-cgroup slots (ancestor), each exactly once.
    let r = server.connect_from(&children[0], 10);
    assert_eq!(r.ok(), 10);
    for (i, a) in armed.iter().enumerate() {
        let c = engine.counters(a).unwrap();
        let expect = if i % 2 == 0 || i == 1 { 10 } else { 0 };
        assert_eq!((c.seen, c.injected), (expect, 0), "experiment {i}");
    }
    for a in armed {
        engine.stop(a).unwrap();
    }
    assert_eq!(cg.attached(), 0);
    assert!(children.iter().all(|c| attached_count(c) == 0));
}

/// Every one of the sixteen slots injects: sixteen experiments at once, each on a cgroup of its
/// own with an errno of its own, and a connect from each cgroup fails with exactly its errno
/// (no slot answers for another), then succeeds after the stops.
#[test]
fn every_one_of_sixteen_slots_injects_its_own_errno() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "slots-own");
    let engine = engine(&mount);
    let server = TcpServer::start("127.0.0.1:0");
    const ERRNOS: [&str; MAX_SLOTS as usize] = [
        "ECONNREFUSED",
        "ENETUNREACH",
        "EHOSTUNREACH",
        "ETIMEDOUT",
        "ECONNRESET",
        "EACCES",
        "EPERM",
        "EADDRNOTAVAIL",
        "ENOBUFS",
        "EAGAIN",
        "EPROTO",
        "EIO",
        "ENOMEM",
        "ENETDOWN",
        "EHOSTDOWN",
        "ECONNABORTED",
    ];
    let children: Vec<_> = (0..MAX_SLOTS).map(|i| cg.child(&format!("s{i}"))).collect();
    let armed: Vec<_> = children
        .iter()
        .zip(ERRNOS)
        .map(|(child, errno)| {
            engine
                .start(&spec(
                    cgroup_target(child),
                    socket_error(errno, &["connect"]),
                    1.0,
                ))
                .unwrap()
        })
        .collect();
    for (i, (child, errno)) in children.iter().zip(ERRNOS).enumerate() {
        let r = server.connect_from(child, 5);
        assert_eq!(r.get(errno), 5, "slot of cgroup s{i}: {r:?}");
    }
    for (a, errno) in armed.into_iter().zip(ERRNOS) {
        let c = engine.stop(a).unwrap();
        assert_eq!(c.injected, 5, "{errno}");
    }
    for child in &children {
        assert_eq!(server.connect_from(child, 5).ok(), 5);
        assert_eq!(attached_count(child), 0);
    }
}

/// The silent egress drop's programs on `lo`.
fn loss_programs_on_lo() -> Vec<String> {
    let mut found = egress_programs("lo");
    found.retain(|p| p.contains("loss_eg_"));
    found
}

#[test]
fn the_silent_egress_drop_ends_with_emergency_stop_and_with_the_daemon() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "silent-crash");
    let dir = TempDir::new("silent-crash");
    let mut daemon = Daemon::permissive(&dir.0, None);
    let sink = UdpSink::new();
    let silent = |daemon: &Daemon| {
        daemon.started(
            "packet_loss",
            &cg.path,
            &[
                "--intensity",
                "1",
                "--direction",
                "egress",
                "--duration",
                "60s",
            ],
        )
    };
    // Emergency stop: traffic flows and the program is gone.
    silent(&daemon);
    let during = sink.send_from(&cg.path, 100);
    assert_eq!(
        (during.ok(), sink.settled()),
        (100, 0),
        "silent: {during:?}"
    );
    assert!(!loss_programs_on_lo().is_empty(), "a tc program on lo");
    daemon.ctl_ok(&["emergency-stop", "--reason", "drill"]);
    let after = sink.send_from(&cg.path, 100);
    assert_eq!((after.ok(), sink.settled()), (100, 100), "{after:?}");
    // The disarm is synchronous; the detach follows it.
    eventually("the tc program detached", Duration::from_secs(5), || {
        loss_programs_on_lo().is_empty().then_some(())
    });
    daemon.ctl_ok(&["emergency-stop", "--clear"]);

    // SIGKILL: the tcx links die with the daemon's file descriptors.
    silent(&daemon);
    let during = sink.send_from(&cg.path, 100);
    assert_eq!(
        (during.ok(), sink.settled()),
        (100, 100),
        "silent again: {during:?}"
    );
    signal(&daemon, Signal::SIGKILL);
    daemon.child.wait().unwrap();
    let killed = Instant::now();
    let flowing = loop {
        let r = sink.send_from(&cg.path, 1);
        if r.ok() == 1 && sink.settled() == 101 && loss_programs_on_lo().is_empty() {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "the silent drop outlived its daemon: {:?}",
            loss_programs_on_lo()
        );
    };
    eprintln!(
        "traffic flows and no tc program is left {flowing:?} after SIGKILL (a 200 ms settle included)"
    );
}
