//! Every shell command of the guides (docs/CHAOS_ENGINEERING_V2.md, docs/CHAOS_BEST_PRACTICES.md)
//! runs for real, as they promise: "every command is run by a test or marked as needing a
//! cluster".
//!
//! The commands are the lines of the guides' ```sh, ```bash and ```console blocks (console: the
//! `$ ` lines), in order; a line ending in `\` continues on the next. A command ending in
//! `# (cluster)` is listed and skipped. Every other one runs with `bash -u -o pipefail -c` (so
//! an unknown variable fails it) in a temporary directory holding the repository's `chaos/`,
//! `deploy/` and `scripts/`, with chaos-ctl and chaos-daemon first on PATH and the guides'
//! variables in the environment, and must exit 0, or with the status of a trailing
//! `# (exit N)`. A renamed flag, a changed refusal or a broken example fails the test, naming
//! the guide's line.
//!
//! What the commands talk to is what the guide installs: a daemon with the DaemonSet's config
//! (deploy/chaos.yaml and its SLO file) over mutual TLS with `chaos-ctl certs` material, reached
//! at `https://localhost:PORT` with the operator's certificate as through a port-forward
//! (`$DAEMON`); its SLO guards query a real Prometheus scraping a real HTTP service, under load,
//! that runs in the container of a pod laid out as kubelet lays pods out (`$POD_UID`,
//! `$CONTAINER_ID`, `$CGROUP`). `$ID` is the id the last start printed. Two values differ from
//! deploy/chaos.yaml, each replaced where it stands: the Prometheus URL (the test's) and the
//! baseline (1 s instead of the default 30 s, so that a start does not wait half a minute).

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use support::{
    http::{Dependency, HttpWorkload, Load},
    pki::tls_daemon_with,
    pods::Pod,
    prometheus::Prometheus,
    *,
};

/// The guides whose commands run, relative to the repository's root.
const GUIDES: [&str; 2] = [
    "docs/CHAOS_ENGINEERING_V2.md",
    "docs/CHAOS_BEST_PRACTICES.md",
];

/// The repository's directories the commands name by relative path.
const REPO_DIRS: [&str; 3] = ["chaos", "deploy", "scripts"];

/// Fence info strings of blocks that hold no commands.
const NOT_COMMANDS: [&str; 5] = ["", "yaml", "json", "text", "promql"];

/// Longest a documented command may take (`timeout`, exit 124 past it).
const COMMAND_TIMEOUT_S: &str = "60";

/// What a documented command must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// `# (cluster)`: needs a Kubernetes cluster; not run.
    Cluster,
    /// Exit with this status: `# (exit N)`, else 0.
    Exit(i32),
}

/// One command of a guide.
#[derive(Debug)]
struct DocCommand {
    guide: &'static str,
    /// Its first line in the guide.
    line: usize,
    text: String,
    expect: Expect,
}

impl DocCommand {
    fn new(guide: &'static str, line: usize, text: String) -> Self {
        let whence = format!("{guide}:{line}");
        assert!(
            !text.contains("<<"),
            "{whence}: heredocs are not supported in documented commands: {text}"
        );
        let marker = text
            .trim_end()
            .strip_suffix(')')
            .and_then(|t| t.rsplit_once("# ("))
            .map(|(_, m)| m);
        let expect = match marker {
            None => Expect::Exit(0),
            Some("cluster") => Expect::Cluster,
            Some(m) => Expect::Exit(
                m.strip_prefix("exit ")
                    .and_then(|code| code.parse().ok())
                    .unwrap_or_else(|| panic!("{whence}: unknown marker `# ({m})`")),
            ),
        };
        Self {
            guide,
            line,
            text,
            expect,
        }
    }

    fn whence(&self) -> String {
        format!("{}:{}", self.guide, self.line)
    }
}

/// Where a line of a guide is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fence {
    Outside,
    Shell,
    Console,
    Other,
}

