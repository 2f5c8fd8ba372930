//! Post-mortem rendering: an experiment, its timeline and its counters over time as Markdown.

use std::fmt::Write as _;

use crate::{experiment::ReportData, store::SnapshotRow};

/// The post-mortem of one experiment as Markdown.
pub fn markdown(d: &ReportData) -> String {
    let r = &d.row;
    let mut s = String::new();
    let secs = |ms: u64| ms.saturating_sub(r.started_ms) as f64 / 1000.0;
    let _ = writeln!(s, "# Experiment {} ({})\n", r.id, r.name);
    let _ = writeln!(s, "| field | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| type | {} |\n| target | `{}` |\n| state | {} |",
        r.kind, r.target, r.state
    );
    if !r.reason.is_empty() {
        let _ = writeln!(s, "| reason | {} |", r.reason);
    }
    if r.ended_ms > 0 {
        let _ = writeln!(s, "| duration | {:.1} s |", secs(r.ended_ms));
    }
    let _ = writeln!(
        s,
        "| events seen / matched | {} / {} |\n| faults injected | {} |\n| refused by the fault cap | {} |",
        r.seen, r.matched, r.injected, r.capped
    );
    let _ = writeln!(s, "| spent / budget | {:.4} / {:.4} |", r.spent, r.budget);
    let _ = writeln!(s, "\n## Timeline\n");
    for e in &d.events {
        let _ = writeln!(s, "- +{:.3} s **{}** {}", secs(e.at_ms), e.kind, e.message);
    }
    if !d.snapshots.is_empty() {
        let _ = writeln!(s, "\n## Faults injected per second\n");
        let _ = writeln!(s, "```\n{}\n```", chart(&d.snapshots));
    }
    s
}

/// A one-line bar chart of the injections between consecutive snapshots (one per second).
pub fn chart(snapshots: &[SnapshotRow]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
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
    let bars: String = deltas
        .iter()
        .map(|d| BARS[((d * 7) / max) as usize])
        .collect();
    format!("{bars}  (max {max}/s over {} s)", deltas.len())
}

#[cfg(test)]
mod tests {
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
}
