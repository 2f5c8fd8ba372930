//! Resource pressure: tighten a cgroup's `cpu.max` and/or `memory.high` to a share of what it
//! may use now. The new values are computed when the experiment is planned (and shown); a start
//! journals each knob, writes it and hands its old value to the experiment's
//! [`HostSwitch`], whose disarm writes it back. One pressure per cgroup at a time: a second
//! would journal the first one's tightened value as "old" and leave the cgroup throttled for
//! good after both stop ([`Knobs`] refuses it).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use chaos_common::SlotCounters;

use super::{HostFaultError, io_err, unusable};
use crate::{
    cgroupfs,
    journal::{ChangeKind, HostChange, HostJournal},
    switch::{HostSwitch, Knob},
    sync::lock,
};

/// The smallest `cpu.max` quota the kernel accepts.
const MIN_CPU_QUOTA_US: u64 = 1000;
/// The smallest `memory.high` we set: below this the target cannot even page in its code.
const MIN_MEMORY_HIGH: u64 = 8 << 20;

/// The cgroups under pressure on this node; a second pressure on one of them is refused.
#[derive(Debug, Default)]
pub struct Knobs(Mutex<HashSet<PathBuf>>);

impl Knobs {
    fn busy(&self, cgroup: &Path) -> HostFaultError {
        unusable(
            cgroup,
            "another resource_exhaustion experiment holds this cgroup (stop it first, or retry \
             in a moment if it is ending); two would leave the cgroup throttled after both stop",
        )
    }

    /// Refuses `cgroup` when a pressure holds it now.
    pub fn check(&self, cgroup: &Path) -> Result<(), HostFaultError> {
        if self.lock().contains(cgroup) {
            return Err(self.busy(cgroup));
        }
        Ok(())
    }

    fn take(&self, cgroup: &Path) -> Result<(), HostFaultError> {
        if !self.lock().insert(cgroup.to_path_buf()) {
            return Err(self.busy(cgroup));
        }
        Ok(())
    }

    fn give_back(&self, cgroup: &Path) {
        self.lock().remove(cgroup);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        lock(&self.0)
    }
}

/// One knob of a plan: its file, the value read when planning, the value to write.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    knob: PathBuf,
    old: String,
    new: String,
}

/// A checked resource pressure, ready to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    cgroup: PathBuf,
    changes: Vec<Change>,
}

impl Plan {
    /// Reads the knobs of `cgroup` and computes their tightened values. Refused when a
    /// controller is missing, a knob is unreadable, or a pressure already holds the cgroup.
    pub fn new(
        cgroup: &Path,
        cpu_share: Option<f64>,
        memory_share: Option<f64>,
        knobs: &Knobs,
    ) -> Result<Self, HostFaultError> {
        knobs.check(cgroup)?;
        if cpu_share.is_none() && memory_share.is_none() {
            return Err(unusable(
                cgroup,
                "resource pressure with neither a cpu nor a memory share changes nothing",
            ));
        }
        let mut changes = Vec::new();
        if let Some(share) = cpu_share {
            let knob = knob(cgroup, "cpu.max", "cpu")?;
            let old = cgroupfs::read_knob(&knob).map_err(io_err("reading", &knob))?;
            let new = cpu_max(&old, share, cpus()?).ok_or_else(|| {
                unusable(
                    &knob,
                    format!("unexpected content {old:?} (want \"QUOTA|max PERIOD\")"),
                )
            })?;
            changes.push(Change { knob, old, new });
        }
        if let Some(share) = memory_share {
            let knob = knob(cgroup, "memory.high", "memory")?;
            let old = cgroupfs::read_knob(&knob).map_err(io_err("reading", &knob))?;
            let max_path = cgroup.join("memory.max");
            let limit = cgroupfs::read_knob(&max_path).map_err(io_err("reading", &max_path))?;
            let base = match limit.parse::<u64>() {
                Ok(l) => l,
                Err(_) => {
                    let cur = cgroup.join("memory.current");
                    cgroupfs::read_knob(&cur)
                        .map_err(io_err("reading", &cur))?
                        .parse::<u64>()
                        .map_err(|e| unusable(&cur, e.to_string()))?
                }
            };
            let new = memory_high(base, share, old.parse().ok()).to_string();
            changes.push(Change { knob, old, new });
        }
        Ok(Self {
            cgroup: cgroup.to_path_buf(),
            changes,
        })
    }

    /// What a start would write, for the plan shown to the user.
    pub fn describe(&self) -> Vec<String> {
        self.changes
            .iter()
            .map(|c| format!("{}: {} -> {}", c.knob.display(), c.old, c.new))
            .collect()
    }

