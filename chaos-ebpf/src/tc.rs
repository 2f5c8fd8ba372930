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
//! * The HTTP error program (`http_eg_<slot>`): for a TCP segment from the server port range
//!   whose payload starts with an HTTP/1.x status line (`HTTP/1.1 200 `), the decision picks a
//!   configured status and the program rewrites the three digits in place, fixing the TCP
//!   checksum; or, for `timeout`, drops the segment and every later one of that connection
//!   while the slot is live (the client times out). Anything it is not sure of (another
//!   protocol, TLS, a segment that does not start with a status line, an unknown link-layer
//!   header length) is left alone.
//! * The duplication program (`dup_eg_<slot>`): a faulted packet is cloned and the clone sent
//!   out of the same device (`bpf_clone_redirect`) before the packet itself; the clone passes
//!   the device's programs again, nested on this CPU, under a per-CPU flag that keeps it from
//!   being duplicated again.
//! * The corruption program (`cor_eg_<slot>`): one random byte of a faulted TCP or UDP
//!   payload is changed; the checksum is fixed, or with `TC_FLAG_CSUM_WRONG` left wrong.
//! * The rate program (`rate_eg_<slot>`), a token bucket in departure times under `fq`, one
//!   per slot and target: the target's link is next free at `CHAOS_TB[slot * MAX_TARGETS + target]`; a packet leaves at that time (or now,
//!   when the bucket has credit) and moves it on by its length at the rate. A packet that must
//!   wait is the fault (it takes the cap's ticket); one that would wait past the horizon is
//!   dropped silently, without using the rate.

use core::{mem::MaybeUninit, ptr};

use aya_ebpf::{
    helpers::{
        bpf_get_prandom_u32, bpf_ktime_get_ns,
        generated::{
            bpf_clone_redirect, bpf_l4_csum_replace, bpf_redirect, bpf_skb_ancestor_cgroup_id,
            bpf_skb_load_bytes_relative, bpf_skb_set_tstamp, bpf_skb_store_bytes,
        },
    },
    macros::{classifier, map},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::TcContext,
};
use chaos_common::{
    DIST_NORMAL, FAMILY_V4, FAMILY_V6, FlowKey, HTTP_TIMEOUT, MAX_BLACKHOLED_FLOWS,
    MAX_HTTP_STATUSES, MAX_SLOTS, MAX_TARGETS, MAX_TC_LINKS, TC_FLAG_CSUM_WRONG, TcConfig,
};

use crate::{
    decide::{Event, admit, decide, live, ticket},
    hooks::{NetLoad, packet_event},
    note,
};

#[map(name = "CHAOS_TC")]
static TC: Array<TcConfig> = Array::with_max_entries(MAX_SLOTS, 0);

/// Each slot's bandwidth limiters, one per target: when its link is next free (see
/// `MAP_TC_LINK_FREE`).
#[map(name = "CHAOS_TB")]
static LINK_FREE: Array<u64> = Array::with_max_entries(MAX_TC_LINKS, 0);

#[map(name = "CHAOS_HTTP_BH")]
static BLACKHOLE: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(MAX_BLACKHOLED_FLOWS, 0);

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

/// The slot's tc configuration and the index of the target when the packet's socket is in one
/// of the slot's target cgroups (or below it).
#[inline(always)]
fn targeted_at(ctx: &TcContext, slot: u32) -> Option<(&'static TcConfig, u32)> {
    let tc = TC.get(slot)?;
    let mut i = 0;
    while i < MAX_TARGETS {
        if i >= tc.target_count {
            return None;
        }
        let target = &tc.targets[i as usize];
        // SAFETY: `skb` is the program's context pointer, valid for the whole run.
        let cg = unsafe { bpf_skb_ancestor_cgroup_id(ctx.skb.skb, target.level as i32) };
        if target.cgroup_id != 0 && cg == target.cgroup_id {
            return Some((tc, i));
        }
        i += 1;
    }
    None
}

/// The slot's tc configuration when the packet's socket is in one of the slot's targets.
#[inline(always)]
fn targeted(ctx: &TcContext, slot: u32) -> Option<&'static TcConfig> {
    targeted_at(ctx, slot).map(|(tc, _)| tc)
}

/// The slot's tc configuration when the packet is the target's and the shared decision (kill
/// switch, deadline, filters, probability and the exact cap, as for every fault) faults it.
#[inline(always)]
fn faulted(ctx: &TcContext, slot: u32) -> Option<&'static TcConfig> {
    let tc = targeted(ctx, slot)?;
    let ev = packet_event(ctx, true).ok()?;
    decide(slot, &ev)?;
    Some(tc)
}

