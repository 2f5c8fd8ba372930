//! Experiment definition files: what `chaos-ctl apply -f FILE` and `chaos-ctl validate -f FILE`
//! read, checked offline, and their conversion to the gRPC
//! [`ExperimentSpec`](crate::proto::ExperimentSpec).
//!
//! This is the only definition of an experiment: chaos-ctl builds it from its flags or a file
//! and validates it before sending [`Experiment::to_proto`]; the daemon reads requests with
//! [`Experiment::from_proto`], which applies the same defaults and checks, and meets it with its
//! config in [`crate::config::ChaosConfig::admit`]. Nothing else defines a field, a default or
//! a limit.
//!
//! This module owns [`Experiment`], its target and its checks ([`Experiment::validate`]).
//! Private submodules own the rest: `fault`, `errno`, `latency`, `bandwidth`, `syscall`,
//! `host`, `http`, `packet` (duplication and corruption), `database` (database load) and
//! `filter` (their types are
//! re-exported here), `raw`, the document as written and its conversion into the model (exactly
//! one target, the `fault` keys allowed for the `type`, the per-type `intensity` default, ports
//! and networks), and `wire`, the conversion to and from the gRPC message. The daemon checks only what needs the node: the target's existence, its
//! kernel's capabilities and its config's limits.
//!
//! `intensity` is required, except for `network_latency` (every packet is delayed),
//! `bandwidth_limit`, `database_load` and the host faults (`pod_deletion`,
//! `resource_exhaustion`), where it defaults to 1: a pod deletion kills at every check with that
//! probability, and a bandwidth limit, a database load and a resource exhaustion must have 1
//! (every packet is held to the rate; the rate of queries is the load's severity; the pressure
//! applies to the whole cgroup). The host faults, `syscall_error` and `database_load` take no
//! `filter`; the host faults and `bandwidth_limit` take no `ramp`, and a database load's ramp
//! steps are rates (queries per second), as a latency ramp's are delays. A database load has
//! exactly one target: the service under test, whose guards watch it and whose network
//! namespace the load may be sent from (ADR 0020).
//!
//! ```yaml
//! name: checkout-db-refused
//! type: dependency_failure
//! target:
//!   pod_uid: 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f
//! duration: 5m
//! intensity: 0.25
//! filter:
//!   protocol: tcp
//!   ports: "5432"
//! ```

mod bandwidth;
mod database;
mod errno;
mod fault;
mod filter;
mod guards;
mod host;
mod http;
mod latency;
mod packet;
mod ramp;
mod raw;
mod syscall;
mod target;
mod wire;

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ModelError, check_cost, check_duration_ms, check_ratio, invalid, parse_yaml};

pub use bandwidth::{BandwidthLimit, Bytes, MAX_BURST_BYTES, MAX_RATE_BPS, MIN_RATE_BPS, Rate};
pub use database::{
    DEFAULT_CONCURRENCY, DatabaseLoad, Engine, MAX_CONCURRENCY, MAX_QUERIES_PER_SECOND,
    MAX_STATEMENT_BYTES, MAX_STATEMENTS, Profile, QUERY_RATE_ALLOWED, Statement, Workload,
};
pub use errno::{Errno, MAX_ERRNO};
pub use fault::{CallName, Direction, EgressDrop, Fault, PacketLoss, SocketCall, SocketError};
pub use filter::{NetFilter, PortRange, Protocol};
pub use guards::{
    ExperimentGuards, HEALTH_GUARD, IMPACT_GUARD, MIN_GUARD_INTERVAL, TRIGGERS_GUARD,
};
pub use host::{MIN_KILL_INTERVAL, PodDeletion, ResourceExhaustion};
pub use http::{ApiError, HttpError, HttpStatus, MAX_ERROR_TYPES};
pub use latency::{Distribution, MAX_LATENCY, NetworkLatency};
pub use packet::{CorruptChecksum, PacketCorruption};
pub use ramp::{MAX_RAMP_STEPS, Ramp, RampSteps};
pub use syscall::{MAX_PATH_PREFIX_LEN, SyscallCall, SyscallError, normalize_path_prefix};
pub use target::{MAX_TARGETS, Target, TargetKind, target_path};

