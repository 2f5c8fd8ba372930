//! `bandwidth_limit`: the example parses and converts to the proto the daemon runs, the
//! defaults (burst 0, intensity 1, the default route's device), the rate and burst in tc's
//! notation, the model reads back exactly what it sent, and every refusal (in a file and on
//! the wire) names its path with what is allowed.

mod common;

use common::{experiment_rejected_at as rejected_at, parse, rejected_at as refused};

use chaos_api::error::ModelError;
use chaos_api::experiment::{
    BandwidthLimit, Bytes, Experiment, ExperimentType, Fault, MAX_BURST_BYTES, MAX_RATE_BPS,
    MIN_RATE_BPS, NetFilter, PortRange, Protocol, Rate,
};
use chaos_api::proto::{self, fault::Kind as FaultKind};

const BANDWIDTH_LIMIT: &str = include_str!("../../chaos/experiments/bandwidth-limit.yaml");

/// The smallest valid bandwidth limit (no `intensity`), with `fault` lines and `extra` lines.
fn limited(fault: &str, extra: &str) -> String {
    format!(
        "name: thin-link\ntype: bandwidth_limit\ntarget:\n  pid: 4242\nduration: 1m\n\
         fault:\n{fault}{extra}"
    )
}

/// `fault` with just `rate: 1mbit`.
fn minimal(extra: &str) -> String {
    limited("  rate: 1mbit\n", extra)
}

/// The fault of a valid document with these `fault` lines.
fn fault_of(fault: &str) -> BandwidthLimit {
    match parse(&limited(fault, "")).fault {
        Fault::BandwidthLimit(limit) => limit,
        other => panic!("not a bandwidth limit: {other:?}"),
    }
}

/// Asserts that `error` is a [`ModelError::Invalid`] with exactly this value and allowed text.
fn assert_invalid(error: &ModelError, value: &str, allowed: &str) {
    match error {
        ModelError::Invalid {
            value: v,
            allowed: a,
            ..
        } => assert_eq!((v.as_str(), a.as_str()), (value, allowed), "{error}"),
        other => panic!("expected an invalid value, got {other:?}"),
    }
}

/// A spec with this fault message: pid 42, one minute, no intensity, no filter.
fn spec(rate_bps: u64, burst_bytes: u32, interface: &str) -> proto::ExperimentSpec {
    proto::ExperimentSpec {
        targets: Vec::new(),
        name: "wire".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Pid(42)),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(FaultKind::BandwidthLimit(proto::BandwidthLimit {
                rate_bps,
                burst_bytes,
                interface: interface.to_owned(),
            })),
        }),
        intensity: None,
        duration_ms: 60_000,
        max_faults: None,
        filter: None,
        budget: None,
        guards: None,
        ramp: None,
        lease_ms: None,
    }
}

const RATE_ALLOWED: &str = "a rate: a number and a unit, bit, kbit, mbit, gbit (bits per second) \
                            or bps, kbps, mbps, gbps (bytes per second), e.g. 1mbit";
const RATE_RANGE: &str =
    "8kbit to 100gbit (the daemon's experiments.bandwidth_limit.min_rate may allow less)";
const INTENSITY_ALLOWED: &str = "1 or omitted: bandwidth_limit holds every matching egress \
                                 packet to the rate (the rate is its severity)";

#[test]
fn the_type_by_name() {
    let kind = ExperimentType::BandwidthLimit;
    assert_eq!(kind.as_str(), "bandwidth_limit");
    assert_eq!(ExperimentType::from_name("bandwidth_limit"), Some(kind));
    assert!(ExperimentType::ALL.contains(&kind));
    // A network fault: a filter, intensity 1 by default, no ramp.
    assert!(kind.takes_filter() && !kind.is_host());
    assert_eq!(kind.default_intensity(), Some(1.0));
    assert!(!kind.takes_ramp() && !kind.ramps_intensity());
    // Listed right after network_latency.
    let names = ExperimentType::ALL.map(ExperimentType::as_str);
    let at = names.iter().position(|n| *n == "network_latency").unwrap();
    assert_eq!(names[at + 1], "bandwidth_limit");
}

