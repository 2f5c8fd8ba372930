//! The ABI shared by the kernel programs (`chaos-ebpf`) and the daemon (`chaos-daemon`).
//!
//! Everything here is `#[repr(C)]`, fixed-width and explicitly padded, with its size asserted, so
//! that the kernel and user space agree byte for byte. No `bool`, `Option` or enums in map values.
//!
//! # The slot model
//!
//! Every running experiment owns one *slot* `0..MAX_SLOTS`. The kernel programs are compiled once
//! per slot (the slot index is a constant in each copy) and a copy is attached only to the cgroup
//! its experiment targets, so a packet or syscall is judged once per experiment even when cgroups
//! are nested. A program reads, in this order:
//!
//! 1. [`SlotConfig::armed`] in the [`MAP_SLOTS`] array: the kill switch. Zero means "pass".
//! 2. [`SlotConfig::expires_at_ns`] against `bpf_ktime_get_ns()`: the kernel deadline.
//! 3. the filters and the probability.
//! 4. the slot's entry in [`MAP_FAULT_TICKETS`], incremented atomically: an injection happens only
//!    while the old value is below [`SlotConfig::max_faults`], so the cap is exact.
//!
//! Per-CPU [`SlotCounters`] in [`MAP_COUNTERS`] count what the program saw and injected.
#![no_std]

use core::mem::size_of;

/// How many experiments can run at the same time on one node.
pub const MAX_SLOTS: u32 = 16;
/// How many cgroups one experiment (one slot) may target on a node: the tc and LSM programs
/// test a slot's cgroups in a loop of this bound.
pub const MAX_TARGETS: u32 = 16;
/// How many CIDRs one experiment's remote-address filter can hold.
pub const MAX_CIDRS: usize = 8;

/// Name of the `Array<SlotConfig>` map (`MAX_SLOTS` entries).
pub const MAP_SLOTS: &str = "CHAOS_SLOTS";
/// Name of the `Array<u64>` map of injection tickets (`MAX_SLOTS` entries).
pub const MAP_FAULT_TICKETS: &str = "CHAOS_TICKETS";
/// Name of the `PerCpuArray<SlotCounters>` map (`MAX_SLOTS` entries).
pub const MAP_COUNTERS: &str = "CHAOS_COUNTERS";

/// Name of the `Array<u64>` map of the programs' rare events ([`NOTE_KINDS`] entries per slot,
/// then [`NOTE_GLOBAL`]): each counts how often its event happened, and the program that moves
/// it from 0 reports the event through aya-log, so the daemon's log gets one line per event
/// kind per arm, never one per packet or call. The daemon zeroes a slot's entries with its
/// tickets.
pub const MAP_NOTES: &str = "CHAOS_NOTES";
/// A slot's event came after its kernel deadline: the daemon had not disarmed it in time.
pub const NOTE_LATE: u32 = 0;
/// A slot's program met a packet it could not parse (for example a link-layer header it does
/// not know) or a packet write failed.
pub const NOTE_UNPARSED: u32 = 1;
/// Note kinds per slot.
pub const NOTE_KINDS: u32 = 2;
/// The entry of the path-prefix walk, which serves every path slot at once: a file deeper than
/// the walk's bound, judged as outside every prefix. Zeroed only when the object is loaded.
pub const NOTE_GLOBAL: u32 = MAX_SLOTS * NOTE_KINDS;
/// Capacity of [`MAP_NOTES`].
pub const MAX_NOTES: u32 = NOTE_GLOBAL + 1;
/// Name of the `Array<TcConfig>` map (`MAX_SLOTS` entries) of the tc egress programs (delay
/// and loss).
pub const MAP_TC: &str = "CHAOS_TC";

/// `TcConfig::distribution`: jitter uniform in `[-jitter_ns, +jitter_ns]`.
pub const DIST_UNIFORM: u32 = 0;
/// `TcConfig::distribution`: jitter approximately normal (Irwin-Hall, 12 uniforms) with
/// standard deviation `jitter_ns`.
pub const DIST_NORMAL: u32 = 1;

/// Name of the `CgroupArray` map ([`MAX_LSM_CGROUPS`] entries) of the cgroups each file/process
/// syscall-error slot targets: entries `slot * MAX_TARGETS ..`, contiguous, the first empty
/// one ending the list. The LSM programs are global (not attached to a cgroup): they ask
/// `bpf_current_task_under_cgroup` whether the calling task is in one of the slot's cgroups or
/// below it.
pub const MAP_LSM_CGROUPS: &str = "CHAOS_LSM_CGRPS";
/// Capacity of [`MAP_LSM_CGROUPS`].
pub const MAX_LSM_CGROUPS: u32 = MAX_SLOTS * MAX_TARGETS;

