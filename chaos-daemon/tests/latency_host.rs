//! Latency on a kernel without `sch_fq` (these CI hosts): a latency fault is refused with the
//! kernel's reason and changes nothing (qdisc, programs, journal). The tests that need fq to be
//! missing say so and end early where it exists ([`without_fq`]); there the VM tier's
//! vm_latency.rs proves the same paths running. The rtnetlink root-qdisc
//! path and the journal are proven here with qdisc kinds the host has (pfifo, bfifo, htb) on a
//! veth pair the test creates and removes, including the restore after a daemon crash.

mod support;

use std::{
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::programs::{SchedClassifier, TcAttachType};
use chaos_api::{
    config::{ChaosConfig, Refusal},
    experiment::{Distribution, ExperimentType, Fault, NetworkLatency},
};
use chaos_common::{DIST_NORMAL, MAX_TARGETS, TcConfig, TcTarget};
use chaos_daemon::{
    ebpf::{Kernel, tc::TcProgram},
    engine::{Engine, EngineError},
    experiment::{ExperimentError, Manager, SystemClock},
    journal::{ChangeKind, HostChange, HostJournal, undo_pending},
    net::{
        devices::{DeviceError, Devices},
        netlink::Socket,
        netns::{Netns, device_path},
        probe_fq,
        qdisc::{self, Qdisc},
    },
    store::Store,
    target::Resolver,
};
use support::*;

/// Names of the programs on the device's egress: tcx links and legacy cls_bpf filters.
fn tc_egress_programs(dev: &str) -> Vec<String> {
    let (_, tcx) = SchedClassifier::query_tcx(dev, TcAttachType::Egress).unwrap();
    let mut names: Vec<String> = tcx
        .iter()
        .map(|p| p.name_as_str().unwrap_or("?").to_string())
        .collect();
    let out = Command::new("tc")
        .args(["filter", "show", "dev", dev, "egress"])
        .output()
        .unwrap();
    let legacy = String::from_utf8_lossy(&out.stdout);
    // One line per cls_bpf filter (it names the program twice).
    names.extend(
        legacy
            .lines()
            .filter(|l| l.contains("lat_eg"))
            .map(String::from),
    );
    names
}

fn qdisc_change(dev: &str, saved: &Qdisc) -> HostChange {
    HostChange {
        kind: ChangeKind::Qdisc,
        path: device_path(&own(), dev),
        old_value: saved.encode(),
    }
}

fn own() -> Netns {
    Netns::own().unwrap()
}

/// A network namespace (`ip netns add`) holding one end of a veth pair; deleted on drop.
struct OtherNetns {
    name: String,
    dev: String,
    outside: String,
}

impl OtherNetns {
    fn new(tag: &str) -> Self {
        let id = std::process::id() % 100_000;
        let (name, dev, outside) = (
            format!("chaos-lt{tag}-{id}"),
            format!("cn{tag}{id}"),
            format!("cn{tag}{id}o"),
        );
        run("ip", &["netns", "add", &name]);
        let ns = Self { name, dev, outside };
        run(
            "ip",
            &[
                "link",
                "add",
                &ns.outside,
                "type",
                "veth",
                "peer",
                "name",
                &ns.dev,
            ],
        );
        run("ip", &["link", "set", &ns.dev, "netns", &ns.name]);
        ns.ip(&["link", "set", &ns.dev, "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut a = vec!["netns", "exec", &self.name, "ip"];
        a.extend_from_slice(args);
        run("ip", &a);
    }

    fn netns(&self) -> Netns {
        Netns::open(std::path::Path::new(&format!("/run/netns/{}", self.name))).unwrap()
    }

    fn root(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "tc", "qdisc", "show", "dev"])
            .args([&self.dev, "root"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for OtherNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.outside])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Whether this kernel lacks `sch_fq`, as the refusal tests need; where it exists they print
/// why they end early (the VM tier covers the running fault).
fn without_fq() -> bool {
    match probe_fq() {
        Err(_) => true,
        Ok(()) => {
            eprintln!("this kernel has sch_fq: the refusal is not testable here (see vm_latency)");
            false
        }
    }
}

fn latency(interface: &str) -> Fault {
    delay(20, 2, Distribution::Normal, interface)
}

/// A network_latency fault: `ms` ± `jitter_ms` on `interface`.
fn delay(ms: u64, jitter_ms: u64, distribution: Distribution, interface: &str) -> Fault {
    Fault::NetworkLatency(NetworkLatency {
        latency: Duration::from_millis(ms),
        jitter: Duration::from_millis(jitter_ms),
        distribution,
        interface: Some(interface.into()),
    })
}

/// The durable host-change journal in `dir`, as the daemon keeps it.
fn journal(dir: &Path) -> Mutex<Store> {
    Mutex::new(Store::open(dir).unwrap())
}

#[test]
fn latency_is_refused_with_the_missing_kernel_feature_and_nothing_changes() {
    let Some(mount) = kernel() else { return };
    if !without_fq() {
        return;
    }
    let reason = probe_fq().expect_err("this host kernel has no sch_fq; the probe must say so");
    assert!(
        reason.contains("sch_fq") && reason.contains("unknown") && reason.contains("ENOENT"),
        "{reason}"
    );
    let veth = Veth::new("r");
    veth.tc(&["pfifo", "limit", "77"]);
    let before = veth.root();
    let dir = TempDir::new("lat-refuse");
    let cg = TestCgroup::new(&mount, "lat-refuse");
    let engine = Engine::with_journal(
        Resolver::new(mount.clone()).unwrap(),
        Arc::new(journal(&dir.0)),
    )
    .unwrap();
    // The capability table says so, under the user's type name.
    let cap = engine
        .capabilities()
        .faults
        .iter()
        .find(|c| c.kind == ExperimentType::NetworkLatency)
        .expect("network_latency is probed");
    assert_eq!((cap.supported, &cap.reason), (false, &reason));
    let err = engine
        .start(&spec(cg.target(), latency(&veth.0), 1.0))
        .expect_err("latency must be refused without sch_fq");
    match &err {
        EngineError::Unsupported { kind, reason: r } => {
            assert_eq!((*kind, r), (ExperimentType::NetworkLatency, &reason));
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(
        err.to_string()
            .starts_with("network_latency is not supported on this node: sch_fq not available"),
        "{err}"
    );
    assert_eq!(veth.root(), before, "the qdisc is unchanged");
    assert!(tc_egress_programs(&veth.0).is_empty(), "nothing attached");
    assert_eq!(
        engine.with_latency(|l| l.devices().in_use().count()),
        0,
        "no device holds a shared fq"
    );
    // No slot is held: a network fault still gets slot 0.
    let armed = engine
        .start(&spec(
            cg.target(),
            socket_error("ECONNREFUSED", &["connect"]),
            1.0,
        ))
        .unwrap();
    assert_eq!(armed.slot(), Some(0));
    engine.stop(armed).unwrap();
    assert_eq!(cg.attached(), 0);
    drop(engine);
    assert!(journal(&dir.0).pending().unwrap().is_empty());
}

#[test]
fn a_failed_fq_install_leaves_the_device_and_journal_as_they_were() {
    let Some(_) = kernel() else { return };
    if !without_fq() {
        return;
    }
    let veth = Veth::new("f");
    veth.tc(&["pfifo", "limit", "77"]);
    let before = veth.root();
    let dir = TempDir::new("lat-fail");
    let store = journal(&dir.0);
    let mut devices = Devices::default();
    let err = devices
        .acquire(&store, "t", &own(), &veth.0, Duration::from_millis(100))
        .expect_err("no fq here");
    assert!(matches!(err, DeviceError::Netlink { .. }), "{err}");
    assert_eq!(veth.root(), before);
    assert!(
        store.pending().unwrap().is_empty(),
        "journaled then marked restored"
    );
    assert_eq!(devices.in_use().count(), 0);

    // A classful root would lose its classes: refused before the journal is touched.
    veth.tc(&["htb", "default", "1"]);
    let err = devices
        .acquire(&store, "t", &own(), &veth.0, Duration::from_millis(100))
        .expect_err("htb cannot be restored exactly");
    assert!(
        err.to_string()
            .contains("\"htb\" root qdisc, which is not allowed"),
        "{err}"
    );
    assert!(store.pending().unwrap().is_empty());
    let err = devices
        .acquire(
            &store,
            "t",
            &own(),
            "no-such-dev0",
            Duration::from_millis(1),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fault.interface: \"no-such-dev0\""),
        "{err}"
    );
}

fn has_clsact(dev: &str) -> bool {
    let all = Command::new("tc")
        .args(["qdisc", "show", "dev", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&all.stdout).contains("clsact")
}

#[test]
fn clsact_is_shared_journaled_and_never_taken_from_its_owner() {
    let Some(_) = kernel() else { return };
    let dir = TempDir::new("clsact");
    let veth = Veth::new("k");
    let ns = own();
    // Added by us, shared by two faults: the last release removes it.
    {
        let store = journal(&dir.0);
        let mut devices = Devices::default();
        devices.acquire_clsact(&store, "a", &ns, &veth.0).unwrap();
        devices.acquire_clsact(&store, "b", &ns, &veth.0).unwrap();
        assert!(has_clsact(&veth.0));
        let pending = store.pending().unwrap();
        assert_eq!(pending.len(), 1, "one entry per device: {pending:?}");
        assert_eq!(pending[0].change.old_value, "", "ours: the undo deletes it");
        devices.release_clsact(&store, &ns, &veth.0).unwrap();
        assert!(has_clsact(&veth.0), "still used by the second fault");
        devices.release_clsact(&store, &ns, &veth.0).unwrap();
        assert!(!has_clsact(&veth.0));
        assert!(store.pending().unwrap().is_empty());
    }
    // Added by us, then "the daemon dies": the next start removes it.
    {
        let store = journal(&dir.0);
        let mut devices = Devices::default();
        devices.acquire_clsact(&store, "a", &ns, &veth.0).unwrap();
        std::mem::forget(devices);
    }
    let store = journal(&dir.0);
    assert_eq!(undo_pending(&store).unwrap().undone.len(), 1);
    assert!(!has_clsact(&veth.0), "removed after the crash");
    // There before us: journaled as present, left in place by release and by the crash undo.
    run("tc", &["qdisc", "add", "dev", &veth.0, "clsact"]);
    let mut devices = Devices::default();
    devices.acquire_clsact(&store, "a", &ns, &veth.0).unwrap();
    assert_eq!(store.pending().unwrap()[0].change.old_value, "present");
    devices.release_clsact(&store, &ns, &veth.0).unwrap();
    assert!(has_clsact(&veth.0), "not ours to remove");
    devices.acquire_clsact(&store, "a", &ns, &veth.0).unwrap();
    std::mem::forget(devices);
    assert_eq!(undo_pending(&store).unwrap().undone.len(), 1);
    assert!(
        has_clsact(&veth.0),
        "not ours to remove, after a crash either"
    );
}

#[test]
fn journaled_root_qdiscs_are_restored_after_a_crash() {
    let Some(_) = kernel() else { return };
    let dir = TempDir::new("lat-journal");
    let veth = Veth::new("j");
    let default_root = veth.root();
    assert!(default_root.contains("noqueue"), "{default_root}");
    let mut sock = Socket::open().unwrap();
    let ifindex = veth.ifindex();

    // A configured root with options: pfifo limit 77, replaced by a stand-in for fq (bfifo,
    // which this host has), then "the daemon dies" before restoring.
    veth.tc(&["pfifo", "limit", "77"]);
    let configured = veth.root();
    {
        let store = journal(&dir.0);
        let saved = qdisc::root(&mut sock, ifindex).unwrap().unwrap();
        assert_eq!(saved.kind, "pfifo");
        assert_eq!(Qdisc::decode(&saved.encode()).unwrap(), saved);
        store
            .record("crashed", &qdisc_change(&veth.0, &saved))
            .unwrap();
        qdisc::replace_root(&mut sock, ifindex, "bfifo", 0, &5000u32.to_ne_bytes()).unwrap();
        assert!(veth.root().contains("bfifo"), "{}", veth.root());
    }
    let store = journal(&dir.0);
    assert_eq!(undo_pending(&store).unwrap().undone.len(), 1);
    assert_eq!(veth.root(), configured, "pfifo limit 77 is back");
    assert!(store.pending().unwrap().is_empty());
    assert_eq!(
        undo_pending(&store).unwrap().undone.len(),
        0,
        "restoring twice does nothing"
    );

    // The kernel default (noqueue on veth): restoring deletes the replacement.
    run("tc", &["qdisc", "del", "dev", &veth.0, "root"]);
    assert_eq!(veth.root(), default_root);
    let saved = qdisc::root(&mut sock, ifindex)
        .unwrap()
        .unwrap_or_else(Qdisc::noqueue);
    assert!(saved.is_default(), "{saved:?}");
    store
        .record("crashed", &qdisc_change(&veth.0, &saved))
        .unwrap();
    qdisc::replace_root(&mut sock, ifindex, "pfifo", 0, &10u32.to_ne_bytes()).unwrap();
    assert!(veth.root().contains("pfifo"));
    // A clsact the daemon added is journaled as such and removed.
    assert!(qdisc::add_clsact(&mut sock, ifindex).unwrap());
    assert!(
        !qdisc::add_clsact(&mut sock, ifindex).unwrap(),
        "already there"
    );
    let clsact = HostChange {
        kind: ChangeKind::Clsact,
        path: device_path(&own(), &veth.0),
        old_value: String::new(),
    };
    store.record("crashed", &clsact).unwrap();
    assert_eq!(undo_pending(&store).unwrap().undone.len(), 2);
    assert_eq!(veth.root(), default_root);
    assert!(!has_clsact(&veth.0));

    // A journaled device that is gone has nothing to restore: the entry counts as undone.
    let gone = HostChange {
        kind: ChangeKind::Qdisc,
        path: device_path(&own(), "gone-dev0"),
        old_value: "pfifo 0 ".into(),
    };
    store.record("crashed", &gone).unwrap();
    let report = undo_pending(&store).unwrap();
    assert_eq!((report.undone.len(), report.failed.len()), (1, 0));
    assert!(store.pending().unwrap().is_empty());
}

#[test]
fn devices_in_another_network_namespace_are_changed_and_restored_there() {
    let Some(_) = kernel() else { return };
    if !without_fq() {
        return;
    }
    let other = OtherNetns::new("n");
    let ns = other.netns();
    assert!(!ns.is_own() && ns != own());
    // Work runs inside: the device is found there, not here.
    assert!(ns.run(|| Veth::index_of(&other.dev)).unwrap().is_some());
    assert!(
        Veth::index_of(&other.dev).is_none(),
        "not in the test's namespace"
    );
    assert_eq!(
        ns.run(|| std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()))
            .unwrap()
            .unwrap(),
        ns.inode
    );
    other.ip(&["link", "set", "lo", "up"]);
    run(
        "ip",
        &[
            "netns",
            "exec",
            &other.name,
            "tc",
            "qdisc",
            "replace",
            "dev",
            &other.dev,
            "root",
            "pfifo",
            "limit",
            "77",
        ],
    );
    let configured = other.root();

    // fq is missing here, so acquiring fails *inside* the namespace and leaves it as it was.
    let dir = TempDir::new("lat-netns");
    let store = journal(&dir.0);
    let mut devices = Devices::default();
    let err = devices
        .acquire(&store, "t", &ns, &other.dev, Duration::from_millis(100))
        .expect_err("no fq here");
    assert!(matches!(err, DeviceError::Netlink { .. }), "{err}");
    assert_eq!(other.root(), configured);
    assert!(store.pending().unwrap().is_empty());
    let err = devices
        .acquire(&store, "t", &ns, &other.outside, Duration::from_millis(1))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("fault.interface: \"{}\"", other.outside))
            && msg.contains(&format!("network namespace net:[{}]", ns.inode)),
        "{msg}"
    );

    // A crashed daemon's change inside the namespace: journaled by namespace and name,
    // restored there by the next start.
    let path = device_path(&ns, &other.dev);
    assert_eq!(
        path,
        format!("net:[{}:{}]/{}", ns.inode, ns.cookie, other.dev)
    );
    assert_ne!(ns.cookie, own().cookie);
    // A netlink socket opened inside stays bound to the namespace.
    let (mut sock, ifindex) = ns
        .run(|| (Socket::open().unwrap(), Veth::index_of(&other.dev).unwrap()))
        .unwrap();
    let saved = qdisc::root(&mut sock, ifindex).unwrap().unwrap();
    let change = HostChange {
        kind: ChangeKind::Qdisc,
        path: path.clone(),
        old_value: saved.encode(),
    };
    store.record("crashed", &change).unwrap();
    qdisc::replace_root(&mut sock, ifindex, "bfifo", 0, &5000u32.to_ne_bytes()).unwrap();
    assert!(other.root().contains("bfifo"), "{}", other.root());
    assert_eq!(undo_pending(&store).unwrap().undone.len(), 1);
    assert_eq!(other.root(), configured, "pfifo limit 77 is back inside");

    // A namespace that is gone took its devices with it: nothing to restore.
    let (inode, cookie) = (ns.inode, ns.cookie);
    assert_eq!(Netns::find(inode, cookie), Some(ns.clone()));
    drop(ns);
    drop(other);
    assert!(Netns::find(inode, cookie).is_none());
    let change = HostChange {
        kind: ChangeKind::Qdisc,
        path: format!("net:[{inode}:{cookie}]/gone0"),
        old_value: "pfifo 0 ".into(),
    };
    store.record("crashed", &change).unwrap();
    let report = undo_pending(&store).unwrap();
    assert_eq!((report.undone.len(), report.failed.len()), (1, 0));
}

#[test]
fn max_latency_from_the_config_is_enforced_at_start() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("lat-max");
    let cg = TestCgroup::new(&mount, "lat-max");
    let mut config = ChaosConfig::default();
    config.experiments.network_latency.max_latency_ms = 50;
    let manager = Manager::new(
        engine(&mount),
        Store::open(&dir.0).unwrap(),
        config,
        Arc::new(SystemClock),
    )
    .unwrap();
    let plan = |fault: Fault| manager.plan(&spec(cg.target(), fault, 1.0));
    // Uniform: the worst case is latency + jitter.
    let err = plan(delay(45, 10, Distribution::Uniform, "lo"))
        .err()
        .expect("55 ms worst case over a 50 ms limit");
    assert!(
        matches!(err, ExperimentError::Refused(Refusal::Limit(_))),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "fault.latency: 45ms (latency + jitter = 55 ms) is not allowed; expected a worst-case \
         delay of at most 50 ms (experiments.network_latency.max_latency_ms)"
    );
    // Normal: the kernel's sample reaches latency + 6 x jitter, so 40 ± 2 ms is 52 ms.
    let err = plan(delay(40, 2, Distribution::Normal, "lo"))
        .err()
        .expect("52 ms worst case over a 50 ms limit");
    assert!(
        err.to_string()
            .contains("latency + 6 x jitter (normal) = 52 ms"),
        "{err}"
    );
    // Within the limit the config admits it; what refuses it here is the kernel (no sch_fq).
    match plan(delay(40, 2, Distribution::Uniform, "lo")) {
        Ok(planned) => assert_eq!(planned.plan.target_text(), cg.path.display().to_string()),
        Err(ExperimentError::Engine(EngineError::Unsupported { kind, reason })) => {
            assert_eq!(kind, ExperimentType::NetworkLatency);
            assert!(reason.contains("sch_fq"), "{reason}");
        }
        Err(e) => panic!("admitted, then refused for another reason: {e}"),
    }
}

#[test]
fn the_delay_and_rate_programs_load_attach_to_a_device_and_detach() {
    let Some(_) = kernel() else { return };
    let veth = Veth::new("p");
    let (mut kernel, _slots) = Kernel::load().unwrap();
    let cfg = TcConfig {
        delay_ns: 20_000_000,
        jitter_ns: 1_000_000,
        target_count: 1,
        targets: {
            let mut targets = [TcTarget::default(); MAX_TARGETS as usize];
            targets[0] = TcTarget {
                cgroup_id: 1,
                level: 1,
                _pad: 0,
            };
            targets
        },
        distribution: DIST_NORMAL,
        ..TcConfig::default()
    };
    kernel.write_tc(3, &cfg).unwrap();
    let a = kernel
        .attach_tc_egress(TcProgram::Delay, 3, &veth.0)
        .unwrap();
    let b = kernel
        .attach_tc_egress(TcProgram::Delay, 4, &veth.0)
        .unwrap();
    assert_eq!(
        tc_egress_programs(&veth.0),
        ["lat_eg_3", "lat_eg_4"],
        "both slots chain"
    );
    a.detach().unwrap();
    assert_eq!(tc_egress_programs(&veth.0), ["lat_eg_4"]);
    drop(b);
    assert!(tc_egress_programs(&veth.0).is_empty(), "dropping detaches");
    // The bandwidth limiter's program passes this kernel's verifier too (the daemon loads it
    // only where fq exists, so its capability probe never does here).
    let rate = kernel
        .attach_tc_egress(TcProgram::Rate, 5, &veth.0)
        .unwrap();
    assert_eq!(tc_egress_programs(&veth.0), ["rate_eg_5"]);
    rate.detach().unwrap();
    assert!(tc_egress_programs(&veth.0).is_empty());
}

#[test]
fn chaos_ctl_gets_the_refusal_for_a_start_and_a_dry_run() {
    let Some(mount) = kernel() else { return };
    if !without_fq() {
        return;
    }
    let dir = TempDir::new("lat-ctl");
    let cg = TestCgroup::new(&mount, "lat-ctl");
    let veth = Veth::new("c");
    let before = veth.root();
    let daemon = Daemon::start(&dir.0);
    let cgroup = cg.path.display().to_string();
    let latency = [
        "network_latency",
        "--latency-ms",
        "20",
        "--jitter-ms",
        "2",
        "--distribution",
        "normal",
    ];
    // The bandwidth limit is paced by fq too.
    let bandwidth = ["bandwidth_limit", "--rate", "1mbit", "--burst", "32kb"];
    for (kind, settings) in [
        ("network_latency", &latency[..]),
        ("bandwidth_limit", &bandwidth),
    ] {
        for dry in [true, false] {
            let mut args = vec!["experiment", settings[0], "--cgroup", &cgroup];
            args.extend_from_slice(&settings[1..]);
            args.extend(["--interface", &veth.0]);
            if dry {
                args.push("--dry-run");
            }
            let out = daemon.ctl(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{kind}, dry run {dry}: accepted");
            assert!(
                stderr.contains(&format!(
                    "{kind} is not supported on this node: sch_fq not available"
                )) && stderr.contains("FailedPrecondition"),
                "{kind}, dry run {dry}: {stderr}"
            );
        }
    }
    assert_eq!(veth.root(), before);
    assert!(tc_egress_programs(&veth.0).is_empty());
    let caps = daemon.ctl_ok(&["capabilities"]);
    for kind in ["network_latency ", "bandwidth_limit "] {
        let line = caps
            .lines()
            .find(|l| l.trim_start().starts_with(kind))
            .unwrap_or_default();
        assert!(line.contains("sch_fq not available"), "{kind}: {caps}");
    }
    let list = daemon.ctl_ok(&["status", "--output", "json"]);
    assert!(
        !list.contains("latency"),
        "nothing recorded as running: {list}"
    );
}

/// A target with no process has no network namespace of its own to read: without
/// `--interface` the fq-paced faults are refused (the daemon's own default-route device is the
/// node's main interface), with one the device is looked up in the daemon's namespace; once a
/// process runs in the cgroup, its namespace is used.
#[test]
fn a_target_without_processes_needs_a_named_device() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lat-empty");
    let resolver = Resolver::new(mount.clone()).unwrap();
    let target = resolver.resolve(&cg.target().kind).unwrap();
    let unnamed = chaos_daemon::fault::latency::plan(
        &NetworkLatency {
            latency: Duration::from_millis(20),
            jitter: Duration::ZERO,
            distribution: Distribution::Uniform,
            interface: None,
        },
        None,
    );
    let err = chaos_daemon::net::latency::resolve(unnamed.clone(), &target).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("fault.interface: none given and the target")
            && text.contains("has no process")
            && text.contains("--interface"),
        "{text}"
    );
    let named = chaos_daemon::fault::LatencyPlan {
        interface: Some("lo".into()),
        ..unnamed.clone()
    };
    let resolved = chaos_daemon::net::latency::resolve(named, &target).unwrap();
    assert_eq!(resolved.interface, "lo");
    assert_eq!(
        resolved.netns,
        Netns::own().unwrap(),
        "the daemon's namespace"
    );
    // With a process in the cgroup (in this namespace), its namespace and default route.
    let mut child = Command::new("sleep");
    child.arg("30");
    start_in_cgroup(&mut child, &cg.path);
    let mut child = child.spawn().unwrap();
    let found = chaos_daemon::net::latency::resolve(unnamed, &target);
    let _ = (child.kill(), child.wait());
    match found {
        Ok(resolved) => assert_eq!(resolved.netns, Netns::own().unwrap()),
        // A host without an IPv4 default route says so, naming the namespace it looked in.
        Err(e) => assert!(e.to_string().contains("no IPv4 default route"), "{e}"),
    }
}