#[test]
fn example_to_proto() {
    let experiment = parse(BANDWIDTH_LIMIT);
    assert_eq!(experiment.kind(), ExperimentType::BandwidthLimit);
    assert_eq!(
        experiment.fault,
        Fault::BandwidthLimit(BandwidthLimit {
            rate: Rate::from_bps(1_000_000),
            burst: Bytes(32 * 1024),
            interface: Some("eth0".to_owned()),
        })
    );
    assert_eq!(experiment.intensity, 1.0);
    let expected = proto::ExperimentSpec {
        targets: Vec::new(),
        name: "orders-thin-link".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Cgroup(
                "/system.slice/orders.service".to_owned(),
            )),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(FaultKind::BandwidthLimit(proto::BandwidthLimit {
                rate_bps: 1_000_000,
                burst_bytes: 32_768,
                interface: "eth0".to_owned(),
            })),
        }),
        intensity: Some(1.0),
        duration_ms: 600_000,
        max_faults: Some(50_000),
        filter: Some(proto::NetFilter {
            protocol: "tcp".to_owned(),
            ports: String::new(),
            cidrs: vec!["10.96.0.0/12".to_owned()],
        }),
        budget: Some(50.0),
        guards: None,
        ramp: None,
        lease_ms: None,
    };
    let sent = experiment.to_proto();
    assert_eq!(sent, expected);
    assert_eq!(Experiment::from_proto(&sent), Ok(experiment));
}

#[test]
fn defaults_burst_zero_intensity_one_default_route() {
    let experiment = parse(&minimal(""));
    assert_eq!(
        experiment.fault,
        Fault::BandwidthLimit(BandwidthLimit {
            rate: Rate::from_bps(1_000_000),
            burst: Bytes(0),
            interface: None,
        })
    );
    assert_eq!(experiment.intensity, 1.0);
    assert_eq!(experiment.filter, NetFilter::default());
    assert_eq!(experiment.ramp, None);
    // intensity: 1 written out is the same experiment.
    assert_eq!(parse(&minimal("intensity: 1\n")), experiment);
    assert_eq!(parse(&minimal("intensity: 1.0\n")), experiment);
    // On the wire: no intensity, burst 0 and "" are the same defaults.
    assert_eq!(
        Experiment::from_proto(&spec(1_000_000, 0, "")).map(|e| e.fault),
        Ok(experiment.fault.clone())
    );
}

#[test]
fn rates_and_bursts_in_tc_notation() {
    for (text, bits) in [
        ("1mbit", 1_000_000),
        ("1.5mbit", 1_500_000),
        ("500kbit", 500_000),
        ("10mbps", 80_000_000),
        ("8kbit", MIN_RATE_BPS),
        ("1kbps", MIN_RATE_BPS),
        ("100gbit", MAX_RATE_BPS),
        ("'2 Mbit'", 2_000_000),
    ] {
        assert_eq!(
            fault_of(&format!("  rate: {text}\n")).rate,
            Rate::from_bps(bits),
            "{text}"
        );
    }
    // burst: an integer number of bytes, or a size with a binary unit.
    for (text, bytes) in [
        ("0", 0),
        ("1500", 1500),
        ("'1500'", 1500),
        ("1500b", 1500),
        ("32kb", 32 * 1024),
        ("64k", 64 * 1024),
        ("1mb", 1 << 20),
        ("16mb", MAX_BURST_BYTES),
    ] {
        assert_eq!(
            fault_of(&format!("  rate: 1mbit\n  burst: {text}\n")).burst,
            Bytes(bytes),
            "{text}"
        );
    }
    let limit = fault_of("  rate: 2mbit\n  burst: 32kb\n  interface: eth0\n");
    assert_eq!(
        limit,
        BandwidthLimit {
            rate: Rate::from_bps(2_000_000),
            burst: Bytes(32 * 1024),
            interface: Some("eth0".to_owned()),
        }
    );
}

#[test]
fn a_missing_rate_is_refused() {
    let message = "required field is missing (the rate the target's egress may leave at, e.g. \
                   1mbit)";
    for text in [
        limited("  burst: 32kb\n", ""),
        limited("  interface: eth0\n", ""),
        "name: thin-link\ntype: bandwidth_limit\ntarget: {pid: 4242}\n".to_owned(),
        "name: thin-link\ntype: bandwidth_limit\ntarget: {pid: 4242}\nfault: {}\n".to_owned(),
    ] {
        let error = rejected_at(&text, "fault.rate");
        assert_eq!(
            error,
            ModelError::Parse {
                path: "fault.rate".to_owned(),
                message: message.to_owned(),
            },
            "{text}"
        );
    }
}

