//! Faults made by writing cgroup interface files instead of attaching kernel programs:
//! [`pod_kill`] (`cgroup.kill` of pods and containers) and [`pressure`] (`cpu.max`,
//! `memory.high`), and the database load's runner, a child process in a cgroup of its own
//! ([`dbload`]).
//!
//! Their kill switch is a [`HostSwitch`](crate::switch::HostSwitch): a pod kill's worker thread
//! checks it before every kill and is woken by it; a resource pressure's knobs are put back by
//! it. Every knob is journaled *before* it is written, so a daemon killed in between restores
//! it at its next start ([`crate::journal::undo_pending`]).

pub mod dbload;
pub mod pod_kill;
pub mod pressure;

use std::{
    io,
    path::{Path, PathBuf},
};

use crate::{
    error::{Classify, ErrorClass},
    journal::JournalError,
};

/// Why a host fault cannot start or failed.
#[derive(Debug, thiserror::Error)]
pub enum HostFaultError {
    /// The target cannot take this fault (no such knob, not a pod, already under pressure);
    /// the reason says why and what would work.
    #[error("{path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A database load's pre-flight failed: the database's own message.
    #[error("database_load pre-flight against {address}: {message}")]
    Database { address: String, message: String },
}

impl Classify for HostFaultError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unusable { .. } | Self::Database { .. } => ErrorClass::Refused,
            Self::Io { .. } | Self::Journal(_) => ErrorClass::Internal,
        }
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HostFaultError {
    let path = path.to_path_buf();
    move |source| HostFaultError::Io { what, path, source }
}

fn unusable(path: &Path, reason: impl Into<String>) -> HostFaultError {
    HostFaultError::Unusable {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// 64 random bits from the kernel's CSPRNG.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: `b` is a valid writable buffer of the length passed; getrandom writes at most
    // that many bytes. On failure (never for 8 bytes on Linux 3.17+) `b` stays zero.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    u64::from_le_bytes(b)
}
