//! The faults running on this node: slot allocation, arm, disarm (the kill switch), stop
//! (disarm, then detach) and counters. Kernel-program faults take a slot; host faults (pod
//! kill, resource pressure: [`crate::host_fault`]) take none. A fault this kernel cannot run
//! ([`Capabilities`]) is refused with the reason.
//!
//! A start is all-or-nothing: the spec is planned and the target resolved before the kernel is
//! touched; the slot is written disarmed, every hook is attached, and only then is the slot
//! armed with its kernel deadline. Any failure detaches what was attached.

use std::{fmt, fs::File, sync::Arc, time::Duration};

use chaos_common::{MAX_SLOTS, SlotConfig, SlotCounters};

use crate::{
    capability::Capabilities,
    ebpf::{
        Attachment, Kernel, KernelError,
        lsm::{LsmLink, LsmSupport},
    },
    fault::{FaultSpec, SpecError},
    host_fault::{HostFault, HostFaultError},
    journal::{HostJournal, JournalError, MemoryJournal, undo_pending},
    net::latency::{Latency, LatencyError, LatencyRun},
    path_dirs,
    target::{ResolvedTarget, Resolver, TargetError},
};

/// Identifies one started fault for the lifetime of its engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(pub u64);

impl fmt::Display for FaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why the engine refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid fault spec: {0}")]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("all {MAX_SLOTS} experiment slots are in use; stop a running fault first")]
    NoFreeSlot,
    #[error("no running fault with id {0}")]
    UnknownFault(FaultId),
    #[error("opening cgroup {path:?}: {source}")]
    OpenCgroup {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("reading the monotonic clock: {0}")]
    Clock(nix::Error),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("{fault} is not supported on this node: {reason}")]
    Unsupported { fault: &'static str, reason: String },
    #[error(transparent)]
    Host(#[from] HostFaultError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Latency(#[from] LatencyError),
}

/// What a started fault is, as the caller needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultHandle {
    pub id: FaultId,
    /// The kernel slot it occupies; `None` for host faults.
    pub slot: Option<u32>,
    pub target: ResolvedTarget,
    /// `CLOCK_MONOTONIC` nanoseconds after which the kernel injects nothing.
    pub expires_at_ns: u64,
}

struct Running {
    handle: FaultHandle,
    /// The armed configuration; disarming writes it back with `armed = 0`.
    config: SlotConfig,
    attachments: Vec<Attachment>,
    /// Shared global LSM programs this fault uses; the last holder's drop detaches them.
    lsm_links: Vec<Arc<LsmLink>>,
    /// A latency fault's device side.
    latency: Option<LatencyRun>,
}

/// The node's fault engine. Dropping it disarms and detaches everything.
pub struct Engine {
    kernel: Kernel,
    resolver: Resolver,
    caps: Capabilities,
    journal: Box<dyn HostJournal>,
    slots: Vec<Option<Running>>,
    host: Vec<(FaultHandle, HostFault)>,
    next_id: u64,
    latency: Latency,
}

impl Engine {
    /// Loads the kernel object and probes what it can do; host changes are journaled in
    /// memory only. `resolver` decides what may be targeted.
    pub fn new(resolver: Resolver) -> Result<Self, EngineError> {
        Self::with_journal(resolver, Box::new(MemoryJournal::default()))
    }

    /// Like [`Engine::new`] with a durable journal: first undoes every host change a previous
    /// process left in it (a daemon killed while a fault ran).
    pub fn with_journal(
        resolver: Resolver,
        journal: Box<dyn HostJournal>,
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
        let mut kernel = Kernel::load()?;
        let caps = Capabilities::probe(&mut kernel, resolver.mount());
        Ok(Self {
            kernel,
            resolver,
            caps,
            journal,
            slots: (0..MAX_SLOTS).map(|_| None).collect(),
            host: Vec::new(),
            next_id: 1,
            latency: Latency::default(),
        })
    }

