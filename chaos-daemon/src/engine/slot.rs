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
/// directories, the latency device, the tc egress devices.
#[derive(Debug)]
pub(super) struct SlotPlan {
    pub kernel: KernelPlan,
    pub lsm_dirs: Option<Vec<DirKey>>,
    pub latency: Option<LatencyTarget>,
    pub egress: Option<EgressTarget>,
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
    latency: Option<LatencyRun>,
    egress: Option<EgressRun>,
}

impl Inner {
    /// Arms `plan` on `slot`: written disarmed, every hook attached, then armed with its
    /// kernel deadline. On error, what was done is undone and the slot is disarmed.
    pub(super) fn arm_slot(
        &self,
        slot: u32,
        target: &ResolvedTarget,
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
        let cgroup = File::open(&target.path).map_err(|source| EngineError::OpenCgroup {
            path: target.path.clone(),
            source,
        })?;
        let mut config = kernel_plan.config;
        config.armed = 0;
        self.maps.write_slot(slot, &config)?;
        self.maps.reset_slot(slot)?;
        // From here on, `undo` puts everything back if a step fails.
        let mut undo = SlotUndo {
            inner: self,
            slot,
            attachments: Vec::with_capacity(kernel_plan.hooks.len()),
            lsm_links: Vec::new(),
            lsm_target: false,
            latency: None,
            egress: None,
            kept: false,
        };
        {
            let mut kernel = lock(&self.kernel);
            for hook in &kernel_plan.hooks {
                undo.attachments.push(kernel.attach(slot, *hook, &cgroup)?);
            }
            if !kernel_plan.lsm_hooks.is_empty() {
                kernel.set_lsm_target(slot, &cgroup)?;
                undo.lsm_target = true;
                if let Some(dirs) = &lsm_dirs {
                    kernel.set_lsm_dirs(slot, dirs)?;
                }
                for hook in &kernel_plan.lsm_hooks {
                    undo.lsm_links.push(kernel.attach_lsm(*hook)?);
                }
            }
        }
        let latency_config = latency.as_ref().map(|t| t.plan.config);
        if let Some(target) = latency {
            let mut table = lock(&self.latency);
            let mut kernel = lock(&self.kernel);
            undo.latency =
                Some(table.start(&mut kernel, self.journal.as_ref(), slot, owner, target)?);
        }
        if let Some(mut target) = egress {
            // Connections an earlier experiment of this slot blackholed stay its own.
            target.config.generation = (monotonic_ns()? as u32) | 1;
            let mut table = lock(&self.latency);
            let mut kernel = lock(&self.kernel);
            undo.egress = Some(egress::start(
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
            latency: undo.latency.take(),
            egress: undo.egress.take(),
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
        if let Some(run) = latency
            && let Err(e) = lock(&self.latency).stop(run, self.journal.as_ref())
        {
            first_err.get_or_insert(e.into());
        }
        if let Some(run) = egress
            && let Err(e) = egress::stop(
                lock(&self.latency).devices_mut(),
                run,
                self.journal.as_ref(),
            )
        {
            first_err.get_or_insert(e.into());
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
    latency: Option<LatencyRun>,
    egress: Option<EgressRun>,
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
        if let Some(run) = self.latency.take()
            && let Err(e) = lock(&self.inner.latency).stop(run, self.inner.journal.as_ref())
        {
            tracing::error!(error = %e, "undoing a failed latency start");
        }
        if let Some(run) = self.egress.take()
            && let Err(e) = egress::stop(
                lock(&self.inner.latency).devices_mut(),
                run,
                self.inner.journal.as_ref(),
            )
        {
            tracing::error!(error = %e, "undoing a failed tc egress start");
        }
    }
}
