//! File and process syscall errors: the calls a user can fail, the LSM hook and slot flag of
//! each, and the plan of a `syscall_error` fault.

use std::str::FromStr;

use chaos_common::{
    FLAG_CALL_CREATE, FLAG_CALL_EXEC, FLAG_CALL_FORK, FLAG_CALL_MMAP, FLAG_CALL_OPEN,
    FLAG_CALL_READ, FLAG_CALL_UNLINK, FLAG_CALL_WRITE, FLAG_PATH_PREFIX, SlotConfig,
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
/// The calls a path prefix can filter, for error messages.
const FILE_CALLS: &str = "open, read, write, unlink, create, mmap";

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

    /// Whether the call concerns a file (and so can be filtered by path).
    pub fn is_file_call(self) -> bool {
        !matches!(self, SyscallCall::Fork | SyscallCall::Exec)
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
        let (hook, flag) = call.hook();
        config.flags |= flag;
        if !hooks.contains(&hook) {
            hooks.push(hook);
        }
    }
    if path_prefix.is_some() {
        config.flags |= FLAG_PATH_PREFIX;
    }
    Ok(LsmPlan { hooks, path_prefix })
}

/// Longest path prefix, in bytes (`PATH_MAX` without the NUL).
pub const MAX_PATH_PREFIX_LEN: usize = libc::PATH_MAX as usize - 1;

/// Checks a path prefix and normalizes it (no repeated or trailing `/`, no `.` components).
/// Only file calls can be filtered by path: the kernel side matches the file's dentry and its
/// ancestors (docs/adr/0009), and `fork`/`exec` have no file.
fn normalize_prefix(p: &str, calls: &[SyscallCall]) -> Result<String, SpecError> {
    if let Some(c) = calls.iter().find(|c| !c.is_file_call()) {
        return Err(SpecError::new(
            "fault.path_prefix",
            p,
            format!(
                "no path prefix with {}: only file calls ({FILE_CALLS}) can be filtered by \
                 path; use a separate experiment for {}",
                c.name(),
                c.name()
            ),
        ));
    }
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if !p.starts_with('/')
        || parts.is_empty()
        || parts.contains(&"..")
        || p.contains('\0')
        || p.len() > MAX_PATH_PREFIX_LEN
    {
        return Err(SpecError::new(
            "fault.path_prefix",
            p,
            format!(
                "an absolute path other than /, without `..`, at most {MAX_PATH_PREFIX_LEN} \
                 bytes, e.g. /data"
            ),
        ));
    }
    Ok(format!("/{}", parts.join("/")))
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
        for (calls, prefix, allowed) in [
            (
                &[SyscallCall::Open, SyscallCall::Fork][..],
                "/data",
                "no path prefix with fork",
            ),
            (
                &[SyscallCall::Exec][..],
                "/data",
                "no path prefix with exec",
            ),
            (&[SyscallCall::Open][..], "data", "an absolute path"),
            (&[SyscallCall::Open][..], "/", "an absolute path"),
            (&[SyscallCall::Open][..], "//./", "an absolute path"),
            (&[SyscallCall::Read][..], "/data/../etc", "an absolute path"),
        ] {
            let e = plan(&mut cfg, errno, calls, Some(prefix)).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.value.as_str()),
                ("fault.path_prefix", prefix)
            );
            assert!(e.allowed.contains(allowed), "{e}");
        }
        let e = plan(&mut cfg, errno, &[SyscallCall::Fork], Some("/data")).unwrap_err();
        assert!(
            e.to_string().contains(
                "fault.path_prefix: /data is not allowed; expected no path prefix with fork: \
                 only file calls (open, read, write, unlink, create, mmap)"
            ),
            "{e}"
        );
        let longest = format!("/{}", "a".repeat(MAX_PATH_PREFIX_LEN - 1));
        assert!(
            plan(
                &mut cfg.clone(),
                errno,
                &[SyscallCall::Open],
                Some(&longest)
            )
            .is_ok()
        );
        let e = plan(
            &mut cfg,
            errno,
            &[SyscallCall::Open],
            Some(&format!("{longest}a")),
        );
        assert_eq!(e.unwrap_err().field, "fault.path_prefix");
        assert_eq!(cfg, SlotConfig::default(), "a refused plan writes nothing");
    }

    #[test]
    fn every_file_call_takes_a_path_prefix_on_its_usual_hook() {
        let mut cfg = SlotConfig::default();
        let file_calls: Vec<SyscallCall> = SyscallCall::ALL
            .into_iter()
            .filter(|c| c.is_file_call())
            .collect();
        let p = plan(
            &mut cfg,
            "EIO".parse().unwrap(),
            &file_calls,
            Some("/data//./x/"),
        )
        .unwrap();
        assert_eq!(
            p.hooks,
            vec![
                LsmHook::FileOpen,
                LsmHook::FilePermission,
                LsmHook::InodeUnlink,
                LsmHook::InodeCreate,
                LsmHook::MmapFile
            ]
        );
        assert_eq!(p.path_prefix.as_deref(), Some("/data/x"));
        assert_eq!(
            cfg.flags,
            FLAG_CALL_OPEN
                | FLAG_CALL_READ
                | FLAG_CALL_WRITE
                | FLAG_CALL_UNLINK
                | FLAG_CALL_CREATE
                | FLAG_CALL_MMAP
                | FLAG_PATH_PREFIX
        );
    }
}
