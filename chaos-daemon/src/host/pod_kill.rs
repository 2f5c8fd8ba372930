//! Pod deletion: SIGKILL every process of a pod or container with `cgroup.kill`, once or every
//! interval, on a worker thread of its own (a kill that waits for a frozen tree never holds up
//! anything else). The kubelet restarts what was killed.
//!
//! Only pods and containers are killed: the target must be a pod cgroup, a container cgroup, or
//! a cgroup the operator allowed by name (`experiments.pod_deletion.allowed_cgroups`), whose
//! pods (else containers, else the cgroup itself) are the units killed. Each unit killed counts
//! one against the cap (`max_pods_deleted`, `max_pods`, the budget at `cost_per_pod`): a parent
//! with three pods costs three pods, and the cap is exact because units are killed one by one.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use chaos_api::config::wildcard_match;
use chaos_common::{SlotCounters, THRESHOLD_ALWAYS};

use super::{HostFaultError, io_err, random_u64, unusable};
use crate::{
    cgroupfs,
    switch::HostSwitch,
    sync::lock,
    target::{container_id_of, pod_uid_of},
};

/// How long a kill may take before it is reported as failed.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How deep the search for pods and containers below an allowed cgroup goes.
const MAX_DEPTH: usize = 10;

/// What a pod deletion kills, one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Pod cgroups (kubelet's `pod<uid>` or `...-pod<uid>.slice`).
    Pod,
    /// Container cgroups (`<runtime>-<id>.scope` or `<id>`).
    Container,
    /// The target cgroup itself (an allowed cgroup with neither pods nor containers).
    Cgroup,
}

impl Unit {
    fn of(name: &str) -> Option<Self> {
        if pod_uid_of(name).is_some() {
            Some(Self::Pod)
        } else if container_id_of(name).is_some() {
            Some(Self::Container)
        } else {
            None
        }
    }

    /// "pod", "container" or "cgroup".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Container => "container",
            Self::Cgroup => "cgroup",
        }
    }
}

/// A checked pod deletion, ready to start.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Each target with what is killed in it.
    targets: Vec<(PathBuf, Unit)>,
    interval: Option<Duration>,
    max: u64,
    threshold: u64,
    duration: Duration,
}

impl Plan {
    /// Checks that every one of `targets` may be killed (a pod, a container, or a cgroup named
    /// in `allowed`) and plans the kills: every `interval` (`None`: once) for `duration`, each
    /// unit with probability `threshold / THRESHOLD_ALWAYS`, at most `max` units in all.
    pub fn new(
        targets: &[&Path],
        allowed: &[String],
        interval: Option<Duration>,
        max: u64,
        threshold: u64,
        duration: Duration,
    ) -> Result<Self, HostFaultError> {
        let targets = targets
            .iter()
            .map(|target| {
                let unit = match Unit::of(name_of(target)) {
                    Some(unit) => unit,
                    None if allowed.iter().any(|p| wildcard_match(p, name_of(target))) => {
                        units_below(target).0
                    }
                    None => {
                        return Err(unusable(
                            target,
                            "not a pod or a container cgroup: a pod deletion kills only pods \
                             and containers, or cgroups named in \
                             experiments.pod_deletion.allowed_cgroups",
                        ));
                    }
                };
                Ok((target.to_path_buf(), unit))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            targets,
            interval,
            max,
            threshold,
            duration,
        })
    }

    /// What a start would do, for the plan shown to the user.
    pub fn describe(&self) -> Vec<String> {
        let units = self.units();
        let every = match self.interval {
            Some(i) => format!("every {}", humantime::format_duration(i)),
            None => "once".to_owned(),
        };
        let unit = match self.targets.as_slice() {
            [(_, first), rest @ ..] if rest.iter().all(|(_, u)| u == first) => first.as_str(),
            _ => "unit",
        };
        let mut lines = vec![format!(
            "cgroup.kill {every}, at most {} {unit}s in all; {} {unit}(s) now:",
            cap_text(self.max),
            units.len(),
        )];
        lines.extend(units.iter().map(|u| format!("  {}", u.display())));
        lines
    }

    /// The units to kill now: each target that is a pod or container itself, else the units
    /// below it.
    fn units(&self) -> Vec<PathBuf> {
        self.targets
            .iter()
            .flat_map(|(target, unit)| match unit {
                Unit::Pod | Unit::Container if Unit::of(name_of(target)).is_some() => {
                    vec![target.clone()]
                }
                _ => units_below(target).1,
            })
            .collect()
    }

