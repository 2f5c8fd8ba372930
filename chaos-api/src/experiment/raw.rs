//! The experiment document as written, and its conversion into an [`Experiment`].
//!
//! `fault` is read as the union of every type's keys and then checked against `type`, instead of
//! an internally tagged enum: serde buffers tagged and flattened content, and errors inside the
//! buffer lose their path. This way `fault.errno` of a packet_loss experiment is reported as
//! exactly that, whatever the order of `type` and `fault` in the document.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, Visitor};

use super::database::{
    DatabaseLoadParts, FAULT_KEYS as DATABASE_LOAD_KEYS, build_database_load, inline_password_error,
};
use super::fault::CallName;
use super::filter::PORTS_ALLOWED;
use super::{
    ApiError, BandwidthLimit, Bytes, CorruptChecksum, DEFAULT_DURATION, Direction, Distribution,
    EgressDrop, Errno, Experiment, ExperimentGuards, ExperimentType, Fault, HttpError, HttpStatus,
    MAX_CIDRS, MAX_LATENCY, NetFilter, NetworkLatency, PacketCorruption, PacketLoss, PodDeletion,
    PortRange, Protocol, Ramp, Rate, ResourceExhaustion, SocketError, SyscallError, Target,
    TargetKind, no_filter_error, target_path,
};
use crate::error::{ModelError, deserialize_duration, invalid};

/// The whole document.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an experiment definition (a mapping)"
)]
pub(super) struct RawExperiment {
    name: String,
    #[serde(rename = "type")]
    kind: ExperimentType,
    #[serde(default)]
    target: Option<RawTarget>,
    #[serde(default)]
    targets: Option<Vec<RawTarget>>,
    #[serde(default, deserialize_with = "deserialize_some_duration")]
    duration: Option<Duration>,
    #[serde(default)]
    intensity: Option<f64>,
    #[serde(default)]
    budget: Option<f64>,
    #[serde(default)]
    max_faults: Option<u64>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    fault: Option<RawFault>,
    #[serde(default)]
    filter: Option<RawFilter>,
    #[serde(default)]
    guards: ExperimentGuards,
    #[serde(default)]
    ramp: Option<Ramp>,
    #[serde(default, deserialize_with = "deserialize_some_duration")]
    lease: Option<Duration>,
}

impl RawExperiment {
    /// Builds the model; the range checks are left to [`Experiment::validate`].
    pub(super) fn into_experiment(self) -> Result<Experiment, ModelError> {
        // With a ramp the intensity is its first step (1 until a preset is resolved); a
        // latency ramp's steps are delays, and the types without a ramp keep their default
        // for validation to refuse the ramp.
        let ramp_start = self
            .ramp
            .as_ref()
            .filter(|_| self.kind.ramps_intensity())
            .map(|r| {
                r.values()
                    .map_or(1.0, |v| v.first().copied().unwrap_or(1.0))
            });
        let intensity = match self
            .intensity
            .or(ramp_start)
            .or(self.kind.default_intensity())
        {
            Some(intensity) => intensity,
            None => return Err(super::intensity_missing(self.kind)),
        };
        if !self.kind.takes_filter() && self.filter.is_some() {
            return Err(no_filter_error(self.kind));
        }
        let mut fault = self.fault.unwrap_or_default();
        if self.kind == ExperimentType::NetworkLatency
            && fault.latency.is_none()
            && let Some(ramp) = &self.ramp
        {
            fault.latency = Some(ramp_first_latency(ramp));
        }
        // A database load's ramp steps are rates: the first is its rate (1 until a preset is
        // resolved).
        let ramp_rate = self
            .ramp
            .as_ref()
            .filter(|_| self.kind == ExperimentType::DatabaseLoad)
            .map(|r| {
                r.values()
                    .map_or(1.0, |v| v.first().copied().unwrap_or(1.0))
            });
        let targets = match (self.target, self.targets) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "target",
                    "target and targets",
                    "one target in `target`, or a list in `targets`, not both",
                ));
            }
            (Some(one), None) => vec![one.into_target("target")?],
            (None, Some(list)) => {
                let count = list.len();
                list.into_iter()
                    .enumerate()
                    .map(|(i, t)| t.into_target(&target_path(i, count)))
                    .collect::<Result<_, _>>()?
            }
            (None, None) => Vec::new(),
        };
        Ok(Experiment {
            targets,
            fault: fault.into_fault(self.kind, ramp_rate)?,
            filter: self.filter.unwrap_or_default().into_filter()?,
            name: self.name,
            duration: self.duration.unwrap_or(DEFAULT_DURATION),
            intensity,
            budget: self.budget,
            max_faults: self.max_faults,
            dry_run: self.dry_run,
            guards: self.guards,
            ramp: self.ramp,
            lease: self.lease,
        })
    }
}

