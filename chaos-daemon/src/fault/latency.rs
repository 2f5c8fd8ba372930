//! The latency fault's spec: delay, jitter and its distribution, and the device, validated and
//! turned into the kernel's [`LatencyConfig`] (the target cgroup is filled in by the engine).

use std::time::Duration;

use chaos_common::{DIST_NORMAL, DIST_UNIFORM, LatencyConfig};

use super::SpecError;

/// The longest delay (and jitter) the spec accepts at all; the daemon's config
/// (`experiments.network_latency.max_latency_ms`) usually allows less.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// How the jitter of a latency fault is distributed around the delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Distribution {
    /// Uniform in `[delay - jitter, delay + jitter]`.
    #[default]
    Uniform,
    /// Approximately normal with mean `delay` and standard deviation `jitter`.
    Normal,
}

impl Distribution {
    /// The name users write.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Normal => "normal",
        }
    }
}

impl std::str::FromStr for Distribution {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s {
            "uniform" | "" => Ok(Distribution::Uniform),
            "normal" => Ok(Distribution::Normal),
            other => Err(SpecError::new(
                "fault.distribution",
                other,
                "uniform or normal",
            )),
        }
    }
}

/// A validated latency fault, ready for the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyPlan {
    /// Delay, jitter and distribution; `cgroup_id`/`cgroup_level` are zero until the engine
    /// resolves the target.
    pub config: LatencyConfig,
    /// The device, or `None` for the device of the default route.
    pub interface: Option<String>,
    /// The longest delay a packet can get (`delay + jitter`, normal: `delay + 6 x jitter`),
    /// which sizes `fq`'s horizon and queues.
    pub max_delay: Duration,
}

/// Checks the latency fields and builds the plan.
pub fn plan(
    delay: Duration,
    jitter: Duration,
    distribution: Distribution,
    interface: Option<&str>,
) -> Result<LatencyPlan, SpecError> {
    if delay < Duration::from_millis(1) || delay > MAX_DELAY {
        return Err(SpecError::new(
            "fault.delay",
            format!("{delay:?}"),
            "from 1ms to 60s",
        ));
    }
    if jitter > delay {
        return Err(SpecError::new(
            "fault.jitter",
            format!("{jitter:?}"),
            format!("at most the delay ({delay:?})"),
        ));
    }
    if let Some(name) = interface {
        let ok = !name.is_empty()
            && name.len() < libc::IFNAMSIZ
            && !name.contains(['/', ' ', '\t', '\n', ':', '\0']);
        if !ok {
            return Err(SpecError::new(
                "fault.interface",
                format!("{name:?}"),
                "a network device name of 1 to 15 characters without '/', ':' or spaces",
            ));
        }
    }
    let spread = match distribution {
        Distribution::Uniform => jitter,
        Distribution::Normal => jitter * 6,
    };
    Ok(LatencyPlan {
        config: LatencyConfig {
            delay_ns: delay.as_nanos() as u64,
            jitter_ns: jitter.as_nanos() as u64,
            distribution: match distribution {
                Distribution::Uniform => DIST_UNIFORM,
                Distribution::Normal => DIST_NORMAL,
            },
            ..LatencyConfig::default()
        },
        interface: interface.map(str::to_string),
        max_delay: delay + spread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn plan_carries_nanoseconds_distribution_and_worst_case_delay() {
        let p = plan(100 * MS, 10 * MS, Distribution::Normal, Some("eth0")).unwrap();
        assert_eq!(p.config.delay_ns, 100_000_000);
        assert_eq!(p.config.jitter_ns, 10_000_000);
        assert_eq!(p.config.distribution, DIST_NORMAL);
        assert_eq!(p.config.cgroup_id, 0, "the engine fills in the target");
        assert_eq!(p.max_delay, 160 * MS);
        let p = plan(20 * MS, 5 * MS, Distribution::Uniform, None).unwrap();
        assert_eq!(
            (p.config.distribution, p.max_delay),
            (DIST_UNIFORM, 25 * MS)
        );
    }

    #[test]
    fn bad_fields_are_named_with_value_and_allowed() {
        let e = plan(Duration::ZERO, Duration::ZERO, Distribution::Uniform, None).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.allowed.as_str()),
            ("fault.delay", "from 1ms to 60s")
        );
        let e = plan(10 * MS, 11 * MS, Distribution::Uniform, None).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("fault.jitter", "11ms")
        );
        for bad in ["", "a/b", "sixteen-chars-xx", "eth0:1"] {
            let e = plan(10 * MS, MS, Distribution::Uniform, Some(bad)).unwrap_err();
            assert_eq!(e.field, "fault.interface", "{bad:?}");
        }
        let e = "pareto".parse::<Distribution>().unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str(), e.allowed.as_str()),
            ("fault.distribution", "pareto", "uniform or normal")
        );
        assert_eq!("normal".parse::<Distribution>(), Ok(Distribution::Normal));
    }
}
