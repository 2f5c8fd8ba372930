//! The Markdown report: summary, outcome (rollback reason, observation-to-disarm and
//! decision-to-disarm times, impact score), spend against both budgets, timeline, guard table,
//! a text chart of faults per second and, for a database load, its totals and text charts of its
//! queries per second and p95 latency. Plain text a terminal shows as it is; table cells escape
//! `|` and line breaks.

use std::fmt::Write as _;

use super::{Report, latency_ms, num, percent, us_as_ms};
use crate::store::{LoadSampleRow, SnapshotRow};

/// The post-mortem of one experiment as Markdown.
pub fn markdown<'a>(report: impl Into<Report<'a>>) -> String {
    let report = report.into();
    let r = report.row;
    let mut s = String::new();
    let _ = writeln!(s, "# Experiment {} ({})\n", r.id, line(&r.name));
    let _ = writeln!(s, "| field | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| type | {} |\n| target | `{}` |\n| state | {} |",
        cell(&r.kind),
        cell(&r.target),
        r.state
    );
    if !r.reason.is_empty() {
        let _ = writeln!(s, "| reason | {} |", cell(&r.reason));
    }
    if let Some(d) = report.duration_s() {
        let _ = writeln!(s, "| duration | {d:.1} s |");
    }
    let _ = writeln!(
        s,
        "| events seen / matched | {} / {} |\n| faults injected | {} |\n| refused by the fault cap | {} |",
        r.seen, r.matched, r.injected, r.capped
    );
    outcome(&mut s, &report);
    budget(&mut s, &report);
    let _ = writeln!(s, "\n## Timeline\n");
    for e in report.events {
        let _ = writeln!(
            s,
            "- +{:.3} s **{}** {}",
            report.offset_s(e.at_ms),
            line(&e.kind),
            line(&e.message)
        );
    }
    guards(&mut s, &report);
    if !report.snapshots.is_empty() {
        let _ = writeln!(s, "\n## Faults injected per second\n");
        let _ = writeln!(s, "```\n{}\n```", chart(report.snapshots));
    }
    load(&mut s, &report);
    s
}

/// A database load's totals and peaks, and its queries per second and p95 latency a second at
/// a time.
fn load(s: &mut String, report: &Report) {
    let Some(sum) = report.load_summary() else {
        return;
    };
    let _ = writeln!(s, "\n## Database load\n");
    let _ = writeln!(
        s,
        "| sent | failed | peak target rate | peak achieved | max p95 | max p99 |\n\
         |---|---|---|---|---|---|"
    );
    let _ = writeln!(
        s,
        "| {} | {} ({}) | {:.1}/s | {:.1}/s | {} | {} |",
        sum.sent,
        sum.failed,
        percent(sum.failed as f64, sum.sent as f64),
        sum.peak_rate,
        sum.peak_qps,
        latency_ms(sum.max_p95_us),
        latency_ms(sum.max_p99_us)
    );
    let _ = writeln!(s, "```\n{}\n```", load_chart(report.load));
}

/// Two one-line charts of a load's samples: queries per second, and p95 latency (blank where
/// nothing finished in a second).
pub fn load_chart(samples: &[LoadSampleRow]) -> String {
    let qps: Vec<Option<f64>> = samples.iter().map(|l| Some(l.qps)).collect();
    let p95: Vec<Option<f64>> = samples
        .iter()
        .map(|l| l.p95_us.map(|us| us as f64 / 1000.0))
        .collect();
    let peak = |v: &[Option<f64>]| v.iter().flatten().fold(0.0f64, |m, &x| m.max(x));
    let (peak_qps, peak_p95) = (peak(&qps), peak(&p95));
    format!(
        "qps  {}  (max {peak_qps:.1}/s over {} s)\np95  {}  (max {peak_p95:.1} ms)",
        bars(&qps, peak_qps),
        samples.len(),
        bars(&p95, peak_p95)
    )
}