/// A `target` (or an entry of `targets`): the four kinds, of which exactly one must be set,
/// and the pod's name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a target (a mapping)")]
struct RawTarget {
    cgroup: Option<String>,
    pid: Option<u32>,
    container_id: Option<String>,
    pod_uid: Option<String>,
    pod_name: Option<String>,
}

impl RawTarget {
    /// The target; errors name it `path`.
    fn into_target(self, path: &str) -> Result<Target, ModelError> {
        let mut targets = Vec::new();
        if let Some(path) = self.cgroup {
            targets.push(("cgroup", TargetKind::Cgroup(path)));
        }
        if let Some(pid) = self.pid {
            targets.push(("pid", TargetKind::Pid(pid)));
        }
        if let Some(id) = self.container_id {
            targets.push(("container_id", TargetKind::container(&id)));
        }
        if let Some(uid) = self.pod_uid {
            targets.push(("pod_uid", TargetKind::PodUid(uid)));
        }
        let allowed = "exactly one of cgroup, pid, container_id, pod_uid";
        match targets.len() {
            0 => Err(invalid(path, "no target", allowed)),
            1 => Ok(Target {
                kind: targets.remove(0).1,
                pod_name: self.pod_name,
            }),
            _ => {
                let names: Vec<&str> = targets.iter().map(|(name, _)| *name).collect();
                Err(invalid(path, names.join(" and "), allowed))
            }
        }
    }
}

/// `fault`: the keys of every type; [`RawFault::into_fault`] keeps those of the document's type.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the fault settings (a mapping)")]
struct RawFault {
    direction: Option<Direction>,
    egress_drop: Option<EgressDrop>,
    checksum: Option<CorruptChecksum>,
    errno: Option<ScalarText>,
    calls: Option<Vec<String>>,
    error_types: Option<Vec<ScalarText>>,
    server_ports: Option<ScalarText>,
    #[serde(default, deserialize_with = "deserialize_some_duration")]
    latency: Option<Duration>,
    #[serde(default, deserialize_with = "deserialize_some_duration")]
    jitter: Option<Duration>,
    distribution: Option<Distribution>,
    rate: Option<ScalarText>,
    burst: Option<ScalarText>,
    interface: Option<String>,
    path_prefix: Option<String>,
    #[serde(default, deserialize_with = "deserialize_some_duration")]
    interval: Option<Duration>,
    cpu_share: Option<f64>,
    memory_share: Option<f64>,
    engine: Option<String>,
    address: Option<String>,
    database: Option<ScalarText>,
    user: Option<String>,
    /// Read only to be refused with a useful message (a password is never inline).
    password: Option<IgnoredAny>,
    password_file: Option<String>,
    password_env: Option<String>,
    profile: Option<String>,
    statements: Option<Vec<RawStatement>>,
    concurrency: Option<u32>,
    network_namespace_of_target: Option<bool>,
}

/// One entry of a database load's `fault.statements`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a statement (a mapping with sql and weight)"
)]
struct RawStatement {
    sql: String,
    #[serde(default)]
    weight: Option<u32>,
}

