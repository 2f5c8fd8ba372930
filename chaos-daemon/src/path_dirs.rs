//! What a `syscall_error` fault's path prefix stands for in the kernel: the identities
//! (superblock device, inode number) of the directory the prefix names, as the target's
//! processes see it, and of the roots of the mounts below it. The LSM programs fail a call when
//! the file's dentry or one of its ancestors has one of these identities (docs/adr/0009).
//!
//! The prefix is resolved in every mount namespace (and root) the target's processes use, with
//! `openat2(RESOLVE_IN_ROOT)` under `/proc/<pid>/root` so that `..` and absolute symlinks stay
//! inside that root; a target without processes is resolved in the daemon's own namespace.

use std::{
    collections::HashSet,
    fs::File,
    os::{fd::AsFd, unix::fs::MetadataExt as _},
    path::Path,
};

use chaos_common::{DirKey, MAX_DIRS_PER_SLOT};
use nix::{
    fcntl::{OFlag, OpenHow, ResolveFlag, openat2},
    sys::{
        stat::{fstat, major, minor},
        statfs::{BTRFS_SUPER_MAGIC, fstatfs},
    },
};

use crate::{
    cgroupfs,
    error::{Classify, ErrorClass},
};

/// Why a path prefix cannot be used on this node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fault.path_prefix: {prefix:?} is not allowed here; expected {allowed}")]
pub struct PrefixError {
    /// The prefix as given.
    pub prefix: String,
    /// What would work, or what is wrong with it on this node.
    pub allowed: String,
}

impl Classify for PrefixError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Invalid
    }
}

/// The directory identities of `prefix` (absolute, normalized) for the target cgroups
/// `cgroups`: the prefix and the mount roots below it, in each mount namespace of the targets'
/// processes where it exists. Fails (on `fault.path_prefix`) when it exists in none, when it or a mount
/// below it is on btrfs, or when there are more than [`MAX_DIRS_PER_SLOT`].
pub fn resolve(prefix: &str, cgroups: &[&Path]) -> Result<Vec<DirKey>, PrefixError> {
    let err = |allowed: String| PrefixError {
        prefix: prefix.to_owned(),
        allowed,
    };
    let views = views(cgroups);
    let mut keys: Vec<DirKey> = Vec::new();
    let mut seen_in = Vec::new();
    for view in &views {
        let Ok(root) = File::open(format!("/proc/{view}/root")) else {
            continue; // the process exited
        };
        let top = match identity(&root, prefix) {
            Ok(top) => top.map_err(|e| err(e.to_string()))?,
            Err(_) => continue, // not in this namespace
        };
        let Ok(mountinfo) = std::fs::read_to_string(format!("/proc/{view}/mountinfo")) else {
            continue; // the process exited
        };
        seen_in.push(view.clone());
        let mut found = vec![top];
        let below = format!("{prefix}/");
        for mount_point in mount_points(&mountinfo) {
            if mount_point.starts_with(&below) {
                // A mount point that vanished since the read is no longer below the prefix.
                if let Ok(key) = identity(&root, &mount_point) {
                    found.push(key.map_err(|e| err(format!("{e} (mount {mount_point})")))?);
                }
            }
        }
        for key in found {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        let whom = if views == ["self"] {
            "the daemon's mount namespace (the target has no processes)".to_owned()
        } else {
            format!(
                "the mount namespace of any of the target's processes (looked as pids {})",
                views.join(", ")
            )
        };
        return Err(err(format!(
            "an existing file or directory; not found in {whom}"
        )));
    }
    if keys.len() > MAX_DIRS_PER_SLOT {
        return Err(err(format!(
            "a path that stands for at most {MAX_DIRS_PER_SLOT} directories (the prefix in \
             each mount namespace of the target plus the mounts below it; {} found, looking as \
             {}): choose a deeper prefix",
            keys.len(),
            seen_in.join(", ")
        )));
    }
    Ok(keys)
}

/// One process per distinct (mount namespace, root) of the targets' processes, as the
/// `/proc/<view>` name to look through; `["self"]` when the targets have none.
fn views(cgroups: &[&Path]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut views = Vec::new();
    let pids = cgroups
        .iter()
        .flat_map(|cgroup| cgroupfs::procs_tree(cgroup).unwrap_or_default());
    for pid in pids {
        let ns = std::fs::metadata(format!("/proc/{pid}/ns/mnt")).map(|m| m.ino());
        let root = std::fs::metadata(format!("/proc/{pid}/root")).map(|m| (m.dev(), m.ino()));
        if let (Ok(ns), Ok(root)) = (ns, root)
            && seen.insert((ns, root))
        {
            views.push(pid.to_string());
        }
    }
    if views.is_empty() {
        views.push("self".to_owned());
    }
    views
}

/// Why a path that exists cannot be matched.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error(
        "a path on another filesystem than btrfs: btrfs reports a per-subvolume device in \
         stat() that is not the superblock's, so the kernel side could never match it"
    )]
    Btrfs,
    #[error("a path whose identity can be read ({0})")]
    Stat(nix::Error),
}