/// Most networks one filter may list.
pub const MAX_CIDRS: usize = 8;
/// Longest experiment: deadlines are also enforced in the kernel, and a day is the cap.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest lease.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// The `duration` of an experiment that gives none.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);

/// A validated experiment definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// Human name: 1 to 63 characters `[a-z0-9-]`, starting and ending with a letter or digit.
    pub name: String,
    /// What the fault applies to: one target (`target` in a document) or several (`targets`,
    /// 1 to [`MAX_TARGETS`], each once), with one slot, one fault cap and one budget across
    /// all of them.
    pub targets: Vec<Target>,
    /// The fault type and its settings (the document's `type` and `fault`).
    pub fault: Fault,
    /// How long the fault stays armed: more than 0 (at least 1ms) and at most 24h, whole
    /// milliseconds. Default: [`DEFAULT_DURATION`] (1 minute).
    pub duration: Duration,
    /// Probability (0 to 1) that a matching packet or call is faulted; for a pod deletion, that
    /// a due kill happens; exactly 1 for a resource exhaustion and a bandwidth limit. Default 1
    /// for the host faults, network_latency and bandwidth_limit
    /// ([`ExperimentType::default_intensity`]), required for the others.
    pub intensity: f64,
    /// Money budget of this experiment; at least 0. Unset: the config's `max_experiment_cost`.
    pub budget: Option<f64>,
    /// Most injections in total; at least 1. Unset: derived from the budget.
    pub max_faults: Option<u64>,
    /// Only plan: the daemon resolves and checks everything and changes nothing. Not part of
    /// the spec; the CLI passes it in `StartExperimentRequest.dry_run`. Default: false.
    pub dry_run: bool,
    /// Which packets or calls are eligible. Default: all of them.
    pub filter: NetFilter,
    /// Which guards apply, extra SLOs, the guard interval and the baseline. Default: every
    /// guard of the node's config, at its interval.
    pub guards: ExperimentGuards,
    /// Gradual intensity: arm at the first step, then the next every `hold` while the guards
    /// are green. With a ramp, `intensity` may be omitted (it is the first step once the
    /// node resolved the steps). Default: none (`intensity` throughout).
    pub ramp: Option<Ramp>,
    /// Dead-man switch: the caller must renew at least this often (chaos-ctl `--wait` does),
    /// or the daemon disarms it with reason `lease expired`; 1s to 1h. Default: none.
    pub lease: Option<Duration>,
}

impl Experiment {
    /// Parses and validates an experiment definition. Errors name the dotted path of the
    /// offending key.
    pub fn from_yaml(text: &str) -> Result<Self, ModelError> {
        let document: raw::RawExperiment = parse_yaml(text)?;
        let experiment = document.into_experiment()?;
        experiment.validate()?;
        Ok(experiment)
    }

    /// The experiment type, i.e. the document's `type`.
    pub fn kind(&self) -> ExperimentType {
        self.fault.kind()
    }

