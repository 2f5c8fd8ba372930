//! Target resolution: a cgroup path, a PID, a container ID or a pod UID (chaos-api's
//! [`TargetKind`]) becomes one cgroup v2 directory and its id, and protected cgroups are refused:
//! the root cgroup, the daemon's own cgroup and its ancestors, and every cgroup that is or
//! contains one named in `safety_checks.protected_cgroups` (the node's own services).
//!
//! The cgroup2 mount is found in `/proc/self/mountinfo` (it is `/sys/fs/cgroup` on most nodes,
//! `/sys/fs/cgroup/unified` on hybrid hosts). A cgroup's id, what `bpf_get_current_cgroup_id`
//! returns, is the inode number of its directory.

use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Component, Path, PathBuf},
};

use chaos_api::{
    config::wildcard_match,
    experiment::{Target, TargetKind, target_path},
};

use crate::error::{Classify, ErrorClass};

/// A target resolved to a cgroup v2 directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTarget {
    /// Absolute path of the cgroup directory.
    pub path: PathBuf,
    /// The cgroup id (directory inode).
    pub id: u64,
}

/// Why a target cannot be used. Each variant names what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo)")]
    NoCgroup2,
    #[error("target.cgroup: {path:?} is not a cgroup directory under the cgroup2 mount {mount:?}")]
    NotACgroup { path: PathBuf, mount: PathBuf },
    #[error("target.pid: process {pid} not found or has no cgroup v2 membership: {source}")]
    Pid { pid: u32, source: io::Error },
    #[error(
        "target.pid: process {pid} is in {path:?}, which is not a cgroup directory under the \
         cgroup2 mount {mount:?} (a process in another cgroup namespace, or a cgroup that went \
         away); expected a process in this node's cgroup hierarchy"
    )]
    PidCgroup {
        pid: u32,
        path: PathBuf,
        mount: PathBuf,
    },
    #[error("target.container: {id:?} is not a container ID (hex, at least 12 characters)")]
    BadContainerId { id: String },
    #[error("target.pod_uid: {uid:?} is not a pod UID (UUID form, 36 characters)")]
    BadPodUid { uid: String },
    #[error("{what} {value:?}: no cgroup found under {mount:?}")]
    NotFound {
        what: &'static str,
        value: String,
        mount: PathBuf,
    },
    #[error("{what} {value:?} is ambiguous: it matches {first:?} and {second:?}")]
    Ambiguous {
        what: &'static str,
        value: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("target {path:?} is protected: {reason}")]
    Protected { path: PathBuf, reason: String },
    #[error(
        "{second_at}: {second:?} is {relation} {first:?} ({first_at}); expected targets that are \
         disjoint cgroups (a packet or call is judged once per experiment)"
    )]
    Overlap {
        first_at: String,
        first: PathBuf,
        second_at: String,
        second: PathBuf,
        relation: &'static str,
    },
    #[error("reading {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl Classify for TargetError {
    fn class(&self) -> ErrorClass {
        match self {
            // Not on this node (a fan-out asks every node).
            Self::NotACgroup { .. } | Self::NotFound { .. } | Self::Pid { .. } => {
                ErrorClass::NotFound
            }
            Self::BadContainerId { .. } | Self::BadPodUid { .. } => ErrorClass::Invalid,
            Self::Ambiguous { .. }
            | Self::Protected { .. }
            | Self::Overlap { .. }
            | Self::NoCgroup2
            | Self::PidCgroup { .. } => ErrorClass::Refused,
            Self::Io { .. } => ErrorClass::Internal,
        }
    }
}

/// How deep the container and pod searches walk below the cgroup2 mount. kubelet's deepest
/// layout (kind nodes nest it under the node's own cgroup) is about eight levels.
const MAX_SEARCH_DEPTH: usize = 10;

/// The cgroup2 mount point from `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Result<PathBuf, TargetError> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|source| TargetError::Io {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    parse_cgroup2_mount(&text).ok_or(TargetError::NoCgroup2)
}

/// Finds the first cgroup2 mount in mountinfo text (`... MOUNTPOINT ... - cgroup2 ...`).
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Resolves targets under one cgroup2 mount and refuses protected ones.
#[derive(Clone, Debug)]
pub struct Resolver {
    mount: PathBuf,
    /// The daemon's own cgroup: never a target, nor any of its ancestors (a fault on an
    /// ancestor reaches it).
    own: PathBuf,
    /// Cgroup directory names (`*` wildcards) that no target may be or contain.
    protected: Vec<String>,
}

