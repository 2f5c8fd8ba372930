//! File and process syscall errors in the kernel: the global BPF LSM programs, the probe that
//! decides how this kernel can run them (BPF LSM, else `fmod_ret` on `security_*`, else
//! refused with the reason), their shared links, and the slot -> target cgroup map.
//!
//! The programs are global and judge every slot themselves (see `chaos-ebpf/src/lsm.rs` and
//! docs/adr/0006), so a hook is attached once, when the first fault needs it, and detached when
//! the last [`LsmLink`] handle is dropped.

use std::{
    collections::HashMap,
    fmt,
    fs::File,
    os::fd::{AsFd, OwnedFd},
    sync::{Arc, Weak},
};

use aya::{
    Btf,
    maps::{CgroupArray, HashMap as BpfHashMap, Map, MapData, MapError},
    programs::{Lsm, links::FdLink},
};
use chaos_common::{
    DirKey, MAP_COUNTERS, MAP_FAULT_TICKETS, MAP_LSM_CGROUPS, MAP_LSM_DIRS, MAP_NOTES, MAP_SLOTS,
    MAX_TARGETS,
};

use super::{Kernel, KernelError, OBJECT, fmod_ret};

/// An LSM hook a file or process syscall-error fault uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LsmHook {
    FileOpen,
    FilePermission,
    InodeUnlink,
    InodeCreate,
    TaskAlloc,
    BprmCheck,
    MmapFile,
}

impl LsmHook {
    /// Every hook, in a stable order.
    pub const ALL: [LsmHook; 7] = [
        LsmHook::FileOpen,
        LsmHook::FilePermission,
        LsmHook::InodeUnlink,
        LsmHook::InodeCreate,
        LsmHook::TaskAlloc,
        LsmHook::BprmCheck,
        LsmHook::MmapFile,
    ];

    /// The program's name in the object when it runs as a BPF LSM program.
    pub fn program_name(self) -> &'static str {
        match self {
            LsmHook::FileOpen => "lsm_file_open",
            LsmHook::FilePermission => "lsm_file_perm",
            LsmHook::InodeUnlink => "lsm_unlink",
            LsmHook::InodeCreate => "lsm_create",
            LsmHook::TaskAlloc => "lsm_task_alloc",
            LsmHook::BprmCheck => "lsm_bprm_check",
            LsmHook::MmapFile => "lsm_mmap_file",
        }
    }

    /// The LSM hook name (`bpf_lsm_<name>` in the kernel's BTF).
    pub fn lsm_name(self) -> &'static str {
        match self {
            LsmHook::FileOpen => "file_open",
            LsmHook::FilePermission => "file_permission",
            LsmHook::InodeUnlink => "inode_unlink",
            LsmHook::InodeCreate => "inode_create",
            LsmHook::TaskAlloc => "task_alloc",
            LsmHook::BprmCheck => "bprm_check_security",
            LsmHook::MmapFile => "mmap_file",
        }
    }

    /// The kernel function the `fmod_ret` fallback modifies, and the program it loads there
    /// (the LSM body: the programs read only their first arguments, which agree).
    pub fn fmod_ret_target(self) -> (&'static str, &'static str) {
        match self {
            LsmHook::FileOpen => ("security_file_open", "lsm_file_open"),
            LsmHook::FilePermission => ("security_file_permission", "lsm_file_perm"),
            LsmHook::InodeUnlink => ("security_inode_unlink", "lsm_unlink"),
            LsmHook::InodeCreate => ("security_inode_create", "lsm_create"),
            LsmHook::TaskAlloc => ("security_task_alloc", "lsm_task_alloc"),
            LsmHook::BprmCheck => ("security_bprm_check", "lsm_bprm_check"),
            LsmHook::MmapFile => ("security_mmap_file", "lsm_mmap_file"),
        }
    }
}

/// How this kernel runs file and process syscall errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LsmSupport {
    /// BPF LSM programs (`lsm=...,bpf` and they load).
    Lsm,
    /// `fmod_ret` programs on the `security_*` functions.
    FmodRet,
    /// Neither; `reason` names what is missing.
    Unsupported { reason: String },
}

impl fmt::Display for LsmSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LsmSupport::Lsm => f.write_str("BPF LSM"),
            LsmSupport::FmodRet => f.write_str("fmod_ret on security_* functions"),
            LsmSupport::Unsupported { reason } => write!(f, "unsupported: {reason}"),
        }
    }
}