    /// The latency faults' device state (which devices hold a shared `fq`).
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    /// The resolver this engine checks targets with.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// What this kernel can run, probed at start.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Validates, resolves, attaches and arms. On error nothing stays attached.
    pub fn start(&mut self, spec: &FaultSpec) -> Result<FaultHandle, EngineError> {
        let kind = spec.fault.kind();
        self.caps
            .check(kind)
            .map_err(|reason| EngineError::Unsupported {
                fault: kind,
                reason,
            })?;
        let plan = spec.plan()?;
        let target = self.resolver.resolve(&spec.target)?;
        if spec.fault.is_host() {
            return self.start_host(spec, target);
        }
        let lsm_dirs = plan
            .lsm_path
            .as_deref()
            .map(|p| path_dirs::resolve(p, &target.path))
            .transpose()?;
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(EngineError::NoFreeSlot)?;
        let slot_u32 = slot as u32;
        let cgroup = File::open(&target.path).map_err(|source| EngineError::OpenCgroup {
            path: target.path.clone(),
            source,
        })?;

        let mut config = plan.config;
        config.armed = 0;
        self.kernel.write_slot(slot_u32, &config)?;
        self.kernel.reset_slot(slot_u32)?;
        let mut attachments = Vec::with_capacity(plan.hooks.len());
        for hook in &plan.hooks {
            // On error `attachments` is dropped here, which detaches what was attached.
            attachments.push(self.kernel.attach(slot_u32, *hook, &cgroup)?);
        }
        let lsm_links = if plan.lsm_hooks.is_empty() {
            Vec::new()
        } else {
            self.kernel.set_lsm_target(slot_u32, &cgroup)?;
            let dirs = match &lsm_dirs {
                Some(dirs) => self.kernel.set_lsm_dirs(slot_u32, dirs),
                None => Ok(()),
            };
            let links: Result<Vec<_>, _> = dirs.and_then(|()| {
                plan.lsm_hooks
                    .iter()
                    .map(|h| self.kernel.attach_lsm(*h))
                    .collect()
            });
            match links {
                Ok(links) => links,
                Err(e) => {
                    // The links attached so far were dropped by `collect`.
                    if let Err(clear) = self.kernel.clear_lsm_target(slot_u32) {
                        tracing::error!(error = %clear, slot, "clearing the LSM target failed");
                    }
                    return Err(e.into());
                }
            }
        };
        let latency = match &plan.latency {
            Some(lat) => Some(self.latency.start(
                &mut self.kernel,
                self.journal.as_ref(),
                slot_u32,
                &format!("fault-{}", self.next_id),
                &target,
                self.resolver.level(&target.path),
                lat,
            )?),
            None => None,
        };
        // Nothing below may fail without undoing the latency side.
        let mut undo = LatencyUndo(Some((&mut self.latency, self.journal.as_ref())), latency);
        config.expires_at_ns = monotonic_ns()?.saturating_add(nanos(spec.duration));
        config.armed = 1;
        self.kernel.write_slot(slot_u32, &config)?;
        let latency = undo.keep();

        let handle = FaultHandle {
            id: FaultId(self.next_id),
            slot: Some(slot_u32),
            target,
            expires_at_ns: config.expires_at_ns,
        };
        self.next_id += 1;
        tracing::info!(
            fault_id = %handle.id, fault = spec.fault.kind(), target = %handle.target.path.display(),
            slot, "armed"
        );
        self.slots[slot] = Some(Running {
            handle: handle.clone(),
            config,
            attachments,
            lsm_links,
            latency,
        });
        Ok(handle)
    }

    fn start_host(
        &mut self,
        spec: &FaultSpec,
        target: ResolvedTarget,
    ) -> Result<FaultHandle, EngineError> {
        let id = FaultId(self.next_id);
        let fault = HostFault::start(
            spec,
            &target.path,
            self.journal.as_ref(),
            &format!("fault-{id}"),
        )?;
        self.next_id += 1;
        let handle = FaultHandle {
            id,
            slot: None,
            target,
            expires_at_ns: monotonic_ns()?.saturating_add(nanos(spec.duration)),
        };
        tracing::info!(
            fault_id = %id, fault = spec.fault.kind(), target = %handle.target.path.display(),
            "started"
        );
        self.host.push((handle.clone(), fault));
        Ok(handle)
    }

    /// Does what host faults have due (a pod kill's next kill). Keeps going past errors and
    /// returns them with the fault they belong to.
    pub fn poll(&mut self) -> Vec<(FaultId, EngineError)> {
        let mut errors = Vec::new();
        for (h, f) in &mut self.host {
            if let Err(e) = f.poll() {
                errors.push((h.id, e.into()));
            }
        }
        errors
    }

    /// Whether a fault can do nothing more before its deadline (a one-shot kill that ran).
    pub fn finished(&self, id: FaultId) -> bool {
        self.host.iter().any(|(h, f)| h.id == id && f.finished())
    }

    fn host_index(&self, id: FaultId) -> Option<usize> {
        self.host.iter().position(|(h, _)| h.id == id)
    }

    /// The kill switch: one map write; the programs stay attached but inject nothing. For a
    /// host fault: stop killing, or put the knobs back.
    pub fn disarm(&mut self, id: FaultId) -> Result<(), EngineError> {
        if let Some(i) = self.host_index(id) {
            return Ok(self.host[i].1.disarm(self.journal.as_ref())?);
        }
        let slot = self.slot_of(id)?;
        let running = self.slots[slot]
            .as_mut()
            .ok_or(EngineError::UnknownFault(id))?;
        running.config.armed = 0;
        self.kernel.write_slot(slot as u32, &running.config)?;
        Ok(())
    }

