//! Experiment definitions of the host faults (`pod_deletion`, `resource_exhaustion`): the
//! examples convert to the proto the daemon runs, the per-type defaults (intensity 1, kill once,
//! the config's shares), and every rejection names its path.

mod common;

use common::{experiment_rejected_at as rejected_at, parse};

use std::time::Duration;

use chaos_api::error::ModelError;
use chaos_api::experiment::{
    ExperimentType, Fault, NetFilter, PodDeletion, Protocol, ResourceExhaustion,
};
use chaos_api::proto;

const POD_DELETION: &str = include_str!("../../chaos/experiments/pod-deletion.yaml");
const RESOURCE_EXHAUSTION: &str = include_str!("../../chaos/experiments/resource-exhaustion.yaml");

/// The smallest valid pod deletion: no intensity, no fault settings.
const KILL: &str = "\
name: kill-once
type: pod_deletion
target:
  pid: 4242
duration: 1m
";

/// The smallest valid resource exhaustion.
const SQUEEZE: &str = "\
name: squeeze
type: resource_exhaustion
target:
  cgroup: /system.slice/reports.service
duration: 1m
";

fn kill_with(extra: &str) -> String {
    format!("{KILL}{extra}")
}

fn squeeze_with(extra: &str) -> String {
    format!("{SQUEEZE}{extra}")
}

#[test]
fn pod_deletion_example_to_proto() {
    let experiment = parse(POD_DELETION);
    assert_eq!(experiment.kind(), ExperimentType::PodDeletion);
    assert!(experiment.kind().is_host());
    assert_eq!(
        experiment.fault,
        Fault::PodDeletion(PodDeletion {
            interval: Some(Duration::from_secs(120))
        })
    );
    let expected = proto::ExperimentSpec {
        targets: Vec::new(),
        name: "frontend-pod-kill".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::PodUid(
                "0b6f1c2d-3e4a-4b5c-8d9e-0f1a2b3c4d5e".to_owned(),
            )),
            pod_name: "shop/frontend-7d9f8-abcde".to_owned(),
        }),
        fault: Some(proto::Fault {
            kind: Some(proto::fault::Kind::PodDeletion(proto::PodDeletion {
                interval_ms: 120_000,
            })),
        }),
        intensity: Some(1.0),
        duration_ms: 600_000,
        max_faults: Some(2),
        filter: None,
        budget: Some(100.0),
        guards: None,
        ramp: None,
        lease_ms: None,
    };
    assert_eq!(experiment.to_proto(), expected);
}

#[test]
fn resource_exhaustion_example_to_proto() {
    let experiment = parse(RESOURCE_EXHAUSTION);
    assert_eq!(experiment.kind(), ExperimentType::ResourceExhaustion);
    let expected = proto::ExperimentSpec {
        targets: Vec::new(),
        name: "reports-cpu-memory-squeeze".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Cgroup(
                "/system.slice/reports.service".to_owned(),
            )),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(proto::fault::Kind::ResourceExhaustion(
                proto::ResourceExhaustion {
                    cpu_share: Some(0.3),
                    memory_share: Some(0.8),
                },
            )),
        }),
        intensity: Some(1.0),
        duration_ms: 900_000,
        max_faults: None,
        filter: None,
        budget: Some(5.0),
        guards: None,
        ramp: None,
        lease_ms: None,
    };
    assert_eq!(experiment.to_proto(), expected);
}

#[test]
fn host_defaults() {
    let kill = parse(KILL);
    assert_eq!(
        kill.intensity, 1.0,
        "intensity defaults to 1 for pod_deletion"
    );
    assert_eq!(
        kill.fault,
        Fault::PodDeletion(PodDeletion { interval: None })
    );
    let spec = kill.to_proto();
    assert_eq!(spec.intensity, Some(1.0));
    assert_eq!(
        spec.fault.and_then(|f| f.kind),
        Some(proto::fault::Kind::PodDeletion(proto::PodDeletion {
            interval_ms: 0
        })),
        "no interval: kill once"
    );
    assert_eq!(spec.filter, None);

    let squeeze = parse(SQUEEZE);
    assert_eq!(squeeze.intensity, 1.0);
    assert_eq!(
        squeeze.fault,
        Fault::ResourceExhaustion(ResourceExhaustion::default())
    );
    assert_eq!(
        squeeze.to_proto().fault.and_then(|f| f.kind),
        Some(proto::fault::Kind::ResourceExhaustion(
            proto::ResourceExhaustion {
                cpu_share: None,
                memory_share: None,
            }
        )),
        "neither share: the daemon's config decides"
    );
    // One share alone stays alone.
    let cpu_only = parse(&squeeze_with("fault: {cpu_share: 1}\n"));
    assert_eq!(
        cpu_only.fault,
        Fault::ResourceExhaustion(ResourceExhaustion {
            cpu_share: Some(1.0),
            memory_share: None,
        })
    );
}

#[test]
fn pod_deletion_intensity_is_the_kill_probability() {
    let spec = parse(&kill_with("intensity: 0.5\nfault: {interval: 100ms}\n")).to_proto();
    assert_eq!(spec.intensity, Some(0.5));
    assert_eq!(
        spec.fault.and_then(|f| f.kind),
        Some(proto::fault::Kind::PodDeletion(proto::PodDeletion {
            interval_ms: 100
        }))
    );
    rejected_at(&kill_with("intensity: 1.5\n"), "intensity");
}

