//! [`SlotMaps`]: the slot configurations, fault tickets and counters of the loaded object, on
//! descriptors of their own, read and written with raw `bpf()` map commands that take `&self`.
//! Disarming is one of these writes; it never waits for a lock, whatever else the engine is
//! doing (attaching programs, talking netlink, resolving paths).

use std::os::fd::{AsFd as _, OwnedFd};

use aya::{Ebpf, maps::Map};
use chaos_common::{
    MAP_COUNTERS, MAP_FAULT_TICKETS, MAP_NOTES, MAP_SLOTS, MAX_SLOTS, NOTE_KINDS, SlotConfig,
    SlotCounters,
};

use super::{KernelError, sys};

/// The slot maps of one loaded object.
#[derive(Debug)]
pub struct SlotMaps {
    slots: OwnedFd,
    tickets: OwnedFd,
    counters: OwnedFd,
    /// The programs' rare-event counts (`MAP_NOTES`): a slot's are zeroed with its tickets, so
    /// that each arm logs its own events.
    notes: OwnedFd,
    /// Possible CPUs: the number of values of a per-CPU map element.
    nr_cpus: usize,
}

/// A value's bytes, as the kernel reads them.
fn bytes<T: aya::Pod>(value: &T) -> &[u8] {
    // SAFETY: `T: Pod` is `#[repr(C)]` plain data with explicit padding (chaos-common asserts
    // every size), so all `size_of::<T>()` bytes are initialized; the slice borrows `value`.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(value).cast(), size_of::<T>()) }
}

impl SlotMaps {
    /// Duplicates the descriptors of the slot maps of `ebpf`.
    pub(super) fn new(ebpf: &Ebpf) -> Result<Self, KernelError> {
        let fd = |name: &'static str| -> Result<OwnedFd, KernelError> {
            match ebpf.map(name) {
                Some(Map::Array(data) | Map::PerCpuArray(data)) => data
                    .fd()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|source| KernelError::Io {
                        what: "duplicating a map descriptor",
                        source,
                    }),
                _ => Err(KernelError::MissingMap(name)),
            }
        };
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, e)| KernelError::Cpus(e))?;
        Ok(Self {
            slots: fd(MAP_SLOTS)?,
            tickets: fd(MAP_FAULT_TICKETS)?,
            counters: fd(MAP_COUNTERS)?,
            notes: fd(MAP_NOTES)?,
            nr_cpus,
        })
    }

    /// Writes a slot's configuration in one map update; with `cfg.armed == 0` this is the kill
    /// switch.
    pub fn write_slot(&self, slot: u32, cfg: &SlotConfig) -> Result<(), KernelError> {
        debug_assert!(slot < MAX_SLOTS);
        sys::map_update(&self.slots, slot, bytes(cfg)).map_err(|source| KernelError::MapIo {
            map: MAP_SLOTS,
            source,
        })
    }

    /// The kill switch: writes an all-zero (disarmed) configuration into `slot`. Every program
    /// reads `armed` first, so from this write on the slot injects nothing.
    pub fn disarm(&self, slot: u32) -> Result<(), KernelError> {
        self.write_slot(slot, &SlotConfig::default())
    }

    /// Zeroes a slot's fault tickets, counters and rare-event counts. Only call while the slot
    /// is disarmed.
    pub fn reset_slot(&self, slot: u32) -> Result<(), KernelError> {
        sys::map_update(&self.tickets, slot, &0u64.to_ne_bytes()).map_err(|source| {
            KernelError::MapIo {
                map: MAP_FAULT_TICKETS,
                source,
            }
        })?;
        for note in slot * NOTE_KINDS..(slot + 1) * NOTE_KINDS {
            sys::map_update(&self.notes, note, &0u64.to_ne_bytes()).map_err(|source| {
                KernelError::MapIo {
                    map: MAP_NOTES,
                    source,
                }
            })?;
        }
        let zeros = vec![0u8; self.per_cpu_len()];
        sys::map_update(&self.counters, slot, &zeros).map_err(|source| KernelError::MapIo {
            map: MAP_COUNTERS,
            source,
        })
    }

    /// A slot armed with the cap `max_faults`: `seen` and `matched` summed over all CPUs,
    /// `injected` and `capped` from its fault ticket (exact; see [`SlotCounters`]).
    pub fn counters(&self, slot: u32, max_faults: u64) -> Result<SlotCounters, KernelError> {
        let mut ticket = [0u8; 8];
        sys::map_lookup(&self.tickets, slot, &mut ticket).map_err(|source| KernelError::MapIo {
            map: MAP_FAULT_TICKETS,
            source,
        })?;
        let tickets = u64::from_ne_bytes(ticket);
        let mut raw = vec![0u8; self.per_cpu_len()];
        sys::map_lookup(&self.counters, slot, &mut raw).map_err(|source| KernelError::MapIo {
            map: MAP_COUNTERS,
            source,
        })?;
        let mut sum = SlotCounters::default();
        for cpu in raw.chunks_exact(stride()) {
            let word = |i: usize| {
                let b: [u8; 8] = cpu[i * 8..i * 8 + 8].try_into().unwrap_or_default();
                u64::from_ne_bytes(b)
            };
            sum.seen += word(0);
            sum.matched += word(1);
        }
        sum.injected = tickets.min(max_faults);
        sum.capped = tickets - sum.injected;
        Ok(sum)
    }

    fn per_cpu_len(&self) -> usize {
        stride() * self.nr_cpus
    }
}

/// The kernel lays out one per-CPU value every `round_up(value_size, 8)` bytes.
fn stride() -> usize {
    size_of::<SlotCounters>().next_multiple_of(8)
}

const _: () = assert!(size_of::<SlotCounters>() == 32, "four u64 counters");
