//! What a validated experiment ([`chaos_api::experiment::Experiment`]) is in the kernel: one
//! slot configuration and the hooks it needs ([`KernelPlan`]). The model and its checks are
//! chaos-api's; this module only translates, and nothing here touches the kernel.
//!
//! * [`filter`] — the protocol / port / CIDR filter in the kernel's representation.
//! * [`syscall`] — the LSM hooks and slot flags of the file and process calls.
//! * [`latency`] — the delay program's parameters and the worst-case delay.
//! * [`bandwidth`] — the rate program's parameters (a token bucket under `fq`, as latency).
//! * [`http`] — the HTTP error program's statuses and server ports.
//!
//! The host faults (pod deletion, resource exhaustion) have no kernel plan: see [`crate::host`].

pub mod bandwidth;
pub mod filter;
pub mod http;
pub mod latency;
pub mod syscall;

use chaos_api::experiment::{
    ApiError, CallName as _, CorruptChecksum, Direction, EgressDrop, Experiment, Fault, SocketCall,
};
use std::time::Duration;

use chaos_common::{SlotConfig, THRESHOLD_ALWAYS, TcConfig};

pub use self::latency::LatencyPlan;
use crate::ebpf::{Hook, lsm::LsmHook, tc::TcProgram};

/// A kernel-program fault, ready for a slot: the configuration (disarmed, no deadline yet) and
/// what to attach.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelPlan {
    pub config: SlotConfig,
    /// Per-slot cgroup hooks.
    pub hooks: Vec<Hook>,
    /// Global LSM hooks the slot needs (file and process syscall errors).
    pub lsm_hooks: Vec<LsmHook>,
    /// The normalized path prefix for those hooks, if any.
    pub path_prefix: Option<String>,
    /// A latency or bandwidth fault's device-side parameters (its program is not a cgroup
    /// hook): one device under `fq`.
    pub latency: Option<LatencyPlan>,
    /// A program on the egress of every device of the target's namespace: the silent egress
    /// drop (the `cgroup_skb` egress drop is reported back to the sender), an
    /// api_error_injection's HTTP errors (`fault.error_types`), the duplication or the
    /// corruption.
    pub egress: Option<EgressPlan>,
}

/// A tc egress program and its configuration (the engine fills in the target).
#[derive(Clone, Debug, PartialEq)]
pub struct EgressPlan {
    pub program: TcProgram,
    pub config: TcConfig,
}

