//! Database load (`database_load`): the load runner `chaos-dbload` (found next to the daemon's
//! executable) as a child process in a cgroup of its own, `<cgroup2>/chaos-dbload-<scratch>`,
//! with a CPU limit (`cpu.max` of one CPU) when the cgroup2 root offers the `cpu` controller
//! and niceness 10 otherwise, so the daemon's guards and kill path are never starved
//! (docs/adr/0021).
//!
//! The experiment's [`HostSwitch`] holds the runner cgroup's `cgroup.kill` as its knob: a stop,
//! a rollback or an emergency stop writes `1` there (one `write(2)`, nothing waited for) and
//! the kernel kills the runner, so the database sees its connections close. The runner dies
//! with the daemon too (`PR_SET_PDEATHSIG` from the thread that watches it, which lives as long
//! as the runner). What outlives a kill is undone afterwards, off the kill path: the monitor
//! thread removes the cgroup and runs `chaos-dbload cleanup` for the scratch table or keys; both
//! are journaled before they exist, so a daemon killed meanwhile does it at its next start
//! ([`undo_cgroup`], [`undo_scratch`]).
//!
//! A start waits for the runner's `ready` line (connected, authenticated, every statement
//! prepared, scratch data set up): a wrong password, an unreachable server or an invalid
//! statement is refused with the database's own message before any load is sent.

use std::{
    collections::VecDeque,
    fs,
    io::{self, BufRead, BufReader, Read, Write},
    os::{
        fd::AsRawFd,
        unix::{fs::OpenOptionsExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use chaos_api::{
    config::SecretSource,
    experiment::{DatabaseLoad, Profile, Workload},
};
use chaos_common::SlotCounters;
use serde_json::{Value, json};

use super::{HostFaultError, io_err, unusable};
use crate::{
    cgroupfs,
    journal::{ChangeKind, HostChange, HostJournal},
    net::netns::Netns,
    switch::{HostSwitch, Knob},
    sync::lock,
};

/// The runner's file name, next to the daemon's executable.
pub const RUNNER: &str = "chaos-dbload";
/// The runner cgroup's CPU limit: one CPU (quota and period in microseconds).
const CPU_MAX: &str = "100000 100000";
const CFS_US: &str = "100000";
/// Niceness of a runner where no `cpu` controller is to be had.
const NICE: libc::c_int = 10;
/// How long a start waits for the runner's `ready` line (connect 5 s, setup, slack).
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long `chaos-dbload cleanup` may take.
const CLEANUP_WAIT: Duration = Duration::from_secs(30);
/// How many of the runner's last stderr lines are kept for error messages.
const STDERR_LINES: usize = 20;

/// Where the runner is and where its spec files go.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The `chaos-dbload` executable.
    pub binary: PathBuf,
    /// Spec files (mode 0600), one per run.
    pub spec_dir: PathBuf,
    /// The cgroup2 mount: runner cgroups are made at its top.
    pub mount: PathBuf,
}

impl Runner {
    /// The runner next to the running executable; `Err` says why there is none.
    pub fn beside_executable(spec_dir: &Path, mount: &Path) -> Result<Self, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the daemon's executable: {e}"))?;
        let binary = exe.with_file_name(RUNNER);
        if !binary.is_file() {
            return Err(format!(
                "database_load needs the load runner {RUNNER} next to the daemon ({}), which \
                 is not there",
                binary.display()
            ));
        }
        Ok(Self {
            binary,
            spec_dir: spec_dir.to_path_buf(),
            mount: mount.to_path_buf(),
        })
    }

    /// How a runner's CPU is limited here: `cpu.max` where the cgroup2 root enables `cpu` for
    /// its children; on a hybrid host, whose `cpu` controller is on cgroup v1, a v1 `cpu`
    /// cgroup's CFS quota; else only niceness.
    fn cpu_limit(&self) -> CpuLimit {
        let v2 = fs::read_to_string(self.mount.join("cgroup.subtree_control"))
            .is_ok_and(|s| s.split_whitespace().any(|c| c == "cpu"));
        if v2 {
            return CpuLimit::V2;
        }
        fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|m| cpu_v1_mount(&m))
            .map_or(CpuLimit::Nice, CpuLimit::V1)
    }
}

