//! The kill path: everything that disarms, and nothing else. [`Switchboard`] holds the
//! emergency-stop latch, the kernel slots' kill switch ([`SlotKill`]: one map write on a
//! descriptor of its own) and the switches of the host faults ([`HostSwitch`]: an atomic flag,
//! and the knob values to put back). Disarming one experiment or all of them waits for no lock
//! that anything else holds across work: the only lock here guards a list of `Arc`s and is held
//! for a push, a remove or a clone, never across a syscall.
//!
//! A start registers its switch *before* it arms (docs/adr/0011), so that an emergency stop that
//! races with it either disarms it or is seen by it.

use std::{
    io,
    path::PathBuf,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use chaos_common::MAX_SLOTS;

use crate::{cgroupfs, sync::lock};

/// Disarms one kernel slot (writes a disarmed configuration), without `&mut` and without a lock.
pub trait SlotKill: Send + Sync {
    /// Disarms `slot`.
    fn disarm(&self, slot: u32) -> io::Result<()>;
}

/// What disarms one running experiment.
#[derive(Clone, Debug)]
pub enum Switch {
    /// A kernel slot: its programs read the slot's `armed` flag first.
    Slot(u32),
    /// A host fault: a pod kill's loop, a resource pressure's knobs.
    Host(Arc<HostSwitch>),
}

/// The node's kill path.
pub struct Switchboard {
    latched: AtomicBool,
    slots: Arc<dyn SlotKill>,
    host: Mutex<Vec<Arc<HostSwitch>>>,
}

/// A disarm that could not be completed (the fault may still act); the error names what.
#[derive(Debug, thiserror::Error)]
#[error("disarming {what}: {source}")]
pub struct DisarmError {
    what: String,
    source: io::Error,
}

impl Switchboard {
    /// A switchboard writing kernel slots through `slots`, not latched.
    pub fn new(slots: Arc<dyn SlotKill>) -> Self {
        Self {
            latched: AtomicBool::new(false),
            slots,
            host: Mutex::new(Vec::new()),
        }
    }

    /// Whether the emergency stop is latched: nothing new may start.
    pub fn latched(&self) -> bool {
        self.latched.load(Ordering::SeqCst)
    }

    /// Latches without disarming anything: a latch recorded before this process started (which
    /// has armed nothing yet), or one re-asserted after a clear that raced an emergency stop.
    pub fn latch(&self) {
        self.latched.store(true, Ordering::SeqCst);
    }

    /// Lifts the latch.
    pub fn clear(&self) {
        self.latched.store(false, Ordering::SeqCst);
    }

    /// Disarms one experiment's switch.
    pub fn disarm(&self, switch: &Switch) -> Result<(), DisarmError> {
        match switch {
            Switch::Slot(slot) => self.slots.disarm(*slot).map_err(|source| DisarmError {
                what: format!("slot {slot}"),
                source,
            }),
            Switch::Host(host) => host.disarm(),
        }
    }

    /// The emergency stop: latches, then disarms every kernel slot (in use or not: a start
    /// arms only after registering, see the module doc) and every host switch. Keeps going past
    /// failures and returns them all.
    pub fn emergency_stop(&self) -> Vec<DisarmError> {
        self.latched.store(true, Ordering::SeqCst);
        let mut failed = Vec::new();
        for slot in 0..MAX_SLOTS {
            if let Err(e) = self.disarm(&Switch::Slot(slot)) {
                failed.push(e);
            }
        }
        let hosts: Vec<Arc<HostSwitch>> = lock(&self.host).clone();
        for host in hosts {
            if let Err(e) = host.disarm() {
                failed.push(e);
            }
        }
        failed
    }

    /// Adds a host fault's switch, before the fault does anything.
    pub fn register(&self, host: &Arc<HostSwitch>) {
        lock(&self.host).push(host.clone());
    }

    /// Removes a host fault's switch once the fault is over.
    pub fn unregister(&self, host: &Arc<HostSwitch>) {
        lock(&self.host).retain(|h| !Arc::ptr_eq(h, host));
    }
}

/// A knob a host fault changed, with the value to put back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knob {
    pub path: PathBuf,
    pub old_value: String,
}

