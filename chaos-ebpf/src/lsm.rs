//! File and process syscall errors: one global BPF LSM program per hook. The same bodies are
//! loaded as `fmod_ret` programs on the matching `security_*` function when the BPF LSM is not
//! active (the daemon does that with a raw `BPF_PROG_LOAD`).
//!
//! The programs are not attached to a cgroup, so each one walks the slots: a slot applies when it
//! is armed for this call (`SlotConfig::flags`) and the calling task is in the slot's cgroup or
//! below it (`bpf_current_task_under_cgroup` on [`LSM_CGROUPS`]); then [`decide`] judges it like
//! any other event (deadline, probability, exact cap, counters). See docs/adr/0006. A slot with a
//! path prefix also needs the hook's file to be at or under one of its directories: the hook's
//! dentry and its ancestors are looked up in [`LSM_DIRS`] by (device, inode) (docs/adr/0009).
//!
//! Context layout (identical for `lsm/<hook>` and `fmod_ret/security_<hook>`): the hook's
//! arguments as u64 words (`security_mmap_file` has one argument fewer than the `mmap_file`
//! hook, but the file comes first in both). The programs do not read the previous programs'
//! verdict after the arguments: the trampoline stops at the first program that denies, so a
//! program only ever runs after verdicts of 0 (see docs/adr/0009 for why it must not read it).

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{lsm, map},
    maps::{CgroupArray, HashMap},
    programs::LsmContext,
};
use chaos_common::{
    DirKey, FLAG_CALL_CREATE, FLAG_CALL_EXEC, FLAG_CALL_FORK, FLAG_CALL_MMAP, FLAG_CALL_OPEN,
    FLAG_CALL_READ, FLAG_CALL_UNLINK, FLAG_CALL_WRITE, FLAG_PATH_PREFIX, KernelOffsets,
    MAX_DIR_KEYS, MAX_LSM_CGROUPS, MAX_SLOTS, MAX_TARGETS,
};

use crate::{
    decide::{Event, NO_PORT, armed_flags, decide},
    note,
};

#[map(name = "CHAOS_LSM_CGRPS")]
static LSM_CGROUPS: CgroupArray = CgroupArray::with_max_entries(MAX_LSM_CGROUPS, 0);

/// (device, inode) of a path-prefix directory -> bit mask of the slots it belongs to.
#[map(name = "CHAOS_LSM_DIRS")]
static LSM_DIRS: HashMap<DirKey, u32> = HashMap::with_max_entries(MAX_DIR_KEYS, 0);

/// Member offsets of this kernel's `file`, `path`, `dentry`, `inode` and `super_block`, written
/// by the daemon at load time from BTF (`.rodata`, frozen). `valid == 0`: unknown, and no path
/// slot ever matches.
#[unsafe(no_mangle)]
static CHAOS_KOFFS: KernelOffsets = KernelOffsets {
    file_f_path: 0,
    path_dentry: 0,
    dentry_d_parent: 0,
    dentry_d_inode: 0,
    inode_i_ino: 0,
    inode_i_sb: 0,
    super_block_s_dev: 0,
    valid: 0,
};

/// How many dentries the path-prefix walk looks at: the hook's own and up to 63 ancestors. A
/// file deeper than that below its filesystem's root never matches.
const MAX_DEPTH: u32 = 64;

/// `MAY_WRITE` / `MAY_READ` bits of `file_permission`'s mask (include/linux/fs.h).
const MAY_WRITE: u64 = 2;
const MAY_READ: u64 = 4;

/// The highest errno an LSM hook may return (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

