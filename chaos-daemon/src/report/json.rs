//! The JSON report: everything the other formats show, for machines. The field names are
//! stable (`format` names the layout; a change that removes or renames a field bumps it):
//!
//! ```text
//! {
//!   "format": "chaos-report/2",
//!   "experiment": { "id", "name", "type", "target", "state", "reason",
//!                   "started_unix_ms", "ended_unix_ms" (0 while running),
//!                   "duration_s" (null while running) },
//!   "counters": { "seen", "matched", "injected", "capped" },
//!   "budget": { "experiment": { "spent", "limit" },
//!               "daily": { "spent", "limit" } | null },      // spent today (UTC), max_daily_cost
//!   "timeline": [ { "at_unix_ms", "offset_s", "kind", "message" } ],
//!   "faults_per_second": [ { "at_unix_ms", "offset_s", "rate" } ],   // from snapshot deltas
//!   "snapshots": [ { "at_unix_ms", "seen", "matched", "injected", "capped" } ],
//!   "guards": [ { "name", "kind", "objective", "threshold", "baseline" | null,
//!                 "min", "max", "last" (null without any value),
//!                 "violations", "unavailable",
//!                 "samples": [ { "at_unix_ms", "offset_s", "value" | null, "ok" } ] } ],
//!   "verdict": { "violation": { "guard", "value" | null, "objective", "observed_unix_ms",
//!                               "observed_offset_s",
//!                               "observation_to_disarm_us" | null,
//!                               "decision_to_disarm_us" } | null,
//!                "impact_score": number | null },
//!   "database_load": { "sent", "failed", "peak_rate", "peak_qps",
//!                      "max_p95_us" | null, "max_p99_us" | null,
//!                      "samples": [ { "at_unix_ms", "offset_s", "rate", "qps",
//!                                     "p50_us" | null, "p95_us" | null, "p99_us" | null,
//!                                     "sent", "failed" } ] } | null
//! }
//! ```
//!
//! `offset_s` is seconds since the experiment started (negative for baseline samples taken
//! before it); money is in the config's currency unit; `observation_to_disarm_us` is
//! microseconds from the violating observation (its sample or probe) to the kernel disarm
//! (null in records made before it was kept), `decision_to_disarm_us` from the guard
//! evaluation that saw it; `impact_score` is the run's peak. `database_load` is null for every
//! other type: a sample a second of the rate in force (`rate`) and achieved (`qps`), in queries
//! per second, the latency percentiles of that second (null when nothing finished in it) and the
//! queries sent and failed since the start. Format 2 replaced format 1's
//! `disarm_us` (the decision-to-disarm time under the other one's description) with the two.

use serde::Serialize;

use super::{GuardSeries, LoadSummary, Report, ReportError};

/// The layout of this JSON report.
pub const FORMAT: &str = "chaos-report/2";

/// The post-mortem of one experiment as pretty-printed JSON (layout in the module doc).
pub fn json<'a>(report: impl Into<Report<'a>>) -> Result<String, ReportError> {
    let report = report.into();
    Ok(serde_json::to_string_pretty(&Doc::of(&report))?)
}

#[derive(Serialize)]
struct Doc<'a> {
    format: &'static str,
    experiment: Experiment<'a>,
    counters: Counters,
    budget: Budgets,
    timeline: Vec<Event<'a>>,
    faults_per_second: Vec<Rate>,
    snapshots: Vec<Counters>,
    guards: Vec<Guard<'a>>,
    verdict: Verdict<'a>,
    database_load: Option<Load>,
}

#[derive(Serialize)]
struct Experiment<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    target: &'a str,
    state: &'static str,
    reason: &'a str,
    started_unix_ms: u64,
    ended_unix_ms: u64,
    duration_s: Option<f64>,
}

#[derive(Serialize)]
struct Counters {
    #[serde(skip_serializing_if = "Option::is_none")]
    at_unix_ms: Option<u64>,
    seen: u64,
    matched: u64,
    injected: u64,
    capped: u64,
}

#[derive(Serialize)]
struct Budgets {
    experiment: Budget,
    daily: Option<Budget>,
}

#[derive(Serialize)]
struct Budget {
    spent: f64,
    limit: f64,
}

#[derive(Serialize)]
struct Event<'a> {
    at_unix_ms: u64,
    offset_s: f64,
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct Rate {
    at_unix_ms: u64,
    offset_s: f64,
    rate: f64,
}

#[derive(Serialize)]
struct Guard<'a> {
    name: &'a str,
    kind: &'a str,
    objective: &'a str,
    threshold: f64,
    baseline: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    last: Option<f64>,
    violations: usize,
    unavailable: usize,
    samples: Vec<Sample>,
}