/// A host fault's switch: whether it may still act, the knobs to put back when disarmed, and
/// a way to wake its worker (a pod kill's loop) at once.
#[derive(Debug, Default)]
pub struct HostSwitch {
    disarmed: Mutex<bool>,
    /// The same flag, readable without the lock.
    off: AtomicBool,
    wake: Condvar,
    knobs: Mutex<Vec<Knob>>,
}

impl HostSwitch {
    /// A new, armed switch.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Whether the fault may still act.
    pub fn armed(&self) -> bool {
        !self.off.load(Ordering::SeqCst)
    }

    /// Disarms: the fault stops acting, its worker wakes, and every knob it changed gets its
    /// old value back (newest first). Idempotent; the knob writes are retried by the next call.
    pub fn disarm(&self) -> Result<(), DisarmError> {
        *lock(&self.disarmed) = true;
        self.off.store(true, Ordering::SeqCst);
        self.wake.notify_all();
        let knobs: Vec<Knob> = lock(&self.knobs).clone();
        let mut first = None;
        for knob in knobs.iter().rev() {
            match cgroupfs::write_knob(&knob.path, &knob.old_value) {
                Ok(()) => {}
                // The cgroup is gone: nothing left to restore.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    first.get_or_insert(DisarmError {
                        what: format!("{} (back to {:?})", knob.path.display(), knob.old_value),
                        source,
                    });
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Records that `knob` was just written. Returns false when the switch was disarmed
    /// meanwhile: the caller must put the knob back itself (a disarm that ran before this call
    /// did not know the knob).
    pub fn wrote(&self, knob: Knob) -> bool {
        lock(&self.knobs).push(knob);
        self.armed()
    }

    /// Sleeps until `until` or until disarmed; returns whether still armed.
    pub fn sleep_until(&self, until: Instant) -> bool {
        let mut disarmed = lock(&self.disarmed);
        while !*disarmed {
            let now = Instant::now();
            if now >= until {
                return true;
            }
            disarmed = self
                .wake
                .wait_timeout(disarmed, until - now)
                .map_or_else(|e| e.into_inner().0, |(guard, _)| guard);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::atomic::AtomicU32, time::Duration};

    use super::*;

    #[derive(Default)]
    struct Recorded(AtomicU32);

    impl SlotKill for Recorded {
        fn disarm(&self, slot: u32) -> io::Result<()> {
            self.0.fetch_or(1 << slot, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn emergency_stop_latches_and_disarms_every_slot_and_host_switch() {
        let slots = Arc::new(Recorded::default());
        let board = Switchboard::new(slots.clone());
        let host = HostSwitch::new();
        board.register(&host);
        assert!(!board.latched() && host.armed());
        assert!(board.emergency_stop().is_empty());
        assert!(board.latched() && !host.armed());
        assert_eq!(slots.0.load(Ordering::SeqCst), (1u32 << MAX_SLOTS) - 1);
        board.clear();
        assert!(!board.latched());
    }

    #[test]
    fn a_disarmed_switch_wakes_its_sleeper_and_restores_knobs() {
        let dir = std::env::temp_dir().join(format!("chaos-switch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let knob = dir.join("cpu.max");
        std::fs::write(&knob, "1000 100000").unwrap();
        let host = HostSwitch::new();
        assert!(host.wrote(Knob {
            path: knob.clone(),
            old_value: "max 100000".into(),
        }));
        let sleeper = std::thread::spawn({
            let host = host.clone();
            move || {
                let t = Instant::now();
                (host.sleep_until(t + Duration::from_secs(30)), t.elapsed())
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        host.disarm().unwrap();
        let (armed, slept) = sleeper.join().unwrap();
        assert!(!armed && slept < Duration::from_secs(5), "{slept:?}");
        assert_eq!(std::fs::read_to_string(&knob).unwrap(), "max 100000");
        // A knob written after the disarm is reported, for the writer to restore.
        assert!(!host.wrote(Knob {
            path: knob,
            old_value: "max 100000".into(),
        }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