/// How a runner's CPU is limited.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CpuLimit {
    /// `cpu.max` of its cgroup2 cgroup.
    V2,
    /// `cpu.cfs_quota_us` of a cgroup of its own under this cgroup v1 `cpu` mount.
    V1(PathBuf),
    /// Niceness [`NICE`] only.
    Nice,
}

/// Where the cgroup v1 `cpu` controller is mounted, from `/proc/self/mountinfo`.
fn cpu_v1_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs = fs.split_whitespace();
        let (kind, options) = (fs.next()?, fs.nth(1)?);
        if kind != "cgroup" || !options.split(',').any(|o| o == "cpu") {
            return None;
        }
        mount.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// A planned load: the runner's spec without what only the start knows (its scratch name).
#[derive(Debug)]
pub struct Plan {
    runner: Runner,
    spec: Value,
    needs_scratch: bool,
    netns: Option<Netns>,
    cpu: CpuLimit,
    address: String,
    /// The one variable of the daemon's environment the runner gets: `password_env`'s.
    password_env: Option<String>,
}

impl Plan {
    /// Plans `load` for `duration` with at most `max_queries` (`u64::MAX` = no cap) queries,
    /// from `netns` (the target's, or `None` for the daemon's).
    pub fn new(
        runner: &Runner,
        load: &DatabaseLoad,
        duration: Duration,
        max_queries: u64,
        netns: Option<Netns>,
    ) -> Self {
        Self {
            runner: runner.clone(),
            spec: spec(load, duration, max_queries),
            needs_scratch: needs_scratch(&load.workload),
            netns,
            cpu: runner.cpu_limit(),
            address: load.address.clone(),
            password_env: match &load.password {
                Some(SecretSource::Env(name)) => Some(name.clone()),
                _ => None,
            },
        }
    }

    /// What a start does, for the plan.
    pub fn describe(&self) -> Vec<String> {
        let limit = match &self.cpu {
            CpuLimit::V2 => format!("cpu.max {CPU_MAX:?}"),
            CpuLimit::V1(mount) => format!(
                "one CPU: cpu.cfs_quota_us {CFS_US} in {}/chaos-dbload-<id>, cgroup v1",
                mount.display()
            ),
            CpuLimit::Nice => format!("niceness {NICE}: no cpu controller to be had"),
        };
        let mut out = vec![format!(
            "run {} in {}/chaos-dbload-<id> ({limit}); cgroup.kill on disarm",
            self.runner.binary.display(),
            self.runner.mount.display()
        )];
        if let Some(ns) = &self.netns {
            out.push(format!("send from the target's network namespace {ns}"));
        }
        out.push(format!(
            "{} qps to {} at most {}",
            self.spec["rate"],
            self.address,
            self.spec
                .get("max_queries")
                .map_or("unlimited".to_owned(), |m| format!("{m} queries"))
        ));
        if self.needs_scratch {
            out.push("scratch data created, and dropped at the end (chaos-dbload cleanup)".into());
        }
        out
    }

