//! File and process syscall errors: the LSM hook and slot flag of each call a user can fail
//! (the calls and the path-prefix rules are chaos-api's), and the plan of a `syscall_error`
//! fault.

use chaos_api::experiment::{CallName as _, SyscallCall, normalize_path_prefix};
use chaos_common::{
    FLAG_CALL_CREATE, FLAG_CALL_EXEC, FLAG_CALL_FORK, FLAG_CALL_MMAP, FLAG_CALL_OPEN,
    FLAG_CALL_READ, FLAG_CALL_UNLINK, FLAG_CALL_WRITE, FLAG_PATH_PREFIX, SlotConfig,
};

use super::{Errno, SpecError};
use crate::ebpf::lsm::LsmHook;

/// The global LSM hook that sees `call`, and the slot flag that selects it there.
fn lsm_hook(call: SyscallCall) -> (LsmHook, u32) {
    match call {
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
        return Err(SpecError::new("fault.calls", "[]", SyscallCall::allowed()));
    }
    let path_prefix = path_prefix
        .map(|p| normalize_prefix(p, calls))
        .transpose()?;
    config.errno = errno.number();
    let mut hooks = Vec::new();
    for &call in SyscallCall::ALL.iter().filter(|c| calls.contains(c)) {
        let (hook, flag) = lsm_hook(call);
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

/// [`normalize_path_prefix`] as a [`SpecError`].
fn normalize_prefix(p: &str, calls: &[SyscallCall]) -> Result<String, SpecError> {
    normalize_path_prefix(p, calls)
        .map_err(|allowed| SpecError::new("fault.path_prefix", p, allowed))
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
        let e = super::super::parse_call::<SyscallCall>("chmod").unwrap_err();
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
                "no path_prefix with fork",
            ),
            (
                &[SyscallCall::Exec][..],
                "/data",
                "no path_prefix with exec",
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
                "fault.path_prefix: /data is not allowed; expected no path_prefix with fork: \
                 only file calls (open, read, write, unlink, create, mmap)"
            ),
            "{e}"
        );
        let longest = format!(
            "/{}",
            "a".repeat(chaos_api::experiment::MAX_PATH_PREFIX_LEN - 1)
        );
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
            .iter()
            .copied()
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
