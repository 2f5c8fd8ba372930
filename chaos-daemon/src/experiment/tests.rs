//! The lifecycle over the fake engine and a clock moved by hand: states, prices, the daily
//! budget, the config's limits, deadlines, and the proof that an emergency stop waits neither
//! for a release nor for a start in progress.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use chaos_api::{config::ChaosConfig, experiment::Experiment, state::State};

use super::{Clock, ExperimentError, Manager, fake::FakeEngine};
use crate::{
    error::{Classify, ErrorClass},
    store::{LatchRow, Store},
    sync::lock,
};

/// A clock that moves only when told.
pub(super) struct FakeClock {
    base: Instant,
    base_ms: u64,
    offset_ms: AtomicU64,
}

impl FakeClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            base_ms: 1_800_000_000_000,
            offset_ms: AtomicU64::new(0),
        })
    }

    fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    fn now_ms(&self) -> u64 {
        self.base_ms + self.offset_ms.load(Ordering::SeqCst)
    }
}

pub(super) fn config(yaml: &str) -> ChaosConfig {
    ChaosConfig::from_yaml(yaml).unwrap()
}

pub(super) fn manager_with(yaml: &str) -> (Arc<Manager<FakeEngine>>, Arc<FakeClock>) {
    manager_on(FakeEngine::new(), yaml)
}

pub(super) fn manager_on(
    engine: FakeEngine,
    yaml: &str,
) -> (Arc<Manager<FakeEngine>>, Arc<FakeClock>) {
    let clock = FakeClock::new();
    let m = Manager::new(
        engine,
        Store::in_memory().unwrap(),
        config(yaml),
        clock.clone(),
    )
    .unwrap();
    (m, clock)
}

pub(super) fn manager() -> (Arc<Manager<FakeEngine>>, Arc<FakeClock>) {
    manager_with("budget: {cost_per_request: 0.01}\n")
}

pub(super) fn experiment(kind: &str, extra: &str) -> Experiment {
    Experiment::from_yaml(&format!(
        "name: t\ntype: {kind}\ntarget: {{cgroup: /x}}\nduration: 60s\n{extra}"
    ))
    .unwrap()
}

pub(super) fn loss() -> Experiment {
    experiment("packet_loss", "intensity: 0.5\n")
}

pub(super) fn start(m: &Manager<FakeEngine>, e: &Experiment) -> Result<String, ExperimentError> {
    m.start(m.plan(e)?)
}

#[test]
fn a_stopped_experiment_is_recorded_with_its_type_state_and_spend() {
    let (m, _) = manager();
    let id = start(&m, &experiment("dependency_failure", "intensity: 1\n")).unwrap();
    let running = m.running();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].row.kind, "dependency_failure");
    assert_eq!(running[0].row.state, State::Running);
    m.engine().injected.store(40, Ordering::SeqCst);
    let (row, _) = m
        .stop(&id, State::Stopped, "stopped by test", Instant::now())
        .unwrap();
    assert_eq!((row.state, row.injected), (State::Stopped, 40));
    assert!((row.spent - 0.4).abs() < 1e-9, "{}", row.spent);
    assert!(m.running().is_empty());
    assert_eq!(m.engine().slots.armed(), 0);
    let stored = m.get(&id).unwrap().row;
    assert_eq!(
        (stored.state, stored.kind.as_str()),
        (State::Stopped, "dependency_failure")
    );
    let again = m
        .stop(&id, State::Stopped, "x", Instant::now())
        .unwrap_err();
    assert!(
        matches!(
            again,
            ExperimentError::NotRunning {
                state: State::Stopped,
                ..
            }
        ),
        "{again}"
    );
    assert_eq!(again.class(), ErrorClass::Refused);
    let unknown = m
        .stop("exp-0", State::Stopped, "x", Instant::now())
        .unwrap_err();
    assert_eq!(unknown.class(), ErrorClass::NotFound);
}

