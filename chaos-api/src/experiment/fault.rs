//! The `fault` of an experiment: the [`Fault`] of every type, and the settings of packet loss
//! (direction, how egress drops look) and socket errors (errno, which calls), with the per-type
//! defaults and checks, and the checks every `fault.calls` list shares. The other types'
//! settings live in `latency`, `syscall`, `host`, `http` (api_error_injection's HTTP
//! errors), `packet` (duplication and corruption) and `database` (database load).

use serde::Deserialize;

use super::{
    ApiError, BandwidthLimit, DatabaseLoad, Errno, ExperimentType, NetFilter, NetworkLatency,
    PacketCorruption, PodDeletion, ResourceExhaustion, SyscallError,
};
use crate::error::{ModelError, invalid};

/// The fault of an experiment: its type and the type's settings (`fault` in the document).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// `type: packet_loss`.
    PacketLoss(PacketLoss),
    /// `type: packet_duplication` (no settings).
    PacketDuplication,
    /// `type: packet_corruption`.
    PacketCorruption(PacketCorruption),
    /// `type: dependency_failure`.
    DependencyFailure(SocketError),
    /// `type: api_error_injection`: L4 socket errors, or HTTP error responses.
    ApiErrorInjection(ApiError),
    /// `type: network_latency`.
    NetworkLatency(NetworkLatency),
    /// `type: bandwidth_limit`.
    BandwidthLimit(BandwidthLimit),
    /// `type: syscall_error`.
    SyscallError(SyscallError),
    /// `type: pod_deletion`.
    PodDeletion(PodDeletion),
    /// `type: resource_exhaustion`.
    ResourceExhaustion(ResourceExhaustion),
    /// `type: database_load`.
    DatabaseLoad(DatabaseLoad),
}

impl Fault {
    /// The experiment type of this fault (the document's `type`).
    pub fn kind(&self) -> ExperimentType {
        match self {
            Self::PacketLoss(_) => ExperimentType::PacketLoss,
            Self::PacketDuplication => ExperimentType::PacketDuplication,
            Self::PacketCorruption(_) => ExperimentType::PacketCorruption,
            Self::DependencyFailure(_) => ExperimentType::DependencyFailure,
            Self::ApiErrorInjection(_) => ExperimentType::ApiErrorInjection,
            Self::NetworkLatency(_) => ExperimentType::NetworkLatency,
            Self::BandwidthLimit(_) => ExperimentType::BandwidthLimit,
            Self::SyscallError(_) => ExperimentType::SyscallError,
            Self::PodDeletion(_) => ExperimentType::PodDeletion,
            Self::ResourceExhaustion(_) => ExperimentType::ResourceExhaustion,
            Self::DatabaseLoad(_) => ExperimentType::DatabaseLoad,
        }
    }
}

/// `fault` of a `packet_loss` experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketLoss {
    /// Which traffic is dropped. Default: both.
    pub direction: Direction,
    /// How egress drops look to the sender. Default: silent.
    pub egress_drop: EgressDrop,
}

impl PacketLoss {
    pub(super) fn validate(&self) -> Result<(), ModelError> {
        if self.direction == Direction::Ingress && self.egress_drop == EgressDrop::Visible {
            return Err(invalid(
                "fault.egress_drop",
                "visible",
                "silent (the default) when direction is ingress",
            ));
        }
        Ok(())
    }
}

/// `fault.direction` of a `packet_loss` experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// `ingress`: packets the target receives.
    Ingress,
    /// `egress`: packets the target sends.
    Egress,
    /// `both` (default).
    #[default]
    Both,
}

impl Direction {
    /// Every direction.
    pub const ALL: &'static [Self] = &[Self::Ingress, Self::Egress, Self::Both];

    /// The name as written in YAML and in the proto, e.g. `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
            Self::Both => "both",
        }
    }
}

/// `fault.egress_drop` of a `packet_loss` experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressDrop {
    /// `silent` (default): the packet vanishes, as on a lossy link; TCP retransmits.
    #[default]
    Silent,
    /// `visible`: the sending call fails with `EPERM`.
    Visible,
}

