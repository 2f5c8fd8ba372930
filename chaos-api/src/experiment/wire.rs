//! The experiment on the wire: [`Experiment::to_proto`] (what chaos-ctl sends) and
//! [`Experiment::from_proto`] (what the daemon reads), which applies the document's defaults
//! and checks, so that a request is judged exactly as the same experiment file would be.
//!
//! Errors name the document's paths (`fault.errno`, `intensity`, `target`): users write flags
//! or files, never the message. proto3 cannot tell an empty string or list from an absent one;
//! both mean "the type's default", as an omitted key does.

use std::time::Duration;

use super::database::{DatabaseLoadParts, build_database_load};
use super::raw::{build_api_error, build_filter, parse_calls, unknown_key};
use super::{
    ApiError, BandwidthLimit, Bytes, CorruptChecksum, DEFAULT_DURATION, Direction, Distribution,
    EgressDrop, Errno, Experiment, ExperimentGuards, ExperimentType, Fault, NetFilter,
    NetworkLatency, PacketCorruption, PacketLoss, PodDeletion, Protocol, Ramp, RampSteps, Rate,
    ResourceExhaustion, SocketError, SyscallError, Target, TargetKind, Workload, target_path,
};
use crate::config::SloDefinition;
use crate::error::{ModelError, invalid};
use crate::proto::{self, fault::Kind as FaultKind, target::Kind as TargetCase};

