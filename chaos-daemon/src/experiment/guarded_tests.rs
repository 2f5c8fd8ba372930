//! The guards' marks on a run over the fake engine: each experiment's own guard series on
//! `/metrics`, gone when it ends; the impact score recorded whichever guards apply; and
//! pre-flight's checks of the plan, each on its own line.

use std::time::{Duration, Instant};

use chaos_api::{experiment::ExperimentType, state::State};

use super::{
    IMPACT_SCORE, Manager,
    fake::FakeEngine,
    tests::{experiment, loss, manager, manager_on, manager_with, start},
};
use crate::{
    error::{Classify, ErrorClass},
    guard::{Evaluation, GuardKind, GuardState},
    safety::{Preflight, Refusal},
};

/// One evaluation of a critical SLO `guard` at `value` (objective `<= 0.5`), scoring `impact`.
fn evaluation(guard: &str, value: f64, impact: f64) -> Evaluation {
    Evaluation {
        guards: vec![GuardState {
            name: guard.into(),
            kind: GuardKind::CriticalSlo,
            objective: "<= 0.5".into(),
            threshold: 0.5,
            value: Some(value),
            ok: value <= 0.5,
            detail: String::new(),
            at: None,
        }],
        impact,
        violation: None,
        alerts: Vec::new(),
    }
}

