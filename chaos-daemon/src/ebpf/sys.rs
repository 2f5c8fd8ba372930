//! The raw `bpf()` commands aya 0.14 lacks or hides behind `&mut`: what is attached to a cgroup
//! (`BPF_PROG_QUERY`) and a program's kernel id (`BPF_OBJ_GET_INFO_BY_FD`), used to prove
//! cleanup from the kernel's side, detaching a link at once
//! (`BPF_LINK_DETACH`), whoever else still holds a descriptor of it, and map element reads and
//! writes on a descriptor of our own (`BPF_MAP_LOOKUP_ELEM`, `BPF_MAP_UPDATE_ELEM`), which need
//! no lock: the kernel serializes them per element.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd},
};

const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_LINK_GET_FD_BY_ID: libc::c_int = 30;
const BPF_LINK_DETACH: libc::c_int = 34;

/// Calls `bpf(cmd, attr, sizeof attr)`.
///
/// # Safety
/// `attr` must be the `union bpf_attr` member `cmd` expects, and every pointer in it must be
/// valid for what the kernel writes or reads there.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: forwarded to the caller.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>() as u32) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The `map_elem` member of `union bpf_attr`.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `cmd` (`BPF_MAP_UPDATE_ELEM` with `BPF_ANY`, or `BPF_MAP_LOOKUP_ELEM`) on element `key` of
/// `map`, with the value at `value`.
///
/// # Safety
/// `value` must point at `value_len` bytes, exactly the map's value size (for per-CPU maps:
/// one rounded-up value per possible CPU), readable for an update and writable for a lookup,
/// alive for the call.
unsafe fn map_elem(map: &impl AsRawFd, cmd: libc::c_int, key: u32, value: u64) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value,
        flags: 0,
    };
    // SAFETY: `attr` is the `bpf_attr` of `cmd`; `key` points at a readable u32 alive for the
    // call, and `value` is valid as the caller promised.
    unsafe { bpf(cmd, &mut attr)? };
    Ok(())
}

/// Writes `value` at `key` of the map `map` (`BPF_ANY`). `value` must be exactly the map's
/// value size (for per-CPU maps: one rounded-up value per possible CPU).
pub fn map_update(map: &impl AsRawFd, key: u32, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is a live, readable slice; its length is the caller's contract.
    unsafe { map_elem(map, BPF_MAP_UPDATE_ELEM, key, value.as_ptr() as u64) }
}

/// Reads the value at `key` of the map `map` into `value`, which must be exactly the map's
/// value size (for per-CPU maps: one rounded-up value per possible CPU).
pub fn map_lookup(map: &impl AsRawFd, key: u32, value: &mut [u8]) -> io::Result<()> {
    // SAFETY: `value` is a live, writable slice; its length is the caller's contract.
    unsafe { map_elem(map, BPF_MAP_LOOKUP_ELEM, key, value.as_mut_ptr() as u64) }
}

/// Detaches the BPF link with kernel id `link_id` from its target now. Closing our descriptor
/// is not enough when a forked child (between fork and exec) still holds a copy of it.
pub fn detach_link(link_id: u32) -> io::Result<()> {
    #[repr(C)]
    struct GetFdById {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut get = GetFdById {
        id: link_id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: `get` is the `bpf_attr` of BPF_LINK_GET_FD_BY_ID; it holds no pointers.
    let fd = unsafe { bpf(BPF_LINK_GET_FD_BY_ID, &mut get)? };
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut detach = [fd.as_raw_fd() as u32];
    // SAFETY: `detach` is the `bpf_attr` of BPF_LINK_DETACH (`link_fd`); no pointers.
    unsafe { bpf(BPF_LINK_DETACH, &mut detach)? };
    Ok(())
}

/// The kernel id of the program behind `prog` (`BPF_OBJ_GET_INFO_BY_FD`).
pub fn prog_id(prog: &impl AsRawFd) -> io::Result<u32> {
    /// The `info` member of `union bpf_attr`.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // The head of `struct bpf_prog_info`: `type`, then `id`. The kernel fills `info_len`
    // bytes and ignores the rest of its structure.
    let mut head = [0u32; 2];
    let mut attr = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: size_of_val(&head) as u32,
        info: head.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` is the `bpf_attr` of BPF_OBJ_GET_INFO_BY_FD; `info` points at `info_len`
    // writable bytes alive for the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)? };
    Ok(head[1])
}

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
    // SAFETY: `attr` is the `bpf_attr` of BPF_PROG_QUERY, and `prog_ids` points at `prog_cnt`
    // writable u32s that outlive the call.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr)? };
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}