#[test]
fn the_budget_is_the_fault_cap_and_the_daily_budget_refuses() {
    let (m, _) = manager_with(
        "budget: {max_experiment_cost: 10, max_daily_cost: 15, cost_per_request: 0.5}\n",
    );
    let planned = m.plan(&loss()).unwrap();
    assert_eq!(planned.admission.budget, 10.0);
    assert_eq!(planned.plan.max_faults, 20, "floor(10 / 0.5)");
    let first = m.start(planned).unwrap();
    // 10 reserved of 15: a second 10 does not fit, a 5 does.
    let e = start(&m, &loss()).unwrap_err();
    assert!(
        matches!(e, ExperimentError::BudgetExhausted { remaining, .. } if remaining == 5.0),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Exhausted);
    let mut small = loss();
    small.budget = Some(5.0);
    start(&m, &small).unwrap();
    // Stopping the first settles what it spent (4 faults = 2.0), giving back the rest.
    m.engine().injected.store(4, Ordering::SeqCst);
    m.stop(&first, State::Stopped, "x", Instant::now()).unwrap();
    let mut nine = loss();
    nine.budget = Some(8.0);
    start(&m, &nine).unwrap();
}

#[test]
fn the_configs_limits_refuse_with_their_key() {
    let (m, _) = manager_with(
        "experiments:\n  packet_loss: {max_probability: 0.1}\n  dependency_failure: {enabled: false}\n",
    );
    let e = start(&m, &loss()).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Refused);
    assert!(
        e.to_string()
            .contains("experiments.packet_loss.max_probability"),
        "{e}"
    );
    let e = start(&m, &experiment("dependency_failure", "intensity: 0.1\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("experiments.dependency_failure.enabled"),
        "{e}"
    );
    assert!(m.running().is_empty());
}

#[test]
fn the_deadline_completes_an_experiment_on_the_next_tick() {
    let (m, clock) = manager();
    let id = start(&m, &loss()).unwrap();
    m.tick();
    assert_eq!(m.running().len(), 1);
    clock.advance(Duration::from_secs(61));
    m.tick();
    m.flush();
    let row = m.get(&id).unwrap().row;
    assert_eq!(
        (row.state, row.reason.as_str()),
        (State::Completed, "duration elapsed")
    );
    assert_eq!(m.engine().slots.armed(), 0);
}

#[test]
fn a_host_fault_with_nothing_more_to_do_completes() {
    let (m, _) = manager_with("experiments:\n  pod_deletion: {cost_per_pod: 1}\n");
    let id = start(&m, &experiment("pod_deletion", "")).unwrap();
    m.engine().finished.store(true, Ordering::SeqCst);
    m.tick();
    m.flush();
    let row = m.get(&id).unwrap().row;
    assert_eq!(
        (row.state, row.reason.as_str(), row.kind.as_str()),
        (
            State::Completed,
            "done: nothing more to inject",
            "pod_deletion"
        )
    );
}

/// Between the release taking its armed fault and the record, an ended run is still shown
/// live (how it ended): with the counters it ended with, never zeros.
#[test]
fn an_ended_run_shows_its_counters_while_it_is_released() {
    let (m, _) = manager_with("experiments:\n  pod_deletion: {cost_per_pod: 1}\n");
    let id = start(&m, &experiment("pod_deletion", "")).unwrap();
    m.engine().injected.store(2, Ordering::SeqCst);
    m.engine().finished.store(true, Ordering::SeqCst);
    m.engine().release_gate.close();
    m.tick();
    // The recorder holds the run's armed fault, released up to the gate.
    m.engine().release_gate.wait_reached();
    let row = m.get(&id).unwrap().row;
    assert_eq!(
        (row.state, row.reason.as_str(), row.injected, row.spent),
        (State::Completed, "done: nothing more to inject", 2, 2.0)
    );
    m.engine().release_gate.open();
    m.flush();
    let row = m.get(&id).unwrap().row;
    assert_eq!(
        (row.state, row.injected, row.spent),
        (State::Completed, 2, 2.0)
    );
}

