//! Faults made by writing cgroup interface files instead of attaching kernel programs:
//! pod / container kill (`cgroup.kill`) and resource pressure (`cpu.max`, `memory.high`).
//!
//! Their kill switch is in user space: a pod kill stops killing, a resource pressure puts the
//! journaled knob values back. Every knob is journaled *before* it is written, so a daemon
//! killed in between restores it at its next start ([`crate::journal::undo_pending`]).

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use chaos_common::{SlotCounters, THRESHOLD_ALWAYS};

use crate::{
    cgroupfs,
    fault::{Fault, FaultSpec, probability_threshold},
    journal::{ChangeKind, HostChange, HostJournal, JournalError, undo_recorded},
};

/// How long a kill may take before it is reported as failed.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The smallest `cpu.max` quota the kernel accepts.
const MIN_CPU_QUOTA_US: u64 = 1000;
/// The smallest `memory.high` we set: below this the target cannot even page in its code.
const MIN_MEMORY_HIGH: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HostFaultError {
    #[error("{path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HostFaultError {
    let path = path.to_path_buf();
    move |source| HostFaultError::Io { what, path, source }
}

/// A running host fault.
pub struct HostFault {
    target: PathBuf,
    kind: Kind,
    /// `seen` = checks, `matched` = checks that found processes, `injected` = kills or knobs
    /// tightened, `capped` = kills skipped because the cap was reached.
    counters: SlotCounters,
    armed: bool,
    deadline: Instant,
}

enum Kind {
    PodKill {
        interval: Option<Duration>,
        next: Instant,
        max: u64,
        threshold: u64,
    },
    Pressure {
        /// Journal entries of the knobs written, undone in reverse order.
        changes: Vec<(i64, HostChange)>,
    },
}

impl HostFault {
    /// Starts `spec` (already planned) on `target`. A pod kill kills at once; a resource
    /// pressure journals and writes its knobs, all or nothing.
    pub fn start(
        spec: &FaultSpec,
        target: &Path,
        journal: &dyn HostJournal,
        owner: &str,
    ) -> Result<Self, HostFaultError> {
        let now = Instant::now();
        let kind = match &spec.fault {
            Fault::PodKill { interval } => Kind::PodKill {
                interval: *interval,
                next: now,
                max: spec.max_faults.unwrap_or(u64::MAX),
                threshold: probability_threshold(spec.probability).unwrap_or(THRESHOLD_ALWAYS),
            },
            Fault::ResourcePressure {
                cpu_share,
                memory_share,
            } => Kind::Pressure {
                changes: tighten(target, *cpu_share, *memory_share, journal, owner)?,
            },
            other => unreachable!("{} is not a host fault", other.kind()),
        };
        let mut fault = Self {
            target: target.to_path_buf(),
            counters: SlotCounters::default(),
            armed: true,
            deadline: now + spec.duration,
            kind,
        };
        if let Kind::Pressure { changes } = &fault.kind {
            fault.counters.injected = changes.len() as u64;
        }
        fault.poll()?;
        Ok(fault)
    }

    /// Does what is due now: a pod kill kills if its time has come and the target has
    /// processes. Returns an error if a kill failed (the fault stays armed).
    pub fn poll(&mut self) -> Result<(), HostFaultError> {
        let now = Instant::now();
        if !self.armed || now >= self.deadline {
            return Ok(());
        }
        let Kind::PodKill {
            interval,
            next,
            max,
            threshold,
        } = &mut self.kind
        else {
            return Ok(());
        };
        if now < *next {
            return Ok(());
        }
        self.counters.seen += 1;
        *next = match interval {
            Some(i) => now + *i,
            None => self.deadline,
        };
        let populated = cgroupfs::populated(&self.target)
            .map_err(io_err("reading cgroup.events of", &self.target))?;
        if !populated {
            return Ok(());
        }
        self.counters.matched += 1;
        if self.counters.injected >= *max {
            self.counters.capped += 1;
            return Ok(());
        }
        // Same rule as the kernel programs: inject when a uniform draw is below the threshold.
        if random_u64() % THRESHOLD_ALWAYS >= *threshold {
            return Ok(());
        }
        let killed = cgroupfs::kill_tree(&self.target, KILL_WAIT)
            .map_err(io_err("killing the processes of", &self.target))?;
        self.counters.injected += 1;
        tracing::info!(target = %self.target.display(), processes = killed, "killed the target's processes");
        Ok(())
    }