    /// Starts the runner and waits for it to be ready (or to fail its pre-flight, whose
    /// message is returned). `owner` names the run (the experiment id): the scratch data, the
    /// cgroup and the journal entries carry it.
    pub fn start(
        self,
        switch: &Arc<HostSwitch>,
        journal: Arc<dyn HostJournal>,
        owner: &str,
    ) -> Result<Run, HostFaultError> {
        let scratch = scratch_name(owner);
        let mut spec = self.spec.clone();
        spec["scratch"] = json!(scratch);
        fs::create_dir_all(&self.runner.spec_dir)
            .map_err(io_err("creating", &self.runner.spec_dir))?;
        let spec_path = self.runner.spec_dir.join(format!("{scratch}.json"));
        let cgroup = self.runner.mount.join(format!("chaos-dbload-{scratch}"));
        let mut undo = Undo {
            journal,
            binary: self.runner.binary.clone(),
            spec: None,
            cpu_v1: None,
            cgroup: None,
        };
        let made = self.make(&mut undo, switch, owner, &spec, &spec_path, &scratch);
        let (procs, cpu_procs) = match made {
            Ok(procs) => procs,
            Err(e) => {
                // Nothing ran: no scratch data to drop, only what `make` made.
                undo.run(true, &Mutex::default());
                return Err(e);
            }
        };

        let mut command = Command::new(&self.runner.binary);
        command
            .arg("run")
            .arg("--spec")
            .arg(&spec_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear();
        if let Some(name) = &self.password_env
            && let Some(value) = std::env::var_os(name)
        {
            command.env(name, value);
        }
        let procs_fd = procs.as_raw_fd();
        let cpu_procs_fd = cpu_procs.as_ref().map(AsRawFd::as_raw_fd);
        let netns_fd = self.netns.as_ref().and_then(Netns::raw_fd);
        let nice = self.cpu == CpuLimit::Nice;
        // SAFETY: the closure runs in the forked child before exec and only makes raw syscalls
        // (write, prctl, setns, setpriority) on values prepared before the fork; it allocates
        // nothing and takes no lock.
        unsafe {
            command.pre_exec(move || {
                if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(fd) = cpu_procs_fd
                    && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(fd) = netns_fd
                    && libc::setns(fd, libc::CLONE_NEWNET) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if nice && libc::setpriority(libc::PRIO_PROCESS, 0, NICE) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let state = Arc::new(State::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let monitor = {
            let state = state.clone();
            let netns = self.netns.clone();
            thread::Builder::new()
                .name(format!("dbload-{scratch}"))
                .spawn(move || {
                    // Holds the namespace open until the child entered it.
                    let _netns = netns;
                    let _procs = (procs, cpu_procs);
                    monitor(command, &state, &ready_tx, undo);
                })
                .map_err(io_err("starting the monitor of", &cgroup))?
        };
        let ready = ready_rx.recv_timeout(READY_WAIT);
        let run = Run {
            state,
            monitor: Some(monitor),
            kill: cgroup,
        };
        match ready {
            Ok(Ok(())) => Ok(run),
            Ok(Err(message)) => {
                run.join();
                Err(HostFaultError::Database {
                    address: self.address,
                    message,
                })
            }
            Err(_) => {
                let _ = cgroupfs::write_knob(&run.kill.join("cgroup.kill"), "1");
                run.join();
                Err(HostFaultError::Database {
                    address: self.address,
                    message: format!("the runner was not ready within {READY_WAIT:?}"),
                })
            }
        }
    }

    /// Makes what the runner needs, each journaled before it exists and recorded in `undo`:
    /// the spec file, a cgroup v1 `cpu` cgroup where that is the CPU limit, the cgroup (with
    /// its `cpu.max`) and its `cgroup.kill` as the switch's knob. Returns the `cgroup.procs`
    /// files the child enters, opened.
    fn make(
        &self,
        undo: &mut Undo,
        switch: &HostSwitch,
        owner: &str,
        spec: &Value,
        spec_path: &Path,
        scratch: &str,
    ) -> Result<(fs::File, Option<fs::File>), HostFaultError> {
        let name = format!("chaos-dbload-{scratch}");
        let cgroup = &self.runner.mount.join(&name);
        // The scratch entry names the runner only when there is scratch data to drop.
        let scratch_change = HostChange {
            kind: ChangeKind::DbScratch,
            path: spec_path.display().to_string(),
            old_value: if self.needs_scratch {
                self.runner.binary.display().to_string()
            } else {
                String::new()
            },
        };
        let id = undo.journal.record(owner, &scratch_change)?;
        undo.spec = Some((id, spec_path.to_path_buf(), self.needs_scratch));
        write_private(
            spec_path,
            &serde_json::to_vec_pretty(spec).unwrap_or_default(),
        )
        .map_err(io_err("writing", spec_path))?;
        let cgroup_change = HostChange {
            kind: ChangeKind::RunnerCgroup,
            path: cgroup.display().to_string(),
            old_value: String::new(),
        };
        // The v1 cgroup is journaled first: undone after the cgroup2 one was killed.
        let cpu_procs = match &self.cpu {
            CpuLimit::V1(mount) => {
                let dir = mount.join(&name);
                let change = HostChange {
                    kind: ChangeKind::CpuCgroupV1,
                    path: dir.display().to_string(),
                    old_value: String::new(),
                };
                let id = undo.journal.record(owner, &change)?;
                undo.cpu_v1 = Some((id, dir.clone()));
                fs::create_dir(&dir).map_err(io_err("creating the runner's cpu cgroup", &dir))?;
                for (knob, value) in [("cpu.cfs_period_us", CFS_US), ("cpu.cfs_quota_us", CFS_US)] {
                    let knob = dir.join(knob);
                    cgroupfs::write_knob(&knob, value).map_err(io_err("writing", &knob))?;
                }
                let procs = dir.join("cgroup.procs");
                Some(
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&procs)
                        .map_err(io_err("opening", &procs))?,
                )
            }
            CpuLimit::V2 | CpuLimit::Nice => None,
        };
        let id = undo.journal.record(owner, &cgroup_change)?;
        undo.cgroup = Some((id, cgroup.to_path_buf()));
        fs::create_dir(cgroup).map_err(io_err("creating the runner cgroup", cgroup))?;
        if self.cpu == CpuLimit::V2 {
            let knob = cgroup.join("cpu.max");
            cgroupfs::write_knob(&knob, CPU_MAX).map_err(io_err("writing", &knob))?;
        }
        let kill = Knob {
            path: cgroup.join("cgroup.kill"),
            old_value: "1".into(),
        };
        if !switch.wrote(kill) {
            return Err(unusable(cgroup, "disarmed while starting"));
        }
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(cgroup.join("cgroup.procs"))
            .map_err(io_err("opening cgroup.procs of", cgroup))?;
        Ok((procs, cpu_procs))
    }
}

/// The runner's spec (chaos-dbload/src/lib.rs documents it) for `load`; the start adds
/// `scratch`. The one place the model becomes the runner's input.
pub fn spec(load: &DatabaseLoad, duration: Duration, max_queries: u64) -> Value {
    let workload = match &load.workload {
        Workload::Profile(p) => json!({"profile": p.as_str()}),
        Workload::Statements(statements) => json!({
            "statements": statements
                .iter()
                .map(|s| json!({"sql": s.sql, "weight": s.weight}))
                .collect::<Vec<_>>()
        }),
    };
    let mut spec = json!({
        "engine": load.engine.as_str(),
        "address": load.address,
        "database": load.database.clone().unwrap_or_default(),
        "user": load.user.clone().unwrap_or_default(),
        "workload": workload,
        "rate": load.rate,
        "concurrency": load.concurrency,
        "duration_ms": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1),
    });
    match &load.password {
        Some(SecretSource::File(path)) => spec["password_file"] = json!(path),
        Some(SecretSource::Env(name)) => spec["password_env"] = json!(name),
        None => {}
    }
    if max_queries != u64::MAX {
        spec["max_queries"] = json!(max_queries);
    }
    spec
}

/// Whether the workload uses a scratch table or keys (every profile but connection_storm).
fn needs_scratch(workload: &Workload) -> bool {
    matches!(workload, Workload::Profile(p) if *p != Profile::ConnectionStorm)
}

/// The run's scratch name (`[a-z0-9_]{1,32}`) from its owner: the last 32 characters, each
/// that is not a lowercase letter or digit as `_`.
pub fn scratch_name(owner: &str) -> String {
    let name: String = owner
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    let start = name.len().saturating_sub(32);
    let name = &name[start..];
    if name.is_empty() {
        "run".into()
    } else {
        name.to_owned()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// A database load's live figures, from the runner's newest `progress` line (or its final
/// `done` line): what status, metrics and reports show.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Figures {
    /// Since the load started, in milliseconds.
    pub elapsed_ms: u64,
    /// The rate the runner holds now (a ramp moves it), in queries per second.
    pub rate: f64,
    /// Queries sent, answered without error, failed (by kind: `timeout`, `connection`,
    /// `sqlstate:<code>`, ...), since the start.
    pub sent: u64,
    pub ok: u64,
    #[serde(default)]
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Queries per second sent since the previous line (computed here, not by the runner).
    #[serde(default)]
    pub qps: f64,
    /// Latency percentiles of the last second (from the intended start: queueing included),
    /// in microseconds; `None` when nothing finished.
    pub p50_us: Option<u64>,
    pub p95_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    /// Connection time (connect and authenticate) p95 over every connection opened so far.
    pub connect_p95_us: Option<u64>,
}

impl Figures {
    /// Failed queries, every kind.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The runner's figures, from its JSON lines.
#[derive(Debug, Default)]
struct State {
    sent: AtomicU64,
    /// It stopped at its query cap.
    capped: AtomicBool,
    /// The runner exited and everything was cleaned up.
    finished: AtomicBool,
    latest: Mutex<Option<Figures>>,
    errors: Mutex<Vec<String>>,
    stdin: Mutex<Option<ChildStdin>>,
}

impl State {
    fn take_line(&self, line: &Value) {
        let Ok(mut figures) = serde_json::from_value::<Figures>(line.clone()) else {
            tracing::warn!(%line, "an unreadable line from the load runner");
            return;
        };
        if line["event"] == "done" && line["stop_reason"] == "max_queries" {
            self.capped.store(true, Ordering::Relaxed);
        }
        self.sent.store(figures.sent, Ordering::Relaxed);
        let mut latest = lock(&self.latest);
        let (sent, ms) = latest
            .as_ref()
            .map_or((0, 0), |prev| (prev.sent, prev.elapsed_ms));
        if figures.elapsed_ms > ms {
            figures.qps = figures.sent.saturating_sub(sent) as f64 * 1000.0
                / (figures.elapsed_ms - ms) as f64;
        }
        *latest = Some(figures);
    }
}

/// What a start made, undone by the monitor when the runner is gone (or by a failed start).
struct Undo {
    journal: Arc<dyn HostJournal>,
    binary: PathBuf,
    /// Journal entry, spec file, whether the run has scratch data to drop.
    spec: Option<(i64, PathBuf, bool)>,
    /// The cgroup v1 `cpu` cgroup, where that is the CPU limit.
    cpu_v1: Option<(i64, PathBuf)>,
    cgroup: Option<(i64, PathBuf)>,
}

impl Undo {
    /// Kills and removes the cgroup, then drops the scratch data (unless `dropped`: the
    /// runner did it) and the spec file; what fails stays journaled for the next start.
    fn run(self, dropped: bool, errors: &Mutex<Vec<String>>) {
        let failed = |e: String| {
            tracing::error!(error = %e, "cleaning up after a database load");
            lock(errors).push(e);
        };
        let cgroups = [
            self.cgroup
                .map(|c| (c, undo_cgroup as fn(&Path) -> io::Result<()>)),
            self.cpu_v1
                .map(|c| (c, undo_cpu_cgroup as fn(&Path) -> io::Result<()>)),
        ];
        for ((id, cgroup), undo) in cgroups.into_iter().flatten() {
            match undo(&cgroup) {
                Ok(()) => {
                    if let Err(e) = self.journal.undone(id) {
                        failed(e.to_string());
                    }
                }
                Err(e) => failed(format!("removing {}: {e}", cgroup.display())),
            }
        }
        if let Some((id, spec, scratch)) = self.spec {
            let cleaned = if scratch && !dropped {
                undo_scratch(&self.binary, &spec)
            } else {
                remove_spec(&spec)
            };
            match cleaned {
                Ok(()) => {
                    if let Err(e) = self.journal.undone(id) {
                        failed(e.to_string());
                    }
                }
                Err(e) => failed(format!("dropping the scratch data: {e}")),
            }
        }
    }
}

/// Kills whatever is left in a runner cgroup and removes it (a missing cgroup is fine).
pub fn undo_cgroup(cgroup: &Path) -> io::Result<()> {
    match cgroupfs::kill_tree(cgroup, Duration::from_secs(2), || true) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match fs::remove_dir(cgroup) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a runner's cgroup v1 `cpu` cgroup (a missing one is fine), SIGKILLing what is
/// still in it (the cgroup2 kill came first, so nothing should be).
pub fn undo_cpu_cgroup(cgroup: &Path) -> io::Result<()> {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(cgroup) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => {}
        }
        for pid in cgroupfs::read_knob(&cgroup.join("cgroup.procs"))?
            .lines()
            .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
        {
            // SAFETY: kill(2) with a pid read from the cgroup; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `binary cleanup --spec spec` (drops the scratch table or keys), then removes the spec
/// file. A missing spec file means it was done; an empty `binary`, that there is no scratch
/// data.
pub fn undo_scratch(binary: &Path, spec: &Path) -> io::Result<()> {
    if !spec.exists() || binary.as_os_str().is_empty() {
        return remove_spec(spec);
    }
    let mut child = Command::new(binary)
        .arg("cleanup")
        .arg("--spec")
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let until = Instant::now() + CLEANUP_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{RUNNER} cleanup did not end within {CLEANUP_WAIT:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        return Err(io::Error::other(format!(
            "{RUNNER} cleanup failed ({status}): {}",
            stderr.trim()
        )));
    }
    remove_spec(spec)
}

fn remove_spec(spec: &Path) -> io::Result<()> {
    match fs::remove_file(spec) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The monitor thread: spawns the runner (so `PR_SET_PDEATHSIG` is tied to a thread that lives
/// as long as it), reports `ready` or the pre-flight failure, follows its lines until it
/// exits, then undoes what the start made.
fn monitor(
    mut command: Command,
    state: &State,
    ready: &mpsc::Sender<Result<(), String>>,
    undo: Undo,
) {
    let mut child: Child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = ready.send(Err(format!("starting {RUNNER}: {e}")));
            undo.run(false, &state.errors);
            state.finished.store(true, Ordering::SeqCst);
            return;
        }
    };
    *lock(&state.stdin) = child.stdin.take();
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr = child.stderr.take().map(|pipe| {
        let tail = tail.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                tracing::info!(target: "chaos_dbload", "{line}");
                let mut tail = lock(&tail);
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        })
    });
    let mut was_ready = false;
    let mut done = false;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            match value["event"].as_str() {
                Some("ready") if !was_ready => {
                    was_ready = true;
                    let _ = ready.send(Ok(()));
                }
                Some("progress") => state.take_line(&value),
                Some("done") => {
                    done = true;
                    state.take_line(&value);
                }
                _ => {}
            }
        }
    }
    let status = child.wait();
    if let Some(thread) = stderr {
        let _ = thread.join();
    }
    *lock(&state.stdin) = None;
    let message = || {
        let tail = lock(&tail);
        let said: Vec<&str> = tail
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{RUNNER}: ")))
            .collect();
        match said.last() {
            Some(last) => (*last).to_owned(),
            None => match &status {
                Ok(s) => format!("{RUNNER} exited ({s})"),
                Err(e) => format!("{RUNNER}: {e}"),
            },
        }
    };
    if !was_ready {
        let _ = ready.send(Err(message()));
    } else if !done && matches!(&status, Ok(s) if s.code().is_some_and(|c| c != 0)) {
        lock(&state.errors).push(format!("the load runner failed: {}", message()));
    }
    // The runner drops its scratch data itself when it ends on its own: after its load
    // (`done`) or at a failed pre-flight or setup. Killed, it leaves it to the cleanup.
    let exited = matches!(&status, Ok(s) if s.code().is_some());
    undo.run(done || (!was_ready && exited), &state.errors);
    state.finished.store(true, Ordering::SeqCst);
}

/// A running load.
pub struct Run {
    state: Arc<State>,
    monitor: Option<thread::JoinHandle<()>>,
    /// The runner cgroup.
    kill: PathBuf,
}

impl Run {
    /// Executed queries as the experiment's counters: every query sent is seen, matched and
    /// injected; `capped` is 1 once the runner stopped at its cap.
    pub fn counters(&self) -> SlotCounters {
        let sent = self.state.sent.load(Ordering::Relaxed);
        SlotCounters {
            seen: sent,
            matched: sent,
            injected: sent,
            capped: u64::from(self.state.capped.load(Ordering::Relaxed)),
        }
    }

    /// The runner's newest figures.
    pub fn figures(&self) -> Option<Figures> {
        lock(&self.state.latest).clone()
    }

    /// Whether the runner ended by itself (its duration or cap) and was cleaned up.
    pub fn finished(&self) -> bool {
        self.state.finished.load(Ordering::SeqCst)
    }

    /// Failures since the last call.
    pub fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.state.errors))
    }

