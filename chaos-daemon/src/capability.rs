//! What this kernel can do, found at daemon start by trying, not by reading version numbers:
//! each experiment type is either supported or refused with the reason (the missing kernel feature).
//! `chaos-ctl capabilities` prints this table; [`Capabilities::check`] refuses a start with it.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use chaos_api::experiment::ExperimentType;

use crate::{
    cgroupfs,
    ebpf::{
        Hook, Kernel,
        lsm::LsmSupport,
        tc::{TcAttachment, TcProgram, needs_clsact},
    },
};

/// Why an engine without a load runner refuses database_load (a library user's engine, or a
/// daemon that found no `chaos-dbload` beside it says where it looked instead).
pub const DATABASE_LOAD_NOT_RUN: &str =
    "database_load needs the load runner chaos-dbload, which this engine was not given";

/// One experiment type's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    /// The experiment type.
    pub kind: ExperimentType,
    pub supported: bool,
    /// Why not, naming the missing kernel feature; empty when supported.
    pub reason: String,
}

/// The probed table for this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `uname -r`.
    pub kernel: String,
    pub faults: Vec<Capability>,
}

impl Capabilities {
    /// Probes every fault kind. Cgroup program attachment is tried on a throwaway cgroup
    /// under `mount` (removed before returning) with slot 0's programs, which are disarmed.
    pub fn probe(kernel: &mut Kernel, mount: &Path) -> Self {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let scratch = Scratch::create(mount);
        let attach = |kernel: &mut Kernel, hooks: &[Hook]| -> Result<(), String> {
            let scratch = scratch.as_ref().map_err(Clone::clone)?;
            let dir = fs::File::open(&scratch.0)
                .map_err(|e| format!("opening {}: {e}", scratch.0.display()))?;
            for hook in hooks {
                kernel
                    .attach(0, *hook, &dir)
                    .map_err(|e| format!("cannot load or attach {hook:?} programs: {e}"))?
                    .detach()
                    .map_err(|e| format!("cannot detach {hook:?} programs: {e}"))?;
            }
            Ok(())
        };
        let sockets = attach(kernel, &[Hook::Connect4, Hook::SockCreate]);
        // The tc egress programs each fault type needs, loaded (verified) and attached.
        let loss = attach(kernel, &[Hook::SkbIngress, Hook::SkbEgress])
            .and_then(|()| tc_egress(kernel, TcProgram::Loss, "the silent egress drop"));
        let mut faults = vec![
            verdict(ExperimentType::PacketLoss, loss),
            verdict(
                ExperimentType::PacketDuplication,
                tc_egress(kernel, TcProgram::Duplicate, "packet_duplication"),
            ),
            verdict(
                ExperimentType::PacketCorruption,
                tc_egress(kernel, TcProgram::Corrupt, "packet_corruption"),
            ),
            verdict(ExperimentType::DependencyFailure, sockets.clone()),
            // Its L4 errors are socket hooks, its HTTP errors a tc program.
            verdict(
                ExperimentType::ApiErrorInjection,
                sockets.and_then(|()| tc_egress(kernel, TcProgram::Http, "HTTP error injection")),
            ),
        ];
        faults.push(verdict(
            ExperimentType::PodDeletion,
            scratch.as_ref().map_err(Clone::clone).and_then(|s| {
                if s.0.join("cgroup.kill").exists() {
                    Ok(())
                } else {
                    Err("the kernel has no cgroup.kill (needs Linux 5.14+)".into())
                }
            }),
        ));
        faults.push(verdict(
            ExperimentType::ResourceExhaustion,
            pressure_support(mount),
        ));
        // Tries the BPF LSM, then fmod_ret (see `ebpf::lsm::probe`); the engine keeps the
        // mechanism it found.
        faults.push(verdict(
            ExperimentType::SyscallError,
            match kernel.lsm_support() {
                LsmSupport::Unsupported { reason } => Err(reason),
                LsmSupport::Lsm | LsmSupport::FmodRet => Ok(()),
            },
        ));
        // Both are paced by fq on one device.
        let fq = crate::net::probe_fq();
        faults.push(verdict(ExperimentType::NetworkLatency, fq.clone()));
        faults.push(verdict(
            ExperimentType::BandwidthLimit,
            fq.and_then(|()| tc_egress(kernel, TcProgram::Rate, "bandwidth_limit")),
        ));
        faults.push(verdict(
            ExperimentType::DatabaseLoad,
            Err(DATABASE_LOAD_NOT_RUN.to_owned()),
        ));
        Self {
            kernel: release,
            faults,
        }
    }