#[test]
fn bad_rates_are_refused() {
    // Not a rate: the value as written and the notation.
    for (text, shown) in [
        ("fast", "\"fast\""),
        ("1000", "\"1000\""),
        ("1 mb", "\"1 mb\""),
        ("-1mbit", "\"-1mbit\""),
        ("''", "\"\""),
    ] {
        let error = rejected_at(&limited(&format!("  rate: {text}\n"), ""), "fault.rate");
        assert_invalid(&error, shown, RATE_ALLOWED);
    }
    // Outside 8kbit to 100gbit, in the model's notation.
    for (text, shown) in [
        ("7kbit", "7kbit"),
        ("7999bit", "7999bit"),
        ("0mbit", "0bit"),
        ("101gbit", "101gbit"),
    ] {
        let error = rejected_at(&limited(&format!("  rate: {text}\n"), ""), "fault.rate");
        assert_invalid(&error, shown, RATE_RANGE);
    }
    // A list is no scalar.
    rejected_at(&limited("  rate: [1mbit]\n", ""), "fault.rate");
}

#[test]
fn bad_bursts_are_refused() {
    for (text, shown) in [("17mb", "17mb"), ("16777217", "16777217b")] {
        let error = rejected_at(
            &limited(&format!("  rate: 1mbit\n  burst: {text}\n"), ""),
            "fault.burst",
        );
        assert_invalid(&error, shown, "0b to 16mb");
    }
    for text in ["big", "-1", "1.x", "5gb"] {
        let error = rejected_at(
            &limited(&format!("  rate: 1mbit\n  burst: {text}\n"), ""),
            "fault.burst",
        );
        assert!(
            error
                .to_string()
                .contains("expected a size: a whole number of bytes with an optional unit b, kb"),
            "{text}: {error}"
        );
    }
}

#[test]
fn intensity_is_one_or_omitted() {
    for (text, shown) in [("0.5", "0.5"), ("0", "0"), ("0.99", "0.99")] {
        let error = rejected_at(&minimal(&format!("intensity: {text}\n")), "intensity");
        assert_invalid(&error, shown, INTENSITY_ALLOWED);
    }
    // The range check comes first, as for every type.
    let error = rejected_at(&minimal("intensity: 2\n"), "intensity");
    assert_invalid(&error, "2", "0 to 1");
    // On the wire.
    let mut half = spec(1_000_000, 0, "");
    half.intensity = Some(0.5);
    let error = refused(Experiment::from_proto(&half), "intensity");
    assert_invalid(&error, "0.5", INTENSITY_ALLOWED);
}

