//! [`lock`]: the daemon's one way to take a mutex.
//!
//! Every mutex in the daemon guards data that a panicking holder cannot leave in a state that
//! matters for disarming and recording (a table of `Arc`s, a counter, a list of knobs), so a
//! poisoned lock is used as it is rather than taking the daemon down with it.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also when a holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
