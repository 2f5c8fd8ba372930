//! Experiment lifecycle: admit (the config's limits and prices) -> prepare (the engine's plan)
//! -> reserve (the budget, the switch) -> arm -> run until the duration, a stop or an emergency
//! stop -> disarm -> release -> record.
//!
//! Nothing waits in front of a disarm (docs/adr/0011): a stop, the reaper and the emergency
//! stop end a [`Run`] (one atomic), disarm it through the switchboard (one map write, or a host
//! switch) and only then release and record it. The locks here ([`Manager`]'s run table and
//! ledger) are held for a map operation, never across I/O; the store's lock is held across
//! SQLite writes by the recording paths only, and a worker thread does those for everything
//! that must not wait (emergency stop, reaper, audit). The one write an emergency stop's
//! answer waits for is its latch's record, after every disarm.
//!
//! At start-up experiments the store still lists as running are marked `aborted (daemon
//! restart)`: their BPF faults died with the old process (host changes are undone by the
//! engine's journal). An emergency-stop latch the store still holds latches the new process.
//! Records older than the config's `state.retention_days` are deleted then, and every
//! [`PRUNE_EVERY`] by the recorder (the reaper only asks for it).
//!
//! * `faults` — [`FaultEngine`], the engine as the lifecycle sees it.
//! * `run` — one experiment's shared state.
//! * `guarded` — the guards' verdicts on a run: live state, samples, rollback.
//! * `ledger` — the daily budget.
//! * `budget` — spend, budget alerts and exhausted budgets of running experiments.
//! * `reaper` — deadlines, metrics and snapshots on a thread of its own; shutdown.
//! * `notices` — what is announced through the notifier.
//! * `worker` — the recorder thread, and finishing (release, then record) an ended run.
//! * `latch` — the emergency-stop latch's durable record (why, since when).
//! * `view` — status, lists and reports.

mod budget;
mod faults;
mod guarded;
mod latch;
mod ledger;
mod notices;
mod reaper;
mod run;
mod view;
mod worker;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod guarded_tests;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chaos_api::{
    config::{Admission, ChaosConfig, Refusal},
    error::ModelError,
    experiment::Experiment,
    state::State,
};

pub use self::{
    budget::BUDGET_EXHAUSTED,
    faults::FaultEngine,
    guarded::{BASELINE, IMPACT_SCORE, RolledBack},
    run::{Ended, Ending, GuardView, Run},
    view::{ExperimentView, ReportData},
};
use self::{
    ledger::{Exhausted, Ledger},
    run::RunInfo,
    worker::Job,
};
use crate::{
    engine::{EngineError, Plan},
    error::{Classify, ErrorClass},
    metrics::Metrics,
    notify::NoticeKind,
    store::{AuditRow, ExperimentRow, LatchRow, Store, StoreError},
    sync::lock,
};

/// Why a request was refused or failed; [`Classify`] says how to answer it.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The experiment itself is invalid (the model's checks).
    #[error(transparent)]
    Invalid(#[from] ModelError),
    /// This node's config refuses it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "emergency stop is latched on this node: clear it with `chaos-ctl emergency-stop --clear`"
    )]
    Latched,
    #[error("no experiment with id {0:?}")]
    NotFound(String),
    #[error("experiment {0:?} has no lease to renew (start it with a lease)")]
    NoLease(String),
    #[error("experiment {id:?} is not running (it is {state})")]
    NotRunning { id: String, state: State },
    #[error(
        "budget exhausted: this experiment needs {requested:.4} but {remaining:.4} of today's \
         budget.max_daily_cost is left (spent and reserved by running experiments)"
    )]
    BudgetExhausted { requested: f64, remaining: f64 },
}

impl Classify for ExperimentError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Invalid(_) => ErrorClass::Invalid,
            Self::Refused(Refusal::Limit(_))
            | Self::Latched
            | Self::NotRunning { .. }
            | Self::NoLease(_) => ErrorClass::Refused,
            Self::Refused(Refusal::BudgetTooSmall { .. }) | Self::BudgetExhausted { .. } => {
                ErrorClass::Exhausted
            }
            Self::Engine(e) => e.class(),
            Self::Store(_) => ErrorClass::Internal,
            Self::NotFound(_) => ErrorClass::NotFound,
        }
    }
}

impl From<Exhausted> for ExperimentError {
    fn from(e: Exhausted) -> Self {
        Self::BudgetExhausted {
            requested: e.requested,
            remaining: e.remaining,
        }
    }
}

/// What [`Manager::disarm_now`] found.
pub enum Stopping<A> {
    /// Ended and disarmed (in this long from the request's arrival); finish it.
    Disarmed(Arc<Run<A>>, Duration),
    /// Not a running experiment of this daemon; the store knows more.
    Unknown,
}

