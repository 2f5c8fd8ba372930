//! Post-mortem rendering: an experiment and its timeline as Markdown.

use std::fmt::Write as _;

use crate::experiment::ReportData;

/// The post-mortem of one experiment as Markdown.
pub fn markdown(d: &ReportData) -> String {
    let r = &d.row;
    let mut s = String::new();
    let secs = |ms: u64| ms.saturating_sub(r.started_ms) as f64 / 1000.0;
    let _ = writeln!(s, "# Experiment {} ({})\n", r.id, r.name);
    let _ = writeln!(s, "| field | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| fault | {} |\n| target | `{}` |\n| state | {} |",
        r.fault, r.target, r.state
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
    let _ = writeln!(s, "\n## Timeline\n");
    for e in &d.events {
        let _ = writeln!(s, "- +{:.3} s **{}** {}", secs(e.at_ms), e.kind, e.message);
    }
    s
}