    /// Takes the cgroup, then journals and writes each knob, handing its old value to
    /// `switch`. A knob that changed since the plan, a failed write or a disarm that came
    /// meanwhile puts back what was written and gives the cgroup back.
    pub fn start(
        self,
        switch: &Arc<HostSwitch>,
        journal: &dyn HostJournal,
        knobs: &Arc<Knobs>,
        owner: &str,
    ) -> Result<Run, HostFaultError> {
        knobs.take(&self.cgroup)?;
        let mut run = Run {
            cgroup: self.cgroup.clone(),
            journaled: Vec::new(),
            knobs: knobs.clone(),
            released: false,
        };
        for change in self.changes {
            // Written where `run` is dropped on failure: the switch puts the knobs back and
            // `Run::drop` marks the journal and gives the cgroup back.
            let now = cgroupfs::read_knob(&change.knob).map_err(io_err("reading", &change.knob));
            let now = match now {
                Ok(now) => now,
                Err(e) => return Err(run.abort(switch, journal, e)),
            };
            if now != change.old {
                let e = unusable(
                    &change.knob,
                    format!(
                        "changed since the plan (was {:?}, now {now:?}); plan and start again",
                        change.old
                    ),
                );
                return Err(run.abort(switch, journal, e));
            }
            let record = HostChange {
                kind: ChangeKind::CgroupKnob,
                path: change.knob.display().to_string(),
                old_value: change.old.clone(),
            };
            let id = match journal.record(owner, &record) {
                Ok(id) => id,
                Err(e) => return Err(run.abort(switch, journal, e.into())),
            };
            run.journaled.push(id);
            if let Err(e) = cgroupfs::write_knob(&change.knob, &change.new) {
                let e = io_err("writing", &change.knob)(e);
                return Err(run.abort(switch, journal, e));
            }
            let still_armed = switch.wrote(Knob {
                path: change.knob.clone(),
                old_value: change.old,
            });
            if !still_armed {
                let e = unusable(&self.cgroup, "disarmed while starting (emergency stop)");
                return Err(run.abort(switch, journal, e));
            }
            tracing::info!(knob = %change.knob.display(), value = %change.new, "tightened");
        }
        Ok(run)
    }
}

/// A running resource pressure: the journal entries of its knobs (the knob values themselves
/// are in its switch).
#[derive(Debug)]
pub struct Run {
    cgroup: PathBuf,
    journaled: Vec<i64>,
    knobs: Arc<Knobs>,
    released: bool,
}

impl Run {
    /// `injected` = knobs tightened.
    pub fn counters(&self) -> SlotCounters {
        SlotCounters {
            injected: self.journaled.len() as u64,
            ..SlotCounters::default()
        }
    }

    /// Puts every knob back (through the switch, idempotent), marks the journal entries undone
    /// and gives the cgroup back. Every step is tried; the first error is returned.
    pub fn release(
        mut self,
        switch: &HostSwitch,
        journal: &dyn HostJournal,
    ) -> Result<SlotCounters, HostFaultError> {
        let counters = self.counters();
        let restored = switch
            .disarm()
            .map_err(|e| unusable(&self.cgroup, e.to_string()));
        let mut first = restored.err();
        if first.is_none() {
            for id in &self.journaled {
                if let Err(e) = journal.undone(*id) {
                    first.get_or_insert(e.into());
                }
            }
        }
        self.knobs.give_back(&self.cgroup);
        self.released = true;
        first.map_or(Ok(counters), Err)
    }

    /// Undoes a start that failed part-way and returns its error.
    fn abort(
        self,
        switch: &HostSwitch,
        journal: &dyn HostJournal,
        e: HostFaultError,
    ) -> HostFaultError {
        if let Err(undo) = self.release(switch, journal) {
            tracing::error!(error = %undo, "putting knobs back after a failed start");
        }
        e
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.released {
            // Released by `release`; a run dropped otherwise still gives its cgroup back (its
            // knobs stay journaled and are put back by the switch or at the next start).
            self.knobs.give_back(&self.cgroup);
        }
    }
}

fn knob(target: &Path, file: &str, controller: &str) -> Result<PathBuf, HostFaultError> {
    let path = target.join(file);
    if path.exists() {
        Ok(path)
    } else {
        Err(HostFaultError::Unusable {
            path,
            reason: format!(
                "no such knob: the {controller} controller is not enabled for this cgroup \
                 (add +{controller} to its parent's cgroup.subtree_control)"
            ),
        })
    }
}

fn cpus() -> Result<u32, HostFaultError> {
    cgroupfs::online_cpus().map_err(io_err(
        "reading",
        Path::new("/sys/devices/system/cpu/online"),
    ))
}