/// What stopped the experiment and what it did to the service.
fn outcome(s: &mut String, report: &Report) {
    let v = report.verdict;
    if v.violation.is_none() && v.impact_score.is_none() {
        return;
    }
    let _ = writeln!(s, "\n## Outcome\n");
    if let Some(x) = &v.violation {
        let value = x
            .value
            .map_or_else(|| "unavailable".into(), |v| format!("{v:.4}"));
        let _ = writeln!(
            s,
            "- Rolled back by guard **{}**: {value} against objective `{}`, observed at +{:.3} s.",
            line(&x.guard),
            line(&x.objective),
            report.offset_s(x.observed_ms)
        );
        if let Some(us) = x.observation_to_disarm_us {
            let _ = writeln!(
                s,
                "- Observation to disarm: {} from the violating observation to the kernel \
                 disarm.",
                us_as_ms(us)
            );
        }
        let _ = writeln!(
            s,
            "- Decision to disarm: {} from the guard evaluation that saw the violation to the \
             kernel disarm.",
            us_as_ms(x.decision_to_disarm_us)
        );
    }
    if let Some(score) = v.impact_score {
        let _ = writeln!(
            s,
            "- Impact score: {score:.2} (0 = no impact, 1 = at a rollback threshold)."
        );
    }
}

/// Spend against the experiment's budget and the daily one.
fn budget(s: &mut String, report: &Report) {
    let r = report.row;
    let _ = writeln!(s, "\n## Budget\n");
    let _ = writeln!(s, "| budget | spent | limit | used |\n|---|---|---|---|");
    let _ = writeln!(
        s,
        "| experiment | {:.4} | {:.4} | {} |",
        r.spent,
        r.budget,
        percent(r.spent, r.budget)
    );
    if let Some((spent, max)) = report.verdict.daily_budget {
        let _ = writeln!(
            s,
            "| daily (UTC) | {spent:.4} | {max:.4} | {} |",
            percent(spent, max)
        );
    }
}

/// Each guard's samples against its threshold.
fn guards(s: &mut String, report: &Report) {
    if report.guards.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## Guards\n");
    let _ = writeln!(
        s,
        "| guard | kind | objective | baseline | min | max | last | samples | violations | unavailable |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for g in report.guards {
        let sum = g.summary();
        let _ = writeln!(
            s,
            "| {} | {} | `{}` | {} | {} | {} | {} | {} | {} | {} |",
            cell(&g.name),
            cell(&g.kind),
            cell(&g.objective),
            num(report.baseline(&g.name)),
            num(sum.min),
            num(sum.max),
            num(sum.last),
            g.samples.len(),
            sum.violations,
            sum.unavailable
        );
    }
}

/// Text on one line.
fn line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// Text in a table cell: one line, `|` escaped.
fn cell(text: &str) -> String {
    line(text).replace('|', "\\|")
}

/// A one-line bar chart of the injections between consecutive snapshots (one per second).
pub fn chart(snapshots: &[SnapshotRow]) -> String {
    let mut prev = 0;
    let deltas: Vec<u64> = snapshots
        .iter()
        .map(|s| {
            let d = s.injected.saturating_sub(prev);
            prev = s.injected;
            d
        })
        .collect();
    let max = deltas.iter().copied().max().unwrap_or(0).max(1);
    let values: Vec<Option<f64>> = deltas.iter().map(|&d| Some(d as f64)).collect();
    format!(
        "{}  (max {max}/s over {} s)",
        bars(&values, max as f64),
        deltas.len()
    )
}

