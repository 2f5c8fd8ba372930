//! Post-mortem reports: what one experiment did, rendered as Markdown ([`markdown`]), JSON
//! ([`json`]) and a self-contained HTML page with SVG charts ([`html`]). A database load's
//! reports add its throughput and latency, a sample a second.
//!
//! This module owns the report's input beyond the stored row, timeline, counter snapshots and
//! load samples ([`ReportData`]): each guard's samples against its threshold ([`GuardSeries`])
//! and the verdict ([`Verdict`]: baselines, the violation that rolled the experiment back, the
//! impact score, the daily budget). It also owns what every format derives from them the same way:
//! faults per second from snapshot deltas, each guard's min/max/last and violation count, and a
//! database load's totals and peaks.
//!
//! Timeline entries are shown as recorded; the charts mark three kinds: [`STEP`] (an intensity
//! step, e.g. `intensity 0.05`), [`BUDGET_ALERT`] and [`ROLLBACK`].

mod charts;
mod html;
mod json;
mod markdown;

pub use html::html;
pub use json::{FORMAT as JSON_FORMAT, json};
pub use markdown::{chart, markdown};

use crate::experiment::{IMPACT_SCORE, ReportData};
use crate::guard::GuardKind;
use crate::store::{EventRow, ExperimentRow, LoadSampleRow, SnapshotRow};

/// The timeline kind of an intensity step; its message says the new intensity.
pub const STEP: &str = "step";
/// The timeline kind of a budget alert.
pub const BUDGET_ALERT: &str = "budget_alert";
/// The timeline kind of a rollback.
pub const ROLLBACK: &str = "rollback";

/// A report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Drawing a chart failed (plotters' SVG backend writes into a `String`, so this means a
    /// coordinate or layout it refused).
    #[error("drawing the {chart} chart: {reason}")]
    Chart { chart: String, reason: String },
    /// Encoding the JSON report failed.
    #[error("encoding the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One guard's samples over the run, against its threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardSeries {
    /// e.g. `error_rate`, `health https://x/healthz`, `impact`.
    pub name: String,
    /// `critical_slo`, `warning_slo`, `health`, `trigger` or `impact`.
    pub kind: String,
    /// The comparison against the threshold, e.g. `<= 0.01`.
    pub objective: String,
    pub threshold: f64,
    /// In time order.
    pub samples: Vec<GuardSample>,
}

/// One evaluation of a guard.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuardSample {
    /// Unix time of the observation, in milliseconds.
    pub at_ms: u64,
    /// The observed value; `None` when it was unavailable (a failed or empty query).
    pub value: Option<f64>,
    /// Whether the guard was green at this sample.
    pub ok: bool,
}

/// What the report shows beyond the row, events and snapshots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Guard name -> its value over the baseline window.
    pub baseline: Vec<(String, f64)>,
    /// What rolled the experiment back, if a guard did.
    pub violation: Option<Violation>,
    /// The peak impact score of the run, in [0, 1] (whichever guards applied).
    pub impact_score: Option<f64>,
    /// (spent today, `max_daily_cost`), when a daily budget is configured.
    pub daily_budget: Option<(f64, f64)>,
}

/// The guard observation that rolled an experiment back.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub guard: String,
    /// The violating value; `None` when the guard was unavailable.
    pub value: Option<f64>,
    pub objective: String,
    /// Unix time of the violating observation, in milliseconds.
    pub observed_ms: u64,
    /// Microseconds from the violating observation (a sample, a probe) to the kernel disarm:
    /// the scrape and query wait, the evaluation and the disarm. `None` in records made
    /// before it was kept.
    pub observation_to_disarm_us: Option<u64>,
    /// Microseconds from the guard evaluation that saw the violation to the kernel disarm.
    pub decision_to_disarm_us: u64,
}

/// Everything one report shows: the renderers' input.
#[derive(Clone, Copy, Debug)]
pub struct Report<'a> {
    pub row: &'a ExperimentRow,
    /// The timeline, in time order.
    pub events: &'a [EventRow],
    /// The kernel counters over time, in time order.
    pub snapshots: &'a [SnapshotRow],
    pub guards: &'a [GuardSeries],
    pub verdict: &'a Verdict,
    /// A database load's figures over time, in time order (empty for the other types).
    pub load: &'a [LoadSampleRow],
}

/// The verdict of a report without guard data.
static NO_VERDICT: Verdict = Verdict {
    baseline: Vec::new(),
    violation: None,
    impact_score: None,
    daily_budget: None,
};

impl<'a> From<&'a ReportData> for Report<'a> {
    /// The report of a stored experiment without guard data.
    fn from(data: &'a ReportData) -> Self {
        Report::new(data, &[], &NO_VERDICT)
    }
}

impl<'a> Report<'a> {
    /// The report of a stored experiment with its guards' samples and verdict.
    pub fn new(data: &'a ReportData, guards: &'a [GuardSeries], verdict: &'a Verdict) -> Self {
        Report {
            row: &data.row,
            events: &data.events,
            snapshots: &data.snapshots,
            guards,
            verdict,
            load: &data.load,
        }
    }

