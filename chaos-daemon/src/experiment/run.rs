//! [`Run`]: one experiment from its start to its record, shared by the request that started it,
//! the reaper, the emergency stop and the worker that finishes it.
//!
//! Its phase is one atomic: `Starting` (registered, not yet armed or not yet published),
//! `Running`, `Ending` (someone ended it: exactly one caller wins [`Run::end`], disarms it and
//! hands it to be finished). An end that comes while it is `Starting` is left for the start to
//! finish (docs/adr/0011).

use std::{
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use chaos_api::{config::Price, experiment::ExperimentType, state::State};
use chaos_common::SlotCounters;

use crate::{guard::GuardState, host::dbload::Figures, switch::Switch, sync::lock};

const STARTING: u8 = 0;
const RUNNING: u8 = 1;
const ENDING: u8 = 2;
/// Ended while it was still starting: the start finishes it.
const ENDED_STARTING: u8 = 3;

/// How and when an experiment ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    pub state: State,
    pub reason: String,
    pub at_ms: u64,
    /// From the decision (or the request's arrival) until its faults were disarmed.
    pub disarmed_in: Duration,
}

/// What an experiment is, fixed when it starts.
pub struct RunInfo {
    pub id: String,
    pub name: String,
    pub kind: ExperimentType,
    /// The target cgroups' paths, comma-separated (as status and reports show them).
    pub target: String,
    /// The target cgroups (a rollback's `pod_restart` kills them).
    pub cgroups: Vec<PathBuf>,
    /// The experiment as it runs, encoded (`chaos.v1.ExperimentSpec`).
    pub spec: Vec<u8>,
    pub price: Price,
    /// Money reserved.
    pub budget: f64,
    pub started_ms: u64,
    pub started: Instant,
    pub duration: Duration,
    /// Its dead-man switch: renewals must come at least this often.
    pub lease: Option<Duration>,
    /// What disarms it.
    pub switch: Switch,
}

/// One experiment's life.
pub struct Run<A> {
    pub info: RunInfo,
    phase: AtomicU8,
    ending: Mutex<Option<Ending>>,
    armed: Mutex<Option<A>>,
    /// Counters already added to the metrics, and when the last snapshot was taken.
    observed: Mutex<(SlotCounters, Instant)>,
    /// The guards' last evaluation, the highest impact score since their samples were last
    /// recorded, and when that was. Its lock also orders the per-experiment guard series on
    /// `/metrics`: published under it while running, removed under it when finished.
    guards: Mutex<GuardView>,
    /// Budget alerts already raised ([`ALERT_EXPERIMENT`], [`ALERT_DAILY`]).
    alerts: AtomicU8,
    /// When its lease was last renewed (or it started).
    renewed: Mutex<Instant>,
    /// Its ramp step, for status ("2 of 3: intensity 0.05").
    step: Mutex<String>,
    /// A database load's newest figures. Its lock orders the load's series on `/metrics` as
    /// the guards' does theirs.
    load: Mutex<LoadView>,
}

/// What the load runner of a database load last said, and how far into the load the last
/// sample recorded was.
#[derive(Debug, Default)]
struct LoadView {
    figures: Option<Figures>,
    sampled_ms: Option<u64>,
}

/// The experiment's own budget alert was raised.
pub const ALERT_EXPERIMENT: u8 = 1;
/// The daily budget alert was raised during this experiment.
pub const ALERT_DAILY: u8 = 2;

/// What the guards last said of a run.
#[derive(Clone, Debug, Default)]
pub struct GuardView {
    pub states: Vec<GuardState>,
    pub impact: f64,
    /// The highest impact score of the evaluations since the samples were last recorded.
    pub unrecorded_peak: f64,
    pub recorded: Option<Instant>,
}

impl<A> Run<A> {
    /// A run in the `Starting` phase.
    pub fn new(info: RunInfo) -> Self {
        Self {
            observed: Mutex::new((SlotCounters::default(), info.started)),
            renewed: Mutex::new(info.started),
            step: Mutex::new(String::new()),
            load: Mutex::new(LoadView::default()),
            info,
            phase: AtomicU8::new(STARTING),
            ending: Mutex::new(None),
            armed: Mutex::new(None),
            guards: Mutex::new(GuardView::default()),
            alerts: AtomicU8::new(0),
        }
    }

    /// When its duration ends.
    pub fn deadline(&self) -> Instant {
        self.info.started + self.info.duration
    }

    /// Hands over the armed fault (the start does, once armed).
    pub fn set_armed(&self, armed: A) {
        *lock(&self.armed) = Some(armed);
    }

    /// Takes the armed fault back, to release it.
    pub fn take_armed(&self) -> Option<A> {
        lock(&self.armed).take()
    }

    /// Runs `f` on the armed fault, if there is one.
    pub fn with_armed<T>(&self, f: impl FnOnce(&A) -> T) -> Option<T> {
        lock(&self.armed).as_ref().map(f)
    }