#[test]
fn a_ramp_is_refused_naming_the_type() {
    for ramp in [
        "ramp: {steps: [0.1, 0.5], hold: 10s}\n",
        "ramp: {steps: preset, hold: 10s}\n",
        "intensity: 1\nramp: {steps: [1], hold: 10s}\n",
    ] {
        let error = rejected_at(&minimal(ramp), "ramp");
        let ModelError::Invalid { allowed, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(
            allowed.starts_with("no ramp for bandwidth_limit (remove `ramp`): a ramp only for "),
            "{ramp}: {error}"
        );
    }
    // On the wire: the ramp, not the intensity its first step would have been.
    let mut ramped = spec(1_000_000, 0, "");
    ramped.ramp = Some(proto::Ramp {
        preset: false,
        steps: vec![0.1, 0.5],
        hold_ms: 10_000,
    });
    let error = refused(Experiment::from_proto(&ramped), "ramp");
    assert!(
        error.to_string().contains("no ramp for bandwidth_limit"),
        "{error}"
    );
}

#[test]
fn unknown_fault_keys_are_refused_with_the_types_settings() {
    for (key, line) in [
        ("latency", "  latency: 100ms\n"),
        ("checksum", "  checksum: wrong\n"),
        ("direction", "  direction: egress\n"),
    ] {
        let path = format!("fault.{key}");
        let error = rejected_at(&limited(&format!("  rate: 1mbit\n{line}"), ""), &path);
        assert_eq!(
            error.to_string(),
            format!(
                "{path}: unknown field `{key}` for type bandwidth_limit, expected `rate`, \
                 `burst` or `interface`"
            )
        );
    }
    // rate and burst are bandwidth_limit's only.
    let error = rejected_at(
        "name: slow\ntype: network_latency\ntarget: {pid: 1}\nfault: {latency: 5ms, rate: 1mbit}\n",
        "fault.rate",
    );
    assert!(
        error
            .to_string()
            .starts_with("fault.rate: unknown field `rate` for type network_latency"),
        "{error}"
    );
    rejected_at(
        "name: lossy\ntype: packet_loss\ntarget: {pid: 1}\nintensity: 0.1\nfault: {burst: 1}\n",
        "fault.burst",
    );
    // A key of no type: serde's unknown field.
    let error = rejected_at(&limited("  rate: 1mbit\n  ceil: 2mbit\n", ""), "fault.ceil");
    assert!(
        error
            .to_string()
            .starts_with("fault.ceil: unknown field `ceil`"),
        "{error}"
    );
}

#[test]
fn bad_interfaces_are_refused() {
    let allowed = "a network device name of 1 to 15 characters without '/', ':' or spaces \
                   (omit it for the device of the default route)";
    for (text, shown) in [
        ("eth0:1", "\"eth0:1\""),
        ("''", "\"\""),
        ("sixteen-chars-xx", "\"sixteen-chars-xx\""),
        ("'a b'", "\"a b\""),
        ("a/b", "\"a/b\""),
    ] {
        let error = rejected_at(
            &limited(&format!("  rate: 1mbit\n  interface: {text}\n"), ""),
            "fault.interface",
        );
        assert_invalid(&error, shown, allowed);
    }
    let error = refused(
        Experiment::from_proto(&spec(1_000_000, 0, "eth0:1")),
        "fault.interface",
    );
    assert_invalid(&error, "\"eth0:1\"", allowed);
}

#[test]
fn the_filter_selects_by_the_remote_side() {
    let experiment = parse(&minimal(
        "filter: {protocol: udp, ports: 5000-5100, cidrs: [10.0.0.0/8, 'fd00::/8']}\n",
    ));
    assert_eq!(experiment.filter.protocol, Protocol::Udp);
    assert_eq!(
        experiment.filter.ports,
        Some(PortRange {
            low: 5000,
            high: 5100
        })
    );
    assert_eq!(experiment.filter.cidrs.len(), 2);
    for protocol in ["tcp", "icmp", "any"] {
        parse(&minimal(&format!("filter: {{protocol: {protocol}}}\n")));
    }
    rejected_at(&minimal("filter: {ports: '0'}\n"), "filter.ports");
}

#[test]
fn round_trips_through_the_proto_exactly() {
    for text in [
        minimal(""),
        limited("  rate: 1.5mbit\n  burst: 1500\n", ""),
        limited("  rate: 8kbit\n  burst: 16mb\n  interface: lo\n", ""),
        limited("  rate: 100gbit\n  burst: 32kb\n", "intensity: 1\n"),
        minimal("filter: {protocol: tcp, ports: '443', cidrs: [192.0.2.1]}\n"),
        BANDWIDTH_LIMIT.to_owned(),
    ] {
        let experiment = parse(&text);
        let sent = experiment.to_proto();
        assert_eq!(
            Experiment::from_proto(&sent),
            Ok(experiment.clone()),
            "{text}"
        );
        assert_eq!(
            Experiment::from_proto(&sent).unwrap().to_proto(),
            sent,
            "{text}"
        );
    }
    // The message carries bits and bytes per second as numbers; "" is no interface.
    let sent = parse(&limited("  rate: 10mbps\n  burst: 64k\n", "")).to_proto();
    assert_eq!(
        sent.fault.and_then(|f| f.kind),
        Some(FaultKind::BandwidthLimit(proto::BandwidthLimit {
            rate_bps: 80_000_000,
            burst_bytes: 65_536,
            interface: String::new(),
        }))
    );
    assert_eq!(sent.intensity, Some(1.0));
}

#[test]
fn the_wire_is_checked_as_a_file_is() {
    // rate_bps 0 (unset) is refused at fault.rate, as the file's range check does.
    let error = refused(Experiment::from_proto(&spec(0, 0, "")), "fault.rate");
    assert_invalid(&error, "0bit", RATE_RANGE);
    let error = refused(
        Experiment::from_proto(&spec(MIN_RATE_BPS - 1, 0, "")),
        "fault.rate",
    );
    assert_invalid(&error, "7999bit", RATE_RANGE);
    refused(
        Experiment::from_proto(&spec(MAX_RATE_BPS + 1, 0, "")),
        "fault.rate",
    );
    let error = refused(
        Experiment::from_proto(&spec(1_000_000, MAX_BURST_BYTES + 1, "")),
        "fault.burst",
    );
    assert_invalid(&error, "16777217b", "0b to 16mb");
    // The edges are accepted.
    for (rate, burst) in [(MIN_RATE_BPS, 0), (MAX_RATE_BPS, MAX_BURST_BYTES)] {
        assert_eq!(
            Experiment::from_proto(&spec(rate, burst, "eth0")).map(|e| e.fault),
            Ok(Fault::BandwidthLimit(BandwidthLimit {
                rate: Rate::from_bps(rate),
                burst: Bytes(burst),
                interface: Some("eth0".to_owned()),
            }))
        );
    }
}
