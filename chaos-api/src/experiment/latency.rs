//! The `fault` of a `network_latency` experiment: the delay added to the target's egress
//! packets, its jitter and distribution, and the device, with their checks.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{ModelError, invalid, whole_millis};

/// Longest `fault.latency`: the largest `experiments.network_latency.max_latency_ms` a config
/// may set (the daemon's config usually allows less, and the daemon enforces it).
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// Longest device name (`IFNAMSIZ` - 1).
const MAX_INTERFACE_LEN: usize = 15;

/// `fault` of a `network_latency` experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkLatency {
    /// `latency`: the delay added to each delayed packet; 1ms to [`MAX_LATENCY`], whole
    /// milliseconds. Required.
    pub latency: Duration,
    /// `jitter`: uniform: the delay varies by up to this either way; normal: the standard
    /// deviation. 0 to `latency`, whole milliseconds. Default: 0.
    pub jitter: Duration,
    /// `distribution` of the jitter. Default: uniform.
    pub distribution: Distribution,
    /// `interface`: the device whose egress is delayed. Default: the device of the default
    /// route.
    pub interface: Option<String>,
}

impl NetworkLatency {
    pub(super) fn validate(&self) -> Result<(), ModelError> {
        if !(Duration::from_millis(1)..=MAX_LATENCY).contains(&self.latency)
            || !whole_millis(self.latency)
        {
            return Err(invalid(
                "fault.latency",
                humantime::format_duration(self.latency),
                format!(
                    "1ms to {} in whole milliseconds (the daemon's \
                     experiments.network_latency.max_latency_ms may allow less)",
                    humantime::format_duration(MAX_LATENCY)
                ),
            ));
        }
        if self.jitter > self.latency || !whole_millis(self.jitter) {
            return Err(invalid(
                "fault.jitter",
                humantime::format_duration(self.jitter),
                format!(
                    "0 to the latency ({}) in whole milliseconds",
                    humantime::format_duration(self.latency)
                ),
            ));
        }
        check_interface(self.interface.as_deref())
    }

    /// The proto's `delay_ms` and `jitter_ms` (whole milliseconds after validation).
    pub(super) fn millis(&self) -> (u64, u64) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        (ms(self.latency), ms(self.jitter))
    }
}

/// Checks `fault.interface` of the device-side faults (latency, bandwidth).
pub(super) fn check_interface(interface: Option<&str>) -> Result<(), ModelError> {
    if let Some(name) = interface
        && (name.is_empty()
            || name.len() > MAX_INTERFACE_LEN
            || name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()))
    {
        return Err(invalid(
            "fault.interface",
            format!("{name:?}"),
            "a network device name of 1 to 15 characters without '/', ':' or spaces \
             (omit it for the device of the default route)",
        ));
    }
    Ok(())
}

/// `fault.distribution` of a `network_latency` experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// `uniform` (default): the delay is uniform in `[latency - jitter, latency + jitter]`.
    #[default]
    Uniform,
    /// `normal`: about normal, mean `latency`, standard deviation `jitter`.
    Normal,
}

impl Distribution {
    /// Both distributions.
    pub const ALL: &'static [Self] = &[Self::Uniform, Self::Normal];

    /// The name as written in YAML and in the proto, e.g. `uniform`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Normal => "normal",
        }
    }
}
