//! Proto <-> domain conversion. Untrusted input: every field is checked and a bad one named
//! (`spec.target`, `spec.fault.errno`, ...); nothing here panics on any message.

use std::time::Duration;

use chaos_api::proto::{self, fault, packet_loss, target};

use crate::{
    experiment::{ExperimentView, PlanSummary},
    fault::{
        Direction, EgressDrop, Fault, FaultSpec, NetFilter, SpecError,
        filter::{parse_cidr, parse_ports},
        parse_calls,
    },
    store::ExperimentRow,
    target::Target,
};

/// A request's spec as the engine's [`FaultSpec`], and its name.
pub fn spec_from_proto(p: &proto::ExperimentSpec) -> Result<(String, FaultSpec), SpecError> {
    let target = match p.target.as_ref().and_then(|t| t.kind.as_ref()) {
        Some(target::Kind::Cgroup(c)) => Target::CgroupPath(c.into()),
        Some(target::Kind::Pid(pid)) => Target::Pid(*pid),
        Some(target::Kind::ContainerId(c)) => Target::ContainerId(c.clone()),
        Some(target::Kind::PodUid(u)) => Target::PodUid(u.clone()),
        None => {
            return Err(SpecError::new(
                "spec.target",
                "none",
                "one of cgroup, pid, container_id, pod_uid",
            ));
        }
    };
    let fault = match p.fault.as_ref().and_then(|f| f.kind.as_ref()) {
        Some(fault::Kind::PacketLoss(l)) => Fault::PacketLoss {
            direction: match packet_loss::Direction::try_from(l.direction) {
                Ok(packet_loss::Direction::Ingress) => Direction::Ingress,
                Ok(packet_loss::Direction::Egress) => Direction::Egress,
                Ok(packet_loss::Direction::Both | packet_loss::Direction::Unspecified) => {
                    Direction::Both
                }
                Err(_) => {
                    return Err(SpecError::new(
                        "spec.fault.packet_loss.direction",
                        l.direction,
                        "ingress, egress or both",
                    ));
                }
            },
            egress_drop: if l.visible_egress_drop {
                EgressDrop::Visible
            } else {
                EgressDrop::Silent
            },
        },
        Some(fault::Kind::SocketError(e)) => Fault::SocketError {
            errno: e.errno.parse()?,
            calls: parse_calls(&e.calls)?,
        },
        Some(fault::Kind::SyscallError(e)) => Fault::SyscallError {
            errno: e.errno.parse()?,
            calls: parse_calls(&e.calls)?,
            path_prefix: (!e.path_prefix.is_empty()).then(|| e.path_prefix.clone()),
        },
        Some(fault::Kind::Latency(l)) => Fault::Latency {
            delay: Duration::from_millis(l.delay_ms),
            jitter: Duration::from_millis(l.jitter_ms),
            distribution: l.distribution.parse()?,
            interface: (!l.interface.is_empty()).then(|| l.interface.clone()),
        },
        Some(fault::Kind::PodKill(k)) => Fault::PodKill {
            interval: (k.interval_ms > 0).then(|| Duration::from_millis(k.interval_ms)),
        },
        Some(fault::Kind::ResourcePressure(r)) => Fault::ResourcePressure {
            cpu_share: r.cpu_share,
            memory_share: r.memory_share,
        },
        None => {
            return Err(SpecError::new(
                "spec.fault",
                "none",
                "packet_loss, socket_error, syscall_error, latency, pod_kill or \
                 resource_pressure",
            ));
        }
    };
    if p.duration_ms == 0 {
        return Err(SpecError::new(
            "spec.duration_ms",
            0,
            "more than 0 and at most 24h",
        ));
    }
    let filter = match &p.filter {
        None => NetFilter::default(),
        Some(f) => NetFilter {
            protocol: if f.protocol.is_empty() {
                Default::default()
            } else {
                f.protocol.parse()?
            },
            ports: (!f.ports.is_empty())
                .then(|| parse_ports(&f.ports))
                .transpose()?,
            cidrs: (!f.cidrs.is_empty())
                .then(|| {
                    f.cidrs
                        .iter()
                        .map(|c| parse_cidr(c))
                        .collect::<Result<_, _>>()
                })
                .transpose()?,
        },
    };
    let spec = FaultSpec {
        target,
        fault,
        probability: p.probability,
        duration: Duration::from_millis(p.duration_ms),
        max_faults: p.max_faults,
        filter,
    };
    // Range checks (probability, duration, cap, filter) live in one place: the plan.
    spec.plan()?;
    Ok((p.name.clone(), spec))
}