impl Resolver {
    /// A resolver for `mount` that protects the root cgroup and the calling process's cgroup.
    pub fn new(mount: PathBuf) -> Result<Self, TargetError> {
        let mount = canonical(&mount)?;
        let own = cgroup_of_pid_path(&mount, Path::new("/proc/self/cgroup"))?;
        Ok(Self {
            own,
            mount,
            protected: Vec::new(),
        })
    }

    /// Also protects every cgroup named like one of `names` (`*` wildcards), and every cgroup
    /// that contains one (`safety_checks.protected_cgroups`).
    pub fn protecting(mut self, names: &[String]) -> Self {
        self.protected = names.to_vec();
        self
    }

    /// The cgroup2 mount targets are resolved under.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// How deep `cgroup` lies below the cgroup2 mount (the root cgroup is level 0).
    pub fn level(&self, cgroup: &Path) -> u32 {
        cgroup
            .strip_prefix(&self.mount)
            .map_or(0, |rel| rel.components().count() as u32)
    }

    /// Resolves `target` to a cgroup directory and checks it is not protected.
    pub fn resolve(&self, target: &TargetKind) -> Result<ResolvedTarget, TargetError> {
        let path = match target {
            TargetKind::Cgroup(p) => self.cgroup_path(Path::new(p))?,
            TargetKind::Pid(pid) => self.pid(*pid, Path::new(&format!("/proc/{pid}/cgroup")))?,
            TargetKind::ContainerId(id) => self.container(id)?,
            TargetKind::PodUid(uid) => self.pod(uid)?,
        };
        self.check_protected(&path)?;
        let id = fs::metadata(&path)
            .map_err(|source| TargetError::Io {
                path: path.clone(),
                source,
            })?
            .ino();
        Ok(ResolvedTarget { path, id })
    }

    /// Resolves every target of an experiment (see [`Resolver::resolve`]) and checks that no
    /// two are the same cgroup or one inside the other.
    pub fn resolve_all(&self, targets: &[Target]) -> Result<Vec<ResolvedTarget>, TargetError> {
        let mut resolved: Vec<ResolvedTarget> = Vec::with_capacity(targets.len());
        for (i, target) in targets.iter().enumerate() {
            let found = self.resolve(&target.kind)?;
            for (j, earlier) in resolved.iter().enumerate() {
                let relation = if earlier.path == found.path {
                    "the same cgroup as"
                } else if found.path.starts_with(&earlier.path) {
                    "inside"
                } else if earlier.path.starts_with(&found.path) {
                    "the parent of"
                } else {
                    continue;
                };
                return Err(TargetError::Overlap {
                    first_at: target_path(j, targets.len()),
                    first: earlier.path.clone(),
                    second_at: target_path(i, targets.len()),
                    second: found.path,
                    relation,
                });
            }
            resolved.push(found);
        }
        Ok(resolved)
    }

    fn check_protected(&self, path: &Path) -> Result<(), TargetError> {
        if path == self.mount {
            return Err(TargetError::Protected {
                path: path.into(),
                reason: "it is the root cgroup (every process on the node)".into(),
            });
        }
        if self.own.starts_with(path) {
            let reason = if self.own == path {
                "it is the daemon's own cgroup".to_string()
            } else {
                format!(
                    "it contains {} (the daemon's own cgroup)",
                    self.own.display()
                )
            };
            return Err(TargetError::Protected {
                path: path.into(),
                reason,
            });
        }
        if let Some(found) = self.protected_in(path) {
            let reason = if found == path {
                "its name is in safety_checks.protected_cgroups (the node's own services)"
                    .to_string()
            } else {
                format!(
                    "it contains {}, whose name is in safety_checks.protected_cgroups (the \
                     node's own services)",
                    found.display()
                )
            };
            return Err(TargetError::Protected {
                path: path.into(),
                reason,
            });
        }
        Ok(())
    }

