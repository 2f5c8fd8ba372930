//! Experiment definitions: every example in `chaos/experiments` parses and converts to the
//! proto, and broken variants fail with the exact path of the offending key.

mod common;

use common::{experiment_rejected_at as assert_rejected_at, parse};

use std::time::Duration;

use chaos_api::error::ModelError;
use chaos_api::experiment::{
    ApiError, Direction, EgressDrop, Errno, Experiment, ExperimentType, Fault, MAX_TARGETS,
    PortRange, Protocol, SocketCall, Target, TargetKind,
};
use chaos_api::proto;

const PACKET_LOSS: &str = include_str!("../../chaos/experiments/packet-loss.yaml");
const DEPENDENCY_FAILURE: &str = include_str!("../../chaos/experiments/dependency-failure.yaml");
const API_ERROR_INJECTION: &str = include_str!("../../chaos/experiments/api-error-injection.yaml");

/// The smallest valid definition; the broken variants below edit it.
const MINIMAL: &str = "\
name: checkout-db-refused
type: dependency_failure
target:
  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f
duration: 5m
intensity: 0.25
";

/// `MINIMAL` with `from` replaced by `to` (which must occur exactly once).
fn minimal_with(from: &str, to: &str) -> String {
    assert_eq!(MINIMAL.matches(from).count(), 1, "{from:?} must occur once");
    MINIMAL.replace(from, to)
}

#[test]
fn every_example_file_parses_and_converts() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../chaos/experiments");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("chaos/experiments exists") {
        let path = entry.expect("readable directory").path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            let text = std::fs::read_to_string(&path).expect("readable file");
            let experiment = match Experiment::from_yaml(&text) {
                Ok(experiment) => experiment,
                Err(error) => panic!("{}: {error}", path.display()),
            };
            let spec = experiment.to_proto();
            assert_eq!(spec.name, experiment.name);
            assert!(spec.target.is_some() || !spec.targets.is_empty());
            assert!(spec.fault.is_some());
            let back = Experiment::from_proto(&spec).expect("reads back");
            assert_eq!(back.targets, experiment.targets);
            seen += 1;
        }
    }
    assert!(
        seen >= ExperimentType::ALL.len(),
        "expected one example per type, found {seen}"
    );
}

#[test]
fn packet_loss_example_to_proto() {
    let experiment = parse(PACKET_LOSS);
    assert_eq!(experiment.kind(), ExperimentType::PacketLoss);
    assert!(!experiment.dry_run);
    assert_eq!(
        experiment.filter.ports,
        Some(PortRange {
            low: 5432,
            high: 5432
        })
    );
    let spec = experiment.to_proto();
    let expected = proto::ExperimentSpec {
        targets: Vec::new(),
        name: "orders-db-packet-loss".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Cgroup(
                "/system.slice/orders.service".to_owned(),
            )),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(proto::fault::Kind::PacketLoss(proto::PacketLoss {
                direction: "both".to_owned(),
                egress_drop: "silent".to_owned(),
            })),
        }),
        intensity: Some(0.05),
        duration_ms: 600_000,
        max_faults: Some(50_000),
        filter: Some(proto::NetFilter {
            protocol: "tcp".to_owned(),
            ports: "5432".to_owned(),
            cidrs: vec!["10.0.0.0/8".to_owned()],
        }),
        budget: Some(20.0),
        guards: None,
        ramp: None,
        lease_ms: None,
    };
    assert_eq!(spec, expected);
}

#[test]
fn dependency_failure_example_to_proto() {
    let experiment = parse(DEPENDENCY_FAILURE);
    assert_eq!(
        experiment.targets[0],
        Target::new(TargetKind::PodUid(
            "8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f".to_owned()
        ))
    );
    let spec = experiment.to_proto();
    assert_eq!(spec.duration_ms, 300_000);
    assert_eq!(spec.intensity, Some(0.25));
    assert_eq!(spec.budget, Some(50.0));
    assert_eq!(spec.max_faults, Some(1000));
    assert_eq!(
        spec.fault,
        Some(proto::Fault {
            kind: Some(proto::fault::Kind::DependencyFailure(proto::SocketError {
                errno: "ECONNREFUSED".to_owned(),
                calls: vec!["connect".to_owned()],
                ..Default::default()
            })),
        })
    );
}