    /// Starts the worker thread; it kills at once, then every interval, until disarmed, the
    /// duration ends or the cap is reached.
    pub fn start(self, switch: Arc<HostSwitch>, name: &str) -> Result<Run, HostFaultError> {
        let state = Arc::new(State::default());
        let worker = {
            let state = state.clone();
            let switch = switch.clone();
            std::thread::Builder::new()
                .name(format!("pod-kill-{name}"))
                .spawn(move || self.work(&switch, &state))
                .map_err(io_err("starting the pod-kill worker for", Path::new(name)))?
        };
        Ok(Run {
            state,
            worker: Some(worker),
        })
    }

    fn work(&self, switch: &HostSwitch, state: &State) {
        let deadline = Instant::now() + self.duration;
        loop {
            if !switch.armed() || Instant::now() >= deadline {
                break;
            }
            let next = self.interval.map(|i| Instant::now() + i);
            state.seen.fetch_add(1, Ordering::Relaxed);
            self.round(switch, state);
            let Some(next) = next else { break };
            if state.injected.load(Ordering::Relaxed) >= self.max
                || !switch.sleep_until(next.min(deadline))
            {
                break;
            }
        }
        state.finished.store(true, Ordering::SeqCst);
    }

    /// One round: every populated unit is killed with the fault's probability, while the cap
    /// allows and the switch is armed.
    fn round(&self, switch: &HostSwitch, state: &State) {
        for unit in self.units() {
            if !cgroupfs::populated(&unit).unwrap_or(false) {
                continue;
            }
            state.matched.fetch_add(1, Ordering::Relaxed);
            if state.injected.load(Ordering::Relaxed) >= self.max {
                state.capped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Same rule as the kernel programs: inject when a uniform draw is below the
            // threshold.
            if random_u64() % THRESHOLD_ALWAYS >= self.threshold {
                continue;
            }
            // The last check before acting: a disarm that came meanwhile wins.
            if !switch.armed() {
                return;
            }
            match cgroupfs::kill_tree(&unit, KILL_WAIT, || switch.armed()) {
                Ok(processes) => {
                    state.injected.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(unit = %unit.display(), processes, "killed");
                }
                Err(e) => {
                    // cgroup.kill was written (or the unit vanished): count what was sent.
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        state.injected.fetch_add(1, Ordering::Relaxed);
                    }
                    let message = format!("killing {}: {e}", unit.display());
                    tracing::error!("{message}");
                    lock(&state.errors).push(message);
                }
            }
        }
    }
}

fn cap_text(max: u64) -> String {
    if max == u64::MAX {
        "unlimited".to_owned()
    } else {
        max.to_string()
    }
}

fn name_of(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

/// The units below an allowed cgroup: its pods, else its containers, else itself.
fn units_below(target: &Path) -> (Unit, Vec<PathBuf>) {
    for unit in [Unit::Pod, Unit::Container] {
        let found = find(target, unit);
        if !found.is_empty() {
            return (unit, found);
        }
    }
    (Unit::Cgroup, vec![target.to_path_buf()])
}

/// The cgroups of kind `unit` at or below `dir`, not looking inside a match.
fn find(dir: &Path, unit: Unit) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        if Unit::of(name_of(&dir)) == Some(unit) {
            found.push(dir);
            continue;
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        // Cgroups vanish while we walk; an unreadable directory is simply skipped.
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// A running pod deletion's counters, shared with its worker.
#[derive(Debug, Default)]
struct State {
    /// Rounds.
    seen: AtomicU64,
    /// Populated units found.
    matched: AtomicU64,
    /// Units killed.
    injected: AtomicU64,
    /// Units spared because the cap was reached.
    capped: AtomicU64,
    finished: AtomicBool,
    errors: Mutex<Vec<String>>,
}

/// A running pod deletion.
#[derive(Debug)]
pub struct Run {
    state: Arc<State>,
    worker: Option<JoinHandle<()>>,
}

impl Run {
    /// `seen` = rounds, `matched` = populated units found, `injected` = units killed,
    /// `capped` = units spared by the cap.
    pub fn counters(&self) -> SlotCounters {
        let s = &self.state;
        SlotCounters {
            seen: s.seen.load(Ordering::Relaxed),
            matched: s.matched.load(Ordering::Relaxed),
            injected: s.injected.load(Ordering::Relaxed),
            capped: s.capped.load(Ordering::Relaxed),
        }
    }

    /// Whether it can do nothing more: a one-shot kill that ran, a cap reached, disarmed.
    pub fn finished(&self) -> bool {
        self.state.finished.load(Ordering::SeqCst)
    }

    /// Kill failures since the last call.
    pub fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.state.errors))
    }

    /// Waits for the worker (its switch must be disarmed: it then stops within one kill's
    /// `cgroup.kill` write) and returns the final counters.
    pub fn join(mut self) -> SlotCounters {
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!("the pod-kill worker panicked");
        }
        self.counters()
    }
}