#[derive(Serialize)]
struct Sample {
    at_unix_ms: u64,
    offset_s: f64,
    value: Option<f64>,
    ok: bool,
}

#[derive(Serialize)]
struct Load {
    #[serde(flatten)]
    summary: LoadSummary,
    samples: Vec<LoadSample>,
}

#[derive(Serialize)]
struct LoadSample {
    at_unix_ms: u64,
    offset_s: f64,
    rate: f64,
    qps: f64,
    p50_us: Option<u64>,
    p95_us: Option<u64>,
    p99_us: Option<u64>,
    sent: u64,
    failed: u64,
}

#[derive(Serialize)]
struct Verdict<'a> {
    violation: Option<Violation<'a>>,
    impact_score: Option<f64>,
}

#[derive(Serialize)]
struct Violation<'a> {
    guard: &'a str,
    value: Option<f64>,
    objective: &'a str,
    observed_unix_ms: u64,
    observed_offset_s: f64,
    observation_to_disarm_us: Option<u64>,
    decision_to_disarm_us: u64,
}

impl<'a> Doc<'a> {
    fn of(report: &Report<'a>) -> Self {
        let r = report.row;
        Doc {
            format: FORMAT,
            experiment: Experiment {
                id: &r.id,
                name: &r.name,
                kind: &r.kind,
                target: &r.target,
                state: r.state.as_str(),
                reason: &r.reason,
                started_unix_ms: r.started_ms,
                ended_unix_ms: r.ended_ms,
                duration_s: report.duration_s(),
            },
            counters: Counters {
                at_unix_ms: None,
                seen: r.seen,
                matched: r.matched,
                injected: r.injected,
                capped: r.capped,
            },
            budget: Budgets {
                experiment: Budget {
                    spent: r.spent,
                    limit: r.budget,
                },
                daily: report
                    .verdict
                    .daily_budget
                    .map(|(spent, limit)| Budget { spent, limit }),
            },
            timeline: report
                .events
                .iter()
                .map(|e| Event {
                    at_unix_ms: e.at_ms,
                    offset_s: report.offset_s(e.at_ms),
                    kind: &e.kind,
                    message: &e.message,
                })
                .collect(),
            faults_per_second: report
                .faults_per_second()
                .into_iter()
                .map(|(at, rate)| Rate {
                    at_unix_ms: at,
                    offset_s: report.offset_s(at),
                    rate,
                })
                .collect(),
            snapshots: report
                .snapshots
                .iter()
                .map(|s| Counters {
                    at_unix_ms: Some(s.at_ms),
                    seen: s.seen,
                    matched: s.matched,
                    injected: s.injected,
                    capped: s.capped,
                })
                .collect(),
            guards: report.guards.iter().map(|g| guard(report, g)).collect(),
            verdict: Verdict {
                violation: report.verdict.violation.as_ref().map(|v| Violation {
                    guard: &v.guard,
                    value: v.value,
                    objective: &v.objective,
                    observed_unix_ms: v.observed_ms,
                    observed_offset_s: report.offset_s(v.observed_ms),
                    observation_to_disarm_us: v.observation_to_disarm_us,
                    decision_to_disarm_us: v.decision_to_disarm_us,
                }),
                impact_score: report.verdict.impact_score,
            },
            database_load: report.load_summary().map(|sum| load(report, sum)),
        }
    }
}

fn load(report: &Report, sum: LoadSummary) -> Load {
    Load {
        summary: sum,
        samples: report
            .load
            .iter()
            .map(|l| LoadSample {
                at_unix_ms: l.at_ms,
                offset_s: report.offset_s(l.at_ms),
                rate: l.rate,
                qps: l.qps,
                p50_us: l.p50_us,
                p95_us: l.p95_us,
                p99_us: l.p99_us,
                sent: l.sent,
                failed: l.failed,
            })
            .collect(),
    }
}

