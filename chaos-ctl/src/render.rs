//! Rendering: every answer chaos-ctl prints, as a human table or text by default and as JSON
//! for scripts (`--output json`): status tables, plans (with every change arming makes), stop
//! and emergency-stop answers with the daemon's disarm time, capabilities, reports, the live
//! progress line, and the results of offline validation. Experiment types are the user's names
//! (`experiment_type`), states are [`State`]'s names.
//!
//! Each function returns the text to print, ending in a newline; JSON answers are one line.
//! Every text from a daemon is printed through [`escape_controls`] (in tables and lines) or
//! `document` (reports, which keep their line breaks), so a control character a caller put
//! into a reason or a name is shown (`\u{1b}`), never obeyed by the terminal; JSON escapes
//! them itself.

use chaos_api::config::{Admission, Price};
use chaos_api::error::escape_controls;
use chaos_api::experiment::Experiment;
use chaos_api::proto::{self, ExperimentStatus};
use chaos_api::state::State;
use serde_json::{Value, json};

/// The name of a proto state value: [`State::as_str`], or `unknown`.
pub fn state_name(value: i32) -> &'static str {
    State::from_proto(value).map_or("unknown", State::as_str)
}

pub fn status_json(s: &ExperimentStatus) -> Value {
    let c = s.counters.unwrap_or_default();
    json!({
        "id": s.id, "name": s.name, "experiment_type": s.experiment_type, "target": s.target,
        "state": state_name(s.state), "reason": s.reason, "spent": s.spent,
        "started_unix_ms": s.started_unix_ms, "ended_unix_ms": s.ended_unix_ms,
        "counters": {"seen": c.seen, "matched": c.matched, "injected": c.injected, "capped": c.capped},
        "guards": s.guards.iter().map(|g| json!({
            "name": g.name, "kind": g.kind, "objective": g.objective, "value": g.value,
            "ok": g.ok, "detail": g.detail,
        })).collect::<Vec<_>>(),
        "impact": s.impact,
        "budget": s.budget,
        "step": s.step,
        "load": s.load.as_ref().map(|l| json!({
            "target_rate": l.target_rate, "qps": l.qps, "sent": l.sent, "ok": l.ok,
            "failed": l.failed, "errors": l.errors, "p50_ms": l.p50_ms, "p95_ms": l.p95_ms,
            "p99_ms": l.p99_ms, "connect_p95_ms": l.connect_p95_ms, "elapsed_ms": l.elapsed_ms,
        })),
    })
}

/// A database load's figures on one line: `load: 200 qps (target 200), 1234 sent, 1230 ok,
/// 4 failed (timeout 4), p50 1.2 ms p95 3.4 ms p99 8.0 ms, connect p95 2.1 ms` (errors by
/// kind, latencies and connection time only when there are some).
fn load_text(l: &proto::DatabaseLoadStatus) -> String {
    let mut text = format!(
        "load: {} qps (target {}), {} sent, {} ok, {} failed",
        rate(l.qps),
        rate(l.target_rate),
        l.sent,
        l.ok,
        l.failed
    );
    if !l.errors.is_empty() {
        let mut kinds: Vec<(&String, &u64)> = l.errors.iter().collect();
        kinds.sort();
        let kinds: Vec<String> = kinds
            .into_iter()
            .map(|(kind, n)| format!("{} {n}", escape_controls(kind)))
            .collect();
        text += &format!(" ({})", kinds.join(", "));
    }
    let latencies: Vec<String> = [("p50", l.p50_ms), ("p95", l.p95_ms), ("p99", l.p99_ms)]
        .into_iter()
        .filter_map(|(q, ms)| ms.map(|ms| format!("{q} {ms:.1} ms")))
        .collect();
    if !latencies.is_empty() {
        text += &format!(", {}", latencies.join(" "));
    }
    if let Some(ms) = l.connect_p95_ms {
        text += &format!(", connect p95 {ms:.1} ms");
    }
    text
}

/// Queries per second: whole when whole (`200`), else to a tenth (`0.5`).
fn rate(qps: f64) -> String {
    let text = format!("{qps:.1}");
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_owned(),
        None => text,
    }
}

