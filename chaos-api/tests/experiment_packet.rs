//! `packet_duplication` and `packet_corruption`: the examples parse and convert to the proto the
//! daemon runs, the defaults (no settings; `checksum: wrong`), the model reads back exactly what
//! it sent, every refusal (in a file and on the wire) names its path with the exact message,
//! and the config enables, limits, prices and ramps them like packet_loss.

mod common;

use common::{experiment_rejected_at as rejected_at, parse, rejected_at as refused};

use chaos_api::config::{ChaosConfig, Price, Refusal};
use chaos_api::error::ModelError;
use chaos_api::experiment::{
    CorruptChecksum, Experiment, ExperimentType, Fault, PacketCorruption, PortRange, Protocol,
};
use chaos_api::proto::{self, fault::Kind as FaultKind};

const PACKET_DUPLICATION: &str = include_str!("../../chaos/experiments/packet-duplication.yaml");
const PACKET_CORRUPTION: &str = include_str!("../../chaos/experiments/packet-corruption.yaml");

/// The smallest valid experiment of `kind` (no `fault`), with `extra` lines appended.
fn minimal(kind: &str, extra: &str) -> String {
    format!(
        "name: packets\ntype: {kind}\ntarget:\n  pid: 4242\nduration: 1m\nintensity: 0.2\n{extra}"
    )
}

fn duplication(extra: &str) -> String {
    minimal("packet_duplication", extra)
}

fn corruption(extra: &str) -> String {
    minimal("packet_corruption", extra)
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

/// A spec with this fault message: pid 42, one minute, intensity 0.5, no filter.
fn spec(fault: FaultKind) -> proto::ExperimentSpec {
    proto::ExperimentSpec {
        targets: Vec::new(),
        name: "wire".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Pid(42)),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault { kind: Some(fault) }),
        intensity: Some(0.5),
        duration_ms: 60_000,
        max_faults: None,
        filter: None,
        budget: None,
        guards: None,
        ramp: None,
        lease_ms: None,
    }
}

fn corrupt(checksum: &str) -> FaultKind {
    FaultKind::PacketCorruption(proto::PacketCorruption {
        checksum: checksum.to_owned(),
    })
}

fn duplicate() -> FaultKind {
    FaultKind::PacketDuplication(proto::PacketDuplication {})
}

/// `spec` with a filter of this protocol.
fn with_protocol(mut spec: proto::ExperimentSpec, protocol: &str) -> proto::ExperimentSpec {
    spec.filter = Some(proto::NetFilter {
        protocol: protocol.to_owned(),
        ports: String::new(),
        cidrs: Vec::new(),
    });
    spec
}

/// The refusal of `config` for `experiment`, which must be a limit.
fn limit(config: &ChaosConfig, experiment: &Experiment) -> ModelError {
    match config.admit(experiment) {
        Err(Refusal::Limit(error)) => error,
        other => panic!("expected a limit, got {other:?}"),
    }
}

fn config(text: &str) -> ChaosConfig {
    match ChaosConfig::from_yaml(text) {
        Ok(config) => config,
        Err(error) => panic!("config must parse: {error}\n{text}"),
    }
}

#[test]
fn the_types_by_name() {
    for (kind, name) in [
        (ExperimentType::PacketDuplication, "packet_duplication"),
        (ExperimentType::PacketCorruption, "packet_corruption"),
    ] {
        assert_eq!(kind.as_str(), name);
        assert_eq!(ExperimentType::from_name(name), Some(kind));
        assert!(ExperimentType::ALL.contains(&kind));
        // Network faults: a filter, no default intensity, not a host fault.
        assert!(kind.takes_filter() && !kind.is_host());
        assert_eq!(kind.default_intensity(), None);
    }
    // Listed right after packet_loss.
    let names = ExperimentType::ALL.map(ExperimentType::as_str);
    assert_eq!(
        names[..3],
        ["packet_loss", "packet_duplication", "packet_corruption"]
    );
    // The intensity is required.
    let text = duplication("").replace("intensity: 0.2\n", "");
    let error = rejected_at(&text, "intensity");
    assert!(
        error
            .to_string()
            .starts_with("intensity: required field is missing: packet_duplication needs"),
        "{error}"
    );
    rejected_at(&corruption("").replace("intensity: 0.2\n", ""), "intensity");
}