/// Name of the `HashMap<DirKey, u32>` map of the path-prefix filter: the identity of a
/// directory (or file) at or under which some slots fail calls, to the bit mask of those slots
/// (`1 << slot`). Read when a slot's flags have [`FLAG_PATH_PREFIX`]; see docs/adr/0009.
pub const MAP_LSM_DIRS: &str = "CHAOS_LSM_DIRS";
/// How many directory identities one slot's path prefix may use: the prefix itself, in each
/// mount namespace of the target, and the roots of the mounts below it.
pub const MAX_DIRS_PER_SLOT: usize = 16;
/// Capacity of [`MAP_LSM_DIRS`].
pub const MAX_DIR_KEYS: u32 = MAX_SLOTS * MAX_DIRS_PER_SLOT as u32;
/// Name of the `.rodata` global [`KernelOffsets`], set by the daemon at load time from the
/// kernel's BTF.
pub const GLOBAL_KERNEL_OFFSETS: &str = "CHAOS_KOFFS";

/// `SlotConfig::protocol`: match every protocol.
pub const PROTO_ANY: u32 = 0;
/// `SlotConfig::protocol`: ICMP (IPv4 protocol 1) and ICMPv6 (next header 58).
pub const PROTO_ICMP: u32 = 1;
/// `SlotConfig::protocol`: TCP.
pub const PROTO_TCP: u32 = 6;
/// `SlotConfig::protocol`: UDP.
pub const PROTO_UDP: u32 = 17;

/// `SlotConfig::flags`: fail `open()` (LSM `file_open`).
pub const FLAG_CALL_OPEN: u32 = 1 << 8;
/// `SlotConfig::flags`: fail `read()` (LSM `file_permission` with `MAY_READ`).
pub const FLAG_CALL_READ: u32 = 1 << 9;
/// `SlotConfig::flags`: fail `write()` (LSM `file_permission` with `MAY_WRITE`).
pub const FLAG_CALL_WRITE: u32 = 1 << 10;
/// `SlotConfig::flags`: fail `unlink()` (LSM `inode_unlink`).
pub const FLAG_CALL_UNLINK: u32 = 1 << 11;
/// `SlotConfig::flags`: fail creating a file (LSM `inode_create`).
pub const FLAG_CALL_CREATE: u32 = 1 << 12;
/// `SlotConfig::flags`: fail `fork()`/`clone()` (LSM `task_alloc`).
pub const FLAG_CALL_FORK: u32 = 1 << 13;
/// `SlotConfig::flags`: fail `execve()` (LSM `bprm_check_security`).
pub const FLAG_CALL_EXEC: u32 = 1 << 14;
/// `SlotConfig::flags`: fail `mmap()` of a file (LSM `mmap_file`).
pub const FLAG_CALL_MMAP: u32 = 1 << 15;

/// `SlotConfig::flags`: only files at or under the slot's directories in [`MAP_LSM_DIRS`]
/// (the file itself or one of its ancestor dentries is one of them).
pub const FLAG_PATH_PREFIX: u32 = 1 << 16;

/// `Cidr::family` of an IPv4 network.
pub const FAMILY_V4: u32 = 4;
/// `Cidr::family` of an IPv6 network.
pub const FAMILY_V6: u32 = 6;

/// The probability threshold that makes every event inject: `bpf_get_prandom_u32() < 2^32`.
pub const THRESHOLD_ALWAYS: u64 = 1 << 32;

/// One remote network of a filter. Addresses are kept as the kernel sees them in packets and in
/// `bpf_sock_addr`: network byte order, read as native `u32` words. IPv4 uses word 0 only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cidr {
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
    /// The network address, already masked.
    pub net: [u32; 4],
    /// The prefix mask.
    pub mask: [u32; 4],
}
const _: () = assert!(size_of::<Cidr>() == 40);

impl Cidr {
    /// Whether `addr` (same representation as `net`) of `family` lies in this network.
    #[inline(always)]
    pub fn contains(&self, family: u32, addr: &[u32; 4]) -> bool {
        self.family == family
            && addr[0] & self.mask[0] == self.net[0]
            && addr[1] & self.mask[1] == self.net[1]
            && addr[2] & self.mask[2] == self.net[2]
            && addr[3] & self.mask[3] == self.net[3]
    }
}