    /// Checks every rule that needs no kernel and no cluster; the first failure is returned.
    /// Paths are those of the YAML document (`target.pid`, `fault.calls`, ...).
    pub fn validate(&self) -> Result<(), ModelError> {
        check_name(&self.name)?;
        target::validate_targets(&self.targets)?;
        check_duration_ms(
            "duration",
            self.duration,
            Duration::from_millis(1),
            MAX_DURATION,
        )?;
        check_ratio("intensity", self.intensity)?;
        if let Some(budget) = self.budget {
            check_cost("budget", budget)?;
        }
        if self.max_faults == Some(0) {
            return Err(invalid(
                "max_faults",
                0,
                "at least 1 (omit it to derive the cap from the budget)",
            ));
        }
        match &self.fault {
            Fault::PacketLoss(loss) => loss.validate(),
            Fault::PacketDuplication => Ok(()),
            Fault::PacketCorruption(corruption) => corruption.validate(&self.filter),
            Fault::DependencyFailure(error) => error.validate(&self.filter),
            Fault::ApiErrorInjection(error) => error.validate(&self.filter),
            Fault::NetworkLatency(latency) => latency.validate(),
            Fault::BandwidthLimit(limit) => limit.validate().and_then(|()| {
                if self.intensity == 1.0 {
                    Ok(())
                } else {
                    Err(invalid(
                        "intensity",
                        self.intensity,
                        "1 or omitted: bandwidth_limit holds every matching egress packet to \
                         the rate (the rate is its severity)",
                    ))
                }
            }),
            Fault::SyscallError(error) => error.validate(),
            Fault::PodDeletion(deletion) => deletion.validate(),
            Fault::ResourceExhaustion(pressure) => pressure.validate(self.intensity),
            Fault::DatabaseLoad(load) => load.validate().and_then(|()| self.check_database_load()),
        }?;
        if !self.kind().takes_filter() && !self.filter.matches_everything() {
            return Err(no_filter_error(self.kind()));
        }
        self.filter.validate()?;
        if let Some(lease) = self.lease {
            check_duration_ms("lease", lease, MIN_LEASE, Duration::from_secs(3600))?;
        }
        if let Some(ramp) = &self.ramp {
            ramp.validate(self.kind(), self.duration)?;
            let first = ramp.values().and_then(<[f64]>::first).copied();
            if let (Some(first), Fault::NetworkLatency(latency)) = (first, &self.fault) {
                if latency.latency != Duration::from_millis(first as u64) {
                    return Err(invalid(
                        "fault.latency",
                        humantime::format_duration(latency.latency),
                        format!("the ramp's first step ({first} ms) or no latency: a ramp sets it"),
                    ));
                }
            } else if let (Some(first), Fault::DatabaseLoad(load)) = (first, &self.fault) {
                if load.rate != first {
                    return Err(invalid(
                        "fault.rate",
                        load.rate,
                        format!(
                            "the ramp's first step ({first} queries per second) or no rate: a \
                             ramp sets it"
                        ),
                    ));
                }
            } else if let Some(first) = first
                && self.intensity != first
            {
                return Err(invalid(
                    "intensity",
                    self.intensity,
                    format!("the ramp's first step ({first}) or no intensity: a ramp sets it"),
                ));
            }
        }
        self.guards.validate()
    }

    /// A database load sends every query (intensity 1) and has exactly one target (ADR 0020).
    fn check_database_load(&self) -> Result<(), ModelError> {
        if self.intensity != 1.0 {
            return Err(invalid(
                "intensity",
                self.intensity,
                "1 or omitted: database_load sends every query (fault.rate is its severity)",
            ));
        }
        if self.targets.len() == 1 {
            Ok(())
        } else {
            Err(invalid(
                "targets",
                format!("{} targets", self.targets.len()),
                "exactly one target for database_load: the service under test, whose guards \
                 watch the load and whose network namespace it may be sent from",
            ))
        }
    }
}

/// The document's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentType {
    /// `packet_loss`: drop packets of the target.
    PacketLoss,
    /// `packet_duplication`: duplicate the target's egress packets: the receiver gets the
    /// packet twice.
    PacketDuplication,
    /// `packet_corruption`: change one byte of the payload of the target's egress TCP and UDP
    /// packets.
    PacketCorruption,
    /// `dependency_failure`: fail the target's network calls, by default `connect()` with
    /// `ECONNREFUSED`.
    DependencyFailure,
    /// `api_error_injection`: fail the target's calls on live connections, by default
    /// `connect()` and `sendmsg()` with `ECONNRESET`; with `fault.error_types`, rewrite the
    /// status of the HTTP responses the target sends (or time them out).
    ApiErrorInjection,
    /// `network_latency`: delay the target's egress packets on a device.
    NetworkLatency,
    /// `bandwidth_limit`: hold the target's egress packets on a device to a rate.
    BandwidthLimit,
    /// `syscall_error`: fail the target's file and process calls, by default `open()` with
    /// `EIO`.
    SyscallError,
    /// `pod_deletion`: kill every process of the target's cgroup tree, once or every
    /// `fault.interval`.
    PodDeletion,
    /// `resource_exhaustion`: tighten the target's `cpu.max` and `memory.high`.
    ResourceExhaustion,
    /// `database_load`: send queries at a rate to a database the target uses.
    DatabaseLoad,
}

impl ExperimentType {
    /// Every type, in the order help texts list them.
    pub const ALL: [Self; 11] = [
        Self::PacketLoss,
        Self::PacketDuplication,
        Self::PacketCorruption,
        Self::DependencyFailure,
        Self::ApiErrorInjection,
        Self::NetworkLatency,
        Self::BandwidthLimit,
        Self::SyscallError,
        Self::PodDeletion,
        Self::ResourceExhaustion,
        Self::DatabaseLoad,
    ];

