//! VM-tier smoke test (`cargo xtask vm-test`): proves the booted Debian kernel is the one the
//! runner meant, that it offers what the VM tests rely on (cgroup2 cpu+memory, BTF, the BPF LSM
//! exactly when asked for, the fq qdisc) and that the packet-loss engine works in it.
#![cfg(feature = "vm-tests")]

mod support;

use std::process::Command;

use chaos_api::experiment::{Direction, EgressDrop};
use support::*;

/// A variable the VM's /init sets for every test executable.
fn vm_env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is unset: run this via cargo xtask vm-test"))
}

#[test]
fn kernel_is_the_configured_one() {
    let label = vm_env("CHAOS_VM_KERNEL");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(
        release.trim().starts_with(&format!("{label}.")),
        "booted kernel {release:?}, configured {label}"
    );
}

#[test]
fn cgroup2_has_cpu_and_memory_and_btf_exists() {
    let Some(mount) = kernel() else { return };
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap();
    let controllers: Vec<&str> = controllers.split_whitespace().collect();
    for c in ["cpu", "memory"] {
        assert!(controllers.contains(&c), "{c} missing from {controllers:?}");
    }
    let cg = TestCgroup::new(&mount, "vm-ctl");
    assert!(
        cg.path.join("cpu.max").exists(),
        "cpu.max in a child cgroup"
    );
    assert!(
        cg.path.join("memory.high").exists(),
        "memory.high in a child cgroup"
    );
    assert!(std::path::Path::new("/sys/kernel/btf/vmlinux").exists());
}

#[test]
fn bpf_lsm_is_active_exactly_when_configured() {
    let want = match vm_env("CHAOS_VM_LSM").as_str() {
        "1" => true,
        "0" => false,
        other => panic!("CHAOS_VM_LSM={other:?}: allowed are 0 and 1"),
    };
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").expect("securityfs mounted");
    let active = lsm.trim().split(',').any(|l| l == "bpf");
    assert_eq!(active, want, "active LSMs: {lsm}");
}

fn tc(args: &[&str]) -> String {
    let out = Command::new("tc").args(args).output().expect("spawn tc");
    assert!(
        out.status.success(),
        "tc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn fq_qdisc_can_be_created_and_removed() {
    let Some(_) = kernel() else { return };
    tc(&["qdisc", "add", "dev", "lo", "root", "fq"]);
    let shown = tc(&["qdisc", "show", "dev", "lo"]);
    tc(&["qdisc", "del", "dev", "lo", "root"]);
    assert!(shown.contains("qdisc fq "), "fq on lo: {shown}");
    let after = tc(&["qdisc", "show", "dev", "lo"]);
    assert!(!after.contains("qdisc fq "), "fq removed: {after}");
}

#[test]
fn packet_loss_drops_inside_the_cgroup_only() {
    let Some(mount) = kernel() else { return };
    const N: u64 = 200;
    let cg = TestCgroup::new(&mount, "vm-loss");
    let engine = engine(&mount);
    let armed = engine
        .start(&spec(
            cg.target(),
            loss(Direction::Egress, EgressDrop::Visible),
            1.0,
        ))
        .unwrap();
    let (inside_sink, outside_sink) = (UdpSink::new(), UdpSink::new());
    let n = N.to_string();
    let inside = workload(
        Some(&cg.path),
        &["udp-send", "--to", &inside_sink.to(), "--count", &n],
    );
    let outside = workload(
        None,
        &["udp-send", "--to", &outside_sink.to(), "--count", &n],
    );
    assert_eq!(inside_sink.settled(), 0, "every datagram dropped inside");
    assert_eq!(
        inside.get("EPERM"),
        N,
        "the sender saw each drop: {inside:?}"
    );
    assert_eq!(
        (outside.ok(), outside_sink.settled()),
        (N, N),
        "nothing lost outside"
    );
    assert_eq!(engine.stop(armed).unwrap().injected, N);
    assert_eq!(cg.attached(), 0, "stop detached every program");
}

#[test]
fn silent_egress_loss_tells_the_sender_success_and_leaves_no_qdisc() {
    let Some(mount) = kernel() else { return };
    const N: u64 = 200;
    let cg = TestCgroup::new(&mount, "vm-silent");
    let engine = engine(&mount);
    let before = tc(&["qdisc", "show", "dev", "lo"]);
    let armed = engine
        .start(&spec(
            cg.target(),
            loss(Direction::Egress, EgressDrop::Silent),
            1.0,
        ))
        .unwrap();
    // Before 6.6 the program is a cls_bpf filter under a clsact the daemon added; from 6.6 a
    // tcx link, with no qdisc.
    let during = tc(&["qdisc", "show", "dev", "lo"]);
    let legacy = during.contains("clsact");
    eprintln!("lo while armed: {during}");
    let sink = UdpSink::new();
    let inside = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", &N.to_string()],
    );
    assert_eq!(sink.settled(), 0, "every datagram dropped inside");
    assert_eq!(inside.ok(), N, "the sender saw success: {inside:?}");
    assert_eq!(engine.stop(armed).unwrap().injected, N);
    assert_eq!(
        tc(&["qdisc", "show", "dev", "lo"]),
        before,
        "qdiscs as before"
    );
    if legacy {
        let filters = tc(&["filter", "show", "dev", "lo", "egress"]);
        assert!(!filters.contains("loss_eg"), "{filters}");
    }
    let after = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", &N.to_string()],
    );
    assert_eq!(
        (after.ok(), sink.settled()),
        (N, N),
        "nothing drops after stop"
    );
}