#[test]
fn duplication_example_to_proto() {
    let experiment = parse(PACKET_DUPLICATION);
    assert_eq!(experiment.kind(), ExperimentType::PacketDuplication);
    assert_eq!(experiment.fault, Fault::PacketDuplication);
    let expected = proto::ExperimentSpec {
        targets: Vec::new(),
        name: "orders-packet-duplication".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Cgroup(
                "/system.slice/orders.service".to_owned(),
            )),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(duplicate()),
        }),
        intensity: Some(0.05),
        duration_ms: 600_000,
        max_faults: Some(10_000),
        filter: Some(proto::NetFilter {
            protocol: "udp".to_owned(),
            ports: "5000-5100".to_owned(),
            cidrs: vec!["10.0.0.0/8".to_owned()],
        }),
        budget: Some(10.0),
        guards: None,
        ramp: None,
        lease_ms: None,
    };
    let sent = experiment.to_proto();
    assert_eq!(sent, expected);
    assert_eq!(Experiment::from_proto(&sent), Ok(experiment));
}

#[test]
fn corruption_example_to_proto() {
    let experiment = parse(PACKET_CORRUPTION);
    assert_eq!(experiment.kind(), ExperimentType::PacketCorruption);
    assert_eq!(
        experiment.fault,
        Fault::PacketCorruption(PacketCorruption {
            checksum: CorruptChecksum::Wrong
        })
    );
    assert_eq!(experiment.filter.protocol, Protocol::Tcp);
    assert_eq!(
        experiment.filter.ports,
        Some(PortRange {
            low: 5432,
            high: 5432
        })
    );
    let expected = proto::ExperimentSpec {
        targets: Vec::new(),
        name: "orders-db-packet-corruption".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Cgroup(
                "/system.slice/orders.service".to_owned(),
            )),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(corrupt("wrong")),
        }),
        intensity: Some(0.01),
        duration_ms: 600_000,
        max_faults: Some(10_000),
        filter: Some(proto::NetFilter {
            protocol: "tcp".to_owned(),
            ports: "5432".to_owned(),
            cidrs: vec!["10.0.0.0/8".to_owned()],
        }),
        budget: Some(10.0),
        guards: None,
        ramp: None,
        lease_ms: None,
    };
    let sent = experiment.to_proto();
    assert_eq!(sent, expected);
    assert_eq!(Experiment::from_proto(&sent), Ok(experiment));
}

#[test]
fn defaults_no_settings_and_checksum_wrong() {
    // Duplication: `fault` absent, empty (null) or an empty mapping.
    for extra in ["", "fault:\n", "fault: {}\n"] {
        let experiment = parse(&duplication(extra));
        assert_eq!(experiment.fault, Fault::PacketDuplication, "{extra:?}");
        assert_eq!(experiment.filter.protocol, Protocol::Any);
        assert_eq!(experiment.intensity, 0.2);
    }
    // Corruption: checksum defaults to wrong.
    assert_eq!(CorruptChecksum::default(), CorruptChecksum::Wrong);
    for extra in ["", "fault:\n", "fault: {}\n", "fault: {checksum: wrong}\n"] {
        assert_eq!(
            parse(&corruption(extra)).fault,
            Fault::PacketCorruption(PacketCorruption {
                checksum: CorruptChecksum::Wrong
            }),
            "{extra:?}"
        );
    }
    assert_eq!(
        parse(&corruption("fault:\n  checksum: fixed\n")).fault,
        Fault::PacketCorruption(PacketCorruption {
            checksum: CorruptChecksum::Fixed
        })
    );
    // On the wire "" is wrong, as an omitted key is.
    assert_eq!(
        Experiment::from_proto(&spec(corrupt(""))).map(|e| e.fault),
        Ok(Fault::PacketCorruption(PacketCorruption::default()))
    );
    assert_eq!(
        Experiment::from_proto(&spec(duplicate())).map(|e| e.fault),
        Ok(Fault::PacketDuplication)
    );
    assert_eq!(
        CorruptChecksum::ALL
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["wrong", "fixed"]
    );
}