#[test]
fn api_error_injection_example_to_proto() {
    let experiment = parse(API_ERROR_INJECTION);
    assert_eq!(experiment.kind(), ExperimentType::ApiErrorInjection);
    assert!(experiment.dry_run);
    let spec = experiment.to_proto();
    assert_eq!(spec.max_faults, None);
    assert_eq!(spec.duration_ms, 900_000);
    let filter = spec.filter.expect("the example has a filter");
    assert_eq!(filter.ports, "8443-8444");
    assert!(filter.cidrs.is_empty());
    // The runtime prefix is dropped when the file is read: the proto carries the hex digits.
    let id = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";
    assert_eq!(
        experiment.targets[0],
        Target::new(TargetKind::ContainerId(id.to_owned()))
    );
    assert_eq!(
        spec.target.and_then(|t| t.kind),
        Some(proto::target::Kind::ContainerId(id.to_owned()))
    );
}

#[test]
fn defaults_per_type() {
    let experiment = parse(MINIMAL);
    assert_eq!(experiment.duration, Duration::from_secs(300));
    assert_eq!(experiment.budget, None);
    assert_eq!(experiment.max_faults, None);
    assert!(!experiment.dry_run);
    assert_eq!(experiment.filter.protocol, Protocol::Any);
    assert_eq!(
        experiment.to_proto().filter,
        None,
        "no filter means match all"
    );
    match &experiment.fault {
        Fault::DependencyFailure(error) => {
            assert_eq!(error.errno, Errno::ECONNREFUSED);
            assert_eq!(error.calls, [SocketCall::Connect]);
        }
        other => panic!("unexpected fault {other:?}"),
    }

    let api = parse(&minimal_with("dependency_failure", "api_error_injection"));
    match &api.fault {
        Fault::ApiErrorInjection(ApiError::Socket(error)) => {
            assert_eq!(error.errno, Errno::ECONNRESET);
            assert_eq!(error.calls, [SocketCall::Connect, SocketCall::Sendmsg]);
        }
        other => panic!("unexpected fault {other:?}"),
    }

    let loss = parse(&minimal_with("dependency_failure", "packet_loss"));
    match loss.fault {
        Fault::PacketLoss(loss) => {
            assert_eq!(loss.direction, Direction::Both);
            assert_eq!(loss.egress_drop, EgressDrop::Silent);
        }
        other => panic!("unexpected fault {other:?}"),
    }
}

#[test]
fn fault_before_type_and_scalar_forms() {
    let text = "\
fault: {errno: 111, calls: [connect, bind]}
filter: {ports: 8000-8100, cidrs: [10.1.2.3, 'fd00::/8']}
name: x1
target: {pid: 42}
type: dependency_failure
duration: 1h 30m
intensity: 1
";
    let experiment = parse(text);
    let spec = experiment.to_proto();
    assert_eq!(spec.duration_ms, 5_400_000);
    let filter = spec.filter.expect("filter set");
    assert_eq!(filter.protocol, "any");
    assert_eq!(filter.ports, "8000-8100");
    assert_eq!(filter.cidrs, ["10.1.2.3/32", "fd00::/8"]);
    // A number is read as the kernel's errno and sent by name.
    assert!(matches!(
        spec.fault.and_then(|f| f.kind),
        Some(proto::fault::Kind::DependencyFailure(e)) if e.errno == "ECONNREFUSED"
    ));
    // The same ports written as a number.
    let text = minimal_with(
        "intensity: 0.25\n",
        "intensity: 0.25\nfilter: {ports: 5432}\n",
    );
    assert_eq!(
        parse(&text).filter.ports,
        Some(PortRange {
            low: 5432,
            high: 5432
        })
    );
}

