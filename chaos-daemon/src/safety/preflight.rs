//! The pre-flight checks, in their order, each with a pass/fail line: config valid (the model
//! and the node's limits, the experiment's budget against `budget.max_experiment_cost` and its
//! price included); target exists and is not protected; the kernel supports the fault; budget
//! available (the experiment's budget against what is left of the day's); every critical SLO
//! and every health endpoint healthy now; inside the time window; no emergency-stop latch;
//! every notification channel and strategy resolvable.
//!
//! [`Preflight::plan`] runs the first four (the plan is made when they pass), blocking;
//! [`Safety::preflight`] the others. A dry run runs every check: one that needs what an
//! earlier failed check did not give (the experiment's budget without a valid config) says so.
//! A start stops at the first failure ([`Preflight::refusal`]).

use std::time::Instant;

use chaos_api::experiment::Experiment;

use super::Safety;
use crate::{
    ebpf::KernelError,
    engine::EngineError,
    experiment::{ExperimentError, FaultEngine, Manager, Planned},
    guard::{GuardKind, GuardSet},
};

/// The check of the model and the node's config.
pub const CONFIG_CHECK: &str = "config valid";
/// The check of the target.
pub const TARGET_CHECK: &str = "target exists and is not protected";
/// The check of the kernel's capability probe.
pub const KERNEL_CHECK: &str = "kernel supports the fault";
/// The check of both budgets (the day's is refused as an exhausted resource).
pub const BUDGET_CHECK: &str = "budget available";

/// One pre-flight check's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// What it found; for a failed check, why.
    pub detail: String,
}

/// Why a start is refused: the first check that failed.
#[derive(Debug)]
pub enum Refusal {
    /// A check of the plan, with the error a start answers (its own status code and message).
    Plan(ExperimentError),
    /// Any other check.
    Check(Check),
}

/// What pre-flight found.
pub struct Preflight<P> {
    /// The checks run, in order: all of them for a dry run, up to the first failure for a
    /// start.
    pub checks: Vec<Check>,
    /// The plan, when it could be made (config, target and kernel passed; the budget may not
    /// have).
    pub planned: Option<Planned<P>>,
    /// The first failure.
    pub refusal: Option<Refusal>,
}

/// A check's outcome: what it found, or why it failed.
type Outcome = Result<String, String>;

impl<P> Preflight<P> {
    /// Adds the line `name` for `outcome`; the first failure becomes the refusal, the line
    /// itself.
    fn push(&mut self, name: &'static str, outcome: Outcome) {
        let passed = outcome.is_ok();
        let check = Check {
            name,
            passed,
            detail: outcome.unwrap_or_else(|why| why),
        };
        if !passed && self.refusal.is_none() {
            self.refusal = Some(Refusal::Check(check.clone()));
        }
        self.checks.push(check);
    }

    /// Adds the line `name` of a check of the plan for `outcome`; the first failure becomes
    /// the refusal, with its error.
    fn push_plan(&mut self, name: &'static str, outcome: Result<String, ExperimentError>) {
        let check = Check {
            name,
            passed: outcome.is_ok(),
            detail: match &outcome {
                Ok(found) => found.clone(),
                Err(e) => e.to_string(),
            },
        };
        if let (Err(e), None) = (outcome, &self.refusal) {
            self.refusal = Some(Refusal::Plan(e));
        }
        self.checks.push(check);
    }

    /// Whether a start stops here: a check failed and not every check is wanted.
    fn done(&self, all: bool) -> bool {
        !all && self.refusal.is_some()
    }

