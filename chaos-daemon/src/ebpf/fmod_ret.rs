//! `fmod_ret` programs, which aya 0.14 cannot load: the LSM program bodies of the embedded object,
//! relocated against the maps aya already created, loaded with a raw `BPF_PROG_LOAD` as
//! `BPF_PROG_TYPE_TRACING` / `BPF_MODIFY_RETURN` on a `security_*` function, and attached with
//! `BPF_RAW_TRACEPOINT_OPEN`. Used only when the BPF LSM is not active (see `lsm.rs`).
//!
//! The least hacky route we found: aya keeps its relocated instructions private, so the object
//! is parsed again with aya-obj (the parser aya itself uses) and its map references are
//! patched with the descriptors of the maps the [`super::Kernel`] owns, exactly as aya does.

use std::{
    collections::HashSet,
    ffi::CStr,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
};

use aya::Btf;
use aya_obj::{
    Object,
    btf::BtfKind,
    generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type},
};

/// Why an `fmod_ret` program could not be loaded or attached.
#[derive(Debug, thiserror::Error)]
pub enum FmodRetError {
    #[error("parsing the embedded object: {0}")]
    Parse(String),
    #[error("the embedded object has no program {0}")]
    MissingProgram(String),
    #[error("relocating {program}: {reason}")]
    Relocate { program: String, reason: String },
    #[error("reading the kernel's BTF for {function}: {reason}")]
    Btf { function: String, reason: String },
    #[error("BPF_PROG_LOAD of {program} as fmod_ret on {function}: {source}{log}")]
    Load {
        program: String,
        function: String,
        source: io::Error,
        /// The verifier log's last lines, with a leading newline, or empty.
        log: String,
    },
    #[error("attaching fmod_ret {program} to {function}: {source}")]
    Attach {
        program: String,
        function: String,
        source: io::Error,
    },
}

/// Calls `bpf(cmd, attr, sizeof attr)` and returns the new descriptor.
///
/// # Safety
/// `attr` must be filled as `cmd` expects, with every pointer valid for the call.
unsafe fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    // SAFETY: forwarded to the caller.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_int,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// Loads `program` (an LSM program of `object`) as `fmod_ret` on the kernel function
/// `function`. `maps` gives the descriptor of every map the program uses, by name.
pub fn load(
    object: &[u8],
    program: &str,
    function: &str,
    maps: &[(&str, BorrowedFd<'_>)],
) -> Result<OwnedFd, FmodRetError> {
    let insns = relocated_instructions(object, program, maps)?;
    let btf_err = |reason: String| FmodRetError::Btf {
        function: function.to_owned(),
        reason,
    };
    let btf = Btf::from_sys_fs().map_err(|e| btf_err(e.to_string()))?;
    let btf_id = btf
        .id_by_type_name_kind(function, BtfKind::Func)
        .map_err(|e| btf_err(e.to_string()))?;
    let load = |log: &mut [u8]| {
        // SAFETY: `bpf_attr` is a plain C union of integers; all zeroes is its documented
        // "unset" value.
        let mut attr = unsafe { std::mem::zeroed::<bpf_attr>() };
        // SAFETY: writing the `prog_load` member of a zeroed union.
        let u = unsafe { &mut attr.__bindgen_anon_3 };
        u.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
        u.expected_attach_type = bpf_attach_type::BPF_MODIFY_RETURN as u32;
        u.attach_btf_id = btf_id;
        u.insns = insns.as_ptr() as u64;
        u.insn_cnt = insns.len() as u32;
        u.license = c"GPL".as_ptr() as u64;
        for (dst, src) in u.prog_name.iter_mut().zip(program.bytes().take(15)) {
            *dst = src as libc::c_char;
        }
        if !log.is_empty() {
            u.log_level = 1;
            u.log_buf = log.as_mut_ptr() as u64;
            u.log_size = log.len() as u32;
        }
        // SAFETY: `attr` is a `prog_load` attr whose pointers (`insns`, `license`, `log_buf`)
        // outlive the call; `insns` holds `insn_cnt` instructions.
        unsafe { bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr) }
    };
    load(&mut []).or_else(|_| {
        // Load again with the verifier log on, only to explain the failure.
        let mut log = vec![0u8; 1 << 16];
        load(&mut log).map_err(|source| FmodRetError::Load {
            program: program.to_owned(),
            function: function.to_owned(),
            source,
            log: log_tail(&log),
        })
    })
}

/// Attaches a loaded `fmod_ret` program; the returned link descriptor keeps it attached.
pub fn attach(prog: &OwnedFd, program: &str, function: &str) -> Result<OwnedFd, FmodRetError> {
    // SAFETY: as in `load`.
    let mut attr = unsafe { std::mem::zeroed::<bpf_attr>() };
    // Writing a union field is safe; `name` stays 0: the program's BTF attach target.
    attr.raw_tracepoint.prog_fd = prog.as_raw_fd() as u32;
    // SAFETY: a `raw_tracepoint` attr without pointers.
    unsafe { bpf_fd(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &mut attr) }.map_err(|source| {
        FmodRetError::Attach {
            program: program.to_owned(),
            function: function.to_owned(),
            source,
        }
    })
}

/// `program`'s instructions with map references patched and subprogram calls linked.
fn relocated_instructions(
    object: &[u8],
    program: &str,
    maps: &[(&str, BorrowedFd<'_>)],
) -> Result<Vec<aya_obj::generated::bpf_insn>, FmodRetError> {
    let reloc = |reason: String| FmodRetError::Relocate {
        program: program.to_owned(),
        reason,
    };
    let mut obj = Object::parse(object).map_err(|e| FmodRetError::Parse(e.to_string()))?;
    let key = obj
        .programs
        .get(program)
        .ok_or_else(|| FmodRetError::MissingProgram(program.to_owned()))?
        .function_key();
    // As aya does: every function's section counts for call relocations.
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
    // We patch only the maps we were given, so drop the other programs (they may use other
    // maps); shared `.text` functions stay for call linking.
    let program_sections: HashSet<usize> = obj.programs.values().map(|p| p.section_index).collect();
    obj.functions
        .retain(|k, _| *k == key || !program_sections.contains(&k.0));
    obj.programs.retain(|name, _| name == program);
    let mut by_name = Vec::new();
    for (name, fd) in maps {
        let map = obj
            .maps
            .get(*name)
            .ok_or_else(|| reloc(format!("the object has no map {name}")))?;
        by_name.push((*name, fd.as_raw_fd(), map));
    }
    // `relocate_maps` borrows `obj` mutably; clone the map definitions it reads.
    let owned: Vec<(&str, RawFd, aya_obj::Map)> = by_name
        .into_iter()
        .map(|(n, fd, m)| (n, fd, m.clone()))
        .collect();
    obj.relocate_maps(owned.iter().map(|(n, fd, m)| (*n, *fd, m)), &text_sections)
        .map_err(|e| reloc(e.to_string()))?;
    obj.relocate_calls(&text_sections)
        .map_err(|e| reloc(e.to_string()))?;
    obj.functions
        .remove(&key)
        .map(|f| f.instructions)
        .ok_or_else(|| FmodRetError::MissingProgram(program.to_owned()))
}

/// The last lines of a NUL-terminated verifier log, prefixed with a newline; empty if none.
fn log_tail(log: &[u8]) -> String {
    let text = CStr::from_bytes_until_nul(log)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n");
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nverifier log (last lines):\n{tail}")
    }
}
