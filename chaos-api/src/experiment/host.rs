//! The `fault` of the host faults, which act on the target's cgroup itself rather than on its
//! packets or calls: pod deletion (kill the cgroup tree, once or every interval) and resource
//! exhaustion (tighten `cpu.max` / `memory.high` to a share), with their checks. Neither takes a
//! `filter`.

use std::time::Duration;

use super::MAX_DURATION;
use crate::error::{ModelError, check_duration_ms, invalid};

/// Shortest `fault.interval` of a pod deletion; the daemon refuses shorter ones too.
pub const MIN_KILL_INTERVAL: Duration = Duration::from_millis(100);

/// `fault` of a `pod_deletion` experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodDeletion {
    /// Kill again this often while the target has processes, [`MIN_KILL_INTERVAL`] to 24h in
    /// whole milliseconds. Default: kill once.
    pub interval: Option<Duration>,
}

impl PodDeletion {
    pub(super) fn validate(&self) -> Result<(), ModelError> {
        if let Some(interval) = self.interval
            && !(MIN_KILL_INTERVAL..=MAX_DURATION).contains(&interval)
        {
            return Err(invalid(
                "fault.interval",
                humantime::format_duration(interval),
                format!(
                    "{} to {} (omit it to kill once)",
                    humantime::format_duration(MIN_KILL_INTERVAL),
                    humantime::format_duration(MAX_DURATION)
                ),
            ));
        }
        if let Some(interval) = self.interval {
            check_duration_ms("fault.interval", interval, MIN_KILL_INTERVAL, MAX_DURATION)?;
        }
        Ok(())
    }

    /// The proto's `interval_ms`: 0 means kill once.
    pub(super) fn interval_ms(&self) -> u64 {
        self.interval
            .map_or(0, |i| u64::try_from(i.as_millis()).unwrap_or(u64::MAX))
    }
}

/// `fault` of a `resource_exhaustion` experiment. Neither share set: the daemon's
/// `experiments.resource_exhaustion.max_cpu_usage` and `max_memory_usage`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceExhaustion {
    /// Tighten `cpu.max` to this share (more than 0, at most 1) of what the target may use now.
    pub cpu_share: Option<f64>,
    /// Tighten `memory.high` to this share (more than 0, at most 1) of its limit, or of its
    /// usage when unlimited.
    pub memory_share: Option<f64>,
}

impl ResourceExhaustion {
    pub(super) fn validate(&self, intensity: f64) -> Result<(), ModelError> {
        for (path, share) in [
            ("fault.cpu_share", self.cpu_share),
            ("fault.memory_share", self.memory_share),
        ] {
            if let Some(share) = share
                && !(share > 0.0 && share <= 1.0)
            {
                return Err(invalid(
                    path,
                    share,
                    "more than 0 and at most 1 (0.5 = half of what it may use now)",
                ));
            }
        }
        if intensity != 1.0 {
            return Err(invalid(
                "intensity",
                intensity,
                "1 (the default for resource_exhaustion): the pressure applies to the whole \
                 cgroup",
            ));
        }
        Ok(())
    }
}
