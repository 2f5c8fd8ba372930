//! The tc egress programs, for packets whose socket's cgroup is the slot's target (or below it)
//! and that the shared decision faults. One copy of each per slot is generated at the bottom.
//!
//! * The delay program (`lat_eg_<slot>`), Earliest Departure Time: it moves the packet's
//!   departure time (`skb->tstamp`, `CLOCK_MONOTONIC`) into the future; the `fq` root qdisc the
//!   daemon installs holds the packet until then. It always answers `TC_ACT_UNSPEC` ("next
//!   filter" for cls_bpf, `TCX_NEXT` for tcx), so programs of other slots and other tools on the
//!   device keep running.
//! * The loss program (`loss_eg_<slot>`): the packet never leaves and its sender is told the
//!   send succeeded, as on a lossy link (a `cgroup_skb` egress drop, like `TC_ACT_SHOT`, is
//!   reported back to the socket: ping sees `ENOBUFS` and sends again). `TC_ACT_STOLEN` does
//!   that for cls_bpf but is `TCX_NEXT` to tcx (6.6+), so the program redirects to ifindex 0
//!   instead: for both, the kernel answers `NET_XMIT_SUCCESS` to a redirect and frees a packet
//!   whose target device does not exist (measured in chaos-daemon/tests/loss_clients.rs). Any
//!   other packet gets `TC_ACT_UNSPEC`.

use core::{mem::MaybeUninit, ptr};

use aya_ebpf::{
    helpers::{
        bpf_get_prandom_u32, bpf_ktime_get_ns,
        generated::{
            bpf_redirect, bpf_skb_ancestor_cgroup_id, bpf_skb_load_bytes_relative,
            bpf_skb_set_tstamp,
        },
    },
    macros::{classifier, map},
    maps::Array,
    programs::TcContext,
};
use chaos_common::{DIST_NORMAL, MAX_SLOTS, TcConfig};

use crate::{
    decide::decide,
    hooks::{NetLoad, packet_event},
};

#[map(name = "CHAOS_TC")]
static TC: Array<TcConfig> = Array::with_max_entries(MAX_SLOTS, 0);

/// `bpf_hdr_start_off::BPF_HDR_START_NET`.
const BPF_HDR_START_NET: u32 = 1;
/// `BPF_SKB_TSTAMP_DELIVERY_MONO` (renamed `BPF_SKB_CLOCK_MONOTONIC` in 6.11, same value).
const BPF_SKB_TSTAMP_DELIVERY_MONO: u32 = 1;
/// cls_bpf: continue with the next filter; tcx: `TCX_NEXT`.
const TC_ACT_UNSPEC: i32 = -1;
/// No device has index 0: a redirect there is freed by `skb_do_redirect`.
const NO_DEVICE: u32 = 0;
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
fn sample_delay(lat: &TcConfig) -> u64 {
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

/// The slot's tc configuration when the packet is the target's and the shared decision (kill
/// switch, deadline, filters, probability and the exact cap, as for every fault) faults it.
#[inline(always)]
fn faulted(ctx: &TcContext, slot: u32) -> Option<&'static TcConfig> {
    let tc = TC.get(slot)?;
    if tc.cgroup_id == 0 {
        return None;
    }
    // SAFETY: `skb` is the program's context pointer, valid for the whole run.
    let cg = unsafe { bpf_skb_ancestor_cgroup_id(ctx.skb.skb, tc.cgroup_level as i32) };
    if cg != tc.cgroup_id {
        return None;
    }
    let ev = packet_event(ctx, true).ok()?;
    decide(slot, &ev)?;
    Some(tc)
}

#[inline(always)]
fn loss_verdict(ctx: &TcContext, slot: u32) -> i32 {
    match faulted(ctx, slot) {
        // SAFETY: helper without memory arguments; it returns TC_ACT_REDIRECT (flags 0).
        Some(_) => unsafe { bpf_redirect(NO_DEVICE, 0) as i32 },
        None => TC_ACT_UNSPEC,
    }
}

#[inline(always)]
fn delay_verdict(ctx: &TcContext, slot: u32) -> i32 {
    let Some(lat) = faulted(ctx, slot) else {
        return TC_ACT_UNSPEC;
    };
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

/// Generates the delay and loss programs of every slot. Names stay within the kernel's 15
/// characters.
macro_rules! slot_programs {
    ($($slot:literal)*) => { pastey::paste! { $(
        #[classifier]
        pub fn [<lat_eg_ $slot>](ctx: TcContext) -> i32 { delay_verdict(&ctx, $slot) }
        #[classifier]
        pub fn [<loss_eg_ $slot>](ctx: TcContext) -> i32 { loss_verdict(&ctx, $slot) }
    )* } };
}

// Must list 0..chaos_common::MAX_SLOTS; the daemon's object test checks that every copy exists.
slot_programs!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
