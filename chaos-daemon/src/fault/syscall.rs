//! File and process syscall errors: the calls a user can fail, the LSM hook and slot flag of
//! each, and the plan of a `syscall_error` fault.

use std::str::FromStr;

use chaos_common::{
    FLAG_CALL_CREATE, FLAG_CALL_EXEC, FLAG_CALL_FORK, FLAG_CALL_MMAP, FLAG_CALL_OPEN,
    FLAG_CALL_READ, FLAG_CALL_UNLINK, FLAG_CALL_WRITE, SlotConfig,
};

use super::{Errno, SpecError};
use crate::ebpf::lsm::LsmHook;

/// A file or process call a `syscall_error` fault can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyscallCall {
    /// `open()`/`openat()` (LSM `file_open`).
    Open,
    /// `read()` and friends (LSM `file_permission` with `MAY_READ`).
    Read,
    /// `write()` and friends (LSM `file_permission` with `MAY_WRITE`).
    Write,
    /// `unlink()` (LSM `inode_unlink`).
    Unlink,
    /// Creating a regular file, e.g. `open(O_CREAT)` of a new file (LSM `inode_create`).
    Create,
    /// `fork()`/`clone()`, threads included (LSM `task_alloc`).
    Fork,
    /// `execve()` (LSM `bprm_check_security`).
    Exec,
    /// `mmap()` of a file (LSM `mmap_file`; anonymous mappings are not affected).
    Mmap,
}

/// What `FromStr` accepts, for error messages.
const ALLOWED: &str = "one of open, read, write, unlink, create, fork, exec, mmap";

impl SyscallCall {
    /// Every call, in a stable order.
    pub const ALL: [SyscallCall; 8] = [
        SyscallCall::Open,
        SyscallCall::Read,
        SyscallCall::Write,
        SyscallCall::Unlink,
        SyscallCall::Create,
        SyscallCall::Fork,
        SyscallCall::Exec,
        SyscallCall::Mmap,
    ];

    /// The name users write.
    pub fn name(self) -> &'static str {
        match self {
            SyscallCall::Open => "open",
            SyscallCall::Read => "read",
            SyscallCall::Write => "write",
            SyscallCall::Unlink => "unlink",
            SyscallCall::Create => "create",
            SyscallCall::Fork => "fork",
            SyscallCall::Exec => "exec",
            SyscallCall::Mmap => "mmap",
        }
    }

    /// The global LSM hook that sees this call, and the slot flag that selects it there.
    pub fn hook(self) -> (LsmHook, u32) {
        match self {
            SyscallCall::Open => (LsmHook::FileOpen, FLAG_CALL_OPEN),
            SyscallCall::Read => (LsmHook::FilePermission, FLAG_CALL_READ),
            SyscallCall::Write => (LsmHook::FilePermission, FLAG_CALL_WRITE),
            SyscallCall::Unlink => (LsmHook::InodeUnlink, FLAG_CALL_UNLINK),
            SyscallCall::Create => (LsmHook::InodeCreate, FLAG_CALL_CREATE),
            SyscallCall::Fork => (LsmHook::TaskAlloc, FLAG_CALL_FORK),
            SyscallCall::Exec => (LsmHook::BprmCheck, FLAG_CALL_EXEC),
            SyscallCall::Mmap => (LsmHook::MmapFile, FLAG_CALL_MMAP),
        }
    }
}

impl FromStr for SyscallCall {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        SyscallCall::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| SpecError::new("fault.calls", s, ALLOWED))
    }
}

/// Writes the errno and call flags of a `syscall_error` fault into `config` and returns the
/// LSM hooks it needs, each once.
pub fn plan(
    config: &mut SlotConfig,
    errno: Errno,
    calls: &[SyscallCall],
    path_prefix: Option<&str>,
) -> Result<Vec<LsmHook>, SpecError> {
    if calls.is_empty() {
        return Err(SpecError::new(
            "fault.calls",
            "[]",
            format!("at least {ALLOWED}"),
        ));
    }
    if let Some(p) = path_prefix {
        // Filtering by path needs `bpf_d_path` on the hook's `struct file`, whose layout differs
        // between kernels; not built yet, so refuse rather than inject everywhere.
        return Err(SpecError::new(
            "fault.path_prefix",
            p,
            "no path prefix: this daemon cannot filter file syscall errors by path yet (omit it \
             to fail the calls on every file of the target)",
        ));
    }
    config.errno = errno.number();
    let mut hooks = Vec::new();
    for call in SyscallCall::ALL.into_iter().filter(|c| calls.contains(c)) {
        let (hook, flag) = call.hook();
        config.flags |= flag;
        if !hooks.contains(&hook) {
            hooks.push(hook);
        }
    }
    Ok(hooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_and_write_share_one_hook_and_set_both_flags() {
        let mut cfg = SlotConfig::default();
        let errno: Errno = "EIO".parse().unwrap();
        let hooks = plan(
            &mut cfg,
            errno,
            &[SyscallCall::Write, SyscallCall::Read, SyscallCall::Fork],
            None,
        )
        .unwrap();
        assert_eq!(hooks, vec![LsmHook::FilePermission, LsmHook::TaskAlloc]);
        assert_eq!(cfg.flags, FLAG_CALL_READ | FLAG_CALL_WRITE | FLAG_CALL_FORK);
        assert_eq!(cfg.errno, libc::EIO as u32);
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = "chmod".parse::<SyscallCall>().unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("fault.calls", "chmod")
        );
        assert!(e.allowed.contains("unlink"), "{e}");
        let errno: Errno = "EIO".parse().unwrap();
        let mut cfg = SlotConfig::default();
        assert_eq!(
            plan(&mut cfg, errno, &[], None).unwrap_err().field,
            "fault.calls"
        );
        let e = plan(&mut cfg, errno, &[SyscallCall::Open], Some("/data")).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("fault.path_prefix", "/data")
        );
        assert_eq!(cfg, SlotConfig::default(), "a refused plan writes nothing");
    }
}