#[test]
fn visible_egress_drop_maps_to_proto() {
    let text = minimal_with("dependency_failure", "packet_loss")
        + "fault:\n  direction: egress\n  egress_drop: visible\n";
    let spec = parse(&text).to_proto();
    assert_eq!(
        spec.fault.and_then(|f| f.kind),
        Some(proto::fault::Kind::PacketLoss(proto::PacketLoss {
            direction: "egress".to_owned(),
            egress_drop: "visible".to_owned(),
        }))
    );
}

#[test]
fn missing_target() {
    let text = minimal_with(
        "target:\n  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
        "",
    );
    let error = assert_rejected_at(&text, "target");
    assert_eq!(
        error.to_string(),
        "target: no target is not allowed; expected exactly one of cgroup, pid, container_id, \
         pod_uid (or a list of them in `targets`)"
    );
    assert_rejected_at(&minimal_with("name: checkout-db-refused\n", ""), "name");
}

#[test]
fn two_targets() {
    let text = minimal_with("target:\n", "target:\n  pid: 42\n");
    let error = assert_rejected_at(&text, "target");
    assert!(error.to_string().contains("pid and pod_uid"), "{error}");
    assert_rejected_at(
        &minimal_with(
            "target:\n  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
            "target: {}\n",
        ),
        "target",
    );
}

#[test]
fn bad_target_values() {
    let uid = "pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f";
    assert_rejected_at(&minimal_with(uid, "pod_uid: my-pod"), "target.pod_uid");
    assert_rejected_at(&minimal_with(uid, "pid: 0"), "target.pid");
    assert_rejected_at(&minimal_with(uid, "pid: -3"), "target.pid");
    assert_rejected_at(&minimal_with(uid, "cgroup: /sys/../etc"), "target.cgroup");
    assert_rejected_at(
        &minimal_with(uid, "container_id: xyz"),
        "target.container_id",
    );
    assert_rejected_at(&minimal_with(uid, "node: n1"), "target.node");
}

#[test]
fn intensity_out_of_range() {
    let error = assert_rejected_at(&minimal_with("0.25", "1.5"), "intensity");
    assert_eq!(
        error.to_string(),
        "intensity: 1.5 is not allowed; expected 0 to 1"
    );
}

#[test]
fn duration_out_of_range() {
    let error = assert_rejected_at(&minimal_with("5m", "0s"), "duration");
    assert_eq!(
        error.to_string(),
        "duration: 0s is not allowed; expected 1ms to 1day"
    );
    assert_rejected_at(&minimal_with("5m", "25h"), "duration");
    assert_rejected_at(&minimal_with("5m", "whenever"), "duration");
    assert_rejected_at(&minimal_with("5m", "300"), "duration");
}

#[test]
fn unknown_type() {
    let error = assert_rejected_at(&minimal_with("dependency_failure", "disk_fill"), "type");
    assert!(error.to_string().contains("packet_loss"), "{error}");
}

#[test]
fn empty_cidrs() {
    let text = minimal_with(
        "intensity: 0.25\n",
        "intensity: 0.25\nfilter:\n  cidrs: []\n",
    );
    assert_rejected_at(&text, "filter.cidrs");
    let nine = (1..=9)
        .map(|i| format!("10.{i}.0.0/16"))
        .collect::<Vec<_>>();
    let text = minimal_with(
        "intensity: 0.25\n",
        &format!("intensity: 0.25\nfilter:\n  cidrs: [{}]\n", nine.join(", ")),
    );
    assert_rejected_at(&text, "filter.cidrs");
    let text = minimal_with(
        "intensity: 0.25\n",
        "intensity: 0.25\nfilter:\n  cidrs: [10.0.0.0/8, 10.0.0.0/33]\n",
    );
    assert_rejected_at(&text, "filter.cidrs[1]");
}

