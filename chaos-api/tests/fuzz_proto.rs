//! Fuzzes the daemon's untrusted-input edge: arbitrary bytes decoded as a
//! `chaos.v1.ExperimentSpec`, and structured random specs, read with
//! [`Experiment::from_proto`]. Reading never panics; a rejection names the path of the offending
//! key; an accepted spec is valid, reads back unchanged from its own `to_proto`, and is admitted
//! or refused with a reason by the default config (what the daemon does with it next).
//!
//! Runs for `CHAOS_FUZZ_SECS` seconds (default 3; CI sets 60) and prints how many cases ran.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use chaos_api::experiment::Experiment;
use chaos_api::proto::{self, fault::Kind as FaultKind, target::Kind as TargetKind};
use common::fuzz::{Fuzz, check_admission, check_named};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::Message as _;

/// Strings near the accepted ones, and junk.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "ECONNREFUSED",
            "ETIMEDOUT",
            "EIO",
            "111",
            "0",
            "134",
            "4095",
            "-1",
            "E",
            "connect",
            "sendmsg",
            "bind",
            "socket",
            "listen",
            "open",
            "read",
            "write",
            "unlink",
            "create",
            "fork",
            "exec",
            "mmap",
            "ingress",
            "egress",
            "both",
            "silent",
            "visible",
            "wrong",
            "fixed",
            "uniform",
            "normal",
            "lo",
            "eth0",
            "tcp",
            "udp",
            "icmp",
            "any",
            "80",
            "8000-8100",
            "90-80",
            "503",
            "099",
            "0503",
            "timeout",
            "0-65535",
            "65536",
            "10.0.0.0/8",
            " 10.0.0.0/8 ",
            "10.1.2.3",
            "::1/128",
            "fd00::/8",
            "10.0.0.0/33",
            "not-an-ip",
            "/",
            "..",
            "/a/../b",
            "/sys/fs/cgroup",
            "/var/lib/data",
            "checkout-db",
            "shop/frontend-7d9f8-abcde",
            "8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f",
            "8F3C9B6E-1D2A-4B5C-9E8F-0A1B2C3D4E5F",
            "0123456789abcdef",
            "containerd://0123456789abcdef",
        ])
        .prop_map(String::from),
        ".{0,40}",
    ]
}

/// Mostly one of `valid` (each field valid with good odds, so that whole specs are accepted
/// often enough to check the round trip), sometimes a [`token`].
fn one_of(valid: &[&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(valid.to_vec()).prop_map(String::from),
        1 => token(),
    ]
    .boxed()
}

fn list_of(valid: &[&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        2 => Just(Vec::new()),
        2 => prop::collection::vec(prop::sample::select(valid.to_vec()).prop_map(String::from), 1..4),
        1 => prop::collection::vec(token(), 0..5),
    ]
}

/// Numbers at the edges of every range, and anything.
fn millis() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0..100_000_000u64,
        prop::sample::select(vec![0, 1, 999, 1_000, 60_000, 86_400_000, 86_400_001]),
    ]
}

/// Mostly short, valid durations in milliseconds.
fn short_millis() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0..10_000u64, 1 => millis()]
}

fn ratio() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..=1.0f64,
        1 => any::<f64>(),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -0.0, 0.0, 1.0, 1.0 + f64::EPSILON]),
    ]
}

const ERRNOS: &[&str] = &["", "ECONNREFUSED", "ETIMEDOUT", "EIO", "EACCES", "111", "5"];
const SOCKET_CALLS: &[&str] = &["connect", "sendmsg", "bind", "socket"];
const SYSCALL_CALLS: &[&str] = &[
    "open", "read", "write", "unlink", "create", "fork", "exec", "mmap",
];

const HTTP_STATUSES: &[&str] = &["500", "502", "503", "timeout", "100", "599", "429"];

fn socket_error() -> impl Strategy<Value = proto::SocketError> {
    (one_of(ERRNOS), list_of(SOCKET_CALLS)).prop_map(|(errno, calls)| proto::SocketError {
        errno,
        calls,
        ..Default::default()
    })
}

