//! The guards with a fake clock: every comparison, the `for` window, unavailable samples, the
//! health window, the triggers against the baseline, and the impact score.

use std::time::{Duration, Instant};

use chaos_api::config::{HealthEndpoint, Objective, RollbackTriggers, SloDefinition, StatusRange};

use super::*;

fn slo(objective: &str, for_ms: u64) -> SloDefinition {
    SloDefinition {
        query: "q".into(),
        objective: objective.parse().unwrap(),
        for_: Duration::from_millis(for_ms),
        description: String::new(),
    }
}

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn set(slos: Vec<(&str, &str, u64, SloRole)>) -> GuardSet {
    GuardSet::new(
        slos.into_iter()
            .map(|(n, o, f, r)| (n.to_owned(), slo(o, f), r))
            .collect(),
        vec![],
        Duration::from_secs(10),
        0.95,
        0.99,
    )
}

#[test]
fn every_comparison_holds_and_misses_at_its_edge() {
    for (objective, holds, misses) in [
        (">= 0.99", 0.99, 0.989),
        ("> 0.99", 0.991, 0.99),
        ("<= 0.01", 0.01, 0.0101),
        ("< 0.01", 0.0099, 0.01),
    ] {
        let o: Objective = objective.parse().unwrap();
        assert!(o.holds(holds), "{objective} {holds}");
        assert!(!o.holds(misses), "{objective} {misses}");
        assert!(!o.holds(f64::NAN), "{objective} NaN");
    }
    assert!("== 1".parse::<Objective>().is_err());
    assert!(">= x".parse::<Objective>().is_err());
    assert!(">= inf".parse::<Objective>().is_err());
}

#[test]
fn a_critical_slo_rolls_back_once_missed_for_its_for() {
    let t0 = Instant::now();
    let mut s = set(vec![("error_rate", "<= 0.01", 500, SloRole::Critical)]);
    s.slos[0].observe(ms(t0, 0), Sample::Value(0.0));
    assert!(s.evaluate(ms(t0, 0)).all_green());
    s.slos[0].observe(ms(t0, 100), Sample::Value(0.2));
    let e = s.evaluate(ms(t0, 100));
    assert!(e.violation.is_none(), "not yet missed for 500 ms");
    s.slos[0].observe(ms(t0, 400), Sample::Value(0.3));
    assert!(s.evaluate(ms(t0, 599)).violation.is_none());
    let e = s.evaluate(ms(t0, 600));
    let v = e.violation.expect("missed for 500 ms");
    assert_eq!(v.guard, "error_rate");
    assert_eq!(v.value, Some(0.3));
    assert_eq!(v.observed, ms(t0, 400), "the violating sample's time");
    assert_eq!(
        v.reason,
        "slo violation: error_rate = 0.3 (objective <= 0.01)"
    );
    // Back within the objective: the window restarts.
    s.slos[0].observe(ms(t0, 700), Sample::Value(0.0));
    s.slos[0].observe(ms(t0, 800), Sample::Value(0.5));
    assert!(s.evaluate(ms(t0, 1200)).violation.is_none());
    assert!(s.evaluate(ms(t0, 1300)).violation.is_some());
}

#[test]
fn an_unavailable_guard_rolls_back_at_once_and_a_warning_only_alerts() {
    let t0 = Instant::now();
    let mut s = set(vec![
        ("avail", ">= 0.99", 60_000, SloRole::Critical),
        ("db", "<= 0.1", 0, SloRole::Warning),
    ]);
    s.slos[1].observe(t0, Sample::Value(0.5));
    s.slos[0].observe(t0, Sample::Unavailable("no data".into()));
    let e = s.evaluate(t0);
    let v = e.violation.unwrap();
    assert_eq!(v.reason, "guard unavailable: avail: no data");
    assert_eq!(e.alerts.len(), 1, "{:?}", e.alerts);
    assert_eq!(
        (e.alerts[0].guard.as_str(), e.alerts[0].critical),
        ("db", false)
    );
    assert!(
        e.alerts[0].message.starts_with("db: 0.5 misses <= 0.1"),
        "{:?}",
        e.alerts
    );
    // A never-sampled critical SLO is unavailable too.
    let mut fresh = set(vec![("avail", ">= 0.99", 0, SloRole::Critical)]);
    assert!(
        fresh
            .evaluate(t0)
            .violation
            .unwrap()
            .reason
            .contains("no sample yet")
    );
}