#[test]
fn intensity_stays_required_for_the_other_types() {
    for kind in [
        "packet_loss",
        "dependency_failure",
        "api_error_injection",
        "syscall_error",
    ] {
        let error = rejected_at(&KILL.replace("pod_deletion", kind), "intensity");
        let shown = error.to_string();
        assert!(
            shown.contains("required field is missing") && shown.contains(kind),
            "{kind}: {error}"
        );
    }
}

#[test]
fn bad_intervals() {
    let interval = |value: &str| kill_with(&format!("fault:\n  interval: {value}\n"));
    let error = rejected_at(&interval("50ms"), "fault.interval");
    assert_eq!(
        error.to_string(),
        "fault.interval: 50ms is not allowed; expected 100ms to 1day (omit it to kill once)"
    );
    rejected_at(&interval("0s"), "fault.interval");
    rejected_at(&interval("25h"), "fault.interval");
    rejected_at(&interval("soon"), "fault.interval");
    rejected_at(&interval("30"), "fault.interval");
    rejected_at(&interval("~"), "fault.interval");
    parse(&interval("100ms"));
    parse(&interval("24h"));
}

#[test]
fn bad_shares() {
    for (key, value) in [
        ("cpu_share", "0"),
        ("cpu_share", "-0.1"),
        ("cpu_share", "1.5"),
        ("cpu_share", ".nan"),
        ("memory_share", "0"),
        ("memory_share", "1.01"),
        ("memory_share", ".inf"),
    ] {
        let text = squeeze_with(&format!("fault:\n  {key}: {value}\n"));
        let error = rejected_at(&text, &format!("fault.{key}"));
        assert!(
            matches!(error, ModelError::Invalid { .. })
                && error.to_string().contains("more than 0 and at most 1"),
            "{error}"
        );
    }
    let error = rejected_at(
        &squeeze_with("fault: {cpu_share: half}\n"),
        "fault.cpu_share",
    );
    assert!(matches!(error, ModelError::Parse { .. }), "{error}");
    parse(&squeeze_with("fault: {cpu_share: 1, memory_share: 0.01}\n"));
}

#[test]
fn resource_exhaustion_intensity_must_be_one() {
    let error = rejected_at(&squeeze_with("intensity: 0.5\n"), "intensity");
    assert!(error.to_string().contains("whole cgroup"), "{error}");
    rejected_at(&squeeze_with("intensity: 0\n"), "intensity");
    parse(&squeeze_with("intensity: 1.0\n"));
}

#[test]
fn no_filter_on_host_faults() {
    let error = rejected_at(&kill_with("filter:\n  protocol: tcp\n"), "filter");
    assert!(
        error.to_string().contains("no filter for pod_deletion"),
        "{error}"
    );
    // Even a filter that matches everything: it can only be a mistake.
    rejected_at(&squeeze_with("filter: {}\n"), "filter");
    rejected_at(&squeeze_with("filter:\n  protocol: any\n"), "filter");
    // The model's own check, for experiments built in code.
    let mut experiment = parse(KILL);
    experiment.filter = NetFilter {
        protocol: Protocol::Udp,
        ..NetFilter::default()
    };
    common::rejected_at(experiment.validate(), "filter");
}

#[test]
fn fault_keys_of_other_types() {
    let error = rejected_at(&kill_with("fault:\n  errno: EIO\n"), "fault.errno");
    assert_eq!(
        error.to_string(),
        "fault.errno: unknown field `errno` for type pod_deletion, expected `interval`"
    );
    rejected_at(&kill_with("fault:\n  cpu_share: 0.5\n"), "fault.cpu_share");
    let error = rejected_at(&squeeze_with("fault:\n  interval: 1m\n"), "fault.interval");
    assert!(
        error
            .to_string()
            .ends_with("expected `cpu_share` or `memory_share`"),
        "{error}"
    );
    rejected_at(
        &squeeze_with("fault:\n  direction: egress\n"),
        "fault.direction",
    );
    let network = kill_with("intensity: 0.1\n");
    rejected_at(
        &(network.replace("pod_deletion", "packet_loss") + "fault:\n  memory_share: 0.5\n"),
        "fault.memory_share",
    );
    let error = rejected_at(
        &(network.replace("pod_deletion", "dependency_failure") + "fault:\n  interval: 1m\n"),
        "fault.interval",
    );
    assert!(
        error.to_string().ends_with("expected `errno` or `calls`"),
        "{error}"
    );
    rejected_at(&kill_with("fault:\n  signal: 9\n"), "fault.signal");
}

#[test]
fn interval_in_whole_milliseconds() {
    // The proto carries milliseconds: a finer interval would not arrive as validated.
    let error = rejected_at(
        &kill_with("fault:\n  interval: 150500us\n"),
        "fault.interval",
    );
    assert_eq!(
        error.to_string(),
        "fault.interval: 150ms 500us is not allowed; expected whole milliseconds"
    );
    assert_eq!(
        parse(&kill_with("fault:\n  interval: 150ms\n")).fault,
        Fault::PodDeletion(PodDeletion {
            interval: Some(Duration::from_millis(150))
        })
    );
}