pub fn plan_to_proto(p: PlanSummary) -> proto::Plan {
    proto::Plan {
        cgroup: p.cgroup,
        cgroup_id: p.cgroup_id,
        programs: p.programs,
        max_faults: p.max_faults,
        projected_cost: p.projected_cost,
    }
}

pub fn state_to_proto(state: &str) -> proto::State {
    match state {
        "running" => proto::State::Running,
        "completed" => proto::State::Completed,
        "stopped" => proto::State::Stopped,
        "emergency_stopped" => proto::State::EmergencyStopped,
        "aborted" => proto::State::Aborted,
        "failed" => proto::State::Failed,
        _ => proto::State::Unspecified,
    }
}

pub fn status_to_proto(v: &ExperimentView) -> proto::ExperimentStatus {
    let r: &ExperimentRow = &v.row;
    proto::ExperimentStatus {
        id: r.id.clone(),
        name: r.name.clone(),
        fault: r.fault.clone(),
        target: r.target.clone(),
        state: state_to_proto(&r.state) as i32,
        reason: r.reason.clone(),
        started_unix_ms: r.started_ms,
        ended_unix_ms: r.ended_ms,
        counters: Some(proto::Counters {
            seen: r.seen,
            matched: r.matched,
            injected: r.injected,
            capped: r.capped,
        }),
        spent: r.spent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> proto::ExperimentSpec {
        proto::ExperimentSpec {
            name: "x".into(),
            target: Some(proto::Target {
                kind: Some(target::Kind::Pid(1)),
            }),
            fault: Some(proto::Fault {
                kind: Some(fault::Kind::SocketError(proto::SocketError {
                    errno: "ECONNREFUSED".into(),
                    calls: vec!["connect".into()],
                })),
            }),
            probability: 0.5,
            duration_ms: 1000,
            max_faults: None,
            filter: Some(proto::NetFilter {
                protocol: "tcp".into(),
                ports: "80".into(),
                cidrs: vec!["10.0.0.0/8".into()],
            }),
            budget: None,
        }
    }

    #[test]
    fn a_valid_request_converts() {
        let (name, spec) = spec_from_proto(&valid()).unwrap();
        assert_eq!(name, "x");
        assert_eq!(spec.filter.ports, Some((80, 80)));
    }

    #[test]
    fn every_bad_field_is_named() {
        type Mutation = Box<dyn Fn(&mut proto::ExperimentSpec)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("spec.target", Box::new(|p| p.target = None)),
            ("spec.fault", Box::new(|p| p.fault = None)),
            ("spec.duration_ms", Box::new(|p| p.duration_ms = 0)),
            ("probability", Box::new(|p| p.probability = 2.0)),
            (
                "filter.ports",
                Box::new(|p| p.filter.as_mut().unwrap().ports = "x".into()),
            ),
            (
                "filter.cidrs",
                Box::new(|p| p.filter.as_mut().unwrap().cidrs = vec!["nope".into()]),
            ),
            (
                "filter.protocol",
                Box::new(|p| p.filter.as_mut().unwrap().protocol = "sctp".into()),
            ),
            (
                "fault.errno",
                Box::new(|p| {
                    p.fault = Some(proto::Fault {
                        kind: Some(fault::Kind::SocketError(proto::SocketError {
                            errno: "EWHAT".into(),
                            calls: vec!["connect".into()],
                        })),
                    })
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut p = valid();
            mutate(&mut p);
            assert_eq!(spec_from_proto(&p).unwrap_err().field, field);
        }
    }
}
