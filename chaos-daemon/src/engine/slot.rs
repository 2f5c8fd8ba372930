//! A kernel-program fault in its slot: the planned parts ([`SlotPlan`]), arming them
//! all-or-nothing ([`Inner::arm_slot`], undone by [`SlotUndo`] on failure) and releasing them
//! ([`Inner::release_slot`]).

use std::{fs::File, sync::Arc, time::Duration};

use chaos_common::{DirKey, SlotConfig, SlotCounters, TcConfig};

use super::{EngineError, Inner, monotonic_ns, nanos};
use crate::{
    ebpf::{Attachment, lsm::LsmLink},
    fault::KernelPlan,
    net::{
        egress::{self, EgressRun, EgressTarget},
        latency::{LatencyRun, LatencyTarget},
    },
    sync::lock,
    target::ResolvedTarget,
};

/// A kernel-program fault as planned: the slot configuration and hooks, the path prefix's
/// directories, the latency devices and the tc egress namespaces (one per distinct device or
/// namespace of the targets).
#[derive(Debug)]
pub(super) struct SlotPlan {
    pub kernel: KernelPlan,
    pub lsm_dirs: Option<Vec<DirKey>>,
    pub latency: Vec<LatencyTarget>,
    pub egress: Vec<EgressTarget>,
}

/// A kernel-program fault as armed.
pub(super) struct ArmedSlot {
    pub slot: u32,
    /// The configuration as armed (a ramp step rewrites it with another threshold).
    pub config: SlotConfig,
    /// A latency fault's delay configuration as written (a ramp step rewrites its delay).
    pub latency_config: Option<TcConfig>,
    attachments: Vec<Attachment>,
    /// Shared global LSM programs; the last holder's drop detaches them.
    lsm_links: Vec<Arc<LsmLink>>,
    latency: Vec<LatencyRun>,
    egress: Vec<EgressRun>,
}