/// The identity of `path` (absolute) resolved inside `root`; `Err(_)` when it does not exist
/// there, `Ok(Err(_))` when it exists but cannot be used.
fn identity(root: &File, path: &str) -> Result<Result<DirKey, Unusable>, nix::Error> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_fd(), path, how)?;
    let st = match fstat(&fd) {
        Ok(st) => st,
        Err(e) => return Ok(Err(Unusable::Stat(e))),
    };
    match fstatfs(&fd) {
        Ok(fs) if fs.filesystem_type() == BTRFS_SUPER_MAGIC => return Ok(Err(Unusable::Btrfs)),
        Ok(_) => {}
        Err(e) => return Ok(Err(Unusable::Stat(e))),
    }
    Ok(Ok(DirKey {
        ino: st.st_ino,
        dev: kernel_dev(st.st_dev),
        _pad: 0,
    }))
}

/// The kernel's internal `dev_t` (`MKDEV`: 12-bit major, 20-bit minor) of a user-space `st_dev`.
fn kernel_dev(st_dev: u64) -> u32 {
    ((major(st_dev) as u32) << 20) | (minor(st_dev) as u32 & 0xf_ffff)
}

/// The mount points (5th field) of a `/proc/<pid>/mountinfo`, unescaped (`\040` and friends).
fn mount_points(mountinfo: &str) -> impl Iterator<Item = String> + '_ {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
}

/// Undoes the kernel's octal escapes of space, tab, newline and backslash in mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(oct.iter().fold(0u8, |v, c| (v << 3) | (c - b'0')));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        let info = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /data/x rw - tmpfs tmpfs rw\n";
        let v: Vec<String> = mount_points(info).collect();
        assert_eq!(v, ["/mnt/a b", "/data/x"]);
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("tail\\04"), "tail\\04");
    }

    #[test]
    fn kernel_dev_is_mkdev() {
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(0, 300)), 300);
    }

    #[test]
    fn resolves_a_directory_and_the_mounts_below_it_in_the_daemons_namespace() {
        // A path that is no cgroup: no processes, so the daemon's own namespace.
        let none = Path::new("/nonexistent-cgroup");
        let dir = std::env::temp_dir().join(format!("chaos-path-dirs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let keys = resolve(dir.to_str().unwrap(), &[none]);
        let st = std::fs::metadata(&dir).unwrap();
        let btrfs = fstatfs(File::open(&dir).unwrap())
            .is_ok_and(|f| f.filesystem_type() == BTRFS_SUPER_MAGIC);
        if !btrfs {
            assert_eq!(
                keys.unwrap(),
                [DirKey {
                    ino: st.ino(),
                    dev: kernel_dev(st.dev()),
                    _pad: 0
                }]
            );
        }
        let e = resolve(dir.join("missing").to_str().unwrap(), &[none]).unwrap_err();
        assert!(e.to_string().starts_with("fault.path_prefix: "), "{e}");
        assert!(e.allowed.contains("daemon's mount namespace"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