/// The L4 errors, or (mostly without errno and calls, which they refuse) the HTTP errors.
fn api_error() -> impl Strategy<Value = proto::SocketError> {
    prop_oneof![
        2 => socket_error(),
        3 => (
            prop_oneof![4 => Just(String::new()), 1 => one_of(ERRNOS)],
            prop_oneof![4 => Just(Vec::new()), 1 => list_of(SOCKET_CALLS)],
            list_of(HTTP_STATUSES),
            one_of(&["", "", "8080", "8000-8100"]),
        )
            .prop_map(|(errno, calls, error_types, server_ports)| proto::SocketError {
                errno,
                calls,
                error_types,
                server_ports,
            }),
    ]
}

fn fault() -> impl Strategy<Value = Option<FaultKind>> {
    prop_oneof![
        1 => Just(None),
        3 => (
            one_of(&["", "ingress", "egress", "both"]),
            one_of(&["", "silent", "visible"])
        )
            .prop_map(|(direction, egress_drop)| Some(FaultKind::PacketLoss(proto::PacketLoss {
                direction,
                egress_drop
            }))),
        2 => Just(Some(FaultKind::PacketDuplication(proto::PacketDuplication {}))),
        3 => one_of(&["", "wrong", "fixed", "Fixed", "none"]).prop_map(|checksum| {
            Some(FaultKind::PacketCorruption(proto::PacketCorruption { checksum }))
        }),
        3 => prop_oneof![4 => socket_error(), 1 => api_error()]
            .prop_map(|e| Some(FaultKind::DependencyFailure(e))),
        3 => api_error().prop_map(|e| Some(FaultKind::ApiErrorInjection(e))),
        3 => (
            prop_oneof![3 => 1..2_000u64, 1 => millis()],
            prop_oneof![3 => 0..100u64, 1 => millis()],
            one_of(&["", "uniform", "normal"]),
            one_of(&["", "lo", "eth0"])
        )
            .prop_map(|(latency_ms, jitter_ms, distribution, interface)| {
                Some(FaultKind::NetworkLatency(proto::NetworkLatency {
                    latency_ms,
                    jitter_ms,
                    distribution,
                    interface,
                }))
            }),
        3 => (
            prop_oneof![
                3 => 8_000..1_000_000_000u64,
                1 => prop::sample::select(vec![0, 7_999, 100_000_000_000, 100_000_000_001]),
                1 => any::<u64>()
            ],
            prop_oneof![3 => 0..100_000u32, 1 => Just(16 << 20), 1 => any::<u32>()],
            one_of(&["", "lo", "eth0", "eth0:1"])
        )
            .prop_map(|(rate_bps, burst_bytes, interface)| {
                Some(FaultKind::BandwidthLimit(proto::BandwidthLimit {
                    rate_bps,
                    burst_bytes,
                    interface,
                }))
            }),
        3 => (
            one_of(ERRNOS),
            list_of(SYSCALL_CALLS),
            one_of(&["", "/var/lib/data", "/tmp", "/a/../b", "relative"])
        )
            .prop_map(|(errno, calls, path_prefix)| {
                Some(FaultKind::SyscallError(proto::SyscallError {
                    errno,
                    calls,
                    path_prefix,
                }))
            }),
        3 => short_millis().prop_map(|interval_ms| {
            Some(FaultKind::PodDeletion(proto::PodDeletion { interval_ms }))
        }),
        3 => (prop::option::of(ratio()), prop::option::of(ratio())).prop_map(
            |(cpu_share, memory_share)| {
                Some(FaultKind::ResourceExhaustion(proto::ResourceExhaustion {
                    cpu_share,
                    memory_share,
                }))
            }
        ),
        3 => database_load().prop_map(|load| Some(FaultKind::DatabaseLoad(load))),
    ]
}

