//! Fault specifications: what a user asks for, validated, and turned into one slot
//! configuration plus the kernel hooks it needs. Nothing here touches the kernel.
//!
//! * [`filter`] — the shared protocol / port / CIDR filter.
//! * [`errno`] — errno names and numbers.
//! * [`syscall`] — the LSM hooks of the file and process calls a syscall-error fault can fail.
//! * [`latency`] — the latency fault's delay, jitter and device.
//!
//! The call lists and the path-prefix rules are chaos-api's (the same model validates experiment
//! files offline); [`parse_call`] reads them from API requests.

pub mod errno;
pub mod filter;
pub mod latency;
pub mod syscall;

use std::{fmt, time::Duration};

use chaos_common::{FLAG_SILENT_EGRESS, SlotConfig, THRESHOLD_ALWAYS};

pub use chaos_api::experiment::{CallName, SocketCall, SyscallCall};

pub use self::{
    errno::Errno,
    filter::NetFilter,
    latency::{Distribution, LatencyPlan},
};
use crate::{
    ebpf::{Hook, lsm::LsmHook},
    target::Target,
};

/// The longest a fault may run. Longer drills are several experiments.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The shortest pause between two kills of one target: the kubelet needs time to restart it.
pub const MIN_KILL_INTERVAL: Duration = Duration::from_millis(100);

/// A request to inject one fault into one target.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    pub target: Target,
    pub fault: Fault,
    /// Probability that a matching event is faulted, in `[0, 1]`.
    pub probability: f64,
    /// How long the fault may inject; enforced in the kernel.
    pub duration: Duration,
    /// Most injections in total (the fault budget); `None` = unlimited.
    pub max_faults: Option<u64>,
    pub filter: NetFilter,
}

/// The kinds of fault the engine injects today.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Drop packets of the target's sockets.
    PacketLoss {
        direction: Direction,
        egress_drop: EgressDrop,
    },
    /// Fail socket calls of the target with an errno ("dependency failure").
    SocketError {
        errno: Errno,
        calls: Vec<SocketCall>,
    },
    /// Fail file and process syscalls of the target with an errno (BPF LSM / `fmod_ret`).
    SyscallError {
        errno: Errno,
        calls: Vec<SyscallCall>,
        /// Only files at or under this path (file calls only; see [`crate::path_dirs`]).
        path_prefix: Option<String>,
    },
    /// Delay the target's egress packets on a device (EDT + `fq`).
    Latency {
        delay: Duration,
        jitter: Duration,
        distribution: Distribution,
        /// The device; `None` = the device of the default route.
        interface: Option<String>,
    },
    /// Kill every process of the target's cgroup tree with `cgroup.kill` ("pod deletion"):
    /// at the start, then every `interval` while the target has processes (`None` = once).
    /// Each kill is one fault: `max_faults` caps the kills.
    PodKill { interval: Option<Duration> },
    /// Tighten the target's `cpu.max` / `memory.high` to a share of what it may use now
    /// ("resource exhaustion"); the old values are journaled and put back on stop. With
    /// neither share given, the daemon uses its config's `experiments.resource_exhaustion`.
    ResourcePressure {
        /// Share of the CPU time the target may use now, in (0, 1].
        cpu_share: Option<f64>,
        /// Share of the target's memory limit (or, with no limit, of its current usage) above
        /// which it is throttled and reclaimed, in (0, 1].
        memory_share: Option<f64>,
    },
}

impl Fault {
    /// Short kind name for logs, metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::PacketLoss { .. } => "packet_loss",
            Fault::SocketError { .. } => "socket_error",
            Fault::SyscallError { .. } => "syscall_error",
            Fault::Latency { .. } => "latency",
            Fault::PodKill { .. } => "pod_kill",
            Fault::ResourcePressure { .. } => "resource_pressure",
        }
    }

    /// Whether the fault is made by writing cgroup files rather than by kernel programs
    /// (see [`crate::host_fault`]): it takes no slot and no network filter.
    pub fn is_host(&self) -> bool {
        matches!(self, Fault::PodKill { .. } | Fault::ResourcePressure { .. })
    }
}

/// Which packets of the target are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
    Both,
}

/// How an egress drop looks to the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EgressDrop {
    /// The send fails with `EPERM` (what a local firewall drop looks like).
    Visible,
    /// The send succeeds and the packet vanishes (what loss on the wire looks like).
    #[default]
    Silent,
}

/// The cgroup hooks that see a socket call.
fn socket_hooks(call: SocketCall) -> &'static [Hook] {
    match call {
        SocketCall::Connect => &[Hook::Connect4, Hook::Connect6],
        SocketCall::Sendmsg => &[Hook::Sendmsg4, Hook::Sendmsg6],
        SocketCall::Bind => &[Hook::Bind4, Hook::Bind6],
        SocketCall::Socket => &[Hook::SockCreate],
    }
}

