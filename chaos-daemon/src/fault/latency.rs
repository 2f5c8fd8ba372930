//! The latency fault in the kernel: delay, jitter and distribution as the delay program's
//! [`TcConfig`] (the engine fills in the target cgroup), and the worst-case delay, which
//! sizes `fq`'s horizon. [`LatencyPlan`] is the plan of every fault paced by `fq` on one
//! device: the bandwidth limit's too (see [`super::bandwidth`]).

use std::time::Duration;

use chaos_api::experiment::{Distribution, NetworkLatency};
use chaos_common::{DIST_NORMAL, DIST_UNIFORM, TcConfig};

use crate::ebpf::tc::TcProgram;

/// The device-side parameters of a fault paced by `fq` (latency, bandwidth limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyPlan {
    /// The program: [`TcProgram::Delay`] or [`TcProgram::Rate`].
    pub program: TcProgram,
    /// Delay, jitter and distribution, or the rate; no targets until the engine resolves them.
    pub config: TcConfig,
    /// The device, or `None` for the device of the default route.
    pub interface: Option<String>,
    /// The longest delay a packet can get: `latency + jitter`, or for the normal distribution
    /// `latency + 6 x jitter` (the kernel's Irwin-Hall sample stops at 6 deviations); the
    /// limiter's horizon for a bandwidth limit.
    pub max_delay: Duration,
}

/// The kernel plan of a validated latency fault; a ramp's `largest` delay (when above the
/// armed one) sizes the worst case.
pub fn plan(latency: &NetworkLatency, largest: Option<Duration>) -> LatencyPlan {
    let spread = match latency.distribution {
        Distribution::Uniform => latency.jitter,
        Distribution::Normal => latency.jitter * 6,
    };
    LatencyPlan {
        program: TcProgram::Delay,
        config: TcConfig {
            delay_ns: nanos(latency.latency),
            jitter_ns: nanos(latency.jitter),
            distribution: match latency.distribution {
                Distribution::Uniform => DIST_UNIFORM,
                Distribution::Normal => DIST_NORMAL,
            },
            ..TcConfig::default()
        },
        interface: latency.interface.clone(),
        max_delay: largest.unwrap_or_default().max(latency.latency) + spread,
    }
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn plan_carries_nanoseconds_distribution_and_worst_case_delay() {
        let p = plan(
            &NetworkLatency {
                latency: 100 * MS,
                jitter: 10 * MS,
                distribution: Distribution::Normal,
                interface: Some("eth0".into()),
            },
            None,
        );
        assert_eq!(p.config.delay_ns, 100_000_000);
        assert_eq!(p.config.jitter_ns, 10_000_000);
        assert_eq!(p.config.distribution, DIST_NORMAL);
        assert_eq!(p.config.target_count, 0, "the engine fills in the targets");
        assert_eq!(p.max_delay, 160 * MS);
        let latency = NetworkLatency {
            latency: 20 * MS,
            jitter: 5 * MS,
            distribution: Distribution::Uniform,
            interface: None,
        };
        let p = plan(&latency, None);
        assert_eq!(
            (p.config.distribution, p.max_delay),
            (DIST_UNIFORM, 25 * MS)
        );
        // A ramp to 500 ms sizes the worst case for its largest step.
        assert_eq!(plan(&latency, Some(500 * MS)).max_delay, 505 * MS);
    }
}