/// The guards of a running experiment, one line each: value, objective, green or red.
fn guards_text(s: &ExperimentStatus) -> String {
    let mut text = String::new();
    for g in &s.guards {
        let value = g
            .value
            .map_or_else(|| "unavailable".to_owned(), |v| format!("{v:.4}"));
        text += &format!(
            "  {:<5} {:<40} {:>12}  {:<10} {}\n",
            if g.ok { "green" } else { "RED" },
            truncate(&escape_controls(&g.name), 40),
            value,
            escape_controls(&g.objective),
            escape_controls(&g.detail)
        );
    }
    if !s.guards.is_empty() {
        text += &format!("  impact score {:.3}\n", s.impact);
    }
    if !s.step.is_empty() {
        text += &format!("  ramp: {}\n", escape_controls(&s.step));
    }
    if s.state == proto::State::Running as i32 {
        text += &format!("  spent {:.4} of its budget {:.4}\n", s.spent, s.budget);
    }
    text
}

/// Pre-flight checks, one line each.
pub fn checks_text(checks: &[proto::Check]) -> String {
    checks
        .iter()
        .map(|c| {
            format!(
                "  [{}] {}: {}\n",
                if c.passed { "pass" } else { "FAIL" },
                escape_controls(&c.name),
                escape_controls(&c.detail)
            )
        })
        .collect()
}

fn checks_json(checks: &[proto::Check]) -> Value {
    checks
        .iter()
        .map(|c| json!({"name": c.name, "passed": c.passed, "detail": c.detail}))
        .collect()
}

/// A table of experiments, one line each (and a database load's figures on the next).
pub fn status_table(list: &[ExperimentStatus]) -> String {
    let mut out = format!(
        "{:<28} {:<20} {:<19} {:<17} {:>10} {:>10}  {}\n",
        "ID", "NAME", "TYPE", "STATE", "INJECTED", "SEEN", "TARGET"
    );
    for s in list {
        let c = s.counters.unwrap_or_default();
        out += &format!(
            "{:<28} {:<20} {:<19} {:<17} {:>10} {:>10}  {}\n",
            escape_controls(&s.id),
            truncate(&escape_controls(&s.name), 20),
            escape_controls(&s.experiment_type),
            state_name(s.state),
            c.injected,
            c.seen,
            escape_controls(&s.target)
        );
        if let Some(load) = &s.load {
            out += &format!("  {}\n", load_text(load));
        }
    }
    out
}

/// One experiment: its table line and, when it ended with one, the reason.
fn one_status_text(s: &ExperimentStatus) -> String {
    let mut text = status_table(std::slice::from_ref(s));
    if !s.reason.is_empty() {
        text += &format!("reason: {}\n", escape_controls(&s.reason));
    }
    text + &guards_text(s)
}

/// One experiment (the last state a `--wait` saw).
pub fn one_status(s: &ExperimentStatus, json: bool) -> String {
    if json {
        format!("{}\n", status_json(s))
    } else {
        one_status_text(s)
    }
}

/// The status's emergency-stop field: `no`, or `LATCHED since TIME (REASON)`.
fn latch_text(r: &proto::GetStatusResponse) -> String {
    if !r.emergency_stop {
        return "no".to_owned();
    }
    let mut text = "LATCHED".to_owned();
    if r.emergency_stop_unix_ms > 0 {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.emergency_stop_unix_ms);
        text += &format!(" since {}", humantime::format_rfc3339_seconds(at));
    }
    if !r.emergency_stop_reason.is_empty() {
        text += &format!(" ({})", escape_controls(&r.emergency_stop_reason));
    }
    text
}

/// `chaos-ctl status`: the node, its latch and its experiments.
pub fn status(r: &proto::GetStatusResponse, json: bool) -> String {
    if json {
        let list: Vec<_> = r.experiments.iter().map(status_json).collect();
        format!(
            "{}\n",
            json!({
                "node": r.node,
                "emergency_stop": r.emergency_stop,
                "emergency_stop_reason": r.emergency_stop_reason,
                "emergency_stop_unix_ms": r.emergency_stop_unix_ms,
                "experiments": list
            })
        )
    } else {
        format!(
            "node {}  emergency stop: {}\n{}",
            escape_controls(&r.node),
            latch_text(r),
            status_table(&r.experiments)
        ) + &r
            .experiments
            .iter()
            .map(|s| {
                if s.guards.is_empty() {
                    String::new()
                } else {
                    format!("guards of {}:\n{}", escape_controls(&s.id), guards_text(s))
                }
            })
            .collect::<String>()
    }
}