/// The silent drop: the packet is freed and the sender told it was sent.
#[inline(always)]
fn vanish() -> i32 {
    // SAFETY: helper without memory arguments; it returns TC_ACT_REDIRECT (flags 0).
    unsafe { bpf_redirect(NO_DEVICE, 0) as i32 }
}

#[inline(always)]
fn loss_verdict(ctx: &TcContext, slot: u32) -> i32 {
    match faulted(ctx, slot) {
        Some(_) => vanish(),
        None => TC_ACT_UNSPEC,
    }
}

const IPPROTO_TCP: u8 = 6;
/// `bpf_l4_csum_replace` flags: the replaced field is 4 bytes.
const CSUM_FIELD_4: u64 = 4;

/// An outgoing TCP segment: its connection and where its headers are, as offsets from the
/// network header.
struct Segment {
    flow: FlowKey,
    tcp: u32,
    payload: u32,
}

/// An IP header whose L4 header follows it: IPv4 without fragmentation, or IPv6 (extension
/// headers are not walked: the protocol is the next header).
struct IpHeader {
    family: u32,
    proto: u8,
    /// Its length: where the L4 header starts, from the network header.
    len: u32,
    local: [u32; 4],
    remote: [u32; 4],
}

#[inline(always)]
fn ip_header(ctx: &TcContext) -> Option<IpHeader> {
    let b0: u8 = ctx.load_net(0).ok()?;
    match b0 >> 4 {
        4 => {
            let ihl = u32::from(b0 & 0xf) * 4;
            let proto: u8 = ctx.load_net(9).ok()?;
            let frag: u16 = u16::from_be(ctx.load_net(6).ok()?);
            // More fragments, or not the first: no L4 header to trust.
            if ihl < 20 || frag & 0x3fff != 0 {
                return None;
            }
            let src: u32 = ctx.load_net(12).ok()?;
            let dst: u32 = ctx.load_net(16).ok()?;
            Some(IpHeader {
                family: FAMILY_V4,
                proto,
                len: ihl,
                local: [src, 0, 0, 0],
                remote: [dst, 0, 0, 0],
            })
        }
        6 => Some(IpHeader {
            family: FAMILY_V6,
            proto: ctx.load_net(6).ok()?,
            len: 40,
            local: ctx.load_net(8).ok()?,
            remote: ctx.load_net(24).ok()?,
        }),
        _ => None,
    }
}

/// The TCP segment in the packet, if it is one.
#[inline(always)]
fn tcp_segment(ctx: &TcContext, slot: u32) -> Option<Segment> {
    let IpHeader {
        family,
        proto,
        len: ip_len,
        local,
        remote,
    } = ip_header(ctx)?;
    if proto != IPPROTO_TCP {
        return None;
    }
    let ports: [u16; 2] = ctx.load_net(ip_len as usize).ok()?;
    let offset: u8 = ctx.load_net(ip_len as usize + 12).ok()?;
    let doff = u32::from(offset >> 4) * 4;
    if doff < 20 {
        return None;
    }
    Some(Segment {
        flow: FlowKey {
            slot,
            family,
            local,
            remote,
            local_port: u16::from_be(ports[0]),
            remote_port: u16::from_be(ports[1]),
        },
        tcp: ip_len,
        payload: ip_len + doff,
    })
}

/// Whether `head` starts with an HTTP/1.0 or 1.1 status line: `HTTP/1.x DDD` and a space (or
/// the end of the line when the reason phrase is empty).
#[inline(always)]
fn status_line(head: &[u8; 16]) -> bool {
    let digit = |b: u8| b.is_ascii_digit();
    head[0] == b'H'
        && head[1] == b'T'
        && head[2] == b'T'
        && head[3] == b'P'
        && head[4] == b'/'
        && head[5] == b'1'
        && head[6] == b'.'
        && (head[7] == b'0' || head[7] == b'1')
        && head[8] == b' '
        && digit(head[9])
        && digit(head[10])
        && digit(head[11])
        && (head[12] == b' ' || head[12] == b'\r')
}

/// How far the network header lies from `skb->data`, which tc does not say: 0 on a device
/// without a link-layer header, 14 behind an Ethernet one (and `lo`'s). Found by comparing the
/// bytes at the network header with those at each; `None` when neither matches.
#[inline(always)]
fn link_header_len(ctx: &TcContext) -> Option<u32> {
    let net: u64 = ctx.load_net(0).ok()?;
    let at0: u64 = ctx.load(0).ok()?;
    if at0 == net {
        return Some(0);
    }
    let at14: u64 = ctx.load(14).ok()?;
    (at14 == net).then_some(14)
}