    /// `Ok` if `kind` can run here, else the reason it cannot.
    /// Sets one type's verdict (what is known only after the probe, e.g. the load runner).
    pub fn set(&mut self, kind: ExperimentType, r: Result<(), String>) {
        self.faults.retain(|c| c.kind != kind);
        self.faults.push(verdict(kind, r));
    }

    pub fn check(&self, kind: ExperimentType) -> Result<(), String> {
        match self.faults.iter().find(|c| c.kind == kind) {
            Some(c) if c.supported => Ok(()),
            Some(c) => Err(c.reason.clone()),
            None => Err(format!("{kind} is not probed by this build")),
        }
    }
}

/// Loads `program` (the kernel verifies it) and attaches slot 0's (disarmed) copy to `lo` of a
/// private, throwaway network namespace (on a scoped thread, so the daemon's own namespace is
/// never touched), under a `clsact` before Linux 6.6.
fn tc_egress(kernel: &mut Kernel, program: TcProgram, what: &str) -> Result<(), String> {
    let why = |e: String| format!("{what} needs a tc egress program: {e}");
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), String> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("creating a network namespace: {e}"))?;
            if needs_clsact() {
                // `lo` is always ifindex 1 in a new namespace.
                let mut sock = crate::net::netlink::Socket::open().map_err(|e| e.to_string())?;
                crate::net::qdisc::add_clsact(&mut sock, 1).map_err(|e| e.to_string())?;
            }
            kernel
                .attach_tc_egress(program, 0, "lo")
                .and_then(TcAttachment::detach)
                .map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the probe thread panicked".into()))
    })
    .map_err(why)
}

fn verdict(kind: ExperimentType, r: Result<(), String>) -> Capability {
    Capability {
        kind,
        supported: r.is_ok(),
        reason: r.err().unwrap_or_default(),
    }
}

/// Resource pressure needs the cpu and memory controllers on the cgroup2 hierarchy.
fn pressure_support(mount: &Path) -> Result<(), String> {
    let have = cgroupfs::controllers(mount)
        .map_err(|e| format!("reading {}/cgroup.controllers: {e}", mount.display()))?;
    let missing: Vec<&str> = ["cpu", "memory"]
        .into_iter()
        .filter(|c| !have.iter().any(|h| h == c))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the cgroup2 hierarchy at {} has no {} controller (here they are bound to \
             cgroup v1; resource pressure needs cpu.max and memory.high on cgroup v2)",
            mount.display(),
            missing.join(" or ")
        ))
    }
}

/// A throwaway cgroup for probing, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn create(mount: &Path) -> Result<Self, String> {
        // A daemon killed mid-probe leaves its (empty) probe cgroup: remove those of processes
        // that are gone (another daemon may be probing right now).
        if let Ok(entries) = fs::read_dir(mount) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(rest) = name.strip_prefix("chaos-probe-")
                    && let Some((pid, _)) = rest.split_once('-')
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
        // Unique per engine: one process (a test binary) may probe from several threads.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = mount.join(format!(
            "chaos-probe-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::create_dir(&path) {
            Ok(()) => Ok(Self(path)),
            Err(e) => Err(format!(
                "cannot create a cgroup under {}: {e}",
                mount.display()
            )),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.0) {
            tracing::error!(path = %self.0.display(), error = %e, "removing the probe cgroup");
        }
    }
}
