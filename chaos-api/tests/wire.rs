//! The experiment on the wire: [`Experiment::from_proto`] reads back exactly what
//! [`Experiment::to_proto`] sent (every shipped example, and generated experiments of every
//! type), an empty string or list means the type's default as an omitted key does in YAML, and
//! every bad value is refused with its path in an experiment file.

mod common;

use common::{examples, parse, rejected_at};

use std::time::Duration;

use chaos_api::config::SecretSource;
use chaos_api::error::ModelError;
use chaos_api::experiment::{
    ApiError, BandwidthLimit, Bytes, CallName, CorruptChecksum, DatabaseLoad, Direction,
    Distribution, EgressDrop, Engine, Errno, Experiment, ExperimentType, Fault, HttpError,
    HttpStatus, MAX_BURST_BYTES, MAX_ERROR_TYPES, MAX_RATE_BPS, MIN_RATE_BPS, NetFilter,
    NetworkLatency, PacketCorruption, PacketLoss, PodDeletion, PortRange, Profile, Protocol, Rate,
    ResourceExhaustion, SocketCall, SocketError, Statement, SyscallCall, SyscallError, Target,
    TargetKind, Workload,
};
use chaos_api::proto::{self, fault::Kind as FaultKind, target::Kind as TargetCase};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// A valid spec of `fault`: pid 42, one minute, intensity 0.5, no filter.
fn spec(fault: FaultKind) -> proto::ExperimentSpec {
    proto::ExperimentSpec {
        targets: Vec::new(),
        name: "wire".to_owned(),
        target: Some(proto::Target {
            kind: Some(TargetCase::Pid(42)),
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

fn socket(errno: &str, calls: &[&str]) -> proto::SocketError {
    proto::SocketError {
        errno: errno.to_owned(),
        calls: calls.iter().map(|c| (*c).to_owned()).collect(),
        ..Default::default()
    }
}

fn dependency(errno: &str, calls: &[&str]) -> FaultKind {
    FaultKind::DependencyFailure(socket(errno, calls))
}

fn syscall(errno: &str, calls: &[&str], path_prefix: &str) -> FaultKind {
    FaultKind::SyscallError(proto::SyscallError {
        errno: errno.to_owned(),
        calls: calls.iter().map(|c| (*c).to_owned()).collect(),
        path_prefix: path_prefix.to_owned(),
    })
}

fn loss(direction: &str, egress_drop: &str) -> FaultKind {
    FaultKind::PacketLoss(proto::PacketLoss {
        direction: direction.to_owned(),
        egress_drop: egress_drop.to_owned(),
    })
}

fn duplication() -> FaultKind {
    FaultKind::PacketDuplication(proto::PacketDuplication {})
}

fn corruption(checksum: &str) -> FaultKind {
    FaultKind::PacketCorruption(proto::PacketCorruption {
        checksum: checksum.to_owned(),
    })
}

fn latency(latency_ms: u64, jitter_ms: u64, distribution: &str) -> FaultKind {
    FaultKind::NetworkLatency(proto::NetworkLatency {
        latency_ms,
        jitter_ms,
        distribution: distribution.to_owned(),
        interface: String::new(),
    })
}

fn bandwidth(rate_bps: u64, burst_bytes: u32, interface: &str) -> FaultKind {
    FaultKind::BandwidthLimit(proto::BandwidthLimit {
        rate_bps,
        burst_bytes,
        interface: interface.to_owned(),
    })
}

/// A dependency failure spec with this filter.
fn filtered(protocol: &str, ports: &str, cidrs: &[&str]) -> proto::ExperimentSpec {
    proto::ExperimentSpec {
        filter: Some(proto::NetFilter {
            protocol: protocol.to_owned(),
            ports: ports.to_owned(),
            cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
        }),
        ..spec(dependency("", &[]))
    }
}

/// Reads a spec that must be valid.
fn read(spec: &proto::ExperimentSpec) -> Experiment {
    match Experiment::from_proto(spec) {
        Ok(experiment) => experiment,
        Err(error) => panic!("spec must be read: {error}\n{spec:?}"),
    }
}

/// Asserts that `spec` is refused at `path`.
fn refused_at(spec: &proto::ExperimentSpec, path: &str) -> ModelError {
    rejected_at(Experiment::from_proto(spec), path)
}

#[test]
fn every_example_round_trips() {
    for (name, text) in examples() {
        let experiment = parse(&text);
        let sent = experiment.to_proto();
        let received = match Experiment::from_proto(&sent) {
            Ok(received) => received,
            Err(error) => panic!("{name}: {error}"),
        };
        // dry_run travels in StartExperimentRequest, not in the spec.
        let expected = Experiment {
            dry_run: false,
            ..experiment
        };
        assert_eq!(received, expected, "{name}");
        assert_eq!(received.to_proto(), sent, "{name}");
    }
}

#[test]
fn dry_run_is_not_part_of_the_spec() {
    let text = examples()
        .into_iter()
        .find(|(name, _)| name == "api-error-injection.yaml")
        .expect("the api_error_injection example")
        .1;
    let experiment = parse(&text);
    assert!(experiment.dry_run, "the example is a dry run");
    assert!(!read(&experiment.to_proto()).dry_run);
}

#[test]
fn empty_strings_and_lists_are_the_type_defaults() {
    let blank_share = proto::ResourceExhaustion {
        cpu_share: None,
        memory_share: None,
    };
    // (type, the spec's fault with every string and list empty, the YAML that omits the keys)
    let cases = [
        ("packet_loss", loss("", ""), "intensity: 0.5\n"),
        ("packet_duplication", duplication(), "intensity: 0.5\n"),
        ("packet_corruption", corruption(""), "intensity: 0.5\n"),
        (
            "dependency_failure",
            dependency("", &[]),
            "intensity: 0.5\n",
        ),
        (
            "api_error_injection",
            FaultKind::ApiErrorInjection(socket("", &[])),
            "intensity: 0.5\n",
        ),
        (
            "network_latency",
            latency(50, 0, ""),
            "intensity: 0.5\nfault: {latency: 50ms}\n",
        ),
        (
            "bandwidth_limit",
            bandwidth(1_000_000, 0, ""),
            "fault: {rate: 1mbit}\n",
        ),
        ("syscall_error", syscall("", &[], ""), "intensity: 0.5\n"),
        (
            "pod_deletion",
            FaultKind::PodDeletion(proto::PodDeletion { interval_ms: 0 }),
            "intensity: 0.5\n",
        ),
        (
            "resource_exhaustion",
            FaultKind::ResourceExhaustion(blank_share),
            "",
        ),
    ];
    for (kind, fault, keys) in cases {
        // spec() leaves target.pod_name empty too.
        let mut blank = spec(fault);
        if kind == "resource_exhaustion" || kind == "bandwidth_limit" {
            blank.intensity = None;
        }
        let from_file = parse(&format!(
            "name: wire\ntype: {kind}\ntarget: {{pid: 42}}\nduration: 1m\n{keys}"
        ));
        assert_eq!(read(&blank), from_file, "{kind}");
        assert_eq!(from_file.targets[0].pod_name, None);
        // An empty filter message is no filter, on every type.
        blank.filter = Some(proto::NetFilter::default());
        assert_eq!(read(&blank), from_file, "{kind} with an empty filter");
    }

    // The defaults themselves.
    let fault = |kind| read(&spec(kind)).fault;
    assert_eq!(
        fault(dependency("", &[])),
        Fault::DependencyFailure(SocketError {
            errno: Errno::ECONNREFUSED,
            calls: vec![SocketCall::Connect],
        })
    );
    assert_eq!(
        fault(FaultKind::ApiErrorInjection(socket("", &[]))),
        Fault::ApiErrorInjection(ApiError::Socket(SocketError {
            errno: Errno::ECONNRESET,
            calls: vec![SocketCall::Connect, SocketCall::Sendmsg],
        }))
    );
    assert_eq!(
        fault(syscall("", &[], "")),
        Fault::SyscallError(SyscallError {
            errno: Errno::EIO,
            calls: vec![SyscallCall::Open],
            path_prefix: None,
        })
    );
    assert_eq!(
        fault(loss("", "")),
        Fault::PacketLoss(PacketLoss {
            direction: Direction::Both,
            egress_drop: EgressDrop::Silent,
        })
    );
    assert_eq!(fault(duplication()), Fault::PacketDuplication);
    assert_eq!(
        fault(corruption("")),
        Fault::PacketCorruption(PacketCorruption {
            checksum: CorruptChecksum::Wrong,
        })
    );
    assert_eq!(
        fault(latency(50, 0, "")),
        Fault::NetworkLatency(NetworkLatency {
            latency: Duration::from_millis(50),
            jitter: Duration::ZERO,
            distribution: Distribution::Uniform,
            interface: None,
        })
    );
    assert_eq!(
        read(&proto::ExperimentSpec {
            intensity: None,
            ..spec(bandwidth(8_000, 0, ""))
        })
        .fault,
        Fault::BandwidthLimit(BandwidthLimit {
            rate: Rate::from_bps(8_000),
            burst: Bytes(0),
            interface: None,
        }),
        "\"\" = the default route's device"
    );
    assert_eq!(
        fault(FaultKind::PodDeletion(proto::PodDeletion {
            interval_ms: 0
        })),
        Fault::PodDeletion(PodDeletion { interval: None }),
        "0 = kill once"
    );
    assert_eq!(read(&filtered("", "", &[])).filter, NetFilter::default());
}

#[test]
fn unset_intensity_is_one_only_where_the_type_has_a_default() {
    for fault in [
        latency(50, 0, ""),
        bandwidth(1_000_000, 0, ""),
        FaultKind::PodDeletion(proto::PodDeletion { interval_ms: 0 }),
        FaultKind::ResourceExhaustion(proto::ResourceExhaustion {
            cpu_share: Some(0.5),
            memory_share: None,
        }),
    ] {
        let unset = proto::ExperimentSpec {
            intensity: None,
            ..spec(fault)
        };
        assert_eq!(read(&unset).intensity, 1.0, "{unset:?}");
    }
    for fault in [
        loss("", ""),
        duplication(),
        corruption(""),
        dependency("", &[]),
        FaultKind::ApiErrorInjection(socket("", &[])),
        syscall("", &[], ""),
    ] {
        let unset = proto::ExperimentSpec {
            intensity: None,
            ..spec(fault)
        };
        let error = refused_at(&unset, "intensity");
        assert!(
            matches!(error, ModelError::Parse { .. })
                && error.to_string().contains("required field is missing"),
            "{error}"
        );
    }
}

#[test]
fn bad_fault_values_are_refused_at_their_path() {
    let error = refused_at(&spec(dependency("EWHAT", &[])), "fault.errno");
    assert!(error.to_string().contains("\"EWHAT\""), "{error}");
    refused_at(&spec(dependency("0", &[])), "fault.errno");
    refused_at(&spec(dependency("41", &[])), "fault.errno");
    refused_at(&spec(dependency("econnrefused", &[])), "fault.errno");
    refused_at(&spec(syscall("EFOO", &[], "")), "fault.errno");
    refused_at(&spec(dependency("", &["accept"])), "fault.calls[0]");
    refused_at(
        &spec(dependency("", &["connect", "open"])),
        "fault.calls[1]",
    );
    refused_at(
        &spec(dependency("", &["connect", "connect"])),
        "fault.calls[1]",
    );
    refused_at(&spec(syscall("", &["connect"], "")), "fault.calls[0]");
    refused_at(&spec(syscall("", &["fork"], "/data")), "fault.path_prefix");
    refused_at(&spec(syscall("", &[], "data")), "fault.path_prefix");
    let error = refused_at(&spec(loss("sideways", "")), "fault.direction");
    assert!(
        error.to_string().contains("one of ingress, egress, both"),
        "{error}"
    );
    refused_at(&spec(loss("", "loud")), "fault.egress_drop");
    refused_at(&spec(loss("ingress", "visible")), "fault.egress_drop");
    let error = refused_at(&spec(corruption("broken")), "fault.checksum");
    assert!(error.to_string().contains("one of wrong, fixed"), "{error}");
    refused_at(&spec(latency(50, 0, "pareto")), "fault.distribution");
    refused_at(&spec(latency(0, 0, "")), "fault.latency");
    refused_at(&spec(latency(60_001, 0, "")), "fault.latency");
    refused_at(&spec(latency(50, 51, "")), "fault.jitter");
    let bad_device = FaultKind::NetworkLatency(proto::NetworkLatency {
        latency_ms: 50,
        interface: "eth0:1".to_owned(),
        ..proto::NetworkLatency::default()
    });
    refused_at(&spec(bad_device), "fault.interface");
    let limited = |fault| proto::ExperimentSpec {
        intensity: None,
        ..spec(fault)
    };
    refused_at(&limited(bandwidth(0, 0, "")), "fault.rate");
    refused_at(&limited(bandwidth(MIN_RATE_BPS - 1, 0, "")), "fault.rate");
    refused_at(&limited(bandwidth(MAX_RATE_BPS + 1, 0, "")), "fault.rate");
    refused_at(
        &limited(bandwidth(1_000_000, MAX_BURST_BYTES + 1, "")),
        "fault.burst",
    );
    refused_at(
        &limited(bandwidth(1_000_000, 0, "eth0:1")),
        "fault.interface",
    );
    // The rate is its severity: an intensity other than 1 is refused.
    refused_at(&spec(bandwidth(1_000_000, 0, "")), "intensity");
    refused_at(
        &spec(FaultKind::PodDeletion(proto::PodDeletion {
            interval_ms: 50,
        })),
        "fault.interval",
    );
    let no_cpu = FaultKind::ResourceExhaustion(proto::ResourceExhaustion {
        cpu_share: Some(0.0),
        memory_share: None,
    });
    refused_at(
        &proto::ExperimentSpec {
            intensity: None,
            ..spec(no_cpu)
        },
        "fault.cpu_share",
    );
}

#[test]
fn bad_filters_are_refused_at_their_path() {
    let error = refused_at(&filtered("sctp", "", &[]), "filter.protocol");
    assert!(
        error.to_string().contains("one of tcp, udp, icmp, any"),
        "{error}"
    );
    refused_at(&filtered("", "http", &[]), "filter.ports");
    refused_at(&filtered("", "90-80", &[]), "filter.ports");
    refused_at(&filtered("", "0", &[]), "filter.ports");
    refused_at(&filtered("icmp", "80", &[]), "filter.ports");
    refused_at(
        &filtered("", "", &["10.0.0.0/8", "10.0.0.0/33"]),
        "filter.cidrs[1]",
    );
    refused_at(&filtered("", "", &["10.0.0.0/8; rm"]), "filter.cidrs[0]");
    let nine: Vec<String> = (1..=9).map(|i| format!("10.{i}.0.0/16")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    refused_at(&filtered("", "", &nine), "filter.cidrs");
    // socket() has no address: no ports with it.
    refused_at(
        &proto::ExperimentSpec {
            fault: Some(proto::Fault {
                kind: Some(dependency("", &["socket"])),
            }),
            ..filtered("", "5432", &[])
        },
        "fault.calls",
    );
    // Corruption changes TCP and UDP payloads only.
    refused_at(
        &proto::ExperimentSpec {
            fault: Some(proto::Fault {
                kind: Some(corruption("")),
            }),
            ..filtered("icmp", "", &[])
        },
        "filter.protocol",
    );
    // The types without a filter refuse one that filters anything.
    let with_filter = proto::ExperimentSpec {
        filter: Some(proto::NetFilter {
            protocol: "tcp".to_owned(),
            ..proto::NetFilter::default()
        }),
        ..spec(syscall("", &[], ""))
    };
    refused_at(&with_filter, "filter");
    // A good filter is read as written.
    let good = read(&filtered("udp", "53", &["10.1.2.3", "fd00::/8"]));
    assert_eq!(good.filter.protocol, Protocol::Udp);
    assert_eq!(good.filter.ports, Some(PortRange { low: 53, high: 53 }));
    assert_eq!(
        good.filter.cidrs,
        [
            "10.1.2.3/32".parse::<IpNet>().expect("a network"),
            "fd00::/8".parse().expect("a network"),
        ]
    );
}

#[test]
fn missing_parts_are_refused_at_their_path() {
    let no_target = proto::ExperimentSpec {
        target: None,
        ..spec(dependency("", &[]))
    };
    refused_at(&no_target, "target");
    let empty_target = proto::ExperimentSpec {
        target: Some(proto::Target {
            kind: None,
            pod_name: "shop/frontend-1".to_owned(),
        }),
        ..spec(dependency("", &[]))
    };
    refused_at(&empty_target, "target");
    let no_fault = proto::ExperimentSpec {
        fault: None,
        ..spec(dependency("", &[]))
    };
    let error = refused_at(&no_fault, "type");
    assert!(error.to_string().contains("dependency_failure"), "{error}");
    let empty_fault = proto::ExperimentSpec {
        fault: Some(proto::Fault { kind: None }),
        ..spec(dependency("", &[]))
    };
    refused_at(&empty_fault, "type");
}

#[test]
fn bad_scalars_are_refused_at_their_path() {
    let base = spec(dependency("", &[]));
    let with = |edit: fn(&mut proto::ExperimentSpec)| {
        let mut spec = base.clone();
        edit(&mut spec);
        spec
    };
    // 0 is "unset": the model's default duration.
    let defaulted = Experiment::from_proto(&with(|s| s.duration_ms = 0)).unwrap();
    assert_eq!(defaulted.duration, chaos_api::experiment::DEFAULT_DURATION);
    refused_at(&with(|s| s.duration_ms = 86_400_001), "duration");
    refused_at(&with(|s| s.duration_ms = u64::MAX), "duration");
    let error = refused_at(&with(|s| s.intensity = Some(2.0)), "intensity");
    assert_eq!(
        error.to_string(),
        "intensity: 2 is not allowed; expected 0 to 1"
    );
    refused_at(&with(|s| s.intensity = Some(-0.1)), "intensity");
    refused_at(&with(|s| s.intensity = Some(f64::NAN)), "intensity");
    refused_at(&with(|s| s.name = String::new()), "name");
    refused_at(&with(|s| s.name = "Checkout_DB".to_owned()), "name");
    refused_at(&with(|s| s.max_faults = Some(0)), "max_faults");
    refused_at(&with(|s| s.budget = Some(-1.0)), "budget");
    refused_at(&with(|s| s.budget = Some(f64::INFINITY)), "budget");
    let target = |kind: TargetCase, pod_name: &str| {
        let mut spec = base.clone();
        spec.target = Some(proto::Target {
            kind: Some(kind),
            pod_name: pod_name.to_owned(),
        });
        spec
    };
    refused_at(&target(TargetCase::Pid(0), ""), "target.pid");
    refused_at(
        &target(TargetCase::Cgroup("/a/../b".to_owned()), ""),
        "target.cgroup",
    );
    refused_at(
        &target(TargetCase::ContainerId("xyz".to_owned()), ""),
        "target.container_id",
    );
    refused_at(
        &target(TargetCase::PodUid("my-pod".to_owned()), ""),
        "target.pod_uid",
    );
    refused_at(&target(TargetCase::Pid(42), "frontend"), "target.pod_name");
    refused_at(&target(TargetCase::Pid(42), "Shop/x"), "target.pod_name");
    assert_eq!(
        read(&target(TargetCase::Pid(42), "shop/frontend-7d9f8-abcde")).targets[0]
            .pod_name
            .as_deref(),
        Some("shop/frontend-7d9f8-abcde")
    );
}

#[test]
fn container_runtime_prefix_is_stripped() {
    let hex = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";
    for id in [
        hex.to_owned(),
        format!("containerd://{hex}"),
        format!("docker://{hex}"),
        format!("cri-o://{hex}"),
    ] {
        let mut with_id = spec(dependency("", &[]));
        with_id.target = Some(proto::Target {
            kind: Some(TargetCase::ContainerId(id.clone())),
            pod_name: String::new(),
        });
        let experiment = read(&with_id);
        assert_eq!(
            experiment.targets[0],
            Target::new(TargetKind::ContainerId(hex.to_owned())),
            "{id}"
        );
        assert_eq!(
            experiment.to_proto().target.and_then(|t| t.kind),
            Some(TargetCase::ContainerId(hex.to_owned())),
            "the daemon gets the hex digits"
        );
    }
    // The prefix is dropped before the check: what follows must still be hex.
    let mut bad = spec(dependency("", &[]));
    bad.target = Some(proto::Target {
        kind: Some(TargetCase::ContainerId("containerd://xyz".to_owned())),
        pod_name: String::new(),
    });
    refused_at(&bad, "target.container_id");
}

#[test]
fn errno_travels_by_name() {
    for (written, name) in [
        ("ECONNREFUSED", "ECONNREFUSED"),
        ("111", "ECONNREFUSED"),
        ("EWOULDBLOCK", "EAGAIN"),
        ("95", "EOPNOTSUPP"),
        ("133", "EHWPOISON"),
    ] {
        let sent = read(&spec(dependency(written, &[]))).to_proto();
        assert!(
            matches!(
                sent.fault.and_then(|f| f.kind),
                Some(FaultKind::DependencyFailure(e)) if e.errno == name
            ),
            "{written}"
        );
    }
}

// ---- generated experiments ----

fn errno() -> impl Strategy<Value = Errno> {
    (1u32..=chaos_api::experiment::MAX_ERRNO).prop_filter_map("an unused number", Errno::new)
}

/// A non-empty list of distinct calls, in any order.
fn calls<C: CallName + std::fmt::Debug>() -> impl Strategy<Value = Vec<C>> {
    proptest::sample::subsequence(C::ALL.to_vec(), 1..=C::ALL.len()).prop_shuffle()
}

/// A share in (0, 1].
fn share() -> impl Strategy<Value = f64> {
    (0.0f64..=1.0).prop_filter("more than 0", |share| *share > 0.0)
}

fn fault() -> impl Strategy<Value = Fault> {
    let latency = (
        1u64..=60_000,
        0u64..=100,
        proptest::sample::select(Distribution::ALL),
        proptest::option::of("[a-z][a-z0-9]{0,14}"),
    )
        .prop_map(|(latency_ms, jitter_percent, distribution, interface)| {
            Fault::NetworkLatency(NetworkLatency {
                latency: Duration::from_millis(latency_ms),
                jitter: Duration::from_millis(latency_ms * jitter_percent / 100),
                distribution,
                interface,
            })
        });
    let syscall = (
        errno(),
        calls::<SyscallCall>(),
        proptest::option::of("(/[a-z0-9_]{1,8}){1,3}/?"),
    )
        .prop_map(|(errno, calls, path_prefix)| {
            let files_only = calls.iter().all(|call| call.is_file_call());
            Fault::SyscallError(SyscallError {
                errno,
                calls,
                path_prefix: path_prefix.filter(|_| files_only),
            })
        });
    let database = (
        proptest::sample::select(Engine::ALL),
        "[a-z][a-z0-9.-]{0,20}:[1-9][0-9]{0,3}",
        proptest::option::of(("[a-z_]{1,16}", 0u16..)),
        proptest::option::of("[a-z_]{1,16}"),
        proptest::option::of(prop_oneof![
            "/[a-z]{1,8}(/[a-z]{1,8})?".prop_map(|p| SecretSource::File(p.into())),
            "[A-Z_][A-Z0-9_]{0,10}".prop_map(SecretSource::Env),
        ]),
        prop_oneof![
            proptest::sample::select(Profile::ALL).prop_map(Workload::Profile),
            proptest::collection::vec(
                ("[A-Za-z][ -~]{0,40}", 1u32..=1000)
                    .prop_map(|(sql, weight)| Statement { sql, weight }),
                1..=16
            )
            .prop_map(Workload::Statements),
        ],
        (0.001f64..=100_000.0, 1u32..=1000, any::<bool>()),
    )
        .prop_map(
            |(engine, address, database, user, password, workload, (rate, concurrency, netns))| {
                let redis = engine == Engine::Redis;
                Fault::DatabaseLoad(DatabaseLoad {
                    engine,
                    address,
                    // Redis: a database index, no user needed, no row locks.
                    database: database
                        .map(|(name, index)| if redis { index.to_string() } else { name }),
                    user: if redis {
                        user
                    } else {
                        Some(user.unwrap_or_else(|| "app".to_owned()))
                    },
                    password,
                    workload: match workload {
                        Workload::Profile(Profile::RowLocks) if redis => {
                            Workload::Profile(Profile::PointReads)
                        }
                        other => other,
                    },
                    rate,
                    concurrency,
                    network_namespace_of_target: netns,
                })
            },
        );
    prop_oneof![
        (
            proptest::sample::select(Direction::ALL),
            proptest::sample::select(EgressDrop::ALL)
        )
            .prop_map(|(direction, egress_drop)| {
                // Visible drops need egress traffic.
                let egress_drop = if direction == Direction::Ingress {
                    EgressDrop::Silent
                } else {
                    egress_drop
                };
                Fault::PacketLoss(PacketLoss {
                    direction,
                    egress_drop,
                })
            }),
        Just(Fault::PacketDuplication),
        proptest::sample::select(CorruptChecksum::ALL)
            .prop_map(|checksum| Fault::PacketCorruption(PacketCorruption { checksum })),
        (errno(), calls::<SocketCall>())
            .prop_map(|(errno, calls)| Fault::DependencyFailure(SocketError { errno, calls })),
        (errno(), calls::<SocketCall>()).prop_map(|(errno, calls)| Fault::ApiErrorInjection(
            ApiError::Socket(SocketError { errno, calls })
        )),
        (
            proptest::collection::vec(http_status(), 1..=MAX_ERROR_TYPES),
            proptest::option::of((1u16..=u16::MAX, 0u16..=2000)),
        )
            .prop_map(|(statuses, ports)| {
                // Each status at most once, in the order drawn.
                let mut error_types = Vec::new();
                for status in statuses {
                    if !error_types.contains(&status) {
                        error_types.push(status);
                    }
                }
                Fault::ApiErrorInjection(ApiError::Http(HttpError {
                    error_types,
                    server_ports: ports.map(|(low, span)| PortRange {
                        low,
                        high: low.saturating_add(span),
                    }),
                }))
            }),
        latency,
        (
            MIN_RATE_BPS..=MAX_RATE_BPS,
            0..=MAX_BURST_BYTES,
            proptest::option::of("[a-z][a-z0-9]{0,14}"),
        )
            .prop_map(|(rate_bps, burst_bytes, interface)| {
                Fault::BandwidthLimit(BandwidthLimit {
                    rate: Rate::from_bps(rate_bps),
                    burst: Bytes(burst_bytes),
                    interface,
                })
            }),
        syscall,
        proptest::option::of(100u64..=86_400_000).prop_map(|interval_ms| {
            Fault::PodDeletion(PodDeletion {
                interval: interval_ms.map(Duration::from_millis),
            })
        }),
        (proptest::option::of(share()), proptest::option::of(share())).prop_map(
            |(cpu_share, memory_share)| {
                Fault::ResourceExhaustion(ResourceExhaustion {
                    cpu_share,
                    memory_share,
                })
            }
        ),
        database,
    ]
}

fn http_status() -> impl Strategy<Value = HttpStatus> {
    prop_oneof![
        3 => (100u16..=599).prop_map(HttpStatus::Code),
        1 => Just(HttpStatus::Timeout),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    let kind = prop_oneof![
        "(/[a-z0-9_.-]{1,12}){1,3}"
            .prop_filter("no ..", |path| !path.split('/').any(|c| c == ".."))
            .prop_map(TargetKind::Cgroup),
        (1..=u32::MAX).prop_map(TargetKind::Pid),
        "[0-9a-f]{12,64}".prop_map(TargetKind::ContainerId),
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(TargetKind::PodUid),
    ];
    let pod_name =
        proptest::option::of("[a-z]([a-z0-9-]{0,10}[a-z0-9])?/[a-z]([a-z0-9.-]{0,20}[a-z0-9])?");
    (kind, pod_name).prop_map(|(kind, pod_name)| Target { kind, pod_name })
}

fn network() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(address, prefix)| {
            IpNet::V4(Ipv4Net::new(address.into(), prefix).expect("prefix at most 32"))
        }),
        (any::<[u16; 8]>(), 0u8..=128).prop_map(|(address, prefix)| {
            IpNet::V6(Ipv6Net::new(address.into(), prefix).expect("prefix at most 128"))
        }),
    ]
}

fn filter() -> impl Strategy<Value = NetFilter> {
    (
        proptest::sample::select(Protocol::ALL),
        proptest::option::of((1u16..=u16::MAX, 0u16..=2000)),
        proptest::collection::vec(network(), 0..=8),
    )
        .prop_map(|(protocol, ports, cidrs)| NetFilter {
            protocol,
            ports: ports
                .filter(|_| protocol != Protocol::Icmp)
                .map(|(low, span)| PortRange {
                    low,
                    high: low.saturating_add(span),
                }),
            cidrs,
        })
}

fn experiment() -> impl Strategy<Value = Experiment> {
    (
        "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
        target(),
        fault(),
        1u64..=86_400_000,
        0.0f64..=1.0,
        proptest::option::of(0.0f64..1e9),
        proptest::option::of(1u64..),
        filter(),
    )
        .prop_map(
            |(name, target, fault, duration_ms, intensity, budget, max_faults, filter)| {
                let kind = fault.kind();
                Experiment {
                    name,
                    targets: vec![target],
                    duration: Duration::from_millis(duration_ms),
                    // The pressure applies to the whole cgroup; the rate is the limit's
                    // severity.
                    intensity: if matches!(
                        kind,
                        ExperimentType::ResourceExhaustion
                            | ExperimentType::BandwidthLimit
                            | ExperimentType::DatabaseLoad
                    ) {
                        1.0
                    } else {
                        intensity
                    },
                    budget,
                    max_faults,
                    dry_run: false,
                    guards: Default::default(),
                    ramp: None,
                    lease: None,
                    filter: match &fault {
                        _ if !kind.takes_filter() => NetFilter::default(),
                        // The HTTP errors take TCP and the server's port in the fault.
                        Fault::ApiErrorInjection(ApiError::Http(_)) => NetFilter {
                            protocol: if filter.protocol == Protocol::Any {
                                Protocol::Any
                            } else {
                                Protocol::Tcp
                            },
                            ports: None,
                            cidrs: filter.cidrs,
                        },
                        // Corruption changes TCP and UDP payloads.
                        Fault::PacketCorruption(_) if filter.protocol == Protocol::Icmp => {
                            NetFilter {
                                protocol: Protocol::Udp,
                                ..filter
                            }
                        }
                        _ => filter,
                    },
                    fault,
                }
            },
        )
        // socket() takes no address filter; the rest is valid by construction.
        .prop_filter("valid", |experiment| experiment.validate().is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        // A failure is printed, not written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_experiments_round_trip(experiment in experiment()) {
        let sent = experiment.to_proto();
        prop_assert_eq!(Experiment::from_proto(&sent), Ok(experiment.clone()));
        prop_assert_eq!(experiment.to_proto(), sent);
    }
}