/// A planned experiment: what a dry run shows and a start arms.
pub struct Planned<P> {
    pub admission: Admission,
    pub prepared: P,
    pub plan: Plan,
}

/// The wall clock and the monotonic clock the lifecycle reads; tests move them by hand.
pub trait Clock: Send + Sync {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Unix time in milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system's clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// How often the counters of a running experiment are written to the store.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// How often records older than the retention are deleted (and once at start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// The node's experiments. Share it behind an `Arc` ([`Manager::new`] returns one).
pub struct Manager<E: FaultEngine> {
    engine: E,
    config: ChaosConfig,
    store: Mutex<Store>,
    runs: Mutex<HashMap<String, Arc<Run<E::Armed>>>>,
    ledger: Mutex<Ledger>,
    /// Why and since when the emergency stop is latched (the switchboard's flag decides).
    latch: Mutex<Option<LatchRow>>,
    jobs: Mutex<mpsc::Sender<Job<E::Armed>>>,
    clock: Arc<dyn Clock>,
    /// When (Unix ms) the reaper next asks the recorder to delete old records.
    next_prune_ms: AtomicU64,
    next: AtomicU64,
    /// Random per daemon process: ids stay unique across nodes that start in the same ms.
    instance: u32,
    pub metrics: Metrics,
    announcer: notices::Announcer,
}

impl<E: FaultEngine> Manager<E> {
    /// Takes over the engine and the store; marks experiments left running by a previous
    /// daemon process as aborted; deletes records older than the retention; starts the worker
    /// thread.
    pub fn new(
        engine: E,
        store: Store,
        config: ChaosConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, ExperimentError> {
        let now = clock.now_ms();
        for id in store.abort_running("aborted (daemon restart)", now)? {
            tracing::warn!(experiment_id = %id, "marked aborted: it was running when the daemon died");
        }
        let spent = store.spent_since(now - now % ledger::DAY_MS)?;
        let latch = store.latch()?;
        let (tx, rx) = mpsc::channel();
        let manager = Arc::new(Self {
            ledger: Mutex::new(Ledger::new(config.budget.max_daily_cost, now, spent)),
            latch: Mutex::new(None),
            engine,
            config,
            store: Mutex::new(store),
            runs: Mutex::new(HashMap::new()),
            jobs: Mutex::new(tx),
            clock,
            next_prune_ms: AtomicU64::new(now.saturating_add(PRUNE_EVERY.as_millis() as u64)),
            next: AtomicU64::new(1),
            instance: instance_tag(),
            metrics: Metrics::new(),
            announcer: notices::Announcer::new(),
        });
        manager.restore_latch(latch);
        manager.prune();
        let weak = Arc::downgrade(&manager);
        std::thread::Builder::new()
            .name("chaos-recorder".into())
            .spawn(move || worker::run(&weak, &rx))
            .map_err(|source| {
                ExperimentError::Engine(EngineError::Kernel(crate::ebpf::KernelError::Io {
                    what: "starting the recorder thread",
                    source,
                }))
            })?;
        Ok(manager)
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The config experiments are admitted with.
    pub fn config(&self) -> &ChaosConfig {
        &self.config
    }

    fn send(&self, job: Job<E::Armed>) {
        // The worker lives as long as the manager; a send fails only while shutting down.
        let _ = lock(&self.jobs).send(job);
    }

    /// Records a request in the audit log (written by the worker: never waits for the store).
    pub fn audit(&self, caller: &str, method: &str, detail: &str, outcome: &str) {
        self.send(Job::Audit(AuditRow {
            at_ms: self.clock.now_ms(),
            caller: caller.into(),
            method: method.into(),
            detail: detail.into(),
            outcome: outcome.into(),
        }));
    }

    /// Admits `experiment` under the config and plans it on the engine; changes nothing. A dry
    /// run shows [`Planned::plan`]; a start arms exactly [`Planned::prepared`].
    pub fn plan(&self, experiment: &Experiment) -> Result<Planned<E::Prepared>, ExperimentError> {
        self.prepare(self.admit(experiment)?)
    }

    /// Checks `experiment` (the model) and admits it under the config (its limits and prices).
    pub fn admit(&self, experiment: &Experiment) -> Result<Admission, ExperimentError> {
        experiment.validate()?;
        Ok(self.config.admit(experiment)?)
    }

    /// Plans an admitted experiment on the engine; changes nothing.
    pub fn prepare(&self, admission: Admission) -> Result<Planned<E::Prepared>, ExperimentError> {
        let prepared = self
            .engine
            .prepare(&admission.experiment, admission.max_faults)?;
        let plan = E::plan(&prepared).clone();
        Ok(Planned {
            admission,
            prepared,
            plan,
        })
    }

    /// Starts a planned experiment; returns its id. Refused when latched or when today's
    /// budget cannot cover it.
    pub fn start(&self, planned: Planned<E::Prepared>) -> Result<String, ExperimentError> {
        if self.latched() {
            return Err(ExperimentError::Latched);
        }
        let Planned {
            admission,
            prepared,
            plan,
        } = planned;
        let now_ms = self.clock.now_ms();
        lock(&self.ledger).reserve(admission.budget, now_ms)?;
        let refund = |manager: &Self| lock(&manager.ledger).settle(admission.budget, 0.0, now_ms);
        let switch = match self.engine.reserve(&prepared) {
            Ok(switch) => switch,
            Err(e) => {
                refund(self);
                return Err(e.into());
            }
        };
        let experiment = &admission.experiment;
        let id = format!(
            "exp-{now_ms}-{:08x}-{}",
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let run = Arc::new(Run::new(RunInfo {
            id: id.clone(),
            name: experiment.name.clone(),
            kind: experiment.kind(),
            target: plan.target_text(),
            cgroups: plan
                .targets
                .iter()
                .map(|t| PathBuf::from(&t.cgroup))
                .collect(),
            spec: prost::Message::encode_to_vec(&experiment.to_proto()),
            price: admission.price,
            budget: admission.budget,
            started_ms: now_ms,
            started: self.clock.now(),
            duration: experiment.duration,
            lease: experiment.lease,
            switch: switch.clone(),
        }));
        // Registered before it is armed, then the latch checked: an emergency stop either
        // sees this run or is seen here.
        lock(&self.runs).insert(id.clone(), run.clone());
        let give_up = |manager: &Self, e: ExperimentError| {
            lock(&manager.runs).remove(&id);
            manager.engine.unreserve(&switch);
            refund(manager);
            Err(e)
        };
        if self.latched() {
            return give_up(self, ExperimentError::Latched);
        }
        let armed = match self.engine.arm(prepared, &switch, &id) {
            Ok(armed) => armed,
            Err(e) => return give_up(self, e.into()),
        };
        run.set_armed(armed);
        let row = self.row(&run, State::Running, String::new(), 0);
        let message = format!(
            "{} on {} for {}, budget {} = at most {} faults; {}",
            experiment.kind(),
            plan.targets
                .iter()
                .map(|t| format!("{} (cgroup id {})", t.cgroup, t.cgroup_id))
                .collect::<Vec<_>>()
                .join(", "),
            humantime::format_duration(experiment.duration),
            admission.budget,
            cap_text(admission.max_faults),
            plan.programs.join(", ")
        );
        let recorded = {
            let store = lock(&self.store);
            store
                .insert_experiment(&row)
                .and_then(|()| store.add_event(&id, now_ms, "armed", &message))
        };
        if let Err(e) = recorded {
            // Nothing may run that the store does not know about.
            self.abandon(&run, State::Failed, &format!("recording failed: {e}"));
            return Err(e.into());
        }
        if !run.publish() {
            // An emergency stop ended it while it was starting: finish it here.
            let reason = run.ending().map_or_else(String::new, |e| e.reason);
            self.abandon(&run, State::EmergencyStopped, &reason);
            return Err(ExperimentError::Latched);
        }
        self.metrics
            .experiments_running
            .set(self.published_count() as i64);
        self.announce(
            &run,
            NoticeKind::Started,
            "",
            vec![("plan".to_owned(), message)],
        );
        Ok(id)
    }

    /// Disarms and finishes a run that was never published.
    fn abandon(&self, run: &Arc<Run<E::Armed>>, state: State, reason: &str) {
        if let Err(e) = self.engine.switchboard().disarm(&run.info.switch) {
            tracing::error!(experiment_id = %run.info.id, error = %e, "disarming an abandoned start");
        }
        run.end(Ending {
            state,
            reason: reason.to_owned(),
            at_ms: self.clock.now_ms(),
            disarmed_in: Duration::ZERO,
        });
        self.finish(run);
    }

    /// Stops a running experiment for `reason`: ends it, disarms it (the time from `arrived`
    /// is returned), then releases and records it before returning its final row.
    pub fn stop(
        &self,
        id: &str,
        state: State,
        reason: &str,
        arrived: Instant,
    ) -> Result<(ExperimentRow, Duration), ExperimentError> {
        match self.disarm_now(id, state, reason, arrived)? {
            Stopping::Disarmed(run, took) => Ok((self.finish(&run), took)),
            Stopping::Unknown => Err(match lock(&self.store).experiment(id)? {
                Some(row) => ExperimentError::NotRunning {
                    id: id.into(),
                    state: row.state,
                },
                None => ExperimentError::NotFound(id.into()),
            }),
        }
    }

    /// The first half of a stop, which waits for nothing but the disarm (no store, no
    /// release): ends the running experiment `id` and disarms it. Finish what it returns with
    /// [`Manager::finish`]; [`Stopping::Unknown`] means the store must tell (not here,
    /// or ended long ago).
    pub fn disarm_now(
        &self,
        id: &str,
        state: State,
        reason: &str,
        arrived: Instant,
    ) -> Result<Stopping<E::Armed>, ExperimentError> {
        let run = lock(&self.runs).get(id).filter(|r| r.published()).cloned();
        let Some(run) = run else {
            return Ok(Stopping::Unknown);
        };
        match self.end_and_disarm(&run, state, reason, arrived, "stop") {
            Some(took) => Ok(Stopping::Disarmed(run, took)),
            None => Err(ExperimentError::NotRunning {
                id: id.into(),
                state: run.ending().map_or(State::Running, |e| e.state),
            }),
        }
    }

    /// Ends `run` with `state` if nobody has and disarms it; the time since `arrived`, or
    /// `None` when someone else ended it first. The caller finishes it.
    fn end_and_disarm(
        &self,
        run: &Run<E::Armed>,
        state: State,
        reason: &str,
        arrived: Instant,
        cause: &str,
    ) -> Option<Duration> {
        let ended = run.end(Ending {
            state,
            reason: reason.to_owned(),
            at_ms: self.clock.now_ms(),
            disarmed_in: Duration::ZERO,
        })?;
        if let Err(e) = self.engine.switchboard().disarm(&run.info.switch) {
            tracing::error!(experiment_id = %run.info.id, error = %e, "disarm failed; releasing detaches it");
        }
        let took = arrived.elapsed();
        run.set_disarmed_in(took);
        self.metrics
            .disarm_seconds
            .with_label_values(&[cause])
            .observe(took.as_secs_f64());
        (ended == Ended::Running).then_some(took)
    }

    /// Disarms every experiment on the node and latches: nothing new starts until
    /// [`Manager::clear_emergency_stop`]. Waits for nothing but the disarm writes; releasing
    /// and recording continue on the worker; [`Manager::record_latch`] next makes the latch
    /// outlive this process. Returns how many were running and the time from `arrived` until
    /// all were disarmed.
    pub fn emergency_stop(&self, reason: &str, arrived: Instant) -> (usize, Duration) {
        let failures = self.engine.switchboard().emergency_stop();
        let runs: Vec<Arc<Run<E::Armed>>> = lock(&self.runs).values().cloned().collect();
        let mut ended = 0;
        let mut stopped = Vec::new();
        for run in runs {
            let ending = Ending {
                state: State::EmergencyStopped,
                reason: reason.to_owned(),
                at_ms: self.clock.now_ms(),
                disarmed_in: Duration::ZERO,
            };
            // Every switch was disarmed above; this catches a start that armed after that.
            if let Some(phase) = run.end(ending) {
                if let Err(e) = self.engine.switchboard().disarm(&run.info.switch) {
                    tracing::error!(experiment_id = %run.info.id, error = %e, "emergency disarm failed");
                }
                if phase == Ended::Running {
                    ended += 1;
                    stopped.push(run);
                }
            }
        }
        let took = arrived.elapsed();
        // Everything is disarmed: announce and hand over (queues only).
        for run in stopped {
            self.announce(&run, NoticeKind::EmergencyStop, reason, Vec::new());
            self.send(Job::Finish(run));
        }
        for e in failures {
            tracing::error!(error = %e, "emergency stop: a disarm failed");
        }
        self.metrics.emergency_stop.set(1);
        self.metrics
            .experiments_running
            .set(self.published_count() as i64);
        self.metrics
            .disarm_seconds
            .with_label_values(&["emergency_stop"])
            .observe(took.as_secs_f64());
        (ended, took)
    }

    /// Whether the emergency stop is latched.
    pub fn latched(&self) -> bool {
        self.engine.switchboard().latched()
    }

    /// What this node's kernel can run.
    pub fn capabilities(&self) -> &crate::capability::Capabilities {
        self.engine.capabilities()
    }
}

fn cap_text(max: u64) -> String {
    if max == u64::MAX {
        "unlimited".to_owned()
    } else {
        max.to_string()
    }
}

/// 32 random bits from the kernel; falls back to the pid and the clock if /dev/urandom is
/// unreadable (ids then stay unique per node, and almost surely across nodes).
fn instance_tag() -> u32 {
    use std::io::Read;
    let mut b = [0u8; 4];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u32::from_le_bytes(b),
        Err(_) => std::process::id() ^ (now_ms() as u32).rotate_left(16),
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
