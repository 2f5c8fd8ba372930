//! The `fault` of a `syscall_error` experiment: the errno, the file and process calls that fail,
//! and the optional path prefix of the opened files, with the defaults and checks.

use super::Errno;
use super::fault::{CallName, check_calls};
use crate::error::{ModelError, invalid};

/// Longest `fault.path_prefix`, in bytes: `PATH_MAX` (4096) without the NUL.
pub const MAX_PATH_PREFIX_LEN: usize = 4095;

/// `fault` of a `syscall_error` experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallError {
    /// The error the faulted calls return. Default: `EIO`.
    pub errno: Errno,
    /// The calls that fail; non-empty, no repeats. Default: `[open]`.
    pub calls: Vec<SyscallCall>,
    /// Only files at or under this absolute path (the directory it names when the experiment
    /// starts, as the target sees it, and the mounts below it); only with file calls (not
    /// `fork` or `exec`). Default: every file.
    pub path_prefix: Option<String>,
}

impl SyscallError {
    /// The defaults: `EIO` on `open`, every file. chaos-ctl's help quotes them.
    pub fn defaults() -> Self {
        Self {
            errno: Errno::EIO,
            calls: vec![SyscallCall::Open],
            path_prefix: None,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ModelError> {
        check_calls(&self.calls)?;
        if let Some(prefix) = &self.path_prefix {
            normalize_path_prefix(prefix, &self.calls)
                .map_err(|allowed| invalid("fault.path_prefix", format!("{prefix:?}"), allowed))?;
        }
        Ok(())
    }
}

/// Checks `fault.path_prefix` against the calls it filters and normalizes it (no repeated or
/// trailing `/`, no `.` components): `Err` says what is allowed instead. Only file calls can be
/// filtered by path; `fork` and `exec` have no file. The daemon applies the same check to what
/// arrives over the API.
pub fn normalize_path_prefix(prefix: &str, calls: &[SyscallCall]) -> Result<String, String> {
    if let Some(call) = calls.iter().find(|call| !call.is_file_call()) {
        let files: Vec<&str> = SyscallCall::ALL
            .iter()
            .filter(|c| c.is_file_call())
            .map(|c| c.as_str())
            .collect();
        return Err(format!(
            "no path_prefix with {call}: only file calls ({}) can be filtered by path (use a \
             separate experiment for {call})",
            files.join(", "),
            call = call.as_str()
        ));
    }
    let parts: Vec<&str> = prefix
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if !prefix.starts_with('/')
        || parts.is_empty()
        || parts.contains(&"..")
        || prefix.contains('\0')
        || prefix.len() > MAX_PATH_PREFIX_LEN
    {
        return Err(format!(
            "an absolute path other than /, without `..`, at most {MAX_PATH_PREFIX_LEN} bytes, \
             e.g. /var/lib/data (omit it for every file)"
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// One entry of `fault.calls` of a `syscall_error` experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyscallCall {
    /// `open`: `open()`/`openat()`.
    Open,
    /// `read`: `read()` and friends.
    Read,
    /// `write`: `write()` and friends.
    Write,
    /// `unlink`: `unlink()`.
    Unlink,
    /// `create`: creating a regular file, e.g. `open(O_CREAT)` of a new file.
    Create,
    /// `fork`: `fork()`/`clone()`, threads included.
    Fork,
    /// `exec`: `execve()`.
    Exec,
    /// `mmap`: `mmap()` of a file (anonymous mappings are not affected).
    Mmap,
}

impl SyscallCall {
    /// Whether the call concerns a file (and so can take a `path_prefix`): all but `fork` and
    /// `exec`.
    pub fn is_file_call(self) -> bool {
        !matches!(self, Self::Fork | Self::Exec)
    }

    /// The name as written in YAML and in the proto, e.g. `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Read => "read",
            Self::Write => "write",
            Self::Unlink => "unlink",
            Self::Create => "create",
            Self::Fork => "fork",
            Self::Exec => "exec",
            Self::Mmap => "mmap",
        }
    }
}

impl CallName for SyscallCall {
    const ALL: &'static [Self] = &[
        Self::Open,
        Self::Read,
        Self::Write,
        Self::Unlink,
        Self::Create,
        Self::Fork,
        Self::Exec,
        Self::Mmap,
    ];

    fn name(self) -> &'static str {
        self.as_str()
    }
}
