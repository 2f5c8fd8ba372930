//! File and process syscall errors in the kernel: the LSM hook and slot flag of each call a
//! user can fail (the calls and the path-prefix rules are chaos-api's), written into a slot.

use chaos_api::experiment::{CallName as _, SyscallCall, SyscallError, normalize_path_prefix};
use chaos_common::{
    FLAG_CALL_CREATE, FLAG_CALL_EXEC, FLAG_CALL_FORK, FLAG_CALL_MMAP, FLAG_CALL_OPEN,
    FLAG_CALL_READ, FLAG_CALL_UNLINK, FLAG_CALL_WRITE, FLAG_PATH_PREFIX, SlotConfig,
};

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

/// Writes the errno and call flags of a validated `syscall_error` fault into `config` and
/// returns the LSM hooks it needs and its normalized path prefix.
pub fn plan(config: &mut SlotConfig, error: &SyscallError) -> LsmPlan {
    config.errno = error.errno.number();
    let mut hooks = Vec::new();
    for &call in SyscallCall::ALL.iter().filter(|c| error.calls.contains(c)) {
        let (hook, flag) = lsm_hook(call);
        config.flags |= flag;
        if !hooks.contains(&hook) {
            hooks.push(hook);
        }
    }
    // Validated by the model: normalizing cannot fail here.
    let path_prefix = error
        .path_prefix
        .as_deref()
        .and_then(|p| normalize_path_prefix(p, &error.calls).ok());
    if path_prefix.is_some() {
        config.flags |= FLAG_PATH_PREFIX;
    }
    LsmPlan { hooks, path_prefix }
}

#[cfg(test)]
mod tests {
    use chaos_api::experiment::Errno;

    use super::*;

    fn error(calls: &[SyscallCall], path_prefix: Option<&str>) -> SyscallError {
        SyscallError {
            errno: Errno::EIO,
            calls: calls.to_vec(),
            path_prefix: path_prefix.map(str::to_owned),
        }
    }

    #[test]
    fn read_and_write_share_one_hook_and_set_both_flags() {
        let mut cfg = SlotConfig::default();
        let hooks = plan(
            &mut cfg,
            &error(
                &[SyscallCall::Write, SyscallCall::Read, SyscallCall::Fork],
                None,
            ),
        )
        .hooks;
        assert_eq!(hooks, vec![LsmHook::FilePermission, LsmHook::TaskAlloc]);
        assert_eq!(cfg.flags, FLAG_CALL_READ | FLAG_CALL_WRITE | FLAG_CALL_FORK);
        assert_eq!(cfg.errno, libc::EIO as u32);
    }

    #[test]
    fn every_file_call_takes_a_path_prefix_on_its_usual_hook() {
        let mut cfg = SlotConfig::default();
        let file_calls: Vec<SyscallCall> = SyscallCall::ALL
            .iter()
            .copied()
            .filter(|c| c.is_file_call())
            .collect();
        let p = plan(&mut cfg, &error(&file_calls, Some("/data//./x/")));
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
