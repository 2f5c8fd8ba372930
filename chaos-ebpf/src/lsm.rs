//! File and process syscall errors: one global BPF LSM program per hook. The same bodies are
//! loaded as `fmod_ret` programs on the matching `security_*` function when the BPF LSM is not
//! active (the daemon does that with a raw `BPF_PROG_LOAD`).
//!
//! The programs are not attached to a cgroup, so each one walks the slots: a slot applies when it
//! is armed for this call (`SlotConfig::flags`) and the calling task is in the slot's cgroup or
//! below it (`bpf_current_task_under_cgroup` on [`LSM_CGROUPS`]); then [`decide`] judges it like
//! any other event (deadline, probability, exact cap, counters). See docs/adr/0006.
//!
//! Context layout (identical for `lsm/<hook>` and `fmod_ret/security_<hook>`): the hook's
//! arguments as u64 words, then the return value of the programs that ran before this one.

use aya_ebpf::{macros::lsm, macros::map, maps::CgroupArray, programs::LsmContext};
use chaos_common::{
    FLAG_CALL_CREATE, FLAG_CALL_EXEC, FLAG_CALL_FORK, FLAG_CALL_MMAP, FLAG_CALL_OPEN,
    FLAG_CALL_READ, FLAG_CALL_UNLINK, FLAG_CALL_WRITE, MAX_SLOTS,
};

use crate::decide::{Event, NO_PORT, armed_for, decide};

#[map(name = "CHAOS_LSM_CGRPS")]
static LSM_CGROUPS: CgroupArray = CgroupArray::with_max_entries(MAX_SLOTS, 0);

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

/// The verdict for a call of kind `call` (`FLAG_CALL_*`); `nargs` is the hook's argument count,
/// so the previous programs' verdict is at `ctx[nargs]`.
#[inline(always)]
fn verdict(ctx: &LsmContext, nargs: usize, call: u32) -> i32 {
    let prev: i64 = ctx.arg(nargs);
    if prev != 0 {
        // Another program already denied: keep its errno.
        return deny((prev as i32).wrapping_neg() as u32);
    }
    let ev = Event {
        proto: 0,
        family: 0,
        addr: [0; 4],
        port: NO_PORT,
    };
    let mut slot = 0;
    while slot < MAX_SLOTS {
        if armed_for(slot, call)
            && LSM_CGROUPS.current_task_under_cgroup(slot) == Ok(true)
            && let Some(cfg) = decide(slot, &ev)
        {
            return deny(cfg.errno);
        }
        slot += 1;
    }
    0
}

#[lsm(hook = "file_open")]
pub fn lsm_file_open(ctx: LsmContext) -> i32 {
    verdict(&ctx, 1, FLAG_CALL_OPEN)
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
    verdict(&ctx, 2, call)
}

#[lsm(hook = "inode_unlink")]
pub fn lsm_unlink(ctx: LsmContext) -> i32 {
    verdict(&ctx, 2, FLAG_CALL_UNLINK)
}

#[lsm(hook = "inode_create")]
pub fn lsm_create(ctx: LsmContext) -> i32 {
    verdict(&ctx, 3, FLAG_CALL_CREATE)
}

#[lsm(hook = "task_alloc")]
pub fn lsm_task_alloc(ctx: LsmContext) -> i32 {
    verdict(&ctx, 2, FLAG_CALL_FORK)
}

#[lsm(hook = "bprm_check_security")]
pub fn lsm_bprm_check(ctx: LsmContext) -> i32 {
    verdict(&ctx, 1, FLAG_CALL_EXEC)
}

#[lsm(hook = "mmap_file")]
pub fn lsm_mmap_file(ctx: LsmContext) -> i32 {
    // Anonymous mappings (no file) are left alone: failing them is an allocation failure, not
    // a file error.
    let file: u64 = ctx.arg(0);
    if file == 0 {
        return 0;
    }
    verdict(&ctx, 4, FLAG_CALL_MMAP)
}

/// `mmap_file` for the `fmod_ret` fallback only: `security_mmap_file(file, prot, flags)` has
/// three arguments where the LSM hook has four, so the previous verdict is at `ctx[3]`. It is
/// declared as an LSM program because that is the section aya parses; the daemon never
/// attaches it as one.
#[lsm(hook = "mmap_file")]
pub fn fmod_mmap_file(ctx: LsmContext) -> i32 {
    let file: u64 = ctx.arg(0);
    if file == 0 {
        return 0;
    }
    verdict(&ctx, 3, FLAG_CALL_MMAP)
}