#[inline(always)]
fn http_verdict(ctx: &TcContext, slot: u32) -> i32 {
    let Some(tc) = targeted(ctx, slot) else {
        return TC_ACT_UNSPEC;
    };
    let count = tc.http_count;
    if count == 0 || count as usize > MAX_HTTP_STATUSES {
        return TC_ACT_UNSPEC;
    }
    let Some(seg) = tcp_segment(ctx, slot) else {
        return TC_ACT_UNSPEC;
    };
    let port = seg.flow.local_port;
    if port < tc.http_port_lo || port > tc.http_port_hi {
        return TC_ACT_UNSPEC;
    }
    // A connection a `timeout` chose stays dark while the experiment that chose it is live.
    // SAFETY: the map value is a plain u32 the daemon and this program only ever overwrite.
    if let Some(generation) = unsafe { BLACKHOLE.get(seg.flow) }
        && *generation == tc.generation
        && live(slot)
    {
        return vanish();
    }
    let Some(l2) = link_header_len(ctx) else {
        note::unparsed(slot, "http: a link-layer header it does not know");
        return TC_ACT_UNSPEC;
    };
    // The payload is usually in page fragments, which only the absolute load reads (the
    // relative one stops at the linear part).
    let Ok(head) = ctx.load::<[u8; 16]>((l2 + seg.payload) as usize) else {
        return TC_ACT_UNSPEC;
    };
    if !status_line(&head) {
        return TC_ACT_UNSPEC;
    }
    let ev = Event {
        proto: u32::from(IPPROTO_TCP),
        family: seg.flow.family,
        addr: seg.flow.remote,
        port: u32::from(seg.flow.remote_port),
    };
    if decide(slot, &ev).is_none() {
        return TC_ACT_UNSPEC;
    }
    let pick = rand() % count;
    // The compiler knows the remainder is below 8 and drops the bound check, but verifiers
    // (6.1, 6.12) lose the range of a remainder or product: re-read it so that the check stays.
    // SAFETY: a read of a local variable.
    let pick = unsafe { ptr::read_volatile(&pick) } as usize;
    let Some(&status) = tc.http_statuses.get(pick) else {
        return TC_ACT_UNSPEC;
    };
    if status == HTTP_TIMEOUT {
        // Best effort: a full LRU map evicts its oldest entry.
        let _ = BLACKHOLE.insert(seg.flow, tc.generation, 0);
        return vanish();
    }
    let old = u32::from_ne_bytes([head[8], head[9], head[10], head[11]]);
    let skb = ctx.skb.skb;
    // SAFETY: `status` lives on the stack for the call; the helper copies 4 bytes from it into
    // the packet (after making that part writable) and checks the offset against its length.
    let stored = unsafe {
        bpf_skb_store_bytes(
            skb as *mut _,
            l2 + seg.payload + 8,
            ptr::from_ref(&status).cast(),
            4,
            0,
        )
    };
    if stored != 0 {
        note::unparsed(slot, "http: the status could not be rewritten");
    } else {
        // The 4 bytes sit at an even offset from the TCP header: a 4-byte incremental update.
        // Under checksum offload the kernel leaves the field alone (the device sums the new
        // payload).
        // SAFETY: plain helper call on the program's packet; it checks the offset.
        unsafe {
            bpf_l4_csum_replace(
                skb as *mut _,
                l2 + seg.tcp + 16,
                u64::from(old),
                u64::from(status),
                CSUM_FIELD_4,
            )
        };
    }
    TC_ACT_UNSPEC
}

#[inline(always)]
fn delay_verdict(ctx: &TcContext, slot: u32) -> i32 {
    let Some(lat) = faulted(ctx, slot) else {
        return TC_ACT_UNSPEC;
    };
    // SAFETY: helper without arguments or memory access.
    let now = unsafe { bpf_ktime_get_ns() };
    let at = departure(ctx, now).saturating_add(sample_delay(lat));
    depart_at(ctx, at);
    TC_ACT_UNSPEC
}

/// When the packet would leave without us: the departure time it already has (TCP's own EDT
/// pacing) when that is ahead of `now` and sane, else `now`.
#[inline(always)]
fn departure(ctx: &TcContext, now: u64) -> u64 {
    // SAFETY: the context pointer is valid; the verifier checks the field access. At egress the
    // kernel returns the stamp as set (TCP's own EDT departure time, or 0).
    let existing = unsafe { (*ctx.skb.skb).tstamp };
    if existing > now && existing - now < MAX_EXISTING_AHEAD_NS {
        existing
    } else {
        now
    }
}

