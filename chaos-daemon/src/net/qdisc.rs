//! Root qdiscs over rtnetlink: read a device's root qdisc (kind + raw options), replace it,
//! delete it (the kernel then puts its default back), size and install `fq` for a delay, add
//! the `clsact` qdisc that legacy tc programs need, and probe whether the kernel has `sch_fq`.

use std::time::Duration;

use super::netlink::{
    Message, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NetlinkError, Socket, attrs,
};

const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TC_H_ROOT: u32 = 0xFFFF_FFFF;
/// Parent of the `ingress` / `clsact` qdisc.
pub const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
const CLSACT_HANDLE: u32 = 0xFFFF_0000;

const TCA_FQ_PLIMIT: u16 = 1;
const TCA_FQ_FLOW_PLIMIT: u16 = 2;
const TCA_FQ_HORIZON: u16 = 14;
const TCA_FQ_HORIZON_DROP: u16 = 15;

/// Root qdisc kinds the kernel picks by itself: restoring one means deleting ours.
pub const DEFAULT_KINDS: [&str; 4] = ["noqueue", "pfifo_fast", "mq", "noop"];
/// Classless kinds whose whole state is their kind and options, so they can be re-created
/// faithfully. A classful root (htb, prio, ...) has classes and filters we would lose.
pub const RESTORABLE_KINDS: [&str; 10] = [
    "pfifo", "bfifo", "tbf", "sfq", "fq", "fq_codel", "netem", "cake", "pie", "red",
];
/// Packets per second one flow is assumed to send when sizing `fq`'s per-flow queue: at this
/// rate a flow keeps `rate x delay` packets in the queue.
pub const SIZING_PPS_PER_FLOW: u64 = 50_000;

/// A qdisc as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qdisc {
    pub kind: String,
    pub handle: u32,
    pub parent: u32,
    /// The raw `TCA_OPTIONS` payload (nested attributes or a struct, by kind).
    pub options: Vec<u8>,
}

impl Qdisc {
    /// Journal form: `kind handle-hex options-hex`.
    pub fn encode(&self) -> String {
        let hex: String = self.options.iter().map(|b| format!("{b:02x}")).collect();
        format!("{} {:x} {}", self.kind, self.handle, hex)
    }

    /// Parses [`Qdisc::encode`]'s output (as a root qdisc).
    pub fn decode(s: &str) -> Option<Self> {
        let mut it = s.split(' ');
        let kind = it.next()?.to_string();
        let handle = u32::from_str_radix(it.next()?, 16).ok()?;
        let hex = it.next().unwrap_or("");
        if !hex.len().is_multiple_of(2) || kind.is_empty() {
            return None;
        }
        let options = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Self {
            kind,
            handle,
            parent: TC_H_ROOT,
            options,
        })
    }

    /// What a device without a reported root has: no queue.
    pub fn noqueue() -> Self {
        Self {
            kind: "noqueue".into(),
            handle: 0,
            parent: TC_H_ROOT,
            options: Vec::new(),
        }
    }

    /// Whether restoring this root means deleting whatever replaced it.
    pub fn is_default(&self) -> bool {
        DEFAULT_KINDS.contains(&self.kind.as_str())
    }
}

/// `struct tcmsg`: family, pads, ifindex, handle, parent, info.
fn tcmsg(ifindex: u32, handle: u32, parent: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0] = libc::AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    b[8..12].copy_from_slice(&handle.to_ne_bytes());
    b[12..16].copy_from_slice(&parent.to_ne_bytes());
    b
}

/// Every qdisc of device `ifindex`.
pub fn qdiscs(sock: &mut Socket, ifindex: u32) -> Result<Vec<Qdisc>, NetlinkError> {
    let msg = Message::new(RTM_GETQDISC, NLM_F_DUMP, &tcmsg(ifindex, 0, 0));
    let mut out = Vec::new();
    for reply in sock.request(msg, "listing qdiscs")? {
        let Some(hdr) = reply.get(..20) else { continue };
        let idx = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if idx != ifindex {
            continue;
        }
        let handle = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
        let parent = u32::from_ne_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
        let mut q = Qdisc {
            kind: String::new(),
            handle,
            parent,
            options: Vec::new(),
        };
        for (ty, data) in attrs(&reply[20..]) {
            match ty {
                TCA_KIND => q.kind = String::from_utf8_lossy(data).trim_end_matches('\0').into(),
                TCA_OPTIONS => q.options = data.to_vec(),
                _ => {}
            }
        }
        out.push(q);
    }
    Ok(out)
}

/// The root qdisc of `ifindex`, if the kernel reports one.
pub fn root(sock: &mut Socket, ifindex: u32) -> Result<Option<Qdisc>, NetlinkError> {
    Ok(qdiscs(sock, ifindex)?
        .into_iter()
        .find(|q| q.parent == TC_H_ROOT))
}