#[test]
fn reversed_and_bad_ports() {
    let filter = |ports: &str| {
        minimal_with(
            "intensity: 0.25\n",
            &format!("intensity: 0.25\nfilter:\n  ports: {ports}\n"),
        )
    };
    let error = assert_rejected_at(&filter("\"90-80\""), "filter.ports");
    assert!(
        error
            .to_string()
            .starts_with("filter.ports: \"90-80\" is not allowed"),
        "{error}"
    );
    assert_rejected_at(&filter("\"0\""), "filter.ports");
    assert_rejected_at(&filter("70000"), "filter.ports");
    assert_rejected_at(&filter("http"), "filter.ports");
    let icmp = minimal_with(
        "intensity: 0.25\n",
        "intensity: 0.25\nfilter:\n  protocol: icmp\n  ports: 80\n",
    );
    assert_rejected_at(&icmp, "filter.ports");
}

#[test]
fn packet_loss_with_errno() {
    let text = minimal_with("dependency_failure", "packet_loss") + "fault:\n  errno: EIO\n";
    let error = assert_rejected_at(&text, "fault.errno");
    assert!(
        error.to_string().contains("unknown field `errno`"),
        "{error}"
    );
    let text = minimal_with("dependency_failure", "packet_loss") + "fault:\n  calls: [connect]\n";
    assert_rejected_at(&text, "fault.calls");
    let text = MINIMAL.to_owned() + "fault:\n  direction: ingress\n";
    assert_rejected_at(&text, "fault.direction");
    let text = MINIMAL.to_owned() + "fault:\n  retries: 3\n";
    assert_rejected_at(&text, "fault.retries");
}

#[test]
fn socket_with_ports() {
    let text = MINIMAL.to_owned() + "fault:\n  calls: [socket]\nfilter:\n  ports: \"5432\"\n";
    let error = assert_rejected_at(&text, "fault.calls");
    assert!(
        error.to_string().contains("socket() has no address"),
        "{error}"
    );
    // socket alone, or with a protocol filter, is fine.
    parse(&(MINIMAL.to_owned() + "fault:\n  calls: [socket]\nfilter:\n  protocol: udp\n"));
}

#[test]
fn bad_calls_and_errno() {
    let fault = |body: &str| MINIMAL.to_owned() + "fault:\n" + body;
    assert_rejected_at(&fault("  calls: []\n"), "fault.calls");
    assert_rejected_at(&fault("  calls: [connect, accept]\n"), "fault.calls[1]");
    assert_rejected_at(&fault("  calls: [connect, connect]\n"), "fault.calls[1]");
    assert_rejected_at(&fault("  errno: econnrefused\n"), "fault.errno");
    assert_rejected_at(&fault("  errno: 0\n"), "fault.errno");
    assert_rejected_at(&fault("  errno: 134\n"), "fault.errno");
    assert_rejected_at(&fault("  errno: -5\n"), "fault.errno");
    parse(&fault("  errno: 133\n"));
    parse(&fault("  errno: ETIMEDOUT\n"));
}

#[test]
fn visible_drop_needs_egress() {
    let text = minimal_with("dependency_failure", "packet_loss")
        + "fault:\n  direction: ingress\n  egress_drop: visible\n";
    assert_rejected_at(&text, "fault.egress_drop");
}

#[test]
fn bad_scalars() {
    assert_rejected_at(&minimal_with("checkout-db-refused", "Checkout_DB"), "name");
    assert_rejected_at(&minimal_with("checkout-db-refused", "-db"), "name");
    assert_rejected_at(&(MINIMAL.to_owned() + "budget: -1\n"), "budget");
    assert_rejected_at(&(MINIMAL.to_owned() + "max_faults: 0\n"), "max_faults");
    assert_rejected_at(&(MINIMAL.to_owned() + "dry_run: maybe\n"), "dry_run");
    assert_rejected_at(&(MINIMAL.to_owned() + "ramp: [0.1]\n"), "ramp");
}

#[test]
fn not_a_document() {
    for text in ["{", "\t", "- a list", "~"] {
        assert!(
            matches!(
                Experiment::from_yaml(text),
                Err(ModelError::Document { .. })
            ),
            "{text:?}"
        );
    }
    assert_rejected_at("", "name");
}

