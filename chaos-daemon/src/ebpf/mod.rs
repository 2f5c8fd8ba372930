//! The only place that talks to aya: loads the embedded kernel object and attaches per-slot
//! program copies to cgroups. [`SlotMaps`] writes experiment slots (arming, and the kill
//! switch) and reads counters on descriptors of its own, without `&mut` or a lock.
//!
//! [`lsm`] owns the global file/process syscall-error programs and their `fmod_ret` fallback.
//!
//! Links are owned by [`Attachment`] values and never pinned: detaching or dropping one (or the
//! daemon dying) removes the program from the cgroup. [`tc`] does the same for the tc egress
//! delay programs on network devices.

mod btf;
mod fmod_ret;
mod log;
pub mod lsm;
mod maps;
pub mod sys;
pub mod tc;

use std::os::fd::AsFd;

use aya::{
    Ebpf,
    maps::MapError,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
        links::{FdLink, LinkError},
    },
};
use chaos_common::{GLOBAL_KERNEL_OFFSETS, MAX_SLOTS};

pub use self::maps::SlotMaps;

/// The kernel object built from `chaos-ebpf` by `build.rs`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/chaos-net"));

/// Errors from the kernel side. They carry the program or map they concern.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("the eBPF object has no program {0}")]
    MissingProgram(String),
    #[error("map {map}: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("map {map}: {source}")]
    MapIo {
        map: &'static str,
        source: std::io::Error,
    },
    #[error("program {program}: {source}")]
    Program {
        program: String,
        source: ProgramError,
    },
    #[error("program {program}: not attached with a BPF link ({source}); Linux 5.7+ is needed")]
    NotALink { program: String, source: LinkError },
    #[error("detaching {program}: {source}")]
    Detach {
        program: String,
        source: std::io::Error,
    },
    #[error("counting CPUs: {0}")]
    Cpus(std::io::Error),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("this kernel cannot run file and process syscall errors: {0}")]
    LsmUnsupported(String),
    #[error("reading the kernel's BTF: {0}")]
    Btf(String),
    #[error(transparent)]
    FmodRet(#[from] fmod_ret::FmodRetError),
    #[error("reading the kernel programs' log: {0}")]
    Log(String),
}

/// A kernel hook a fault can use. Every hook exists once per slot in the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    SkbIngress,
    SkbEgress,
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
    Bind4,
    Bind6,
    SockCreate,
}

impl Hook {
    /// Every hook, in a stable order.
    pub const ALL: [Hook; 9] = [
        Hook::SkbIngress,
        Hook::SkbEgress,
        Hook::Connect4,
        Hook::Connect6,
        Hook::Sendmsg4,
        Hook::Sendmsg6,
        Hook::Bind4,
        Hook::Bind6,
        Hook::SockCreate,
    ];

    /// Name of this hook's copy for `slot` in the object (see `chaos-ebpf/src/hooks.rs`).
    pub fn program_name(self, slot: u32) -> String {
        let prefix = match self {
            Hook::SkbIngress => "skb_in",
            Hook::SkbEgress => "skb_eg",
            Hook::Connect4 => "connect4",
            Hook::Connect6 => "connect6",
            Hook::Sendmsg4 => "sendmsg4",
            Hook::Sendmsg6 => "sendmsg6",
            Hook::Bind4 => "bind4",
            Hook::Bind6 => "bind6",
            Hook::SockCreate => "sock_create",
        };
        format!("{prefix}_{slot}")
    }

    /// The kernel's `bpf_attach_type` of this hook, for [`sys::attached_programs`].
    pub fn attach_type(self) -> u32 {
        use aya_obj::generated::bpf_attach_type as t;
        (match self {
            Hook::SkbIngress => t::BPF_CGROUP_INET_INGRESS,
            Hook::SkbEgress => t::BPF_CGROUP_INET_EGRESS,
            Hook::Connect4 => t::BPF_CGROUP_INET4_CONNECT,
            Hook::Connect6 => t::BPF_CGROUP_INET6_CONNECT,
            Hook::Sendmsg4 => t::BPF_CGROUP_UDP4_SENDMSG,
            Hook::Sendmsg6 => t::BPF_CGROUP_UDP6_SENDMSG,
            Hook::Bind4 => t::BPF_CGROUP_INET4_BIND,
            Hook::Bind6 => t::BPF_CGROUP_INET6_BIND,
            Hook::SockCreate => t::BPF_CGROUP_INET_SOCK_CREATE,
        }) as u32
    }
}

/// One program copy attached to one cgroup through a BPF link. Dropping it detaches too, but
/// only [`Attachment::detach`] reports a failure.
#[derive(Debug)]
pub struct Attachment {
    pub hook: Hook,
    /// `hook`'s program name, for errors.
    program: String,
    link: Option<FdLink>,
}

