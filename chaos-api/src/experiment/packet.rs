//! The `fault` of the packet-mangling types: `packet_duplication` (no settings: a faulted
//! egress packet is sent twice, so the receiver gets it twice) and `packet_corruption`
//! ([`PacketCorruption`]: one byte of the payload of a faulted egress TCP or UDP packet is
//! changed, its checksum left wrong or fixed). Both act on the target's egress only, in a tc
//! program on its network namespace's devices; `filter` selects by the remote side, as for
//! packet_loss.

use serde::Deserialize;

use super::{NetFilter, Protocol};
use crate::error::{ModelError, invalid};

/// `fault` of a `packet_corruption` experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketCorruption {
    /// What becomes of the packet's L4 checksum. Default: wrong.
    pub checksum: CorruptChecksum,
}

impl PacketCorruption {
    pub(super) fn validate(&self, filter: &NetFilter) -> Result<(), ModelError> {
        if filter.protocol == Protocol::Icmp {
            return Err(invalid(
                "filter.protocol",
                filter.protocol.as_str(),
                "tcp, udp or any (packet_corruption changes TCP and UDP payloads)",
            ));
        }
        Ok(())
    }
}

/// `fault.checksum` of a `packet_corruption` experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorruptChecksum {
    /// `wrong` (default): as real corruption: the receiver's stack finds the checksum wrong
    /// and drops the packet (TCP retransmits it).
    #[default]
    Wrong,
    /// `fixed`: the checksum is fixed, the application reads the changed byte.
    Fixed,
}

impl CorruptChecksum {
    /// Both checksum modes.
    pub const ALL: &'static [Self] = &[Self::Wrong, Self::Fixed];

    /// The name as written in YAML and in the proto, e.g. `wrong`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wrong => "wrong",
            Self::Fixed => "fixed",
        }
    }
}