/// A database load: mostly valid fields, edges of the rate and concurrency, and junk.
fn database_load() -> impl Strategy<Value = proto::DatabaseLoad> {
    let statement = (
        one_of(&["SELECT 1", "GET k", "UPDATE t SET n = n + 1", "", " "]),
        prop_oneof![4 => 1..10u32, 1 => Just(0u32), 1 => any::<u32>()],
    )
        .prop_map(|(sql, weight)| proto::Statement { sql, weight });
    (
        (
            one_of(&["postgres", "mysql", "redis", "Postgres", "oracle"]),
            one_of(&["db:5432", "10.0.3.7:3306", "[::1]:6379", "db", "db:0", ":1"]),
            one_of(&["", "orders", "3", "70000"]),
            one_of(&["", "app", "chaos_load"]),
        ),
        (
            one_of(&["", "/etc/chaos/db-password", "relative"]),
            one_of(&["", "DB_PASSWORD", "1BAD"]),
            one_of(&["", "point_reads", "range_scans", "writes", "row_locks", "connection_storm"]),
            prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(statement, 0..18)],
        ),
        (
            prop::option::of(prop_oneof![
                4 => 0.5..1000.0f64,
                1 => prop::sample::select(vec![0.0, -1.0, 100_000.0, 100_000.5, f64::NAN, f64::INFINITY]),
                1 => any::<f64>()
            ]),
            prop::option::of(prop_oneof![4 => 0..60u32, 1 => Just(1001u32), 1 => any::<u32>()]),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (engine, address, database, user),
                (password_file, password_env, profile, statements),
                (rate_qps, concurrency, network_namespace_of_target),
            )| proto::DatabaseLoad {
                engine,
                address,
                database,
                user,
                password_file,
                password_env,
                profile,
                statements,
                rate_qps,
                concurrency,
                network_namespace_of_target,
            },
        )
}

fn spec() -> impl Strategy<Value = proto::ExperimentSpec> {
    let kind = prop_oneof![
        1 => Just(None),
        2 => one_of(&["/sys/fs/cgroup/x", "/x.slice/y.service", "app"])
            .prop_map(|s| Some(TargetKind::Cgroup(s))),
        2 => prop_oneof![3 => 1..100_000u32, 1 => any::<u32>()].prop_map(|p| Some(TargetKind::Pid(p))),
        2 => one_of(&["0123456789abcdef", "containerd://0123456789abcdef"])
            .prop_map(|s| Some(TargetKind::ContainerId(s))),
        2 => one_of(&["8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f"])
            .prop_map(|s| Some(TargetKind::PodUid(s))),
    ];
    let target = prop_oneof![
        1 => Just(None),
        6 => (kind, one_of(&["", "", "shop/frontend-7d9f8-abcde"]))
            .prop_map(|(kind, pod_name)| Some(proto::Target { kind, pod_name })),
    ];
    let filter = prop_oneof![
        3 => Just(None),
        2 => (
            one_of(&["", "tcp", "udp", "icmp", "any"]),
            one_of(&["", "80", "8000-8100"]),
            list_of(&["10.0.0.0/8", "::1/128", "10.1.2.3", "fd00::/8"])
        )
            .prop_map(|(protocol, ports, cidrs)| Some(proto::NetFilter {
                protocol,
                ports,
                cidrs,
            })),
    ];
    let cost = prop_oneof![
        3 => 0.0..1e6f64,
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -0.0, -1.0]),
        1 => any::<f64>(),
    ];
    let max_faults = prop_oneof![2 => Just(None), 2 => (1..100_000u64).prop_map(Some), 1 => any::<Option<u64>>()];
    let guards = prop_oneof![
        3 => Just(None),
        2 => (
            any::<bool>(),
            list_of(&["error_rate", "health_checks", "impact", "", "a b"]),
            list_of(&["x", "bad name", ""]),
            one_of(&[">= 0.99", "<= 1e-3", "== 1", ">= NaN", ""]),
            prop::option::of(prop_oneof![Just(0u64), Just(50), 1..100_000u64, any::<u64>()]),
            prop::option::of(prop_oneof![Just(0u64), 1..4_000_000u64, any::<u64>()]),
        )
            .prop_map(|(restrict, apply, names, objective, interval_ms, baseline_ms)| {
                let slos = names
                    .into_iter()
                    .map(|n| {
                        let slo = proto::Slo {
                            query: "sum(x)".to_owned(),
                            objective: objective.clone(),
                            for_ms: 0,
                            description: String::new(),
                        };
                        (n, slo)
                    })
                    .collect();
                Some(proto::Guards {
                    restrict,
                    apply,
                    slos,
                    interval_ms,
                    baseline_ms,
                })
            }),
    ];
    let ramp = prop_oneof![
        3 => Just(None),
        2 => (any::<bool>(), prop::collection::vec(prop_oneof![ratio(), any::<f64>()], 0..20), prop_oneof![Just(0u64), 1000..100_000u64, any::<u64>()])
            .prop_map(|(preset, steps, hold_ms)| Some(proto::Ramp { preset, steps, hold_ms })),
    ];
    let lease = prop_oneof![3 => Just(None), 1 => any::<Option<u64>>(), 1 => (1..10_000_000u64).prop_map(Some)];
    (
        one_of(&["checkout-db", "a", "x-1"]),
        target,
        fault(),
        prop_oneof![1 => Just(None), 4 => ratio().prop_map(Some)],
        short_millis(),
        max_faults,
        filter,
        prop::option::of(cost),
        (guards, ramp, lease),
    )
        .prop_map(
            |(
                name,
                target,
                fault,
                intensity,
                duration_ms,
                max_faults,
                filter,
                budget,
                (guards, ramp, lease_ms),
            )| {
                proto::ExperimentSpec {
                    targets: Vec::new(),
                    name,
                    target,
                    fault: fault.map(|kind| proto::Fault { kind: Some(kind) }),
                    intensity,
                    duration_ms,
                    max_faults,
                    filter,
                    budget,
                    guards,
                    ramp,
                    lease_ms,
                }
            },
        )
}