/// What one experiment slot injects, and when it must stop. Written only by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotConfig {
    /// Kill switch: non-zero while the experiment may inject.
    pub armed: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// `CLOCK_MONOTONIC` (= `bpf_ktime_get_ns`) instant after which nothing is injected.
    pub expires_at_ns: u64,
    /// Injections allowed in total for this slot (the fault budget).
    pub max_faults: u64,
    /// Inject when `bpf_get_prandom_u32() < threshold`; `0..=THRESHOLD_ALWAYS`.
    pub threshold: u64,
    /// Positive errno returned by syscall-error programs.
    pub errno: u32,
    /// `PROTO_*`: which L4 protocol is affected.
    pub protocol: u32,
    /// Remote port range, inclusive, host byte order. `0..=65535` matches every port.
    pub port_lo: u16,
    /// Upper end of the remote port range.
    pub port_hi: u16,
    /// How many entries of `cidrs` are used; zero means "every address".
    pub cidr_count: u32,
    /// Remote networks affected.
    pub cidrs: [Cidr; MAX_CIDRS],
}
const _: () = assert!(size_of::<SlotConfig>() == 368);

impl SlotConfig {
    /// Whether the remote `port` (host order) passes the port filter.
    #[inline(always)]
    pub fn port_matches(&self, port: u16) -> bool {
        port >= self.port_lo && port <= self.port_hi
    }

    /// Whether the L4 `proto` number (IPv4 protocol / IPv6 next header) passes the filter.
    #[inline(always)]
    pub fn protocol_matches(&self, proto: u32) -> bool {
        match self.protocol {
            PROTO_ANY => true,
            PROTO_ICMP => proto == 1 || proto == 58,
            p => p == proto,
        }
    }

    /// Whether the remote address passes the CIDR filter.
    #[inline(always)]
    pub fn addr_matches(&self, family: u32, addr: &[u32; 4]) -> bool {
        if self.cidr_count == 0 {
            return true;
        }
        let mut i = 0;
        while i < MAX_CIDRS {
            if (i as u32) < self.cidr_count && self.cidrs[i].contains(family, addr) {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// A directory's (or file's) identity as the kernel's inode hooks see it: the inode number
/// and the kernel-internal `dev_t` of its superblock (`MKDEV(major, minor)` =
/// `major << 20 | minor`, not the user-space encoding of `st_dev`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DirKey {
    /// `inode->i_ino`.
    pub ino: u64,
    /// `inode->i_sb->s_dev`.
    pub dev: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}
const _: () = assert!(size_of::<DirKey>() == 16);

/// Byte offsets of the struct members the path-prefix walk reads, in the running kernel (they
/// differ between 6.1 and 6.12; aya-ebpf has no CO-RE field relocations). All zero = unknown.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `offsetof(struct file, f_path)`.
    pub file_f_path: u32,
    /// `offsetof(struct path, dentry)`.
    pub path_dentry: u32,
    /// `offsetof(struct dentry, d_parent)`.
    pub dentry_d_parent: u32,
    /// `offsetof(struct dentry, d_inode)`.
    pub dentry_d_inode: u32,
    /// `offsetof(struct inode, i_ino)`.
    pub inode_i_ino: u32,
    /// `offsetof(struct inode, i_sb)`.
    pub inode_i_sb: u32,
    /// `offsetof(struct super_block, s_dev)`.
    pub super_block_s_dev: u32,
    /// Non-zero once the daemon filled every offset from BTF.
    pub valid: u32,
}
const _: () = assert!(size_of::<KernelOffsets>() == 32);

/// A slot's event counters. In the kernel's per-CPU map the programs count only `seen` and
/// `matched` (plain increments: on a preemptible kernel two programs interleaved on one CPU
/// can lose one now and then, so these two are approximate). `injected` and `capped`, which
/// price an experiment, are derived by the daemon from the slot's fault ticket, an atomic
/// counter of every event that reached the cap: exact.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotCounters {
    /// Events (packets, syscalls) the armed program looked at.
    pub seen: u64,
    /// Events that matched the filters.
    pub matched: u64,
    /// Faults injected: `min(tickets, max_faults)`.
    pub injected: u64,
    /// Events refused because the fault cap was reached: `tickets - injected`.
    pub capped: u64,
}
const _: () = assert!(size_of::<SlotCounters>() == 32);

/// Whom a slot's tc egress program acts on and, for the delay program, how much it delays, for
/// the HTTP error program which statuses it answers, for the rate program the rate; read next to the slot's [`SlotConfig`]
/// (which keeps the kill switch, deadline, filters, probability and cap). The loss program
/// reads only the target.
///
/// A packet is a target's when the cgroup of its socket at the target's level of the hierarchy
/// is the target (`bpf_skb_ancestor_cgroup_id`), i.e. the socket is in the target cgroup or
/// below; the first `target_count` of `targets` are the slot's targets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcConfig {
    /// Added delay in nanoseconds.
    pub delay_ns: u64,
    /// Jitter in nanoseconds: the half-width (uniform) or the standard deviation (normal).
    pub jitter_ns: u64,
    /// `DIST_*`.
    pub distribution: u32,
    /// How many of `targets` are used; zero never matches.
    pub target_count: u32,
    /// HTTP errors: the statuses to answer, each the 4 bytes that replace `" 200"` after
    /// `HTTP/1.x` (a space and three ASCII digits, as they sit in the packet), or
    /// [`HTTP_TIMEOUT`]; the first `http_count` are used, one picked at random per response.
    pub http_statuses: [u32; MAX_HTTP_STATUSES],
    /// How many of `http_statuses` are used.
    pub http_count: u32,
    /// The HTTP server's local port range (the packet's source port), host order, inclusive.
    pub http_port_lo: u16,
    /// Upper end of the server port range.
    pub http_port_hi: u16,
    /// Changes on every arm: a connection blackholed by an earlier experiment of the slot
    /// (recorded with its generation in [`MAP_HTTP_BLACKHOLE`]) is not dropped by a later one.
    pub generation: u32,
    /// `TC_FLAG_*` bits.
    pub flags: u32,
    /// Bandwidth limit: the rate in bits per second (link-layer bytes counted); 0 = none.
    pub rate_bps: u64,
    /// Bandwidth limit: the token bucket's size as time at the rate (`burst bytes x 8e9 /
    /// rate_bps`): how far behind now the link's next free time may fall, which lets that many
    /// bytes leave at line rate after an idle spell.
    pub burst_ns: u64,
    /// Bandwidth limit: a packet that would have to wait longer than this is dropped silently
    /// (as a `tbf`'s `latency`), and does not use the rate.
    pub horizon_ns: u64,
    /// The target cgroups.
    pub targets: [TcTarget; MAX_TARGETS as usize],
}