/// `-errno` for a verdict, provably within `[-MAX_ERRNO, 0]`: since 6.10 the verifier rejects
/// an LSM program whose return value may leave that range, and before 6.15 it does not track
/// ranges through a negation. So the value is clamped with a mask and subtracted from a zero
/// the compiler cannot see (a volatile stack read), which the verifier follows as a `sub` of two
/// bounded registers. An `errno` of 0 (never written by the daemon) gives `-EPERM`.
#[inline(always)]
fn deny(errno: u32) -> i32 {
    let e = (errno & MAX_ERRNO) as i32;
    if e == 0 {
        return -1;
    }
    let zero = 0i32;
    // SAFETY: a volatile read of a live, aligned local.
    let zero = unsafe { core::ptr::read_volatile(&zero) };
    zero - e
}

/// What a hook knows about a file or process call: nothing the network filters look at.
const CALL_EVENT: Event = Event {
    proto: 0,
    family: 0,
    addr: [0; 4],
    port: NO_PORT,
};

/// What the hook knows about the file the call concerns, for the path-prefix filter.
#[derive(Clone, Copy)]
enum Object {
    /// A `struct file *` (`file_open`, `file_permission`, `mmap_file`).
    File(u64),
    /// A `struct dentry *` (`inode_unlink`, `inode_create`: the new, still negative, dentry).
    Dentry(u64),
    /// No file (`task_alloc`, `bprm_check_security`): path slots never get this call.
    None,
}

/// Reads the kernel word at `base + off`.
#[inline(always)]
fn read_u64(base: u64, off: u32) -> Option<u64> {
    // SAFETY: `bpf_probe_read_kernel` checks the address; a bad one gives an error, not a fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const u64) }.ok()
}

/// The slots whose directories in [`LSM_DIRS`] hold the object's dentry or one of its
/// ancestors (a bit mask): walks `d_parent` up to [`MAX_DEPTH`] dentries or the filesystem's
/// root.
///
/// The verifier walks the loop once per iteration, so nothing here may multiply its states:
/// the result is an opaque OR of map values, with no early exit on a particular value.
#[inline(always)]
fn slots_under_dirs(obj: Object) -> u32 {
    // SAFETY: a volatile read of a `.rodata` constant, so that the compiler does not fold the
    // placeholder zeroes the object carries.
    let o = unsafe { core::ptr::read_volatile(&raw const CHAOS_KOFFS) };
    if o.valid == 0 {
        return 0;
    }
    let mut dentry = match obj {
        Object::File(file) => match read_u64(file, o.file_f_path.wrapping_add(o.path_dentry)) {
            Some(d) => d,
            None => return 0,
        },
        Object::Dentry(d) => d,
        Object::None => return 0,
    };
    let mut found = 0;
    let mut depth = 0;
    while depth < MAX_DEPTH && dentry != 0 {
        // A negative dentry (the file `create` is about to make) has no inode: go on upwards.
        if let Some(inode) = read_u64(dentry, o.dentry_d_inode)
            && inode != 0
            && let Some(ino) = read_u64(inode, o.inode_i_ino)
            && let Some(sb) = read_u64(inode, o.inode_i_sb)
            // SAFETY: as in `read_u64`; `s_dev` is a 32-bit `dev_t`.
            && let Ok(dev) = unsafe {
                bpf_probe_read_kernel((sb + u64::from(o.super_block_s_dev)) as *const u32)
            }
            // SAFETY: a hash map lookup; the value is only read.
            && let Some(mask) = unsafe { LSM_DIRS.get(DirKey { ino, dev, _pad: 0 }) }
        {
            found |= *mask;
        }
        let Some(parent) = read_u64(dentry, o.dentry_d_parent) else {
            break;
        };
        // The filesystem's root is its own parent.
        if parent == dentry {
            break;
        }
        dentry = parent;
        depth += 1;
    }
    if depth >= MAX_DEPTH {
        note::too_deep(MAX_DEPTH);
    }
    found
}

/// Whether `slot` is armed for `call` and one of its cgroups holds the calling task; its flags
/// if so.
#[inline(always)]
fn member_flags(slot: u32, call: u32) -> u32 {
    let flags = armed_flags(slot);
    if flags & call != 0 && under_slot_cgroup(slot) {
        flags
    } else {
        0
    }
}

