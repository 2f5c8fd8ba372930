//! What is attached to a cgroup, straight from the kernel (`BPF_PROG_QUERY`).
//!
//! aya 0.14 has no generic cgroup query, so this is the raw syscall. Used to prove cleanup:
//! after a stop or a crash, none of our programs may remain on the target.

use std::{io, os::fd::AsRawFd};

const BPF_PROG_QUERY: libc::c_long = 16;

/// The `query` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// Ids of the programs attached directly to `cgroup` for `attach_type` (a `bpf_attach_type`).
pub fn attached_programs(cgroup: &impl AsRawFd, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid, fully initialised `bpf_attr.query` of the size we pass, and
    // `prog_ids` points at `prog_cnt` writable u32s that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut attr as *mut QueryAttr,
            size_of::<QueryAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}
