//! Flags and files -> the one experiment model ([`chaos_api::experiment::Experiment`]), and
//! offline validation (`chaos-ctl validate`).
//!
//! `chaos-ctl experiment <type> ...` puts its flags into the request message exactly as given
//! (an absent flag is the message's "unset") and reads it with [`Experiment::from_proto`], the
//! same reader the daemon uses: the model fills in the type's defaults (errno, calls,
//! intensity, direction, ...) and names any error by its field (`intensity`,
//! `fault.calls[1]`). The durations, which the message carries in milliseconds, are then put
//! back exactly as given and the experiment is checked with [`Experiment::validate`], so
//! nothing invalid is ever sent. chaos-ctl adds three rules the message cannot express: a flag
//! of another type is refused, `network_latency` needs `--latency-ms` and `bandwidth_limit`
//! needs `--rate`. `--rate` and `--burst` are read in the file's notation (`1mbit`, `32kb`)
//! into the message's bits and bytes per second; a database load's `--rate` is queries per
//! second, and its `--statement [WEIGHT:]SQL` an entry of `fault.statements`.
//!
//! The submodule `files` reads experiment files and chaos configs offline (`apply -f`,
//! `validate`).

mod files;
mod guards;

use std::{fmt, time::Duration};

use chaos_api::error::ModelError;
use chaos_api::experiment::{
    Bytes, EgressDrop, Experiment, ExperimentType, Fault, QUERY_RATE_ALLOWED, Rate,
};
use chaos_api::proto::{self, fault::Kind as FaultKind, target::Kind as TargetKind};

use crate::cli::{ExperimentArgs, FaultArgs};

pub use files::{read_experiment, validate};

/// Why the flags do not make a valid experiment.
#[derive(Debug)]
pub enum SpecError {
    /// The model refuses it; the error names the field.
    Model(ModelError),
    /// A fault flag of another experiment type.
    NotASetting {
        flag: &'static str,
        kind: ExperimentType,
    },
}

impl From<ModelError> for SpecError {
    fn from(e: ModelError) -> Self {
        Self::Model(e)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Model(e) => {
                write!(f, "{e}")?;
                // Name the flag when it is not just the field's name.
                match (e.path(), e.path().and_then(flag_of)) {
                    (Some(path), Some(flag)) if flag != format!("--{}", path.replace('_', "-")) => {
                        write!(f, " ({flag})")
                    }
                    _ => Ok(()),
                }
            }
            Self::NotASetting { flag, kind } => write!(
                f,
                "{flag} is not a setting of {kind} (see `chaos-ctl experiment --help`)"
            ),
        }
    }
}

impl std::error::Error for SpecError {}

/// The experiment the flags describe, with the model's defaults, validated.
pub fn experiment(a: &ExperimentArgs) -> Result<Experiment, SpecError> {
    let kind = a.kind;
    let mut flags = a.fault.clone();
    let fault = fault(kind, &mut flags, a.guards.ramp.is_some())?;
    if let Some(flag) = flags.first_given() {
        return Err(SpecError::NotASetting { flag, kind });
    }
    let t = &a.target;
    let target = if let Some(path) = &t.cgroup {
        Some(TargetKind::Cgroup(path.clone()))
    } else if let Some(pid) = t.pid {
        Some(TargetKind::Pid(pid))
    } else if let Some(id) = &t.container {
        Some(TargetKind::ContainerId(id.clone()))
    } else {
        t.pod_uid.clone().map(TargetKind::PodUid)
    };
    let f = &a.filter;
    let filter = (f.protocol.is_some() || f.ports.is_some() || !f.cidrs.is_empty()).then(|| {
        proto::NetFilter {
            protocol: f.protocol.clone().unwrap_or_default(),
            ports: f.ports.clone().unwrap_or_default(),
            cidrs: f.cidrs.clone(),
        }
    });
    let spec = proto::ExperimentSpec {
        name: a
            .name
            .clone()
            .unwrap_or_else(|| kind.as_str().replace('_', "-")),
        target: Some(proto::Target {
            kind: target,
            pod_name: a.pod_name.clone().unwrap_or_default(),
        }),
        targets: Vec::new(),
        fault: Some(proto::Fault { kind: Some(fault) }),
        intensity: a.intensity,
        duration_ms: a.duration.map_or(0, ceil_millis),
        max_faults: a.max_faults,
        filter,
        budget: a.budget,
        guards: guards::guards(&a.guards)?,
        ramp: guards::ramp(&a.guards)?,
        lease_ms: a.lease.map(ceil_millis),
    };
    let mut experiment = Experiment::from_proto(&spec)?;
    // The message carries milliseconds (rounded up above, 0 = the default); judge the
    // durations as given.
    if let Some(duration) = a.duration {
        experiment.duration = duration;
    }
    if a.lease.is_some() {
        experiment.lease = a.lease;
    }
    if a.guards.guard_interval.is_some() {
        experiment.guards.interval = a.guards.guard_interval;
    }
    if a.guards.baseline.is_some() {
        experiment.guards.baseline = a.guards.baseline;
    }
    if let Fault::PodDeletion(deletion) = &mut experiment.fault {
        deletion.interval = a.fault.interval;
    }
    experiment.dry_run = a.dry_run;
    experiment.validate()?;
    Ok(experiment)
}