#[test]
fn a_database_load_is_refused_with_the_reason_and_changes_nothing() {
    let (m, _) = manager();
    let load = experiment(
        "database_load",
        "fault: {engine: postgres, address: 'db:5432', user: app, profile: point_reads, rate: 10}\n",
    );
    let e = start(&m, &load).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Refused);
    assert!(
        e.to_string()
            .contains(crate::capability::DATABASE_LOAD_NOT_RUN),
        "{e}"
    );
    assert!(m.running().is_empty());
    assert_eq!(m.engine().slots.armed(), 0);
}

#[test]
fn the_latch_refuses_starts_until_cleared() {
    let (m, _) = manager();
    let (n, _) = m.emergency_stop("drill", Instant::now());
    assert_eq!(n, 0);
    let e = start(&m, &loss()).unwrap_err();
    assert!(matches!(e, ExperimentError::Latched), "{e}");
    assert_eq!(e.class(), ErrorClass::Refused);
    m.clear_emergency_stop().unwrap();
    start(&m, &loss()).unwrap();
}

#[test]
fn a_recorded_latch_outlives_the_daemon_until_cleared() {
    let dir = std::env::temp_dir().join(format!("chaos-latch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = FakeClock::new();
    let daemon = || {
        Manager::new(
            FakeEngine::new(),
            Store::open(&dir).unwrap(),
            ChaosConfig::default(),
            clock.clone(),
        )
        .unwrap()
    };
    let m = daemon();
    assert_eq!(m.latch(), None);
    m.emergency_stop("drill", Instant::now());
    // Latched in memory at once; the reason follows with the record.
    assert_eq!(m.latch().map(|l| l.reason), Some(String::new()));
    m.record_latch("drill");
    let latched = LatchRow {
        reason: "drill".into(),
        at_ms: clock.now_ms(),
    };
    assert_eq!(m.latch(), Some(latched.clone()));
    // The daemon dies without stopping anything; the next one comes back latched.
    std::mem::forget(m);
    clock.advance(Duration::from_secs(60));
    let m = daemon();
    assert!(m.latched());
    assert_eq!(m.latch(), Some(latched));
    assert!(matches!(
        start(&m, &loss()).unwrap_err(),
        ExperimentError::Latched
    ));
    m.clear_emergency_stop().unwrap();
    start(&m, &loss()).unwrap();
    std::mem::forget(m);
    let m = daemon();
    assert_eq!(m.latch(), None);
    start(&m, &loss()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_record_after_a_racing_clear_leaves_the_node_latched() {
    let (m, _) = manager();
    m.emergency_stop("drill", Instant::now());
    // A clear between the disarm and the record: the stop came last.
    m.clear_emergency_stop().unwrap();
    m.record_latch("drill");
    assert!(m.latched());
    assert_eq!(m.latch().map(|l| l.reason), Some("drill".to_owned()));
}

/// Runs `f` on a thread and returns its result, failing the test if it does not return within
/// `limit` (a deadlock detector: the limit is far above any honest run).
fn returns_within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("it waited for something it must not wait for")
}

#[test]
fn an_emergency_stop_waits_for_no_release() {
    let (m, _) = manager();
    let ids: Vec<String> = (0..3).map(|_| start(&m, &loss()).unwrap()).collect();
    assert_eq!(m.engine().slots.armed(), 3);
    // Every release now blocks until the gate opens.
    m.engine().release_gate.close();
    let stopper = m.clone();
    let (n, _) = returns_within(Duration::from_secs(10), move || {
        stopper.emergency_stop("drill", Instant::now())
    });
    assert_eq!(n, 3);
    assert_eq!(m.engine().slots.armed(), 0, "disarmed before the answer");
    // Status already tells how they ended, before they are released and recorded.
    let states: Vec<State> = m.running().iter().map(|v| v.row.state).collect();
    assert!(
        states.iter().all(|s| *s == State::EmergencyStopped),
        "{states:?}"
    );
    m.engine().release_gate.open();
    m.flush();
    for id in ids {
        assert_eq!(m.get(&id).unwrap().row.state, State::EmergencyStopped);
    }
    assert_eq!(m.engine().released.load(Ordering::SeqCst), 3);
}

/// A release that fails does not stop the others: an emergency stop of three whose first
/// release fails ends all three, that one as failed with the reason, none left running.
#[test]
fn an_emergency_stop_keeps_going_past_a_failed_release() {
    let (m, _) = manager();
    let ids: Vec<String> = (0..3).map(|_| start(&m, &loss()).unwrap()).collect();
    m.engine().failing_releases.store(1, Ordering::SeqCst);
    let (n, _) = m.emergency_stop("drill", Instant::now());
    assert_eq!(n, 3);
    assert_eq!(m.engine().slots.armed(), 0, "every one disarmed");
    m.flush();
    let ended: Vec<_> = ids.iter().map(|id| m.get(id).unwrap().row).collect();
    let failed: Vec<_> = ended.iter().filter(|r| r.state == State::Failed).collect();
    assert_eq!(failed.len(), 1, "{ended:?}");
    assert!(
        failed[0].reason.contains("releasing failed")
            && failed[0].reason.contains("detaching refused"),
        "{}",
        failed[0].reason
    );
    let stopped = ended
        .iter()
        .filter(|r| r.state == State::EmergencyStopped)
        .count();
    assert_eq!(stopped, 2, "{ended:?}");
    assert!(m.running().is_empty(), "none left running");
}

#[test]
fn an_emergency_stop_during_a_start_disarms_it_and_the_start_is_refused() {
    let (m, _) = manager();
    m.engine().arm_gate.close();
    let starter = m.clone();
    let start = std::thread::spawn(move || start(&starter, &loss()));
    // The start has armed its slot and is held before it returns.
    m.engine().arm_gate.wait_reached();
    assert_eq!(m.engine().slots.armed(), 1);
    let stopper = m.clone();
    let (n, _) = returns_within(Duration::from_secs(10), move || {
        stopper.emergency_stop("drill", Instant::now())
    });
    assert_eq!(n, 0, "it was not running yet");
    assert_eq!(
        m.engine().slots.armed(),
        0,
        "disarmed although still starting"
    );
    m.engine().arm_gate.open();
    let e = start.join().unwrap().unwrap_err();
    assert!(matches!(e, ExperimentError::Latched), "{e}");
    assert_eq!(m.engine().slots.armed(), 0);
    assert!(m.running().is_empty());
    let listed = m.list(None, None, 100).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].row.state, State::EmergencyStopped);
}

#[test]
fn a_stop_waits_for_no_other_start() {
    let (m, _) = manager();
    let id = start(&m, &loss()).unwrap();
    m.engine().arm_gate.close();
    let starter = m.clone();
    let held = std::thread::spawn(move || start(&starter, &loss()));
    m.engine().arm_gate.wait_reached();
    let stopper = m.clone();
    let (row, _) = returns_within(Duration::from_secs(10), move || {
        stopper.stop(&id, State::Stopped, "x", Instant::now())
    })
    .unwrap();
    assert_eq!(row.state, State::Stopped);
    m.engine().arm_gate.open();
    held.join().unwrap().unwrap();
}

#[test]
fn a_restart_marks_what_was_running_aborted() {
    let dir = std::env::temp_dir().join(format!("chaos-lifecycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = FakeClock::new();
    let m = Manager::new(
        FakeEngine::new(),
        Store::open(&dir).unwrap(),
        ChaosConfig::default(),
        clock.clone(),
    )
    .unwrap();
    let id = start(&m, &loss()).unwrap();
    // The daemon dies: its manager is gone without stopping anything.
    std::mem::forget(m);
    let m = Manager::new(
        FakeEngine::new(),
        Store::open(&dir).unwrap(),
        ChaosConfig::default(),
        clock,
    )
    .unwrap();
    let row = m.get(&id).unwrap().row;
    assert_eq!(
        (row.state, row.reason.as_str()),
        (State::Aborted, "aborted (daemon restart)")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_ramp_step_that_races_an_emergency_stop_leaves_nothing_armed() {
    let (m, _) = manager();
    let id = start(&m, &loss()).unwrap();
    assert!(
        m.ramp_to(&id, 0.2, "2".into()).unwrap(),
        "a running experiment steps"
    );
    // The next step writes its slot (armed) and is held; an emergency stop disarms meanwhile.
    m.engine().ramp_gate.close();
    let stepper = m.clone();
    let step_id = id.clone();
    let step = std::thread::spawn(move || stepper.ramp_to(&step_id, 0.4, "3".into()));
    m.engine().ramp_gate.wait_reached();
    assert_eq!(m.engine().slots.armed(), 1, "the step's write is armed");
    m.emergency_stop("drill", Instant::now());
    assert_eq!(m.engine().slots.armed(), 0);
    m.engine().ramp_gate.open();
    assert!(
        !step.join().unwrap().unwrap(),
        "the step says it did not hold"
    );
    assert_eq!(
        m.engine().slots.armed(),
        0,
        "disarmed again after the raced write"
    );
    assert_eq!(*m.engine().intensities.lock().unwrap(), [0.2, 0.4]);
    // An ended experiment takes no step at all.
    assert!(!m.ramp_to(&id, 0.6, "4".into()).unwrap());
    assert_eq!(m.engine().intensities.lock().unwrap().len(), 2);
}

#[test]
fn a_rollback_disarms_first_and_records_the_guard() {
    use crate::guard::Violation;
    let (m, _) = manager();
    let id = start(&m, &loss()).unwrap();
    let violation = Violation {
        guard: "error_rate".into(),
        value: Some(0.3),
        objective: "<= 0.01".into(),
        reason: "slo violation: error_rate = 0.3 (objective <= 0.01)".into(),
        observed: Instant::now(),
    };
    // A slow release cannot hold the rollback: it disarms and hands the rest over.
    m.engine().release_gate.close();
    let rolled = {
        let (m, v) = (m.clone(), violation.clone());
        let id = id.clone();
        returns_within(Duration::from_secs(10), move || {
            m.rollback(&id, &v, Instant::now())
        })
    }
    .expect("it was running");
    assert_eq!(m.engine().slots.armed(), 0);
    assert!(rolled.decision_to_disarm < Duration::from_secs(1));
    assert!(
        m.rollback(&id, &violation, Instant::now()).is_none(),
        "only once"
    );
    m.engine().release_gate.open();
    m.flush();
    let row = m.get(&id).unwrap().row;
    assert_eq!(
        (row.state, row.reason.as_str()),
        (State::RolledBack, violation.reason.as_str())
    );
    let events = m.report(&id).unwrap().events;
    let rollback = events.iter().find(|e| e.kind == "rollback").unwrap();
    assert!(
        rollback
            .message
            .contains("guard error_rate = 0.3, objective <= 0.01"),
        "{}",
        rollback.message
    );
    assert_eq!(m.metrics.rollbacks.with_label_values(&["slo"]).get(), 1);
}

#[test]
fn budget_alerts_fire_once_per_budget_per_experiment() {
    let (m, _) = manager_with(
        "budget:\n  max_experiment_cost: 1\n  max_daily_cost: 2\n  cost_per_request: 0.01\n  \
         alert_threshold: 0.5\n",
    );
    let id = start(
        &m,
        &experiment("dependency_failure", "intensity: 1\nbudget: 1\n"),
    )
    .unwrap();
    m.engine().injected.store(40, Ordering::SeqCst);
    m.tick();
    m.engine().injected.store(60, Ordering::SeqCst);
    m.tick();
    m.tick();
    m.flush();
    let alerts = |id: &str| {
        m.report(id)
            .unwrap()
            .events
            .into_iter()
            .filter(|e| e.kind == "budget_alert")
            .map(|e| e.message)
            .collect::<Vec<_>>()
    };
    // 0.6 of 1: the experiment's alert, once; 0.6 of 2 is under the daily half.
    assert_eq!(alerts(&id).len(), 1, "{:?}", alerts(&id));
    assert!(alerts(&id)[0].starts_with("0.6000 of the experiment's budget 1.0000 spent"));
    assert!(m.is_running(&id));
    // 1.0 of the day's 2.0 crosses its half: one daily alert, however often it is seen.
    m.engine().injected.store(100, Ordering::SeqCst);
    m.tick();
    m.tick();
    m.flush();
    let all = alerts(&id);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all[1].starts_with("1.0000 of budget.max_daily_cost 2.0000 spent (50%"),
        "{all:?}"
    );
    assert_eq!(
        m.metrics.budget_alerts.with_label_values(&["daily"]).get(),
        1
    );
    assert_eq!(
        m.metrics
            .budget_alerts
            .with_label_values(&["experiment"])
            .get(),
        1
    );
}

#[test]
fn records_older_than_the_retention_are_deleted_at_start_and_every_hour() {
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    let clock = FakeClock::new();
    let now = clock.now_ms();
    let day_ms = DAY.as_millis() as u64;
    // Left by an earlier daemon: one experiment that ended 3 days ago, one an hour ago.
    let store = Store::in_memory().unwrap();
    let ended = |id: &str, ended_ms: u64| crate::store::ExperimentRow {
        id: id.into(),
        name: id.into(),
        kind: "packet_loss".into(),
        target: "/x".into(),
        spec: Vec::new(),
        state: State::Completed,
        reason: "duration elapsed".into(),
        started_ms: ended_ms - 60_000,
        ended_ms,
        seen: 0,
        matched: 0,
        injected: 0,
        capped: 0,
        budget: 1.0,
        spent: 0.0,
    };
    store
        .insert_experiment(&ended("old", now - 3 * day_ms))
        .unwrap();
    store
        .insert_experiment(&ended("recent", now - 60 * 60 * 1000))
        .unwrap();
    let m = Manager::new(
        FakeEngine::new(),
        store,
        config("state: {retention_days: 2}\n"),
        clock.clone(),
    )
    .unwrap();
    // At start: the one past the retention is gone.
    assert_eq!(m.get("old").unwrap_err().class(), ErrorClass::NotFound);
    assert_eq!(m.get("recent").unwrap().row.state, State::Completed);

    let id = start(&m, &loss()).unwrap();
    m.stop(&id, State::Stopped, "stopped by test", Instant::now())
        .unwrap();
    m.audit("uid 0", "StopExperiment", &id, "ok");
    m.flush();
    let audited = || lock(&m.store).audit_log().unwrap().len();
    assert_eq!(audited(), 1);
    let minutes = |n: u64| Duration::from_secs(n * 60);
    // The reaper asks for a deletion an hour after the start, then hourly: the first finds
    // nothing old enough; the next one is at 46h30m.
    clock.advance(minutes(60));
    m.tick();
    clock.advance(minutes(45 * 60 + 30));
    m.tick();
    m.flush();
    // At 47h10m "recent" (ended an hour before the start) is past the retention, but the
    // hour is not over: nothing is deleted yet.
    clock.advance(minutes(40));
    m.tick();
    m.flush();
    assert!(m.get("recent").is_ok(), "deleted before the hour was over");
    // At 47h35m it is: "recent" goes, what ended at the start stays.
    clock.advance(minutes(25));
    m.tick();
    m.flush();
    assert_eq!(m.get("recent").unwrap_err().class(), ErrorClass::NotFound);
    assert_eq!(m.get(&id).unwrap().row.state, State::Stopped);
    assert_eq!(audited(), 1);
    // An hour later both are past it.
    clock.advance(Duration::from_secs(60 * 60));
    m.tick();
    m.flush();
    assert_eq!(m.get(&id).unwrap_err().class(), ErrorClass::NotFound);
    assert_eq!(audited(), 0);
    assert!(m.list(None, None, 100).unwrap().is_empty());
}
