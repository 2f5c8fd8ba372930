//! Pods as kubelet lays them out in cgroupfs, built below a test cgroup (`pod<uid>/<64 hex
//! container id>`), the processes that run in them, and a cgroup v1 freezer group that keeps a
//! process alive with a SIGKILL pending.

use std::{
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use chaos_daemon::host::random_u64;

use super::{eventually, start_in_cgroup};

/// `n` random hex digits.
pub fn hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s += &format!("{:016x}", random_u64());
    }
    s.truncate(n);
    s
}

/// A random pod uid (a UUID, as kubelet names pods).
pub fn pod_uid() -> String {
    let h = hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A `sleep` in `cgroup`, killed on drop if still alive.
pub struct Sleeper(Child);

impl Sleeper {
    pub fn start(cgroup: &Path) -> Self {
        let mut cmd = Command::new("sleep");
        cmd.arg("600").stdout(Stdio::null());
        start_in_cgroup(&mut cmd, cgroup);
        Self(cmd.spawn().unwrap())
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The signal that ended it, if it ended within `within`.
    pub fn ended_by(&mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.signal();
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pod in kubelet's cgroupfs layout under `parent`: `pod<uid>` with one container cgroup
/// (`<64 hex>`), a "pause" process in the pod and an "app" process in the container.
pub struct Pod {
    pub uid: String,
    pub dir: PathBuf,
    pub processes: Vec<Sleeper>,
}

impl Pod {
    /// The pod with its processes.
    pub fn new(parent: &Path) -> Self {
        let (mut pod, container) = Self::layout(parent);
        pod.processes = vec![Sleeper::start(&pod.dir), Sleeper::start(&container)];
        pod
    }

    /// The pod's cgroups without processes.
    pub fn empty(parent: &Path) -> Self {
        Self::layout(parent).0
    }

    /// Creates `pod<uid>/<container id>` under `parent`; returns the pod and its container.
    fn layout(parent: &Path) -> (Self, PathBuf) {
        let uid = pod_uid();
        let dir = parent.join(format!("pod{uid}"));
        let container = dir.join(hex(64));
        std::fs::create_dir_all(&container).unwrap();
        let pod = Self {
            uid,
            dir,
            processes: Vec::new(),
        };
        (pod, container)
    }

    /// Whether every process of the pod was SIGKILLed within `within` (`false`: all alive).
    /// Panics on a mix: a pod dies whole or not at all.
    pub fn killed(&mut self, within: Duration) -> bool {
        let ends: Vec<Option<i32>> = self
            .processes
            .iter_mut()
            .map(|p| p.ended_by(within))
            .collect();
        match ends.as_slice() {
            e if e.iter().all(|s| *s == Some(libc::SIGKILL)) => true,
            e if e.iter().all(Option::is_none) => false,
            e => panic!("pod {} died in part: {e:?}", self.uid),
        }
    }

    /// Whether a process is left in the pod's cgroup tree.
    pub fn populated(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.events"))
            .unwrap()
            .contains("populated 1")
    }
}

/// A cgroup v1 freezer group, thawed, emptied and removed on drop.
pub struct Freezer(PathBuf);

impl Freezer {
    pub const ROOT: &str = "/sys/fs/cgroup/freezer";

    pub fn available() -> bool {
        Path::new(Self::ROOT).join("freezer.state").exists()
            || Path::new(Self::ROOT).join("tasks").exists()
    }

    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = Path::new(Self::ROOT).join(format!(
            "chaos-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).unwrap();
        Self(path)
    }

    pub fn add(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    pub fn state(&self) -> String {
        std::fs::read_to_string(self.0.join("freezer.state"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Freezes the group and waits until every task is frozen.
    pub fn freeze(&self) {
        std::fs::write(self.0.join("freezer.state"), "FROZEN").unwrap();
        eventually("the freezer group frozen", Duration::from_secs(5), || {
            (self.state() == "FROZEN").then_some(())
        });
    }

    pub fn thaw(&self) {
        std::fs::write(self.0.join("freezer.state"), "THAWED").unwrap();
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        if let Ok(procs) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: a plain syscall; the pids are the test's own processes.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let until = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.0).is_err() && self.0.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether SIGKILL is pending for `pid` (sent, not yet acted on).
pub fn sigkill_pending(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|l| {
        ["SigPnd:", "ShdPnd:"].iter().any(|k| {
            l.strip_prefix(k)
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .is_some_and(|mask| mask & (1 << (libc::SIGKILL - 1)) != 0)
        })
    })
}