    /// Publishes a started run; false when it was ended while starting (the start must then
    /// finish it).
    pub fn publish(&self) -> bool {
        self.phase
            .compare_exchange(STARTING, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Whether it is published and not ended.
    pub fn running(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == RUNNING
    }

    /// Whether it is published (running or ending).
    pub fn published(&self) -> bool {
        matches!(self.phase.load(Ordering::SeqCst), RUNNING | ENDING)
    }

    /// Ends it with `ending` if nobody has. The winner must disarm it next, and then finish it
    /// (`Ended::Running`) or leave that to the start (`Ended::Starting`).
    pub fn end(&self, ending: Ending) -> Option<Ended> {
        // The ending is recorded before the phase changes: whoever sees the new phase finds it.
        let mut slot = lock(&self.ending);
        for (from, to, ended) in [
            (RUNNING, ENDING, Ended::Running),
            (STARTING, ENDED_STARTING, Ended::Starting),
        ] {
            if self
                .phase
                .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                *slot = Some(ending);
                return Some(ended);
            }
        }
        None
    }

    /// How it ended, once someone ended it.
    pub fn ending(&self) -> Option<Ending> {
        lock(&self.ending).clone()
    }

    /// Sets how long the disarm took, measured by the ender after the disarm.
    pub fn set_disarmed_in(&self, took: Duration) {
        if let Some(e) = lock(&self.ending).as_mut() {
            e.disarmed_in = took;
        }
    }

    /// Its ramp step.
    pub fn step(&self) -> String {
        lock(&self.step).clone()
    }

    /// Sets its ramp step.
    pub fn set_step(&self, step: String) {
        *lock(&self.step) = step;
    }

    /// Keeps a database load's newest `figures`, and runs `publish` on them while the run is
    /// running (under the lock [`Run::with_load`] takes too). True when a sample of them is
    /// due: the runner moved on since the last one (it reports once a second).
    pub fn set_load(&self, figures: Figures, publish: impl FnOnce(&Figures)) -> bool {
        let mut view = lock(&self.load);
        if self.running() {
            publish(&figures);
        }
        let due = view.sampled_ms != Some(figures.elapsed_ms);
        if due {
            view.sampled_ms = Some(figures.elapsed_ms);
        }
        view.figures = Some(figures);
        due
    }

    /// A database load's newest figures (kept after it ended).
    pub fn load(&self) -> Option<Figures> {
        lock(&self.load).figures.clone()
    }

    /// Runs `f` holding the load's lock (a finish removes the load's series under it).
    pub fn with_load<T>(&self, f: impl FnOnce() -> T) -> T {
        let _view = lock(&self.load);
        f()
    }

    /// Renews its lease at `now`.
    pub fn renew(&self, now: Instant) {
        *lock(&self.renewed) = now;
    }

    /// Whether its lease expired at `now` (it has one and no renewal came for that long).
    pub fn lease_expired(&self, now: Instant) -> bool {
        self.info
            .lease
            .is_some_and(|lease| now.saturating_duration_since(*lock(&self.renewed)) > lease)
    }

    /// Marks the budget alert `which` raised; true the first time only.
    pub fn raise_alert(&self, which: u8) -> bool {
        self.alerts.fetch_or(which, Ordering::SeqCst) & which == 0
    }

    /// The guards' last evaluation.
    pub fn guards(&self) -> GuardView {
        lock(&self.guards).clone()
    }

    /// Keeps an evaluation, and runs `publish` on the view while the run is running (under
    /// the view's lock, which [`Run::with_guards`] takes too). When its samples are due to be
    /// recorded (every `every`, whenever a guard is red, and once it ended): the highest impact
    /// score since they last were.
    pub fn set_guards(
        &self,
        states: Vec<GuardState>,
        impact: f64,
        now: Instant,
        every: Duration,
        publish: impl FnOnce(&GuardView),
    ) -> Option<f64> {
        let mut view = lock(&self.guards);
        let red = states.iter().any(|s| !s.ok);
        view.states = states;
        view.impact = impact;
        view.unrecorded_peak = view.unrecorded_peak.max(impact);
        if self.running() {
            publish(&view);
        }
        let due =
            red || !self.running() || view.recorded.is_none_or(|t| now.duration_since(t) >= every);
        due.then(|| {
            view.recorded = Some(now);
            std::mem::take(&mut view.unrecorded_peak)
        })
    }

    /// Runs `f` on the guards' view, holding its lock.
    pub fn with_guards<T>(&self, f: impl FnOnce(&GuardView) -> T) -> T {
        f(&lock(&self.guards))
    }

    /// The counters last observed.
    pub fn observed(&self) -> SlotCounters {
        lock(&self.observed).0
    }

    /// The growth of `now` over the counters last observed; records `now`.
    pub fn observe(&self, now: SlotCounters) -> (u64, u64) {
        let mut observed = lock(&self.observed);
        let grown = (
            now.injected.saturating_sub(observed.0.injected),
            now.seen.saturating_sub(observed.0.seen),
        );
        observed.0 = now;
        grown
    }

    /// Whether a snapshot is due (every `every`); if so, the clock restarts.
    pub fn snapshot_due(&self, now: Instant, every: Duration) -> bool {
        let mut observed = lock(&self.observed);
        if now.duration_since(observed.1) >= every {
            observed.1 = now;
            true
        } else {
            false
        }
    }
}

/// Which phase an end caught the run in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It was running: the ender finishes it.
    Running,
    /// It was still starting: the start finishes it.
    Starting,
}