/// One attached global hook program. Shared by every fault that uses the hook; the last
/// handle dropped detaches it (closing the link descriptor, which is never pinned).
#[derive(Debug)]
pub struct LsmLink {
    pub hook: LsmHook,
    /// Which mechanism attached it.
    pub mode: LsmSupport,
    _link: LinkFd,
}

#[derive(Debug)]
enum LinkFd {
    Lsm(#[expect(dead_code, reason = "held only to keep the program attached")] FdLink),
    FmodRet(#[expect(dead_code, reason = "held only to keep the program attached")] OwnedFd),
}

/// The LSM part of the [`Kernel`]'s state.
pub(super) struct LsmState {
    /// Slot -> target cgroups (entries `slot * MAX_TARGETS ..`), read by
    /// `bpf_current_task_under_cgroup`.
    cgroups: CgroupArray<MapData>,
    /// How many entries each slot has set in `cgroups`, to unset them again.
    slot_cgroups: HashMap<u32, u32>,
    /// Path-prefix directory -> mask of the slots it belongs to.
    dirs: BpfHashMap<MapData, DirKey, u32>,
    /// The keys each slot has in `dirs`, to take its bit out again.
    slot_dirs: HashMap<u32, Vec<DirKey>>,
    /// Whether the kernel's member offsets are known (the path walk needs them).
    offsets_known: bool,
    /// Descriptors of every map the LSM programs use, by name, for relocating them as
    /// `fmod_ret` programs.
    map_fds: Vec<(&'static str, OwnedFd)>,
    support: Option<LsmSupport>,
    links: HashMap<LsmHook, Weak<LsmLink>>,
    /// Loaded `fmod_ret` programs, kept for reattaching.
    fmod_progs: HashMap<LsmHook, OwnedFd>,
}

impl LsmState {
    /// Takes the LSM maps out of the freshly loaded object.
    pub(super) fn new(ebpf: &mut aya::Ebpf, offsets_known: bool) -> Result<Self, KernelError> {
        let mut map_fds = Vec::new();
        for name in FMOD_RET_MAPS {
            let fd = match ebpf.map(name) {
                Some(
                    Map::Array(data)
                    | Map::PerCpuArray(data)
                    | Map::CgroupArray(data)
                    | Map::HashMap(data)
                    | Map::RingBuf(data),
                ) => data.fd().as_fd().try_clone_to_owned(),
                // `.rodata` exists only while a program reads a global; the rest are ours.
                _ if name == ".rodata" => continue,
                _ => return Err(KernelError::MissingMap(name)),
            };
            let fd = fd.map_err(|source| KernelError::Io {
                what: "duplicating a map descriptor",
                source,
            })?;
            map_fds.push((name, fd));
        }
        let cgroups = take(ebpf, MAP_LSM_CGROUPS)?;
        let dirs = take(ebpf, MAP_LSM_DIRS)?;
        Ok(Self {
            cgroups,
            slot_cgroups: HashMap::new(),
            dirs,
            slot_dirs: HashMap::new(),
            offsets_known,
            map_fds,
            support: None,
            links: HashMap::new(),
            fmod_progs: HashMap::new(),
        })
    }
}

/// Every map an LSM program may reference: the kernel log's ring buffer and counts too (its
/// level is a `.rodata` global).
const FMOD_RET_MAPS: [&str; 8] = [
    MAP_SLOTS,
    MAP_FAULT_TICKETS,
    MAP_COUNTERS,
    MAP_LSM_CGROUPS,
    MAP_LSM_DIRS,
    MAP_NOTES,
    AYA_LOGS,
    ".rodata",
];

/// aya-log's ring buffer.
const AYA_LOGS: &str = "AYA_LOGS";

fn dirs_err(source: MapError) -> KernelError {
    KernelError::Map {
        map: MAP_LSM_DIRS,
        source,
    }
}

fn take<T>(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<T, KernelError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(KernelError::MissingMap(name))?;
    T::try_from(map).map_err(|source| KernelError::Map { map: name, source })
}

/// The BPF LSM's state as the kernel reports it: `Ok(list)` of active LSMs.
fn active_lsms() -> std::io::Result<String> {
    const PATH: &str = "/sys/kernel/security/lsm";
    if let Ok(s) = std::fs::read_to_string(PATH) {
        return Ok(s.trim().to_owned());
    }
    // securityfs may not be mounted (minimal systems, containers): mount it and read again.
    // SAFETY: every pointer is a NUL-terminated string literal that outlives the call; no
    // mount data.
    let rc = unsafe {
        libc::mount(
            c"securityfs".as_ptr(),
            c"/sys/kernel/security".as_ptr(),
            c"securityfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(std::fs::read_to_string(PATH)?.trim().to_owned())
}

/// Probes, by trying, how this kernel can run file and process syscall errors: the BPF LSM
/// when `bpf` is an active LSM and `lsm/file_open` loads and attaches; else `fmod_ret` when
/// the same body loads and attaches on `security_file_open`; else unsupported, naming what is
/// missing. The probe attachments are detached before it returns.
pub fn probe(kernel: &mut Kernel) -> LsmSupport {
    let lsm_failure = match active_lsms() {
        Ok(list) if list.split(',').any(|l| l == "bpf") => {
            match kernel.attach_lsm_program(LsmHook::FileOpen) {
                Ok(_link) => return LsmSupport::Lsm,
                Err(e) => format!("BPF LSM is active (lsm={list}) but its programs fail: {e}"),
            }
        }
        Ok(list) => format!("BPF LSM not active (lsm={list} has no bpf)"),
        Err(e) => format!("BPF LSM state unknown (reading /sys/kernel/security/lsm: {e})"),
    };
    match kernel.attach_fmod_ret(LsmHook::FileOpen) {
        Ok(_link) => {
            tracing::warn!(reason = %lsm_failure, "BPF LSM unusable; using fmod_ret");
            LsmSupport::FmodRet
        }
        Err(e) => LsmSupport::Unsupported {
            reason: format!("{lsm_failure}; and fmod_ret programs cannot be used: {e}"),
        },
    }
}

impl Kernel {
    /// How this kernel runs LSM faults; probed on first use, then cached.
    pub fn lsm_support(&mut self) -> LsmSupport {
        if let Some(s) = &self.lsm.support {
            return s.clone();
        }
        let s = probe(self);
        tracing::info!(support = %s, "file/process syscall errors");
        self.lsm.support = Some(s.clone());
        s
    }

    /// Makes the LSM programs treat tasks in `cgroups` (and below) as `slot`'s targets (at most
    /// `MAX_TARGETS`; the engine checks). A failure part-way leaves entries that
    /// [`Kernel::clear_lsm_target`] removes.
    pub fn set_lsm_targets(&mut self, slot: u32, cgroups: &[File]) -> Result<(), KernelError> {
        use std::os::fd::AsRawFd as _;
        for (i, cgroup) in (0..MAX_TARGETS).zip(cgroups) {
            self.lsm
                .cgroups
                .set(slot * MAX_TARGETS + i, cgroup.as_raw_fd(), 0)
                .map_err(|source| KernelError::Map {
                    map: MAP_LSM_CGROUPS,
                    source,
                })?;
            self.lsm.slot_cgroups.insert(slot, i + 1);
        }
        Ok(())
    }

    /// Makes `slot`'s path-prefix filter match files at or under `dirs` (the identities the
    /// engine resolved from the prefix, see `crate::path_dirs`), replacing what it had.
    pub fn set_lsm_dirs(&mut self, slot: u32, dirs: &[DirKey]) -> Result<(), KernelError> {
        if !self.lsm.offsets_known {
            return Err(KernelError::Btf(
                "the path prefix needs the offsets of struct file, path, dentry, inode and \
                 super_block members from /sys/kernel/btf/vmlinux, which could not be read"
                    .to_owned(),
            ));
        }
        self.clear_lsm_dirs(slot)?;
        let bit = 1u32 << slot;
        for key in dirs {
            let mask = self.lsm_dir_mask(key)?;
            // Record first: a half-done set is undone by `clear_lsm_dirs`.
            self.lsm.slot_dirs.entry(slot).or_default().push(*key);
            self.lsm.dirs.insert(key, mask | bit, 0).map_err(dirs_err)?;
        }
        Ok(())
    }

    /// Takes `slot`'s bit out of every directory it had; entries no slot uses are removed.
    fn clear_lsm_dirs(&mut self, slot: u32) -> Result<(), KernelError> {
        let bit = 1u32 << slot;
        let keys = self.lsm.slot_dirs.remove(&slot).unwrap_or_default();
        for key in keys {
            let mask = self.lsm_dir_mask(&key)? & !bit;
            let done = if mask == 0 {
                self.lsm.dirs.remove(&key)
            } else {
                self.lsm.dirs.insert(key, mask, 0)
            };
            match done {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(dirs_err(source)),
            }
        }
        Ok(())
    }

    /// The slot mask of `key` in the directory map; 0 when absent.
    fn lsm_dir_mask(&self, key: &DirKey) -> Result<u32, KernelError> {
        match self.lsm.dirs.get(key, 0) {
            Ok(mask) => Ok(mask),
            Err(MapError::KeyNotFound) => Ok(0),
            Err(source) => Err(dirs_err(source)),
        }
    }

    /// Forgets `slot`'s target cgroups (releasing the kernel's references to them) and its
    /// path-prefix directories.
    pub fn clear_lsm_target(&mut self, slot: u32) -> Result<(), KernelError> {
        let dirs = self.clear_lsm_dirs(slot);
        let set = self.lsm.slot_cgroups.remove(&slot).unwrap_or(0);
        // The last first: the programs stop at the first empty entry.
        for i in (0..set).rev() {
            if let Err(source) = self.lsm.cgroups.unset(slot * MAX_TARGETS + i) {
                self.lsm.slot_cgroups.insert(slot, i + 1);
                return Err(KernelError::Map {
                    map: MAP_LSM_CGROUPS,
                    source,
                });
            }
        }
        dirs
    }

    /// A handle on `hook`'s global program, attaching it if no fault holds it yet. Fails with
    /// [`KernelError::LsmUnsupported`] when this kernel can run neither mechanism.
    pub fn attach_lsm(&mut self, hook: LsmHook) -> Result<Arc<LsmLink>, KernelError> {
        if let Some(link) = self.lsm.links.get(&hook).and_then(Weak::upgrade) {
            return Ok(link);
        }
        let link = match self.lsm_support() {
            LsmSupport::Lsm => self.attach_lsm_program(hook)?,
            LsmSupport::FmodRet => self.attach_fmod_ret(hook)?,
            LsmSupport::Unsupported { reason } => {
                return Err(KernelError::LsmUnsupported(reason));
            }
        };
        let link = Arc::new(link);
        self.lsm.links.insert(hook, Arc::downgrade(&link));
        Ok(link)
    }

    /// How many links the kernel holds for this object's global hook programs (LSM or
    /// fmod_ret), found in the kernel's own link table (`BPF_LINK_GET_NEXT_ID` and each
    /// link's info), not in our bookkeeping: what cleanup checks assert.
    pub fn lsm_links_attached(&self) -> usize {
        let mut ours: Vec<u32> = self
            .lsm
            .fmod_progs
            .values()
            .filter_map(|fd| super::sys::prog_id(fd).ok())
            .collect();
        for hook in LsmHook::ALL {
            if let Some(program) = self.ebpf.program(hook.program_name())
                && let Ok(info) = program.info()
            {
                ours.push(info.id());
            }
        }
        aya::programs::loaded_links()
            .filter_map(Result::ok)
            .filter(|link| ours.contains(&link.program_id()))
            .count()
    }

    fn attach_lsm_program(&mut self, hook: LsmHook) -> Result<LsmLink, KernelError> {
        let name = hook.program_name();
        let err = |source| KernelError::Program {
            program: name.to_owned(),
            source,
        };
        let program: &mut Lsm = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| KernelError::MissingProgram(name.to_owned()))?
            .try_into()
            .map_err(err)?;
        if program.fd().is_err() {
            let btf = Btf::from_sys_fs().map_err(|e| KernelError::Btf(e.to_string()))?;
            program.load(hook.lsm_name(), &btf).map_err(err)?;
        }
        let id = program.attach().map_err(err)?;
        let link = FdLink::from(program.take_link(id).map_err(err)?);
        Ok(LsmLink {
            hook,
            mode: LsmSupport::Lsm,
            _link: LinkFd::Lsm(link),
        })
    }

    fn attach_fmod_ret(&mut self, hook: LsmHook) -> Result<LsmLink, KernelError> {
        let (function, program) = hook.fmod_ret_target();
        if !self.lsm.fmod_progs.contains_key(&hook) {
            let maps: Vec<(&str, std::os::fd::BorrowedFd<'_>)> = self
                .lsm
                .map_fds
                .iter()
                .map(|(n, fd)| (*n, fd.as_fd()))
                .collect();
            let fd = fmod_ret::load(OBJECT, program, function, &maps)?;
            self.lsm.fmod_progs.insert(hook, fd);
        }
        let prog = &self.lsm.fmod_progs[&hook];
        let link = fmod_ret::attach(prog, program, function)?;
        Ok(LsmLink {
            hook,
            mode: LsmSupport::FmodRet,
            _link: LinkFd::FmodRet(link),
        })
    }
}
