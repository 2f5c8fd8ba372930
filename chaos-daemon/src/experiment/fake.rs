//! A fault engine without a kernel, for the lifecycle's unit tests: slots are flags, host
//! faults are switches, and gates let a test hold an arm or a release half-way to prove that
//! nothing waits for them.

use std::{
    io,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use chaos_api::experiment::{Experiment, ExperimentType, Target};
use chaos_common::{MAX_SLOTS, SlotCounters};

use super::FaultEngine;
use crate::{
    capability::{Capabilities, Capability, DATABASE_LOAD_NOT_RUN},
    engine::{EngineError, Plan, PlanTarget},
    host::dbload::Figures,
    switch::{HostSwitch, SlotKill, Switch, Switchboard},
};

/// Kernel slots as flags: armed or not.
#[derive(Default)]
pub struct Slots(pub [AtomicBool; MAX_SLOTS as usize]);

impl SlotKill for Slots {
    fn disarm(&self, slot: u32) -> io::Result<()> {
        self.0[slot as usize].store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Slots {
    /// How many slots are armed.
    pub fn armed(&self) -> usize {
        self.0.iter().filter(|s| s.load(Ordering::SeqCst)).count()
    }
}

/// A gate a thread waits at until the test opens it.
#[derive(Default)]
pub struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
    /// Set by the first thread that reaches the closed gate.
    pub reached: AtomicBool,
}

impl Gate {
    pub fn close(&self) {
        *self.closed.lock().unwrap() = true;
        self.reached.store(false, Ordering::SeqCst);
    }

    pub fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }

    fn pass(&self) {
        let mut closed = self.closed.lock().unwrap();
        if *closed {
            self.reached.store(true, Ordering::SeqCst);
        }
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
    }

    /// Waits until a thread is held at the gate.
    pub fn wait_reached(&self) {
        while !self.reached.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }
}

pub struct FakeEngine {
    pub slots: Arc<Slots>,
    switchboard: Arc<Switchboard>,
    caps: Capabilities,
    taken: Mutex<u32>,
    /// An arm waits here after it armed its slot and before it returns.
    pub arm_gate: Gate,
    /// A release waits here after it disarmed.
    pub release_gate: Gate,
    /// A ramp step waits here after it wrote its (armed) slot.
    pub ramp_gate: Gate,
    /// Every intensity a ramp step wrote.
    pub intensities: Mutex<Vec<f64>>,
    /// What every armed fault reports as injected.
    pub injected: AtomicU64,
    /// Whether host faults report they have nothing more to do.
    pub finished: AtomicBool,
    pub released: AtomicU64,
    /// How many of the next releases fail (after disarming), as a detach the kernel refuses.
    pub failing_releases: AtomicU64,
    /// What every armed fault reports as a database load's figures.
    pub load: Mutex<Option<Figures>>,
}

impl FakeEngine {
    pub fn new() -> Self {
        let slots = Arc::new(Slots::default());
        Self {
            switchboard: Arc::new(Switchboard::new(slots.clone())),
            slots,
            caps: Capabilities {
                kernel: "fake".into(),
                // As the real probe: everything but database_load, which has no runner yet.
                faults: ExperimentType::ALL
                    .into_iter()
                    .map(|kind| {
                        let runs = kind != ExperimentType::DatabaseLoad;
                        Capability {
                            kind,
                            supported: runs,
                            reason: if runs {
                                String::new()
                            } else {
                                DATABASE_LOAD_NOT_RUN.to_owned()
                            },
                        }
                    })
                    .collect(),
            },
            taken: Mutex::new(0),
            arm_gate: Gate::default(),
            release_gate: Gate::default(),
            ramp_gate: Gate::default(),
            intensities: Mutex::new(Vec::new()),
            injected: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            released: AtomicU64::new(0),
            failing_releases: AtomicU64::new(0),
            load: Mutex::new(None),
        }
    }
}

impl FakeEngine {
    /// This engine, on a kernel that cannot run `kind` (`reason`).
    pub fn unsupporting(mut self, kind: ExperimentType, reason: &str) -> Self {
        for c in self.caps.faults.iter_mut().filter(|c| c.kind == kind) {
            c.supported = false;
            c.reason = reason.to_owned();
        }
        self
    }
}

pub struct FakePrepared {
    plan: Plan,
    host: bool,
}

pub struct FakeArmed {
    switch: Switch,
}

impl FaultEngine for FakeEngine {
    type Prepared = FakePrepared;
    type Armed = FakeArmed;

    fn switchboard(&self) -> &Arc<Switchboard> {
        &self.switchboard
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn resolve_targets(&self, targets: &[Target]) -> Result<String, EngineError> {
        Ok(targets
            .iter()
            .map(|t| format!("/fake/{t}"))
            .collect::<Vec<_>>()
            .join(", "))
    }

    fn prepare(
        &self,
        experiment: &Experiment,
        max_faults: u64,
    ) -> Result<FakePrepared, EngineError> {
        // As the real engine: a type this "kernel" cannot run is refused with the reason.
        let kind = experiment.kind();
        self.caps
            .check(kind)
            .map_err(|reason| EngineError::Unsupported { kind, reason })?;
        Ok(FakePrepared {
            plan: Plan {
                targets: experiment
                    .targets
                    .iter()
                    .zip(1..)
                    .map(|(t, id)| PlanTarget {
                        cgroup: format!("/fake/{t}"),
                        cgroup_id: id,
                    })
                    .collect(),
                programs: vec!["Fake".into()],
                changes: Vec::new(),
                max_faults,
            },
            host: experiment.kind().is_host(),
        })
    }

    fn plan(prepared: &FakePrepared) -> &Plan {
        &prepared.plan
    }

    fn reserve(&self, prepared: &FakePrepared) -> Result<Switch, EngineError> {
        if prepared.host {
            let host = HostSwitch::new();
            self.switchboard.register(&host);
            return Ok(Switch::Host(host));
        }
        let mut taken = self.taken.lock().unwrap();
        let slot = (0..MAX_SLOTS)
            .find(|s| *taken & (1 << s) == 0)
            .ok_or(EngineError::NoFreeSlot)?;
        *taken |= 1 << slot;
        Ok(Switch::Slot(slot))
    }

    fn unreserve(&self, switch: &Switch) {
        match switch {
            Switch::Slot(slot) => *self.taken.lock().unwrap() &= !(1 << slot),
            Switch::Host(host) => self.switchboard.unregister(host),
        }
    }

    fn arm(
        &self,
        _prepared: FakePrepared,
        switch: &Switch,
        _owner: &str,
    ) -> Result<FakeArmed, EngineError> {
        if let Switch::Slot(slot) = switch {
            self.slots.0[*slot as usize].store(true, Ordering::SeqCst);
        }
        self.arm_gate.pass();
        Ok(FakeArmed {
            switch: switch.clone(),
        })
    }

    fn counters(&self, _armed: &FakeArmed) -> Result<SlotCounters, EngineError> {
        let injected = self.injected.load(Ordering::SeqCst);
        Ok(SlotCounters {
            seen: injected * 2,
            matched: injected * 2,
            injected,
            capped: 0,
        })
    }

    fn set_step(&self, armed: &FakeArmed, p: f64) -> Result<(), EngineError> {
        let Switch::Slot(slot) = armed.switch else {
            return Err(EngineError::NoIntensity);
        };
        // A real step writes the whole slot, armed: a disarm it raced would be undone.
        self.slots.0[slot as usize].store(true, Ordering::SeqCst);
        self.intensities.lock().unwrap().push(p);
        self.ramp_gate.pass();
        Ok(())
    }

    fn finished(&self, armed: &FakeArmed) -> bool {
        matches!(armed.switch, Switch::Host(_)) && self.finished.load(Ordering::SeqCst)
    }

    fn take_errors(&self, _armed: &FakeArmed) -> Vec<String> {
        Vec::new()
    }

    fn load_figures(&self, _armed: &FakeArmed) -> Option<Figures> {
        self.load.lock().unwrap().clone()
    }

    fn release(&self, armed: FakeArmed) -> Result<SlotCounters, EngineError> {
        let _ = self.switchboard.disarm(&armed.switch);
        self.release_gate.pass();
        let fail = self
            .failing_releases
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            self.unreserve(&armed.switch);
            return Err(EngineError::OpenCgroup {
                path: "/fake".into(),
                source: std::io::Error::other("detaching refused"),
            });
        }
        let counters = self.counters(&armed)?;
        self.unreserve(&armed.switch);
        self.released.fetch_add(1, Ordering::SeqCst);
        Ok(counters)
    }
}