/// The kernel plan of `experiment` with the fault cap `max_faults` (`u64::MAX` = none); `None`
/// for the host faults and database_load, which take no slot.
pub fn kernel_plan(experiment: &Experiment, max_faults: u64) -> Option<KernelPlan> {
    let mut config = SlotConfig {
        threshold: probability_threshold(experiment.intensity),
        max_faults,
        ..SlotConfig::default()
    };
    filter::apply(&experiment.filter, &mut config);
    let mut plan = KernelPlan {
        config,
        hooks: Vec::new(),
        lsm_hooks: Vec::new(),
        path_prefix: None,
        latency: None,
        egress: None,
    };
    match &experiment.fault {
        Fault::PacketLoss(loss) => {
            if loss.direction != Direction::Egress {
                plan.hooks.push(Hook::SkbIngress);
            }
            if loss.direction != Direction::Ingress {
                match loss.egress_drop {
                    EgressDrop::Silent => {
                        plan.egress = Some(EgressPlan {
                            program: TcProgram::Loss,
                            config: TcConfig::default(),
                        });
                    }
                    EgressDrop::Visible => plan.hooks.push(Hook::SkbEgress),
                }
            }
        }
        Fault::PacketDuplication => {
            plan.egress = Some(EgressPlan {
                program: TcProgram::Duplicate,
                config: TcConfig::default(),
            });
        }
        Fault::PacketCorruption(corruption) => {
            plan.egress = Some(EgressPlan {
                program: TcProgram::Corrupt,
                config: TcConfig {
                    flags: if corruption.checksum == CorruptChecksum::Wrong {
                        chaos_common::TC_FLAG_CSUM_WRONG
                    } else {
                        0
                    },
                    ..TcConfig::default()
                },
            });
        }
        Fault::DependencyFailure(error) | Fault::ApiErrorInjection(ApiError::Socket(error)) => {
            plan.config.errno = error.errno.number();
            for &call in SocketCall::ALL.iter().filter(|c| error.calls.contains(c)) {
                plan.hooks.extend_from_slice(socket_hooks(call));
            }
        }
        Fault::ApiErrorInjection(ApiError::Http(http)) => {
            plan.egress = Some(EgressPlan {
                program: TcProgram::Http,
                config: http::config(http),
            });
        }
        Fault::SyscallError(error) => {
            let lsm = syscall::plan(&mut plan.config, error);
            plan.lsm_hooks = lsm.hooks;
            plan.path_prefix = lsm.path_prefix;
        }
        Fault::NetworkLatency(latency) => {
            // fq's horizon is sized for the largest step the ramp may reach.
            let largest = experiment
                .ramp
                .as_ref()
                .and_then(|r| r.values())
                .and_then(|steps| steps.iter().copied().reduce(f64::max))
                .map(|ms| Duration::from_millis(ms as u64));
            plan.latency = Some(latency::plan(latency, largest));
        }
        Fault::BandwidthLimit(limit) => plan.latency = Some(bandwidth::plan(limit)),
        Fault::PodDeletion(_) | Fault::ResourceExhaustion(_) | Fault::DatabaseLoad(_) => {
            return None;
        }
    }
    Some(plan)
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

/// A probability in [0, 1] as the u32-comparison threshold the kernel uses: inject when
/// `prandom < threshold`.
pub fn probability_threshold(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * THRESHOLD_ALWAYS as f64).round() as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chaos_api::experiment::{
        Errno, HttpError, HttpStatus, NetFilter, PacketCorruption, PacketLoss, PortRange, Protocol,
        SocketError, Target, TargetKind,
    };

    use super::*;

    fn experiment(fault: Fault) -> Experiment {
        Experiment {
            name: "t".into(),
            targets: vec![Target::new(TargetKind::Pid(1))],
            fault,
            duration: Duration::from_secs(5),
            intensity: 0.3,
            budget: None,
            max_faults: None,
            dry_run: false,
            filter: NetFilter::default(),
            guards: Default::default(),
            ramp: None,
            lease: None,
        }
    }

    #[test]
    fn probability_maps_to_threshold_exactly_at_the_ends() {
        assert_eq!(probability_threshold(0.0), 0);
        assert_eq!(probability_threshold(1.0), THRESHOLD_ALWAYS);
        assert_eq!(probability_threshold(0.5), 1 << 31);
    }

    #[test]
    fn loss_plan_has_the_directions_hooks_and_drop_mode() {
        let loss = |direction, egress_drop| {
            Fault::PacketLoss(PacketLoss {
                direction,
                egress_drop,
            })
        };
        let plan = kernel_plan(&experiment(loss(Direction::Both, EgressDrop::Visible)), 7).unwrap();
        assert_eq!(plan.hooks, vec![Hook::SkbIngress, Hook::SkbEgress]);
        assert_eq!(plan.egress, None);
        assert_eq!(plan.config.armed, 0, "a plan is never armed");
        assert_eq!(plan.config.max_faults, 7);
        // The silent egress drop is the tc program's, not a cgroup hook.
        for (direction, hooks) in [
            (Direction::Egress, vec![]),
            (Direction::Both, vec![Hook::SkbIngress]),
        ] {
            let plan =
                kernel_plan(&experiment(loss(direction, EgressDrop::Silent)), u64::MAX).unwrap();
            assert_eq!(plan.hooks, hooks);
            assert_eq!(plan.egress.unwrap().program, TcProgram::Loss);
        }
        let plan = kernel_plan(
            &experiment(loss(Direction::Ingress, EgressDrop::Silent)),
            u64::MAX,
        )
        .unwrap();
        assert_eq!(plan.hooks, vec![Hook::SkbIngress]);
        assert_eq!(plan.egress, None);
    }

    #[test]
    fn duplication_and_corruption_plans_are_their_tc_programs() {
        let mut duplication = experiment(Fault::PacketDuplication);
        duplication.filter.protocol = Protocol::Udp;
        let plan = kernel_plan(&duplication, 11).unwrap();
        assert_eq!(
            plan.egress,
            Some(EgressPlan {
                program: TcProgram::Duplicate,
                config: TcConfig::default(),
            })
        );
        assert!(
            plan.hooks.is_empty() && plan.lsm_hooks.is_empty() && plan.latency.is_none(),
            "{plan:?}"
        );
        assert_eq!(plan.config.max_faults, 11);
        assert_eq!(plan.config.threshold, probability_threshold(0.3));
        assert_eq!(plan.config.armed, 0, "a plan is never armed");
        // The filter reaches the slot as for any network fault.
        assert_eq!(plan.config.protocol, chaos_common::PROTO_UDP);
        for (checksum, flags) in [
            (CorruptChecksum::Wrong, chaos_common::TC_FLAG_CSUM_WRONG),
            (CorruptChecksum::Fixed, 0),
        ] {
            let corruption = Fault::PacketCorruption(PacketCorruption { checksum });
            let plan = kernel_plan(&experiment(corruption), u64::MAX).unwrap();
            assert_eq!(
                plan.egress,
                Some(EgressPlan {
                    program: TcProgram::Corrupt,
                    config: TcConfig {
                        flags,
                        ..TcConfig::default()
                    },
                }),
                "{checksum:?}"
            );
            assert!(
                plan.hooks.is_empty() && plan.lsm_hooks.is_empty(),
                "{plan:?}"
            );
        }
        assert_ne!(chaos_common::TC_FLAG_CSUM_WRONG, 0);
    }

    #[test]
    fn socket_error_plan_attaches_v4_and_v6_hooks_of_each_call() {
        let f = Fault::DependencyFailure(SocketError {
            errno: Errno::ECONNREFUSED,
            calls: vec![SocketCall::Socket, SocketCall::Connect],
        });
        let plan = kernel_plan(&experiment(f), u64::MAX).unwrap();
        assert_eq!(
            plan.hooks,
            vec![Hook::Connect4, Hook::Connect6, Hook::SockCreate]
        );
        assert_eq!(plan.config.errno, libc::ECONNREFUSED as u32);
    }

    #[test]
    fn api_error_plan_is_the_socket_hooks_or_the_http_rewrite() {
        let socket = Fault::ApiErrorInjection(ApiError::Socket(SocketError::defaults(
            chaos_api::experiment::ExperimentType::ApiErrorInjection,
        )));
        let plan = kernel_plan(&experiment(socket), u64::MAX).unwrap();
        assert_eq!(
            plan.hooks,
            vec![
                Hook::Connect4,
                Hook::Connect6,
                Hook::Sendmsg4,
                Hook::Sendmsg6
            ]
        );
        assert_eq!(plan.config.errno, libc::ECONNRESET as u32);
        assert_eq!(plan.egress, None);
        let http = HttpError {
            error_types: vec![HttpStatus::Code(503), HttpStatus::Timeout],
            server_ports: Some(PortRange {
                low: 8080,
                high: 8080,
            }),
        };
        let plan = kernel_plan(
            &experiment(Fault::ApiErrorInjection(ApiError::Http(http.clone()))),
            9,
        )
        .unwrap();
        assert_eq!(
            plan.egress,
            Some(EgressPlan {
                program: TcProgram::Http,
                config: http::config(&http),
            })
        );
        assert!(
            plan.hooks.is_empty() && plan.lsm_hooks.is_empty(),
            "{plan:?}"
        );
        assert!(plan.latency.is_none());
        assert_eq!(plan.config.max_faults, 9);
        assert_eq!(plan.config.threshold, probability_threshold(0.3));
    }

    #[test]
    fn the_errno_table_is_the_kernels() {
        for n in 1..=chaos_api::experiment::MAX_ERRNO {
            let ours = Errno::new(n).map(Errno::name);
            let libc = nix::errno::Errno::from_raw(n as i32);
            let theirs = (libc != nix::errno::Errno::UnknownErrno).then(|| format!("{libc:?}"));
            assert_eq!(ours.map(str::to_owned), theirs, "errno {n}");
        }
    }
}