impl Experiment {
    /// The gRPC spec. `dry_run` is not part of it (see [`Experiment::dry_run`]).
    pub fn to_proto(&self) -> proto::ExperimentSpec {
        let socket = |error: &SocketError| proto::SocketError {
            errno: error.errno.to_string(),
            calls: error.calls.iter().map(|c| c.as_str().to_owned()).collect(),
            ..Default::default()
        };
        let fault = match &self.fault {
            Fault::PacketLoss(loss) => FaultKind::PacketLoss(proto::PacketLoss {
                direction: loss.direction.as_str().to_owned(),
                egress_drop: loss.egress_drop.as_str().to_owned(),
            }),
            Fault::PacketDuplication => FaultKind::PacketDuplication(proto::PacketDuplication {}),
            Fault::PacketCorruption(corruption) => {
                FaultKind::PacketCorruption(proto::PacketCorruption {
                    checksum: corruption.checksum.as_str().to_owned(),
                })
            }
            Fault::DependencyFailure(error) => FaultKind::DependencyFailure(socket(error)),
            Fault::ApiErrorInjection(ApiError::Socket(error)) => {
                FaultKind::ApiErrorInjection(socket(error))
            }
            Fault::ApiErrorInjection(ApiError::Http(error)) => {
                FaultKind::ApiErrorInjection(proto::SocketError {
                    error_types: error.error_types.iter().map(|t| t.as_text()).collect(),
                    server_ports: error
                        .server_ports
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    ..Default::default()
                })
            }
            Fault::NetworkLatency(latency) => {
                let (latency_ms, jitter_ms) = latency.millis();
                FaultKind::NetworkLatency(proto::NetworkLatency {
                    latency_ms,
                    jitter_ms,
                    distribution: latency.distribution.as_str().to_owned(),
                    interface: latency.interface.clone().unwrap_or_default(),
                })
            }
            Fault::BandwidthLimit(limit) => FaultKind::BandwidthLimit(proto::BandwidthLimit {
                rate_bps: limit.rate.bits_per_sec,
                burst_bytes: limit.burst.0,
                interface: limit.interface.clone().unwrap_or_default(),
            }),
            Fault::SyscallError(error) => FaultKind::SyscallError(proto::SyscallError {
                errno: error.errno.to_string(),
                calls: error.calls.iter().map(|c| c.as_str().to_owned()).collect(),
                path_prefix: error.path_prefix.clone().unwrap_or_default(),
            }),
            Fault::PodDeletion(deletion) => FaultKind::PodDeletion(proto::PodDeletion {
                interval_ms: deletion.interval_ms(),
            }),
            Fault::ResourceExhaustion(pressure) => {
                FaultKind::ResourceExhaustion(proto::ResourceExhaustion {
                    cpu_share: pressure.cpu_share,
                    memory_share: pressure.memory_share,
                })
            }
            Fault::DatabaseLoad(load) => {
                let (password_file, password_env) = load.password_parts();
                let (profile, statements) = match &load.workload {
                    Workload::Profile(profile) => (profile.as_str().to_owned(), Vec::new()),
                    Workload::Statements(statements) => (
                        String::new(),
                        statements
                            .iter()
                            .map(|s| proto::Statement {
                                sql: s.sql.clone(),
                                weight: s.weight,
                            })
                            .collect(),
                    ),
                };
                FaultKind::DatabaseLoad(proto::DatabaseLoad {
                    engine: load.engine.as_str().to_owned(),
                    address: load.address.clone(),
                    database: load.database.clone().unwrap_or_default(),
                    user: load.user.clone().unwrap_or_default(),
                    password_file,
                    password_env,
                    profile,
                    statements,
                    rate_qps: Some(load.rate),
                    concurrency: Some(load.concurrency),
                    network_namespace_of_target: load.network_namespace_of_target,
                })
            }
        };
        proto::ExperimentSpec {
            name: self.name.clone(),
            // One target travels in `target`, as before lists existed; several in `targets`.
            target: match self.targets.as_slice() {
                [one] => Some(target_to_proto(one)),
                _ => None,
            },
            targets: match self.targets.as_slice() {
                [_] => Vec::new(),
                many => many.iter().map(target_to_proto).collect(),
            },
            fault: Some(proto::Fault { kind: Some(fault) }),
            intensity: Some(self.intensity),
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            max_faults: self.max_faults,
            filter: (!self.filter.matches_everything()).then(|| proto::NetFilter {
                protocol: self.filter.protocol.as_str().to_owned(),
                ports: self.filter.ports.map(|p| p.to_string()).unwrap_or_default(),
                cidrs: self.filter.cidrs.iter().map(ToString::to_string).collect(),
            }),
            budget: self.budget,
            guards: (!self.guards.is_default()).then(|| guards_to_proto(&self.guards)),
            lease_ms: self
                .lease
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ramp: self.ramp.as_ref().map(|r| proto::Ramp {
                preset: r.steps == RampSteps::Preset,
                steps: r.values().map(<[f64]>::to_vec).unwrap_or_default(),
                hold_ms: u64::try_from(r.hold.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Reads a request's spec: the same defaults and checks as [`Experiment::from_yaml`], and
    /// the first failure, named by its path in an experiment file.
    pub fn from_proto(spec: &proto::ExperimentSpec) -> Result<Self, ModelError> {
        let targets = match (&spec.target, spec.targets.as_slice()) {
            (Some(_), [_, ..]) => {
                return Err(invalid(
                    "target",
                    "target and targets",
                    "one target in `target`, or a list in `targets`, not both",
                ));
            }
            (Some(one), []) => vec![target_from_proto(one, "target")?],
            (None, list) => list
                .iter()
                .enumerate()
                .map(|(i, t)| target_from_proto(t, &target_path(i, list.len())))
                .collect::<Result<_, _>>()?,
        };
        let Some(fault) = spec.fault.as_ref().and_then(|f| f.kind.as_ref()) else {
            return Err(invalid(
                "type",
                "no type",
                "packet_loss, packet_duplication, packet_corruption, dependency_failure, \
                 api_error_injection, network_latency, bandwidth_limit, syscall_error, \
                 pod_deletion, resource_exhaustion or database_load",
            ));
        };
        // A database load without a rate runs at its ramp's first step.
        let ramp_rate = spec
            .ramp
            .as_ref()
            .map(|r| r.steps.first().copied().unwrap_or(1.0));
        let mut fault = fault_from_proto(fault, ramp_rate)?;
        if let (Fault::NetworkLatency(latency), Some(r)) = (&mut fault, &spec.ramp)
            && latency.latency.is_zero()
        {
            let steps = if r.preset {
                RampSteps::Preset
            } else {
                RampSteps::Values(r.steps.clone())
            };
            latency.latency = super::raw::ramp_first_latency(&Ramp {
                steps,
                hold: Duration::ZERO,
            });
        }
        let kind = fault.kind();
        if let Some(r) = &spec.ramp
            && r.preset
            && !r.steps.is_empty()
        {
            return Err(invalid(
                "ramp.steps",
                format!("{:?}", r.steps),
                "`preset` or a list of probabilities, not both",
            ));
        }
        let ramp_start = spec
            .ramp
            .as_ref()
            .filter(|_| kind.ramps_intensity())
            .map(|r| r.steps.first().copied().unwrap_or(1.0));
        let intensity = match spec.intensity.or(ramp_start).or(kind.default_intensity()) {
            Some(intensity) => intensity,
            None => return Err(super::intensity_missing(kind)),
        };
        let filter = match &spec.filter {
            None => NetFilter::default(),
            Some(f) => {
                let protocol = match f.protocol.as_str() {
                    "" => Protocol::default(),
                    text => keyword("filter.protocol", text, Protocol::ALL, Protocol::as_str)?,
                };
                let ports = (!f.ports.is_empty()).then_some(f.ports.as_str());
                let cidrs = (!f.cidrs.is_empty()).then_some(f.cidrs.as_slice());
                build_filter(protocol, ports, cidrs)?
            }
        };
        let experiment = Self {
            name: spec.name.clone(),
            targets,
            fault,
            duration: match spec.duration_ms {
                0 => DEFAULT_DURATION,
                ms => Duration::from_millis(ms),
            },
            intensity,
            budget: spec.budget,
            max_faults: spec.max_faults,
            dry_run: false,
            filter,
            guards: match &spec.guards {
                None => ExperimentGuards::default(),
                Some(g) => guards_from_proto(g)?,
            },
            lease: spec.lease_ms.map(Duration::from_millis),
            ramp: spec.ramp.as_ref().map(|r| Ramp {
                steps: if r.preset {
                    RampSteps::Preset
                } else {
                    RampSteps::Values(r.steps.clone())
                },
                hold: Duration::from_millis(r.hold_ms),
            }),
        };
        experiment.validate()?;
        Ok(experiment)
    }
}

/// The proto's fault with the type's defaults for what it leaves empty; `ramp_rate` is the
/// first step of the experiment's ramp, if it has one.
fn fault_from_proto(fault: &FaultKind, ramp_rate: Option<f64>) -> Result<Fault, ModelError> {
    Ok(match fault {
        FaultKind::PacketLoss(loss) => Fault::PacketLoss(PacketLoss {
            direction: match loss.direction.as_str() {
                "" => Direction::default(),
                text => keyword("fault.direction", text, Direction::ALL, Direction::as_str)?,
            },
            egress_drop: match loss.egress_drop.as_str() {
                "" => EgressDrop::default(),
                text => keyword(
                    "fault.egress_drop",
                    text,
                    EgressDrop::ALL,
                    EgressDrop::as_str,
                )?,
            },
        }),
        FaultKind::PacketDuplication(proto::PacketDuplication {}) => Fault::PacketDuplication,
        FaultKind::PacketCorruption(corruption) => Fault::PacketCorruption(PacketCorruption {
            checksum: match corruption.checksum.as_str() {
                "" => CorruptChecksum::default(),
                text => keyword(
                    "fault.checksum",
                    text,
                    CorruptChecksum::ALL,
                    CorruptChecksum::as_str,
                )?,
            },
        }),
        FaultKind::DependencyFailure(error) => {
            // The HTTP keys are api_error_injection's.
            let kind = ExperimentType::DependencyFailure;
            if !error.error_types.is_empty() {
                return Err(unknown_key("error_types", kind));
            }
            if !error.server_ports.is_empty() {
                return Err(unknown_key("server_ports", kind));
            }
            let defaults = SocketError::defaults(kind);
            Fault::DependencyFailure(SocketError {
                errno: errno_or(&error.errno, defaults.errno)?,
                calls: calls_or(&error.calls, defaults.calls)?,
            })
        }
        // Non-empty error_types: the HTTP errors.
        FaultKind::ApiErrorInjection(error) => Fault::ApiErrorInjection(build_api_error(
            given(&error.errno),
            (!error.calls.is_empty()).then(|| error.calls.clone()),
            (!error.error_types.is_empty()).then_some(error.error_types.as_slice()),
            given(&error.server_ports),
        )?),
        FaultKind::NetworkLatency(latency) => Fault::NetworkLatency(NetworkLatency {
            latency: Duration::from_millis(latency.latency_ms),
            jitter: Duration::from_millis(latency.jitter_ms),
            distribution: match latency.distribution.as_str() {
                "" => Distribution::default(),
                text => keyword(
                    "fault.distribution",
                    text,
                    Distribution::ALL,
                    Distribution::as_str,
                )?,
            },
            interface: non_empty(&latency.interface),
        }),
        FaultKind::BandwidthLimit(limit) => Fault::BandwidthLimit(BandwidthLimit {
            rate: Rate::from_bps(limit.rate_bps),
            burst: Bytes(limit.burst_bytes),
            interface: non_empty(&limit.interface),
        }),
        FaultKind::SyscallError(error) => {
            let defaults = SyscallError::defaults();
            Fault::SyscallError(SyscallError {
                errno: errno_or(&error.errno, defaults.errno)?,
                calls: calls_or(&error.calls, defaults.calls)?,
                path_prefix: non_empty(&error.path_prefix),
            })
        }
        FaultKind::PodDeletion(deletion) => Fault::PodDeletion(PodDeletion {
            interval: (deletion.interval_ms > 0)
                .then(|| Duration::from_millis(deletion.interval_ms)),
        }),
        FaultKind::ResourceExhaustion(pressure) => Fault::ResourceExhaustion(ResourceExhaustion {
            cpu_share: pressure.cpu_share,
            memory_share: pressure.memory_share,
        }),
        FaultKind::DatabaseLoad(load) => Fault::DatabaseLoad(build_database_load(
            DatabaseLoadParts {
                engine: non_empty(&load.engine),
                address: non_empty(&load.address),
                database: non_empty(&load.database),
                user: non_empty(&load.user),
                password_file: non_empty(&load.password_file),
                password_env: non_empty(&load.password_env),
                profile: non_empty(&load.profile),
                statements: (!load.statements.is_empty()).then(|| {
                    load.statements
                        .iter()
                        .map(|s| (s.sql.clone(), Some(s.weight)))
                        .collect()
                }),
                rate: load.rate_qps.map(|rate| rate.to_string()),
                concurrency: load.concurrency,
                network_namespace_of_target: Some(load.network_namespace_of_target),
            },
            ramp_rate,
        )?),
    })
}

/// `text`, or `None` for proto3's "unset" "".
fn given(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn errno_or(text: &str, default: Errno) -> Result<Errno, ModelError> {
    if text.is_empty() {
        Ok(default)
    } else {
        Errno::parse(text)
    }
}

fn calls_or<C: super::CallName>(names: &[String], default: Vec<C>) -> Result<Vec<C>, ModelError> {
    parse_calls((!names.is_empty()).then(|| names.to_vec()), default)
}

/// The keyword `text` among `all`, or the error at `path` listing them.
pub(super) fn keyword<T: Copy>(
    path: &str,
    text: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, ModelError> {
    all.iter()
        .copied()
        .find(|k| name(*k) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|k| name(*k)).collect();
            invalid(
                path,
                format!("{text:?}"),
                format!("one of {}", names.join(", ")),
            )
        })
}

fn guards_to_proto(guards: &ExperimentGuards) -> proto::Guards {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    proto::Guards {
        restrict: guards.apply.is_some(),
        apply: guards.apply.clone().unwrap_or_default(),
        slos: guards
            .slos
            .iter()
            .map(|(name, slo)| {
                let slo = proto::Slo {
                    query: slo.query.clone(),
                    objective: slo.objective.to_string(),
                    for_ms: ms(slo.for_),
                    description: slo.description.clone(),
                };
                (name.clone(), slo)
            })
            .collect(),
        interval_ms: guards.interval.map(ms),
        baseline_ms: guards.baseline.map(ms),
    }
}

fn guards_from_proto(g: &proto::Guards) -> Result<ExperimentGuards, ModelError> {
    let mut slos = std::collections::BTreeMap::new();
    for (name, slo) in &g.slos {
        let objective = slo.objective.parse().map_err(|message| ModelError::Parse {
            path: format!("guards.slos.{name}.objective"),
            message,
        })?;
        let definition = SloDefinition {
            query: slo.query.clone(),
            objective,
            for_: Duration::from_millis(slo.for_ms),
            description: slo.description.clone(),
        };
        slos.insert(name.clone(), definition);
    }
    Ok(ExperimentGuards {
        apply: g.restrict.then(|| g.apply.clone()),
        slos,
        interval: g.interval_ms.map(Duration::from_millis),
        baseline: g.baseline_ms.map(Duration::from_millis),
    })
}

fn target_to_proto(target: &Target) -> proto::Target {
    proto::Target {
        kind: Some(match &target.kind {
            TargetKind::Cgroup(path) => TargetCase::Cgroup(path.clone()),
            TargetKind::Pid(pid) => TargetCase::Pid(*pid),
            TargetKind::ContainerId(id) => TargetCase::ContainerId(id.clone()),
            TargetKind::PodUid(uid) => TargetCase::PodUid(uid.clone()),
        }),
        pod_name: target.pod_name.clone().unwrap_or_default(),
    }
}

/// A request's target; errors name it `path`.
fn target_from_proto(target: &proto::Target, path: &str) -> Result<Target, ModelError> {
    let kind = match &target.kind {
        Some(TargetCase::Cgroup(path)) => TargetKind::Cgroup(path.clone()),
        Some(TargetCase::Pid(pid)) => TargetKind::Pid(*pid),
        Some(TargetCase::ContainerId(id)) => TargetKind::container(id),
        Some(TargetCase::PodUid(uid)) => TargetKind::PodUid(uid.clone()),
        None => {
            return Err(invalid(
                path,
                "no target",
                "exactly one of cgroup, pid, container_id, pod_uid",
            ));
        }
    };
    Ok(Target {
        kind,
        pod_name: Some(target.pod_name.clone()).filter(|n| !n.is_empty()),
    })
}
