//! The targets of an experiment: which cgroups the fault applies to (each exactly one of a
//! cgroup path, a process, a container or a pod), and the Kubernetes pod each belongs to when
//! the caller knows it. A document gives one (`target`) or a list (`targets`, at most
//! [`MAX_TARGETS`], for the pods a selector matches on one node).

use std::fmt;

use crate::error::{ModelError, invalid};

/// Most targets of one experiment on one node: the kernel programs match a slot's cgroups in a
/// bounded loop (`chaos_common::MAX_TARGETS`).
pub const MAX_TARGETS: usize = chaos_common::MAX_TARGETS as usize;

/// Longest `target.cgroup`, in bytes: `PATH_MAX` (4096) without the NUL.
const MAX_CGROUP_PATH_LEN: usize = 4095;

/// `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Which cgroup (exactly one kind in the document).
    pub kind: TargetKind,
    /// `pod_name`: the Kubernetes pod (`NAMESPACE/NAME`) the target belongs to, as the caller
    /// resolved it; a pod deletion is checked against
    /// `experiment_types.pod_deletion.parameters.pods` with it. Default: not given.
    pub pod_name: Option<String>,
}

/// The kinds of `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// `cgroup`: a cgroup v2 path below the cgroup2 mount, e.g. `/system.slice/foo.service`.
    Cgroup(String),
    /// `pid`: every process in the cgroup of this process.
    Pid(u32),
    /// `container_id`: 12 to 64 lowercase hex digits (a full ID or a unique prefix). A
    /// `RUNTIME://` prefix as Kubernetes writes it (`containerd://...`) is dropped when read.
    ContainerId(String),
    /// `pod_uid`: a Kubernetes pod UID (lowercase UUID); the whole pod.
    PodUid(String),
}

impl Target {
    /// A target of `kind` with no pod name.
    pub fn new(kind: TargetKind) -> Self {
        Self {
            kind,
            pod_name: None,
        }
    }

    /// Checks the target, whose errors name it `path` (`target` or `targets[2]`).
    fn validate(&self, path: &str) -> Result<(), ModelError> {
        self.kind.validate(path)?;
        if let Some(name) = &self.pod_name
            && !is_pod_name(name)
        {
            return Err(invalid(
                format!("{path}.pod_name"),
                format!("{name:?}"),
                "NAMESPACE/NAME of a Kubernetes pod, e.g. shop/frontend-7d9f8-abcde",
            ));
        }
        Ok(())
    }

    /// The pod's name without its namespace, if given.
    pub fn pod(&self) -> Option<&str> {
        self.pod_name
            .as_deref()
            .and_then(|n| n.split_once('/'))
            .map(|(_, name)| name)
    }
}

impl TargetKind {
    /// `container_id` as written: the hex digits, without a `RUNTIME://` prefix.
    pub fn container(id: &str) -> Self {
        let hex = id.split_once("://").map_or(id, |(_, hex)| hex);
        Self::ContainerId(hex.to_owned())
    }

    fn validate(&self, at: &str) -> Result<(), ModelError> {
        match self {
            Self::Cgroup(path) => {
                if path.is_empty()
                    || path.len() > MAX_CGROUP_PATH_LEN
                    || path.chars().any(char::is_control)
                    || path.split('/').any(|component| component == "..")
                {
                    return Err(invalid(
                        format!("{at}.cgroup"),
                        format!("{path:?}"),
                        "a cgroup path below the cgroup2 mount, without `..` or control \
                         characters, at most 4095 bytes",
                    ));
                }
            }
            Self::Pid(0) => {
                return Err(invalid(
                    format!("{at}.pid"),
                    0,
                    "a process id of at least 1",
                ));
            }
            Self::Pid(_) => {}
            Self::ContainerId(id) => {
                if !(12..=64).contains(&id.len()) || !id.bytes().all(is_lower_hex) {
                    return Err(invalid(
                        format!("{at}.container_id"),
                        format!("{id:?}"),
                        "12 to 64 lowercase hex digits, optionally prefixed by `RUNTIME://`",
                    ));
                }
            }
            Self::PodUid(uid) => {
                if !is_uuid(uid) {
                    return Err(invalid(
                        format!("{at}.pod_uid"),
                        format!("{uid:?}"),
                        "a pod UID like 8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f (lowercase)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The path errors name the `index`th of `count` targets by: `target` when there is one,
/// `targets[index]` otherwise.
pub fn target_path(index: usize, count: usize) -> String {
    if count == 1 {
        "target".to_owned()
    } else {
        format!("targets[{index}]")
    }
}

/// Checks a list of targets: 1 to [`MAX_TARGETS`], each valid, none given twice.
pub(super) fn validate_targets(targets: &[Target]) -> Result<(), ModelError> {
    if targets.is_empty() {
        return Err(invalid(
            "target",
            "no target",
            "exactly one of cgroup, pid, container_id, pod_uid (or a list of them in `targets`)",
        ));
    }
    if targets.len() > MAX_TARGETS {
        return Err(invalid(
            "targets",
            format!("{} targets", targets.len()),
            format!(
                "at most {MAX_TARGETS} targets in one experiment on one node (choose fewer pods, \
                 e.g. chaos-ctl --max-pods)"
            ),
        ));
    }
    for (i, target) in targets.iter().enumerate() {
        let path = target_path(i, targets.len());
        target.validate(&path)?;
        if targets[..i].iter().any(|t| t.kind == target.kind) {
            return Err(invalid(
                path,
                target.kind.to_string(),
                "each target once (it is already in the list)",
            ));
        }
    }
    Ok(())
}

/// The kind, with the pod name when given.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        match &self.pod_name {
            Some(name) => write!(f, " ({name})"),
            None => Ok(()),
        }
    }
}

/// `cgroup /x`, `pid 42`, `container 3f4e...`, `pod 8f3c...`.
impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cgroup(path) => write!(f, "cgroup {path}"),
            Self::Pid(pid) => write!(f, "pid {pid}"),
            Self::ContainerId(id) => write!(f, "container {id}"),
            Self::PodUid(uid) => write!(f, "pod {uid}"),
        }
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// `8-4-4-4-12` lowercase hex digits.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(is_lower_hex))
}

/// `NAMESPACE/NAME`: a DNS-1123 label (at most 63) and a DNS-1123 subdomain (at most 253).
fn is_pod_name(text: &str) -> bool {
    let Some((namespace, name)) = text.split_once('/') else {
        return false;
    };
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let dns = |s: &str, max: usize, dot: bool| {
        (1..=max).contains(&s.len())
            && s.bytes()
                .all(|b| alphanumeric(b) || b == b'-' || (dot && b == b'.'))
            && s.bytes().next().is_some_and(alphanumeric)
            && s.bytes().last().is_some_and(alphanumeric)
    };
    dns(namespace, 63, false) && dns(name, 253, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_namespace_slash_name() {
        for good in [
            "shop/frontend-7d9f8-abcde",
            "a/b",
            "kube-system/coredns.x-1",
        ] {
            assert!(is_pod_name(good), "{good}");
        }
        for bad in ["frontend", "/x", "x/", "Shop/x", "a/b/c", "a/-b", "a_b/c"] {
            assert!(!is_pod_name(bad), "{bad}");
        }
    }
}