    /// The first cgroup at or below `path` whose name is protected. The whole tree is walked:
    /// cgroupfs has no links, so it is finite and acyclic.
    fn protected_in(&self, path: &Path) -> Option<PathBuf> {
        if self.protected.is_empty() {
            return None;
        }
        let is_protected = |dir: &Path| {
            dir.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|name| self.protected.iter().any(|p| wildcard_match(p, name)))
        };
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if is_protected(&dir) {
                return Some(dir);
            }
            // Cgroups vanish while we walk; an unreadable directory is simply skipped.
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        None
    }

    fn cgroup_path(&self, p: &Path) -> Result<PathBuf, TargetError> {
        let not_cgroup = || TargetError::NotACgroup {
            path: p.into(),
            mount: self.mount.clone(),
        };
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(not_cgroup());
        }
        let full = if p.starts_with(&self.mount) {
            p.to_path_buf()
        } else {
            self.mount.join(p.strip_prefix("/").unwrap_or(p))
        };
        let full = canonical(&full).map_err(|_| not_cgroup())?;
        if !full.starts_with(&self.mount) || !full.join("cgroup.procs").exists() {
            return Err(not_cgroup());
        }
        Ok(full)
    }

    /// The cgroup of process `pid` as its `/proc/<pid>/cgroup` (`proc_cgroup`) names it, with
    /// the checks a `target.cgroup` path gets: no `..`, canonical, under the mount, a cgroup.
    fn pid(&self, pid: u32, proc_cgroup: &Path) -> Result<PathBuf, TargetError> {
        let named = cgroup_of_pid_path(&self.mount, proc_cgroup).map_err(|e| match e {
            TargetError::Io { source, .. } => TargetError::Pid { pid, source },
            other => other,
        })?;
        self.cgroup_path(&named)
            .map_err(|_| TargetError::PidCgroup {
                pid,
                path: named,
                mount: self.mount.clone(),
            })
    }

    fn container(&self, id: &str) -> Result<PathBuf, TargetError> {
        if id.len() < 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TargetError::BadContainerId { id: id.into() });
        }
        let id = id.to_ascii_lowercase();
        self.find_unique("target.container", &id, |name| {
            container_id_of(name).is_some_and(|c| c.starts_with(&id))
        })
    }

    fn pod(&self, uid: &str) -> Result<PathBuf, TargetError> {
        let ok = uid.len() == 36
            && uid.bytes().enumerate().all(|(i, b)| {
                if [8, 13, 18, 23].contains(&i) {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            });
        if !ok {
            return Err(TargetError::BadPodUid { uid: uid.into() });
        }
        let uid = uid.to_ascii_lowercase();
        self.find_unique("target.pod_uid", &uid, |name| {
            pod_uid_of(name).is_some_and(|u| u == uid)
        })
    }

    /// Walks the hierarchy breadth-first and returns the one directory whose name matches.
    fn find_unique(
        &self,
        what: &'static str,
        value: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<PathBuf, TargetError> {
        let mut found: Option<PathBuf> = None;
        let mut level = vec![self.mount.clone()];
        for _ in 0..MAX_SEARCH_DEPTH {
            let mut next = Vec::new();
            for dir in &level {
                // Cgroups vanish while we walk; an unreadable directory is simply skipped.
                let Ok(entries) = fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    let path = entry.path();
                    if entry.file_name().to_str().is_some_and(&matches) {
                        if let Some(first) = found {
                            return Err(TargetError::Ambiguous {
                                what,
                                value: value.into(),
                                first,
                                second: path,
                            });
                        }
                        found = Some(path);
                    } else {
                        next.push(path);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        found.ok_or_else(|| TargetError::NotFound {
            what,
            value: value.into(),
            mount: self.mount.clone(),
        })
    }
}

/// The container ID in a cgroup directory name, for the runtimes kubelet drives:
/// systemd driver `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`,
/// `libpod-<id>.scope`; cgroupfs driver `<id>` and `crio-<id>`.
pub fn container_id_of(name: &str) -> Option<&str> {
    let base = name.strip_suffix(".scope").unwrap_or(name);
    let id = ["cri-containerd-", "crio-", "docker-", "libpod-"]
        .iter()
        .find_map(|p| base.strip_prefix(p))
        .unwrap_or(base);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The pod UID (dashed, lower case) in a cgroup directory name: systemd driver
/// `kubepods-<qos>-pod<uid_with_underscores>.slice` or `kubepods-pod<...>.slice`; cgroupfs
/// driver `pod<uid>`.
pub fn pod_uid_of(name: &str) -> Option<String> {
    let uid = if let Some(slice) = name.strip_suffix(".slice") {
        slice.rsplit_once("-pod")?.1.replace('_', "-")
    } else {
        name.strip_prefix("pod")?.to_string()
    };
    (uid.len() == 36).then(|| uid.to_ascii_lowercase())
}

/// The cgroup v2 directory of a process, from a `/proc/PID/cgroup` file (`0::/path`).
fn cgroup_of_pid_path(mount: &Path, proc_cgroup: &Path) -> Result<PathBuf, TargetError> {
    let io_err = |source| TargetError::Io {
        path: proc_cgroup.into(),
        source,
    };
    let text = fs::read_to_string(proc_cgroup).map_err(io_err)?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| io_err(io::Error::new(io::ErrorKind::NotFound, "no 0:: line")))?;
    let rel = rel.strip_suffix(" (deleted)").unwrap_or(rel);
    Ok(mount.join(rel.trim_start_matches('/')))
}

fn canonical(p: &Path) -> Result<PathBuf, TargetError> {
    fs::canonicalize(p).map_err(|source| TargetError::Io {
        path: p.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PID's cgroup gets the checks of a cgroup path: a `..` out of the mount or a symlink
    /// out of it is refused, a cgroup under it is taken.
    #[test]
    fn a_pid_s_cgroup_must_be_a_cgroup_under_the_mount() {
        let base = std::env::temp_dir().join(format!("chaos-pid-{}", std::process::id()));
        let mount = base.join("mount");
        fs::create_dir_all(mount.join("pod/app")).unwrap();
        fs::write(mount.join("pod/app/cgroup.procs"), "").unwrap();
        std::os::unix::fs::symlink("/etc", mount.join("out")).unwrap();
        let resolver = Resolver::new(mount.clone()).unwrap();
        let proc_cgroup = base.join("cgroup");
        let pid = |line: &str| {
            fs::write(&proc_cgroup, format!("0::{line}\n")).unwrap();
            resolver.pid(42, &proc_cgroup)
        };
        let mount = canonical(&mount).unwrap();
        assert_eq!(pid("/pod/app").unwrap(), mount.join("pod/app"));
        for escape in ["/../../etc", "/out", "/pod/missing"] {
            let e = pid(escape).unwrap_err();
            assert!(
                matches!(e, TargetError::PidCgroup { pid: 42, .. })
                    && e.to_string().starts_with("target.pid: process 42 is in"),
                "{escape}: {e}"
            );
        }
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn finds_cgroup2_in_hybrid_and_unified_mountinfo() {
        let hybrid = "30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some("/sys/fs/cgroup/unified".into())
        );
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(parse_cgroup2_mount(unified), Some("/sys/fs/cgroup".into()));
        let escaped = "35 24 0:30 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(parse_cgroup2_mount(escaped), Some("/mnt/my cg".into()));
        assert_eq!(
            parse_cgroup2_mount("1 2 0:1 / /proc rw - proc proc rw\n"),
            None
        );
    }

    #[test]
    fn container_names_of_every_runtime_and_driver() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for name in [
            format!("cri-containerd-{id}.scope"),
            format!("crio-{id}.scope"),
            format!("docker-{id}.scope"),
            format!("libpod-{id}.scope"),
            format!("crio-{id}"),
            id.to_string(),
        ] {
            assert_eq!(container_id_of(&name), Some(id), "{name}");
        }
        assert_eq!(container_id_of("crio-conmon-abc.scope"), None);
        assert_eq!(container_id_of("kubepods.slice"), None);
    }

    #[test]
    fn pod_names_of_both_drivers() {
        let uid = "8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f";
        let under = uid.replace('-', "_");
        for name in [
            format!("kubepods-burstable-pod{under}.slice"),
            format!("kubepods-besteffort-pod{under}.slice"),
            format!("kubepods-pod{under}.slice"),
            format!("pod{uid}"),
        ] {
            assert_eq!(pod_uid_of(&name).as_deref(), Some(uid), "{name}");
        }
        assert_eq!(pod_uid_of("kubepods-burstable.slice"), None);
        assert_eq!(pod_uid_of("podman"), None);
    }
}