/// One target cgroup of a tc slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcTarget {
    /// The cgroup's id (the inode number of its directory); zero never matches.
    pub cgroup_id: u64,
    /// Depth of the cgroup below the cgroup2 root (the root is level 0).
    pub level: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}
const _: () = assert!(size_of::<TcTarget>() == 16);

/// `TcConfig::flags` of a corruption: the L4 checksum is left wrong (the receiver's stack
/// drops the packet, as after corruption on a wire) instead of fixed (the application reads
/// the corrupted byte).
pub const TC_FLAG_CSUM_WRONG: u32 = 1 << 0;

/// Name of the per-CPU `PerCpuArray<u32>` (one entry) the duplication program sets while its
/// clone passes the device's egress again (the clone is sent from within the program, on the
/// same CPU), so that a duplicate is never duplicated.
pub const MAP_DUP_NESTED: &str = "CHAOS_DUP_NEST";
const _: () = assert!(size_of::<TcConfig>() == 352);

/// Name of the `Array<u64>` map ([`MAX_TC_LINKS`] entries) of each slot's bandwidth limiters,
/// one per target (entry `slot * MAX_TARGETS + target`): when the target's limited link is
/// next free (`CLOCK_MONOTONIC` ns, the departure time its next packet may have). The daemon
/// zeroes a slot's entries when it writes the slot's [`TcConfig`] (full buckets).
pub const MAP_TC_LINK_FREE: &str = "CHAOS_TB";
/// Capacity of [`MAP_TC_LINK_FREE`].
pub const MAX_TC_LINKS: u32 = MAX_SLOTS * MAX_TARGETS;

/// Most statuses one HTTP error fault picks from.
pub const MAX_HTTP_STATUSES: usize = 8;
/// `TcConfig::http_statuses`: the response's connection is blackholed (the client times out).
pub const HTTP_TIMEOUT: u32 = 0;

/// Name of the `LruHashMap<FlowKey, u32>` map of the connections whose responses an HTTP error
/// fault blackholes (`timeout`), to the generation of the slot's arm that did it.
pub const MAP_HTTP_BLACKHOLE: &str = "CHAOS_HTTP_BH";
/// Capacity of [`MAP_HTTP_BLACKHOLE`] (least recently used entries go first).
pub const MAX_BLACKHOLED_FLOWS: u32 = 4096;

/// One TCP connection as the egress program sees it (network byte order words, ports in host
/// order), with the slot that blackholed it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The slot.
    pub slot: u32,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u32,
    /// Local (server) address; IPv4 uses word 0.
    pub local: [u32; 4],
    /// Remote (client) address.
    pub remote: [u32; 4],
    /// Local port.
    pub local_port: u16,
    /// Remote port.
    pub remote_port: u16,
}
const _: () = assert!(size_of::<FlowKey>() == 44);

#[cfg(feature = "user")]
mod user {
    // SAFETY: `#[repr(C)]`, only integer fields, explicit padding: every bit pattern is valid and
    // there are no implicit padding bytes.
    unsafe impl aya::Pod for super::SlotConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SlotCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DirKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TcConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TcTarget {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
}
