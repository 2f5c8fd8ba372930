//! The hooks: turn a packet or a socket call into an [`Event`], ask [`decide`], and answer
//! with the hook's own verdict. One copy of every hook per slot is generated at the bottom.

use aya_ebpf::{
    helpers::generated::bpf_set_retval,
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr},
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use chaos_common::{FAMILY_V4, FAMILY_V6};

use crate::decide::{Event, NO_PORT, decide};

/// `cgroup_skb` verdicts.
const SKB_DROP: i32 = 0;
const SKB_PASS: i32 = 1;
/// `sock_addr` / `sock` verdicts.
const SOCK_REJECT: i32 = 0;
const SOCK_ALLOW: i32 = 1;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Reads packet bytes at an offset from the start of the network header.
pub trait NetLoad {
    fn load_net<T>(&self, offset: usize) -> Result<T, i64>;
}

impl NetLoad for SkBuffContext {
    /// `skb->data` starts at the network header in `cgroup_skb`.
    #[inline(always)]
    fn load_net<T>(&self, offset: usize) -> Result<T, i64> {
        self.load(offset)
    }
}

/// Reads the remote end of a packet.
#[inline(always)]
pub fn packet_event(ctx: &impl NetLoad, egress: bool) -> Result<Event, i64> {
    let b0: u8 = ctx.load_net(0)?;
    let (proto, family, addr, l4) = match b0 >> 4 {
        4 => {
            let proto: u8 = ctx.load_net(9)?;
            let frag: u16 = u16::from_be(ctx.load_net(6)?);
            let remote: u32 = ctx.load_net(if egress { 16 } else { 12 })?;
            // Ports exist only in the first fragment.
            let l4 = if frag & 0x1fff == 0 {
                Some(usize::from(b0 & 0xf) * 4)
            } else {
                None
            };
            (proto, FAMILY_V4, [remote, 0, 0, 0], l4)
        }
        6 => {
            // Extension headers are not walked: a packet that has them matches by address and
            // protocol-number only (documented in docs/faults.md).
            let proto: u8 = ctx.load_net(6)?;
            let remote: [u32; 4] = ctx.load_net(if egress { 24 } else { 8 })?;
            (proto, FAMILY_V6, remote, Some(40))
        }
        _ => return Err(0),
    };
    let port = match l4 {
        Some(off) if proto == IPPROTO_TCP || proto == IPPROTO_UDP => {
            let p: u16 = ctx.load_net(off + if egress { 2 } else { 0 })?;
            u32::from(u16::from_be(p))
        }
        _ => NO_PORT,
    };
    Ok(Event {
        proto: u32::from(proto),
        family,
        addr,
        port,
    })
}

#[inline(always)]
fn skb_verdict(ctx: &SkBuffContext, slot: u32, egress: bool) -> i32 {
    let Ok(ev) = packet_event(ctx, egress) else {
        return SKB_PASS;
    };
    // Egress here is the visible drop (`EPERM` to the sender); the silent one is the tc loss
    // program's.
    match decide(slot, &ev) {
        None => SKB_PASS,
        Some(_) => SKB_DROP,
    }
}

/// Fails the socket call with the slot's errno.
#[inline(always)]
fn reject(errno: u32) -> i32 {
    // SAFETY: plain helper call; it only sets the syscall's return value.
    unsafe { bpf_set_retval(-(errno as i32)) };
    SOCK_REJECT
}

#[inline(always)]
fn sock_addr_verdict(ctx: &SockAddrContext, slot: u32, v6: bool) -> i32 {
    // SAFETY: the kernel passes a valid `bpf_sock_addr` for the whole program run; the verifier
    // checks every field access.
    let sa = unsafe { &*ctx.sock_addr };
    let port = u32::from(u16::from_be(sa.user_port as u16));
    let (family, addr) = if !v6 {
        (FAMILY_V4, [sa.user_ip4, 0, 0, 0])
    } else {
        let ip6 = [
            sa.user_ip6[0],
            sa.user_ip6[1],
            sa.user_ip6[2],
            sa.user_ip6[3],
        ];
        if ip6[0] == 0 && ip6[1] == 0 && ip6[2] == u32::to_be(0xffff) {
            // ::ffff:a.b.c.d from a dual-stack socket is an IPv4 peer.
            (FAMILY_V4, [ip6[3], 0, 0, 0])
        } else {
            (FAMILY_V6, ip6)
        }
    };
    let ev = Event {
        proto: sa.protocol,
        family,
        addr,
        port,
    };
    match decide(slot, &ev) {
        Some(cfg) => reject(cfg.errno),
        None => SOCK_ALLOW,
    }
}

#[inline(always)]
fn sock_create_verdict(ctx: &SockContext, slot: u32) -> i32 {
    // SAFETY: the kernel passes a valid `bpf_sock` for the whole program run.
    let sk = unsafe { &*ctx.sock };
    let ev = Event {
        proto: sk.protocol,
        family: 0,
        addr: [0; 4],
        port: NO_PORT,
    };
    match decide(slot, &ev) {
        Some(cfg) => reject(cfg.errno),
        None => SOCK_ALLOW,
    }
}

/// Generates every hook for one slot. Names stay within the kernel's 15-character limit.
macro_rules! slot_programs {
    ($($slot:literal)*) => { pastey::paste! { $(
        #[cgroup_skb(ingress)]
        pub fn [<skb_in_ $slot>](ctx: SkBuffContext) -> i32 { skb_verdict(&ctx, $slot, false) }
        #[cgroup_skb(egress)]
        pub fn [<skb_eg_ $slot>](ctx: SkBuffContext) -> i32 { skb_verdict(&ctx, $slot, true) }
        #[cgroup_sock_addr(connect4)]
        pub fn [<connect4_ $slot>](ctx: SockAddrContext) -> i32 { sock_addr_verdict(&ctx, $slot, false) }
        #[cgroup_sock_addr(connect6)]
        pub fn [<connect6_ $slot>](ctx: SockAddrContext) -> i32 { sock_addr_verdict(&ctx, $slot, true) }
        #[cgroup_sock_addr(sendmsg4)]
        pub fn [<sendmsg4_ $slot>](ctx: SockAddrContext) -> i32 { sock_addr_verdict(&ctx, $slot, false) }
        #[cgroup_sock_addr(sendmsg6)]
        pub fn [<sendmsg6_ $slot>](ctx: SockAddrContext) -> i32 { sock_addr_verdict(&ctx, $slot, true) }
        #[cgroup_sock_addr(bind4)]
        pub fn [<bind4_ $slot>](ctx: SockAddrContext) -> i32 { sock_addr_verdict(&ctx, $slot, false) }
        #[cgroup_sock_addr(bind6)]
        pub fn [<bind6_ $slot>](ctx: SockAddrContext) -> i32 { sock_addr_verdict(&ctx, $slot, true) }
        #[cgroup_sock(sock_create)]
        pub fn [<sock_create_ $slot>](ctx: SockContext) -> i32 { sock_create_verdict(&ctx, $slot) }
    )* } };
}

// Must list 0..chaos_common::MAX_SLOTS; the daemon's object test checks that every copy exists.
slot_programs!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