/// Creates or replaces the root qdisc of `ifindex` with `kind` and raw `options`.
pub fn replace_root(
    sock: &mut Socket,
    ifindex: u32,
    kind: &str,
    handle: u32,
    options: &[u8],
) -> Result<(), NetlinkError> {
    let mut msg = Message::new(
        RTM_NEWQDISC,
        NLM_F_CREATE | NLM_F_REPLACE,
        &tcmsg(ifindex, handle, TC_H_ROOT),
    );
    msg.attr_str(TCA_KIND, kind);
    if !options.is_empty() {
        msg.attr(TCA_OPTIONS, options);
    }
    sock.request(msg, "replacing the root qdisc").map(drop)
}

/// Deletes the root qdisc of `ifindex`; the kernel attaches the device's default again.
pub fn delete_root(sock: &mut Socket, ifindex: u32) -> Result<(), NetlinkError> {
    let msg = Message::new(RTM_DELQDISC, 0, &tcmsg(ifindex, 0, TC_H_ROOT));
    sock.request(msg, "deleting the root qdisc").map(drop)
}

/// Puts `saved` back as the root of `ifindex`: deletes the current root when `saved` is a
/// kernel default, re-creates it otherwise. Does nothing when it is already in place.
pub fn restore_root(sock: &mut Socket, ifindex: u32, saved: &Qdisc) -> Result<(), NetlinkError> {
    let current = root(sock, ifindex)?;
    if let Some(cur) = &current
        && cur.kind == saved.kind
        && (saved.is_default() || cur.options == saved.options)
    {
        return Ok(());
    }
    if saved.is_default() {
        match current {
            Some(cur) if !cur.is_default() => delete_root(sock, ifindex),
            _ => Ok(()),
        }
    } else {
        replace_root(sock, ifindex, &saved.kind, saved.handle, &saved.options)
    }
}

/// `fq` options sized for packets held up to `max_delay`: per-flow limit
/// `max(100, SIZING_PPS_PER_FLOW x max_delay)`, total limit `max(10000, 10 x flow limit)`, a
/// horizon of `max_delay + 1 s` and horizon drop off (later packets are capped, not dropped).
pub fn fq_options(max_delay: Duration) -> Vec<u8> {
    let flow = (SIZING_PPS_PER_FLOW as u128 * max_delay.as_nanos() / 1_000_000_000)
        .clamp(100, 1_000_000) as u32;
    let limit = flow.saturating_mul(10).max(10_000);
    let horizon_us =
        u32::try_from((max_delay + Duration::from_secs(1)).as_micros()).unwrap_or(u32::MAX);
    let mut m = Message::new(0, 0, &[]);
    m.attr(TCA_FQ_PLIMIT, &limit.to_ne_bytes());
    m.attr(TCA_FQ_FLOW_PLIMIT, &flow.to_ne_bytes());
    m.attr(TCA_FQ_HORIZON, &horizon_us.to_ne_bytes());
    m.attr(TCA_FQ_HORIZON_DROP, &[0u8]);
    m.into_payload()
}

/// Adds the `clsact` qdisc to `ifindex`. Returns false when it (or `ingress`) was already there.
pub fn add_clsact(sock: &mut Socket, ifindex: u32) -> Result<bool, NetlinkError> {
    let mut msg = Message::new(
        RTM_NEWQDISC,
        NLM_F_CREATE | NLM_F_EXCL,
        &tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT),
    );
    msg.attr_str(TCA_KIND, "clsact");
    match sock.request(msg, "adding the clsact qdisc") {
        Ok(_) => Ok(true),
        Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes the `clsact` qdisc of `ifindex` (and every tc program attached through it).
pub fn delete_clsact(sock: &mut Socket, ifindex: u32) -> Result<(), NetlinkError> {
    let msg = Message::new(RTM_DELQDISC, 0, &tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT));
    sock.request(msg, "deleting the clsact qdisc").map(drop)
}

/// Whether the kernel can run `fq`: creates one on `lo` of a private, throwaway network
/// namespace (on a dedicated thread, so the daemon's own namespace is never touched).
/// The error is the kernel's reason, e.g. `sch_fq not available: Specified qdisc kind is
/// unknown (ENOENT)`.
pub fn probe_fq() -> Result<(), String> {
    let probe = std::thread::spawn(|| -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("sch_fq probe: creating a network namespace: {e}"))?;
        let mut sock = Socket::open().map_err(|e| format!("sch_fq probe: {e}"))?;
        // `lo` is always ifindex 1 in a new namespace.
        replace_root(
            &mut sock,
            1,
            "fq",
            0,
            &fq_options(Duration::from_millis(100)),
        )
        .map_err(|e| match e {
            NetlinkError::Kernel { errno, message, .. } => {
                format!("sch_fq not available: {message} ({errno})")
            }
            other => format!("sch_fq probe: {other}"),
        })
    });
    probe
        .join()
        .unwrap_or_else(|_| Err("sch_fq probe: the probe thread panicked".into()))
}
