//! Rendering answers: human tables by default, JSON for scripts (`--output json`).

use chaos_api::proto::{self, ExperimentStatus};
use serde_json::{Value, json};

pub fn state_name(s: i32) -> &'static str {
    match proto::State::try_from(s) {
        Ok(proto::State::Running) => "running",
        Ok(proto::State::Completed) => "completed",
        Ok(proto::State::Stopped) => "stopped",
        Ok(proto::State::EmergencyStopped) => "emergency_stopped",
        Ok(proto::State::Aborted) => "aborted",
        Ok(proto::State::Failed) => "failed",
        _ => "unknown",
    }
}

pub fn status_json(s: &ExperimentStatus) -> Value {
    let c = s.counters.unwrap_or_default();
    json!({
        "id": s.id, "name": s.name, "fault": s.fault, "target": s.target,
        "state": state_name(s.state), "reason": s.reason, "spent": s.spent,
        "started_unix_ms": s.started_unix_ms, "ended_unix_ms": s.ended_unix_ms,
        "counters": {"seen": c.seen, "matched": c.matched, "injected": c.injected, "capped": c.capped},
    })
}

/// A table of experiments, one line each.
pub fn status_table(list: &[ExperimentStatus]) -> String {
    let mut out = format!(
        "{:<28} {:<20} {:<13} {:<17} {:>10} {:>10}  {}\n",
        "ID", "NAME", "FAULT", "STATE", "INJECTED", "SEEN", "TARGET"
    );
    for s in list {
        let c = s.counters.unwrap_or_default();
        out += &format!(
            "{:<28} {:<20} {:<13} {:<17} {:>10} {:>10}  {}\n",
            s.id,
            truncate(&s.name, 20),
            s.fault,
            state_name(s.state),
            c.injected,
            c.seen,
            s.target
        );
    }
    out
}

pub fn plan_text(p: &proto::Plan) -> String {
    format!(
        "cgroup      {} (id {})\nprograms    {}\nmax faults  {}\n",
        p.cgroup,
        p.cgroup_id,
        p.programs.join(", "),
        if p.max_faults == u64::MAX {
            "unlimited".to_string()
        } else {
            p.max_faults.to_string()
        }
    )
}

pub fn plan_json(p: &proto::Plan) -> Value {
    json!({"cgroup": p.cgroup, "cgroup_id": p.cgroup_id, "programs": p.programs, "max_faults": p.max_faults})
}

pub fn report_json(r: &proto::Report) -> Value {
    json!({
        "status": r.status.as_ref().map(status_json),
        "timeline": r.timeline.iter().map(|e| json!({"at_unix_ms": e.at_unix_ms, "kind": e.kind, "message": e.message})).collect::<Vec<_>>(),
        "markdown": r.markdown,
    })
}

/// A one-line progress bar: `[#####.....]  50%  15s/30s  injected 123`.
pub fn progress(elapsed_ms: u64, total_ms: u64, s: &ExperimentStatus) -> String {
    let frac = if total_ms == 0 {
        1.0
    } else {
        (elapsed_ms as f64 / total_ms as f64).min(1.0)
    };
    let filled = (frac * 30.0).round() as usize;
    let c = s.counters.unwrap_or_default();
    format!(
        "[{}{}] {:>3.0}%  {}s/{}s  {}  injected {} of {} seen",
        "#".repeat(filled),
        ".".repeat(30 - filled),
        frac * 100.0,
        elapsed_ms / 1000,
        total_ms / 1000,
        state_name(s.state),
        c.injected,
        c.seen
    )
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['~']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ExperimentStatus {
        ExperimentStatus {
            id: "exp-1764290000000-5e1f09a2-1".into(),
            name: "checkout-db-refused".into(),
            fault: "socket_error".into(),
            target: "/sys/fs/cgroup/kubepods.slice/pod".into(),
            state: proto::State::Running as i32,
            reason: String::new(),
            started_unix_ms: 1_764_290_000_000,
            ended_unix_ms: 0,
            counters: Some(proto::Counters {
                seen: 4000,
                matched: 4000,
                injected: 1000,
                capped: 0,
            }),
            spent: 0.0,
        }
    }

    #[test]
    fn status_table_is_stable() {
        let golden = "\
ID                           NAME                 FAULT         STATE               INJECTED       SEEN  TARGET
exp-1764290000000-5e1f09a2-1 checkout-db-refused  socket_error  running                 1000       4000  /sys/fs/cgroup/kubepods.slice/pod
";
        assert_eq!(status_table(&[sample()]), golden);
    }

    #[test]
    fn status_json_is_stable() {
        let golden = r#"{"counters":{"capped":0,"injected":1000,"matched":4000,"seen":4000},"ended_unix_ms":0,"fault":"socket_error","id":"exp-1764290000000-5e1f09a2-1","name":"checkout-db-refused","reason":"","spent":0.0,"started_unix_ms":1764290000000,"state":"running","target":"/sys/fs/cgroup/kubepods.slice/pod"}"#;
        assert_eq!(status_json(&sample()).to_string(), golden);
    }

    #[test]
    fn progress_bar() {
        assert_eq!(
            progress(15_000, 30_000, &sample()),
            "[###############...............]  50%  15s/30s  running  injected 1000 of 4000 seen"
        );
    }
}