    /// The name as written in YAML, e.g. `packet_loss`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PacketLoss => "packet_loss",
            Self::PacketDuplication => "packet_duplication",
            Self::PacketCorruption => "packet_corruption",
            Self::DependencyFailure => "dependency_failure",
            Self::ApiErrorInjection => "api_error_injection",
            Self::NetworkLatency => "network_latency",
            Self::BandwidthLimit => "bandwidth_limit",
            Self::SyscallError => "syscall_error",
            Self::PodDeletion => "pod_deletion",
            Self::ResourceExhaustion => "resource_exhaustion",
            Self::DatabaseLoad => "database_load",
        }
    }

    /// A host fault acts on the target's cgroup itself, not on its packets or calls: it takes
    /// no `filter`, and its `intensity` defaults to 1.
    pub fn is_host(self) -> bool {
        matches!(self, Self::PodDeletion | Self::ResourceExhaustion)
    }

    /// The `intensity` of an experiment that gives none: 1 for the host faults, for
    /// network_latency (every packet is delayed), for bandwidth_limit (every packet is
    /// held to the rate) and for database_load (every query is sent); the types that drop or
    /// fail something must say how much.
    pub fn default_intensity(self) -> Option<f64> {
        (self.is_host()
            || matches!(
                self,
                Self::NetworkLatency | Self::BandwidthLimit | Self::DatabaseLoad
            ))
        .then_some(1.0)
    }

    /// Whether the type takes a `ramp`: not the host faults and not bandwidth_limit (its
    /// rate is its severity).
    pub fn takes_ramp(self) -> bool {
        !self.is_host() && self != Self::BandwidthLimit
    }

    /// Whether a ramp's steps are intensities (network_latency's are delays,
    /// database_load's rates in queries per second).
    pub fn ramps_intensity(self) -> bool {
        self.takes_ramp() && !matches!(self, Self::NetworkLatency | Self::DatabaseLoad)
    }

    /// The type named `name` ([`ExperimentType::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Whether the type takes a `filter` (protocol, ports, networks): the network types do.
    pub fn takes_filter(self) -> bool {
        !self.is_host() && !matches!(self, Self::SyscallError | Self::DatabaseLoad)
    }
}

/// The error for a missing `intensity` of a type without a default.
fn intensity_missing(kind: ExperimentType) -> ModelError {
    ModelError::Parse {
        path: "intensity".to_owned(),
        message: format!(
            "required field is missing: {kind} needs the probability (0 to 1) that a matching \
             packet or call is faulted, e.g. 0.1 (it defaults to 1 only for network_latency, \
             bandwidth_limit, pod_deletion, resource_exhaustion and database_load)"
        ),
    }
}

/// The error for a `filter` on a type `kind` that takes none.
fn no_filter_error(kind: ExperimentType) -> ModelError {
    let why = if kind.is_host() {
        "it acts on the whole cgroup"
    } else if kind == ExperimentType::DatabaseLoad {
        "it sends its own queries to fault.address"
    } else {
        "file and process calls have no network address"
    };
    invalid(
        "filter",
        "a filter",
        format!("no filter for {kind}: {why} (remove `filter`)"),
    )
}

impl fmt::Display for ExperimentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks `name`: 1 to 63 characters `[a-z0-9-]`, starting and ending with a letter or digit.
fn check_name(name: &str) -> Result<(), ModelError> {
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let valid = (1..=63).contains(&name.len())
        && name.bytes().all(|b| alphanumeric(b) || b == b'-')
        && name.bytes().next().is_some_and(alphanumeric)
        && name.bytes().last().is_some_and(alphanumeric);
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!("{name:?}"),
            "1 to 63 characters a-z, 0-9 and -, starting and ending with a letter or digit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::ExperimentType;

    #[test]
    fn every_type_is_listed_once_by_its_name() {
        for kind in ExperimentType::ALL {
            assert_eq!(ExperimentType::from_name(kind.as_str()), Some(kind));
        }
        let mut names = ExperimentType::ALL.map(ExperimentType::as_str);
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]), "{names:?}");
    }
}
