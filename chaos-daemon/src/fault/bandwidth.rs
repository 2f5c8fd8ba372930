//! The bandwidth limit in the kernel: the rate program's [`TcConfig`] (rate, the bucket as
//! time, the horizon; the engine fills in the target cgroup) on one device under `fq`, as the
//! latency fault's delay program.

use std::time::Duration;

use chaos_api::experiment::BandwidthLimit;
use chaos_common::TcConfig;

use super::latency::{LatencyPlan, nanos};
use crate::ebpf::tc::TcProgram;

/// A packet that would wait longer than this for the rate is dropped (silently: the sender
/// sees a loss, as from a full `tbf` queue) instead of queued; `fq`'s horizon is sized for it.
pub const HORIZON: Duration = Duration::from_secs(1);

/// The kernel plan of a validated bandwidth limit.
pub fn plan(limit: &BandwidthLimit) -> LatencyPlan {
    let rate_bps = limit.rate.bits_per_sec.max(1);
    let burst_ns = u128::from(limit.burst.0) * 8_000_000_000 / u128::from(rate_bps);
    LatencyPlan {
        program: TcProgram::Rate,
        config: TcConfig {
            rate_bps,
            burst_ns: u64::try_from(burst_ns).unwrap_or(u64::MAX),
            horizon_ns: nanos(HORIZON),
            ..TcConfig::default()
        },
        interface: limit.interface.clone(),
        max_delay: HORIZON,
    }
}

#[cfg(test)]
mod tests {
    use chaos_api::experiment::{Bytes, Rate};

    use super::*;

    #[test]
    fn plan_carries_the_rate_the_bucket_as_time_and_the_horizon() {
        let p = plan(&BandwidthLimit {
            rate: Rate::from_bps(8_000_000),
            burst: Bytes(32 * 1024),
            interface: Some("eth0".into()),
        });
        assert_eq!(p.program, TcProgram::Rate);
        assert_eq!(p.config.rate_bps, 8_000_000);
        // 32 KiB at 1 MB/s.
        assert_eq!(p.config.burst_ns, 32_768_000);
        assert_eq!(p.config.horizon_ns, 1_000_000_000);
        assert_eq!(p.config.delay_ns, 0, "no delay of its own");
        assert_eq!(p.config.target_count, 0, "the engine fills in the targets");
        assert_eq!(p.max_delay, HORIZON);
        assert_eq!(p.interface.as_deref(), Some("eth0"));
    }
}
