//! The node's fault engine: turns a validated experiment into a [`Prepared`] plan (target,
//! programs, devices, knobs, all resolved, nothing changed), and arms exactly that plan.
//!
//! Kernel-program faults take a slot; host faults (pod deletion, resource exhaustion, the
//! database load's runner: [`crate::host`]) take a [`HostSwitch`]. A fault this kernel cannot run ([`Capabilities`]) is
//! refused with the reason when planned.
//!
//! Concurrency (docs/adr/0011): every method takes `&self`. Disarming goes through the
//! [`Switchboard`] and waits for nothing. The aya object (program loading and attaching) sits
//! behind its own lock, held only for those calls; the latency device table behind another,
//! held across netlink by latency starts and stops only; slot writes and counter reads use
//! [`SlotMaps`] without a lock.
//!
//! An arm is all-or-nothing: the slot is written disarmed, every hook is attached, and only then
//! is the slot armed with its kernel deadline. A failure detaches what was attached; dropping an
//! [`Armed`] releases it.

mod slot;

use std::{
    fmt, io,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use self::slot::{ArmedSlot, SlotPlan};

use chaos_api::experiment::{Experiment, ExperimentType, Fault};
use chaos_common::{MAX_SLOTS, MAX_TARGETS, SlotConfig, SlotCounters, TcConfig, TcTarget};

use crate::{
    capability::{Capabilities, DATABASE_LOAD_NOT_RUN},
    ebpf::{Kernel, KernelError, SlotMaps, lsm::LsmSupport, tc::needs_clsact},
    error::{Classify, ErrorClass},
    fault::{kernel_plan, probability_threshold},
    host::{HostFaultError, dbload, pod_kill, pressure},
    journal::{HostJournal, JournalError, MemoryJournal, undo_pending},
    net::{
        egress::{self, EgressTarget},
        latency::{self, Latency, LatencyError, LatencyTarget},
    },
    path_dirs::{self, PrefixError},
    switch::{DisarmError, HostSwitch, SlotKill, Switch, Switchboard},
    sync::lock,
    target::{ResolvedTarget, Resolver, TargetError},
};

/// Why the engine refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    PathPrefix(#[from] PrefixError),
    #[error("all {MAX_SLOTS} experiment slots are in use; stop a running fault first")]
    NoFreeSlot,
    #[error("opening cgroup {path:?}: {source}")]
    OpenCgroup {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("reading the monotonic clock: {0}")]
    Clock(nix::Error),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("{kind} is not supported on this node: {reason}")]
    Unsupported {
        kind: ExperimentType,
        reason: String,
    },
    #[error(transparent)]
    Host(#[from] HostFaultError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Latency(#[from] LatencyError),
    #[error(transparent)]
    Disarm(#[from] DisarmError),
    #[error("a host fault has no intensity to change")]
    NoIntensity,
}

impl Classify for EngineError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Target(e) => e.class(),
            Self::PathPrefix(e) => e.class(),
            Self::NoFreeSlot => ErrorClass::Exhausted,
            Self::Unsupported { .. } | Self::NoIntensity => ErrorClass::Refused,
            Self::Kernel(e) => e.class(),
            Self::Host(e) => e.class(),
            Self::Latency(e) => e.class(),
            Self::OpenCgroup { .. } | Self::Clock(_) | Self::Journal(_) | Self::Disarm(_) => {
                ErrorClass::Internal
            }
        }
    }
}

impl Classify for KernelError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::LsmUnsupported(_) => ErrorClass::Refused,
            _ => ErrorClass::Internal,
        }
    }
}

/// What a start arms, as the user is shown it (a dry run returns it and changes nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The target cgroups, in the experiment's order.
    pub targets: Vec<PlanTarget>,
    /// Kernel programs attached.
    pub programs: Vec<String>,
    /// Every other change arming makes, in order.
    pub changes: Vec<String>,
    /// The kernel's fault cap; `u64::MAX` = none.
    pub max_faults: u64,
}

/// One target of a [`Plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct PlanTarget {
    /// The cgroup's path.
    pub cgroup: String,
    /// Its id (the directory's inode).
    pub cgroup_id: u64,
}

