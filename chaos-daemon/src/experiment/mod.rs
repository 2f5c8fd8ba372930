//! Experiment lifecycle: validate -> arm -> run until the duration or a stop -> disarm ->
//! detach -> record. Owns the engine, the store and the emergency-stop latch; the gRPC edge
//! only converts requests into calls here.
//!
//! Every state change is written to the store (experiment row, timeline event) and every
//! request to the audit log by the caller. At start-up experiments the store still lists as
//! running are marked `aborted (daemon restart)`: their BPF faults died with the old process
//! (host changes are undone by the engine's journal).
//!
//! * `pricing` — budgets, prices and the config's limits applied to a request.

mod pricing;

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chaos_api::config::{Budget, ChaosConfig, ExperimentLimits};
use chaos_common::SlotCounters;

use crate::{
    engine::{Engine, EngineError, FaultId},
    fault::FaultSpec,
    metrics::Metrics,
    store::{AuditRow, EventRow, ExperimentRow, SnapshotRow, Store, StoreError},
};

/// Why a request was refused or failed; the gRPC edge maps each to one status code.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
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
    #[error("budget: {requested} is not allowed; expected 0 to {max} (budget.max_experiment_cost)")]
    BudgetInvalid { requested: f64, max: f64 },
    #[error(
        "budget exhausted: this experiment needs {requested:.4} but {remaining:.4} of today's \
         budget.max_daily_cost is left (spent and reserved by running experiments)"
    )]
    BudgetExhausted { requested: f64, remaining: f64 },
    #[error(
        "budget: {budget} does not cover this experiment's {needed:.4} \
         (experiments.network_latency.cost_per_minute x duration)"
    )]
    BudgetTooSmall { needed: f64, budget: f64 },
    #[error(
        "fault.delay + fault.jitter: {requested_ms} ms is not allowed; expected at most \
         {max_ms} ms (experiments.network_latency.max_latency_ms)"
    )]
    LatencyTooHigh { requested_ms: u128, max_ms: u64 },
    #[error("experiment {id:?} is not running (it is {state})")]
    NotRunning { id: String, state: String },
    #[error("{0}: false in the daemon's config: this experiment type may not run on this node")]
    Disabled(&'static str),
}

/// What a dry run or a start resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSummary {
    pub cgroup: String,
    pub cgroup_id: u64,
    pub programs: Vec<String>,
    pub max_faults: u64,
    /// The most this experiment may cost (its reserved budget).
    pub projected_cost: f64,
}

/// An experiment as the API shows it: the stored row, with live counters while it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentView {
    pub row: ExperimentRow,
}

/// A report: the experiment, its timeline and the request that started it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportData {
    pub row: ExperimentRow,
    pub events: Vec<EventRow>,
    pub snapshots: Vec<SnapshotRow>,
}

struct Running {
    fault: FaultId,
    row: ExperimentRow,
    deadline: Instant,
    /// Counters already added to the metrics.
    observed: SlotCounters,
    last_snapshot: Instant,
}

struct Inner {
    engine: Engine,
    store: Store,
    running: HashMap<String, Running>,
}