/// `cpu.max` for `share` of what `old` allows ("max" = every online CPU).
fn cpu_max(old: &str, share: f64, cpus: u32) -> Option<String> {
    let (quota, period) = old.split_once(' ')?;
    let period: u64 = period.trim().parse().ok()?;
    let allowed = match quota {
        "max" => period * u64::from(cpus),
        q => q.parse().ok()?,
    };
    let quota = ((allowed as f64 * share).round() as u64).max(MIN_CPU_QUOTA_US);
    Some(format!("{quota} {period}"))
}

/// `memory.high` for `share` of `base`, page-aligned, never looser than `old`.
fn memory_high(base: u64, share: f64, old: Option<u64>) -> u64 {
    let new = (((base as f64 * share) as u64) & !4095).max(MIN_MEMORY_HIGH);
    old.map_or(new, |o| o.min(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::MemoryJournal;

    #[test]
    fn cpu_max_scales_the_current_allowance() {
        assert_eq!(
            cpu_max("max 100000", 0.5, 2).as_deref(),
            Some("100000 100000")
        );
        assert_eq!(
            cpu_max("50000 100000", 0.5, 8).as_deref(),
            Some("25000 100000")
        );
        assert_eq!(
            cpu_max("max 100000", 0.001, 1).as_deref(),
            Some("1000 100000")
        );
        assert_eq!(cpu_max("garbage", 0.5, 1), None);
    }

    #[test]
    fn memory_high_is_page_aligned_floored_and_never_looser() {
        assert_eq!(memory_high(1 << 30, 0.5, None), 1 << 29);
        assert_eq!(memory_high(1 << 30, 0.5, Some(1 << 28)), 1 << 28);
        assert_eq!(memory_high(1 << 20, 0.5, None), MIN_MEMORY_HIGH);
        assert_eq!(memory_high(100_000_000, 0.333, None) % 4096, 0);
    }

    /// A plain directory standing in for a cgroup, its `cpu.max` at `max 100000`: the logic,
    /// not the kernel (the VM tier runs the same on real cgroup v2 knobs). Removed on drop.
    struct KnobDir(PathBuf);

    impl KnobDir {
        fn new(tag: &str) -> Self {
            let name = format!("chaos-pressure-{tag}-{}", std::process::id());
            let dir = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cpu.max"), "max 100000\n").unwrap();
            Self(dir)
        }

        /// A plan halving the cpu share.
        fn plan(&self, knobs: &Knobs) -> Result<Plan, HostFaultError> {
            Plan::new(&self.0, Some(0.5), None, knobs)
        }

        fn cpu_max_now(&self) -> String {
            cgroupfs::read_knob(&self.0.join("cpu.max")).unwrap()
        }
    }

    impl Drop for KnobDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_second_pressure_on_one_cgroup_is_refused_and_stop_restores_the_original() {
        let dir = KnobDir::new("second");
        let knobs = Arc::new(Knobs::default());
        let journal = MemoryJournal::default();
        let first = dir.plan(&knobs).unwrap();
        assert_eq!(first.describe().len(), 1);
        let switch = HostSwitch::new();
        let run = first.start(&switch, &journal, &knobs, "a").unwrap();
        assert_ne!(dir.cpu_max_now(), "max 100000");
        // Planned or started, a second pressure on the same cgroup is refused.
        let second = dir.plan(&knobs).unwrap_err();
        assert!(
            second.to_string().contains("another resource_exhaustion"),
            "{second}"
        );
        assert_eq!(journal.pending().unwrap().len(), 1);
        let counters = run.release(&switch, &journal).unwrap();
        assert_eq!(counters.injected, 1);
        assert_eq!(dir.cpu_max_now(), "max 100000");
        assert!(journal.pending().unwrap().is_empty());
        // Given back: a new pressure may start.
        dir.plan(&knobs).unwrap();
    }

    #[test]
    fn a_disarm_during_the_start_puts_back_what_was_written() {
        let dir = KnobDir::new("disarmed");
        let knobs = Arc::new(Knobs::default());
        let journal = MemoryJournal::default();
        let switch = HostSwitch::new();
        switch.disarm().unwrap();
        let plan = dir.plan(&knobs).unwrap();
        let e = plan.start(&switch, &journal, &knobs, "a").unwrap_err();
        assert!(e.to_string().contains("disarmed while starting"), "{e}");
        assert_eq!(dir.cpu_max_now(), "max 100000");
        assert!(journal.pending().unwrap().is_empty());
        dir.plan(&knobs).unwrap();
    }
}
