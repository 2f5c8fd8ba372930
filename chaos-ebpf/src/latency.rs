//! The tc egress delay program: Earliest Departure Time. For a packet whose socket's cgroup is
//! the slot's target (or below it) and that the shared decision faults, it moves the packet's
//! departure time (`skb->tstamp`, `CLOCK_MONOTONIC`) into the future; the `fq` root qdisc the
//! daemon installs holds the packet until then. One copy per slot is generated at the bottom.
//!
//! The program always answers `TC_ACT_UNSPEC` ("next filter" for cls_bpf, `TCX_NEXT` for tcx),
//! so programs of other slots and other tools on the device keep running.

use core::{mem::MaybeUninit, ptr};

use aya_ebpf::{
    helpers::{
        bpf_get_prandom_u32, bpf_ktime_get_ns,
        generated::{bpf_skb_ancestor_cgroup_id, bpf_skb_load_bytes_relative, bpf_skb_set_tstamp},
    },
    macros::{classifier, map},
    maps::Array,
    programs::TcContext,
};
use chaos_common::{DIST_NORMAL, LatencyConfig, MAX_SLOTS};

use crate::{
    decide::decide,
    hooks::{NetLoad, packet_event},
};

#[map(name = "CHAOS_LATENCY")]
static LATENCY: Array<LatencyConfig> = Array::with_max_entries(MAX_SLOTS, 0);

/// `bpf_hdr_start_off::BPF_HDR_START_NET`.
const BPF_HDR_START_NET: u32 = 1;
/// `BPF_SKB_TSTAMP_DELIVERY_MONO` (renamed `BPF_SKB_CLOCK_MONOTONIC` in 6.11, same value).
const BPF_SKB_TSTAMP_DELIVERY_MONO: u32 = 1;
/// cls_bpf: continue with the next filter; tcx: `TCX_NEXT`.
const TC_ACT_UNSPEC: i32 = -1;
/// An existing departure time further out than this is not ours to extend (a stale or
/// non-monotonic stamp); the delay then counts from now.
const MAX_EXISTING_AHEAD_NS: u64 = 10_000_000_000;

impl NetLoad for TcContext {
    /// At tc `skb->data` starts at the link-layer header (or at the network header on L3
    /// devices): read relative to the network header instead, which works on both.
    #[inline(always)]
    fn load_net<T>(&self, offset: usize) -> Result<T, i64> {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: `out` is writable for `size_of::<T>()` bytes; the helper checks the packet
        // bounds and writes nothing on error.
        let rc = unsafe {
            bpf_skb_load_bytes_relative(
                self.skb.skb as *const _,
                offset as u32,
                ptr::from_mut(&mut out).cast(),
                size_of::<T>() as u32,
                BPF_HDR_START_NET,
            )
        };
        if rc == 0 {
            // SAFETY: the helper filled every byte.
            Ok(unsafe { out.assume_init() })
        } else {
            Err(rc)
        }
    }
}

/// A uniform u32 from the kernel's per-CPU PRNG.
#[inline(always)]
fn rand() -> u32 {
    // SAFETY: helper without arguments or memory access.
    unsafe { bpf_get_prandom_u32() }
}

/// The delay of one packet in ns: `delay + jitter sample`, never negative.
#[inline(always)]
fn sample_delay(lat: &LatencyConfig) -> u64 {
    let delay = lat.delay_ns as i64;
    let jitter = lat.jitter_ns as i64;
    if jitter == 0 {
        return lat.delay_ns;
    }
    let offset = if lat.distribution == DIST_NORMAL {
        // Irwin-Hall: the sum of 12 uniforms on [0, 1) minus 6 has mean 0 and variance 1.
        // Fixed point with 16 fractional bits; |z| <= 6 * 2^16, so z * jitter fits in i64 for
        // any jitter below 2^45 ns (~9.7 h).
        let mut sum: i64 = 0;
        let mut i = 0;
        while i < 12 {
            sum += i64::from(rand() >> 16);
            i += 1;
        }
        let z = sum - 6 * 65536;
        (z * jitter) >> 16
    } else {
        // Uniform on [-jitter, +jitter].
        let width = (2 * jitter + 1) as u64;
        let r = ((u64::from(rand()) << 32) | u64::from(rand())) % width;
        r as i64 - jitter
    };
    let d = delay + offset;
    if d < 0 { 0 } else { d as u64 }
}

#[inline(always)]
fn delay_verdict(ctx: &TcContext, slot: u32) -> i32 {
    let Some(lat) = LATENCY.get(slot) else {
        return TC_ACT_UNSPEC;
    };
    if lat.cgroup_id == 0 {
        return TC_ACT_UNSPEC;
    }
    // SAFETY: `skb` is the program's context pointer, valid for the whole run.
    let cg = unsafe { bpf_skb_ancestor_cgroup_id(ctx.skb.skb, lat.cgroup_level as i32) };
    if cg != lat.cgroup_id {
        return TC_ACT_UNSPEC;
    }
    let Ok(ev) = packet_event(ctx, true) else {
        return TC_ACT_UNSPEC;
    };
    // Kill switch, deadline, filters, probability and the exact cap, as for every fault.
    if decide(slot, &ev).is_none() {
        return TC_ACT_UNSPEC;
    }
    // SAFETY: helper without arguments or memory access.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: the context pointer is valid; the verifier checks the field access. At egress the
    // kernel returns the stamp as set (TCP's own EDT departure time, or 0).
    let existing = unsafe { (*ctx.skb.skb).tstamp };
    let base = if existing > now && existing - now < MAX_EXISTING_AHEAD_NS {
        existing
    } else {
        now
    };
    let at = base.saturating_add(sample_delay(lat));
    // Mark it a monotonic delivery time (5.18+) so that it survives a veth crossing into another
    // network namespace and fq reads it on the clock it expects.
    // SAFETY: the context pointer is valid; the helper only writes skb->tstamp and its type.
    unsafe { bpf_skb_set_tstamp(ctx.skb.skb, at, BPF_SKB_TSTAMP_DELIVERY_MONO) };
    TC_ACT_UNSPEC
}

/// Generates the delay program of every slot. Names stay within the kernel's 15 characters.
macro_rules! slot_programs {
    ($($slot:literal)*) => { pastey::paste! { $(
        #[classifier]
        pub fn [<lat_eg_ $slot>](ctx: TcContext) -> i32 { delay_verdict(&ctx, $slot) }
    )* } };
}

// Must list 0..chaos_common::MAX_SLOTS; the daemon's object test checks that every copy exists.
slot_programs!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
