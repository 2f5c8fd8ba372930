//! Network namespaces: a target's namespace (a Kubernetes pod has its own), running netlink and
//! tc operations inside one, and naming a device across namespaces in the host-change journal.
//!
//! A netlink socket and an interface lookup belong to the namespace of the thread that makes
//! them, so [`Netns::run`] runs a closure on a fresh thread that first `setns(2)`s into the
//! namespace; the daemon's other threads never change namespace.
//!
//! A namespace is identified by its inode number, which the kernel reuses once the namespace is
//! gone, and by its cookie (`SO_NETNS_COOKIE`, Linux 5.14+), which it never reuses while it runs:
//! the journal records both, so a restarted daemon never mistakes a new pod's namespace for the
//! one it changed.

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
    /// The namespace's cookie; 0 on a kernel without `SO_NETNS_COOKIE`.
    pub cookie: u64,
}

impl PartialEq for Netns {
    fn eq(&self, other: &Self) -> bool {
        (self.inode, self.cookie) == (other.inode, other.cookie)
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

/// The inode number of process `pid`'s network namespace (a `stat`, nothing opened).
pub fn inode_of_pid(pid: u32) -> io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino())
}

impl Netns {
    /// The descriptor to `setns` to; `None` for the daemon's own namespace.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.fd.as_ref().map(|fd| fd.as_raw_fd())
    }

    /// The daemon's own network namespace.
    pub fn own() -> io::Result<Self> {
        Ok(Self {
            fd: None,
            inode: own_inode()?,
            cookie: cookie_here(),
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
            return Self::own();
        }
        let mut ns = Self {
            fd: Some(Arc::new(file.into())),
            inode,
            cookie: 0,
        };
        ns.cookie = ns.run(cookie_here)?;
        Ok(ns)
    }

    /// The namespace with inode number `inode` and cookie `cookie` (0: any), if anything still
    /// holds it open: the daemon, a process, or a name under `/run/netns` (`ip netns`). `None`
    /// when it is gone.
    pub fn find(inode: u64, cookie: u64) -> Option<Self> {
        let wanted = |ns: &Self| ns.inode == inode && (cookie == 0 || ns.cookie == cookie);
        if let Ok(own) = Self::own()
            && own.inode == inode
        {
            return Some(own).filter(wanted);
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
            .find_map(|p| Self::open(&p).ok().filter(wanted))
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

/// The cookie of the calling thread's network namespace, 0 when the kernel has none.
fn cookie_here() -> u64 {
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return 0;
    };
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of the sizes passed, for the whole call.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc == 0 { cookie } else { 0 }
}

fn is_pid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A device as the journal names it: `net:[<inode>:<cookie>]/<name>`.
pub fn device_path(ns: &Netns, name: &str) -> String {
    format!("net:[{}:{}]/{name}", ns.inode, ns.cookie)
}

/// The namespace inode, cookie and device name of a [`device_path`].
pub fn parse_device_path(path: &str) -> Option<(u64, u64, &str)> {
    let (ns, name) = path.strip_prefix("net:[")?.split_once("]/")?;
    let (inode, cookie) = ns.split_once(':')?;
    let name_ok = !name.is_empty() && !name.contains('/');
    Some((inode.parse().ok()?, cookie.parse().ok()?, name)).filter(|_| name_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_paths_round_trip_and_reject_garbage() {
        let ns = Netns {
            fd: None,
            inode: 4026531840,
            cookie: 7,
        };
        let p = device_path(&ns, "eth0");
        assert_eq!(p, "net:[4026531840:7]/eth0");
        assert_eq!(parse_device_path(&p), Some((4026531840, 7, "eth0")));
        for bad in [
            "eth0",
            "net:[]/eth0",
            "net:[1]/eth0",
            "net:[x:1]/eth0",
            "net:[1:y]/eth0",
            "net:[1:1]/",
            "net:[1:1]/a/b",
            "net:[1:1]eth0",
        ] {
            assert_eq!(parse_device_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn own_namespace_runs_inline_and_is_found_by_inode_and_cookie() {
        let own = Netns::own().unwrap();
        assert!(own.is_own());
        assert_ne!(
            own.cookie, 0,
            "SO_NETNS_COOKIE exists on every kernel here (5.14+)"
        );
        let here = std::thread::current().id();
        assert_eq!(own.run(|| std::thread::current().id()).unwrap(), here);
        assert_eq!(Netns::find(own.inode, own.cookie), Some(own.clone()));
        assert_eq!(Netns::find(own.inode, 0), Some(own.clone()));
        assert_eq!(
            Netns::find(own.inode, own.cookie + 1),
            None,
            "a reused inode"
        );
        assert_eq!(Netns::of_pid(std::process::id()).unwrap(), own);
        assert_eq!(Netns::find(u64::MAX, 0), None);
    }
}
