//! The pre-flight checks, in their order, each with a pass/fail line. The plan (config valid,
//! target exists and is not protected, kernel support, the experiment's budget) is made before
//! them: a plan that fails is refused with its own error. Then: the daily budget, the critical
//! SLOs and the health endpoints healthy now, the time window, no emergency-stop latch, and
//! every notification channel and rollback strategy resolvable.

use std::time::Instant;

use super::Safety;
use crate::{
    experiment::{FaultEngine, Manager},
    guard::{GuardKind, GuardSet},
};

/// The check of the daily budget (refused as an exhausted resource, not a precondition).
pub const BUDGET_CHECK: &str = "budget available";

/// One pre-flight check's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, result: Result<String, String>) -> Self {
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Self {
            name,
            passed,
            detail,
        }
    }
}

impl Safety {
    /// Runs every pre-flight check of a planned experiment (reserving `budget`), sampling
    /// `set` once. The plan's own checks are listed as passed.
    pub async fn preflight<E: FaultEngine>(
        &self,
        manager: &Manager<E>,
        budget: f64,
        set: &mut GuardSet,
        now_ms: u64,
    ) -> Vec<Check> {
        let mut checks = vec![
            Check::new(
                "config valid",
                Ok("the experiment passes the model and the node's config".into()),
            ),
            Check::new("target exists and is not protected", Ok("resolved".into())),
            Check::new(
                "kernel supports the fault",
                Ok("probed at daemon start".into()),
            ),
        ];
        let remaining = manager.daily_remaining();
        checks.push(Check::new(
            BUDGET_CHECK,
            if budget <= remaining {
                Ok(format!(
                    "experiment budget {budget:.4}; {remaining:.4} of budget.max_daily_cost left today"
                ))
            } else {
                Err(format!(
                    "the experiment needs {budget:.4} but {remaining:.4} of today's \
                     budget.max_daily_cost is left"
                ))
            },
        ));
        self.sample(set).await;
        let states = set.evaluate(Instant::now()).guards;
        let line = |kind: GuardKind, none: &str| {
            let mine: Vec<_> = states.iter().filter(|g| g.kind == kind).collect();
            if mine.is_empty() {
                return Ok(none.to_owned());
            }
            let text: Vec<String> = mine
                .iter()
                .map(|g| match g.value {
                    Some(v) => format!("{} = {v:.4} ({})", g.name, g.objective),
                    None => format!("{}: {}", g.name, g.detail),
                })
                .collect();
            let text = text.join("; ");
            if mine.iter().all(|g| g.ok) {
                Ok(text)
            } else {
                Err(text)
            }
        };
        checks.push(Check::new(
            "critical SLOs healthy",
            line(GuardKind::CriticalSlo, "no critical SLO applies"),
        ));
        checks.push(Check::new(
            "health endpoints healthy",
            line(GuardKind::Health, "no health endpoint applies"),
        ));
        checks.push(Check::new(
            "inside the time window",
            match &self.config.safety_checks.time_window {
                None => Ok("no safety_checks.time_window: any time".to_owned()),
                Some(window) => match window.allows_at(now_ms) {
                    Ok((true, local)) => Ok(format!(
                        "{local} is inside {} {:?}",
                        window.hours, window.days
                    )),
                    Ok((false, local)) => Err(format!(
                        "{local} is outside safety_checks.time_window ({} on {:?})",
                        window.hours, window.days
                    )),
                    Err(e) => Err(format!("safety_checks.time_window: {e}")),
                },
            },
        ));
        checks.push(Check::new(
            "no emergency-stop latch",
            if manager.latched() {
                Err("emergency stop is latched on this node: clear it with `chaos-ctl emergency-stop --clear`".to_owned())
            } else {
                Ok("not latched".to_owned())
            },
        ));
        let reachable: Vec<(String, Result<String, String>)> = manager
            .notifier()
            .map(|n| n.preflight())
            .unwrap_or_default();
        checks.push(Check::new(
            "notification channels and strategies resolvable",
            if reachable.is_empty() {
                Ok("no channel or strategy configured".to_owned())
            } else if reachable.iter().all(|(_, r)| r.is_ok()) {
                Ok(reachable
                    .iter()
                    .map(|(n, r)| format!("{n}: {}", r.as_ref().map_or("", |s| s.as_str())))
                    .collect::<Vec<_>>()
                    .join("; "))
            } else {
                Err(reachable
                    .iter()
                    .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
                    .collect::<Vec<_>>()
                    .join("; "))
            },
        ));
        checks
    }
}