/// One bar per value, scaled to `max` (the lowest bar below an eighth of it, a blank for a
/// missing value).
fn bars(values: &[Option<f64>], max: f64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values
        .iter()
        .map(|v| match v {
            Some(v) if max > 0.0 => BARS[((v * 7.0 / max) as usize).min(7)],
            Some(_) => BARS[0],
            None => ' ',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn chart_scales_to_the_busiest_second() {
        let snap = |injected| SnapshotRow {
            at_ms: 0,
            seen: 0,
            matched: 0,
            injected,
            capped: 0,
        };
        let s: Vec<_> = [0, 7, 21, 21, 28].into_iter().map(snap).collect();
        assert_eq!(chart(&s), "▁▄█▁▄  (max 14/s over 5 s)");
    }

    fn rendered() -> String {
        markdown(fixture::Fixture::new().report())
    }

    #[test]
    fn a_database_load_has_its_totals_and_charts_of_its_rate_and_p95() {
        let md = markdown(fixture::Fixture::database_load().report());
        let section = md.split_once("\n## Database load\n\n").unwrap().1;
        assert_eq!(
            section,
            "| sent | failed | peak target rate | peak achieved | max p95 | max p99 |\n\
             |---|---|---|---|---|---|\n\
             | 1300 | 23 (1.8%) | 500.0/s | 488.0/s | 180.0 ms | 350.0 ms |\n\
             ```\n\
             qps  ▃▃█▅▂▁  (max 488.0/s over 6 s)\n\
             p95  ▁▁▂█ ▅  (max 180.0 ms)\n\
             ```\n"
        );
        assert!(!rendered().contains("## Database load"));
    }

    #[test]
    fn the_outcome_names_the_guard_its_value_and_the_disarm_time() {
        let md = rendered();
        assert!(md.contains(
            "- Rolled back by guard **error_rate**: 0.0800 against objective `<= 0.01`, observed at +6.000 s."
        ));
        assert!(md.contains(
            "- Observation to disarm: 100.412 ms from the violating observation to the kernel \
             disarm.\n- Decision to disarm: 0.412 ms from the guard evaluation that saw the \
             violation to the kernel disarm.\n"
        ));
        assert!(md.contains("- Impact score: 0.62 "));
        assert!(md.contains(&format!("| reason | {} |", fixture::REASON)));
    }

    #[test]
    fn spend_is_shown_against_both_budgets() {
        let md = rendered();
        assert!(md.contains("| experiment | 1.3000 | 2.0000 | 65.0% |"));
        assert!(md.contains("| daily (UTC) | 3.5000 | 10.0000 | 35.0% |"));
    }

    #[test]
    fn the_timeline_lists_steps_alerts_and_the_rollback_in_order() {
        let md = rendered();
        let at = |needle: &str| md.find(needle).expect(needle);
        assert!(at("+0.000 s **baseline**") < at("+0.010 s **armed** slot 0"));
        assert!(at("+1.000 s **step** intensity 0.05") < at("+3.000 s **step** intensity 0.10"));
        assert!(at("+4.000 s **budget_alert**") < at("+6.100 s **rollback**"));
        assert!(at("+6.100 s **rollback**") < at("+6.500 s **stopped**"));
    }

    #[test]
    fn each_guard_has_a_row_with_its_summary() {
        let md = rendered();
        assert!(md.contains(
            "| error_rate | critical_slo | `<= 0.01` | 0.0020 | 0.0020 | 0.0800 | 0.0800 | 7 | 4 | 1 |"
        ));
        // The `|` in the health guard's name is escaped, so its row keeps ten cells.
        assert!(md.contains(
            "| health https://x/healthz?a=1&b=<2>\\| | health | `>= 0.95` | 1.0000 | 0.9700 | 1.0000 | 1.0000 | 4 | 0 | 0 |"
        ));
        assert!(md.contains(
            "| impact | impact | `<= 0.5` | 0.0000 | 0.0000 | 0.6200 | 0.6200 | 4 | 1 | 0 |"
        ));
    }

    #[test]
    fn a_report_without_guards_has_no_guard_or_outcome_section() {
        let md = markdown(fixture::Fixture::new().without_guards());
        assert!(!md.contains("## Guards") && !md.contains("## Outcome"));
        assert!(!md.contains("daily"));
        assert!(md.contains("## Faults injected per second\n\n```\n"));
        assert!(md.contains(&format!("# Experiment exp-42 ({})", fixture::NAME)));
    }
}