#[test]
fn both_round_trip_through_the_proto_exactly() {
    let filters = [
        "",
        "filter: {protocol: tcp}\n",
        "filter: {protocol: udp, ports: '53'}\n",
        "filter: {protocol: any, ports: 8000-8100, cidrs: [10.0.0.0/8, 'fd00::/8']}\n",
        "filter: {cidrs: [192.0.2.1]}\n",
    ];
    for filter in filters {
        for text in [
            duplication(filter),
            corruption(filter),
            corruption(&format!("fault: {{checksum: fixed}}\n{filter}")),
            corruption(&format!("fault: {{checksum: wrong}}\n{filter}")),
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
    }
    // Duplication also takes icmp (ping shows DUP!).
    let experiment = parse(&duplication("filter: {protocol: icmp}\n"));
    assert_eq!(experiment.filter.protocol, Protocol::Icmp);
    assert_eq!(
        Experiment::from_proto(&experiment.to_proto()),
        Ok(experiment)
    );
    // The checksum travels by name.
    for (checksum, name) in [
        (CorruptChecksum::Wrong, "wrong"),
        (CorruptChecksum::Fixed, "fixed"),
    ] {
        let text = corruption(&format!("fault: {{checksum: {name}}}\n"));
        let sent = parse(&text).to_proto();
        assert_eq!(
            sent.fault.and_then(|f| f.kind),
            Some(corrupt(name)),
            "{checksum:?}"
        );
    }
    // A ramp of intensities (no preset: the config's lists are for loss and errors).
    for kind in ["packet_duplication", "packet_corruption"] {
        let text = minimal(kind, "ramp: {steps: [0.01, 0.05], hold: 10s}\n")
            .replace("intensity: 0.2\n", "");
        let experiment = parse(&text);
        assert_eq!(experiment.intensity, 0.01);
        assert_eq!(
            Experiment::from_proto(&experiment.to_proto()),
            Ok(experiment)
        );
    }
}

#[test]
fn unknown_keys_are_refused_with_the_types_settings() {
    for (key, line) in [
        ("direction", "fault: {direction: egress}\n"),
        ("checksum", "fault: {checksum: wrong}\n"),
        ("errno", "fault: {errno: EIO}\n"),
    ] {
        let path = format!("fault.{key}");
        let error = rejected_at(&duplication(line), &path);
        assert_eq!(
            error.to_string(),
            format!(
                "{path}: unknown field `{key}` for type packet_duplication, expected no settings"
            )
        );
    }
    let error = rejected_at(
        &corruption("fault: {egress_drop: silent}\n"),
        "fault.egress_drop",
    );
    assert_eq!(
        error.to_string(),
        "fault.egress_drop: unknown field `egress_drop` for type packet_corruption, expected \
         `checksum`"
    );
    // checksum is packet_corruption's only.
    let error = rejected_at(
        &minimal("packet_loss", "fault: {checksum: fixed}\n"),
        "fault.checksum",
    );
    assert_eq!(
        error.to_string(),
        "fault.checksum: unknown field `checksum` for type packet_loss, expected `direction` or \
         `egress_drop`"
    );
    // A key of no type: serde's unknown field, at its path.
    let error = rejected_at(&duplication("fault: {copies: 2}\n"), "fault.copies");
    assert!(
        error
            .to_string()
            .starts_with("fault.copies: unknown field `copies`, expected one of "),
        "{error}"
    );
}

#[test]
fn bad_checksums_are_refused() {
    for (value, shown) in [("bad", "bad"), ("WRONG", "WRONG"), ("1", "1")] {
        let error = rejected_at(
            &corruption(&format!("fault: {{checksum: {value}}}\n")),
            "fault.checksum",
        );
        assert!(
            error.to_string().starts_with(&format!(
                "fault.checksum: unknown variant `{shown}`, expected `wrong` or `fixed`"
            )),
            "{error}"
        );
    }
    rejected_at(
        &corruption("fault: {checksum: [wrong]}\n"),
        "fault.checksum",
    );
    // On the wire.
    for text in ["bad", "Wrong", " wrong"] {
        let error = refused(
            Experiment::from_proto(&spec(corrupt(text))),
            "fault.checksum",
        );
        assert_invalid(&error, &format!("{text:?}"), "one of wrong, fixed");
    }
}

#[test]
fn corruption_is_tcp_and_udp_only() {
    let allowed = "tcp, udp or any (packet_corruption changes TCP and UDP payloads)";
    let error = rejected_at(&corruption("filter: {protocol: icmp}\n"), "filter.protocol");
    assert_eq!(
        error.to_string(),
        format!("filter.protocol: icmp is not allowed; expected {allowed}")
    );
    assert_invalid(&error, "icmp", allowed);
    let error = rejected_at(
        &corruption("fault: {checksum: fixed}\nfilter: {protocol: icmp, cidrs: [10.0.0.0/8]}\n"),
        "filter.protocol",
    );
    assert_invalid(&error, "icmp", allowed);
    for protocol in ["tcp", "udp", "any"] {
        parse(&corruption(&format!("filter: {{protocol: {protocol}}}\n")));
    }
    // The same on the wire.
    let error = refused(
        Experiment::from_proto(&with_protocol(spec(corrupt("fixed")), "icmp")),
        "filter.protocol",
    );
    assert_invalid(&error, "icmp", allowed);
    assert!(Experiment::from_proto(&with_protocol(spec(corrupt("")), "udp")).is_ok());
    assert!(Experiment::from_proto(&with_protocol(spec(duplicate()), "icmp")).is_ok());
}

#[test]
fn the_config_enables_limits_and_prices_them_like_packet_loss() {
    let default = ChaosConfig::default();
    for (kind, text) in [
        ("packet_duplication", PACKET_DUPLICATION),
        ("packet_corruption", PACKET_CORRUPTION),
    ] {
        let experiment = parse(text);
        // Admitted by default, priced per fault at budget.cost_per_request, capped by the
        // budget (10.0 / 0.001 = 10000) and max_faults (10000).
        let admission = default.admit(&experiment).expect("admitted");
        assert_eq!(admission.experiment, experiment);
        assert_eq!(
            admission.price,
            Price::PerFault(default.budget.cost_per_request)
        );
        assert_eq!(admission.max_faults, 10_000);

        // enabled: false.
        let off = config(&format!("experiments:\n  {kind}: {{enabled: false}}\n"));
        let error = limit(&off, &experiment);
        assert_eq!(error.path(), Some("type"));
        assert_eq!(
            error.to_string(),
            format!(
                "type: {kind} is not allowed; expected a type this node runs \
                 (experiments.{kind}.enabled is false)"
            )
        );
        // Disabling packet_loss does not disable them.
        let loss_off = config("experiments:\n  packet_loss: {enabled: false}\n");
        assert!(loss_off.admit(&experiment).is_ok(), "{kind}");

        // max_probability: the intensity and every ramp step.
        let capped = config(&format!(
            "experiments:\n  {kind}: {{max_probability: 0.004}}\n"
        ));
        let error = limit(&capped, &experiment);
        assert_eq!(error.path(), Some("intensity"));
        assert!(
            error.to_string().ends_with(&format!(
                "expected at most 0.004 (experiments.{kind}.max_probability)"
            )),
            "{error}"
        );
        let ramped = parse(
            &minimal(kind, "ramp: {steps: [0.001, 0.004, 0.01], hold: 10s}\n")
                .replace("intensity: 0.2\n", ""),
        );
        let error = limit(&capped, &ramped);
        assert_eq!(error.path(), Some("ramp.steps[2]"));
        assert!(
            error
                .to_string()
                .contains(&format!("experiments.{kind}.max_probability")),
            "{error}"
        );
        let gentle = parse(
            &minimal(kind, "ramp: {steps: [0.001, 0.004], hold: 10s}\n")
                .replace("intensity: 0.2\n", ""),
        );
        assert_eq!(
            capped
                .admit(&gentle)
                .expect("admitted")
                .experiment
                .intensity,
            0.001
        );
        // packet_loss's limit is not theirs.
        let loss_capped = config("experiments:\n  packet_loss: {max_probability: 0.001}\n");
        assert!(loss_capped.admit(&experiment).is_ok(), "{kind}");

        // cost_per_fault prices them; a budget that buys nothing is refused with the key.
        let priced = config(&format!(
            "experiments:\n  {kind}: {{cost_per_fault: 0.5}}\n"
        ));
        let admission = priced.admit(&experiment).expect("admitted");
        assert_eq!(admission.price, Price::PerFault(0.5));
        assert_eq!(admission.max_faults, 20, "10.0 at 0.5 per fault");
        let poor = parse(&minimal(kind, "budget: 0.1\n"));
        match priced.admit(&poor) {
            Err(Refusal::BudgetTooSmall { price_key, .. }) => assert_eq!(
                price_key,
                format!("experiments.{kind}.cost_per_fault, else budget.cost_per_request")
            ),
            other => panic!("{kind}: {other:?}"),
        }

        // impact_threshold is the type's own.
        let ktype = experiment.kind();
        assert_eq!(
            default.impact_threshold(ktype),
            (
                0.5,
                if ktype == ExperimentType::PacketDuplication {
                    "experiments.packet_duplication.impact_threshold"
                } else {
                    "experiments.packet_corruption.impact_threshold"
                }
            )
        );
        let strict = config(&format!(
            "experiments:\n  {kind}: {{impact_threshold: 0.1}}\n"
        ));
        assert_eq!(strict.impact_threshold(ktype).0, 0.1);

        // No preset ramp: the config's lists are loss rates and error rates.
        let preset = parse(
            &minimal(kind, "ramp: {steps: preset, hold: 10s}\n").replace("intensity: 0.2\n", ""),
        );
        let error = limit(&default, &preset);
        assert_eq!(error.path(), Some("ramp.steps"));
        assert!(
            error
                .to_string()
                .contains(&format!("the config has no preset ramp for {kind}")),
            "{error}"
        );
    }
}

#[test]
fn the_config_sections_are_checked() {
    let c = config(
        "experiments:\n  packet_duplication:\n    enabled: false\n    max_probability: 0.2\n    \
         cost_per_fault: 0.01\n    impact_threshold: 0.4\n  packet_corruption: {max_probability: 0.1}\n",
    );
    let d = &c.experiments.packet_duplication;
    assert!(!d.enabled);
    assert_eq!(
        (d.max_probability, d.cost_per_fault, d.impact_threshold),
        (0.2, Some(0.01), 0.4)
    );
    assert!(c.experiments.packet_corruption.enabled);
    assert_eq!(c.experiments.packet_corruption.max_probability, 0.1);
    assert_eq!(
        c.experiments.packet_corruption.cost_per_fault, None,
        "unset = budget.cost_per_request"
    );
    // Omitted: enabled with packet_loss's defaults.
    let default = ChaosConfig::default();
    assert_eq!(
        default.experiments.packet_duplication,
        default.experiments.packet_loss
    );
    assert_eq!(
        default.experiments.packet_corruption,
        default.experiments.packet_loss
    );
    for (text, path) in [
        (
            "experiments:\n  packet_duplication: {max_probability: 1.5}\n",
            "experiments.packet_duplication.max_probability",
        ),
        (
            "experiments:\n  packet_corruption: {cost_per_fault: -1}\n",
            "experiments.packet_corruption.cost_per_fault",
        ),
        (
            "experiments:\n  packet_corruption: {impact_threshold: 2}\n",
            "experiments.packet_corruption.impact_threshold",
        ),
        (
            "experiments:\n  packet_corruption: {checksum: fixed}\n",
            "experiments.packet_corruption.checksum",
        ),
    ] {
        refused(ChaosConfig::from_yaml(text), path);
    }
}