fn endpoint() -> HealthEndpoint {
    HealthEndpoint {
        url: "http://127.0.0.1:1/healthz".into(),
        method: "GET".into(),
        expect_status: StatusRange::default(),
        timeout: Duration::from_secs(1),
        interval: Duration::from_millis(100),
    }
}

#[test]
fn health_window_success_rate_and_availability() {
    let t0 = Instant::now();
    let mut h = HealthWindow::new(endpoint(), Duration::from_secs(1));
    assert!(h.due(t0));
    for i in 0..10 {
        h.record(ms(t0, i * 100), i != 9, format!("probe {i}"));
    }
    assert!(!h.due(ms(t0, 950)));
    assert!(h.due(ms(t0, 1000)));
    assert_eq!(h.success_rate(ms(t0, 900)), Some(0.9));
    // Healthy from 0 to 900 ms, unhealthy from 900 to 1000 ms.
    let a = h.availability(ms(t0, 1000)).unwrap();
    assert!((a - 0.9).abs() < 1e-9, "{a}");
    let (states, violation) = h.states(ms(t0, 900), 0.95, 0.5);
    assert!(!states[0].ok && states[1].ok, "{states:?}");
    assert!(
        violation.unwrap().reason.starts_with(
            "health check failed: http://127.0.0.1:1/healthz success rate 0.900 < 0.95"
        )
    );
    // Old results leave the window.
    for i in 10..25 {
        h.record(ms(t0, i * 100), true, "ok".into());
    }
    assert_eq!(h.success_rate(ms(t0, 2400)), Some(1.0));
    let (_, violation) = h.states(ms(t0, 2400), 0.95, 0.99);
    assert!(violation.is_none());
}

fn triggers(error_rate_increase: f64) -> RollbackTriggers {
    RollbackTriggers {
        error_rate_increase,
        ..RollbackTriggers::default()
    }
}

#[test]
fn error_rate_trigger_compares_with_the_baseline() {
    let t0 = Instant::now();
    let mut s = set(vec![("error_rate", "<= 1", 0, SloRole::Source)]);
    for (i, v) in [0.04, 0.06].into_iter().enumerate() {
        s.slos[0].observe(ms(t0, i as u64 * 100), Sample::Value(v));
    }
    s.set_baseline(&triggers(0.2), ms(t0, 200));
    let baseline = s.triggers.as_ref().unwrap().baseline.clone();
    assert!((baseline.error_rate.unwrap() - 0.05).abs() < 1e-9);
    // A rise of 0.15 stays under 0.2.
    s.slos[0].observe(ms(t0, 300), Sample::Value(0.2));
    let e = s.evaluate(ms(t0, 300));
    assert!(e.violation.is_none(), "{e:?}");
    assert!(
        e.guards.iter().all(|g| g.name != "error_rate"),
        "a source is no guard"
    );
    // A rise of 0.25 passes it, seen by an evaluation 50 ms after the sample: the violating
    // observation is the sample.
    s.slos[0].observe(ms(t0, 400), Sample::Value(0.3));
    let v = s.evaluate(ms(t0, 450)).violation.unwrap();
    assert_eq!(v.guard, "error_rate_increase");
    assert_eq!(
        v.observed,
        ms(t0, 400),
        "the sample's time, not the evaluation's"
    );
    assert!(
        v.reason
            .starts_with("rollback trigger error_rate_increase: moved 0.2500 > 0.2"),
        "{}",
        v.reason
    );
}

#[test]
fn availability_and_health_triggers() {
    let t0 = Instant::now();
    let mut s = set(vec![("api_availability", ">= 0", 0, SloRole::Source)]);
    s.health
        .push(HealthWindow::new(endpoint(), Duration::from_secs(1)));
    s.slos[0].observe(t0, Sample::Value(1.0));
    s.health[0].record(t0, true, "200".into());
    let config = RollbackTriggers {
        availability_drop: 0.05,
        health_degradation: 0.3,
        ..RollbackTriggers::default()
    };
    s.set_baseline(&config, t0);
    s.slos[0].observe(ms(t0, 100), Sample::Value(0.96));
    s.health[0].record(ms(t0, 100), false, "503".into());
    s.health[0].record(ms(t0, 200), true, "200".into());
    s.health[0].record(ms(t0, 300), true, "200".into());
    // min_success_rate 0.95 is missed (0.75), availability_drop 0.04 is not.
    let e = s.evaluate(ms(t0, 300));
    let names: Vec<_> = e
        .guards
        .iter()
        .filter(|g| !g.ok)
        .map(|g| g.name.as_str())
        .collect();
    assert!(
        names.contains(
            &"http://127.0.0.1:1/healthz success rate"
                .replace("http", "health http")
                .as_str()
        ),
        "{names:?}"
    );
    assert!(!names.contains(&"availability_drop"), "{names:?}");
    assert!(
        !names.contains(&"health_degradation"),
        "0.25 <= 0.3: {names:?}"
    );
    s.slos[0].observe(ms(t0, 400), Sample::Value(0.9));
    let e = s.evaluate(ms(t0, 400));
    assert!(
        e.guards
            .iter()
            .any(|g| g.name == "availability_drop" && !g.ok)
    );
}