/// The commands of `markdown` (the guide `guide`), in order.
fn commands(guide: &'static str, markdown: &str) -> Vec<DocCommand> {
    let mut found = Vec::new();
    let mut fence = Fence::Outside;
    // A command continued with `\`: its first line and its text so far.
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let n = i + 1;
        if let Some(info) = line.trim_start().strip_prefix("```") {
            assert!(
                pending.is_none(),
                "{guide}:{n}: the block ends inside a continued command"
            );
            fence = match (fence, info.trim()) {
                (Fence::Outside, "sh" | "bash") => Fence::Shell,
                (Fence::Outside, "console") => Fence::Console,
                (Fence::Outside, other) => {
                    assert!(
                        NOT_COMMANDS.contains(&other),
                        "{guide}:{n}: a ```{other} block: commands go in sh, bash or console \
                         blocks (others: {NOT_COMMANDS:?})"
                    );
                    Fence::Other
                }
                _ => Fence::Outside,
            };
            continue;
        }
        let part = match (&pending, fence) {
            (Some(_), _) => line.trim(),
            (None, Fence::Shell) if !line.trim().is_empty() && !line.trim().starts_with('#') => {
                line.trim()
            }
            (None, Fence::Console) => match line.trim_start().strip_prefix("$ ") {
                Some(command) => command.trim(),
                None => continue,
            },
            _ => continue,
        };
        let (start, mut text) = pending.take().unwrap_or((n, String::new()));
        match part.strip_suffix('\\') {
            Some(head) => {
                text.push_str(head);
                pending = Some((start, text));
            }
            None => {
                text.push_str(part);
                found.push(DocCommand::new(guide, start, text));
            }
        }
    }
    assert!(
        pending.is_none(),
        "{guide}: ends inside a continued command"
    );
    found
}

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every command of every guide, in order.
fn all_commands() -> Vec<DocCommand> {
    GUIDES
        .iter()
        .flat_map(|guide| {
            let path = repo().join(guide);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            commands(guide, &text)
        })
        .collect()
}

/// `text` with `from`, which must occur exactly once, replaced by `to`.
fn replace_once(what: &str, text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{what} no longer has `{from}` exactly once: update tests/docs_commands.rs"
    );
    text.replacen(from, to, 1)
}