/// `chaos-ctl report --last`: the experiments of a period.
pub fn experiment_list(list: &[ExperimentStatus], json: bool) -> String {
    if json {
        let list: Vec<_> = list.iter().map(status_json).collect();
        format!("{}\n", Value::Array(list))
    } else {
        status_table(list)
    }
}

/// What a start arms: the cgroups, programs, cap, cost and every other change.
pub fn plan_text(p: &proto::Plan) -> String {
    let first = proto::PlanTarget {
        cgroup: p.cgroup.clone(),
        cgroup_id: p.cgroup_id,
    };
    let targets = if p.targets.is_empty() {
        std::slice::from_ref(&first)
    } else {
        p.targets.as_slice()
    };
    let cgroups: Vec<String> = targets
        .iter()
        .map(|t| format!("{} (id {})", escape_controls(&t.cgroup), t.cgroup_id))
        .collect();
    let mut text = format!(
        "cgroup      {}\nprograms    {}\nmax faults  {}\nmax cost    {}\n",
        cgroups.join("\n            "),
        escape_controls(&p.programs.join(", ")),
        if p.max_faults == u64::MAX {
            "unlimited".to_string()
        } else {
            p.max_faults.to_string()
        },
        p.projected_cost
    );
    match p.changes.split_first() {
        None => text += "changes     none besides the programs\n",
        Some((first, rest)) => {
            text += &format!("changes     {}\n", escape_controls(first));
            for change in rest {
                text += &format!("            {}\n", escape_controls(change));
            }
        }
    }
    text
}

pub fn plan_json(p: &proto::Plan) -> Value {
    json!({
        "cgroup": p.cgroup, "cgroup_id": p.cgroup_id, "programs": p.programs,
        "max_faults": p.max_faults, "projected_cost": p.projected_cost, "changes": p.changes,
        "targets": p.targets.iter()
            .map(|t| json!({"cgroup": t.cgroup, "cgroup_id": t.cgroup_id}))
            .collect::<Vec<_>>(),
    })
}

/// The answer to a start: the plan, and the id unless it was a dry run. A refused dry run
/// may have no plan (a check of the plan failed): it shows none.
pub fn started(r: &proto::StartExperimentResponse, dry_run: bool, json: bool) -> String {
    let plan = r.plan.clone().unwrap_or_default();
    let checks = &r.preflight;
    match (dry_run, json) {
        (true, true) => format!(
            "{}\n",
            json!({
                "dry_run": true,
                "plan": r.plan.as_ref().map(plan_json),
                "preflight": checks_json(checks)
            })
        ),
        (true, false) => format!(
            "dry run: nothing was changed\n{}pre-flight:\n{}",
            r.plan.as_ref().map(plan_text).unwrap_or_default(),
            checks_text(checks)
        ),
        (false, true) => format!(
            "{}\n",
            json!({"id": r.id, "plan": plan_json(&plan), "preflight": checks_json(checks)})
        ),
        (false, false) => format!(
            "started {}\n{}pre-flight:\n{}",
            escape_controls(&r.id),
            plan_text(&plan),
            checks_text(checks)
        ),
    }
}

/// The answer to `renew`.
pub fn renewed(id: &str, lease_ms: u64, json: bool) -> String {
    if json {
        format!("{}\n", json!({"id": id, "lease_ms": lease_ms}))
    } else {
        format!("renewed the lease of {id}: renew again within {lease_ms} ms\n")
    }
}