    /// Moves the load to `rate` queries per second (a ramp step): one line on its stdin.
    pub fn set_rate(&self, rate: f64) -> io::Result<()> {
        let mut stdin = lock(&self.state.stdin);
        let pipe = stdin
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "the runner has ended"))?;
        pipe.write_all(format!("{}\n", json!({ "rate": rate })).as_bytes())?;
        pipe.flush()
    }

    /// Waits for the runner to be gone and cleaned up (after the switch killed it, or after it
    /// ended by itself). Returns the final counters.
    pub fn join(mut self) -> SlotCounters {
        if let Some(monitor) = self.monitor.take()
            && monitor.join().is_err()
        {
            tracing::error!(cgroup = %self.kill.display(), "the database load monitor panicked");
        }
        self.counters()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(monitor) = self.monitor.take() {
            let _ = cgroupfs::write_knob(&self.kill.join("cgroup.kill"), "1");
            let _ = monitor.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaos_api::experiment::{Engine, Statement};

    fn load(workload: Workload) -> DatabaseLoad {
        DatabaseLoad {
            engine: Engine::Postgres,
            address: "127.0.0.1:5432".into(),
            database: Some("app".into()),
            user: Some("chaos".into()),
            password: Some(SecretSource::File("/run/secrets/db".into())),
            workload,
            rate: 200.0,
            concurrency: 4,
            network_namespace_of_target: false,
        }
    }

    #[test]
    fn the_spec_carries_every_field_the_runner_reads() {
        let s = spec(
            &load(Workload::Profile(Profile::Writes)),
            Duration::from_secs(60),
            137,
        );
        assert_eq!(
            s,
            json!({"engine": "postgres", "address": "127.0.0.1:5432", "database": "app",
                   "user": "chaos", "password_file": "/run/secrets/db",
                   "workload": {"profile": "writes"}, "rate": 200.0, "concurrency": 4,
                   "duration_ms": 60000, "max_queries": 137})
        );
        let s = spec(
            &load(Workload::Statements(vec![Statement {
                sql: "SELECT 1".into(),
                weight: 3,
            }])),
            Duration::from_secs(1),
            u64::MAX,
        );
        assert_eq!(
            s["workload"],
            json!({"statements": [{"sql": "SELECT 1", "weight": 3}]})
        );
        assert!(s.get("max_queries").is_none());
    }

    #[test]
    fn a_start_that_fails_part_way_leaves_nothing_and_nothing_pending() {
        use crate::journal::MemoryJournal;
        let dir = std::env::temp_dir().join(format!("chaos-dbload-unit-{}", std::process::id()));
        let runner = Runner {
            binary: "/nonexistent/chaos-dbload".into(),
            spec_dir: dir.join("specs"),
            // No cgroup can be made here: the start fails after the spec file was written.
            mount: dir.join("no-such-mount"),
        };
        let plan = Plan::new(
            &runner,
            &load(Workload::Profile(Profile::Writes)),
            Duration::from_secs(10),
            u64::MAX,
            None,
        );
        let journal = Arc::new(MemoryJournal::default());
        let switch = HostSwitch::new();
        let e = plan
            .start(
                &switch,
                journal.clone(),
                &format!("unit-{}", std::process::id()),
            )
            .err()
            .expect("no cgroup can be made");
        assert!(e.to_string().contains("creating the runner cgroup"), "{e}");
        assert_eq!(fs::read_dir(&runner.spec_dir).unwrap().count(), 0);
        assert!(journal.pending().unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_cgroup_v1_cpu_controller_is_found_in_mountinfo() {
        let hybrid = "31 1 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
            32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
            33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n";
        assert_eq!(cpu_v1_mount(hybrid), Some("/sys/fs/cgroup/cpu".into()));
        let joint = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        assert_eq!(
            cpu_v1_mount(joint),
            Some("/sys/fs/cgroup/cpu,cpuacct".into())
        );
        let unified = "28 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n\
            33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n";
        assert_eq!(cpu_v1_mount(unified), None);
    }

    #[test]
    fn only_profiles_with_tables_or_keys_have_scratch_data() {
        assert!(needs_scratch(&Workload::Profile(Profile::PointReads)));
        assert!(!needs_scratch(&Workload::Profile(Profile::ConnectionStorm)));
        assert!(!needs_scratch(&Workload::Statements(vec![])));
    }

    #[test]
    fn scratch_names_fit_the_runner() {
        assert_eq!(
            scratch_name("exp-1764731234567-0a1b2c3d-7"),
            "exp_1764731234567_0a1b2c3d_7"
        );
        let long = scratch_name("A-very-long-experiment-name-with-many-words-12345");
        assert_eq!(long.len(), 32);
        assert!(long.ends_with("words_12345"));
        assert_eq!(scratch_name(""), "run");
    }
}