impl RawFault {
    /// The fault of `kind`; `ramp_rate` is a database load's first ramp step.
    fn into_fault(self, kind: ExperimentType, ramp_rate: Option<f64>) -> Result<Fault, ModelError> {
        if kind == ExperimentType::DatabaseLoad && self.password.is_some() {
            return Err(inline_password_error());
        }
        let present = [
            ("direction", self.direction.is_some()),
            ("egress_drop", self.egress_drop.is_some()),
            ("checksum", self.checksum.is_some()),
            ("errno", self.errno.is_some()),
            ("calls", self.calls.is_some()),
            ("error_types", self.error_types.is_some()),
            ("server_ports", self.server_ports.is_some()),
            ("latency", self.latency.is_some()),
            ("jitter", self.jitter.is_some()),
            ("distribution", self.distribution.is_some()),
            ("rate", self.rate.is_some()),
            ("burst", self.burst.is_some()),
            ("interface", self.interface.is_some()),
            ("path_prefix", self.path_prefix.is_some()),
            ("interval", self.interval.is_some()),
            ("cpu_share", self.cpu_share.is_some()),
            ("memory_share", self.memory_share.is_some()),
            ("engine", self.engine.is_some()),
            ("address", self.address.is_some()),
            ("database", self.database.is_some()),
            ("user", self.user.is_some()),
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
            ("password_env", self.password_env.is_some()),
            ("profile", self.profile.is_some()),
            ("statements", self.statements.is_some()),
            ("concurrency", self.concurrency.is_some()),
            (
                "network_namespace_of_target",
                self.network_namespace_of_target.is_some(),
            ),
        ];
        let allowed = fault_keys(kind);
        if let Some((key, _)) = present
            .iter()
            .find(|(key, set)| *set && !allowed.contains(key))
        {
            return Err(unknown_key(key, kind));
        }
        Ok(match kind {
            ExperimentType::PacketLoss => Fault::PacketLoss(PacketLoss {
                direction: self.direction.unwrap_or_default(),
                egress_drop: self.egress_drop.unwrap_or_default(),
            }),
            ExperimentType::PacketDuplication => Fault::PacketDuplication,
            ExperimentType::PacketCorruption => Fault::PacketCorruption(PacketCorruption {
                checksum: self.checksum.unwrap_or_default(),
            }),
            ExperimentType::DependencyFailure => {
                let defaults = SocketError::defaults(kind);
                Fault::DependencyFailure(SocketError {
                    errno: parse_errno(self.errno, defaults.errno)?,
                    calls: parse_calls(self.calls, defaults.calls)?,
                })
            }
            ExperimentType::ApiErrorInjection => {
                let text = |scalar: Option<ScalarText>| scalar.map(|ScalarText(text)| text);
                let error_types: Option<Vec<String>> = self
                    .error_types
                    .map(|types| types.into_iter().map(|ScalarText(text)| text).collect());
                Fault::ApiErrorInjection(build_api_error(
                    text(self.errno).as_deref(),
                    self.calls,
                    error_types.as_deref(),
                    text(self.server_ports).as_deref(),
                )?)
            }
            ExperimentType::NetworkLatency => Fault::NetworkLatency(NetworkLatency {
                latency: self.latency.ok_or_else(|| ModelError::Parse {
                    path: "fault.latency".to_owned(),
                    message: "required field is missing (the delay to add, e.g. 100ms)".to_owned(),
                })?,
                jitter: self.jitter.unwrap_or_default(),
                distribution: self.distribution.unwrap_or_default(),
                interface: self.interface,
            }),
            ExperimentType::BandwidthLimit => Fault::BandwidthLimit(BandwidthLimit {
                rate: match self.rate {
                    Some(ScalarText(text)) => Rate::parse("fault.rate", &text)?,
                    None => {
                        return Err(ModelError::Parse {
                            path: "fault.rate".to_owned(),
                            message: "required field is missing (the rate the target's egress \
                                      may leave at, e.g. 1mbit)"
                                .to_owned(),
                        });
                    }
                },
                burst: match self.burst {
                    Some(ScalarText(text)) => Bytes::parse("fault.burst", &text)?,
                    None => Bytes::default(),
                },
                interface: self.interface,
            }),
            ExperimentType::SyscallError => {
                let defaults = SyscallError::defaults();
                Fault::SyscallError(SyscallError {
                    errno: parse_errno(self.errno, defaults.errno)?,
                    calls: parse_calls(self.calls, defaults.calls)?,
                    path_prefix: self.path_prefix,
                })
            }
            ExperimentType::PodDeletion => Fault::PodDeletion(PodDeletion {
                interval: self.interval,
            }),
            ExperimentType::ResourceExhaustion => Fault::ResourceExhaustion(ResourceExhaustion {
                cpu_share: self.cpu_share,
                memory_share: self.memory_share,
            }),
            ExperimentType::DatabaseLoad => {
                let text = |scalar: Option<ScalarText>| scalar.map(|ScalarText(text)| text);
                Fault::DatabaseLoad(build_database_load(
                    DatabaseLoadParts {
                        engine: self.engine,
                        address: self.address,
                        database: text(self.database),
                        user: self.user,
                        password_file: self.password_file,
                        password_env: self.password_env,
                        profile: self.profile,
                        statements: self
                            .statements
                            .map(|list| list.into_iter().map(|s| (s.sql, s.weight)).collect()),
                        rate: text(self.rate),
                        concurrency: self.concurrency,
                        network_namespace_of_target: self.network_namespace_of_target,
                    },
                    ramp_rate,
                )?)
            }
        })
    }
}