#[test]
fn errno_names_numbers_and_aliases() {
    let errno_of =
        |written: &str| match parse(&(MINIMAL.to_owned() + "fault:\n  errno: " + written + "\n"))
            .fault
        {
            Fault::DependencyFailure(error) => error.errno,
            other => panic!("unexpected fault {other:?}"),
        };
    assert_eq!(errno_of("ECONNREFUSED"), Errno::ECONNREFUSED);
    assert_eq!(errno_of("111"), Errno::ECONNREFUSED);
    assert_eq!(errno_of("\"111\""), Errno::ECONNREFUSED);
    assert_eq!(errno_of("104"), Errno::ECONNRESET);
    assert_eq!(errno_of("EIO"), Errno::EIO);
    // The kernel's aliases are the numbers of their main names.
    assert_eq!(errno_of("EWOULDBLOCK"), errno_of("EAGAIN"));
    assert_eq!(errno_of("EDEADLOCK").name(), "EDEADLK");
    assert_eq!(errno_of("ENOTSUP").number(), 95);
    assert_eq!(errno_of("133").name(), "EHWPOISON");

    // The API: new, from_name, parse, Display.
    assert_eq!(Errno::new(111), Some(Errno::ECONNREFUSED));
    assert_eq!(Errno::new(5), Some(Errno::EIO));
    for unused in [0, 41, 58, 134, 4095] {
        assert_eq!(Errno::new(unused), None, "{unused}");
    }
    assert_eq!(Errno::from_name("ECONNRESET"), Some(Errno::ECONNRESET));
    assert_eq!(Errno::from_name("ETIMEDOUT").map(Errno::number), Some(110));
    assert_eq!(Errno::from_name("EWHAT"), None);
    assert_eq!(Errno::from_name(""), None);
    assert_eq!(Errno::parse("ENOSPC").map(Errno::number), Ok(28));
    assert_eq!(Errno::ECONNREFUSED.to_string(), "ECONNREFUSED");
    assert_eq!(Errno::ECONNRESET.to_string(), "ECONNRESET");
    assert_eq!(Errno::EIO.number(), 5);
    // Every number that has a name is read back from its name.
    for number in 1..=chaos_api::experiment::MAX_ERRNO {
        if let Some(errno) = Errno::new(number) {
            assert_eq!(Errno::parse(errno.name()), Ok(errno), "{number}");
            assert_eq!(Errno::parse(&number.to_string()), Ok(errno), "{number}");
        }
    }
}

#[test]
fn unknown_errno_names_are_refused_offline() {
    let fault = |errno: &str| MINIMAL.to_owned() + "fault:\n  errno: " + errno + "\n";
    let error = assert_rejected_at(&fault("EWHAT"), "fault.errno");
    assert!(
        error
            .to_string()
            .starts_with("fault.errno: \"EWHAT\" is not allowed; expected a Linux errno name"),
        "{error}"
    );
    for bad in [
        "E",
        "Econnrefused",
        "41",
        "58",
        "''",
        "1.5",
        "ECONNREFUSED1",
    ] {
        assert_rejected_at(&fault(bad), "fault.errno");
    }
    let error = common::rejected_at(Errno::parse("EWHAT"), "fault.errno");
    assert!(matches!(error, ModelError::Invalid { .. }), "{error}");
}

#[test]
fn target_pod_name() {
    let named = |pod_name: &str| {
        minimal_with(
            "  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
            &format!("  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n  pod_name: {pod_name}\n"),
        )
    };
    let experiment = parse(&named("shop/frontend-7d9f8-abcde"));
    assert_eq!(
        experiment.targets[0],
        Target {
            kind: TargetKind::PodUid("8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f".to_owned()),
            pod_name: Some("shop/frontend-7d9f8-abcde".to_owned()),
        }
    );
    assert_eq!(experiment.targets[0].pod(), Some("frontend-7d9f8-abcde"));
    assert_eq!(
        experiment.targets[0].to_string(),
        "pod 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f (shop/frontend-7d9f8-abcde)"
    );
    assert_eq!(
        experiment.to_proto().target.map(|t| t.pod_name),
        Some("shop/frontend-7d9f8-abcde".to_owned())
    );
    parse(&named("kube-system/coredns.x-1"));
    // A pod name alone is not a target.
    let alone = minimal_with(
        "  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
        "  pod_name: shop/frontend\n",
    );
    assert_rejected_at(&alone, "target");
    for bad in [
        "frontend",
        "''",
        "/frontend",
        "shop/",
        "Shop/frontend",
        "shop/a/b",
        "a_b/c",
        "shop/-x",
    ] {
        let error = assert_rejected_at(&named(bad), "target.pod_name");
        assert!(error.to_string().contains("NAMESPACE/NAME"), "{error}");
    }
    assert_rejected_at(&named("[a, b]"), "target.pod_name");
    // No pod name: not given.
    assert_eq!(parse(MINIMAL).targets[0].pod_name, None);
    assert_eq!(parse(MINIMAL).targets[0].pod(), None);
}