/// The call an API request names in `fault.calls` (the names are chaos-api's).
pub fn parse_call<C: CallName>(name: &str) -> Result<C, SpecError> {
    C::from_name(name).ok_or_else(|| SpecError::new("fault.calls", name, C::allowed()))
}

/// Every call of an API request's `fault.calls`.
pub fn parse_calls<C: CallName>(names: &[String]) -> Result<Vec<C>, SpecError> {
    names.iter().map(|name| parse_call(name)).collect()
}

/// A spec field with a value that is not allowed. Says which field, what it was, and what is
/// allowed, so the user can fix it without reading code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value} is not allowed; expected {allowed}")]
pub struct SpecError {
    /// Dotted path of the field, e.g. `filter.cidrs`.
    pub field: String,
    /// The offending value as the user wrote it.
    pub value: String,
    /// What would be accepted.
    pub allowed: String,
}

impl SpecError {
    pub fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        allowed: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

/// A validated spec, ready for the kernel: the slot configuration (disarmed, no deadline yet)
/// and the hooks to attach.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub config: SlotConfig,
    pub hooks: Vec<Hook>,
    /// Global LSM hooks the slot needs (file and process syscall errors).
    pub lsm_hooks: Vec<LsmHook>,
    /// The slot's path prefix for those hooks, if any.
    pub lsm_path: Option<String>,
    /// A latency fault's device-side plan (its program is not a cgroup hook).
    pub latency: Option<LatencyPlan>,
}

impl FaultSpec {
    /// Checks every field and builds the plan. Fails on the first bad field.
    pub fn plan(&self) -> Result<Plan, SpecError> {
        let threshold = probability_threshold(self.probability)?;
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(SpecError::new(
                "duration",
                format!("{:?}", self.duration),
                "more than 0 and at most 24h",
            ));
        }
        if self.max_faults == Some(0) {
            return Err(SpecError::new(
                "max_faults",
                0,
                "at least 1 (omit it for no cap; use probability 0 to inject nothing)",
            ));
        }
        let mut config = SlotConfig {
            threshold,
            max_faults: self.max_faults.unwrap_or(u64::MAX),
            ..SlotConfig::default()
        };
        if self.fault.is_host() && self.filter != NetFilter::default() {
            return Err(SpecError::new(
                "filter",
                format!("{:?}", self.filter),
                format!("no filter: {} acts on the whole cgroup", self.fault.kind()),
            ));
        }
        self.filter.apply(&mut config)?;
        let mut latency = None;
        let hooks = match &self.fault {
            Fault::PacketLoss {
                direction,
                egress_drop,
            } => {
                if *egress_drop == EgressDrop::Silent {
                    config.flags |= FLAG_SILENT_EGRESS;
                }
                match direction {
                    Direction::Ingress => vec![Hook::SkbIngress],
                    Direction::Egress => vec![Hook::SkbEgress],
                    Direction::Both => vec![Hook::SkbIngress, Hook::SkbEgress],
                }
            }
            Fault::SocketError { errno, calls } => {
                if calls.is_empty() {
                    return Err(SpecError::new(
                        "fault.calls",
                        "[]",
                        "at least one of connect, sendmsg, bind, socket",
                    ));
                }
                if calls.contains(&SocketCall::Socket) && self.filter.has_address_filter() {
                    return Err(SpecError::new(
                        "fault.calls",
                        "socket",
                        "no port or CIDR filter with socket: socket() has no address \
                         (use a separate experiment for it)",
                    ));
                }
                config.errno = errno.number();
                let mut hooks: Vec<Hook> = Vec::new();
                for &call in SocketCall::ALL.iter().filter(|c| calls.contains(c)) {
                    hooks.extend_from_slice(socket_hooks(call));
                }
                hooks
            }
            Fault::SyscallError {
                errno,
                calls,
                path_prefix,
            } => {
                if self.filter != NetFilter::default() {
                    return Err(SpecError::new(
                        "filter",
                        format!("{:?}", self.filter),
                        "no protocol, port or CIDR filter with syscall_error (file and process \
                         calls have no network address)",
                    ));
                }
                let lsm = syscall::plan(&mut config, *errno, calls, path_prefix.as_deref())?;
                return Ok(Plan {
                    config,
                    hooks: Vec::new(),
                    lsm_hooks: lsm.hooks,
                    lsm_path: lsm.path_prefix,
                    latency: None,
                });
            }
            Fault::Latency {
                delay,
                jitter,
                distribution,
                interface,
            } => {
                latency = Some(latency::plan(
                    *delay,
                    *jitter,
                    *distribution,
                    interface.as_deref(),
                )?);
                Vec::new()
            }
            Fault::PodKill { interval } => {
                if interval.is_some_and(|i| i < MIN_KILL_INTERVAL) {
                    return Err(SpecError::new(
                        "fault.interval",
                        format!("{interval:?}"),
                        format!("at least {MIN_KILL_INTERVAL:?} (or none: kill once)"),
                    ));
                }
                Vec::new()
            }
            Fault::ResourcePressure {
                cpu_share,
                memory_share,
            } => {
                if self.probability != 1.0 {
                    return Err(SpecError::new(
                        "probability",
                        self.probability,
                        "1: resource pressure applies to the whole cgroup",
                    ));
                }
                for (field, share) in [
                    ("fault.cpu_share", cpu_share),
                    ("fault.memory_share", memory_share),
                ] {
                    if let Some(v) = share
                        && !(*v > 0.0 && *v <= 1.0)
                    {
                        return Err(SpecError::new(
                            field,
                            v,
                            "more than 0 and at most 1 (0.5 = half of what it may use now)",
                        ));
                    }
                }
                Vec::new()
            }
        };
        Ok(Plan {
            config,
            hooks,
            lsm_hooks: Vec::new(),
            lsm_path: None,
            latency,
        })
    }
}

