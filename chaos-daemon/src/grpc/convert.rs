//! Domain -> proto for answers: plans and experiment status. Requests are read by chaos-api's
//! [`Experiment::from_proto`](chaos_api::experiment::Experiment::from_proto).

use chaos_api::proto;

use crate::{engine::Plan, experiment::ExperimentView};

/// A plan as sent, with the money it reserves.
pub fn plan_to_proto(p: &Plan, projected_cost: f64) -> proto::Plan {
    proto::Plan {
        cgroup: p.cgroup.clone(),
        cgroup_id: p.cgroup_id,
        programs: p.programs.clone(),
        max_faults: p.max_faults,
        projected_cost,
        changes: p.changes.clone(),
    }
}

pub fn status_to_proto(v: &ExperimentView) -> proto::ExperimentStatus {
    let r = &v.row;
    proto::ExperimentStatus {
        id: r.id.clone(),
        name: r.name.clone(),
        experiment_type: r.kind.clone(),
        target: r.target.clone(),
        state: r.state.to_proto() as i32,
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
        guards: v
            .guards
            .iter()
            .map(|g| proto::GuardStatus {
                name: g.name.clone(),
                kind: g.kind.as_str().to_owned(),
                objective: g.objective.clone(),
                value: g.value,
                ok: g.ok,
                detail: g.detail.clone(),
            })
            .collect(),
        impact: v.impact,
        budget: r.budget,
        step: v.step.clone(),
    }
}

/// Pre-flight checks as sent.
pub fn checks_to_proto(checks: &[crate::safety::Check]) -> Vec<proto::Check> {
    checks
        .iter()
        .map(|c| proto::Check {
            name: c.name.to_owned(),
            passed: c.passed,
            detail: c.detail.clone(),
        })
        .collect()
}
