//! The kernel programs of chaos-ebpf.
//!
//! Owns every program that runs in the kernel: `cgroup_skb` ingress and visible egress packet
//! loss, the cgroup `sock_addr` / `sock_create` network syscall errors, and the tc egress delay
//! (EDT) and silent loss programs (`tc.rs`),
//! each compiled once per experiment slot (see `chaos_common` for the slot model; the daemon
//! loads and attaches only the copies its experiments need); and the global BPF LSM programs
//! of file and process syscall errors, which walk the slots themselves (`lsm.rs`). Hooks are
//! thin: any internal error gives the no-fault verdict. Rare events reach the daemon's log
//! through aya-log (`note.rs`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// `atomic_xadd`: the exact fault cap needs an atomic fetch-and-add (see decide.rs).
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod decide;
#[cfg(target_arch = "bpf")]
mod hooks;
#[cfg(target_arch = "bpf")]
mod lsm;
#[cfg(target_arch = "bpf")]
mod note;
#[cfg(target_arch = "bpf")]
mod tc;

// The object is only ever built for bpfel-unknown-none; this keeps `cargo check --workspace`
// on the host meaningful.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never reached at run time.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
