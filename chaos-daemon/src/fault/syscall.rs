//! File and process syscall errors: the calls a user can fail, the LSM hook and slot flag of
//! each, and the plan of a `syscall_error` fault.

use std::str::FromStr;

use chaos_common::{
    FLAG_CALL_CREATE, FLAG_CALL_EXEC, FLAG_CALL_FORK, FLAG_CALL_MMAP, FLAG_CALL_OPEN,
    FLAG_CALL_READ, FLAG_CALL_UNLINK, FLAG_CALL_WRITE, FLAG_PATH_PREFIX, PATH_BUF_LEN, SlotConfig,
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

/// What a `syscall_error` fault needs in the kernel besides its slot config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsmPlan {
    /// The global LSM hooks, each once.
    pub hooks: Vec<LsmHook>,
    /// The normalized path prefix, if any.
    pub path_prefix: Option<String>,
}

/// Writes the errno and call flags of a `syscall_error` fault into `config` and returns the
/// LSM hooks it needs and its normalized path prefix.
pub fn plan(
    config: &mut SlotConfig,
    errno: Errno,
    calls: &[SyscallCall],
    path_prefix: Option<&str>,
) -> Result<LsmPlan, SpecError> {
    if calls.is_empty() {
        return Err(SpecError::new(
            "fault.calls",
            "[]",
            format!("at least {ALLOWED}"),
        ));
    }
    let path_prefix = path_prefix
        .map(|p| normalize_prefix(p, calls))
        .transpose()?;
    config.errno = errno.number();
    let mut hooks = Vec::new();
    for call in SyscallCall::ALL.into_iter().filter(|c| calls.contains(c)) {
        let (mut hook, flag) = call.hook();
        config.flags |= flag;
        if path_prefix.is_some() {
            hook = LsmHook::FileOpenPath;
        }
        if !hooks.contains(&hook) {
            hooks.push(hook);
        }
    }
    if path_prefix.is_some() {
        config.flags |= FLAG_PATH_PREFIX;
    }
    Ok(LsmPlan { hooks, path_prefix })
}

/// Checks a path prefix and drops a trailing `/`. Only `open` can filter by path: the kernel
/// allows `bpf_d_path` in `file_open` for both mechanisms, but not in `file_permission` for
/// BPF LSM programs nor in `security_mmap_file` for `fmod_ret`, and the inode hooks (`unlink`,
/// `create`) have no `struct path` at all.
fn normalize_prefix(p: &str, calls: &[SyscallCall]) -> Result<String, SpecError> {
    if let Some(c) = calls.iter().find(|c| **c != SyscallCall::Open) {
        return Err(SpecError::new(
            "fault.path_prefix",
            p,
            format!(
                "no path prefix with {}: only open can be filtered by path (the kernel's \
                 bpf_d_path is not available in every hook); use a separate experiment",
                c.name()
            ),
        ));
    }
    let trimmed = p.trim_end_matches('/');
    if !p.starts_with('/') || trimmed.is_empty() || p.contains('\0') || p.len() >= PATH_BUF_LEN {
        return Err(SpecError::new(
            "fault.path_prefix",
            p,
            format!("an absolute path other than /, shorter than {PATH_BUF_LEN} bytes, e.g. /data"),
        ));
    }
    Ok(trimmed.to_owned())
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
        .unwrap()
        .hooks;
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
        for (calls, prefix) in [
            (&[SyscallCall::Open, SyscallCall::Read][..], "/data"),
            (&[SyscallCall::Open][..], "data"),
            (&[SyscallCall::Open][..], "/"),
        ] {
            let e = plan(&mut cfg, errno, calls, Some(prefix)).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.value.as_str()),
                ("fault.path_prefix", prefix)
            );
        }
        assert_eq!(cfg, SlotConfig::default(), "a refused plan writes nothing");
    }

    #[test]
    fn open_with_a_path_prefix_uses_the_path_program() {
        let mut cfg = SlotConfig::default();
        let p = plan(
            &mut cfg,
            "EIO".parse().unwrap(),
            &[SyscallCall::Open],
            Some("/data/"),
        )
        .unwrap();
        assert_eq!(p.hooks, vec![LsmHook::FileOpenPath]);
        assert_eq!(p.path_prefix.as_deref(), Some("/data"));
        assert_eq!(cfg.flags, FLAG_CALL_OPEN | FLAG_PATH_PREFIX);
    }
}
