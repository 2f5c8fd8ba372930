//! File and process syscall errors: one global BPF LSM program per hook. The same bodies are
//! loaded as `fmod_ret` programs on the matching `security_*` function when the BPF LSM is not
//! active (the daemon does that with a raw `BPF_PROG_LOAD`).
//!
//! The programs are not attached to a cgroup, so each one walks the slots: a slot applies when it
//! is armed for this call (`SlotConfig::flags`) and the calling task is in the slot's cgroup or
//! below it (`bpf_current_task_under_cgroup` on [`LSM_CGROUPS`]); then [`decide`] judges it like
//! any other event (deadline, probability, exact cap, counters). See docs/adr/0006. Slots with
//! a path prefix (`open` only) are judged by `lsm_open_path`, which reads the file's path.
//!
//! Context layout (identical for `lsm/<hook>` and `fmod_ret/security_<hook>`): the hook's
//! arguments as u64 words, then the return value of the programs that ran before this one.

use aya_ebpf::{
    bindings::path,
    helpers::generated::bpf_d_path,
    macros::{lsm, map},
    maps::{Array, CgroupArray, PerCpuArray},
    programs::LsmContext,
};
use chaos_common::{
    FLAG_CALL_CREATE, FLAG_CALL_EXEC, FLAG_CALL_FORK, FLAG_CALL_MMAP, FLAG_CALL_OPEN,
    FLAG_CALL_READ, FLAG_CALL_UNLINK, FLAG_CALL_WRITE, FLAG_PATH_PREFIX, MAX_SLOTS, PATH_BUF_LEN,
    PathPrefix,
};

use crate::decide::{Event, NO_PORT, armed_flags, decide};

#[map(name = "CHAOS_LSM_CGRPS")]
static LSM_CGROUPS: CgroupArray = CgroupArray::with_max_entries(MAX_SLOTS, 0);

#[map(name = "CHAOS_LSM_PATHS")]
static LSM_PATHS: Array<PathPrefix> = Array::with_max_entries(MAX_SLOTS, 0);

/// Scratch space for `bpf_d_path` (too big for the 512-byte stack).
#[map(name = "CHAOS_PATH_BUF")]
static PATH_BUF: PerCpuArray<[u8; PATH_BUF_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// `offsetof(struct file, f_path)` in the running kernel, written by the daemon at load time
/// (`.rodata`, frozen: the verifier sees it as a constant, so `file + offset` stays a typed
/// `struct path` pointer that `bpf_d_path` accepts). It differs between 6.1 and 6.12.
#[unsafe(no_mangle)]
static CHAOS_F_PATH_OFF: u32 = 0;

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

/// The previous programs' verdict at `ctx[nargs]`, kept when it is already a denial.
#[inline(always)]
fn previous_denial(ctx: &LsmContext, nargs: usize) -> Option<i32> {
    let prev: i64 = ctx.arg(nargs);
    (prev != 0).then(|| deny((prev as i32).wrapping_neg() as u32))
}

/// What a hook knows about a file or process call: nothing the network filters look at.
const CALL_EVENT: Event = Event {
    proto: 0,
    family: 0,
    addr: [0; 4],
    port: NO_PORT,
};

/// The verdict for a call of kind `call` (`FLAG_CALL_*`); `nargs` is the hook's argument count,
/// so the previous programs' verdict is at `ctx[nargs]`. Slots with a path prefix are left to
/// [`lsm_open_path`].
#[inline(always)]
fn verdict(ctx: &LsmContext, nargs: usize, call: u32) -> i32 {
    if let Some(denied) = previous_denial(ctx, nargs) {
        return denied;
    }
    let mut slot = 0;
    while slot < MAX_SLOTS {
        let flags = armed_flags(slot);
        if flags & call != 0
            && flags & FLAG_PATH_PREFIX == 0
            && LSM_CGROUPS.current_task_under_cgroup(slot) == Ok(true)
            && let Some(cfg) = decide(slot, &CALL_EVENT)
        {
            return deny(cfg.errno);
        }
        slot += 1;
    }
    0
}

/// `open()` of files under a slot's path prefix: the file's path from `bpf_d_path` (allowed
/// on `file_open` and `security_file_open`), compared with each path slot's prefix.
#[inline(always)]
fn open_path_verdict(ctx: &LsmContext) -> i32 {
    if let Some(denied) = previous_denial(ctx, 1) {
        return denied;
    }
    let Some(buf) = PATH_BUF.get_ptr_mut(0) else {
        return 0;
    };
    let file: *mut u8 = ctx.arg(0);
    // SAFETY: a volatile read of a `.rodata` constant, so that the compiler does not fold the
    // placeholder 0 the object carries.
    let off = unsafe { core::ptr::read_volatile(&CHAOS_F_PATH_OFF) };
    let f_path = file.wrapping_add(off as usize).cast::<path>();
    // SAFETY: `f_path` is `&file->f_path` of the hook's file (the verifier checks the type);
    // `buf` is a per-CPU map value of `PATH_BUF_LEN` bytes.
    let n = unsafe { bpf_d_path(f_path, buf.cast(), PATH_BUF_LEN as u32) };
    if n < 0 {
        return 0;
    }
    // SAFETY: the per-CPU value is valid for the whole run and only this CPU touches it.
    let buf = unsafe { &*buf };
    let mut slot = 0;
    while slot < MAX_SLOTS {
        let flags = armed_flags(slot);
        if flags & FLAG_CALL_OPEN != 0
            && flags & FLAG_PATH_PREFIX != 0
            && LSM_CGROUPS.current_task_under_cgroup(slot) == Ok(true)
            && LSM_PATHS.get(slot).is_some_and(|p| p.matches(buf))
            && let Some(cfg) = decide(slot, &CALL_EVENT)
        {
            return deny(cfg.errno);
        }
        slot += 1;
    }
    0
}

#[lsm(hook = "file_open")]
pub fn lsm_open_path(ctx: LsmContext) -> i32 {
    open_path_verdict(&ctx)
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
