//! The `filter` of an experiment: protocol, the peer's port range and networks.

use std::fmt;

use ipnet::IpNet;
use serde::Deserialize;

use super::MAX_CIDRS;
use crate::error::{ModelError, invalid};

/// `filter`: which packets or calls are eligible. Every part defaults to "all".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetFilter {
    /// `protocol`. Default: any.
    pub protocol: Protocol,
    /// `ports`: the peer's port or port range. Default: every port.
    pub ports: Option<PortRange>,
    /// `cidrs`: the peer's networks, 1 to [`MAX_CIDRS`] in the document. Empty: every address.
    pub cidrs: Vec<IpNet>,
}

impl NetFilter {
    pub(super) fn matches_everything(&self) -> bool {
        self == &Self::default()
    }

    pub(super) fn validate(&self) -> Result<(), ModelError> {
        if let Some(ports) = self.ports {
            if ports.low == 0 || ports.low > ports.high {
                return Err(invalid(
                    "filter.ports",
                    format!("\"{ports}\""),
                    PORTS_ALLOWED,
                ));
            }
            if self.protocol == Protocol::Icmp {
                return Err(invalid(
                    "filter.ports",
                    format!("\"{ports}\""),
                    "no ports with protocol icmp (ICMP has no ports)",
                ));
            }
        }
        if self.cidrs.len() > MAX_CIDRS {
            return Err(invalid(
                "filter.cidrs",
                format!("{} networks", self.cidrs.len()),
                format!("1 to {MAX_CIDRS} networks"),
            ));
        }
        Ok(())
    }
}

pub(super) const PORTS_ALLOWED: &str =
    "a port like \"80\" or a range like \"8000-8100\" (1 <= LOW <= HIGH <= 65535)";

/// `filter.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
    /// `icmp` (no ports).
    Icmp,
    /// `any` (default).
    #[default]
    Any,
}

impl Protocol {
    /// Every protocol keyword.
    pub const ALL: &'static [Self] = &[Self::Tcp, Self::Udp, Self::Icmp, Self::Any];

    /// The name as written in YAML and in the proto, e.g. `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Any => "any",
        }
    }
}

/// `filter.ports`: `"80"` (low == high) or `"8000-8100"`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port, at least 1.
    pub low: u16,
    /// Last port, at least `low`.
    pub high: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}
