//! The programs' rare events, reported through aya-log (the `AYA_LOGS` ring buffer) to the
//! daemon's log: a slot reaching its fault cap, a slot's kernel deadline passing, a packet a
//! program could not parse or rewrite, a file deeper than the path-prefix walk.
//!
//! Never one line per packet or call: a cap is reached by exactly one ticket per arm, and the
//! other events are counted in [`NOTES`], where only the run that moves a count from 0 writes
//! a record (the daemon zeroes a slot's counts when it re-arms it). The hot path pays nothing:
//! every call here sits on a branch an unfaulted event never takes, and the writers are not
//! inlined into the programs.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{macros::map, maps::Array};
use aya_log_ebpf::{info, warn};
use chaos_common::{MAX_NOTES, NOTE_GLOBAL, NOTE_KINDS, NOTE_LATE, NOTE_UNPARSED};

#[map(name = "CHAOS_NOTES")]
static NOTES: Array<u64> = Array::with_max_entries(MAX_NOTES, 0);

/// Counts the event at `index`; `true` for its first occurrence since the count was zeroed.
#[inline(always)]
fn first(index: u32) -> bool {
    let Some(count) = NOTES.get_ptr_mut(index) else {
        return false;
    };
    // SeqCst for the fetching add, as in `decide::ticket`.
    // SAFETY: the pointer comes from a successful array lookup and the value is 8-byte aligned;
    // programs only touch it atomically (the daemon zeroes it while the slot is disarmed).
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(count, 1) == 0 }
}

/// `slot` took its last fault: from the next event on, the cap lets everything pass.
#[inline(never)]
pub fn capped(slot: u32, cap: u64) {
    info!(
        &(),
        "slot {}: fault cap of {} reached; later events pass", slot, cap
    );
}

/// An event of `slot` came after its kernel deadline: the programs stopped faulting it before
/// the daemon disarmed it.
#[inline(never)]
pub fn late(slot: u32) {
    if first(slot * NOTE_KINDS + NOTE_LATE) {
        info!(
            &(),
            "slot {}: kernel deadline passed; no more faults until the daemon disarms it", slot
        );
    }
}

/// A program of `slot` could not parse or rewrite a packet (`what` says which and why); the
/// packet went on unchanged.
#[inline(never)]
pub fn unparsed(slot: u32, what: &'static str) {
    if first(slot * NOTE_KINDS + NOTE_UNPARSED) {
        warn!(&(), "slot {}: {}; the packet passes unchanged", slot, what);
    }
}

/// The path-prefix walk stopped after `depth` dentries, short of the filesystem's root: the file
/// is judged outside every prefix.
#[inline(never)]
pub fn too_deep(depth: u32) {
    if first(NOTE_GLOBAL) {
        warn!(
            &(),
            "path_prefix: a file more than {} directories below its filesystem's root is judged outside every prefix",
            depth - 1
        );
    }
}