/// The `fault` keys of `kind`.
fn fault_keys(kind: ExperimentType) -> &'static [&'static str] {
    match kind {
        ExperimentType::PacketLoss => &["direction", "egress_drop"],
        ExperimentType::PacketDuplication => &[],
        ExperimentType::PacketCorruption => &["checksum"],
        ExperimentType::DependencyFailure => &["errno", "calls"],
        ExperimentType::ApiErrorInjection => &["errno", "calls", "error_types", "server_ports"],
        ExperimentType::NetworkLatency => &["latency", "jitter", "distribution", "interface"],
        ExperimentType::BandwidthLimit => &["rate", "burst", "interface"],
        ExperimentType::SyscallError => &["errno", "calls", "path_prefix"],
        ExperimentType::PodDeletion => &["interval"],
        ExperimentType::ResourceExhaustion => &["cpu_share", "memory_share"],
        ExperimentType::DatabaseLoad => DATABASE_LOAD_KEYS,
    }
}

/// The unknown-field error at `fault.KEY`: `KEY` is not a setting of `kind`.
pub(super) fn unknown_key(key: &str, kind: ExperimentType) -> ModelError {
    let keys: Vec<String> = fault_keys(kind)
        .iter()
        .map(|key| format!("`{key}`"))
        .collect();
    let expected = match keys.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "no settings".to_owned(),
    };
    ModelError::Parse {
        path: format!("fault.{key}"),
        message: format!("unknown field `{key}` for type {kind}, expected {expected}"),
    }
}

/// [`deserialize_duration`] for an optional key (`#[serde(default)]` covers its absence).
fn deserialize_some_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserialize_duration(deserializer).map(Some)
}

/// `fault.errno` as written (a name or a number), or `default`.
fn parse_errno(errno: Option<ScalarText>, default: Errno) -> Result<Errno, ModelError> {
    match errno {
        Some(ScalarText(text)) => Errno::parse(&text),
        None => Ok(default),
    }
}

/// `fault.calls` as written, each a call of `C`, or `default`; emptiness and repeats are
/// checked later.
pub(super) fn parse_calls<C: CallName>(
    names: Option<Vec<String>>,
    default: Vec<C>,
) -> Result<Vec<C>, ModelError> {
    match names {
        None => Ok(default),
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(index, name)| C::parse(index, name))
            .collect(),
    }
}