/// Sets the packet's departure time for `fq`.
#[inline(always)]
fn depart_at(ctx: &TcContext, at: u64) {
    // Mark it a monotonic delivery time (5.18+) so that it survives a veth crossing into another
    // network namespace and fq reads it on the clock it expects.
    // SAFETY: the context pointer is valid; the helper only writes skb->tstamp and its type.
    unsafe { bpf_skb_set_tstamp(ctx.skb.skb, at, BPF_SKB_TSTAMP_DELIVERY_MONO) };
}

/// The bandwidth limiter (see the module documentation).
#[inline(always)]
fn rate_verdict(ctx: &TcContext, slot: u32) -> i32 {
    limit_rate(ctx, slot).unwrap_or(TC_ACT_UNSPEC)
}

/// Nanoseconds per second, times 8 bits per byte.
const BIT_NS_PER_BYTE: u64 = 8_000_000_000;

/// The verdict of a packet the limiter drops, else `None` ("next").
#[inline(always)]
fn limit_rate(ctx: &TcContext, slot: u32) -> Option<i32> {
    let (tc, target) = targeted_at(ctx, slot)?;
    let ev = packet_event(ctx, true).ok()?;
    let cfg = admit(slot, &ev)?;
    // Each target has its own link, as if each sat behind its own limited interface.
    let free = LINK_FREE.get_ptr_mut(slot * MAX_TARGETS + target)?;
    if tc.rate_bps == 0 {
        return None;
    }
    // SAFETY: helper without arguments or memory access.
    let now = unsafe { bpf_ktime_get_ns() };
    let base = departure(ctx, now);
    // Bytes on the wire, as a qdisc counts them: a GSO packet's length plus the headers of its
    // other segments (`qdisc_pkt_len`, set before the tc hook runs).
    // SAFETY: the context pointer is valid; the verifier checks the field accesses.
    let (wire, len) = unsafe { ((*ctx.skb.skb).wire_len, (*ctx.skb.skb).len) };
    let len = u64::from(if wire != 0 { wire } else { len });
    let cost = len * BIT_NS_PER_BYTE / tc.rate_bps;
    // SAFETY: an array value valid for the whole run. Two CPUs may read the same value and both
    // move it on (a plain read-modify-write, as Cilium's EDT limiter): a packet's worth of rate
    // is lost now and then, never a packet.
    let free_at = unsafe { ptr::read_volatile(free) };
    // The bucket's credit: the link may have been free since at most `burst_ns` ago.
    let start = if free_at > base.saturating_sub(tc.burst_ns) {
        free_at
    } else {
        base.saturating_sub(tc.burst_ns)
    };
    if start <= base {
        // Credit left: it leaves when it would have.
        // SAFETY: as above.
        unsafe { ptr::write_volatile(free, start + cost) };
        return None;
    }
    // It must wait: that is the fault, and past the cap the limiter lets packets go.
    ticket(slot, cfg)?;
    if start - now > tc.horizon_ns {
        // A queue too long for the horizon: the packet is lost, as from a full tbf.
        return Some(vanish());
    }
    // SAFETY: as above.
    unsafe { ptr::write_volatile(free, start + cost) };
    depart_at(ctx, start);
    None
}

#[map(name = "CHAOS_DUP_NEST")]
static DUP_NESTED: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn duplicate_verdict(ctx: &TcContext, slot: u32) -> i32 {
    let Some(nested) = DUP_NESTED.get_ptr_mut(0) else {
        return TC_ACT_UNSPEC;
    };
    // SAFETY: a per-CPU value of this program's run; the nested run below is on this CPU and
    // only reads it.
    if unsafe { *nested } != 0 || faulted(ctx, slot).is_none() {
        // The clone passing again, or not faulted.
        return TC_ACT_UNSPEC;
    }
    let skb = ctx.skb.skb;
    // SAFETY: as above; the context pointer is valid for the run. The helper clones the packet
    // and sends the clone out of the same device's egress (flags 0) before it returns, in a
    // nested run of the device's tc programs that sees the flag.
    unsafe {
        *nested = 1;
        bpf_clone_redirect(skb as *mut _, (*skb).ifindex, 0);
        *nested = 0;
    }
    TC_ACT_UNSPEC
}

const IPPROTO_UDP: u8 = 17;
/// `bpf_l4_csum_replace` flags: the replaced field is 2 bytes.
const CSUM_FIELD_2: u64 = 2;
/// `BPF_F_MARK_MANGLED_0`: a UDP checksum of 0 (none) stays 0, and a result of 0 is written as
/// 0xffff.
const CSUM_MANGLED_0: u64 = 0x20;