/// Specs [`check`] saw accepted.
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

fn check(spec: &proto::ExperimentSpec) -> Result<(), TestCaseError> {
    match Experiment::from_proto(spec) {
        Ok(experiment) => {
            ACCEPTED.fetch_add(1, Ordering::Relaxed);
            prop_assert!(experiment.validate().is_ok(), "{experiment:?}");
            prop_assert!(!experiment.dry_run);
            let again = experiment.to_proto();
            prop_assert_eq!(
                Experiment::from_proto(&again),
                Ok(experiment.clone()),
                "{:?}",
                again
            );
            check_admission(&experiment)?;
        }
        Err(error) => check_named(&error)?,
    }
    Ok(())
}

/// [`check`] of whatever prost decodes from `bytes`.
fn check_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    match proto::ExperimentSpec::decode(bytes) {
        Ok(p) => check(&p),
        Err(_) => Ok(()),
    }
}

#[test]
fn proto_to_model_never_panics_and_names_every_rejection() {
    Fuzz::for_the_budget("fuzz_proto", 512, |fuzz| {
        fuzz.run("structured spec", &spec(), |p| check(&p));
        // Arbitrary bytes: whatever prost decodes must be read without panicking.
        let bytes = prop::collection::vec(any::<u8>(), 0..256);
        fuzz.run("arbitrary bytes", &bytes, |bytes| check_bytes(&bytes));
        // Valid specs re-encoded with random bytes appended: later fields override earlier
        // ones, unknown fields are skipped.
        let tailed = (spec(), prop::collection::vec(any::<u8>(), 0..64));
        fuzz.run("spec with a random tail", &tailed, |(p, tail)| {
            let mut bytes = p.encode_to_vec();
            bytes.extend_from_slice(&tail);
            check_bytes(&bytes)
        });
    });
    let accepted = ACCEPTED.load(Ordering::Relaxed);
    println!("fuzz_proto: {accepted} accepted");
    assert!(accepted > 0, "the strategy never reaches an accepted spec");
}