/// The node's experiments. Cheap to share behind an `Arc`; calls are short (µs to ms).
pub struct Manager {
    inner: Mutex<Inner>,
    latched: AtomicBool,
    next: AtomicU64,
    /// Random per daemon process: ids stay unique across nodes that start in the same ms.
    instance: u32,
    budget: Budget,
    limits: ExperimentLimits,
    pub metrics: Metrics,
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

const DAY_MS: u64 = 24 * 3600 * 1000;

/// How often the counters of a running experiment are written to the store.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

impl Manager {
    /// Takes over the engine and the store; marks experiments left running by a previous
    /// daemon process as aborted.
    pub fn new(
        engine: Engine,
        store: Store,
        config: &ChaosConfig,
    ) -> Result<Self, ExperimentError> {
        for id in store.abort_running("aborted (daemon restart)", now_ms())? {
            tracing::warn!(experiment_id = %id, "marked aborted: it was running when the daemon died");
        }
        Ok(Self {
            inner: Mutex::new(Inner {
                engine,
                store,
                running: HashMap::new(),
            }),
            latched: AtomicBool::new(false),
            next: AtomicU64::new(1),
            instance: instance_tag(),
            budget: config.budget.clone(),
            limits: config.experiments.clone(),
            metrics: Metrics::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the data consistent enough to disarm: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request in the audit log.
    pub fn audit(&self, caller: &str, method: &str, detail: &str, outcome: &str) {
        let row = AuditRow {
            at_ms: now_ms(),
            caller: caller.into(),
            method: method.into(),
            detail: detail.into(),
            outcome: outcome.into(),
        };
        if let Err(e) = self.lock().store.audit(&row) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }

    /// Validates the spec and resolves its target without touching the kernel.
    pub fn plan(
        &self,
        spec: &FaultSpec,
        budget: Option<f64>,
    ) -> Result<PlanSummary, ExperimentError> {
        let inner = self.lock();
        let (spec, cost) = self.budgeted(&inner, spec, budget)?;
        let plan = spec.plan().map_err(EngineError::from)?;
        if plan.latency.is_some() {
            // A dry run answers what a start would: refused when the kernel has no fq.
            let kind = spec.fault.kind();
            inner
                .engine
                .capabilities()
                .check(kind)
                .map_err(|reason| EngineError::Unsupported {
                    fault: kind,
                    reason,
                })?;
        }
        let target = inner
            .engine
            .resolver()
            .resolve(&spec.target)
            .map_err(EngineError::from)?;
        if let Some(prefix) = &plan.lsm_path {
            // As a start would: the prefix must exist where the target's processes look.
            crate::path_dirs::resolve(prefix, &target.path).map_err(EngineError::from)?;
        }
        Ok(PlanSummary {
            cgroup: target.path.display().to_string(),
            cgroup_id: target.id,
            programs: plan
                .hooks
                .iter()
                .map(|h| format!("{h:?}"))
                .chain(
                    plan.lsm_hooks
                        .iter()
                        .map(|h| format!("lsm:{}", h.lsm_name())),
                )
                .collect(),
            max_faults: plan.config.max_faults,
            projected_cost: cost,
        })
    }

    pub fn start(
        &self,
        name: &str,
        spec: &FaultSpec,
        budget: Option<f64>,
        request: Vec<u8>,
    ) -> Result<String, ExperimentError> {
        if self.latched.load(Ordering::SeqCst) {
            return Err(ExperimentError::Latched);
        }
        let mut inner = self.lock();
        // Checked again under the lock: an emergency stop may have raced with this start.
        if self.latched.load(Ordering::SeqCst) {
            return Err(ExperimentError::Latched);
        }
        let (spec, budget) = self.budgeted(&inner, spec, budget)?;
        let spec = &spec;
        let handle = inner.engine.start(spec)?;
        let started_ms = now_ms();
        let id = format!(
            "exp-{started_ms}-{:08x}-{}",
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let row = ExperimentRow {
            id: id.clone(),
            name: if name.is_empty() {
                spec.fault.kind().to_string()
            } else {
                name.to_string()
            },
            fault: spec.fault.kind().into(),
            target: handle.target.path.display().to_string(),
            spec: request,
            state: "running".into(),
            reason: String::new(),
            started_ms,
            ended_ms: 0,
            seen: 0,
            matched: 0,
            injected: 0,
            capped: 0,
            budget,
            spent: 0.0,
        };
        let recorded = inner.store.insert_experiment(&row).and_then(|()| {
            let msg = format!(
                "{} on {} (cgroup id {}) for {:?}, budget {budget} = at most {} faults",
                handle
                    .slot
                    .map_or("no slot".into(), |s| format!("slot {s}")),
                row.target,
                handle.target.id,
                spec.duration,
                spec.max_faults.unwrap_or(u64::MAX)
            );
            inner.store.add_event(&id, started_ms, "armed", &msg)
        });
        if let Err(e) = recorded {
            // Nothing may run that the store does not know about.
            let _ = inner.engine.stop(handle.id);
            return Err(e.into());
        }
        let deadline = Instant::now() + spec.duration;
        inner.running.insert(
            id.clone(),
            Running {
                fault: handle.id,
                row,
                deadline,
                observed: SlotCounters::default(),
                last_snapshot: Instant::now(),
            },
        );
        self.metrics
            .experiments_running
            .set(inner.running.len() as i64);
        Ok(id)
    }

    /// Stops a running experiment: disarm, detach, record. `state`/`reason` say why.
    pub fn stop(
        &self,
        id: &str,
        state: &str,
        reason: &str,
    ) -> Result<ExperimentRow, ExperimentError> {
        let mut inner = self.lock();
        let Some(run) = inner.running.remove(id) else {
            return Err(match inner.store.experiment(id)? {
                Some(row) => ExperimentError::NotRunning {
                    id: id.into(),
                    state: row.state,
                },
                None => ExperimentError::NotFound(id.into()),
            });
        };
        let t = Instant::now();
        let disarmed = inner.engine.disarm(run.fault);
        if disarmed.is_ok() {
            let took = t.elapsed().as_secs_f64();
            self.metrics
                .disarm_seconds
                .with_label_values(&["stop"])
                .observe(took);
        }
        // Detach even if the disarm write failed: removing the programs stops the fault too,
        // and the experiment must not leave the books while still attached.
        let counters = inner.engine.detach(run.fault);
        self.finish(&mut inner, run, state, reason, disarmed.and(counters))
    }

    /// Disarms every experiment (one map write each, measured), latches, then detaches and
    /// records them. Returns how many were running and the disarm time.
    pub fn emergency_stop(&self, reason: &str) -> Result<(usize, Duration), ExperimentError> {
        self.latched.store(true, Ordering::SeqCst);
        self.metrics.emergency_stop.set(1);
        let mut inner = self.lock();
        let t = Instant::now();
        let disarmed = inner.engine.disarm_all();
        let disarm_time = t.elapsed();
        self.metrics
            .disarm_seconds
            .with_label_values(&["emergency_stop"])
            .observe(disarm_time.as_secs_f64());
        let ids: Vec<String> = inner.running.keys().cloned().collect();
        for id in &ids {
            if let Some(run) = inner.running.remove(id) {
                let counters = inner.engine.detach(run.fault);
                self.finish(&mut inner, run, "emergency_stopped", reason, counters)?;
            }
        }
        disarmed?;
        Ok((ids.len(), disarm_time))
    }

    pub fn clear_emergency_stop(&self) {
        self.latched.store(false, Ordering::SeqCst);
        self.metrics.emergency_stop.set(0);
    }

    /// What this node's kernel can run.
    pub fn capabilities(&self) -> crate::capability::Capabilities {
        self.lock().engine.capabilities().clone()
    }

    pub fn latched(&self) -> bool {
        self.latched.load(Ordering::SeqCst)
    }

    /// Ends experiments whose duration elapsed and brings the metrics up to date. Called
    /// periodically by the daemon.
    pub fn tick(&self) -> Result<Vec<String>, ExperimentError> {
        let now = Instant::now();
        let due = {
            let mut inner = self.lock();
            let Inner {
                engine,
                running,
                store,
            } = &mut *inner;
            for (fault, e) in engine.poll() {
                if let Some(run) = running.values().find(|r| r.fault == fault) {
                    tracing::error!(experiment_id = %run.row.id, error = %e, "fault step failed");
                    store.add_event(&run.row.id, now_ms(), "error", &e.to_string())?;
                }
            }
            for run in running.values_mut() {
                let c = engine.counters(run.fault)?;
                self.observe(run, c);
                if run.last_snapshot.elapsed() >= SNAPSHOT_EVERY {
                    run.last_snapshot = Instant::now();
                    let snap = SnapshotRow {
                        at_ms: now_ms(),
                        seen: c.seen,
                        matched: c.matched,
                        injected: c.injected,
                        capped: c.capped,
                    };
                    store.add_snapshot(&run.row.id, &snap)?;
                }
            }
            inner
                .running
                .iter()
                .filter_map(|(id, r)| {
                    if r.deadline <= now {
                        Some((id.clone(), "duration elapsed"))
                    } else if inner.engine.finished(r.fault) {
                        Some((id.clone(), "done: nothing more to inject"))
                    } else {
                        None
                    }
                })
                .collect::<Vec<_>>()
        };
        for (id, reason) in &due {
            match self.stop(id, "completed", reason) {
                Ok(_) | Err(ExperimentError::NotRunning { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(due.into_iter().map(|(id, _)| id).collect())
    }

    /// Adds the growth of `run`'s counters to the metrics.
    fn observe(&self, run: &mut Running, c: SlotCounters) {
        let injected = c.injected.saturating_sub(run.observed.injected);
        let seen = c.seen.saturating_sub(run.observed.seen);
        self.metrics
            .observe_counters(&run.row.fault, injected, seen);
        run.observed = c;
    }

    /// Records how a stopped experiment ended.
    fn finish(
        &self,
        inner: &mut Inner,
        mut run: Running,
        state: &str,
        reason: &str,
        counters: Result<SlotCounters, EngineError>,
    ) -> Result<ExperimentRow, ExperimentError> {
        self.metrics
            .experiments_running
            .set(inner.running.len() as i64);
        let row = &mut run.row;
        row.ended_ms = now_ms();
        row.state = state.into();
        row.reason = reason.into();
        let detach = match counters {
            Ok(c) => {
                set_counters(row, c);
                row.spent = self.spent(row, row.ended_ms);
                self.observe(&mut run, c);
                None
            }
            Err(e) => {
                let row = &mut run.row;
                row.state = "failed".into();
                row.reason = format!("{reason}; stopping failed: {e}");
                Some(e)
            }
        };
        let row = run.row;
        self.metrics
            .experiments_finished
            .with_label_values(&[row.state.as_str()])
            .inc();
        inner.store.finish_experiment(&row)?;
        let msg = format!(
            "{} (injected {} of {} matched)",
            row.reason, row.injected, row.matched
        );
        inner
            .store
            .add_event(&row.id, row.ended_ms, &row.state, &msg)?;
        match detach {
            Some(e) => Err(e.into()),
            None => Ok(row),
        }
    }

    /// One experiment, with live counters while it runs.
    pub fn get(&self, id: &str) -> Result<ExperimentView, ExperimentError> {
        let inner = self.lock();
        if let Some(run) = inner.running.get(id) {
            let mut row = run.row.clone();
            set_counters(&mut row, inner.engine.counters(run.fault)?);
            row.spent = self.spent(&row, now_ms());
            return Ok(ExperimentView { row });
        }
        let row = inner
            .store
            .experiment(id)?
            .ok_or_else(|| ExperimentError::NotFound(id.into()))?;
        Ok(ExperimentView { row })
    }

    /// Experiments started in the last `since` (all when `None`), newest first.
    pub fn list(&self, since: Option<Duration>) -> Result<Vec<ExperimentView>, ExperimentError> {
        let since_ms = since.map_or(0, |d| now_ms().saturating_sub(d.as_millis() as u64));
        let rows = self.lock().store.experiments_since(since_ms)?;
        rows.into_iter()
            .map(|r| {
                if r.state == "running" {
                    self.get(&r.id)
                } else {
                    Ok(ExperimentView { row: r })
                }
            })
            .collect()
    }

    /// The running experiments, with live counters.
    pub fn running(&self) -> Result<Vec<ExperimentView>, ExperimentError> {
        let ids: Vec<String> = self.lock().running.keys().cloned().collect();
        let mut views: Vec<_> = ids.iter().filter_map(|id| self.get(id).ok()).collect();
        views.sort_by(|a, b| a.row.id.cmp(&b.row.id));
        Ok(views)
    }

    pub fn report(&self, id: &str) -> Result<ReportData, ExperimentError> {
        let row = self.get(id)?.row;
        let inner = self.lock();
        let (events, snapshots) = (inner.store.events(id)?, inner.store.snapshots(id)?);
        Ok(ReportData {
            row,
            events,
            snapshots,
        })
    }
}

fn set_counters(row: &mut ExperimentRow, c: SlotCounters) {
    (row.seen, row.matched, row.injected, row.capped) = (c.seen, c.matched, c.injected, c.capped);
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
