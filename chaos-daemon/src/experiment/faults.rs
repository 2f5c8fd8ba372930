//! [`FaultEngine`]: what the lifecycle needs from the fault engine, so that it runs over the
//! real one ([`crate::engine::Engine`]) on a node and over a fake in unit tests, without root.

use std::sync::Arc;

use chaos_api::experiment::{Experiment, Target};
use chaos_common::SlotCounters;

use crate::{
    capability::Capabilities,
    engine::{Armed, Engine, EngineError, Plan, Prepared},
    host::dbload::Figures,
    switch::{Switch, Switchboard},
};

/// A fault engine: plan, reserve, arm, observe, release. Every method takes `&self` and may be
/// called from any thread; disarming is not here but on [`FaultEngine::switchboard`].
pub trait FaultEngine: Send + Sync + 'static {
    /// A planned experiment (nothing changed yet).
    type Prepared: Send + 'static;
    /// An armed experiment.
    type Armed: Send + 'static;

    /// The kill path.
    fn switchboard(&self) -> &Arc<Switchboard>;
    /// What this node's kernel can run.
    fn capabilities(&self) -> &Capabilities;
    /// Finds `target`'s cgroup, refusing a protected one (pre-flight's target check); says
    /// which it is. Changes nothing.
    fn resolve_targets(&self, targets: &[Target]) -> Result<String, EngineError>;
    /// Plans `experiment` with the fault cap `max_faults`; changes nothing.
    fn prepare(
        &self,
        experiment: &Experiment,
        max_faults: u64,
    ) -> Result<Self::Prepared, EngineError>;
    /// What arming `prepared` does.
    fn plan(prepared: &Self::Prepared) -> &Plan;
    /// Takes the slot or host switch that will disarm `prepared`, before it is armed.
    fn reserve(&self, prepared: &Self::Prepared) -> Result<Switch, EngineError>;
    /// Gives back a reserved switch whose arm failed or was not attempted.
    fn unreserve(&self, switch: &Switch);
    /// Arms exactly `prepared` on `switch`; on error nothing stays changed.
    fn arm(
        &self,
        prepared: Self::Prepared,
        switch: &Switch,
        owner: &str,
    ) -> Result<Self::Armed, EngineError>;
    /// Live counters; takes no lock anything slow holds.
    fn counters(&self, armed: &Self::Armed) -> Result<SlotCounters, EngineError>;
    /// Moves an armed fault to a ramp step (a probability, or a latency fault's delay in
    /// milliseconds), without re-attaching.
    fn set_step(&self, armed: &Self::Armed, step: f64) -> Result<(), EngineError>;
    /// Whether the fault can do nothing more before its deadline.
    fn finished(&self, armed: &Self::Armed) -> bool;
    /// Failures a host fault ran into since the last call.
    fn take_errors(&self, armed: &Self::Armed) -> Vec<String>;
    /// A database load's live figures (`None` for the other faults).
    fn load_figures(&self, _armed: &Self::Armed) -> Option<Figures> {
        None
    }
    /// Disarms, detaches, restores and frees; the final counters.
    fn release(&self, armed: Self::Armed) -> Result<SlotCounters, EngineError>;
}

impl FaultEngine for Engine {
    type Prepared = Prepared;
    type Armed = Armed;

    fn switchboard(&self) -> &Arc<Switchboard> {
        Engine::switchboard(self)
    }

    fn capabilities(&self) -> &Capabilities {
        Engine::capabilities(self)
    }

    fn resolve_targets(&self, targets: &[Target]) -> Result<String, EngineError> {
        let resolved = self.resolver().resolve_all(targets)?;
        Ok(resolved
            .iter()
            .map(|r| format!("cgroup {} (id {})", r.path.display(), r.id))
            .collect::<Vec<_>>()
            .join(", "))
    }

    fn prepare(&self, experiment: &Experiment, max_faults: u64) -> Result<Prepared, EngineError> {
        Engine::prepare(self, experiment, max_faults)
    }

    fn plan(prepared: &Prepared) -> &Plan {
        prepared.plan()
    }

    fn reserve(&self, prepared: &Prepared) -> Result<Switch, EngineError> {
        Engine::reserve(self, prepared)
    }

    fn unreserve(&self, switch: &Switch) {
        Engine::unreserve(self, switch);
    }

    fn arm(&self, prepared: Prepared, switch: &Switch, owner: &str) -> Result<Armed, EngineError> {
        Engine::arm(self, prepared, switch, owner)
    }

    fn counters(&self, armed: &Armed) -> Result<SlotCounters, EngineError> {
        Engine::counters(self, armed)
    }

    fn set_step(&self, armed: &Armed, step: f64) -> Result<(), EngineError> {
        Engine::set_step(self, armed, step)
    }

    fn finished(&self, armed: &Armed) -> bool {
        Engine::finished(self, armed)
    }

    fn take_errors(&self, armed: &Armed) -> Vec<String> {
        Engine::take_errors(self, armed)
    }

    fn load_figures(&self, armed: &Armed) -> Option<Figures> {
        Engine::load_figures(self, armed)
    }

    fn release(&self, armed: Armed) -> Result<SlotCounters, EngineError> {
        Engine::release(self, armed)
    }
}