impl Attachment {
    /// Detaches the program from the cgroup now (`BPF_LINK_DETACH`), even if a forked child
    /// still holds a copy of our link descriptor, then closes the descriptor.
    pub fn detach(mut self) -> Result<(), KernelError> {
        self.detach_now()
    }

    fn detach_now(&mut self) -> Result<(), KernelError> {
        let Some(link) = self.link.take() else {
            return Ok(());
        };
        let err = |source| KernelError::Detach {
            program: self.program.clone(),
            source,
        };
        let id = link.info().map_err(|e| err(std::io::Error::other(e)))?.id();
        sys::detach_link(id).map_err(err)
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Err(e) = self.detach_now() {
            tracing::error!(error = %e, "detach failed; the link closes with its descriptor");
        }
    }
}

/// The loaded kernel object: its programs and the LSM programs' maps. The slot maps live in
/// [`SlotMaps`], which needs no `&mut`.
pub struct Kernel {
    ebpf: Ebpf,
    lsm: lsm::LsmState,
    _log: log::KernelLog,
}

impl Kernel {
    /// Loads the embedded object: creates the maps; programs are loaded on first attach.
    /// Returns the object and its slot maps.
    pub fn load() -> Result<(Self, SlotMaps), KernelError> {
        // The member offsets the path-prefix walk reads. Without BTF they stay unknown
        // (`valid == 0`): no path slot matches in the kernel, and the engine refuses path
        // prefixes (`Kernel::set_lsm_dirs`).
        let offsets = std::fs::read("/sys/kernel/btf/vmlinux")
            .ok()
            .and_then(|b| btf::kernel_offsets(&b))
            .unwrap_or_default();
        let mut ebpf = aya::EbpfLoader::new()
            .override_global(GLOBAL_KERNEL_OFFSETS, &offsets, true)
            .load(OBJECT)?;
        let lsm = lsm::LsmState::new(&mut ebpf, offsets.valid != 0)?;
        let maps = SlotMaps::new(&ebpf)?;
        // After the LSM state, which keeps a descriptor of the ring buffer for `fmod_ret`.
        let log = log::KernelLog::start(&mut ebpf)?;
        Ok((
            Self {
                ebpf,
                lsm,
                _log: log,
            },
            maps,
        ))
    }

    /// Loads (once) and attaches `hook`'s copy for `slot` to `cgroup` with a BPF link, next to
    /// any other program already attached there (links are always multi-attach).
    pub fn attach(
        &mut self,
        slot: u32,
        hook: Hook,
        cgroup: impl AsFd,
    ) -> Result<Attachment, KernelError> {
        debug_assert!(slot < MAX_SLOTS);
        let name = hook.program_name(slot);
        let program = self
            .ebpf
            .program_mut(&name)
            .ok_or_else(|| KernelError::MissingProgram(name.clone()))?;
        let err = |source| KernelError::Program {
            program: name.clone(),
            source,
        };
        let not_link = |source| KernelError::NotALink {
            program: name.clone(),
            source,
        };
        // On 5.7+ aya attaches with BPF_LINK_CREATE, which the kernel always treats as
        // BPF_F_ALLOW_MULTI (other programs on the cgroup, systemd's included, keep running) and
        // which rejects any explicit flag; `Single` means "no flag" there. We need 5.18+ anyway.
        let mode = CgroupAttachMode::Single;
        let link = match hook {
            Hook::SkbIngress | Hook::SkbEgress => {
                let p: &mut CgroupSkb = program.try_into().map_err(err)?;
                ensure_loaded(p.fd().is_ok(), || p.load()).map_err(err)?;
                let ty = if hook == Hook::SkbIngress {
                    CgroupSkbAttachType::Ingress
                } else {
                    CgroupSkbAttachType::Egress
                };
                let id = p.attach(cgroup, ty, mode).map_err(err)?;
                FdLink::try_from(p.take_link(id).map_err(err)?).map_err(not_link)?
            }
            Hook::SockCreate => {
                let p: &mut CgroupSock = program.try_into().map_err(err)?;
                ensure_loaded(p.fd().is_ok(), || p.load()).map_err(err)?;
                let id = p.attach(cgroup, mode).map_err(err)?;
                FdLink::try_from(p.take_link(id).map_err(err)?).map_err(not_link)?
            }
            _ => {
                let p: &mut CgroupSockAddr = program.try_into().map_err(err)?;
                ensure_loaded(p.fd().is_ok(), || p.load()).map_err(err)?;
                let id = p.attach(cgroup, mode).map_err(err)?;
                FdLink::try_from(p.take_link(id).map_err(err)?).map_err(not_link)?
            }
        };
        Ok(Attachment {
            hook,
            program: name,
            link: Some(link),
        })
    }
}

fn ensure_loaded(
    loaded: bool,
    load: impl FnOnce() -> Result<(), ProgramError>,
) -> Result<(), ProgramError> {
    if loaded { Ok(()) } else { load() }
}