fn guard<'a>(report: &Report<'a>, g: &'a GuardSeries) -> Guard<'a> {
    let sum = g.summary();
    Guard {
        name: &g.name,
        kind: &g.kind,
        objective: &g.objective,
        threshold: g.threshold,
        baseline: report.baseline(&g.name),
        min: sum.min,
        max: sum.max,
        last: sum.last,
        violations: sum.violations,
        unavailable: sum.unavailable,
        samples: g
            .samples
            .iter()
            .map(|s| Sample {
                at_unix_ms: s.at_ms,
                offset_s: report.offset_s(s.at_ms),
                value: s.value,
                ok: s.ok,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json as j};

    use super::super::fixture;
    use super::*;

    fn rendered() -> Value {
        let text = json(fixture::Fixture::new().report()).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_experiment_budgets_and_verdict_have_their_documented_fields() {
        let v = rendered();
        assert_eq!(v["format"], FORMAT);
        let e = &v["experiment"];
        assert_eq!(e["id"], "exp-42");
        assert_eq!(e["name"], fixture::NAME);
        assert_eq!(e["type"], "dependency_failure");
        assert_eq!(e["state"], "stopped");
        assert_eq!(e["reason"], fixture::REASON);
        assert_eq!(e["started_unix_ms"], fixture::STARTED_MS);
        assert_eq!(e["duration_s"], 6.5);
        assert_eq!(v["counters"]["injected"], 130);
        assert!(v["counters"].get("at_unix_ms").is_none());
        assert_eq!(v["budget"]["experiment"], j!({"spent": 1.3, "limit": 2.0}));
        assert_eq!(v["budget"]["daily"], j!({"spent": 3.5, "limit": 10.0}));
        assert_eq!(
            v["verdict"],
            j!({
                "violation": {
                    "guard": "error_rate", "value": 0.08, "objective": "<= 0.01",
                    "observed_unix_ms": fixture::STARTED_MS + 6000, "observed_offset_s": 6.0,
                    "observation_to_disarm_us": 100_412, "decision_to_disarm_us": 412
                },
                "impact_score": 0.62
            })
        );
    }

    #[test]
    fn timeline_rates_and_snapshots_are_all_there() {
        let v = rendered();
        let timeline = v["timeline"].as_array().unwrap();
        assert_eq!(timeline.len(), 7);
        assert_eq!(
            timeline[2],
            j!({"at_unix_ms": fixture::STARTED_MS + 1000, "offset_s": 1.0, "kind": "step",
                "message": "intensity 0.05"})
        );
        let rates: Vec<f64> = v["faults_per_second"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rate"].as_f64().unwrap())
            .collect();
        assert_eq!(rates, vec![10.0, 20.0, 0.0, 50.0, 25.0]);
        assert_eq!(v["snapshots"][4]["at_unix_ms"], fixture::STARTED_MS + 6000);
        assert_eq!(v["snapshots"][4]["injected"], 130);
    }

    #[test]
    fn each_guard_carries_its_summary_and_every_sample() {
        let v = rendered();
        let g = &v["guards"][0];
        assert_eq!(g["name"], "error_rate");
        assert_eq!(g["kind"], "critical_slo");
        assert_eq!(g["threshold"], 0.01);
        assert_eq!(g["baseline"], 0.002);
        assert_eq!(
            (&g["min"], &g["max"], &g["last"]),
            (&j!(0.002), &j!(0.08), &j!(0.08))
        );
        assert_eq!((&g["violations"], &g["unavailable"]), (&j!(4), &j!(1)));
        assert_eq!(g["samples"].as_array().unwrap().len(), 7);
        assert_eq!(
            g["samples"][2],
            j!({"at_unix_ms": fixture::STARTED_MS + 2500, "offset_s": 2.5, "value": null,
                "ok": false})
        );
        assert_eq!(v["guards"][1]["name"], fixture::HEALTH);
        assert_eq!(v["guards"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_database_load_carries_its_totals_and_every_sample() {
        let f = fixture::Fixture::database_load();
        let v: Value = serde_json::from_str(&json(f.report()).unwrap()).unwrap();
        let load = &v["database_load"];
        assert_eq!(
            (
                &load["sent"],
                &load["failed"],
                &load["peak_rate"],
                &load["peak_qps"],
                &load["max_p95_us"],
                &load["max_p99_us"]
            ),
            (
                &j!(1300),
                &j!(23),
                &j!(500.0),
                &j!(488.0),
                &j!(180_000),
                &j!(350_000)
            )
        );
        let samples = load["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 6);
        assert_eq!(
            samples[0],
            j!({"at_unix_ms": fixture::STARTED_MS + 1000, "offset_s": 1.0, "rate": 200.0,
                "qps": 198.0, "p50_us": 1200, "p95_us": 3400, "p99_us": 8000, "sent": 198,
                "failed": 0})
        );
        assert_eq!(
            (&samples[4]["p95_us"], &samples[4]["sent"]),
            (&Value::Null, &j!(1289))
        );
        assert_eq!(rendered()["database_load"], Value::Null);
    }

    #[test]
    fn without_guard_data_the_guards_are_empty_and_the_verdict_null() {
        let f = fixture::Fixture::new();
        let v: Value = serde_json::from_str(&json(f.without_guards()).unwrap()).unwrap();
        assert_eq!(v["guards"], j!([]));
        assert_eq!(v["budget"]["daily"], Value::Null);
        assert_eq!(v["verdict"], j!({"violation": null, "impact_score": null}));
    }
}