impl Inner {
    /// Arms `plan` on `slot`: written disarmed, every hook attached to every target, then
    /// armed with its kernel deadline. On error, what was done is undone and the slot is
    /// disarmed.
    pub(super) fn arm_slot(
        &self,
        slot: u32,
        targets: &[ResolvedTarget],
        plan: SlotPlan,
        duration: Duration,
        owner: &str,
    ) -> Result<ArmedSlot, EngineError> {
        let SlotPlan {
            kernel: kernel_plan,
            lsm_dirs,
            latency,
            egress,
        } = plan;
        let cgroups = targets
            .iter()
            .map(|target| {
                File::open(&target.path).map_err(|source| EngineError::OpenCgroup {
                    path: target.path.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut config = kernel_plan.config;
        config.armed = 0;
        self.maps.write_slot(slot, &config)?;
        self.maps.reset_slot(slot)?;
        // From here on, `undo` puts everything back if a step fails.
        let mut undo = SlotUndo {
            inner: self,
            slot,
            attachments: Vec::with_capacity(kernel_plan.hooks.len() * cgroups.len()),
            lsm_links: Vec::new(),
            lsm_target: false,
            latency: Vec::new(),
            egress: Vec::new(),
            kept: false,
        };
        {
            let mut kernel = lock(&self.kernel);
            for hook in &kernel_plan.hooks {
                for cgroup in &cgroups {
                    undo.attachments.push(kernel.attach(slot, *hook, cgroup)?);
                }
            }
            if !kernel_plan.lsm_hooks.is_empty() {
                undo.lsm_target = true;
                kernel.set_lsm_targets(slot, &cgroups)?;
                if let Some(dirs) = &lsm_dirs {
                    kernel.set_lsm_dirs(slot, dirs)?;
                }
                for hook in &kernel_plan.lsm_hooks {
                    undo.lsm_links.push(kernel.attach_lsm(*hook)?);
                }
            }
        }
        let latency_config = latency.first().map(|t| t.plan.config);
        for target in latency {
            let mut table = lock(&self.latency);
            let mut kernel = lock(&self.kernel);
            let run = table.start(&mut kernel, self.journal.as_ref(), slot, owner, target)?;
            undo.latency.push(run);
        }
        // Connections an earlier experiment of this slot blackholed stay its own.
        let generation = (monotonic_ns()? as u32) | 1;
        for mut target in egress {
            target.config.generation = generation;
            let mut table = lock(&self.latency);
            let mut kernel = lock(&self.kernel);
            undo.egress.push(egress::start(
                table.devices_mut(),
                &mut kernel,
                self.journal.as_ref(),
                slot,
                owner,
                target,
            )?);
        }
        config.expires_at_ns = monotonic_ns()?.saturating_add(nanos(duration));
        config.armed = 1;
        self.maps.write_slot(slot, &config)?;
        undo.kept = true;
        Ok(ArmedSlot {
            slot,
            config,
            latency_config,
            attachments: std::mem::take(&mut undo.attachments),
            lsm_links: std::mem::take(&mut undo.lsm_links),
            latency: std::mem::take(&mut undo.latency),
            egress: std::mem::take(&mut undo.egress),
        })
    }

    /// Detaches a (disarmed) slot fault's programs, clears its LSM target and restores its
    /// latency device; every step is tried and the first error kept in `first_err`. Returns
    /// the final counters.
    pub(super) fn release_slot(
        &self,
        armed: ArmedSlot,
        first_err: &mut Option<EngineError>,
    ) -> SlotCounters {
        let ArmedSlot {
            slot,
            config,
            latency_config: _,
            attachments,
            lsm_links,
            latency,
            egress,
        } = armed;
        let counters = self
            .maps
            .counters(slot, config.max_faults)
            .unwrap_or_else(|e| {
                first_err.get_or_insert(e.into());
                SlotCounters::default()
            });
        {
            let mut kernel = lock(&self.kernel);
            for a in attachments {
                if let Err(e) = a.detach() {
                    first_err.get_or_insert(e.into());
                }
            }
            if !lsm_links.is_empty() {
                drop(lsm_links);
                if let Err(e) = kernel.clear_lsm_target(slot) {
                    first_err.get_or_insert(e.into());
                }
            }
        }
        for run in latency {
            if let Err(e) = lock(&self.latency).stop(run, self.journal.as_ref()) {
                first_err.get_or_insert(e.into());
            }
        }
        for run in egress {
            if let Err(e) = egress::stop(
                lock(&self.latency).devices_mut(),
                run,
                self.journal.as_ref(),
            ) {
                first_err.get_or_insert(e.into());
            }
        }
        counters
    }
}

/// Undoes a slot arm that failed part-way when dropped (unless `kept`): detaches what was
/// attached, clears the LSM target and restores the latency device. The slot stays disarmed.
struct SlotUndo<'a> {
    inner: &'a Inner,
    slot: u32,
    attachments: Vec<Attachment>,
    lsm_links: Vec<Arc<LsmLink>>,
    lsm_target: bool,
    latency: Vec<LatencyRun>,
    egress: Vec<EgressRun>,
    kept: bool,
}

impl Drop for SlotUndo<'_> {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Err(e) = self.inner.maps.disarm(self.slot) {
            tracing::error!(error = %e, slot = self.slot, "disarming a failed start");
        }
        // Dropping the attachments detaches them.
        self.attachments.clear();
        self.lsm_links.clear();
        if self.lsm_target
            && let Err(e) = lock(&self.inner.kernel).clear_lsm_target(self.slot)
        {
            tracing::error!(error = %e, slot = self.slot, "clearing the LSM target");
        }
        for run in self.latency.drain(..) {
            if let Err(e) = lock(&self.inner.latency).stop(run, self.inner.journal.as_ref()) {
                tracing::error!(error = %e, "undoing a failed latency start");
            }
        }
        for run in self.egress.drain(..) {
            if let Err(e) = egress::stop(
                lock(&self.inner.latency).devices_mut(),
                run,
                self.inner.journal.as_ref(),
            ) {
                tracing::error!(error = %e, "undoing a failed tc egress start");
            }
        }
    }
}