/// `p` as the u32-comparison threshold the kernel uses: inject when `prandom < threshold`.
pub fn probability_threshold(p: f64) -> Result<u64, SpecError> {
    if !(0.0..=1.0).contains(&p) {
        return Err(SpecError::new(
            "probability",
            p,
            "a number from 0 to 1 (0.3 = 30%)",
        ));
    }
    Ok((p * THRESHOLD_ALWAYS as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fault: Fault) -> FaultSpec {
        FaultSpec {
            target: Target::Pid(1),
            fault,
            probability: 0.3,
            duration: Duration::from_secs(5),
            max_faults: None,
            filter: NetFilter::default(),
        }
    }

    fn loss() -> Fault {
        Fault::PacketLoss {
            direction: Direction::Both,
            egress_drop: EgressDrop::Visible,
        }
    }

    #[test]
    fn probability_maps_to_threshold_exactly_at_the_ends() {
        assert_eq!(probability_threshold(0.0), Ok(0));
        assert_eq!(probability_threshold(1.0), Ok(THRESHOLD_ALWAYS));
        assert_eq!(probability_threshold(0.5), Ok(1 << 31));
        for bad in [-0.01, 1.0001, f64::NAN, f64::INFINITY] {
            let e = probability_threshold(bad).unwrap_err();
            assert_eq!(e.field, "probability");
        }
    }

    #[test]
    fn loss_plan_has_the_directions_hooks_and_drop_mode() {
        let plan = spec(loss()).plan().unwrap();
        assert_eq!(plan.hooks, vec![Hook::SkbIngress, Hook::SkbEgress]);
        assert_eq!(plan.config.flags & FLAG_SILENT_EGRESS, 0);
        assert_eq!(plan.config.armed, 0, "a plan is never armed");
        assert_eq!(plan.config.max_faults, u64::MAX);
        let silent = Fault::PacketLoss {
            direction: Direction::Egress,
            egress_drop: EgressDrop::Silent,
        };
        let plan = spec(silent).plan().unwrap();
        assert_eq!(plan.hooks, vec![Hook::SkbEgress]);
        assert_ne!(plan.config.flags & FLAG_SILENT_EGRESS, 0);
    }

    #[test]
    fn socket_error_plan_attaches_v4_and_v6_hooks_of_each_call() {
        let f = Fault::SocketError {
            errno: "ECONNREFUSED".parse().unwrap(),
            calls: vec![SocketCall::Socket, SocketCall::Connect],
        };
        let plan = spec(f).plan().unwrap();
        assert_eq!(
            plan.hooks,
            vec![Hook::Connect4, Hook::Connect6, Hook::SockCreate]
        );
        assert_eq!(plan.config.errno, libc::ECONNREFUSED as u32);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut s = spec(loss());
        s.duration = Duration::ZERO;
        assert_eq!(s.plan().unwrap_err().field, "duration");
        let mut s = spec(loss());
        s.max_faults = Some(0);
        assert_eq!(s.plan().unwrap_err().field, "max_faults");
        let s = spec(Fault::SocketError {
            errno: Errno::new(111).unwrap(),
            calls: vec![],
        });
        assert_eq!(s.plan().unwrap_err().field, "fault.calls");
        let mut s = spec(Fault::SocketError {
            errno: Errno::new(111).unwrap(),
            calls: vec![SocketCall::Socket],
        });
        s.filter.ports = Some((80, 80));
        let e = s.plan().unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("fault.calls", "socket")
        );
        assert_eq!(
            parse_call::<SocketCall>("listen").unwrap_err().field,
            "fault.calls"
        );
    }
}