/// `X µs` with one decimal.
fn micros(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

/// The answer to a stop: the experiment, and how long its disarming took at the daemon.
pub fn stopped(r: &proto::StopExperimentResponse, json: bool) -> String {
    let s = r.status.clone().unwrap_or_default();
    if json {
        let mut v = status_json(&s);
        v["disarm_ns"] = json!(r.disarm_ns);
        format!("{v}\n")
    } else {
        format!(
            "{}disarmed in {} (measured at the daemon from the request's arrival)\n",
            one_status_text(&s),
            micros(r.disarm_ns)
        )
    }
}

/// The answer to an emergency stop.
pub fn emergency_stopped(r: &proto::EmergencyStopResponse, json: bool) -> String {
    if json {
        format!(
            "{}\n",
            json!({"disarmed": r.disarmed, "disarm_ns": r.disarm_ns})
        )
    } else {
        format!(
            "{} {} disarmed in {} (measured at the daemon from the request's arrival); \
             detaching and recording continue in the background; new experiments refused until \
             --clear\n",
            r.disarmed,
            if r.disarmed == 1 {
                "experiment"
            } else {
                "experiments"
            },
            micros(r.disarm_ns)
        )
    }
}

/// The answer to `emergency-stop --clear`.
pub fn cleared(json: bool) -> String {
    if json {
        format!("{}\n", json!({"cleared": true}))
    } else {
        "emergency stop cleared\n".to_string()
    }
}

/// What the node's kernel can inject, by experiment type.
pub fn capabilities(r: &proto::CapabilitiesResponse, json: bool) -> String {
    if json {
        let caps: Vec<_> = r
            .capabilities
            .iter()
            .map(|c| json!({"experiment_type": c.experiment_type, "supported": c.supported, "reason": c.reason}))
            .collect();
        format!(
            "{}\n",
            json!({"node": r.node, "kernel": r.kernel, "capabilities": caps})
        )
    } else {
        let mut text = format!(
            "node {} (kernel {})\n",
            escape_controls(&r.node),
            escape_controls(&r.kernel)
        );
        for c in &r.capabilities {
            text += &format!(
                "  {:<20} {:<4} {}\n",
                escape_controls(&c.experiment_type),
                if c.supported { "yes" } else { "no" },
                escape_controls(&c.reason)
            );
        }
        text
    }
}

pub fn report_json(r: &proto::Report) -> Value {
    json!({
        "status": r.status.as_ref().map(status_json),
        "timeline": r.timeline.iter().map(|e| json!({"at_unix_ms": e.at_unix_ms, "kind": e.kind, "message": e.message})).collect::<Vec<_>>(),
        "markdown": r.markdown,
        // The daemon's full report (guards, samples, verdict, budgets): docs/guards.md.
        "report": serde_json::from_str::<Value>(&r.json).unwrap_or(Value::Null),
    })
}

/// A post-mortem: the daemon's Markdown, or JSON.
pub fn report(r: &proto::Report, json: bool) -> String {
    if json {
        format!("{}\n", report_json(r))
    } else {
        document(&r.markdown)
    }
}

/// A post-mortem as the daemon's HTML page.
pub fn report_html(r: &proto::Report) -> String {
    document(&r.html)
}

/// A multi-line text from a daemon (a Markdown report, an HTML page) as printed: its line
/// breaks kept, every other control character shown by [`escape_controls`].
fn document(text: &str) -> String {
    text.split('\n')
        .map(escape_controls)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A one-line progress bar: `[#####.....]  50%  15s/30s  running  injected 123 of 456 seen`.
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

/// `validate -f`: the file holds a valid experiment.
pub fn valid_experiment(path: &str, e: &Experiment, json: bool) -> String {
    if json {
        format!(
            "{}\n",
            json!({"file": path, "valid": true, "name": e.name, "experiment_type": e.kind().as_str()})
        )
    } else {
        format!(
            "{path}: valid experiment {:?} ({}, {})\n",
            e.name,
            e.kind(),
            humantime::format_duration(e.duration)
        )
    }
}

/// `validate --config`: the file holds a valid chaos config.
pub fn valid_config(path: &str, json: bool) -> String {
    if json {
        format!("{}\n", json!({"file": path, "valid": true}))
    } else {
        format!("{path}: valid chaos config\n")
    }
}

/// `validate -f --config`: what the config makes of the experiment.
pub fn admission(config: &str, a: &Admission, json: bool) -> String {
    let (unit, cost) = match a.price {
        Price::PerFault(cost) => ("fault", cost),
        Price::PerPod(cost) => ("pod", cost),
        Price::PerMinute(cost) => ("minute", cost),
        Price::PerQuery(cost) => ("query", cost),
    };
    // A database load's cap counts the queries it may send.
    let counted = if unit == "query" { "queries" } else { "faults" };
    let cap = (a.max_faults != u64::MAX).then_some(a.max_faults);
    if json {
        format!(
            "{}\n",
            json!({
                "config": config, "admitted": true, "budget": a.budget, "max_faults": cap,
                "price": {"per": unit, "cost": cost},
            })
        )
    } else {
        format!(
            "{config}: admits {:?}: budget {} reserved, {}, {cost} per {unit}\n",
            a.experiment.name,
            a.budget,
            cap.map_or("no fault cap".to_string(), |n| format!(
                "at most {n} {counted}"
            )),
        )
    }
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
            experiment_type: "dependency_failure".into(),
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
            guards: vec![],
            impact: 0.0,
            budget: 0.0,
            step: String::new(),
            load: None,
        }
    }

    #[test]
    fn a_database_load_shows_its_rate_errors_and_latency_under_its_line() {
        let mut s = sample();
        s.experiment_type = "database_load".into();
        s.load = Some(proto::DatabaseLoadStatus {
            target_rate: 200.0,
            qps: 199.5,
            sent: 1234,
            ok: 1230,
            failed: 4,
            errors: [
                ("timeout".to_owned(), 3),
                ("sqlstate:\u{1b}57014".to_owned(), 1),
            ]
            .into(),
            p50_ms: Some(1.2),
            p95_ms: Some(3.4),
            p99_ms: Some(8.0),
            connect_p95_ms: Some(2.1),
            elapsed_ms: 6200,
        });
        let table = status_table(std::slice::from_ref(&s));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].starts_with("exp-1764290000000-5e1f09a2-1 "));
        assert_eq!(
            lines[2],
            "  load: 199.5 qps (target 200), 1234 sent, 1230 ok, 4 failed \
             (sqlstate:\\u{1b}57014 1, timeout 3), p50 1.2 ms p95 3.4 ms p99 8.0 ms, \
             connect p95 2.1 ms"
        );
        // A second where nothing finished, before any connection, without errors.
        let load = s.load.as_mut().unwrap();
        (load.p50_ms, load.p95_ms, load.p99_ms, load.connect_p95_ms) = (None, None, None, None);
        (load.errors, load.failed, load.qps) = (Default::default(), 0, 0.5);
        assert!(
            status_table(std::slice::from_ref(&s))
                .ends_with("\n  load: 0.5 qps (target 200), 1234 sent, 1230 ok, 0 failed\n")
        );
        let json = status_json(&s);
        assert_eq!(
            json["load"],
            json!({"target_rate": 200.0, "qps": 0.5, "sent": 1234, "ok": 1230, "failed": 0,
                   "errors": {}, "p50_ms": null, "p95_ms": null, "p99_ms": null,
                   "connect_p95_ms": null, "elapsed_ms": 6200})
        );
        // `status` prints it under the experiment's line in its table.
        let text = status(
            &proto::GetStatusResponse {
                node: "n1".into(),
                experiments: vec![s],
                ..Default::default()
            },
            false,
        );
        assert!(text.contains("\n  load: 0.5 qps (target 200), "), "{text}");
    }

    #[test]
    fn status_table_is_stable() {
        let golden = "\
ID                           NAME                 TYPE                STATE               INJECTED       SEEN  TARGET
exp-1764290000000-5e1f09a2-1 checkout-db-refused  dependency_failure  running                 1000       4000  /sys/fs/cgroup/kubepods.slice/pod
";
        assert_eq!(status_table(&[sample()]), golden);
    }

    #[test]
    fn status_json_is_stable() {
        let golden = r#"{"budget":0.0,"counters":{"capped":0,"injected":1000,"matched":4000,"seen":4000},"ended_unix_ms":0,"experiment_type":"dependency_failure","guards":[],"id":"exp-1764290000000-5e1f09a2-1","impact":0.0,"load":null,"name":"checkout-db-refused","reason":"","spent":0.0,"started_unix_ms":1764290000000,"state":"running","step":"","target":"/sys/fs/cgroup/kubepods.slice/pod"}"#;
        assert_eq!(status_json(&sample()).to_string(), golden);
    }

    #[test]
    fn a_guarded_status_shows_each_guard_the_impact_the_step_and_the_spend() {
        let mut s = sample();
        s.guards = vec![
            proto::GuardStatus {
                name: "error_rate".into(),
                kind: "critical_slo".into(),
                objective: "<= 0.01".into(),
                value: Some(0.25),
                ok: false,
                detail: "0.25 misses <= 0.01 (for 0ns)".into(),
            },
            proto::GuardStatus {
                name: "api_availability".into(),
                kind: "critical_slo".into(),
                objective: ">= 0.99".into(),
                value: None,
                ok: false,
                detail: "guard unavailable: no data".into(),
            },
        ];
        (s.impact, s.step, s.spent, s.budget) =
            (0.5, "intensity 0.1 (step 2 of 3)".into(), 1.25, 2.0);
        let text = status(
            &proto::GetStatusResponse {
                node: "n1".into(),
                experiments: vec![s.clone()],
                ..Default::default()
            },
            false,
        );
        let guards = text
            .split_once("guards of exp-1764290000000-5e1f09a2-1:\n")
            .unwrap()
            .1;
        assert_eq!(
            guards,
            "  RED   error_rate                                     0.2500  <= 0.01    0.25 misses <= 0.01 (for 0ns)\n\
             \x20 RED   api_availability                          unavailable  >= 0.99    guard unavailable: no data\n\
             \x20 impact score 0.500\n\
             \x20 ramp: intensity 0.1 (step 2 of 3)\n\
             \x20 spent 1.2500 of its budget 2.0000\n"
        );
        let j = status_json(&s);
        assert_eq!(
            j["guards"][0],
            json!({"name": "error_rate", "kind": "critical_slo", "objective": "<= 0.01",
                   "value": 0.25, "ok": false, "detail": "0.25 misses <= 0.01 (for 0ns)"})
        );
        assert_eq!(j["guards"][1]["value"], Value::Null);
        assert_eq!(
            (&j["impact"], &j["step"], &j["spent"], &j["budget"]),
            (
                &json!(0.5),
                &json!("intensity 0.1 (step 2 of 3)"),
                &json!(1.25),
                &json!(2.0)
            )
        );
    }

    #[test]
    fn a_refused_dry_run_shows_every_check_and_no_plan_when_none_was_made() {
        let r = proto::StartExperimentResponse {
            id: String::new(),
            plan: None,
            preflight: vec![
                proto::Check {
                    name: "config valid".into(),
                    passed: true,
                    detail: "ok".into(),
                },
                proto::Check {
                    name: "target exists and is not protected".into(),
                    passed: false,
                    detail: "cgroup / is protected: it is the root cgroup".into(),
                },
            ],
        };
        assert_eq!(
            started(&r, true, false),
            "dry run: nothing was changed\npre-flight:\n  [pass] config valid: ok\n  \
             [FAIL] target exists and is not protected: cgroup / is protected: it is the root \
             cgroup\n"
        );
        let j: Value = serde_json::from_str(&started(&r, true, true)).unwrap();
        assert_eq!(j["plan"], Value::Null);
        assert_eq!(j["preflight"][1]["passed"], false);
    }

    #[test]
    fn a_latched_status_says_why_and_since_when() {
        let mut r = proto::GetStatusResponse {
            node: "n1".into(),
            ..Default::default()
        };
        assert!(status(&r, false).starts_with("node n1  emergency stop: no\n"));
        (
            r.emergency_stop,
            r.emergency_stop_reason,
            r.emergency_stop_unix_ms,
        ) = (
            true,
            "emergency stop by uid 0: drill\u{1b}[2J".into(),
            1_764_290_000_000,
        );
        assert!(
            status(&r, false).starts_with(
                "node n1  emergency stop: LATCHED since 2025-11-28T00:33:20Z \
                 (emergency stop by uid 0: drill\\u{1b}[2J)\n"
            ),
            "{}",
            status(&r, false)
        );
        let j: Value = serde_json::from_str(&status(&r, true)).unwrap();
        assert_eq!(
            (
                &j["emergency_stop"],
                &j["emergency_stop_reason"],
                &j["emergency_stop_unix_ms"]
            ),
            (
                &json!(true),
                &json!("emergency stop by uid 0: drill\u{1b}[2J"),
                &json!(1_764_290_000_000u64)
            )
        );
    }

    #[test]
    fn unknown_states_say_so() {
        let mut s = sample();
        s.state = 0;
        assert_eq!(status_json(&s)["state"], "unknown");
        s.state = proto::State::EmergencyStopped as i32;
        assert_eq!(status_json(&s)["state"], "emergency_stopped");
    }

    #[test]
    fn progress_bar() {
        assert_eq!(
            progress(15_000, 30_000, &sample()),
            "[###############...............]  50%  15s/30s  running  injected 1000 of 4000 seen"
        );
    }

    fn plan() -> proto::Plan {
        proto::Plan {
            cgroup: "/sys/fs/cgroup/app.slice".into(),
            cgroup_id: 4242,
            targets: vec![proto::PlanTarget {
                cgroup: "/sys/fs/cgroup/app.slice".into(),
                cgroup_id: 4242,
            }],
            programs: vec!["lat_eg".into()],
            max_faults: u64::MAX,
            projected_cost: 0.5,
            changes: vec![
                "eth0: root qdisc fq (was noqueue), restored on stop".into(),
                "eth0: fq flow_limit 1000".into(),
            ],
        }
    }

    #[test]
    fn plans_show_every_change() {
        let golden = "\
cgroup      /sys/fs/cgroup/app.slice (id 4242)
programs    lat_eg
max faults  unlimited
max cost    0.5
changes     eth0: root qdisc fq (was noqueue), restored on stop
            eth0: fq flow_limit 1000
";
        assert_eq!(plan_text(&plan()), golden);
        let bare = proto::Plan {
            changes: Vec::new(),
            max_faults: 20,
            ..plan()
        };
        assert!(
            plan_text(&bare).ends_with(
                "max faults  20\nmax cost    0.5\nchanges     none besides the programs\n"
            ),
            "{}",
            plan_text(&bare)
        );
        assert_eq!(
            plan_json(&plan()).to_string(),
            r#"{"cgroup":"/sys/fs/cgroup/app.slice","cgroup_id":4242,"changes":["eth0: root qdisc fq (was noqueue), restored on stop","eth0: fq flow_limit 1000"],"max_faults":18446744073709551615,"programs":["lat_eg"],"projected_cost":0.5,"targets":[{"cgroup":"/sys/fs/cgroup/app.slice","cgroup_id":4242}]}"#
        );
        let two = proto::Plan {
            targets: vec![
                plan().targets[0].clone(),
                proto::PlanTarget {
                    cgroup: "/sys/fs/cgroup/b.slice".into(),
                    cgroup_id: 7,
                },
            ],
            ..plan()
        };
        assert!(
            plan_text(&two).starts_with(
                "cgroup      /sys/fs/cgroup/app.slice (id 4242)\n            \
                 /sys/fs/cgroup/b.slice (id 7)\nprograms    lat_eg\n"
            ),
            "{}",
            plan_text(&two)
        );
    }

    #[test]
    fn disarm_times_are_the_daemons() {
        let r = proto::EmergencyStopResponse {
            disarmed: 2,
            disarm_ns: 1_900,
        };
        assert_eq!(
            emergency_stopped(&r, false),
            "2 experiments disarmed in 1.9 µs (measured at the daemon from the request's \
             arrival); detaching and recording continue in the background; new experiments \
             refused until --clear\n"
        );
        assert_eq!(
            emergency_stopped(&r, true),
            "{\"disarm_ns\":1900,\"disarmed\":2}\n"
        );
        let one = proto::EmergencyStopResponse {
            disarmed: 1,
            disarm_ns: 0,
        };
        assert!(emergency_stopped(&one, false).starts_with("1 experiment disarmed in 0.0 µs"));

        let mut s = sample();
        s.state = proto::State::Stopped as i32;
        s.reason = "stopped by uid 0".into();
        let r = proto::StopExperimentResponse {
            status: Some(s),
            disarm_ns: 12_345,
        };
        let text = stopped(&r, false);
        assert!(
            text.ends_with(
                "reason: stopped by uid 0\ndisarmed in 12.3 µs (measured at the daemon from the \
                 request's arrival)\n"
            ),
            "{text}"
        );
        let v: Value = serde_json::from_str(&stopped(&r, true)).unwrap();
        assert_eq!(
            (v["state"].as_str(), v["disarm_ns"].as_u64()),
            (Some("stopped"), Some(12_345))
        );
    }

    #[test]
    fn capabilities_name_the_users_types() {
        let r = proto::CapabilitiesResponse {
            node: "n1".into(),
            kernel: "6.12.0".into(),
            capabilities: vec![proto::Capability {
                experiment_type: "network_latency".into(),
                supported: false,
                reason: "sch_fq not available".into(),
            }],
        };
        assert_eq!(
            capabilities(&r, false),
            "node n1 (kernel 6.12.0)\n  network_latency      no   sch_fq not available\n"
        );
        assert_eq!(
            capabilities(&r, true),
            "{\"capabilities\":[{\"experiment_type\":\"network_latency\",\"reason\":\"sch_fq not available\",\"supported\":false}],\"kernel\":\"6.12.0\",\"node\":\"n1\"}\n"
        );
    }

    /// Clears the screen, sets the window title, rings the bell.
    const EVIL: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}";
    /// [`EVIL`] as printed.
    const SHOWN: &str = "\\u{1b}[2J\\u{1b}]0;owned\\u{7}";

    /// Asserts that `text` holds no control character but line breaks.
    fn obeys_nothing(text: &str) {
        assert!(
            !text.contains(|c: char| c.is_control() && c != '\n'),
            "{text:?}"
        );
    }

    #[test]
    fn texts_from_the_daemon_show_their_control_characters() {
        let mut s = sample();
        s.state = proto::State::EmergencyStopped as i32;
        s.name = format!("n{EVIL}");
        s.target = format!("/sys/fs/cgroup/{EVIL}");
        s.reason = format!("emergency stop by uid 0: {EVIL}");
        s.step = EVIL.into();
        s.guards = vec![proto::GuardStatus {
            name: EVIL.into(),
            kind: "slo".into(),
            objective: EVIL.into(),
            value: Some(0.5),
            ok: false,
            detail: EVIL.into(),
        }];
        let text = one_status(&s, false);
        obeys_nothing(&text);
        assert!(
            text.contains(&format!("reason: emergency stop by uid 0: {SHOWN}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("/sys/fs/cgroup/{SHOWN}\n")),
            "{text}"
        );
        assert!(text.contains(&format!("ramp: {SHOWN}\n")), "{text}");
        assert!(text.contains(&format!("RED   {SHOWN}")), "{text}");
        // A name is cut after it is escaped: the table keeps its width.
        assert!(text.contains("n\\u{1b}[2J\\u{1b}]0;~ "), "{text}");

        let r = proto::GetStatusResponse {
            node: EVIL.into(),
            emergency_stop: true,
            experiments: vec![s.clone()],
            emergency_stop_reason: EVIL.into(),
            emergency_stop_unix_ms: 0,
        };
        let text = status(&r, false);
        obeys_nothing(&text);
        assert!(
            text.starts_with(&format!(
                "node {SHOWN}  emergency stop: LATCHED ({SHOWN})\n"
            )),
            "{text}"
        );
        obeys_nothing(&stopped(
            &proto::StopExperimentResponse {
                status: Some(s.clone()),
                disarm_ns: 1,
            },
            false,
        ));
        obeys_nothing(&experiment_list(std::slice::from_ref(&s), false));

        let started_text = started(
            &proto::StartExperimentResponse {
                id: EVIL.into(),
                plan: Some(proto::Plan {
                    cgroup: EVIL.into(),
                    programs: vec![EVIL.into()],
                    changes: vec![EVIL.into(), EVIL.into()],
                    ..plan()
                }),
                preflight: vec![proto::Check {
                    name: EVIL.into(),
                    passed: true,
                    detail: EVIL.into(),
                }],
            },
            false,
            false,
        );
        obeys_nothing(&started_text);
        assert!(
            started_text.contains(&format!("  [pass] {SHOWN}: {SHOWN}\n")),
            "{started_text}"
        );
        let caps = proto::CapabilitiesResponse {
            node: EVIL.into(),
            kernel: EVIL.into(),
            capabilities: vec![proto::Capability {
                experiment_type: EVIL.into(),
                supported: true,
                reason: EVIL.into(),
            }],
        };
        obeys_nothing(&capabilities(&caps, false));

        // JSON escapes on its own, and keeps the text as sent.
        let json = one_status(&s, true);
        obeys_nothing(&json);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["reason"], s.reason);
    }

    #[test]
    fn reports_keep_their_lines_and_show_every_other_control_character() {
        let r = proto::Report {
            markdown: format!("# Report\n\nreason: {EVIL}\r\n| a\tb |\n"),
            html: format!("<p>\n{EVIL}</p>\n"),
            ..proto::Report::default()
        };
        assert_eq!(
            report(&r, false),
            format!("# Report\n\nreason: {SHOWN}\\u{{d}}\n| a\\u{{9}}b |\n")
        );
        assert_eq!(report_html(&r), format!("<p>\n{SHOWN}</p>\n"));
        obeys_nothing(&report(&r, true));
    }
}