/// The message's fault of `kind` from the flags it takes, which are taken out of `flags`.
/// Empty strings and lists are the message's "unset": the type's default.
fn fault(kind: ExperimentType, flags: &mut FaultArgs, ramp: bool) -> Result<FaultKind, SpecError> {
    let socket = |flags: &mut FaultArgs| proto::SocketError {
        errno: flags.errno.take().unwrap_or_default(),
        calls: flags.calls.take().unwrap_or_default(),
        ..Default::default()
    };
    Ok(match kind {
        ExperimentType::PacketLoss => FaultKind::PacketLoss(proto::PacketLoss {
            direction: flags.direction.take().unwrap_or_default(),
            egress_drop: if std::mem::take(&mut flags.visible_drop) {
                EgressDrop::Visible.as_str().to_owned()
            } else {
                String::new()
            },
        }),
        ExperimentType::PacketDuplication => {
            FaultKind::PacketDuplication(proto::PacketDuplication {})
        }
        ExperimentType::PacketCorruption => FaultKind::PacketCorruption(proto::PacketCorruption {
            checksum: flags.checksum.take().unwrap_or_default(),
        }),
        ExperimentType::DependencyFailure => FaultKind::DependencyFailure(socket(flags)),
        // With --error-types the HTTP errors, which the model refuses with --errno or --calls.
        ExperimentType::ApiErrorInjection => FaultKind::ApiErrorInjection(proto::SocketError {
            error_types: flags.error_types.take().unwrap_or_default(),
            server_ports: flags.server_ports.take().unwrap_or_default(),
            ..socket(flags)
        }),
        ExperimentType::NetworkLatency => FaultKind::NetworkLatency(proto::NetworkLatency {
            // With a ramp, 0 = its first step.
            latency_ms: match flags.latency_ms.take() {
                Some(ms) => ms,
                None if ramp => 0,
                None => {
                    return Err(SpecError::Model(ModelError::Parse {
                        path: "fault.latency".to_owned(),
                        message: "required field is missing: network_latency needs the delay to \
                                  add, in milliseconds, e.g. 100 (or a --ramp of delays)"
                            .to_owned(),
                    }));
                }
            },
            jitter_ms: flags.jitter_ms.take().unwrap_or_default(),
            distribution: flags.distribution.take().unwrap_or_default(),
            interface: flags.interface.take().unwrap_or_default(),
        }),
        ExperimentType::BandwidthLimit => FaultKind::BandwidthLimit(proto::BandwidthLimit {
            rate_bps: match flags.rate.take() {
                Some(text) => Rate::parse("fault.rate", &text)?.bits_per_sec,
                None => {
                    return Err(SpecError::Model(ModelError::Parse {
                        path: "fault.rate".to_owned(),
                        message: "required field is missing: bandwidth_limit needs the rate the \
                                  target's egress may leave at, e.g. 1mbit"
                            .to_owned(),
                    }));
                }
            },
            burst_bytes: match flags.burst.take() {
                Some(text) => Bytes::parse("fault.burst", &text)?.0,
                None => 0,
            },
            interface: flags.interface.take().unwrap_or_default(),
        }),
        ExperimentType::SyscallError => FaultKind::SyscallError(proto::SyscallError {
            errno: flags.errno.take().unwrap_or_default(),
            calls: flags.calls.take().unwrap_or_default(),
            path_prefix: flags.path_prefix.take().unwrap_or_default(),
        }),
        ExperimentType::PodDeletion => FaultKind::PodDeletion(proto::PodDeletion {
            interval_ms: flags.interval.take().map_or(0, ceil_millis),
        }),
        ExperimentType::ResourceExhaustion => {
            FaultKind::ResourceExhaustion(proto::ResourceExhaustion {
                cpu_share: flags.cpu_share.take(),
                memory_share: flags.memory_share.take(),
            })
        }
        ExperimentType::DatabaseLoad => FaultKind::DatabaseLoad(proto::DatabaseLoad {
            engine: flags.engine.take().unwrap_or_default(),
            address: flags.address.take().unwrap_or_default(),
            database: flags.database.take().unwrap_or_default(),
            user: flags.user.take().unwrap_or_default(),
            password_file: flags.password_file.take().unwrap_or_default(),
            password_env: flags.password_env.take().unwrap_or_default(),
            profile: flags.profile.take().unwrap_or_default(),
            statements: std::mem::take(&mut flags.statements)
                .iter()
                .enumerate()
                .map(|(i, text)| statement(i, text))
                .collect::<Result<_, _>>()?,
            // Unset: the ramp's first step, else the model's error.
            rate_qps: match flags.rate.take() {
                Some(text) => Some(text.trim().parse::<f64>().map_err(|_| {
                    SpecError::Model(ModelError::Invalid {
                        path: "fault.rate".to_owned(),
                        value: format!("{text:?}"),
                        allowed: QUERY_RATE_ALLOWED.to_owned(),
                    })
                })?),
                None => None,
            },
            concurrency: flags.concurrency.take(),
            network_namespace_of_target: std::mem::take(&mut flags.in_target_netns),
        }),
    })
}

