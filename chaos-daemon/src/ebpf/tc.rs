//! The tc egress delay programs (`lat_eg_<slot>`): per-slot latency parameters in the
//! `CHAOS_LATENCY` map and attaching a slot's copy to a network device's egress. aya uses a tcx
//! link on 6.6+ and a legacy cls_bpf filter (which needs the `clsact` qdisc) before.

use aya::{
    maps::Array,
    programs::{Link as _, SchedClassifier, TcAttachType, tc::SchedClassifierLink},
    util::KernelVersion,
};
use chaos_common::{LatencyConfig, MAP_LATENCY, MAX_SLOTS};

use super::{Kernel, KernelError};

/// Name of the delay program copy for `slot` (see `chaos-ebpf/src/latency.rs`).
pub fn latency_program_name(slot: u32) -> String {
    format!("lat_eg_{slot}")
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
    /// Writes a slot's latency parameters (delay, jitter, distribution, target cgroup).
    pub fn write_latency(&mut self, slot: u32, cfg: &LatencyConfig) -> Result<(), KernelError> {
        let map = self
            .ebpf
            .map_mut(MAP_LATENCY)
            .ok_or(KernelError::MissingMap(MAP_LATENCY))?;
        let mut array: Array<_, LatencyConfig> =
            Array::try_from(map).map_err(|source| KernelError::Map {
                map: MAP_LATENCY,
                source,
            })?;
        array.set(slot, cfg, 0).map_err(|source| KernelError::Map {
            map: MAP_LATENCY,
            source,
        })
    }

    /// Loads (once) and attaches `slot`'s delay program to the egress of `interface` (in the
    /// calling thread's network namespace), after any program already there.
    pub fn attach_tc_egress(
        &mut self,
        slot: u32,
        interface: &str,
    ) -> Result<TcAttachment, KernelError> {
        debug_assert!(slot < MAX_SLOTS);
        let name = latency_program_name(slot);
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