#[test]
fn impact_score_is_the_largest_part_and_rolls_back_past_the_threshold() {
    let t0 = Instant::now();
    let mut s = set(vec![
        ("error_rate", "<= 0.1", 0, SloRole::Critical),
        ("latency", "<= 1", 0, SloRole::Critical),
    ]);
    s.impact = Some((0.5, "experiments.packet_loss.impact_threshold"));
    s.slos[0].observe(t0, Sample::Value(0.0));
    s.slos[1].observe(t0, Sample::Value(0.2));
    s.set_baseline(&triggers(0.2), t0);
    // error_rate: 0.04 of 0.1 toward the SLO = 0.4, and 0.04/0.2 of its trigger = 0.2;
    // latency: (0.4 - 0.2) / (1 - 0.2) = 0.25.
    s.slos[0].observe(ms(t0, 100), Sample::Value(0.04));
    s.slos[1].observe(ms(t0, 100), Sample::Value(0.4));
    let e = s.evaluate(ms(t0, 100));
    assert!((e.impact - 0.4).abs() < 1e-9, "{}", e.impact);
    assert!(e.violation.is_none());
    s.slos[0].observe(ms(t0, 200), Sample::Value(0.06));
    let e = s.evaluate(ms(t0, 200));
    assert!((e.impact - 0.6).abs() < 1e-9, "{}", e.impact);
    let v = e.violation.unwrap();
    assert_eq!(v.guard, "impact");
    assert_eq!(
        v.reason,
        "impact score 0.600 > 0.5 (experiments.packet_loss.impact_threshold)"
    );
    assert_eq!(
        v.observed,
        ms(t0, 200),
        "the sample behind the largest part"
    );
    // Evaluated later, the observation is still the sample's.
    let later = s.evaluate(ms(t0, 250)).violation.unwrap();
    assert_eq!(later.observed, ms(t0, 200));
    // A miss of the SLO itself scores 1.
    s.slos[1].observe(ms(t0, 300), Sample::Value(2.0));
    assert_eq!(s.evaluate(ms(t0, 300)).impact, 1.0);
}

#[test]
fn with_slo_violation_off_a_breached_critical_slo_alerts_and_leaves_the_impact_score() {
    let t0 = Instant::now();
    let mut s = set(vec![
        ("error_rate", "<= 0.1", 0, SloRole::Critical),
        ("avail", ">= 0.99", 0, SloRole::Critical),
    ]);
    s.slo_rollback = false;
    s.impact = Some((0.5, "experiments.packet_loss.impact_threshold"));
    s.slos[0].observe(t0, Sample::Value(0.3));
    s.slos[1].observe(t0, Sample::Value(1.0));
    let e = s.evaluate(ms(t0, 10));
    assert!(e.violation.is_none(), "{e:?}");
    assert_eq!(e.impact, 0.0, "a critical SLO is no rollback threshold now");
    assert_eq!(
        e.alerts,
        [Alert {
            guard: "error_rate".into(),
            critical: true,
            message: "slo violation: error_rate = 0.3 (objective <= 0.1) \
                      (safety_checks.rollback_triggers.slo_violation is false)"
                .into(),
        }]
    );
    assert!(!e.all_green(), "a ramp step still waits");
    // Unavailable still rolls back: an experiment never runs blind.
    s.slos[1].observe(ms(t0, 20), Sample::Unavailable("no data".into()));
    let v = s.evaluate(ms(t0, 20)).violation.unwrap();
    assert_eq!(v.reason, "guard unavailable: avail: no data");
    // The same breach rolls back by default.
    s.slo_rollback = true;
    s.slos[1].observe(ms(t0, 30), Sample::Value(1.0));
    let e = s.evaluate(ms(t0, 30));
    assert!(e.alerts.is_empty() && e.impact == 1.0, "{e:?}");
    assert_eq!(e.violation.unwrap().guard, "error_rate");
}
