//! The impact score: how close the experiment has pushed the service to a rollback, in [0, 1].
//!
//! It is the largest of these parts (docs/guards.md):
//! - each rollback trigger: how far its value moved from the baseline over its limit;
//! - each critical SLO: how far its value moved from the baseline toward the objective's
//!   threshold (`(v - b) / (t - b)` for a ceiling `<= t`, `(b - v) / (b - t)` for a floor
//!   `>= t`); 1 when it misses the objective, 0 when it is no worse than the baseline;
//! - each health endpoint's success rate: `(1 - rate) / (1 - min_success_rate)`.
//!
//! each clipped to [0, 1]. Unavailable values add nothing (they roll back on their own), and
//! neither do critical SLOs while their breaches only alert
//! (`rollback_triggers.slo_violation: false`): they are no rollback threshold then.

use std::time::Instant;

use super::{GuardKind, GuardState, Triggers};

/// The impact score of one evaluation's states, and when the observation behind its largest
/// part was taken (`None` for a score of 0, or a part without one). `slos`: whether critical
/// SLOs count.
pub fn score(
    guards: &[GuardState],
    triggers: Option<&Triggers>,
    slos: bool,
) -> (f64, Option<Instant>) {
    guards
        .iter()
        .filter(|g| slos || g.kind != GuardKind::CriticalSlo)
        .filter_map(|g| part(g, triggers).map(|p| (p, g.at)))
        .fold(
            (0.0, None),
            |best, (p, at)| if p > best.0 { (p, at) } else { best },
        )
}

fn part(g: &GuardState, triggers: Option<&Triggers>) -> Option<f64> {
    let v = g.value?;
    let part = match g.kind {
        GuardKind::Trigger => ratio(v, g.threshold),
        GuardKind::CriticalSlo => {
            let floor = g.objective.starts_with('>');
            let misses = if floor {
                v < g.threshold
            } else {
                v > g.threshold
            };
            let baseline = triggers.and_then(|t| t.baseline.slo(&g.name));
            match baseline {
                _ if misses => 1.0,
                // A baseline already past the threshold: only a miss counts.
                Some(b) if (floor && b > g.threshold) || (!floor && b < g.threshold) => {
                    if floor {
                        ratio(b - v, b - g.threshold)
                    } else {
                        ratio(v - b, g.threshold - b)
                    }
                }
                _ => 0.0,
            }
        }
        GuardKind::Health if g.name.ends_with("success rate") => ratio(1.0 - v, 1.0 - g.threshold),
        _ => return None,
    };
    Some(part.clamp(0.0, 1.0))
}

/// `moved / limit`, where a zero limit tolerates nothing.
fn ratio(moved: f64, limit: f64) -> f64 {
    if limit > 0.0 {
        moved / limit
    } else if moved > 0.0 {
        1.0
    } else {
        0.0
    }
}
