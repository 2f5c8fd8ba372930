//! Fuzzes the daemon's untrusted-input edge: arbitrary bytes decoded as a
//! `chaos.v1.ExperimentSpec`, and structured random specs, converted to the domain. The
//! conversion never panics, rejects with a named field or accepts a spec that plans.
//!
//! Runs for `CHAOS_FUZZ_SECS` seconds (default 3; CI sets 60) and prints how many cases ran.

use std::time::{Duration, Instant};

use chaos_api::proto::{self, fault, target};
use chaos_daemon::grpc::convert::spec_from_proto;
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};

fn budget() -> Duration {
    let secs = std::env::var("CHAOS_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

/// Strings near the accepted ones, and junk.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "ECONNREFUSED",
            "ETIMEDOUT",
            "111",
            "0",
            "134",
            "-1",
            "E",
            "connect",
            "sendmsg",
            "bind",
            "socket",
            "listen",
            "tcp",
            "udp",
            "icmp",
            "any",
            "80",
            "8000-8100",
            "90-80",
            "0-65535",
            "65536",
            "10.0.0.0/8",
            "::1/128",
            "fd00::/8",
            "10.0.0.0/33",
            "not-an-ip",
            "/",
            "..",
            "/sys/fs/cgroup",
            "8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f",
            "0123456789abcdef",
        ])
        .prop_map(String::from),
        ".{0,40}",
    ]
}

fn spec() -> impl Strategy<Value = proto::ExperimentSpec> {
    let target = prop_oneof![
        Just(None),
        token().prop_map(|s| Some(target::Kind::Cgroup(s))),
        any::<u32>().prop_map(|p| Some(target::Kind::Pid(p))),
        token().prop_map(|s| Some(target::Kind::ContainerId(s))),
        token().prop_map(|s| Some(target::Kind::PodUid(s))),
    ];
    let fault = prop_oneof![
        Just(None),
        (any::<i32>(), any::<bool>()).prop_map(|(direction, visible_egress_drop)| Some(
            fault::Kind::PacketLoss(proto::PacketLoss {
                direction,
                visible_egress_drop
            })
        )),
        (token(), prop::collection::vec(token(), 0..5)).prop_map(|(errno, calls)| Some(
            fault::Kind::SocketError(proto::SocketError { errno, calls })
        )),
    ];
    let filter = (token(), token(), prop::collection::vec(token(), 0..12)).prop_map(
        |(protocol, ports, cidrs)| proto::NetFilter {
            protocol,
            ports,
            cidrs,
        },
    );
    let probability = prop_oneof![any::<f64>(), 0.0..=1.0f64, Just(f64::NAN), Just(-0.0)];
    let duration = prop_oneof![any::<u64>(), 0..100_000_000u64];
    (
        token(),
        target,
        fault,
        probability,
        duration,
        any::<Option<u64>>(),
        prop::option::of(filter),
        any::<Option<f64>>(),
    )
        .prop_map(
            |(name, t, f, probability, duration_ms, max_faults, filter, budget)| {
                proto::ExperimentSpec {
                    name,
                    target: t.map(|kind| proto::Target { kind: Some(kind) }),
                    fault: f.map(|kind| proto::Fault { kind: Some(kind) }),
                    probability,
                    duration_ms,
                    max_faults,
                    filter,
                    budget,
                }
            },
        )
}

fn check(p: &proto::ExperimentSpec) -> Result<(), TestCaseError> {
    match spec_from_proto(p) {
        Ok((_, spec)) => prop_assert!(spec.plan().is_ok(), "accepted but does not plan: {p:?}"),
        Err(e) => prop_assert!(
            !e.field.is_empty() && !e.allowed.is_empty(),
            "unnamed error {e:?}"
        ),
    }
    Ok(())
}

#[test]
fn proto_to_domain_never_panics_and_names_every_rejection() {
    let (budget, started) = (budget(), Instant::now());
    let config = Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    };
    let mut cases = 0u64;
    while cases == 0 || started.elapsed() < budget {
        let mut runner = TestRunner::new(config.clone());
        runner.run(&spec(), |p| check(&p)).unwrap();
        // Arbitrary bytes: whatever prost accepts must convert without panicking.
        let mut runner = TestRunner::new(config.clone());
        runner
            .run(&prop::collection::vec(any::<u8>(), 0..256), |bytes| {
                if let Ok(p) = <proto::ExperimentSpec as prost::Message>::decode(bytes.as_slice()) {
                    check(&p)?;
                }
                Ok(())
            })
            .unwrap();
        cases += 2 * u64::from(config.cases);
    }
    println!(
        "proto fuzz: {cases} cases in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