/// Whether the calling task is in one of `slot`'s cgroups (entries `slot * MAX_TARGETS ..`, up
/// to the first empty one) or below it.
#[inline(always)]
fn under_slot_cgroup(slot: u32) -> bool {
    let mut i = 0;
    while i < MAX_TARGETS {
        match LSM_CGROUPS.current_task_under_cgroup(slot * MAX_TARGETS + i) {
            Ok(true) => return true,
            Ok(false) => i += 1,
            // An empty entry: the slot's list ended.
            Err(_) => return false,
        }
    }
    false
}

/// The verdict for a call of kind `call` (`FLAG_CALL_*`) on `obj`.
///
/// The dentry walk runs at most once, and only when a path slot applies to this call and task
/// (a first pass with a yes/no answer, so that the verifier does not track a slot mask): tasks
/// outside every path slot's cgroup and unfiltered faults never pay for it, and with no path
/// slot armed the first pass costs a flag read per slot, no cgroup test.
#[inline(always)]
fn verdict(call: u32, obj: Object) -> i32 {
    let mut walk = false;
    let mut slot = 0;
    while slot < MAX_SLOTS {
        // The flags first: only path slots pay a cgroup test here.
        if armed_flags(slot) & FLAG_PATH_PREFIX != 0
            && member_flags(slot, call) & FLAG_PATH_PREFIX != 0
        {
            walk = true;
            break;
        }
        slot += 1;
    }
    let under = if walk { slots_under_dirs(obj) } else { 0 };
    let mut slot = 0;
    while slot < MAX_SLOTS {
        let flags = member_flags(slot, call);
        if flags != 0
            && (flags & FLAG_PATH_PREFIX == 0 || under & (1 << slot) != 0)
            && let Some(cfg) = decide(slot, &CALL_EVENT)
        {
            return deny(cfg.errno);
        }
        slot += 1;
    }
    0
}

#[lsm(hook = "file_open")]
pub fn lsm_file_open(ctx: LsmContext) -> i32 {
    let file: u64 = ctx.arg(0);
    verdict(FLAG_CALL_OPEN, Object::File(file))
}

#[lsm(hook = "file_permission")]
pub fn lsm_file_perm(ctx: LsmContext) -> i32 {
    let mask: u64 = ctx.arg(1);
    let mut call = 0;
    if mask & MAY_READ != 0 {
        call |= FLAG_CALL_READ;
    }
    if mask & MAY_WRITE != 0 {
        call |= FLAG_CALL_WRITE;
    }
    if call == 0 {
        return 0;
    }
    let file: u64 = ctx.arg(0);
    verdict(call, Object::File(file))
}

#[lsm(hook = "inode_unlink")]
pub fn lsm_unlink(ctx: LsmContext) -> i32 {
    let dentry: u64 = ctx.arg(1);
    verdict(FLAG_CALL_UNLINK, Object::Dentry(dentry))
}

#[lsm(hook = "inode_create")]
pub fn lsm_create(ctx: LsmContext) -> i32 {
    let dentry: u64 = ctx.arg(1);
    verdict(FLAG_CALL_CREATE, Object::Dentry(dentry))
}

#[lsm(hook = "task_alloc")]
pub fn lsm_task_alloc(_ctx: LsmContext) -> i32 {
    verdict(FLAG_CALL_FORK, Object::None)
}

#[lsm(hook = "bprm_check_security")]
pub fn lsm_bprm_check(_ctx: LsmContext) -> i32 {
    verdict(FLAG_CALL_EXEC, Object::None)
}

#[lsm(hook = "mmap_file")]
pub fn lsm_mmap_file(ctx: LsmContext) -> i32 {
    // Anonymous mappings (no file) are left alone: failing them is an allocation failure, not
    // a file error.
    let file: u64 = ctx.arg(0);
    if file == 0 {
        return 0;
    }
    verdict(FLAG_CALL_MMAP, Object::File(file))
}