/// An api_error_injection's fault from its parts as written (`None`: the key is absent):
/// with `error_types` the HTTP errors (which take no `errno` or `calls`), without it the L4
/// errors (which take no `server_ports`) with their defaults. Counts and repeats are checked by
/// validation. Shared by the document and the gRPC message.
pub(super) fn build_api_error(
    errno: Option<&str>,
    calls: Option<Vec<String>>,
    error_types: Option<&[String]>,
    server_ports: Option<&str>,
) -> Result<ApiError, ModelError> {
    let Some(error_types) = error_types else {
        if server_ports.is_some() {
            return Err(ModelError::Parse {
                path: "fault.server_ports".to_owned(),
                message: "only with fault.error_types (HTTP errors): it is the HTTP server's \
                          port; the L4 errors take filter.ports"
                    .to_owned(),
            });
        }
        let defaults = SocketError::defaults(ExperimentType::ApiErrorInjection);
        return Ok(ApiError::Socket(SocketError {
            errno: errno.map_or(Ok(defaults.errno), Errno::parse)?,
            calls: parse_calls(calls, defaults.calls)?,
        }));
    };
    for (key, given) in [("errno", errno.is_some()), ("calls", calls.is_some())] {
        if given {
            return Err(ModelError::Parse {
                path: format!("fault.{key}"),
                message: "not allowed with fault.error_types (HTTP errors); the L4 errors take \
                          errno and calls"
                    .to_owned(),
            });
        }
    }
    let error_types = error_types
        .iter()
        .enumerate()
        .map(|(index, text)| HttpStatus::parse(index, text))
        .collect::<Result<_, _>>()?;
    let server_ports = match server_ports {
        Some(text) => Some(
            parse_ports(text)
                .ok_or_else(|| invalid("fault.server_ports", format!("{text:?}"), PORTS_ALLOWED))?,
        ),
        None => None,
    };
    Ok(ApiError::Http(HttpError {
        error_types,
        server_ports,
    }))
}

/// `filter`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a filter (a mapping)")]
struct RawFilter {
    #[serde(default)]
    protocol: Protocol,
    ports: Option<ScalarText>,
    cidrs: Option<Vec<String>>,
}

impl RawFilter {
    fn into_filter(self) -> Result<NetFilter, ModelError> {
        let ports = self.ports.map(|ScalarText(text)| text);
        build_filter(self.protocol, ports.as_deref(), self.cidrs.as_deref())
    }
}

/// A filter from its parts as written (`None`: the key is absent); ranges and counts are
/// checked by validation. Shared by the document and the gRPC message.
pub(super) fn build_filter(
    protocol: Protocol,
    ports: Option<&str>,
    cidrs: Option<&[String]>,
) -> Result<NetFilter, ModelError> {
    let ports = match ports {
        Some(text) => Some(
            parse_ports(text)
                .ok_or_else(|| invalid("filter.ports", format!("{text:?}"), PORTS_ALLOWED))?,
        ),
        None => None,
    };
    let cidrs = match cidrs {
        None => Vec::new(),
        Some([]) => {
            return Err(invalid(
                "filter.cidrs",
                "[]",
                format!("1 to {MAX_CIDRS} networks (omit filter.cidrs to match every address)"),
            ));
        }
        Some(cidrs) => cidrs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                parse_network(text).ok_or_else(|| {
                    invalid(
                        format!("filter.cidrs[{index}]"),
                        format!("{text:?}"),
                        "an IPv4 or IPv6 network like 10.0.0.0/8 or fd00::/8, or an address",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(NetFilter {
        protocol,
        ports,
        cidrs,
    })
}

/// `"80"` or `"8000-8100"`; the order and zero are checked by validation.
fn parse_ports(text: &str) -> Option<PortRange> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    Some(PortRange {
        low: low.trim().parse().ok()?,
        high: high.trim().parse().ok()?,
    })
}

/// A network (`10.0.0.0/8`) or a single address (`10.1.2.3`, a /32 or /128).
fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A scalar read as text whether YAML typed it as a string or a number (`ports: 5432` and
/// `ports: "5432"`, `errno: 111` and `errno: ECONNREFUSED`, a database load's `rate: 2.5`).
struct ScalarText(String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = ScalarText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(value.to_owned()))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(value.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(value.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(value.to_string()))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// The delay a latency ramp arms with: its first step (1 ms until a preset is resolved).
pub(super) fn ramp_first_latency(ramp: &Ramp) -> Duration {
    let first = ramp
        .values()
        .and_then(<[f64]>::first)
        .copied()
        .unwrap_or(1.0);
    Duration::from_millis(first.clamp(1.0, MAX_LATENCY.as_millis() as f64) as u64)
}