    /// Disarms every running fault; returns how many were disarmed. Keeps going past errors
    /// and returns the first one after trying all.
    pub fn disarm_all(&mut self) -> Result<usize, EngineError> {
        let ids: Vec<FaultId> = self.running().map(|h| h.id).collect();
        let mut first_err = None;
        for id in &ids {
            if let Err(e) = self.disarm(*id) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(ids.len()), Err)
    }

    /// Disarms, then detaches, then frees the slot. Returns the final counters.
    pub fn stop(&mut self, id: FaultId) -> Result<SlotCounters, EngineError> {
        self.disarm(id)?;
        self.detach(id)
    }

    /// Detaches a fault's programs and frees its slot; returns its final counters. Callers
    /// disarm first ([`Engine::disarm`] / [`Engine::disarm_all`]) so that nothing waits on the
    /// detach while still injecting; [`Engine::stop`] does both.
    pub fn detach(&mut self, id: FaultId) -> Result<SlotCounters, EngineError> {
        if let Some(i) = self.host_index(id) {
            let (_, mut fault) = self.host.remove(i);
            // Normally already disarmed; make sure nothing stays tightened.
            fault.disarm(self.journal.as_ref())?;
            tracing::info!(fault_id = %id, injected = fault.counters().injected, "stopped");
            return Ok(fault.counters());
        }
        let slot = self.slot_of(id)?;
        let counters = self.kernel.counters(slot as u32)?;
        let running = self.slots[slot]
            .take()
            .ok_or(EngineError::UnknownFault(id))?;
        let mut first_err = None;
        for a in running.attachments {
            if let Err(e) = a.detach() {
                first_err.get_or_insert(EngineError::from(e));
            }
        }
        if !running.lsm_links.is_empty() {
            drop(running.lsm_links);
            if let Err(e) = self.kernel.clear_lsm_target(slot as u32) {
                first_err.get_or_insert(e.into());
            }
        }
        if let Some(run) = running.latency
            && let Err(e) = self.latency.stop(run, self.journal.as_ref())
        {
            first_err.get_or_insert(e.into());
        }
        tracing::info!(fault_id = %id, injected = counters.injected, "stopped");
        first_err.map_or(Ok(counters), Err)
    }

    /// Live counters of a running fault, summed over CPUs.
    pub fn counters(&self, id: FaultId) -> Result<SlotCounters, EngineError> {
        if let Some(i) = self.host_index(id) {
            return Ok(self.host[i].1.counters());
        }
        let slot = self.slot_of(id)?;
        Ok(self.kernel.counters(slot as u32)?)
    }

    /// How this kernel runs file and process syscall errors (probed once, then cached).
    pub fn lsm_support(&mut self) -> LsmSupport {
        self.kernel.lsm_support()
    }

    /// How many global LSM hook programs are attached now; zero when no syscall-error fault
    /// runs.
    pub fn lsm_links_attached(&self) -> usize {
        self.kernel.lsm_links_attached()
    }

    /// The running faults.
    pub fn running(&self) -> impl Iterator<Item = &FaultHandle> {
        self.slots
            .iter()
            .flatten()
            .map(|r| &r.handle)
            .chain(self.host.iter().map(|(h, _)| h))
    }

    fn slot_of(&self, id: FaultId) -> Result<usize, EngineError> {
        self.slots
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.handle.id == id))
            .ok_or(EngineError::UnknownFault(id))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Disarm first (fast, one write each), then detach by dropping the attachments.
        if let Err(e) = self.disarm_all() {
            tracing::error!(error = %e, "disarming on shutdown failed; detaching anyway");
        }
        for running in self.slots.iter_mut().flatten() {
            if let Some(run) = running.latency.take()
                && let Err(e) = self.latency.stop(run, self.journal.as_ref())
            {
                tracing::error!(error = %e, "restoring a device on shutdown failed");
            }
        }
        self.slots.clear();
        for (h, mut f) in self.host.drain(..) {
            if let Err(e) = f.disarm(self.journal.as_ref()) {
                tracing::error!(fault_id = %h.id, error = %e, "restoring on shutdown failed");
            }
        }
    }
}

/// Undoes a started latency side on drop unless [`LatencyUndo::keep`] took it: a start that
/// fails after the device was prepared puts the old qdisc back.
struct LatencyUndo<'a>(
    Option<(&'a mut Latency, &'a dyn HostJournal)>,
    Option<LatencyRun>,
);

impl LatencyUndo<'_> {
    fn keep(&mut self) -> Option<LatencyRun> {
        self.1.take()
    }
}

impl Drop for LatencyUndo<'_> {
    fn drop(&mut self) {
        if let (Some((latency, journal)), Some(run)) = (self.0.take(), self.1.take())
            && let Err(e) = latency.stop(run, journal)
        {
            tracing::error!(error = %e, "undoing a failed latency start");
        }
    }
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