#[test]
fn http_errors_rewrite_the_status_in_this_kernel() {
    use chaos_api::experiment::{ApiError, Fault, HttpError, HttpStatus, PortRange};
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "vm-http");
    let engine = engine(&mount);
    let dependency = TcpServer::start("127.0.0.1:0");
    let mut serve = Command::new(WORKLOAD);
    serve.args(["--cgroup", cg.path.to_str().unwrap()]);
    serve.args(["http-serve", "--dependency", &dependency.to()]);
    let (mut server, port) = spawn_ready(&mut serve);
    let url = format!("http://127.0.0.1:{port}/");
    let load = || {
        workload(
            None,
            &[
                "http-load",
                "--url",
                &url,
                "--rps",
                "50",
                "--duration-ms",
                "1000",
            ],
        )
    };
    let fault = Fault::ApiErrorInjection(ApiError::Http(HttpError {
        error_types: vec![HttpStatus::Code(502)],
        server_ports: Some(PortRange {
            low: port,
            high: port,
        }),
    }));
    let armed = engine.start(&spec(cg.target(), fault, 1.0)).unwrap();
    let during = load();
    let injected = engine.stop(armed).unwrap().injected;
    let after = load();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(during.get("status_502") >= 40, "{during:?}");
    assert_eq!(
        (during.ok(), injected),
        (0, during.get("status_502")),
        "{during:?}"
    );
    assert!(
        after.ok() >= 40 && after.get("status_502") == 0,
        "{after:?}"
    );
    assert_eq!(cg.attached(), 0);
}

#[test]
fn duplication_and_corruption_run_in_this_kernel() {
    use chaos_api::experiment::{CorruptChecksum, Fault, PacketCorruption};
    let Some(mount) = kernel() else { return };
    const N: u64 = 200;
    let cg = TestCgroup::new(&mount, "vm-dupcor");
    let engine = engine(&mount);
    let n = N.to_string();

    let sink = UdpSink::new();
    let armed = engine
        .start(&spec(cg.target(), Fault::PacketDuplication, 1.0))
        .unwrap();
    let sent = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", &n],
    );
    let injected = engine.stop(armed).unwrap().injected;
    assert_eq!(sent.ok(), N, "{sent:?}");
    assert_eq!(
        (sink.settled(), injected),
        (2 * N, N),
        "every datagram twice"
    );

    let sink = UdpSink::new();
    let fault = Fault::PacketCorruption(PacketCorruption {
        checksum: CorruptChecksum::Fixed,
    });
    let armed = engine.start(&spec(cg.target(), fault, 1.0)).unwrap();
    let sent = workload(
        Some(&cg.path),
        &["udp-send", "--to", &sink.to(), "--count", &n],
    );
    let injected = engine.stop(armed).unwrap().injected;
    assert_eq!(sent.ok(), N, "{sent:?}");
    assert_eq!(
        (sink.settled(), injected),
        (N, N),
        "every datagram changed and delivered (the checksum fixed)"
    );
    assert_eq!(cg.attached(), 0);
}