impl Plan {
    /// The target cgroups' paths, comma-separated: what status and reports name as the target.
    pub fn target_text(&self) -> String {
        self.targets
            .iter()
            .map(|t| t.cgroup.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A planned experiment: everything resolved, nothing changed. Arm it with [`Engine::arm`].
#[derive(Debug)]
pub struct Prepared {
    kind: ExperimentType,
    targets: Vec<ResolvedTarget>,
    duration: Duration,
    body: Body,
    plan: Plan,
}

impl Prepared {
    /// What arming does.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

#[derive(Debug)]
enum Body {
    Slot(Box<SlotPlan>),
    PodKill(pod_kill::Plan),
    /// One per target, under one host switch.
    Pressure(Vec<pressure::Plan>),
    DbLoad(dbload::Plan),
}

/// An armed fault. Release it with [`Engine::release`] to learn of failures; dropping it
/// releases it too (and logs them).
pub struct Armed {
    inner: Arc<Inner>,
    pub targets: Vec<ResolvedTarget>,
    pub switch: Switch,
    body: Option<ArmedBody>,
}

impl fmt::Debug for Armed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Armed")
            .field("targets", &self.targets)
            .field("switch", &self.switch)
            .finish_non_exhaustive()
    }
}

enum ArmedBody {
    Slot(Box<ArmedSlot>),
    PodKill(pod_kill::Run),
    Pressure(Vec<pressure::Run>),
    DbLoad(dbload::Run),
}

impl Armed {
    /// The kernel slot, for kernel-program faults.
    pub fn slot(&self) -> Option<u32> {
        match self.switch {
            Switch::Slot(slot) => Some(slot),
            Switch::Host(_) => None,
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        let inner = self.inner.clone();
        if self.body.is_some()
            && let Err(e) = inner.release(self)
        {
            tracing::error!(error = %e, "releasing a dropped fault");
        }
    }
}

/// The node's fault engine. Cheap to clone (a handle).
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

struct Inner {
    kernel: Mutex<Kernel>,
    maps: Arc<SlotMaps>,
    switchboard: Arc<Switchboard>,
    /// Which slots are taken; held for a bit flip.
    slots: Mutex<u32>,
    resolver: Resolver,
    caps: Capabilities,
    journal: Arc<dyn HostJournal>,
    /// Held across netlink by tc fault starts and stops (the shared `fq` and `clsact` qdiscs'
    /// user counts).
    latency: Mutex<Latency>,
    knobs: Arc<pressure::Knobs>,
    /// `experiments.pod_deletion.allowed_cgroups`.
    allowed_kills: Vec<String>,
    /// The database load's runner, when there is one.
    runner: Option<dbload::Runner>,
}

impl SlotKill for SlotMaps {
    fn disarm(&self, slot: u32) -> io::Result<()> {
        SlotMaps::disarm(self, slot).map_err(io::Error::other)
    }
}

impl Engine {
    /// Loads the kernel object and probes what it can do; host changes are journaled in
    /// memory only. `resolver` decides what may be targeted.
    pub fn new(resolver: Resolver) -> Result<Self, EngineError> {
        Self::with_journal(resolver, Arc::new(MemoryJournal::default()))
    }

    /// Like [`Engine::new`] with a durable journal: first undoes every host change a previous
    /// process left in it (a daemon killed while a fault ran).
    pub fn with_journal(
        resolver: Resolver,
        journal: Arc<dyn HostJournal>,
    ) -> Result<Self, EngineError> {
        let report = undo_pending(journal.as_ref())?;
        for e in &report.undone {
            tracing::warn!(owner = %e.owner, kind = e.change.kind.as_str(), path = %e.change.path,
                "restored a host change left by a previous daemon");
        }
        for (e, err) in &report.failed {
            tracing::error!(owner = %e.owner, path = %e.change.path, error = %err,
                "could not restore a host change left by a previous daemon");
        }
        let (mut kernel, maps) = Kernel::load()?;
        let caps = Capabilities::probe(&mut kernel, resolver.mount());
        let maps = Arc::new(maps);
        Ok(Self(Arc::new(Inner {
            kernel: Mutex::new(kernel),
            switchboard: Arc::new(Switchboard::new(maps.clone())),
            maps,
            slots: Mutex::new(0),
            resolver,
            caps,
            journal,
            latency: Mutex::new(Latency::default()),
            knobs: Arc::default(),
            allowed_kills: Vec::new(),
            runner: None,
        })))
    }

    /// Lets pod deletions kill cgroups named like `names` (`*` wildcards) although they are
    /// not pods or containers (`experiments.pod_deletion.allowed_cgroups`). Call before
    /// sharing the engine.
    pub fn allowing_kills(mut self, names: &[String]) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.allowed_kills = names.to_vec(),
            None => tracing::error!("allowing_kills called on a shared engine; ignored"),
        }
        self
    }

    /// Runs database loads with `runner` (`Err`: why there is none, which refuses the type).
    /// Call before sharing the engine.
    pub fn with_runner(mut self, runner: Result<dbload::Runner, String>) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => {
                let verdict = runner.as_ref().map(|_| ()).map_err(Clone::clone);
                inner.caps.set(ExperimentType::DatabaseLoad, verdict);
                inner.runner = runner.ok();
            }
            None => tracing::error!("with_runner called on a shared engine; ignored"),
        }
        self
    }

    /// The kill path.
    pub fn switchboard(&self) -> &Arc<Switchboard> {
        &self.0.switchboard
    }

    /// The resolver this engine checks targets with.
    pub fn resolver(&self) -> &Resolver {
        &self.0.resolver
    }

    /// What this kernel can run, probed at start.
    pub fn capabilities(&self) -> &Capabilities {
        &self.0.caps
    }

    /// Plans `experiment` with the fault cap `max_faults` (`u64::MAX` = none): checks the
    /// kernel can run it, resolves the target (and the path prefix, the device, the knobs, the
    /// pods to kill) and builds the slot configuration. Changes nothing.
    pub fn prepare(
        &self,
        experiment: &Experiment,
        max_faults: u64,
    ) -> Result<Prepared, EngineError> {
        let inner = &self.0;
        let kind = experiment.kind();
        inner
            .caps
            .check(kind)
            .map_err(|reason| EngineError::Unsupported { kind, reason })?;
        let targets = inner.resolver.resolve_all(&experiment.targets)?;
        let paths: Vec<&Path> = targets.iter().map(|t| t.path.as_path()).collect();
        let mut changes = Vec::new();
        let mut programs = Vec::new();
        let body = match kernel_plan(experiment, max_faults) {
            Some(mut kernel) => {
                programs.extend(kernel.hooks.iter().map(|h| format!("{h:?}")));
                programs.extend(
                    kernel
                        .lsm_hooks
                        .iter()
                        .map(|h| format!("lsm:{}", h.lsm_name())),
                );
                let lsm_dirs = match &kernel.path_prefix {
                    Some(prefix) => {
                        let dirs = path_dirs::resolve(prefix, &paths)?;
                        changes.push(format!(
                            "path prefix {prefix}: {} directories and mount roots",
                            dirs.len()
                        ));
                        Some(dirs)
                    }
                    None => None,
                };
                let tc_targets = inner.tc_targets(&targets);
                let mut latency = Vec::new();
                if let Some(plan) = &mut kernel.latency {
                    plan.config.targets = tc_targets.0;
                    plan.config.target_count = tc_targets.1;
                    for target in &targets {
                        let resolved = latency::resolve(plan.clone(), target)?;
                        if latency
                            .iter()
                            .any(|l: &LatencyTarget| l.device() == resolved.device())
                        {
                            continue;
                        }
                        programs.push(format!(
                            "tc egress ({}) on {}",
                            plan.program.describe(),
                            resolved.device()
                        ));
                        changes.push(format!(
                            "root qdisc of {}: fq (horizon {}), the old root journaled and \
                             put back on stop",
                            resolved.device(),
                            humantime::format_duration(resolved.plan.max_delay)
                        ));
                        latency.push(resolved);
                    }
                }
                let mut egress = Vec::new();
                if let Some(plan) = &kernel.egress {
                    let mut config = plan.config;
                    config.targets = tc_targets.0;
                    config.target_count = tc_targets.1;
                    for target in &targets {
                        let resolved = egress::resolve(plan.program, config, target)?;
                        if egress
                            .iter()
                            .any(|e: &EgressTarget| e.netns.inode == resolved.netns.inode)
                        {
                            continue;
                        }
                        let devices = resolved.devices();
                        programs.push(format!(
                            "tc egress ({}) on {}",
                            plan.program.describe(),
                            devices.join(", ")
                        ));
                        if needs_clsact() {
                            changes.push(format!(
                                "clsact qdisc on {} where missing, journaled and removed on stop",
                                devices.join(", ")
                            ));
                        }
                        egress.push(resolved);
                    }
                }
                Body::Slot(Box::new(SlotPlan {
                    kernel,
                    lsm_dirs,
                    latency,
                    egress,
                }))
            }
            None => match &experiment.fault {
                Fault::PodDeletion(deletion) => {
                    let plan = pod_kill::Plan::new(
                        &paths,
                        &inner.allowed_kills,
                        deletion.interval,
                        max_faults,
                        probability_threshold(experiment.intensity),
                        experiment.duration,
                    )?;
                    changes.extend(plan.describe());
                    Body::PodKill(plan)
                }
                Fault::ResourceExhaustion(pressure) => {
                    let plans = paths
                        .iter()
                        .map(|path| {
                            pressure::Plan::new(
                                path,
                                pressure.cpu_share,
                                pressure.memory_share,
                                &inner.knobs,
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    changes.extend(plans.iter().flat_map(pressure::Plan::describe));
                    Body::Pressure(plans)
                }
                Fault::DatabaseLoad(load) => {
                    // The capability check above refuses it without a runner.
                    let runner = inner
                        .runner
                        .as_ref()
                        .ok_or_else(|| EngineError::Unsupported {
                            kind,
                            reason: DATABASE_LOAD_NOT_RUN.to_owned(),
                        })?;
                    let netns = if load.network_namespace_of_target {
                        let found = latency::target_netns(paths[0])?;
                        Some(found.ok_or_else(|| {
                            HostFaultError::Unusable {
                                path: paths[0].to_path_buf(),
                                reason: "network_namespace_of_target: the target has no \
                                         process whose network namespace the load could use"
                                    .into(),
                            }
                        })?)
                    } else {
                        None
                    };
                    let plan =
                        dbload::Plan::new(runner, load, experiment.duration, max_faults, netns);
                    changes.extend(plan.describe());
                    Body::DbLoad(plan)
                }
                _ => unreachable!("every other type has a kernel plan"),
            },
        };
        let plan = Plan {
            targets: targets
                .iter()
                .map(|t| PlanTarget {
                    cgroup: t.path.display().to_string(),
                    cgroup_id: t.id,
                })
                .collect(),
            programs,
            changes,
            max_faults,
        };
        Ok(Prepared {
            kind,
            targets,
            duration: experiment.duration,
            body,
            plan,
        })
    }

    /// Takes what `prepared` will be disarmed by, before anything is armed: a free slot, or a
    /// host switch registered with the switchboard. Give it back with [`Engine::unreserve`] if
    /// the arm is not attempted or fails.
    pub fn reserve(&self, prepared: &Prepared) -> Result<Switch, EngineError> {
        match prepared.body {
            Body::Slot(_) => {
                let mut taken = lock(&self.0.slots);
                let slot = (0..MAX_SLOTS)
                    .find(|s| *taken & (1 << s) == 0)
                    .ok_or(EngineError::NoFreeSlot)?;
                *taken |= 1 << slot;
                Ok(Switch::Slot(slot))
            }
            Body::PodKill(_) | Body::Pressure(_) | Body::DbLoad(_) => {
                let host = HostSwitch::new();
                self.0.switchboard.register(&host);
                Ok(Switch::Host(host))
            }
        }
    }

    /// Gives back a switch whose arm failed or was not attempted.
    pub fn unreserve(&self, switch: &Switch) {
        self.0.unreserve(switch);
    }

    /// Arms exactly `prepared` on `switch` (from [`Engine::reserve`]); `owner` names it in the
    /// journal. On error nothing stays attached or changed, and the switch is still reserved.
    pub fn arm(
        &self,
        prepared: Prepared,
        switch: &Switch,
        owner: &str,
    ) -> Result<Armed, EngineError> {
        let inner = &self.0;
        let Prepared {
            kind,
            targets,
            duration,
            body,
            ..
        } = prepared;
        let body = match (body, switch) {
            (Body::Slot(plan), Switch::Slot(slot)) => ArmedBody::Slot(Box::new(
                inner.arm_slot(*slot, &targets, *plan, duration, owner)?,
            )),
            (Body::PodKill(plan), Switch::Host(host)) => {
                ArmedBody::PodKill(plan.start(host.clone(), owner)?)
            }
            (Body::Pressure(plans), Switch::Host(host)) => {
                ArmedBody::Pressure(inner.start_pressures(plans, host, owner)?)
            }
            (Body::DbLoad(plan), Switch::Host(host)) => {
                ArmedBody::DbLoad(plan.start(host, inner.journal.clone(), owner)?)
            }
            _ => unreachable!("reserve gives a slot to kernel faults, a host switch to others"),
        };
        tracing::info!(%kind, targets = targets.len(), first = %targets[0].path.display(), ?switch, "armed");
        Ok(Armed {
            inner: inner.clone(),
            targets,
            switch: switch.clone(),
            body: Some(body),
        })
    }

    /// Plans, reserves and arms `experiment` in one go (for tools and tests; the daemon's
    /// lifecycle does the steps itself).
    pub fn start(&self, experiment: &Experiment) -> Result<Armed, EngineError> {
        let prepared = self.prepare(experiment, experiment.max_faults.unwrap_or(u64::MAX))?;
        let switch = self.reserve(&prepared)?;
        let owner = format!("{}-{}", experiment.name, std::process::id());
        self.arm(prepared, &switch, &owner).inspect_err(|_| {
            self.unreserve(&switch);
        })
    }

    /// Disarms (one map write, or the host switch), then releases. Returns the final counters.
    pub fn stop(&self, armed: Armed) -> Result<SlotCounters, EngineError> {
        self.release(armed)
    }

    /// Live counters of an armed fault, summed over CPUs. Takes no lock.
    pub fn counters(&self, armed: &Armed) -> Result<SlotCounters, EngineError> {
        Ok(match &armed.body {
            Some(ArmedBody::Slot(body)) => {
                self.0.maps.counters(body.slot, body.config.max_faults)?
            }
            Some(ArmedBody::PodKill(run)) => run.counters(),
            Some(ArmedBody::Pressure(runs)) => {
                sum_counters(runs.iter().map(pressure::Run::counters))
            }
            Some(ArmedBody::DbLoad(run)) => run.counters(),
            None => SlotCounters::default(),
        })
    }

    /// Whether the fault can do nothing more before its deadline (a one-shot kill that ran).
    /// Moves an armed slot fault to a ramp step: a latency fault to the delay `step` (in
    /// milliseconds, one write of its delay configuration), any other to the probability
    /// `step` (one write of its slot configuration with the new threshold). Nothing is
    /// re-attached. The caller makes sure a disarm that raced this write wins (it disarms
    /// again when the run ended meanwhile).
    pub fn set_step(&self, armed: &Armed, step: f64) -> Result<(), EngineError> {
        match &armed.body {
            Some(ArmedBody::Slot(s)) => match s.latency_config {
                Some(latency) => {
                    let config = TcConfig {
                        delay_ns: (step * 1e6) as u64,
                        ..latency
                    };
                    Ok(lock(&self.0.kernel).write_tc(s.slot, &config)?)
                }
                None => {
                    let config = SlotConfig {
                        threshold: crate::fault::probability_threshold(step),
                        ..s.config
                    };
                    Ok(self.0.maps.write_slot(s.slot, &config)?)
                }
            },
            Some(ArmedBody::DbLoad(run)) => run.set_rate(step).map_err(|e| {
                EngineError::Host(HostFaultError::Io {
                    what: "sending the rate to the runner of",
                    path: armed.targets[0].path.clone(),
                    source: e,
                })
            }),
            _ => Err(EngineError::NoIntensity),
        }
    }

    pub fn finished(&self, armed: &Armed) -> bool {
        match &armed.body {
            Some(ArmedBody::PodKill(run)) => run.finished(),
            Some(ArmedBody::DbLoad(run)) => run.finished(),
            _ => false,
        }
    }

    /// A database load's newest figures from its runner (rate, counts, errors by kind, latency
    /// percentiles); `None` for every other fault.
    pub fn load_figures(&self, armed: &Armed) -> Option<dbload::Figures> {
        match &armed.body {
            Some(ArmedBody::DbLoad(run)) => run.figures(),
            _ => None,
        }
    }

    /// Failures a host fault ran into since the last call (it keeps going).
    pub fn take_errors(&self, armed: &Armed) -> Vec<String> {
        match &armed.body {
            Some(ArmedBody::PodKill(run)) => run.take_errors(),
            Some(ArmedBody::DbLoad(run)) => run.take_errors(),
            _ => Vec::new(),
        }
    }

    /// Disarms, then detaches, restores and frees the slot or switch. Every step is tried;
    /// the first error is returned. Returns the final counters.
    pub fn release(&self, mut armed: Armed) -> Result<SlotCounters, EngineError> {
        self.0.release(&mut armed)
    }

    /// How this kernel runs file and process syscall errors (probed once, then cached).
    pub fn lsm_support(&self) -> LsmSupport {
        lock(&self.0.kernel).lsm_support()
    }

    /// How many global LSM hook programs are attached now; zero when no syscall-error fault
    /// runs.
    pub fn lsm_links_attached(&self) -> usize {
        lock(&self.0.kernel).lsm_links_attached()
    }

    /// Calls `f` with the latency faults' device state (which devices hold a shared `fq`).
    pub fn with_latency<T>(&self, f: impl FnOnce(&Latency) -> T) -> T {
        f(&lock(&self.0.latency))
    }
}

impl Inner {
    /// The slot's targets as the tc programs match them: id and level of each, and how many.
    fn tc_targets(&self, targets: &[ResolvedTarget]) -> ([TcTarget; MAX_TARGETS as usize], u32) {
        let mut out = [TcTarget::default(); MAX_TARGETS as usize];
        for (slot, target) in out.iter_mut().zip(targets) {
            *slot = TcTarget {
                cgroup_id: target.id,
                level: self.resolver.level(&target.path),
                _pad: 0,
            };
        }
        (out, targets.len().min(out.len()) as u32)
    }

    /// Starts one pressure per target under `host`; a failure releases those started (the
    /// switch puts every knob back).
    fn start_pressures(
        &self,
        plans: Vec<pressure::Plan>,
        host: &Arc<HostSwitch>,
        owner: &str,
    ) -> Result<Vec<pressure::Run>, EngineError> {
        let mut runs = Vec::with_capacity(plans.len());
        for plan in plans {
            match plan.start(host, self.journal.as_ref(), &self.knobs, owner) {
                Ok(run) => runs.push(run),
                Err(e) => {
                    for run in runs {
                        if let Err(undo) = run.release(host, self.journal.as_ref()) {
                            tracing::error!(error = %undo, "undoing a failed pressure start");
                        }
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(runs)
    }

    fn unreserve(&self, switch: &Switch) {
        match switch {
            Switch::Slot(slot) => *lock(&self.slots) &= !(1 << slot),
            Switch::Host(host) => self.switchboard.unregister(host),
        }
    }

    fn release(&self, armed: &mut Armed) -> Result<SlotCounters, EngineError> {
        let Some(body) = armed.body.take() else {
            return Ok(SlotCounters::default());
        };
        // Disarm first: whatever below takes time, nothing injects meanwhile.
        let disarmed = self.switchboard.disarm(&armed.switch);
        let mut first_err: Option<EngineError> = None;
        let counters = match body {
            ArmedBody::Slot(body) => self.release_slot(*body, &mut first_err),
            ArmedBody::PodKill(run) => run.join(),
            ArmedBody::DbLoad(run) => run.join(),
            ArmedBody::Pressure(runs) => {
                let Switch::Host(host) = &armed.switch else {
                    unreachable!("a pressure has a host switch")
                };
                sum_counters(runs.into_iter().map(|run| {
                    run.release(host, self.journal.as_ref())
                        .unwrap_or_else(|e| {
                            first_err.get_or_insert(e.into());
                            SlotCounters::default()
                        })
                }))
            }
        };
        if let Err(e) = disarmed {
            first_err.get_or_insert(e.into());
        }
        self.unreserve(&armed.switch);
        tracing::info!(targets = armed.targets.len(), first = %armed.targets[0].path.display(), injected = counters.injected, "released");
        first_err.map_or(Ok(counters), Err)
    }
}

/// Counters of several parts of one fault, added up.
fn sum_counters(parts: impl Iterator<Item = SlotCounters>) -> SlotCounters {
    parts.fold(SlotCounters::default(), |sum, c| SlotCounters {
        seen: sum.seen + c.seen,
        matched: sum.matched + c.matched,
        injected: sum.injected + c.injected,
        capped: sum.capped + c.capped,
    })
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> Result<u64, EngineError> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(EngineError::Clock)?;
    Ok(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
