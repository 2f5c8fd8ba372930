//! Domain -> proto for answers: plans, experiment status, pre-flight checks (in a refused dry
//! run's metadata too) and pages of experiments. Requests are read by chaos-api's
//! [`Experiment::from_proto`](chaos_api::experiment::Experiment::from_proto).

use chaos_api::{error::cut_and_escape, proto};
use prost::Message as _;
use tonic::{
    Status,
    metadata::{MetadataMap, MetadataValue},
};

use crate::{engine::Plan, experiment::ExperimentView, host::dbload::Figures, store::PageKey};

/// The most experiments a ListExperiments page holds.
pub const MAX_PAGE_SIZE: usize = 100;

/// The most bytes of experiments a ListExperiments page holds: a quarter of the 4 MiB a gRPC
/// message may have.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// A plan as sent, with the money it reserves.
pub fn plan_to_proto(p: &Plan, projected_cost: f64) -> proto::Plan {
    proto::Plan {
        cgroup: p
            .targets
            .first()
            .map(|t| t.cgroup.clone())
            .unwrap_or_default(),
        cgroup_id: p.targets.first().map_or(0, |t| t.cgroup_id),
        targets: p
            .targets
            .iter()
            .map(|t| proto::PlanTarget {
                cgroup: t.cgroup.clone(),
                cgroup_id: t.cgroup_id,
            })
            .collect(),
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
        load: v.load.as_ref().map(load_to_proto),
    }
}

/// A database load's figures as sent: latencies in milliseconds.
fn load_to_proto(f: &Figures) -> proto::DatabaseLoadStatus {
    let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
    proto::DatabaseLoadStatus {
        target_rate: f.rate,
        qps: f.qps,
        sent: f.sent,
        ok: f.ok,
        failed: f.failed(),
        errors: f.errors.clone().into_iter().collect(),
        p50_ms: ms(f.p50_us),
        p95_ms: ms(f.p95_us),
        p99_ms: ms(f.p99_us),
        connect_p95_ms: ms(f.connect_p95_us),
        elapsed_ms: f.elapsed_ms,
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

/// The most bytes of a refused dry run's checks in its metadata (a header: well under what a
/// client takes, with the status message).
const MAX_PREFLIGHT_METADATA_BYTES: usize = 6 * 1024;
/// The most bytes of one check's detail there.
const MAX_CARRIED_DETAIL_BYTES: usize = 512;

/// `status` with `response` (a refused dry run's checks, and its plan when it fits) in the
/// binary metadata [`proto::PREFLIGHT_METADATA`].
pub fn with_preflight(status: &Status, response: &proto::StartExperimentResponse) -> Status {
    let mut carried = response.clone();
    for check in &mut carried.preflight {
        check.detail = cut_and_escape(&check.detail, MAX_CARRIED_DETAIL_BYTES);
    }
    if carried.encoded_len() > MAX_PREFLIGHT_METADATA_BYTES {
        carried.plan = None;
    }
    let mut metadata = MetadataMap::new();
    metadata.insert_bin(
        proto::PREFLIGHT_METADATA,
        MetadataValue::from_bytes(&carried.encode_to_vec()),
    );
    Status::with_metadata(status.code(), status.message(), metadata)
}

/// One ListExperiments page of `list`, which the store read with one experiment more than
/// `size` when more follow: the first experiments up to `size` and [`MAX_PAGE_BYTES`] (always at
/// least one), and the token of the last one sent when any is left.
pub fn page_to_proto(list: &[ExperimentView], size: usize) -> proto::ListExperimentsResponse {
    let mut experiments = Vec::new();
    let mut bytes = 0;
    for view in list.iter().take(size) {
        let status = status_to_proto(view);
        bytes += prost::Message::encoded_len(&status);
        if !experiments.is_empty() && bytes > MAX_PAGE_BYTES {
            break;
        }
        experiments.push(status);
    }
    let next_page_token = match list.get(experiments.len()) {
        Some(_) => PageKey::of(&list[experiments.len() - 1].row).token(),
        None => String::new(),
    };
    proto::ListExperimentsResponse {
        experiments,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use chaos_api::state::State;

    use super::*;
    use crate::store::ExperimentRow;

    fn view(i: u64, reason_bytes: usize) -> ExperimentView {
        ExperimentView::stored(ExperimentRow {
            id: format!("exp-{i}"),
            name: "n".into(),
            kind: "packet_loss".into(),
            target: "/sys/fs/cgroup/x".into(),
            spec: Vec::new(),
            state: State::Completed,
            reason: "r".repeat(reason_bytes),
            started_ms: 1000 - i,
            ended_ms: 2000,
            seen: 0,
            matched: 0,
            injected: 0,
            capped: 0,
            budget: 1.0,
            spent: 0.0,
        })
    }

    #[test]
    fn a_loads_figures_are_sent_in_milliseconds_and_only_for_a_load() {
        let figures = Figures {
            elapsed_ms: 5000,
            rate: 200.0,
            sent: 1234,
            ok: 1230,
            errors: [("timeout".to_owned(), 3), ("connection".to_owned(), 1)].into(),
            qps: 199.0,
            p50_us: Some(1_200),
            p95_us: Some(3_400),
            p99_us: None,
            max_us: Some(9_000),
            connect_p95_us: Some(2_100),
        };
        let mut v = view(0, 1);
        assert_eq!(status_to_proto(&v).load, None);
        v.load = Some(figures);
        let load = status_to_proto(&v).load.unwrap();
        assert_eq!(
            (load.target_rate, load.qps, load.sent, load.ok, load.failed),
            (200.0, 199.0, 1234, 1230, 4)
        );
        assert_eq!(
            (load.p50_ms, load.p95_ms, load.p99_ms, load.connect_p95_ms),
            (Some(1.2), Some(3.4), None, Some(2.1))
        );
        assert_eq!(load.errors.len(), 2);
        assert_eq!((load.errors["timeout"], load.errors["connection"]), (3, 1));
        assert_eq!(load.elapsed_ms, 5000);
    }

    #[test]
    fn a_page_holds_at_most_its_size_and_a_mebibyte() {
        let list: Vec<_> = (0..101).map(|i| view(i, 10)).collect();
        // One more than the page: the token names the last one sent.
        let page = page_to_proto(&list, 100);
        assert_eq!(page.experiments.len(), 100);
        assert_eq!(page.next_page_token, "901/exp-99");
        // The last page has no token.
        let page = page_to_proto(&list[..50], 100);
        assert_eq!(
            (page.experiments.len(), page.next_page_token.as_str()),
            (50, "")
        );
        assert!(page_to_proto(&[], 100).experiments.is_empty());
        // Rows of 300 KiB: three fit in a mebibyte, the fourth starts the next page.
        let big: Vec<_> = (0..10).map(|i| view(i, 300 << 10)).collect();
        let page = page_to_proto(&big, 100);
        assert_eq!(page.experiments.len(), 3);
        assert_eq!(page.next_page_token, "998/exp-2");
        assert!(prost::Message::encoded_len(&page) <= MAX_PAGE_BYTES + 64);
        // One row past the bound is still sent alone: a page is never empty while rows are
        // left.
        let huge = [view(0, 2 << 20), view(1, 10)];
        let page = page_to_proto(&huge, 100);
        assert_eq!(page.experiments.len(), 1);
        assert_eq!(page.next_page_token, "1000/exp-0");
    }
}