#[test]
fn container_id_runtime_prefix_is_dropped() {
    let hex = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";
    let uid = "pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f";
    for written in [
        hex.to_owned(),
        format!("containerd://{hex}"),
        format!("docker://{hex}"),
        format!("cri-o://{hex}"),
    ] {
        let experiment = parse(&minimal_with(uid, &format!("container_id: {written}")));
        assert_eq!(
            experiment.targets[0],
            Target::new(TargetKind::ContainerId(hex.to_owned())),
            "{written}"
        );
    }
    assert_eq!(
        TargetKind::container(&format!("containerd://{hex}")),
        TargetKind::ContainerId(hex.to_owned())
    );
    assert_eq!(
        TargetKind::container(hex),
        TargetKind::ContainerId(hex.to_owned())
    );
    // What follows the prefix is still checked.
    assert_rejected_at(
        &minimal_with(uid, "container_id: containerd://xyz"),
        "target.container_id",
    );
    assert_rejected_at(
        &minimal_with(uid, "container_id: containerd://"),
        "target.container_id",
    );
    assert_rejected_at(
        &minimal_with(
            uid,
            &format!("container_id: containerd://{}", hex.to_uppercase()),
        ),
        "target.container_id",
    );
}

#[test]
fn duration_in_whole_milliseconds() {
    // The proto carries milliseconds: a finer duration would not arrive as validated.
    let error = assert_rejected_at(&minimal_with("5m", "1500us"), "duration");
    assert_eq!(
        error.to_string(),
        "duration: 1ms 500us is not allowed; expected whole milliseconds"
    );
    assert_rejected_at(&minimal_with("5m", "1s 1ns"), "duration");
    assert_eq!(
        parse(&minimal_with("5m", "1500ms")).duration,
        Duration::from_millis(1500)
    );
}

#[test]
fn every_duration_the_proto_carries_is_whole_milliseconds() {
    // Found by fuzz_yaml: `for: 1500us` arrived at the daemon as 1ms.
    let guarded = format!(
        "{MINIMAL}lease: 30s\nramp:\n  steps: [0.25, 0.5]\n  hold: 2m\nguards:\n  \
         slos:\n    errors:\n      query: 'up'\n      objective: '>= 1'\n      for: 5s\n  \
         interval: 500ms\n  baseline: 1m\n"
    );
    let experiment = parse(&guarded);
    assert_eq!(
        Experiment::from_proto(&experiment.to_proto()),
        Ok(experiment)
    );
    for (from, to, path) in [
        ("lease: 30s", "lease: 30s 1500us", "lease"),
        ("hold: 2m", "hold: 2m 1500us", "ramp.hold"),
        ("for: 5s", "for: 1500us", "guards.slos.errors.for"),
        ("interval: 500ms", "interval: 500ms 1us", "guards.interval"),
        ("baseline: 1m", "baseline: 1m 1ns", "guards.baseline"),
    ] {
        assert_eq!(guarded.matches(from).count(), 1, "{from}");
        let error = assert_rejected_at(&guarded.replace(from, to), path);
        assert!(
            error.to_string().ends_with("expected whole milliseconds"),
            "{error}"
        );
    }
}