/// The samples of `family` on `/metrics`, sorted.
fn series(m: &Manager<FakeEngine>, family: &str) -> Vec<String> {
    let mut lines: Vec<String> = m
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn each_experiment_has_its_own_guard_series_until_it_ends() {
    let (m, _) = manager();
    let a = start(&m, &loss()).unwrap();
    let b = start(&m, &loss()).unwrap();
    m.observe_guards(&a, &evaluation("error_rate", 0.125, 0.25), Instant::now());
    m.observe_guards(&b, &evaluation("error_rate", 0.375, 0.75), Instant::now());
    let mut expected = vec![
        format!("chaos_guard_value{{experiment_id=\"{a}\",guard=\"error_rate\"}} 0.125"),
        format!("chaos_guard_value{{experiment_id=\"{b}\",guard=\"error_rate\"}} 0.375"),
    ];
    expected.sort();
    assert_eq!(series(&m, "chaos_guard_value"), expected);
    assert_eq!(series(&m, "chaos_guard_threshold").len(), 2);
    let mut impact = vec![
        format!("chaos_impact_score{{experiment_id=\"{a}\"}} 0.25"),
        format!("chaos_impact_score{{experiment_id=\"{b}\"}} 0.75"),
    ];
    impact.sort();
    assert_eq!(series(&m, "chaos_impact_score"), impact);
    // The counters stay by guard: two evaluations of error_rate.
    let evaluations = m
        .metrics
        .guard_evaluations
        .with_label_values(&["error_rate"]);
    assert_eq!(evaluations.get(), 2);

    // A ends: its series go, B's stay; a late evaluation of A (the one that rolled it back)
    // publishes nothing.
    m.stop(&a, State::Stopped, "test", Instant::now()).unwrap();
    m.observe_guards(&a, &evaluation("error_rate", 0.5, 1.0), Instant::now());
    let left = |family: &str| -> Vec<String> {
        series(&m, family)
            .into_iter()
            .map(|l| l.split_once('}').unwrap().0.to_owned())
            .collect()
    };
    let b_guard = format!("experiment_id=\"{b}\",guard=\"error_rate\"");
    assert_eq!(
        left("chaos_guard_value"),
        [format!("chaos_guard_value{{{b_guard}")]
    );
    assert_eq!(
        left("chaos_guard_threshold"),
        [format!("chaos_guard_threshold{{{b_guard}")]
    );
    assert_eq!(
        left("chaos_impact_score"),
        [format!("chaos_impact_score{{experiment_id=\"{b}\"")]
    );
    m.stop(&b, State::Stopped, "test", Instant::now()).unwrap();
    for family in [
        "chaos_guard_value",
        "chaos_guard_threshold",
        "chaos_impact_score",
    ] {
        assert!(series(&m, family).is_empty(), "{family}");
    }
}

#[test]
fn the_impact_score_is_recorded_whichever_guards_apply_with_its_peak() {
    let (m, _) = manager();
    let id = start(&m, &loss()).unwrap();
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    // No impact guard: the evaluations score all the same. The first is recorded; the next
    // two are not due (green, within a second), the fourth is, with the peak since.
    m.observe_guards(&id, &evaluation("error_rate", 0.1, 0.2), at(0));
    m.observe_guards(&id, &evaluation("error_rate", 0.1, 0.9), at(100));
    m.observe_guards(&id, &evaluation("error_rate", 0.1, 0.1), at(200));
    m.observe_guards(&id, &evaluation("error_rate", 0.1, 0.3), at(1100));
    m.flush();
    let data = m.report(&id).unwrap();
    let scores: Vec<Option<f64>> = data
        .guards
        .iter()
        .filter(|g| g.kind == IMPACT_SCORE)
        .map(|g| g.value)
        .collect();
    assert_eq!(scores, [Some(0.2), Some(0.9)]);
    let (series, verdict) = crate::report::guard_inputs(&data);
    assert_eq!(verdict.impact_score, Some(0.9));
    assert!(series.iter().all(|s| s.kind != IMPACT_SCORE));
}

/// (name, passed) of every check.
fn lines<P>(pre: &Preflight<P>) -> Vec<(&'static str, bool)> {
    pre.checks.iter().map(|c| (c.name, c.passed)).collect()
}

const CONFIG: &str = "config valid";
const TARGET: &str = "target exists and is not protected";
const KERNEL: &str = "kernel supports the fault";
const BUDGET: &str = "budget available";

#[test]
fn each_check_of_the_plan_has_its_line_and_a_failure_hides_none_it_does_not_need() {
    // Everything passes: the plan is made.
    let (m, _) = manager();
    let pre = Preflight::plan(&m, &loss());
    assert_eq!(
        lines(&pre),
        [
            (CONFIG, true),
            (TARGET, true),
            (KERNEL, true),
            (BUDGET, true)
        ]
    );
    assert_eq!(pre.checks[1].detail, "/fake/cgroup /x");
    assert!(pre.planned.is_some() && pre.refusal.is_none());

    // A kernel that cannot run it: only that line fails, and it is what a start answers.
    let engine = FakeEngine::new().unsupporting(ExperimentType::PacketLoss, "no tc here");
    let (m, _) = manager_on(engine, "budget: {cost_per_request: 0.01}\n");
    let pre = Preflight::plan(&m, &loss());
    assert_eq!(
        lines(&pre),
        [
            (CONFIG, true),
            (TARGET, true),
            (KERNEL, false),
            (BUDGET, true)
        ]
    );
    assert_eq!(
        pre.checks[2].detail,
        "packet_loss is not supported on this node: no tc here"
    );
    assert!(pre.planned.is_none());
    let Some(Refusal::Plan(e)) = &pre.refusal else {
        panic!("{:?}", pre.refusal)
    };
    assert_eq!(
        (e.to_string(), e.class()),
        (pre.checks[2].detail.clone(), ErrorClass::Refused)
    );

    // A limit of the config: the target and the kernel are still checked; the budget cannot
    // be (it needs the admitted experiment).
    let (m, _) = manager_with("experiments:\n  packet_loss:\n    max_probability: 0.1\n");
    let pre = Preflight::plan(&m, &loss());
    assert_eq!(
        lines(&pre),
        [
            (CONFIG, false),
            (TARGET, true),
            (KERNEL, true),
            (BUDGET, false)
        ]
    );
    assert_eq!(
        pre.checks[0].detail,
        "intensity: 0.5 is not allowed; expected at most 0.1 \
         (experiments.packet_loss.max_probability)"
    );
    assert!(
        pre.checks[3]
            .detail
            .starts_with("not checked: the experiment's budget needs a valid config ("),
        "{}",
        pre.checks[3].detail
    );
    assert!(
        matches!(&pre.refusal, Some(Refusal::Plan(e)) if e.to_string() == pre.checks[0].detail)
    );

    // A budget above budget.max_experiment_cost is a limit of the config too.
    let (m, _) = manager_with("budget: {max_experiment_cost: 1, cost_per_request: 0.01}\n");
    let pre = Preflight::plan(
        &m,
        &experiment("packet_loss", "intensity: 0.5\nbudget: 2\n"),
    );
    assert_eq!(
        lines(&pre),
        [
            (CONFIG, false),
            (TARGET, true),
            (KERNEL, true),
            (BUDGET, false)
        ]
    );
    assert_eq!(
        pre.checks[0].detail,
        "budget: 2 is not allowed; expected at most 1 (budget.max_experiment_cost)"
    );
    // What is left of the day: the plan is made, the budget line fails.
    let (m, _) = manager_with(
        "budget: {max_experiment_cost: 1, max_daily_cost: 1, cost_per_request: 0.01}\n",
    );
    start(
        &m,
        &experiment("packet_loss", "intensity: 0.5\nbudget: 0.8\n"),
    )
    .unwrap();
    let pre = Preflight::plan(
        &m,
        &experiment("packet_loss", "intensity: 0.5\nbudget: 0.5\n"),
    );
    assert_eq!(
        lines(&pre),
        [
            (CONFIG, true),
            (TARGET, true),
            (KERNEL, true),
            (BUDGET, false)
        ]
    );
    assert_eq!(
        pre.checks[3].detail,
        "the experiment needs 0.5000 but 0.2000 of today's budget.max_daily_cost is left"
    );
    assert!(pre.planned.is_some());
    assert!(matches!(&pre.refusal, Some(Refusal::Check(c)) if c.name == BUDGET));
}
