//! The experiment's guard and ramp flags (`--guard`, `--slo`, `--guard-interval`, `--baseline`,
//! `--ramp`, `--ramp-hold`) as the message's `Guards` and `Ramp`; the model checks them.

use std::time::Duration;

use chaos_api::error::ModelError;
use chaos_api::proto;

use super::SpecError;
use crate::cli::GuardArgs;

/// The message's ramp from `--ramp` and `--ramp-hold`.
pub(super) fn ramp(g: &GuardArgs) -> Result<Option<proto::Ramp>, SpecError> {
    let (Some(text), Some(hold)) = (&g.ramp, g.ramp_hold) else {
        return Ok(None);
    };
    let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
    if text == "preset" {
        return Ok(Some(proto::Ramp {
            preset: true,
            steps: Vec::new(),
            hold_ms,
        }));
    }
    let steps = text
        .split(',')
        .map(|s| s.trim().parse::<f64>())
        .collect::<Result<Vec<f64>, _>>()
        .map_err(|_| {
            SpecError::Model(ModelError::Parse {
                path: "ramp.steps".to_owned(),
                message: format!(
                    "--ramp {text:?}: expected `preset` or probabilities separated by commas, \
                     e.g. 0.01,0.05,0.1"
                ),
            })
        })?;
    Ok(Some(proto::Ramp {
        preset: false,
        steps,
        hold_ms,
    }))
}

/// The message's guards from the flags; `None` when none is given.
pub(super) fn guards(g: &GuardArgs) -> Result<Option<proto::Guards>, SpecError> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut slos = std::collections::HashMap::new();
    for text in &g.slos {
        let mut parts = text.splitn(3, ':');
        let (Some(name), Some(objective), Some(query)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SpecError::Model(ModelError::Parse {
                path: "guards.slos".to_owned(),
                message: format!(
                    "--slo {text:?}: expected NAME:OBJECTIVE:QUERY, e.g. 'errors:<= 0.01:sum(rate(x[1m]))'"
                ),
            }));
        };
        let slo = proto::Slo {
            query: query.to_owned(),
            objective: objective.to_owned(),
            for_ms: 0,
            description: String::new(),
        };
        slos.insert(name.to_owned(), slo);
    }
    let any = !g.apply.is_empty()
        || !slos.is_empty()
        || g.guard_interval.is_some()
        || g.baseline.is_some();
    Ok(any.then(|| proto::Guards {
        restrict: !g.apply.is_empty(),
        apply: g.apply.clone(),
        slos,
        interval_ms: g.guard_interval.map(ms),
        baseline_ms: g.baseline.map(ms),
    }))
}
