//! Experiment definitions of `network_latency`: the example converts to the proto the daemon
//! runs, the defaults (no jitter, uniform, the default route's device), and every rejection
//! names its path.

mod common;

use common::{experiment_rejected_at as rejected_at, parse};

use std::time::Duration;

use chaos_api::experiment::{Distribution, ExperimentType, Fault, NetworkLatency};
use chaos_api::proto;

const NETWORK_LATENCY: &str = include_str!("../../chaos/experiments/network-latency.yaml");

/// The smallest valid latency experiment: only the required keys.
const SLOW: &str = "\
name: slow
type: network_latency
target:
  pid: 4242
duration: 1m
intensity: 0.5
fault:
  latency: 50ms
";

/// `SLOW` with `extra` lines appended to its `fault`.
fn slow_with(extra: &str) -> String {
    format!("{SLOW}{extra}")
}

#[test]
fn network_latency_example_to_proto() {
    let experiment = parse(NETWORK_LATENCY);
    assert_eq!(experiment.kind(), ExperimentType::NetworkLatency);
    assert!(experiment.kind().takes_filter() && !experiment.kind().is_host());
    let expected = proto::ExperimentSpec {
        targets: Vec::new(),
        name: "checkout-slow-network".to_owned(),
        target: Some(proto::Target {
            // The runtime prefix is dropped when the file is read.
            kind: Some(proto::target::Kind::ContainerId(
                "9a8b7c6d5e4f30211f2e3d4c5b6a79881a2b3c4d5e6f708192a3b4c5d6e7f809".to_owned(),
            )),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(proto::fault::Kind::NetworkLatency(proto::NetworkLatency {
                latency_ms: 100,
                jitter_ms: 10,
                distribution: "normal".to_owned(),
                interface: "eth0".to_owned(),
            })),
        }),
        intensity: Some(1.0),
        duration_ms: 600_000,
        max_faults: None,
        filter: Some(proto::NetFilter {
            protocol: "tcp".to_owned(),
            ports: String::new(),
            cidrs: vec!["10.96.0.0/12".to_owned()],
        }),
        budget: Some(5.0),
        guards: None,
        ramp: None,
        lease_ms: None,
    };
    assert_eq!(experiment.to_proto(), expected);
}

#[test]
fn latency_defaults() {
    let experiment = parse(SLOW);
    assert_eq!(
        experiment.fault,
        Fault::NetworkLatency(NetworkLatency {
            latency: Duration::from_millis(50),
            jitter: Duration::ZERO,
            distribution: Distribution::Uniform,
            interface: None,
        })
    );
    let spec = experiment.to_proto();
    assert_eq!(spec.intensity, Some(0.5));
    assert_eq!(spec.filter, None);
    assert_eq!(
        spec.fault.and_then(|f| f.kind),
        Some(proto::fault::Kind::NetworkLatency(proto::NetworkLatency {
            latency_ms: 50,
            jitter_ms: 0,
            distribution: "uniform".to_owned(),
            interface: String::new(),
        })),
        "an empty interface means the default route's device"
    );
    // The edges: 1ms, 1 minute, jitter equal to the latency, a 15-character device.
    parse(&SLOW.replace("50ms", "1ms"));
    parse(&SLOW.replace("50ms", "1m"));
    parse(&slow_with("  jitter: 50ms\n  interface: abcdefghijklmno\n"));
}

#[test]
fn latency_is_required() {
    let error = rejected_at(
        &SLOW.replace("  latency: 50ms\n", "  jitter: 5ms\n"),
        "fault.latency",
    );
    assert!(
        error.to_string().contains("required field is missing"),
        "{error}"
    );
    rejected_at(
        &SLOW.replace("fault:\n  latency: 50ms\n", ""),
        "fault.latency",
    );
}

#[test]
fn intensity_defaults_to_one() {
    // Every packet is delayed unless the experiment says otherwise.
    let experiment = parse(&SLOW.replace("intensity: 0.5\n", ""));
    assert_eq!(experiment.intensity, 1.0);
    assert_eq!(experiment.to_proto().intensity, Some(1.0));
    assert_eq!(
        ExperimentType::NetworkLatency.default_intensity(),
        Some(1.0)
    );
    rejected_at(&SLOW.replace("0.5", "1.5"), "intensity");
}

#[test]
fn bad_latencies() {
    let latency = |value: &str| SLOW.replace("50ms", value);
    let error = rejected_at(&latency("0s"), "fault.latency");
    assert_eq!(
        error.to_string(),
        "fault.latency: 0s is not allowed; expected 1ms to 1m in whole milliseconds (the \
         daemon's experiments.network_latency.max_latency_ms may allow less)"
    );
    rejected_at(&latency("61s"), "fault.latency");
    rejected_at(&latency("24h"), "fault.latency");
    rejected_at(&latency("1500us"), "fault.latency");
    rejected_at(&latency("100"), "fault.latency");
    rejected_at(&latency("fast"), "fault.latency");
}

#[test]
fn bad_jitter() {
    let error = rejected_at(&slow_with("  jitter: 51ms\n"), "fault.jitter");
    assert_eq!(
        error.to_string(),
        "fault.jitter: 51ms is not allowed; expected 0 to the latency (50ms) in whole milliseconds"
    );
    rejected_at(&slow_with("  jitter: 10500us\n"), "fault.jitter");
    rejected_at(&slow_with("  jitter: -5ms\n"), "fault.jitter");
    rejected_at(&slow_with("  jitter: 5\n"), "fault.jitter");
}

#[test]
fn bad_distribution_and_interface() {
    let error = rejected_at(&slow_with("  distribution: pareto\n"), "fault.distribution");
    assert!(error.to_string().contains("uniform"), "{error}");
    for name in ["''", "sixteen-chars-xx", "eth0:1", "a/b", "'eth 0'"] {
        let error = rejected_at(
            &slow_with(&format!("  interface: {name}\n")),
            "fault.interface",
        );
        assert!(error.to_string().contains("1 to 15 characters"), "{error}");
    }
}

#[test]
fn keys_of_other_types() {
    let error = rejected_at(&slow_with("  errno: EIO\n"), "fault.errno");
    assert_eq!(
        error.to_string(),
        "fault.errno: unknown field `errno` for type network_latency, expected `latency`, \
         `jitter`, `distribution` or `interface`"
    );
    rejected_at(&slow_with("  direction: egress\n"), "fault.direction");
    rejected_at(&slow_with("  interval: 1m\n"), "fault.interval");
    let loss = SLOW.replace("network_latency", "packet_loss");
    rejected_at(&loss, "fault.latency");
    rejected_at(
        &SLOW
            .replace("network_latency", "dependency_failure")
            .replace("latency: 50ms", "jitter: 5ms"),
        "fault.jitter",
    );
}

#[test]
fn filters_apply_to_latency() {
    let text = slow_with("filter:\n  protocol: udp\n  ports: 53\n");
    let filter = parse(&text).to_proto().filter.expect("the filter is kept");
    assert_eq!(
        (filter.protocol.as_str(), filter.ports.as_str()),
        ("udp", "53")
    );
    rejected_at(
        &slow_with("filter:\n  protocol: icmp\n  ports: 53\n"),
        "filter.ports",
    );
}
