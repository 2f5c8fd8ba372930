//! The one decision every program makes: is this event faulted?
//!
//! Order matters and is the safety model: kill switch, then kernel deadline, then filters and
//! probability, then the exact fault cap (an atomic ticket per slot).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, PerCpuArray},
};
use chaos_common::{MAX_SLOTS, SlotConfig, SlotCounters};

use crate::note;

#[map(name = "CHAOS_SLOTS")]
static SLOTS: Array<SlotConfig> = Array::with_max_entries(MAX_SLOTS, 0);

#[map(name = "CHAOS_TICKETS")]
static TICKETS: Array<u64> = Array::with_max_entries(MAX_SLOTS, 0);

#[map(name = "CHAOS_COUNTERS")]
static COUNTERS: PerCpuArray<SlotCounters> = PerCpuArray::with_max_entries(MAX_SLOTS, 0);

/// `Event::port` of an event that has no port (ICMP, a non-first fragment, `socket()`).
pub const NO_PORT: u32 = u32::MAX;

/// What a hook knows about the event it is judging.
pub struct Event {
    /// L4 protocol number (IPv4 protocol / IPv6 next header).
    pub proto: u32,
    /// `FAMILY_V4`/`FAMILY_V6`, or 0 when the event has no remote address.
    pub family: u32,
    /// Remote address, network byte order words.
    pub addr: [u32; 4],
    /// Remote port in host order, or `NO_PORT`.
    pub port: u32,
}

impl Event {
    #[inline(always)]
    fn matches(&self, cfg: &SlotConfig) -> bool {
        if !cfg.protocol_matches(self.proto) {
            return false;
        }
        let port_ok = if self.port > 0xffff {
            cfg.port_lo == 0 && cfg.port_hi == 0xffff
        } else {
            cfg.port_matches(self.port as u16)
        };
        port_ok && (self.family == 0 || cfg.addr_matches(self.family, &self.addr))
    }
}

/// `slot`'s flags when it is armed, else 0: the cheap pre-check of the global LSM programs,
/// before they ask whether the task is in the slot's cgroup.
#[inline(always)]
pub fn armed_flags(slot: u32) -> u32 {
    SLOTS
        .get(slot)
        .map_or(0, |cfg| if cfg.armed != 0 { cfg.flags } else { 0 })
}

/// Whether `slot` is armed and before its kernel deadline: what keeps a connection an HTTP
/// error fault blackholed dropping after the decision that chose it.
#[inline(always)]
pub fn live(slot: u32) -> bool {
    match SLOTS.get(slot) {
        // SAFETY: helper without arguments or memory access.
        Some(cfg) => cfg.armed != 0 && unsafe { bpf_ktime_get_ns() } < cfg.expires_at_ns,
        None => false,
    }
}

/// Returns the slot's config when this event must be faulted, `None` to let it pass.
#[inline(always)]
pub fn decide(slot: u32, ev: &Event) -> Option<&'static SlotConfig> {
    let cfg = admit(slot, ev)?;
    ticket(slot, cfg)
}

/// The first part of [`decide`]: the kill switch, the deadline, the filters and the
/// probability, counting `seen` and `matched`. A program that faults only some admitted events
/// (the bandwidth limiter: the packets it must hold) takes the [`ticket`] for those.
#[inline(always)]
pub fn admit(slot: u32, ev: &Event) -> Option<&'static SlotConfig> {
    let cfg = SLOTS.get(slot)?;
    if cfg.armed == 0 {
        return None;
    }
    // SAFETY: helper without arguments or memory access.
    if unsafe { bpf_ktime_get_ns() } >= cfg.expires_at_ns {
        note::late(slot);
        return None;
    }
    let counters = COUNTERS.get_ptr_mut(slot)?;
    // SAFETY: the pointer comes from a successful per-CPU array lookup, is valid for the whole
    // program run and is only touched by this CPU.
    let counters = unsafe { &mut *counters };
    counters.seen += 1;
    if !ev.matches(cfg) {
        return None;
    }
    counters.matched += 1;
    // SAFETY: helper without arguments or memory access.
    if u64::from(unsafe { bpf_get_prandom_u32() }) >= cfg.threshold {
        return None;
    }
    Some(cfg)
}

/// The second part of [`decide`]: the exact fault cap. `Some` = this event is faulted, `None`
/// = the cap is reached. The ticket counts both; the daemon derives `injected` and `capped`
/// from it (exact, unlike a per-CPU counter a preempted program can race).
#[inline(always)]
pub fn ticket(slot: u32, cfg: &'static SlotConfig) -> Option<&'static SlotConfig> {
    let ticket = TICKETS.get_ptr_mut(slot)?;
    // The BPF target has no `AtomicU64::fetch_add` (no CAS); the intrinsic lowers to the kernel's
    // `BPF_ATOMIC | BPF_ADD | BPF_FETCH`, whose returned old value makes the cap exact. It must be
    // SeqCst: LLVM 22's BPF backend lowers a *relaxed* fetch-add to the non-fetching `lock add`
    // and then uses the addend as the "old value" (measured: the cap never triggered). The object
    // test in chaos-daemon checks every atomic in the object carries BPF_FETCH.
    // SAFETY: the pointer comes from a successful array lookup and the value is 8-byte aligned;
    // the programs only ever touch it atomically (the daemon resets it while the slot is disarmed).
    let old = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(ticket, 1) };
    if old == cfg.max_faults {
        note::capped(slot, old);
    }
    (old < cfg.max_faults).then_some(cfg)
}