    /// Seconds from the experiment's start to the Unix time `at_ms` (negative before it, as
    /// for baseline samples).
    fn offset_s(&self, at_ms: u64) -> f64 {
        (at_ms as f64 - self.row.started_ms as f64) / 1000.0
    }

    /// Faults injected per second between consecutive snapshots (the first against the
    /// start), at each snapshot's time.
    fn faults_per_second(&self) -> Vec<(u64, f64)> {
        let mut prev = (self.row.started_ms, 0u64);
        self.snapshots
            .iter()
            .map(|s| {
                let faults = s.injected.saturating_sub(prev.1) as f64;
                let secs = s.at_ms.saturating_sub(prev.0) as f64 / 1000.0;
                prev = (s.at_ms, s.injected);
                (s.at_ms, if secs > 0.0 { faults / secs } else { faults })
            })
            .collect()
    }

    /// A guard's baseline value.
    fn baseline(&self, guard: &str) -> Option<f64> {
        self.verdict
            .baseline
            .iter()
            .find(|(name, _)| name == guard)
            .map(|&(_, v)| v)
    }

    /// Seconds the experiment ran (so far, while it runs).
    fn duration_s(&self) -> Option<f64> {
        let r = self.row;
        (r.ended_ms > 0).then(|| self.offset_s(r.ended_ms))
    }
}

/// A guard's samples summed up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct GuardSummary {
    min: Option<f64>,
    max: Option<f64>,
    last: Option<f64>,
    /// Samples where the guard was red.
    violations: usize,
    /// Samples without a value.
    unavailable: usize,
}

impl GuardSeries {
    fn summary(&self) -> GuardSummary {
        let mut s = GuardSummary::default();
        for sample in &self.samples {
            s.violations += usize::from(!sample.ok);
            let Some(v) = sample.value else {
                s.unavailable += 1;
                continue;
            };
            s.min = Some(s.min.map_or(v, |m| m.min(v)));
            s.max = Some(s.max.map_or(v, |m| m.max(v)));
            s.last = Some(v);
        }
        s
    }
}

/// A database load's samples summed up (the JSON report's `database_load` totals).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
struct LoadSummary {
    /// Queries sent and failed by the last sample.
    sent: u64,
    failed: u64,
    /// The highest rate in force and the highest achieved, in queries per second.
    peak_rate: f64,
    peak_qps: f64,
    /// The highest p95 and p99 latency of any second, in microseconds.
    max_p95_us: Option<u64>,
    max_p99_us: Option<u64>,
}

impl Report<'_> {
    /// The load's totals and peaks; `None` without samples (not a database load).
    fn load_summary(&self) -> Option<LoadSummary> {
        let last = self.load.last()?;
        let max_f = |f: fn(&LoadSampleRow) -> f64| self.load.iter().map(f).fold(0.0, f64::max);
        let max_us = |f: fn(&LoadSampleRow) -> Option<u64>| self.load.iter().filter_map(f).max();
        Some(LoadSummary {
            sent: last.sent,
            failed: last.failed,
            peak_rate: max_f(|s| s.rate),
            peak_qps: max_f(|s| s.qps),
            max_p95_us: max_us(|s| s.p95_us),
            max_p99_us: max_us(|s| s.p99_us),
        })
    }
}

/// A value for a table cell: up to four decimals, `-` when absent.
fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// `part / whole` as a percentage, `-` when the whole is zero.
fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "-".into()
    }
}

