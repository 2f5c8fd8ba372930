//! The tc egress programs (delay, silent loss, HTTP errors, duplication, corruption, rate
//! limit): the per-slot target and parameters in the `CHAOS_TC` map, and attaching a slot's
//! copy to a network device's egress. aya uses a tcx link on 6.6+ and a legacy cls_bpf filter (which needs the
//! `clsact` qdisc) before.

use aya::{
    maps::Array,
    programs::{Link as _, SchedClassifier, TcAttachType, tc::SchedClassifierLink},
    util::KernelVersion,
};
use chaos_common::{MAP_TC, MAP_TC_LINK_FREE, MAX_SLOTS, MAX_TARGETS, TcConfig};

use super::{Kernel, KernelError};

/// The tc egress programs (see `chaos-ebpf/src/tc.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcProgram {
    /// EDT delay under `fq`.
    Delay,
    /// Silent loss (a redirect to no device).
    Loss,
    /// HTTP error responses (status rewrite, or a blackholed connection).
    Http,
    /// Packet duplication (a clone sent on the same device).
    Duplicate,
    /// Packet corruption (one payload byte changed).
    Corrupt,
    /// Bandwidth limit (a token bucket of departure times under `fq`).
    Rate,
}

impl TcProgram {
    /// Every tc program.
    pub const ALL: [TcProgram; 6] = [
        TcProgram::Delay,
        TcProgram::Loss,
        TcProgram::Http,
        TcProgram::Duplicate,
        TcProgram::Corrupt,
        TcProgram::Rate,
    ];

    /// Name of this program's copy for `slot`.
    pub fn name(self, slot: u32) -> String {
        match self {
            Self::Delay => format!("lat_eg_{slot}"),
            Self::Loss => format!("loss_eg_{slot}"),
            Self::Http => format!("http_eg_{slot}"),
            Self::Duplicate => format!("dup_eg_{slot}"),
            Self::Corrupt => format!("cor_eg_{slot}"),
            Self::Rate => format!("rate_eg_{slot}"),
        }
    }

    /// What the program does, for plans and listings.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Delay => "delay",
            Self::Loss => "silent loss",
            Self::Http => "HTTP status rewrite",
            Self::Duplicate => "duplication",
            Self::Corrupt => "corruption",
            Self::Rate => "rate limit",
        }
    }
}

/// Whether attaching a tc program needs the `clsact` qdisc: aya attaches through tcx links on
/// 6.6+ and through netlink cls_bpf filters on a `clsact` before.
pub fn needs_clsact() -> bool {
    KernelVersion::current().map_or(true, |v| v < KernelVersion::new(6, 6, 0))
}

/// One slot's delay program attached to one device's egress. Dropping it detaches too, but only
/// [`TcAttachment::detach`] reports a failure.
#[derive(Debug)]
pub struct TcAttachment {
    program: String,
    pub interface: String,
    link: Option<SchedClassifierLink>,
}

impl TcAttachment {
    /// Detaches the program from the device now.
    pub fn detach(mut self) -> Result<(), KernelError> {
        match self.link.take() {
            Some(link) => link.detach().map_err(|source| KernelError::Program {
                program: self.program.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

impl Kernel {
    /// Writes a slot's tc parameters and fills its targets' rate limiters' buckets (the links
    /// are free).
    pub fn write_tc(&mut self, slot: u32, cfg: &TcConfig) -> Result<(), KernelError> {
        let map = self
            .ebpf
            .map_mut(MAP_TC_LINK_FREE)
            .ok_or(KernelError::MissingMap(MAP_TC_LINK_FREE))?;
        let mut free: Array<_, u64> = Array::try_from(map).map_err(|source| KernelError::Map {
            map: MAP_TC_LINK_FREE,
            source,
        })?;
        for target in 0..MAX_TARGETS {
            free.set(slot * MAX_TARGETS + target, 0, 0)
                .map_err(|source| KernelError::Map {
                    map: MAP_TC_LINK_FREE,
                    source,
                })?;
        }
        let map = self
            .ebpf
            .map_mut(MAP_TC)
            .ok_or(KernelError::MissingMap(MAP_TC))?;
        let mut array: Array<_, TcConfig> =
            Array::try_from(map).map_err(|source| KernelError::Map {
                map: MAP_TC,
                source,
            })?;
        array.set(slot, cfg, 0).map_err(|source| KernelError::Map {
            map: MAP_TC,
            source,
        })
    }

    /// Loads (once) and attaches `slot`'s copy of `program` to the egress of `interface` (in
    /// the calling thread's network namespace), after any program already there.
    pub fn attach_tc_egress(
        &mut self,
        program: TcProgram,
        slot: u32,
        interface: &str,
    ) -> Result<TcAttachment, KernelError> {
        debug_assert!(slot < MAX_SLOTS);
        let name = program.name(slot);
        let err = |source| KernelError::Program {
            program: name.clone(),
            source,
        };
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(&name)
            .ok_or_else(|| KernelError::MissingProgram(name.clone()))?
            .try_into()
            .map_err(err)?;
        if program.fd().is_err() {
            program.load().map_err(err)?;
        }
        let id = program
            .attach(interface, TcAttachType::Egress)
            .map_err(err)?;
        let link = program.take_link(id).map_err(err)?;
        Ok(TcAttachment {
            program: name,
            interface: interface.into(),
            link: Some(link),
        })
    }
}