#[test]
fn duration_defaults_to_a_minute() {
    let text = MINIMAL.replace("duration: 5m\n", "");
    assert_eq!(
        parse(&text).duration,
        chaos_api::experiment::DEFAULT_DURATION
    );
    assert_eq!(
        chaos_api::experiment::DEFAULT_DURATION,
        Duration::from_secs(60)
    );
}

#[test]
fn a_list_of_targets_is_one_experiment_over_all_of_them() {
    let uids = [
        "8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f",
        "0b6f1c2d-3e4a-4b5c-8d9e-0f1a2b3c4d5e",
    ];
    let list = format!(
        "targets:\n  - pod_uid: {}\n    pod_name: shop/a\n  - pod_uid: {}\n  - cgroup: /x.slice\n",
        uids[0], uids[1]
    );
    let experiment = parse(&minimal_with(
        "target:\n  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
        &list,
    ));
    assert_eq!(
        experiment.targets,
        vec![
            Target {
                kind: TargetKind::PodUid(uids[0].to_owned()),
                pod_name: Some("shop/a".to_owned()),
            },
            Target::new(TargetKind::PodUid(uids[1].to_owned())),
            Target::new(TargetKind::Cgroup("/x.slice".to_owned())),
        ]
    );
    // The wire carries the list in `targets`, and reads it back the same.
    let spec = experiment.to_proto();
    assert!(spec.target.is_none());
    assert_eq!(spec.targets.len(), 3);
    assert_eq!(Experiment::from_proto(&spec).expect("valid"), experiment);
    // One target keeps travelling in `target`.
    let one = parse(MINIMAL).to_proto();
    assert!(one.target.is_some() && one.targets.is_empty());

    // Errors name the entry.
    let bad = list.replace("cgroup: /x.slice", "cgroup: /a/../b");
    let text = minimal_with(
        "target:\n  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
        &bad,
    );
    assert_rejected_at(&text, "targets[2].cgroup");
    let twice = format!("targets:\n  - pod_uid: {0}\n  - pod_uid: {0}\n", uids[0]);
    let text = minimal_with(
        "target:\n  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
        &twice,
    );
    let error = assert_rejected_at(&text, "targets[1]");
    assert!(error.to_string().contains("each target once"), "{error}");
    // Both keys, or an empty list, are refused.
    let both = format!("{list}target:\n  pid: 1\n");
    let text = minimal_with(
        "target:\n  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
        &both,
    );
    assert_rejected_at(&text, "target");
    let text = minimal_with(
        "target:\n  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
        "targets: []\n",
    );
    assert_rejected_at(&text, "target");
}

#[test]
fn more_targets_than_a_node_takes_are_refused_with_the_limit() {
    let list: String = (1..=MAX_TARGETS + 1)
        .map(|i| format!("  - cgroup: /pods/p{i}\n"))
        .collect();
    let text = minimal_with(
        "target:\n  pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f\n",
        &format!("targets:\n{list}"),
    );
    let error = assert_rejected_at(&text, "targets");
    assert_eq!(
        error.to_string(),
        format!(
            "targets: {} targets is not allowed; expected at most {MAX_TARGETS} targets in one \
             experiment on one node (choose fewer pods, e.g. chaos-ctl --max-pods)",
            MAX_TARGETS + 1
        )
    );
    // The same through the wire.
    let mut spec = parse(MINIMAL).to_proto();
    let one = spec.target.take().expect("one target");
    spec.targets = (0..=MAX_TARGETS)
        .map(|i| proto::Target {
            kind: Some(proto::target::Kind::Pid(i as u32 + 1)),
            ..one.clone()
        })
        .collect();
    let error = Experiment::from_proto(&spec).expect_err("too many");
    assert_eq!(error.path(), Some("targets"));
    spec.targets.truncate(MAX_TARGETS);
    assert_eq!(
        Experiment::from_proto(&spec)
            .expect("16 targets")
            .targets
            .len(),
        MAX_TARGETS
    );
    spec.target = Some(one);
    assert_eq!(
        Experiment::from_proto(&spec).expect_err("both").path(),
        Some("target")
    );
}
