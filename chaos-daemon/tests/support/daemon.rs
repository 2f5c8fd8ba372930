//! A real `chaos-daemon serve` on a Unix socket, driven by `chaos-ctl` as users drive it, and
//! the reading of chaos-ctl's answers (JSON, exit code and stderr, an experiment's end).

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Output},
    time::Duration,
};

use super::{DAEMON, announced, eventually, start_in_cgroup};

/// `chaos-ctl`, built next to `chaos-daemon` by `cargo test` (the workspace builds both), or
/// `$CHAOS_BIN_DIR/chaos-ctl`.
pub fn ctl_bin() -> PathBuf {
    let p = DAEMON.path().with_file_name("chaos-ctl");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p chaos-ctl`",
        p.display()
    );
    p
}

/// Runs `chaos-ctl ARGS` (with no daemon chosen: the default, `--daemon` or `--daemons` in
/// `args`).
pub fn ctl(args: &[&str]) -> Output {
    Command::new(ctl_bin()).args(args).output().unwrap()
}

/// The JSON of a chaos-ctl answer.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// (exit code, stderr) of a chaos-ctl run.
pub fn failed(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The id of the experiment a `chaos-ctl --output json experiment` run started.
pub fn started_id(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    json(&String::from_utf8_lossy(&out.stdout))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The internal names the daemon once answered with; users never see them.
const INTERNAL_NAMES: [&str; 3] = ["socket_error", "pod_kill", "resource_pressure"];

/// Asserts that `text` (the answer to `what`) names experiment types as the user does.
pub fn assert_users_names(what: &str, text: &str) {
    for internal in INTERNAL_NAMES {
        assert!(
            !text.contains(internal),
            "{what} says {internal}, not the user's type name:\n{text}"
        );
    }
}

/// A chaos config that admits every test experiment: budgets no test reaches, requests free.
pub const PERMISSIVE_CONFIG: &str = "budget:\n  max_experiment_cost: 1000000\n  \
    max_daily_cost: 1000000000\n  cost_per_request: 0\n";

/// A `chaos-daemon serve` process on a socket in `dir`, with its store in `dir/state`.
/// Killed (SIGKILL) on drop.
pub struct Daemon {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    pub socket: PathBuf,
    pub state: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// Starts `chaos-daemon serve` with `extra` arguments.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Self {
        Self::start_in(dir, None, extra)
    }

    /// Starts `chaos-daemon serve` with [`PERMISSIVE_CONFIG`] (written to `dir/chaos.yaml`),
    /// inside `cgroup` when given.
    pub fn permissive(dir: &Path, cgroup: Option<&Path>) -> Self {
        Self::configured(dir, cgroup, PERMISSIVE_CONFIG)
    }

    /// Starts `chaos-daemon serve` with the config `yaml` (written to `dir/chaos.yaml`).
    pub fn with_config(dir: &Path, yaml: &str) -> Self {
        Self::configured(dir, None, yaml)
    }

    fn configured(dir: &Path, cgroup: Option<&Path>, yaml: &str) -> Self {
        let config = dir.join("chaos.yaml");
        std::fs::write(&config, yaml).unwrap();
        Self::start_in(dir, cgroup, &["--config", config.to_str().unwrap()])
    }

    /// Starts `chaos-daemon serve` with `extra` arguments, inside `cgroup` when given.
    pub fn start_in(dir: &Path, cgroup: Option<&Path>, extra: &[&str]) -> Self {
        let mut cmd = Command::new(DAEMON);
        if let Some(cg) = cgroup {
            start_in_cgroup(&mut cmd, cg);
        }
        Self::spawn(cmd, dir, extra)
    }

    /// Starts `chaos-daemon serve` with `extra` arguments and its default log filter (no
    /// `RUST_LOG`), its log written to `log`.
    pub fn logged(dir: &Path, extra: &[&str], log: &Path) -> Self {
        let mut cmd = Command::new(DAEMON);
        cmd.env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stderr(std::fs::File::create(log).unwrap());
        Self::spawn(cmd, dir, extra)
    }

    fn spawn(mut cmd: Command, dir: &Path, extra: &[&str]) -> Self {
        let (socket, state) = (dir.join("daemon.sock"), dir.join("state"));
        cmd.arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state);
        cmd.args(["--node", "test-node"]).args(extra);
        let (child, stdout, line) = announced(&mut cmd);
        assert!(line.contains("listening"), "daemon did not start: {line:?}");
        Self {
            child,
            stdout,
            socket,
            state,
        }
    }

    /// The address (`IP:PORT`) of the metrics server of a daemon started with
    /// `--metrics-addr`, from the line it prints after `listening`.
    pub fn metrics_addr(&mut self) -> String {
        for _ in 0..8 {
            let line = self.next_line();
            if let Some(addr) = line
                .strip_prefix("metrics on http://")
                .and_then(|l| l.strip_suffix("/metrics"))
            {
                return addr.to_owned();
            }
        }
        panic!("the daemon did not say where its metrics are");
    }

    /// The next line the daemon printed.
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    pub fn addr(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs `chaos-ctl --daemon THIS ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl(&[&["--daemon", &self.addr()], args].concat())
    }

    /// Runs `chaos-ctl` and returns its stdout, asserting success.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "chaos-ctl {args:?} failed ({:?}): {}{stdout}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The answer of `chaos-ctl --output json ARGS`, asserting success.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        json(&self.ctl_ok(&[&["--output", "json"], args].concat()))
    }

    /// Runs `chaos-ctl --output json experiment KIND --cgroup CGROUP ARGS`.
    pub fn experiment(&self, kind: &str, cgroup: &Path, args: &[&str]) -> Output {
        let cgroup = cgroup.to_str().unwrap();
        let head = ["--output", "json", "experiment", kind, "--cgroup", cgroup];
        self.ctl(&[&head[..], args].concat())
    }

    /// The JSON answer of [`Daemon::experiment`], asserting success.
    pub fn experiment_ok(&self, kind: &str, cgroup: &Path, args: &[&str]) -> serde_json::Value {
        let cgroup = cgroup.to_str().unwrap();
        self.json(&[&["experiment", kind, "--cgroup", cgroup][..], args].concat())
    }

    /// [`Daemon::experiment`], which must start; returns the experiment's id once it is armed.
    pub fn started(&self, kind: &str, cgroup: &Path, args: &[&str]) -> String {
        started_id(&self.experiment(kind, cgroup, args))
    }

    /// Starts an experiment dropping every egress packet of `cgroup` (visibly, EPERM) for
    /// `duration`; returns its id once it is armed.
    pub fn drop_all_egress(&self, cgroup: &Path, duration: &str) -> String {
        let args = [
            "--intensity",
            "1",
            "--direction",
            "egress",
            "--visible-drop",
        ];
        self.started(
            "packet_loss",
            cgroup,
            &[&args[..], &["--duration", duration]].concat(),
        )
    }

    /// The status of experiment `id` once it no longer runs (from its JSON report).
    pub fn ended(&self, id: &str, within: Duration) -> serde_json::Value {
        eventually(&format!("{id} ended"), within, || {
            let rep = json(&self.ctl_ok(&["report", id, "--format", "json"]));
            (rep["status"]["state"] != "running").then(|| rep["status"].clone())
        })
    }

    /// The messages of `id`'s timeline events of `kind` (from its JSON report).
    pub fn events(&self, id: &str, kind: &str) -> Vec<String> {
        let report = self.json(&["report", id, "--format", "json"]);
        report["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until the daemon lists no experiment, running or ending: its recorder released
    /// and recorded them all.
    pub fn none_listed(&self, within: Duration) {
        eventually("the daemon lists no experiment", within, || {
            let status = self.json(&["status"]);
            status["experiments"]
                .as_array()
                .unwrap()
                .is_empty()
                .then_some(())
        });
    }

    /// Stops the daemon with SIGTERM and waits until it exited, which must be cleanly: its
    /// worker writes everything queued first (the audit rows behind an emergency stop's
    /// releases, which the SIGKILL of a drop can lose).
    pub fn terminate(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = eventually(
            "the daemon exited after SIGTERM",
            Duration::from_secs(30),
            || self.child.try_wait().unwrap(),
        );
        assert!(
            status.success(),
            "the daemon's exit after SIGTERM: {status}"
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