/// The `index`th `--statement [WEIGHT:]SQL`: a leading whole number and `:` is its weight
/// (no statement or command starts with a digit), else the weight is 1.
fn statement(index: usize, text: &str) -> Result<proto::Statement, SpecError> {
    let weighted = text
        .split_once(':')
        .filter(|(digits, _)| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    let Some((digits, sql)) = weighted else {
        return Ok(proto::Statement {
            sql: text.to_owned(),
            weight: 1,
        });
    };
    match digits.parse::<u32>() {
        Ok(weight) => Ok(proto::Statement {
            sql: sql.to_owned(),
            weight,
        }),
        Err(_) => Err(SpecError::Model(ModelError::Invalid {
            path: format!("fault.statements[{index}].weight"),
            value: digits.to_owned(),
            allowed: format!("a whole number 1 to {} before the `:`", u32::MAX),
        })),
    }
}

impl FaultArgs {
    /// The first flag still given (not taken by the type's fault).
    fn first_given(&self) -> Option<&'static str> {
        let Self {
            direction,
            visible_drop,
            checksum,
            errno,
            calls,
            error_types,
            server_ports,
            path_prefix,
            latency_ms,
            jitter_ms,
            distribution,
            rate,
            burst,
            interface,
            interval,
            cpu_share,
            memory_share,
            engine,
            address,
            database,
            user,
            password_file,
            password_env,
            profile,
            statements,
            concurrency,
            in_target_netns,
        } = self;
        [
            ("--direction", direction.is_some()),
            ("--visible-drop", *visible_drop),
            ("--checksum", checksum.is_some()),
            ("--errno", errno.is_some()),
            ("--calls", calls.is_some()),
            ("--error-types", error_types.is_some()),
            ("--server-ports", server_ports.is_some()),
            ("--path-prefix", path_prefix.is_some()),
            ("--latency-ms", latency_ms.is_some()),
            ("--jitter-ms", jitter_ms.is_some()),
            ("--distribution", distribution.is_some()),
            ("--rate", rate.is_some()),
            ("--burst", burst.is_some()),
            ("--interface", interface.is_some()),
            ("--interval", interval.is_some()),
            ("--cpu-share", cpu_share.is_some()),
            ("--memory-share", memory_share.is_some()),
            ("--engine", engine.is_some()),
            ("--address", address.is_some()),
            ("--database", database.is_some()),
            ("--user", user.is_some()),
            ("--password-file", password_file.is_some()),
            ("--password-env", password_env.is_some()),
            ("--profile", profile.is_some()),
            ("--statement", !statements.is_empty()),
            ("--concurrency", concurrency.is_some()),
            ("--in-target-netns", *in_target_netns),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }
}

/// Whole milliseconds, rounded up (a finer duration is refused by validation, not rounded).
fn ceil_millis(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The flag that sets the model's field at `path` (`fault.calls[1]` -> `--calls`).
fn flag_of(path: &str) -> Option<&'static str> {
    let field = path.split('[').next().unwrap_or(path);
    Some(match field {
        "name" => "--name",
        "target" => "--cgroup, --pid, --container or --pod-uid",
        "target.cgroup" => "--cgroup",
        "target.pid" => "--pid",
        "target.container_id" => "--container",
        "target.pod_uid" => "--pod-uid",
        "target.pod_name" => "--pod-name",
        "duration" => "--duration",
        "intensity" => "--intensity",
        "budget" => "--budget",
        "max_faults" => "--max-faults",
        "fault.direction" => "--direction",
        "fault.egress_drop" => "--visible-drop",
        "fault.checksum" => "--checksum",
        "fault.errno" => "--errno",
        "fault.calls" => "--calls",
        "fault.error_types" => "--error-types",
        "fault.server_ports" => "--server-ports",
        "fault.path_prefix" => "--path-prefix",
        "fault.latency" => "--latency-ms",
        "fault.jitter" => "--jitter-ms",
        "fault.distribution" => "--distribution",
        "fault.rate" => "--rate",
        "fault.burst" => "--burst",
        "fault.interface" => "--interface",
        "fault.interval" => "--interval",
        "fault.cpu_share" => "--cpu-share",
        "fault.memory_share" => "--memory-share",
        "fault.engine" => "--engine",
        "fault.address" => "--address",
        "fault.database" => "--database",
        "fault.user" => "--user",
        "fault.password" => "--password-file or --password-env",
        "fault.password_file" => "--password-file",
        "fault.password_env" => "--password-env",
        "fault.profile" => "--profile or --statement",
        "fault.statements" => "--statement",
        "fault.concurrency" => "--concurrency",
        "fault.network_namespace_of_target" => "--in-target-netns",
        "targets" => "--pod or --selector (with --max-pods)",
        "filter" => "--protocol, --ports, --cidr",
        "filter.protocol" => "--protocol",
        "filter.ports" => "--ports",
        "filter.cidrs" => "--cidr",
        "lease" => "--lease",
        "guards.apply" => "--guard",
        "guards.interval" => "--guard-interval",
        "guards.baseline" => "--baseline",
        "ramp.steps" | "ramp.preset" => "--ramp",
        "ramp.hold" => "--ramp-hold",
        slo if slo.starts_with("guards.slos") => "--slo",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use chaos_api::experiment::{
        ApiError, BandwidthLimit, CorruptChecksum, Direction, Errno, HttpError, HttpStatus,
        PacketCorruption, PacketLoss, PortRange, Protocol, SocketError, SyscallError,
        TargetKind as Kind,
    };
    use clap::Parser as _;

    pub(super) fn build(args: &[&str]) -> Result<Experiment, SpecError> {
        let argv = [&["chaos-ctl", "experiment"], args].concat();
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Experiment(a)) => experiment(&a),
            Ok(_) => panic!("not an experiment"),
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    pub(super) fn error_path(args: &[&str]) -> String {
        match build(args) {
            Err(SpecError::Model(e)) => e.path().unwrap_or("").to_owned(),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    pub(super) const TARGET: [&str; 4] = ["--cgroup", "/app.slice", "--duration", "5m"];

    #[test]
    fn defaults_come_from_the_model() {
        let with = |kind: &str, extra: &[&str]| build(&[&[kind], &TARGET[..], extra].concat());
        for kind in [
            ExperimentType::DependencyFailure,
            ExperimentType::ApiErrorInjection,
        ] {
            let e = with(kind.as_str(), &["--intensity", "0.2"]).unwrap();
            let expected = SocketError::defaults(kind);
            assert!(
                matches!(&e.fault, Fault::DependencyFailure(s) | Fault::ApiErrorInjection(ApiError::Socket(s)) if *s == expected),
                "{e:?}"
            );
            assert_eq!(e.name, kind.as_str().replace('_', "-"));
        }
        let e = with("syscall_error", &["--intensity", "0.2"]).unwrap();
        assert_eq!(e.fault, Fault::SyscallError(SyscallError::defaults()));
        let e = with("packet_loss", &["--intensity", "0.2"]).unwrap();
        assert_eq!(e.fault, Fault::PacketLoss(PacketLoss::default()));
        assert_eq!((e.name.as_str(), e.intensity), ("packet-loss", 0.2));
        assert!(e.filter.protocol == chaos_api::experiment::Protocol::Any && !e.dry_run);
        // Intensity defaults only where the model has one.
        for kind in ExperimentType::ALL {
            let extra: &[&str] = match kind {
                ExperimentType::NetworkLatency => &["--latency-ms", "20"],
                ExperimentType::BandwidthLimit => &["--rate", "1mbit"],
                ExperimentType::DatabaseLoad => &[
                    "--engine",
                    "redis",
                    "--address",
                    "cache:6379",
                    "--profile",
                    "writes",
                    "--rate",
                    "10",
                ],
                _ => &[],
            };
            match (with(kind.as_str(), extra), kind.default_intensity()) {
                (Ok(e), Some(default)) => assert_eq!(e.intensity, default),
                (Err(SpecError::Model(e)), None) => {
                    assert_eq!(e.path(), Some("intensity"), "{kind}");
                    assert!(e.to_string().contains(kind.as_str()), "{e}");
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn flags_reach_the_model() {
        let e = build(&[
            "packet_loss",
            "--pid",
            "42",
            "--duration",
            "90",
            "--intensity",
            "0.05",
            "--direction",
            "egress",
            "--visible-drop",
            "--protocol",
            "tcp",
            "--ports",
            "5432",
            "--cidr",
            "10.0.0.0/8, 192.168.1.1",
            "--pod-name",
            "shop/frontend-7d9f8-abcde",
            "--name",
            "db-loss",
            "--budget",
            "2.5",
            "--max-faults",
            "100",
            "--dry-run",
        ])
        .unwrap();
        assert_eq!(e.targets[0].kind, Kind::Pid(42));
        assert_eq!(
            e.targets[0].pod_name.as_deref(),
            Some("shop/frontend-7d9f8-abcde")
        );
        assert_eq!(
            e.fault,
            Fault::PacketLoss(PacketLoss {
                direction: Direction::Egress,
                egress_drop: EgressDrop::Visible,
            })
        );
        assert_eq!(
            (e.duration, e.budget, e.max_faults),
            (Duration::from_secs(90), Some(2.5), Some(100))
        );
        assert_eq!(e.filter.cidrs.len(), 2);
        assert!(e.dry_run && e.name == "db-loss");
        // What is sent reads back as the same experiment.
        let sent = Experiment::from_proto(&e.to_proto()).unwrap();
        assert_eq!(
            sent,
            Experiment {
                dry_run: false,
                ..e
            }
        );

        let e = build(&[
            "dependency_failure",
            "--container",
            "containerd://3f4e5d6c7b8a9f0e1d2c3b4a",
            "--duration",
            "1m",
            "--intensity",
            "1",
            "--errno",
            "ETIMEDOUT",
            "--calls",
            "connect,bind",
        ])
        .unwrap();
        assert_eq!(
            e.targets[0].kind,
            Kind::ContainerId("3f4e5d6c7b8a9f0e1d2c3b4a".into())
        );
        let Fault::DependencyFailure(s) = &e.fault else {
            panic!("{e:?}")
        };
        assert_eq!(
            (s.errno, s.calls.len()),
            (Errno::from_name("ETIMEDOUT").unwrap(), 2)
        );
    }

    #[test]
    fn http_error_flags_reach_the_model() {
        let e = build(
            &[
                &[
                    "api_error_injection",
                    "--intensity",
                    "0.3",
                    "--error-types",
                    "500,502,503,timeout",
                    "--server-ports",
                    "8000-8100",
                    "--cidr",
                    "10.0.0.0/8",
                ],
                &TARGET[..],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(
            e.fault,
            Fault::ApiErrorInjection(ApiError::Http(HttpError {
                error_types: vec![
                    HttpStatus::Code(500),
                    HttpStatus::Code(502),
                    HttpStatus::Code(503),
                    HttpStatus::Timeout,
                ],
                server_ports: Some(PortRange {
                    low: 8000,
                    high: 8100
                }),
            }))
        );
        let sent = e.to_proto();
        let Some(FaultKind::ApiErrorInjection(message)) =
            sent.fault.as_ref().and_then(|f| f.kind.clone())
        else {
            panic!("{sent:?}")
        };
        assert_eq!(message.error_types, ["500", "502", "503", "timeout"]);
        assert_eq!(message.server_ports, "8000-8100");
        assert_eq!(Experiment::from_proto(&sent).unwrap(), e);
        // Without --error-types: the L4 errors, as before.
        let e =
            build(&[&["api_error_injection", "--intensity", "0.3"], &TARGET[..]].concat()).unwrap();
        assert!(
            matches!(&e.fault, Fault::ApiErrorInjection(ApiError::Socket(_))),
            "{e:?}"
        );
    }

    #[test]
    fn http_error_flag_misuse_is_refused() {
        let t = &TARGET[..];
        let api = |extra: &[&str]| {
            build(&[&["api_error_injection", "--intensity", "0.3"], extra, t].concat())
        };
        // The L4 flags with --error-types, --server-ports without it: the model's errors,
        // with the flag.
        let e = api(&["--error-types", "503", "--errno", "EIO"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fault.errno: not allowed with fault.error_types (HTTP errors); the L4 errors take \
             errno and calls (--errno)"
        );
        let e = api(&["--error-types", "503", "--calls", "connect"]).unwrap_err();
        assert!(e.to_string().starts_with("fault.calls: not allowed"), "{e}");
        assert!(e.to_string().ends_with(" (--calls)"), "{e}");
        let e = api(&["--server-ports", "8080"]).unwrap_err();
        assert!(e.to_string().starts_with("fault.server_ports: "), "{e}");
        assert!(e.to_string().ends_with(" (--server-ports)"), "{e}");
        for (extra, path, flag) in [
            (
                &["--error-types", "503,600"][..],
                "fault.error_types[1]",
                "--error-types",
            ),
            (
                &["--error-types", "503,503"][..],
                "fault.error_types[1]",
                "--error-types",
            ),
            (
                &["--error-types", "503", "--server-ports", "0"][..],
                "fault.server_ports",
                "--server-ports",
            ),
            (
                &["--error-types", "503", "--ports", "8080"][..],
                "filter.ports",
                "--ports",
            ),
            (
                &["--error-types", "503", "--protocol", "udp"][..],
                "filter.protocol",
                "--protocol",
            ),
        ] {
            match api(extra) {
                Err(SpecError::Model(error)) => {
                    assert_eq!(error.path(), Some(path), "{extra:?}: {error}");
                    assert_eq!(flag_of(path), Some(flag));
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        // The HTTP flags belong to api_error_injection only.
        for kind in ["dependency_failure", "packet_loss", "syscall_error"] {
            for (flag, value) in [("--error-types", "503"), ("--server-ports", "8080")] {
                let e =
                    build(&[&[kind, "--intensity", "0.1", flag, value], t].concat()).unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!(
                        "{flag} is not a setting of {kind} (see `chaos-ctl experiment --help`)"
                    )
                );
            }
        }
    }

    #[test]
    fn duplication_and_corruption_flags_reach_the_model() {
        let e = build(
            &[
                &[
                    "packet_duplication",
                    "--intensity",
                    "0.1",
                    "--protocol",
                    "udp",
                    "--ports",
                    "5000-5100",
                    "--cidr",
                    "10.0.0.0/8",
                ],
                &TARGET[..],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(e.fault, Fault::PacketDuplication);
        assert_eq!((e.name.as_str(), e.intensity), ("packet-duplication", 0.1));
        assert_eq!(e.filter.protocol, Protocol::Udp);
        assert_eq!(
            e.filter.ports,
            Some(PortRange {
                low: 5000,
                high: 5100
            })
        );
        assert_eq!(e.filter.cidrs.len(), 1);
        let sent = e.to_proto();
        assert_eq!(
            sent.fault.as_ref().and_then(|f| f.kind.clone()),
            Some(FaultKind::PacketDuplication(proto::PacketDuplication {}))
        );
        assert_eq!(Experiment::from_proto(&sent).unwrap(), e);

        // --checksum: wrong by default, fixed on request.
        let corruption = |extra: &[&str]| {
            build(
                &[
                    &["packet_corruption", "--intensity", "0.02"],
                    extra,
                    &TARGET[..],
                ]
                .concat(),
            )
        };
        for (extra, checksum) in [
            (&[][..], CorruptChecksum::Wrong),
            (&["--checksum", "wrong"][..], CorruptChecksum::Wrong),
            (&["--checksum", "fixed"][..], CorruptChecksum::Fixed),
        ] {
            let e = corruption(extra).unwrap();
            assert_eq!(
                e.fault,
                Fault::PacketCorruption(PacketCorruption { checksum }),
                "{extra:?}"
            );
            let sent = e.to_proto();
            let Some(FaultKind::PacketCorruption(message)) =
                sent.fault.as_ref().and_then(|f| f.kind.clone())
            else {
                panic!("{sent:?}")
            };
            assert_eq!(message.checksum, checksum.as_str());
            assert_eq!(Experiment::from_proto(&sent).unwrap(), e);
        }
        let e = corruption(&[
            "--checksum",
            "fixed",
            "--protocol",
            "tcp",
            "--ports",
            "5432",
        ])
        .unwrap();
        assert_eq!(e.filter.protocol, Protocol::Tcp);
        assert_eq!(e.name, "packet-corruption");
    }

    #[test]
    fn duplication_and_corruption_flag_misuse_is_refused() {
        let t = &TARGET[..];
        // icmp: the model's error, with the flag.
        let e = build(
            &[
                &[
                    "packet_corruption",
                    "--intensity",
                    "0.1",
                    "--protocol",
                    "icmp",
                ],
                t,
            ]
            .concat(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "filter.protocol: icmp is not allowed; expected tcp, udp or any (packet_corruption \
             changes TCP and UDP payloads) (--protocol)"
        );
        // Duplication takes icmp.
        build(
            &[
                &[
                    "packet_duplication",
                    "--intensity",
                    "0.1",
                    "--protocol",
                    "icmp",
                ],
                t,
            ]
            .concat(),
        )
        .unwrap();
        // --checksum belongs to packet_corruption only.
        for kind in ["packet_duplication", "packet_loss", "dependency_failure"] {
            let e = build(&[&[kind, "--intensity", "0.1", "--checksum", "fixed"], t].concat())
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "--checksum is not a setting of {kind} (see `chaos-ctl experiment --help`)"
                )
            );
        }
        // Duplication takes none of the other types' settings.
        for (flag, value) in [
            ("--direction", "egress"),
            ("--errno", "EIO"),
            ("--latency-ms", "5"),
        ] {
            let e = build(
                &[
                    &["packet_duplication", "--intensity", "0.1", flag, value],
                    t,
                ]
                .concat(),
            )
            .unwrap_err();
            assert!(
                matches!(
                    e,
                    SpecError::NotASetting {
                        kind: ExperimentType::PacketDuplication,
                        ..
                    }
                ),
                "{flag}: {e:?}"
            );
        }
        let e = build(
            &[
                &["packet_corruption", "--intensity", "0.1", "--visible-drop"],
                t,
            ]
            .concat(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--visible-drop is not a setting of packet_corruption (see `chaos-ctl experiment \
             --help`)"
        );
        // Intensity is required; a bad checksum is clap's error, listing the values.
        assert_eq!(
            error_path(&[&["packet_duplication"], t].concat()),
            "intensity"
        );
        assert_eq!(
            error_path(&[&["packet_corruption"], t].concat()),
            "intensity"
        );
        let argv = [
            &[
                "chaos-ctl",
                "experiment",
                "packet_corruption",
                "--intensity",
                "0.1",
            ][..],
            &["--checksum", "bad"],
            t,
        ]
        .concat();
        let error = Cli::try_parse_from(argv).err().expect("refused by clap");
        let shown = error.to_string();
        assert!(
            shown.contains("'bad'") && shown.contains("wrong") && shown.contains("fixed"),
            "{shown}"
        );
        assert_eq!(flag_of("fault.checksum"), Some("--checksum"));
    }

    #[test]
    fn bandwidth_flags_reach_the_model() {
        let limited = |extra: &[&str]| {
            build(&[&["bandwidth_limit", "--rate", "1mbit"], extra, &TARGET[..]].concat())
        };
        let e = limited(&[]).unwrap();
        assert_eq!(
            e.fault,
            Fault::BandwidthLimit(BandwidthLimit {
                rate: Rate::from_bps(1_000_000),
                burst: Bytes(0),
                interface: None,
            })
        );
        assert_eq!((e.name.as_str(), e.intensity), ("bandwidth-limit", 1.0));
        let e = limited(&[
            "--burst",
            "32kb",
            "--interface",
            "eth0",
            "--protocol",
            "tcp",
            "--ports",
            "443",
            "--cidr",
            "10.96.0.0/12",
            "--intensity",
            "1",
        ])
        .unwrap();
        assert_eq!(
            e.fault,
            Fault::BandwidthLimit(BandwidthLimit {
                rate: Rate::from_bps(1_000_000),
                burst: Bytes(32 * 1024),
                interface: Some("eth0".to_owned()),
            })
        );
        assert_eq!(e.filter.protocol, Protocol::Tcp);
        assert_eq!(
            e.filter.ports,
            Some(PortRange {
                low: 443,
                high: 443
            })
        );
        let sent = e.to_proto();
        assert_eq!(
            sent.fault.as_ref().and_then(|f| f.kind.clone()),
            Some(FaultKind::BandwidthLimit(proto::BandwidthLimit {
                rate_bps: 1_000_000,
                burst_bytes: 32_768,
                interface: "eth0".to_owned(),
            }))
        );
        assert_eq!(Experiment::from_proto(&sent).unwrap(), e);
        // Bytes per second, and a burst in plain bytes.
        let e = build(
            &[
                &["bandwidth_limit", "--rate", "1.5mbps", "--burst", "1500"],
                &TARGET[..],
            ]
            .concat(),
        )
        .unwrap();
        let Fault::BandwidthLimit(limit) = &e.fault else {
            panic!("{e:?}")
        };
        assert_eq!(
            (limit.rate, limit.burst),
            (Rate::from_bps(12_000_000), Bytes(1500))
        );
    }

    #[test]
    fn bandwidth_flag_misuse_is_refused() {
        let t = &TARGET[..];
        let limited = |extra: &[&str]| build(&[&["bandwidth_limit"], extra, t].concat());
        // --rate is required; the model's message, with the flag.
        let e = limited(&[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fault.rate: required field is missing: bandwidth_limit needs the rate the target's \
             egress may leave at, e.g. 1mbit (--rate)"
        );
        for (extra, path, flag) in [
            (&["--rate", "fast"][..], "fault.rate", "--rate"),
            (&["--rate", "1000"], "fault.rate", "--rate"),
            (&["--rate", "7kbit"], "fault.rate", "--rate"),
            (
                &["--rate", "1mbit", "--burst", "17mb"],
                "fault.burst",
                "--burst",
            ),
            (
                &["--rate", "1mbit", "--burst", "lots"],
                "fault.burst",
                "--burst",
            ),
            (
                &["--rate", "1mbit", "--interface", "eth0:1"],
                "fault.interface",
                "--interface",
            ),
            (
                &["--rate", "1mbit", "--intensity", "0.5"],
                "intensity",
                "--intensity",
            ),
        ] {
            match limited(extra) {
                Err(SpecError::Model(error)) => {
                    assert_eq!(error.path(), Some(path), "{extra:?}: {error}");
                    assert_eq!(flag_of(path), Some(flag));
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        let e = limited(&["--rate", "fast"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("fault.rate: \"fast\" is not allowed; expected a rate: ")
                && e.to_string().ends_with(" (--rate)"),
            "{e}"
        );
        let e = limited(&["--rate", "1mbit", "--burst", "17mb"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fault.burst: 17mb is not allowed; expected 0b to 16mb (--burst)"
        );
        // No ramp: the rate is its severity.
        let e =
            limited(&["--rate", "1mbit", "--ramp", "0.1,0.5", "--ramp-hold", "10s"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ramp: a ramp is not allowed; expected no ramp for bandwidth_limit"),
            "{e}"
        );
        // --rate and --burst belong to bandwidth_limit only; other types' flags are refused.
        for (kind, settings, flag) in [
            (
                "network_latency",
                ["--latency-ms", "5", "--rate", "1mbit"],
                "--rate",
            ),
            (
                "packet_loss",
                ["--intensity", "0.1", "--burst", "32kb"],
                "--burst",
            ),
            (
                "packet_loss",
                ["--intensity", "0.1", "--rate", "1mbit"],
                "--rate",
            ),
        ] {
            let e = build(&[&[kind][..], &settings, t].concat()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("{flag} is not a setting of {kind} (see `chaos-ctl experiment --help`)")
            );
        }
        for (flag, value) in [
            ("--latency-ms", "5"),
            ("--jitter-ms", "1"),
            ("--checksum", "fixed"),
            ("--direction", "egress"),
            ("--errno", "EIO"),
        ] {
            let e = limited(&["--rate", "1mbit", flag, value]).unwrap_err();
            assert!(
                matches!(
                    e,
                    SpecError::NotASetting {
                        kind: ExperimentType::BandwidthLimit,
                        ..
                    }
                ),
                "{flag}: {e:?}"
            );
        }
        assert_eq!(flag_of("fault.rate"), Some("--rate"));
        assert_eq!(flag_of("fault.burst"), Some("--burst"));
    }

    #[test]
    fn errors_name_the_models_field() {
        let t = &TARGET[..];
        assert_eq!(
            error_path(&[&["packet_loss", "--intensity", "2"], t].concat()),
            "intensity"
        );
        assert_eq!(error_path(&[&["packet_loss"], t].concat()), "intensity");
        assert_eq!(
            error_path(
                &[
                    &[
                        "dependency_failure",
                        "--intensity",
                        "1",
                        "--calls",
                        "connect,frob"
                    ],
                    t
                ]
                .concat()
            ),
            "fault.calls[1]"
        );
        assert_eq!(
            error_path(
                &[
                    &["syscall_error", "--intensity", "1", "--calls", "open,open"],
                    t
                ]
                .concat()
            ),
            "fault.calls[1]"
        );
        assert_eq!(
            error_path(&[&["syscall_error", "--intensity", "1", "--errno", "EFOO"], t].concat()),
            "fault.errno"
        );
        assert_eq!(
            error_path(&[&["network_latency"], t].concat()),
            "fault.latency"
        );
        assert_eq!(
            error_path(&[&["pod_deletion", "--interval", "50ms"], t].concat()),
            "fault.interval"
        );
        assert_eq!(
            error_path(&[&["pod_deletion", "--ports", "80"], t].concat()),
            "filter"
        );
        assert_eq!(
            error_path(&[&["pod_deletion", "--pod-name", "frontend"], t].concat()),
            "target.pod_name"
        );
        assert_eq!(
            error_path(&["pod_deletion", "--container", "xyz", "--duration", "1m"]),
            "target.container_id"
        );
        assert_eq!(
            error_path(&["pod_deletion", "--cgroup", "/x", "--duration", "0"]),
            "duration"
        );
        assert_eq!(
            error_path(
                &[
                    &["packet_loss", "--intensity", "0.1", "--name", "Bad_Name"],
                    t
                ]
                .concat()
            ),
            "name"
        );
        // The message is the model's, with the flag where it is not the field's name.
        let e = build(&[&["packet_loss", "--intensity", "2"], t].concat()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "intensity: 2 is not allowed; expected 0 to 1"
        );
        let e = build(
            &[
                &["dependency_failure", "--intensity", "1", "--calls", "frob"],
                t,
            ]
            .concat(),
        )
        .unwrap_err();
        assert!(e.to_string().ends_with(" (--calls)"), "{e}");
    }

    #[test]
    fn flags_of_other_types_are_refused() {
        let e = build(
            &[
                &["packet_loss", "--intensity", "0.1", "--errno", "EIO"],
                &TARGET[..],
            ]
            .concat(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::NotASetting {
                    flag: "--errno",
                    kind: ExperimentType::PacketLoss
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "--errno is not a setting of packet_loss (see `chaos-ctl experiment --help`)"
        );
        let e = build(
            &[
                &["network_latency", "--latency-ms", "5", "--visible-drop"],
                &TARGET[..],
            ]
            .concat(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::NotASetting {
                    flag: "--visible-drop",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn database_load_flags_reach_the_model() {
        use chaos_api::config::SecretSource;
        use chaos_api::experiment::{DatabaseLoad, Engine, Profile, Statement, Workload};

        let load = |extra: &[&str]| {
            build(
                &[
                    &[
                        "database_load",
                        "--engine",
                        "postgres",
                        "--address",
                        "db.shop.svc:5432",
                        "--user",
                        "app",
                    ][..],
                    extra,
                    &TARGET[..],
                ]
                .concat(),
            )
        };
        let e = load(&["--profile", "point_reads", "--rate", "200"]).unwrap();
        assert_eq!(
            e.fault,
            Fault::DatabaseLoad(DatabaseLoad {
                engine: Engine::Postgres,
                address: "db.shop.svc:5432".to_owned(),
                database: None,
                user: Some("app".to_owned()),
                password: None,
                workload: Workload::Profile(Profile::PointReads),
                rate: 200.0,
                concurrency: 8,
                network_namespace_of_target: false,
            })
        );
        assert_eq!((e.name.as_str(), e.intensity), ("database-load", 1.0));
        // Statements with and without a weight, every other flag, and a ramp over the rate.
        let e = load(&[
            "--statement",
            "3:SELECT * FROM orders WHERE id = 42",
            "--statement",
            "UPDATE stock SET n = n - 1 WHERE id = 7",
            "--database",
            "orders",
            "--password-env",
            "DB_PASSWORD",
            "--concurrency",
            "4",
            "--in-target-netns",
            "--ramp",
            "50,200,500",
            "--ramp-hold",
            "1m",
        ])
        .unwrap();
        let Fault::DatabaseLoad(db) = &e.fault else {
            panic!("{e:?}")
        };
        assert_eq!(
            db.workload,
            Workload::Statements(vec![
                Statement {
                    sql: "SELECT * FROM orders WHERE id = 42".to_owned(),
                    weight: 3
                },
                Statement {
                    sql: "UPDATE stock SET n = n - 1 WHERE id = 7".to_owned(),
                    weight: 1
                },
            ])
        );
        assert_eq!(db.rate, 50.0, "the ramp's first step");
        assert_eq!(db.database.as_deref(), Some("orders"));
        assert_eq!(
            db.password,
            Some(SecretSource::Env("DB_PASSWORD".to_owned()))
        );
        assert_eq!(db.concurrency, 4);
        assert!(db.network_namespace_of_target);
        assert_eq!(
            e.ramp.as_ref().and_then(|r| r.values()),
            Some(&[50.0, 200.0, 500.0][..])
        );
        assert_eq!(Experiment::from_proto(&e.to_proto()).unwrap(), e);
        // Redis needs no user.
        let e = build(
            &[
                &[
                    "database_load",
                    "--engine",
                    "redis",
                    "--address",
                    "cache:6379",
                    "--password-file",
                    "/etc/chaos/redis",
                    "--statement",
                    "GET k",
                    "--rate",
                    "0.5",
                ][..],
                &TARGET[..],
            ]
            .concat(),
        )
        .unwrap();
        let Fault::DatabaseLoad(db) = &e.fault else {
            panic!("{e:?}")
        };
        assert_eq!(
            (db.engine, db.user.as_deref(), db.rate),
            (Engine::Redis, None, 0.5)
        );
        assert_eq!(
            db.password,
            Some(SecretSource::File("/etc/chaos/redis".into()))
        );
    }

    #[test]
    fn database_load_errors_name_the_flag() {
        let t = &TARGET[..];
        let load = |extra: &[&str]| build(&[&["database_load"][..], extra, t].concat());
        let base = ["--engine", "mysql", "--address", "db:3306", "--user", "app"];
        let with = |extra: &[&str]| load(&[&base[..], extra].concat());
        for (args, path, flag) in [
            (
                &[
                    "--address",
                    "db:3306",
                    "--user",
                    "a",
                    "--profile",
                    "writes",
                    "--rate",
                    "5",
                ][..],
                "fault.engine",
                "--engine",
            ),
            (
                &[
                    "--engine",
                    "mysql",
                    "--user",
                    "a",
                    "--profile",
                    "writes",
                    "--rate",
                    "5",
                ],
                "fault.address",
                "--address",
            ),
            (
                &[
                    "--engine",
                    "mysql",
                    "--address",
                    "db:3306",
                    "--profile",
                    "writes",
                    "--rate",
                    "5",
                ],
                "fault.user",
                "--user",
            ),
        ] {
            match load(args) {
                Err(SpecError::Model(error)) => {
                    assert_eq!(error.path(), Some(path), "{args:?}: {error}");
                    assert_eq!(flag_of(path), Some(flag));
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        for (extra, path, flag) in [
            (&["--profile", "writes"][..], "fault.rate", "--rate"),
            (
                &["--rate", "5"],
                "fault.profile",
                "--profile or --statement",
            ),
            (
                &["--profile", "writes", "--rate", "fast"],
                "fault.rate",
                "--rate",
            ),
            (
                &["--profile", "writes", "--rate", "0"],
                "fault.rate",
                "--rate",
            ),
            (
                &["--profile", "writes", "--rate", "100001"],
                "fault.rate",
                "--rate",
            ),
            (
                &["--profile", "writes", "--rate", "5", "--concurrency", "0"],
                "fault.concurrency",
                "--concurrency",
            ),
            (
                &[
                    "--profile",
                    "writes",
                    "--rate",
                    "5",
                    "--database",
                    "bad\u{7}",
                ],
                "fault.database",
                "--database",
            ),
            (
                &[
                    "--profile",
                    "writes",
                    "--rate",
                    "5",
                    "--password-file",
                    "relative",
                ],
                "fault.password_file",
                "--password-file",
            ),
            (
                &[
                    "--profile",
                    "writes",
                    "--rate",
                    "5",
                    "--password-file",
                    "/p",
                    "--password-env",
                    "P",
                ],
                "fault.password_env",
                "--password-env",
            ),
            (
                &[
                    "--profile",
                    "writes",
                    "--rate",
                    "5",
                    "--statement",
                    "SELECT 1",
                ],
                "fault.statements",
                "--statement",
            ),
            (
                &[
                    "--rate",
                    "5",
                    "--statement",
                    "SELECT 1",
                    "--statement",
                    "0:SELECT 2",
                ],
                "fault.statements[1].weight",
                "--statement",
            ),
            (
                &["--rate", "5", "--statement", "99999999999:SELECT 2"],
                "fault.statements[0].weight",
                "--statement",
            ),
            (
                &["--rate", "5", "--statement", "2:"],
                "fault.statements[0].sql",
                "--statement",
            ),
            (
                &["--profile", "writes", "--rate", "5", "--intensity", "0.5"],
                "intensity",
                "--intensity",
            ),
            (
                &[
                    "--profile",
                    "writes",
                    "--ramp",
                    "50,0",
                    "--ramp-hold",
                    "10s",
                ],
                "ramp.steps[1]",
                "--ramp",
            ),
            (
                &["--profile", "writes", "--rate", "5", "--ports", "5432"],
                "filter",
                "--protocol, --ports, --cidr",
            ),
        ] {
            match with(extra) {
                Err(SpecError::Model(error)) => {
                    assert_eq!(error.path(), Some(path), "{extra:?}: {error}");
                    assert_eq!(flag_of(path), Some(flag), "{path}");
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        let e = with(&["--profile", "writes", "--rate", "fast"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fault.rate: \"fast\" is not allowed; expected queries per second, more than 0 and \
             at most 100000 (e.g. 200) (--rate)"
        );
        let e = with(&[
            "--rate",
            "5",
            "--statement",
            "SELECT 1",
            "--statement",
            "0:SELECT 2",
        ])
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("fault.statements[1].weight: 0 is not allowed; expected at least 1")
                && e.to_string().ends_with(" (--statement)"),
            "{e}"
        );
        // Its flags belong to database_load only, and it takes no other type's.
        for (flag, value) in [
            ("--engine", "postgres"),
            ("--address", "db:5432"),
            ("--profile", "writes"),
            ("--statement", "SELECT 1"),
            ("--concurrency", "2"),
            ("--password-env", "P"),
        ] {
            let e = build(&[&["packet_loss", "--intensity", "0.1", flag, value][..], t].concat())
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "{flag} is not a setting of packet_loss (see `chaos-ctl experiment --help`)"
                )
            );
        }
        let e = build(
            &[
                &["packet_loss", "--intensity", "0.1", "--in-target-netns"][..],
                t,
            ]
            .concat(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::NotASetting {
                    flag: "--in-target-netns",
                    ..
                }
            ),
            "{e:?}"
        );
        for (flag, value) in [
            ("--latency-ms", "5"),
            ("--errno", "EIO"),
            ("--burst", "32kb"),
        ] {
            let e = with(&["--profile", "writes", "--rate", "5", flag, value]).unwrap_err();
            assert!(
                matches!(
                    e,
                    SpecError::NotASetting {
                        kind: ExperimentType::DatabaseLoad,
                        ..
                    }
                ),
                "{flag}: {e:?}"
            );
        }
    }
}