    /// The plan's checks of `experiment` (config, target, kernel, budgets), and the plan when
    /// config, target and kernel pass. Blocks (it reads the node's cgroups): call it on the
    /// blocking pool.
    pub fn plan<E: FaultEngine<Prepared = P>>(
        manager: &Manager<E>,
        experiment: &Experiment,
    ) -> Self {
        let mut pre = Self {
            checks: Vec::new(),
            planned: None,
            refusal: None,
        };
        let admitted = manager.admit(experiment);
        let kind = experiment.kind();
        let target = manager.engine().resolve_targets(&experiment.targets);
        let kernel = manager.capabilities().check(kind);
        let (admission, config) = match admitted {
            Ok(admission) => (
                Some(admission),
                Ok("the experiment passes the model and this node's limits".to_owned()),
            ),
            Err(e) => (None, Err(e)),
        };
        let budget = admission.as_ref().map(|a| a.budget);
        let prepared = match (admission, &target, &kernel) {
            (Some(admission), Ok(_), Ok(())) => Some(manager.prepare(admission)),
            _ => None,
        };
        let (planned, prepare_error) = match prepared {
            Some(Ok(planned)) => (Some(planned), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let (kernel_error, target_error) = match prepare_error {
            Some(e) if is_kernel_error(&e) => (Some(e), None),
            other => (None, other),
        };
        pre.push_plan(CONFIG_CHECK, config);
        pre.push_plan(
            TARGET_CHECK,
            match (target, target_error) {
                (Err(e), _) => Err(e.into()),
                (Ok(_), Some(e)) => Err(e),
                (Ok(found), None) => Ok(found),
            },
        );
        pre.push_plan(
            KERNEL_CHECK,
            match (kernel, kernel_error) {
                (Err(reason), _) => Err(EngineError::Unsupported { kind, reason }.into()),
                (Ok(()), Some(e)) => Err(e),
                (Ok(()), None) => Ok(format!("{kind} passed the capability probe at start")),
            },
        );
        let remaining = manager.daily_remaining();
        pre.push(
            BUDGET_CHECK,
            match budget {
                None => Err(format!(
                    "not checked: the experiment's budget needs a valid config \
                     ({remaining:.4} of budget.max_daily_cost left today)"
                )),
                Some(budget) if budget <= remaining => Ok(format!(
                    "experiment budget {budget:.4}; {remaining:.4} of budget.max_daily_cost \
                     left today"
                )),
                Some(budget) => Err(format!(
                    "the experiment needs {budget:.4} but {remaining:.4} of today's \
                     budget.max_daily_cost is left"
                )),
            },
        );
        pre.planned = planned;
        pre
    }
}

/// Whether a planning error says the kernel cannot run the fault.
fn is_kernel_error(e: &ExperimentError) -> bool {
    matches!(
        e,
        ExperimentError::Engine(
            EngineError::Unsupported { .. } | EngineError::Kernel(KernelError::LsmUnsupported(_))
        )
    )
}

impl Safety {
    /// Runs the checks after the plan's on `pre`, sampling `set` once: every check when `all`
    /// (a dry run), else up to the first failure (a start).
    pub async fn preflight<E: FaultEngine>(
        &self,
        manager: &Manager<E>,
        mut pre: Preflight<E::Prepared>,
        set: &mut GuardSet,
        now_ms: u64,
        all: bool,
    ) -> Preflight<E::Prepared> {
        if pre.done(all) {
            return pre;
        }
        self.sample(set).await;
        let states = set.evaluate(Instant::now()).guards;
        let line = |kind: GuardKind, none: &str| -> Outcome {
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
        let window = || match &self.config.safety_checks.time_window {
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
        };
        let latch = || {
            if manager.latched() {
                Err(ExperimentError::Latched.to_string())
            } else {
                Ok("not latched".to_owned())
            }
        };
        let channels = || {
            let reachable: Vec<(String, Result<String, String>)> = manager
                .notifier()
                .map(|n| n.preflight())
                .unwrap_or_default();
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
            }
        };
        let rest: [(&'static str, &dyn Fn() -> Outcome); 5] = [
            ("critical SLOs healthy", &|| {
                line(GuardKind::CriticalSlo, "no critical SLO applies")
            }),
            ("health endpoints healthy", &|| {
                line(GuardKind::Health, "no health endpoint applies")
            }),
            ("inside the time window", &window),
            ("no emergency-stop latch", &latch),
            ("notification channels and strategies resolvable", &channels),
        ];
        for (name, check) in rest {
            pre.push(name, check());
            if pre.done(all) {
                break;
            }
        }
        pre
    }
}