/// A load sample's latency (microseconds) as milliseconds, `-` when absent.
fn latency_ms(us: Option<u64>) -> String {
    us.map_or_else(|| "-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0))
}

/// Microseconds as milliseconds, e.g. `0.412 ms`.
fn us_as_ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// The synthetic report the tests render (shared with tests/report_html.rs).
#[cfg(test)]
mod fixture {
    use super::{
        EventRow, ExperimentRow, GuardSample, GuardSeries, LoadSampleRow, Report, SnapshotRow,
    };
    use super::{Verdict, Violation};
    use chaos_api::state::State;

    include!("fixture.rs");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_per_second_divides_each_delta_by_its_interval() {
        let f = fixture::Fixture::new();
        let rates: Vec<f64> = f.report().faults_per_second().iter().map(|r| r.1).collect();
        // Snapshots every second from the start; injected 10, 30, 30, 80, then 130 after 2 s.
        assert_eq!(rates, vec![10.0, 20.0, 0.0, 50.0, 25.0]);
    }

    #[test]
    fn a_summary_skips_unavailable_samples_and_counts_red_ones() {
        let s = fixture::Fixture::new().guards[0].summary();
        assert_eq!(s.min, Some(0.002));
        assert_eq!(s.max, Some(0.08));
        assert_eq!(s.last, Some(0.08));
        assert_eq!((s.violations, s.unavailable), (4, 1));
    }

    #[test]
    fn a_loads_summary_has_its_last_totals_and_its_peaks() {
        let f = fixture::Fixture::database_load();
        let s = f.report().load_summary().unwrap();
        assert_eq!(
            s,
            LoadSummary {
                sent: 1300,
                failed: 23,
                peak_rate: 500.0,
                peak_qps: 488.0,
                max_p95_us: Some(180_000),
                max_p99_us: Some(350_000),
            }
        );
        assert_eq!(fixture::Fixture::new().report().load_summary(), None);
        assert_eq!(
            (latency_ms(Some(3_460)), latency_ms(None)),
            ("3.5 ms".to_owned(), "-".to_owned())
        );
    }

    #[test]
    fn baselines_are_found_by_guard_name() {
        let f = fixture::Fixture::new();
        assert_eq!(f.report().baseline("error_rate"), Some(0.002));
        assert_eq!(f.report().baseline(fixture::HEALTH), Some(1.0));
        assert_eq!(f.report().baseline("latency_p95"), None);
        assert_eq!(f.report().duration_s(), Some(6.5));
    }

    #[test]
    fn the_impact_score_is_every_evaluations_peak_and_the_rollback_has_both_disarm_times() {
        use crate::store::{GuardSampleRow, RollbackRow};
        let f = fixture::Fixture::new();
        let sample = |guard: &str, kind: &str, value: f64| GuardSampleRow {
            at_ms: f.row.started_ms + 100,
            guard: guard.into(),
            kind: kind.into(),
            objective: String::new(),
            threshold: 0.0,
            value: Some(value),
            ok: true,
        };
        let rollback = |observation_us| RollbackRow {
            guard: "error_rate".into(),
            value: Some(0.2),
            objective: "<= 0.01".into(),
            observed_ms: f.row.started_ms + 100,
            disarm_us: 40,
            observation_us,
        };
        // No impact guard applied (`--guard error_rate`): the score still has its samples.
        let mut data = ReportData {
            row: f.row.clone(),
            events: Vec::new(),
            snapshots: Vec::new(),
            guards: vec![
                sample("error_rate", "critical_slo", 0.2),
                sample("impact score", IMPACT_SCORE, 0.3),
                sample("impact score", IMPACT_SCORE, 1.0),
                sample("impact score", IMPACT_SCORE, 0.1),
            ],
            rollback: Some(rollback(150_040)),
            load: Vec::new(),
            daily_budget: (1.0, 2.0),
        };
        let (series, verdict) = guard_inputs(&data);
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["error_rate"], "the score is no guard");
        assert_eq!(verdict.impact_score, Some(1.0));
        let v = verdict.violation.as_ref().unwrap();
        assert_eq!(
            (v.observation_to_disarm_us, v.decision_to_disarm_us),
            (Some(150_040), 40)
        );
        assert!(markdown(Report::new(&data, &series, &verdict)).contains("- Impact score: 1.00 "));
        // A record from before the observation's time was kept: only the decision's is shown.
        data.rollback = Some(rollback(0));
        let (series, verdict) = guard_inputs(&data);
        assert_eq!(
            verdict.violation.as_ref().unwrap().observation_to_disarm_us,
            None
        );
        let md = markdown(Report::new(&data, &series, &verdict));
        assert!(
            !md.contains("Observation to disarm") && md.contains("- Decision to disarm: 0.040 ms")
        );
    }
}

/// The guards' series and the verdict of a stored report: samples grouped by guard (in the
/// order each first appeared), the baseline values, the violation that rolled it back, the
/// highest impact score and the day's budget.
pub fn guard_inputs(data: &ReportData) -> (Vec<GuardSeries>, Verdict) {
    let mut series: Vec<GuardSeries> = Vec::new();
    let mut baseline = Vec::new();
    let mut impact_score: Option<f64> = None;
    for row in &data.guards {
        if row.kind == crate::experiment::BASELINE {
            if let Some(v) = row.value {
                baseline.push((row.guard.clone(), v));
            }
            continue;
        }
        // The score of every evaluation; the impact guard's own samples carry it too (the only
        // record of it before the score was kept whichever guards applied).
        if (row.kind == IMPACT_SCORE || row.kind == GuardKind::Impact.as_str())
            && let Some(v) = row.value
        {
            impact_score = Some(impact_score.map_or(v, |m| m.max(v)));
        }
        if row.kind == IMPACT_SCORE {
            continue;
        }
        let sample = GuardSample {
            at_ms: row.at_ms,
            value: row.value,
            ok: row.ok,
        };
        match series.iter_mut().find(|s| s.name == row.guard) {
            Some(s) => s.samples.push(sample),
            None => series.push(GuardSeries {
                name: row.guard.clone(),
                kind: row.kind.clone(),
                objective: row.objective.clone(),
                threshold: row.threshold,
                samples: vec![sample],
            }),
        }
    }
    let violation = data.rollback.as_ref().map(|r| Violation {
        guard: r.guard.clone(),
        value: r.value,
        objective: r.objective.clone(),
        observed_ms: r.observed_ms,
        observation_to_disarm_us: (r.observation_us > 0).then_some(r.observation_us),
        decision_to_disarm_us: r.disarm_us,
    });
    let verdict = Verdict {
        baseline,
        violation,
        impact_score,
        daily_budget: Some(data.daily_budget),
    };
    (series, verdict)
}