/// deploy/chaos.yaml with the SLO guards querying `prometheus` and a 1 s baseline, written with
/// its SLO file into `dir`; the config's path.
fn deploy_config(dir: &Path, prometheus: &str) -> PathBuf {
    let deploy = repo().join("deploy");
    let shipped = std::fs::read_to_string(deploy.join("chaos.yaml")).unwrap();
    let what = "deploy/chaos.yaml";
    let config = replace_once(
        what,
        &shipped,
        "url: 'http://prometheus.monitoring.svc:9090'",
        &format!("url: '{prometheus}'"),
    );
    let config = replace_once(what, &config, "  # baseline: 30s\n", "  baseline: 1s\n");
    std::fs::create_dir_all(dir.join("safety")).unwrap();
    std::fs::copy(
        deploy.join("safety/http-slos.yaml"),
        dir.join("safety/http-slos.yaml"),
    )
    .unwrap();
    let path = dir.join("chaos.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The only subdirectory of `dir`.
fn only_child(dir: &Path) -> PathBuf {
    let children: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    match children.as_slice() {
        [one] => one.clone(),
        other => panic!(
            "{}: expected one subdirectory, found {other:?}",
            dir.display()
        ),
    }
}

/// The id a start printed (`started exp-...`), if `stdout` has one.
fn started(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("started "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

#[test]
fn the_guides_commands_parse_and_some_run() {
    let all = all_commands();
    for guide in GUIDES {
        let runs = all
            .iter()
            .filter(|c| c.guide == guide && c.expect != Expect::Cluster)
            .count();
        assert!(runs > 0, "{guide}: no command the test runs");
    }
    let refusals = all
        .iter()
        .filter(|c| matches!(c.expect, Expect::Exit(code) if code != 0))
        .count();
    let cluster = all.iter().filter(|c| c.expect == Expect::Cluster).count();
    assert!(refusals > 0 && cluster > 0, "{all:#?}");
    println!(
        "{} commands: {} run, {refusals} of them refusals; {cluster} need a cluster",
        all.len(),
        all.len() - cluster
    );
}

#[test]
fn every_command_of_the_guides_runs_against_the_daemonset_setup() {
    let Some(mount) = kernel() else { return };
    let commands = all_commands();
    let dir = TempDir::new("docs");
    let cwd = dir.0.join("work");
    std::fs::create_dir(&cwd).unwrap();
    for d in REPO_DIRS {
        std::os::unix::fs::symlink(repo().join(d), cwd.join(d)).unwrap();
    }

    // The target: a pod whose container runs an HTTP service with a dependency, under load,
    // scraped by Prometheus.
    let node = TestCgroup::new(&mount, "docs");
    let pod = Pod::empty(&node.path);
    let container = only_child(&pod.dir);
    let dependency = Dependency::start();
    let service = HttpWorkload::start(Some(&container), dependency.addr(), &[]);
    let _load = Load::start(&service.url("/"), 100);
    let prometheus = Prometheus::start(&[service.addr()], Duration::from_millis(200));
    prometheus.wait_for(
        "sum(rate(http_requests_total[10s]))",
        |v| v > 0.0,
        Duration::from_secs(15),
    );

    // The daemon as the DaemonSet runs it: its config, its TLS material.
    let etc = dir.0.join("etc");
    let config = deploy_config(&etc, &prometheus.url());
    let tls = dir.0.join("tls");
    let made = ctl(&["certs", "--out", tls.to_str().unwrap()]);
    assert!(made.status.success(), "chaos-ctl certs: {made:?}");
    let file = |name: &str| tls.join(name);
    let (daemon, addr) = tls_daemon_with(
        &dir.0,
        &[file("daemon.pem"), file("daemon-key.pem"), file("ca.pem")],
        &["--config", config.to_str().unwrap()],
    );
    let flags = format!(
        "--daemon {addr} --ca {} --cert {} --key {}",
        file("ca.pem").display(),
        file("operator.pem").display(),
        file("operator-key.pem").display()
    );
    assert!(
        !dir.0.display().to_string().contains(char::is_whitespace),
        "$DAEMON is split on whitespace"
    );
    let bin_dir = ctl_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let container_id = container.file_name().unwrap().to_str().unwrap().to_owned();
    let vars = [
        ("PATH", path),
        ("DAEMON", flags),
        ("POD_UID", pod.uid.clone()),
        ("CONTAINER_ID", container_id),
        ("CGROUP", container.display().to_string()),
    ];

    let mut id: Option<String> = None;
    let mut failures = Vec::new();
    for c in &commands {
        let Expect::Exit(expected) = c.expect else {
            println!("cluster  {}  {}", c.whence(), c.text);
            continue;
        };
        let mut cmd = Command::new("timeout");
        cmd.args([COMMAND_TIMEOUT_S, "bash", "-u", "-o", "pipefail", "-c"])
            .arg(&c.text)
            .current_dir(&cwd)
            .envs(vars.iter().map(|(k, v)| (*k, v)))
            .env_remove("ID");
        if let Some(id) = &id {
            cmd.env("ID", id);
        }
        let began = Instant::now();
        let out = cmd.output().expect("run bash");
        let took = began.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        let verdict = if code == Some(expected) {
            "ok"
        } else {
            "FAILED"
        };
        println!(
            "{verdict:<8} {}  exit {code:?} in {:.1} s  {}",
            c.whence(),
            took.as_secs_f64(),
            c.text
        );
        if code != Some(expected) {
            failures.push(format!(
                "{}: `{}` exited {code:?}, the guide says {expected}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                c.whence(),
                c.text
            ));
        } else if expected != 0 {
            println!("         refused as documented: {}", stderr.trim());
        }
        if let Some(started) = started(&stdout) {
            id = Some(started);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Nothing the guides started stays armed or attached once the daemon stops everything.
    daemon.ctl_ok(&["emergency-stop", "--reason", "docs_commands done"]);
    for cgroup in [&pod.dir, &container] {
        eventually(
            &format!("nothing attached to {}", cgroup.display()),
            Duration::from_secs(10),
            || (attached_count(cgroup) == 0).then_some(()),
        );
    }
    daemon.terminate();
}
