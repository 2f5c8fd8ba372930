//! Network namespaces: a target's namespace (a Kubernetes pod has its own), running netlink and
//! tc operations inside one, and naming a device across namespaces in the host-change journal.
//!
//! A netlink socket and an interface lookup belong to the namespace of the thread that makes
//! them, so [`Netns::run`] runs a closure on a fresh thread that first `setns(2)`s into the
//! namespace; the daemon's other threads never change namespace.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::Path,
    sync::Arc,
};

/// A network namespace, held open (so it stays valid) unless it is the daemon's own.
#[derive(Clone, Debug)]
pub struct Netns {
    /// `None`: the daemon's own namespace, no `setns` needed.
    fd: Option<Arc<OwnedFd>>,
    /// The namespace's inode number (`net:[N]` in `/proc/<pid>/ns/net`).
    pub inode: u64,
}

impl PartialEq for Netns {
    fn eq(&self, other: &Self) -> bool {
        self.inode == other.inode
    }
}

impl std::fmt::Display for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "net:[{}]", self.inode)
    }
}

fn own_inode() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")?.ino())
}

impl Netns {
    /// The daemon's own network namespace.
    pub fn own() -> io::Result<Self> {
        Ok(Self {
            fd: None,
            inode: own_inode()?,
        })
    }

    /// The namespace of process `pid`.
    pub fn of_pid(pid: u32) -> io::Result<Self> {
        Self::open(Path::new(&format!("/proc/{pid}/ns/net")))
    }

    /// The namespace behind a `/proc/<pid>/ns/net` or `/run/netns/<name>` file.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let inode = file.metadata()?.ino();
        if inode == own_inode()? {
            return Ok(Self { fd: None, inode });
        }
        Ok(Self {
            fd: Some(Arc::new(file.into())),
            inode,
        })
    }

    /// The namespace with inode number `inode`, if anything still holds it open: the daemon, a
    /// process, or a name under `/run/netns` (`ip netns`). `None` when it is gone.
    pub fn find(inode: u64) -> Option<Self> {
        if own_inode().ok() == Some(inode) {
            return Self::own().ok();
        }
        let named = std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path());
        let procs = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(is_pid))
            .map(|e| e.path().join("ns/net"));
        named
            .chain(procs)
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == inode))
            .find_map(|p| Self::open(&p).ok().filter(|ns| ns.inode == inode))
    }

    pub fn is_own(&self) -> bool {
        self.fd.is_none()
    }

    /// Runs `f` inside this namespace: on the calling thread for the daemon's own, else on a
    /// new thread that enters it first (and ends with `f`).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let Some(fd) = &self.fd else {
            return Ok(f());
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

fn is_pid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A device as the journal names it: `net:[<inode>]/<name>`.
pub fn device_path(ns: &Netns, name: &str) -> String {
    format!("{ns}/{name}")
}

/// The namespace inode and device name of a [`device_path`].
pub fn parse_device_path(path: &str) -> Option<(u64, &str)> {
    let (ns, name) = path.strip_prefix("net:[")?.split_once("]/")?;
    let name_ok = !name.is_empty() && !name.contains('/');
    Some((ns.parse().ok()?, name)).filter(|_| name_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_paths_round_trip_and_reject_garbage() {
        let ns = Netns {
            fd: None,
            inode: 4026531840,
        };
        let p = device_path(&ns, "eth0");
        assert_eq!(p, "net:[4026531840]/eth0");
        assert_eq!(parse_device_path(&p), Some((4026531840, "eth0")));
        for bad in [
            "eth0",
            "net:[]/eth0",
            "net:[x]/eth0",
            "net:[1]/",
            "net:[1]/a/b",
            "net:[1]eth0",
        ] {
            assert_eq!(parse_device_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn own_namespace_runs_inline_and_is_found_by_inode() {
        let own = Netns::own().unwrap();
        assert!(own.is_own());
        let here = std::thread::current().id();
        assert_eq!(own.run(|| std::thread::current().id()).unwrap(), here);
        assert_eq!(Netns::find(own.inode), Some(own.clone()));
        assert_eq!(Netns::of_pid(std::process::id()).unwrap(), own);
        assert_eq!(Netns::find(u64::MAX), None);
    }
}