    /// True once nothing more can happen before the deadline: a one-shot kill that ran, or a
    /// kill cap reached.
    pub fn finished(&self) -> bool {
        match &self.kind {
            Kind::PodKill { interval, max, .. } => {
                !self.armed
                    || self.counters.injected >= *max
                    || (interval.is_none() && self.counters.seen > 0)
            }
            Kind::Pressure { .. } => !self.armed,
        }
    }

    /// The kill switch: stops killing, or puts every knob back (newest first). Idempotent.
    pub fn disarm(&mut self, journal: &dyn HostJournal) -> Result<(), HostFaultError> {
        self.armed = false;
        if let Kind::Pressure { changes } = &mut self.kind {
            while let Some((id, change)) = changes.last() {
                undo_recorded(journal, *id, change)?;
                changes.pop();
            }
        }
        Ok(())
    }

    pub fn counters(&self) -> SlotCounters {
        self.counters
    }
}

/// Journals and writes `cpu.max` and/or `memory.high`. On error, what was written is put back.
fn tighten(
    target: &Path,
    cpu_share: Option<f64>,
    memory_share: Option<f64>,
    journal: &dyn HostJournal,
    owner: &str,
) -> Result<Vec<(i64, HostChange)>, HostFaultError> {
    if cpu_share.is_none() && memory_share.is_none() {
        return Err(HostFaultError::Unusable {
            path: target.into(),
            reason: "resource pressure with neither a cpu nor a memory share changes nothing"
                .into(),
        });
    }
    let mut plan = Vec::new();
    if let Some(share) = cpu_share {
        let knob = knob(target, "cpu.max", "cpu")?;
        let old = cgroupfs::read_knob(&knob).map_err(io_err("reading", &knob))?;
        let new = cpu_max(&old, share, cpus()?).ok_or_else(|| HostFaultError::Unusable {
            path: knob.clone(),
            reason: format!("unexpected content {old:?} (want \"QUOTA|max PERIOD\")"),
        })?;
        plan.push((knob, old, new));
    }
    if let Some(share) = memory_share {
        let knob = knob(target, "memory.high", "memory")?;
        let old = cgroupfs::read_knob(&knob).map_err(io_err("reading", &knob))?;
        let max_path = target.join("memory.max");
        let limit = cgroupfs::read_knob(&max_path).map_err(io_err("reading", &max_path))?;
        let base = match limit.parse::<u64>() {
            Ok(l) => l,
            Err(_) => {
                let cur = target.join("memory.current");
                cgroupfs::read_knob(&cur)
                    .map_err(io_err("reading", &cur))?
                    .parse::<u64>()
                    .map_err(|e| HostFaultError::Unusable {
                        path: cur.clone(),
                        reason: e.to_string(),
                    })?
            }
        };
        let new = memory_high(base, share, old.parse().ok());
        plan.push((knob, old, new.to_string()));
    }
    let mut done: Vec<(i64, HostChange)> = Vec::new();
    for (knob, old, new) in plan {
        let change = HostChange {
            kind: ChangeKind::CgroupKnob,
            path: knob.display().to_string(),
            old_value: old,
        };
        let written = journal.record(owner, &change).and_then(|id| {
            done.push((id, change.clone()));
            cgroupfs::write_knob(&knob, &new).map_err(|source| JournalError::Undo {
                kind: "cgroup_knob",
                path: change.path.clone(),
                source,
            })
        });
        if let Err(e) = written {
            for (id, change) in done.iter().rev() {
                if let Err(u) = undo_recorded(journal, *id, change) {
                    tracing::error!(error = %u, "putting a knob back after a failed start");
                }
            }
            return Err(e.into());
        }
        tracing::info!(knob = %knob.display(), value = %new, "tightened");
    }
    Ok(done)
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

/// 64 random bits from the kernel's CSPRNG.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: `b` is a valid writable buffer of the length passed; getrandom writes at most
    // that many bytes. On failure (never for 8 bytes on Linux 3.17+) `b` stays zero.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