#[inline(always)]
fn corrupt_verdict(ctx: &TcContext, slot: u32) -> i32 {
    corrupt(ctx, slot);
    TC_ACT_UNSPEC
}

/// Changes one payload byte of a faulted TCP or UDP packet: the 16-bit word holding it is
/// rewritten and the checksum updated (a no-op under checksum offload, where the device sums
/// the new payload); with [`TC_FLAG_CSUM_WRONG`] the checksum field (or, under offload, the
/// seed the device adds the payload to) is then flipped, so the checksum on the wire is wrong.
#[inline(always)]
fn corrupt(ctx: &TcContext, slot: u32) -> Option<()> {
    let tc = targeted(ctx, slot)?;
    let ip = ip_header(ctx)?;
    let (payload, csum, mangled) = match ip.proto {
        IPPROTO_TCP => {
            let offset: u8 = ctx.load_net(ip.len as usize + 12).ok()?;
            (ip.len + u32::from(offset >> 4) * 4, ip.len + 16, 0)
        }
        IPPROTO_UDP => (ip.len + 8, ip.len + 6, CSUM_MANGLED_0),
        _ => return None,
    };
    let Some(l2) = link_header_len(ctx) else {
        note::unparsed(slot, "corrupt: a link-layer header it does not know");
        return None;
    };
    let start = l2 + payload;
    // SAFETY: the context pointer is valid; the verifier checks the field access.
    let len = unsafe { (*ctx.skb.skb).len };
    if len <= start {
        return None;
    }
    let ev = packet_event(ctx, true).ok()?;
    decide(slot, &ev)?;
    let pos = rand() % (len - start);
    // Payload offsets from the L4 header are even (its length is a multiple of 4): the word is
    // a 16-bit word of the checksum.
    let word = start + (pos & !1);
    let old: u16 = ctx.load(word as usize).ok()?;
    // The byte at `pos` is the word's low byte when `pos` is even (bpfel reads little-endian).
    // Shifting a value, not indexing a stack array: older verifiers refuse the pointer
    // arithmetic the index compiles to.
    let shift = (pos & 1) * 8;
    let new = old ^ (((rand() % 255 + 1) as u16) << shift);
    let skb = ctx.skb.skb;
    // SAFETY: `new` lives on the stack for the call; the helper copies 2 bytes into the packet
    // after making that part writable, and checks the offset against its length.
    let stored =
        unsafe { bpf_skb_store_bytes(skb as *mut _, word, ptr::from_ref(&new).cast(), 2, 0) };
    if stored != 0 {
        note::unparsed(slot, "corrupt: the payload could not be rewritten");
        return None;
    }
    // SAFETY: plain helper calls on the program's packet; they check the offsets.
    unsafe {
        bpf_l4_csum_replace(
            skb as *mut _,
            l2 + csum,
            u64::from(old),
            u64::from(new),
            CSUM_FIELD_2 | mangled,
        )
    };
    if tc.flags & TC_FLAG_CSUM_WRONG != 0 {
        let field: u16 = ctx.load((l2 + csum) as usize).ok()?;
        // Never 0: that is "no checksum" for UDP over IPv4.
        let wrong = if field ^ 0x0100 == 0 {
            field ^ 0x0200
        } else {
            field ^ 0x0100
        };
        // SAFETY: as above.
        unsafe {
            bpf_skb_store_bytes(skb as *mut _, l2 + csum, ptr::from_ref(&wrong).cast(), 2, 0)
        };
    }
    Some(())
}

/// Generates the tc programs of every slot. Names stay within the kernel's 15 characters.
macro_rules! slot_programs {
    ($($slot:literal)*) => { pastey::paste! { $(
        #[classifier]
        pub fn [<lat_eg_ $slot>](ctx: TcContext) -> i32 { delay_verdict(&ctx, $slot) }
        #[classifier]
        pub fn [<loss_eg_ $slot>](ctx: TcContext) -> i32 { loss_verdict(&ctx, $slot) }
        #[classifier]
        pub fn [<http_eg_ $slot>](ctx: TcContext) -> i32 { http_verdict(&ctx, $slot) }
        #[classifier]
        pub fn [<dup_eg_ $slot>](ctx: TcContext) -> i32 { duplicate_verdict(&ctx, $slot) }
        #[classifier]
        pub fn [<cor_eg_ $slot>](ctx: TcContext) -> i32 { corrupt_verdict(&ctx, $slot) }
        #[classifier]
        pub fn [<rate_eg_ $slot>](ctx: TcContext) -> i32 { rate_verdict(&ctx, $slot) }
    )* } };
}

// Must list 0..chaos_common::MAX_SLOTS; the daemon's object test checks that every copy exists.
slot_programs!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