impl EgressDrop {
    /// Both ways an egress drop can look.
    pub const ALL: &'static [Self] = &[Self::Silent, Self::Visible];

    /// The name as written in YAML and in the proto, e.g. `silent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Silent => "silent",
            Self::Visible => "visible",
        }
    }
}

/// `fault` of a `dependency_failure` experiment, or of an `api_error_injection` one without
/// `fault.error_types` ([`ApiError::Socket`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketError {
    /// The error the faulted calls return. Default: `ECONNREFUSED` for dependency_failure,
    /// `ECONNRESET` for api_error_injection.
    pub errno: Errno,
    /// The calls that fail; non-empty, no repeats. Default: `[connect]` for
    /// dependency_failure, `[connect, sendmsg]` for api_error_injection.
    pub calls: Vec<SocketCall>,
}

impl SocketError {
    /// The defaults of `kind`: api_error_injection's for it, dependency_failure's for any other
    /// type. chaos-ctl's help quotes them.
    pub fn defaults(kind: ExperimentType) -> Self {
        if kind == ExperimentType::ApiErrorInjection {
            Self {
                errno: Errno::ECONNRESET,
                calls: vec![SocketCall::Connect, SocketCall::Sendmsg],
            }
        } else {
            Self {
                errno: Errno::ECONNREFUSED,
                calls: vec![SocketCall::Connect],
            }
        }
    }

    pub(super) fn validate(&self, filter: &NetFilter) -> Result<(), ModelError> {
        check_calls(&self.calls)?;
        if self.calls.contains(&SocketCall::Socket)
            && (filter.ports.is_some() || !filter.cidrs.is_empty())
        {
            return Err(invalid(
                "fault.calls",
                "socket",
                "connect, sendmsg or bind when filter.ports or filter.cidrs is set \
                 (socket() has no address)",
            ));
        }
        Ok(())
    }
}

/// One entry of `fault.calls` of a socket-error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketCall {
    /// `connect`: `connect()` (TCP) and connected UDP.
    Connect,
    /// `sendmsg`: `sendmsg()`/`sendto()` with an address (UDP).
    Sendmsg,
    /// `bind`: `bind()`.
    Bind,
    /// `socket`: `socket()` itself; cannot be combined with a port or network filter.
    Socket,
}

impl SocketCall {
    /// The name as written in YAML and in the proto, e.g. `connect`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Sendmsg => "sendmsg",
            Self::Bind => "bind",
            Self::Socket => "socket",
        }
    }
}

impl CallName for SocketCall {
    const ALL: &'static [Self] = &[Self::Connect, Self::Sendmsg, Self::Bind, Self::Socket];

    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// The calls of a `fault.calls` list ([`SocketCall`], [`SyscallCall`](super::SyscallCall)):
/// every one of them, by name. The daemon uses the same lists for the API's strings.
pub trait CallName: Copy + PartialEq + 'static {
    /// Every call, in the order the error messages list them.
    const ALL: &'static [Self];

    /// The name as written in YAML.
    fn name(self) -> &'static str;

    /// "one or more of a, b, c", for error messages.
    fn allowed() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|call| call.name()).collect();
        format!("one or more of {}", names.join(", "))
    }

    /// The call named `name`.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|call| call.name() == name)
    }

    /// The call named `name`, or the error at `fault.calls[index]`.
    fn parse(index: usize, name: &str) -> Result<Self, ModelError> {
        Self::from_name(name).ok_or_else(|| {
            invalid(
                format!("fault.calls[{index}]"),
                format!("{name:?}"),
                Self::allowed(),
            )
        })
    }
}

/// Checks a `fault.calls` list: not empty, each call at most once.
pub(super) fn check_calls<C: CallName>(calls: &[C]) -> Result<(), ModelError> {
    if calls.is_empty() {
        return Err(invalid("fault.calls", "[]", C::allowed()));
    }
    for (index, call) in calls.iter().enumerate() {
        if calls[..index].contains(call) {
            return Err(invalid(
                format!("fault.calls[{index}]"),
                call.name(),
                "each call at most once",
            ));
        }
    }
    Ok(())
}
