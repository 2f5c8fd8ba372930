//! The chaos-ctl binary without a daemon: offline validation, usage errors, refusals and
//! failures each get their exit code (0 ok, 1 failure, 2 usage, 3 refused), experiments are
//! validated before any connection, and every way of not reaching a daemon is one clear line.
//! (Runs against a daemon live in chaos-daemon/tests.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CTL: &str = env!("CARGO_BIN_EXE_chaos-ctl");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn ctl(args: &[&str]) -> Output {
    Command::new(CTL).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("chaos-ctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes `text` to `name` in the directory; returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn example(name: &str) -> String {
    format!("{ROOT}/chaos/experiments/{name}.yaml")
}

#[test]
fn shipped_files_validate_offline() {
    for f in ["packet-loss", "dependency-failure", "api-error-injection"] {
        let out = ctl(&[
            "--daemon",
            "unix:///nonexistent.sock",
            "validate",
            "-f",
            &example(f),
        ]);
        assert_eq!(out.status.code(), Some(0), "{f}: {}", stderr(&out));
    }
    let out = ctl(&[
        "validate",
        "--config",
        &format!("{ROOT}/chaos/chaos.yaml"),
        "--output",
        "json",
    ]);
    assert!(
        out.status.success() && stdout(&out).trim().ends_with("\"valid\":true}"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn new_fault_files_validate_offline_naming_their_type() {
    for (f, kind) in [
        ("network-latency", "network_latency"),
        ("file-errors", "syscall_error"),
        ("pod-deletion", "pod_deletion"),
        ("resource-exhaustion", "resource_exhaustion"),
        ("api-error-http", "api_error_injection"),
        ("packet-duplication", "packet_duplication"),
        ("packet-corruption", "packet_corruption"),
        ("bandwidth-limit", "bandwidth_limit"),
    ] {
        let out = ctl(&["validate", "-f", &example(f)]);
        assert_eq!(out.status.code(), Some(0), "{f}: {}", stderr(&out));
        assert!(
            stdout(&out).contains(&format!("({kind}, ")),
            "{}",
            stdout(&out)
        );
    }
    // A filter on a host fault is a usage error naming `filter`.
    let dir = TempDir::new("host");
    let bad = dir.file(
        "kill.yaml",
        "name: k\ntype: pod_deletion\ntarget: {pid: 1}\nduration: 5m\nfilter: {ports: 80}\n",
    );
    let out = ctl(&["validate", "-f", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("kill.yaml: filter: a filter is not allowed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_files_are_usage_errors_naming_the_path() {
    let dir = TempDir::new("invalid");
    let bad = dir.file(
        "bad.yaml",
        "name: x\ntype: packet_loss\ntarget: {pid: 1}\nduration: 5m\nintensity: 1.5\n",
    );
    let out = ctl(&["validate", "-f", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("intensity: 1.5 is not allowed"),
        "{}",
        stderr(&out)
    );
    let config = dir.file("chaos.yaml", "budget:\n  alert_threshold: 1.5\n");
    let out = ctl(&["validate", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("budget.alert_threshold"),
        "{}",
        stderr(&out)
    );
    let missing = ctl(&["validate", "-f", "/nonexistent/exp.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn a_config_given_as_an_experiment_and_the_reverse_get_a_hint() {
    let config = format!("{ROOT}/chaos/chaos.yaml");
    let out = ctl(&["validate", "-f", &config]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is a chaos config, not an experiment definition")
            && stderr(&out).contains(&format!("validate --config {config}")),
        "{}",
        stderr(&out)
    );
    let exp = example("packet-loss");
    let out = ctl(&["validate", "--config", &exp]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is an experiment definition, not a chaos config")
            && stderr(&out).contains(&format!("validate -f {exp}")),
        "{}",
        stderr(&out)
    );
    // A broken config is still recognized, and apply gives the same hint.
    let dir = TempDir::new("hint");
    let broken = dir.file("c.yaml", "budget:\n  alert_threshold: 7\n");
    let out = ctl(&["apply", "-f", &broken]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is a chaos config"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_with_a_config_shows_the_admission_or_the_refusal() {
    let dir = TempDir::new("admit");
    let exp = example("packet-loss"); // intensity 0.05, budget 20, max_faults 50000
    let admits = dir.file(
        "admits.yaml",
        "experiments: {packet_loss: {max_probability: 0.05, cost_per_fault: 0.01}}\n",
    );
    let out = ctl(&["validate", "-f", &exp, "--config", &admits]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "{admits}: admits \"orders-db-packet-loss\": budget 20 reserved, at most 2000 \
             faults, 0.01 per fault"
        )),
        "{}",
        stdout(&out)
    );
    let out = ctl(&[
        "validate", "-f", &exp, "--config", &admits, "--output", "json",
    ]);
    let last = stdout(&out).lines().last().unwrap_or("").to_owned();
    assert_eq!(
        last,
        format!(
            r#"{{"admitted":true,"budget":20.0,"config":"{admits}","max_faults":2000,"price":{{"cost":0.01,"per":"fault"}}}}"#
        )
    );

    let refuses = dir.file(
        "refuses.yaml",
        "experiments: {packet_loss: {max_probability: 0.01}}\n",
    );
    let out = ctl(&["validate", "-f", &exp, "--config", &refuses]);
    assert_eq!(out.status.code(), Some(3), "a refusal, as the daemon's");
    assert!(
        stderr(&out).contains(&format!(
            "{refuses} refuses {exp}: intensity: 0.05 is not allowed; expected at most 0.01 \
             (experiments.packet_loss.max_probability)"
        )),
        "{}",
        stderr(&out)
    );
    let disabled = dir.file("off.yaml", "experiments: {packet_loss: {enabled: false}}\n");
    let out = ctl(&["validate", "-f", &exp, "--config", &disabled]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("experiments.packet_loss.enabled is false"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn experiments_are_validated_before_connecting() {
    let no_daemon = ["--daemon", "unix:///nonexistent/chaos.sock"];
    let loss = |extra: &[&str]| {
        let mut args = no_daemon.to_vec();
        args.extend([
            "experiment",
            "packet_loss",
            "--cgroup",
            "/app.slice",
            "--duration",
            "5m",
        ]);
        args.extend(extra);
        ctl(&args)
    };
    for extra in [
        &["--intensity", "2"][..],
        &["--intensity", "2", "--dry-run"],
    ] {
        let out = loss(extra);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "chaos-ctl: intensity: 2 is not allowed; expected 0 to 1\n"
        );
    }
    let out = loss(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("chaos-ctl: intensity: required field is missing: packet_loss"),
        "{}",
        stderr(&out)
    );
    let out = loss(&["--intensity", "0.1", "--calls", "connect"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--calls is not a setting of packet_loss"),
        "{}",
        stderr(&out)
    );
    // The model's defaults: no intensity needed for network_latency, but its delay is.
    let mut args = no_daemon.to_vec();
    args.extend([
        "experiment",
        "network_latency",
        "--pid",
        "1",
        "--duration",
        "1m",
    ]);
    let out = ctl(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("fault.latency: required field is missing")
            && stderr(&out).contains("(--latency-ms)"),
        "{}",
        stderr(&out)
    );
    args.extend(["--latency-ms", "20"]);
    let out = ctl(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "valid: only the daemon is missing"
    );
    assert!(
        stderr(&out).contains("cannot reach chaos-daemon"),
        "{}",
        stderr(&out)
    );
    // bandwidth_limit: no intensity needed, its rate is, in tc's notation.
    let mut args = no_daemon.to_vec();
    args.extend([
        "experiment",
        "bandwidth_limit",
        "--pid",
        "1",
        "--duration",
        "1m",
    ]);
    let out = ctl(&args);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "chaos-ctl: fault.rate: required field is missing: bandwidth_limit needs the rate the \
         target's egress may leave at, e.g. 1mbit (--rate)\n"
    );
    let out = ctl(&[&args[..], &["--rate", "1mb"]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("chaos-ctl: fault.rate: \"1mb\" is not allowed; expected a rate")
            && stderr(&out).ends_with("(--rate)\n"),
        "{}",
        stderr(&out)
    );
    let out = ctl(&[&args[..], &["--rate", "1mbit", "--latency-ms", "5"]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--latency-ms is not a setting of bandwidth_limit"),
        "{}",
        stderr(&out)
    );
    let out = ctl(&[&args[..], &["--rate", "1mbit", "--burst", "32kb"]].concat());
    assert_eq!(
        out.status.code(),
        Some(1),
        "valid: only the daemon is missing"
    );
    assert!(
        stderr(&out).contains("cannot reach chaos-daemon"),
        "{}",
        stderr(&out)
    );
    // The help names the flags with their units.
    let help = stdout(&ctl(&["experiment", "--help"]));
    for text in [
        "--rate <RATE>",
        "bandwidth_limit (required)",
        "kbit, mbit, gbit",
        "--burst <SIZE>",
        "1kb = 1024 bytes",
        "network_latency, bandwidth_limit: the device",
    ] {
        assert!(help.contains(text), "{text:?} missing in:\n{help}");
    }
}

#[test]
fn exit_codes_tell_usage_refusal_and_failure_apart() {
    // Usage (clap): unknown command, missing target, missing or bad duration, unknown type.
    assert_eq!(ctl(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        ctl(&["experiment", "packet_loss", "--duration", "1m"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        ctl(&["experiment", "packet_loss", "--cgroup", "/x"])
            .status
            .code(),
        Some(2)
    );
    let out = ctl(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        "/x",
        "--duration",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = ctl(&[
        "experiment",
        "packet_los",
        "--cgroup",
        "/x",
        "--duration",
        "1m",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("packet_loss"), "{}", stderr(&out));
    // A malformed address or a missing TLS flag is usage too.
    assert_eq!(
        ctl(&["--daemon", "localhost:7443", "status"]).status.code(),
        Some(2)
    );
    let out = ctl(&["--daemon", "https://127.0.0.1:1", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("needs --ca"), "{}", stderr(&out));
    // --daemons needs a readable list.
    assert_eq!(
        ctl(&["--daemons", "/nonexistent/list", "status"])
            .status
            .code(),
        Some(2)
    );
}

/// `chaos-ctl --daemon ADDR status`: exit 1 and one line of stderr.
fn unreachable(addr: &str, extra: &[&str]) -> String {
    let out = ctl(&[&["--daemon", addr], extra, &["status"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("chaos-ctl: cannot reach chaos-daemon at {addr}: ")),
        "{err}"
    );
    err
}

#[test]
fn no_daemon_is_one_clear_line() {
    let dir = TempDir::new("nodaemon");
    let err = unreachable(&format!("unix://{}", dir.path("missing.sock")), &[]);
    assert!(
        err.contains(": no such socket; start it with `sudo chaos-daemon serve` or pass --daemon"),
        "{err}"
    );
    let file = dir.file("not-a-socket", "");
    let err = unreachable(&format!("unix://{file}"), &[]);
    assert!(
        err.contains(&format!("{file} is a regular file, not a socket")),
        "{err}"
    );
    let err = unreachable(&format!("unix://{}", dir.0.display()), &[]);
    assert!(err.contains("is a directory, not a socket"), "{err}");
    // A socket nobody listens on (its daemon exited).
    let stale = dir.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let err = unreachable(&format!("unix://{stale}"), &[]);
    assert!(
        err.contains("connection refused: the socket exists but no daemon listens"),
        "{err}"
    );
    // TCP: nothing listens.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = unreachable(&format!("http://127.0.0.1:{port}"), &[]);
    assert!(
        err.contains("connection refused: nothing listens there"),
        "{err}"
    );
    // The default address names itself.
    let out = ctl(&["status"]);
    if !Path::new("/run/chaos/daemon.sock").exists() {
        assert!(
            stderr(&out).starts_with(
                "chaos-ctl: cannot reach chaos-daemon at unix:///run/chaos/daemon.sock: no such socket"
            ),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_failed_tls_handshake_says_tls() {
    // A server that answers in plain text.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut conn, _) = listener.accept().unwrap();
        let _ = conn.read(&mut [0; 64]);
        let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    // A self-signed certificate made for this run: enough to build a TLS client.
    let tls = TempDir::new("tls-certs");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (
        tls.file("cert.pem", &made.cert.pem()),
        tls.file("key.pem", &made.signing_key.serialize_pem()),
    );
    let err = unreachable(
        &format!("https://127.0.0.1:{port}"),
        &["--ca", &cert, "--cert", &cert, "--key", &key],
    );
    assert!(
        err.contains(": TLS failed: ") && err.contains("check --ca"),
        "{err}"
    );
    server.join().unwrap();
}

#[test]
fn a_socket_of_another_user_says_whose_it_is() {
    use std::os::unix::{fs::PermissionsExt as _, process::CommandExt as _};
    // Only root can run chaos-ctl as someone else.
    if std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok()
        != Some(0)
    {
        assert_ne!(
            std::env::var("CHAOS_REQUIRE_KERNEL").as_deref(),
            Ok("1"),
            "needs root to run chaos-ctl as nobody, and CHAOS_REQUIRE_KERNEL=1 forbids skipping"
        );
        eprintln!("SKIP: needs root to run chaos-ctl as nobody");
        return;
    }
    let dir = TempDir::new("perm");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path("daemon.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A copy that user nobody can execute (the checkout may be private).
    let copy = dir.path("chaos-ctl");
    std::fs::copy(CTL, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = || {
        Command::new(&copy)
            .args(["--daemon", &format!("unix://{socket}"), "status"])
            .uid(65534)
            .gid(65534)
            .output()
    };
    // Another test's child may still hold the copy's write descriptor between fork and exec.
    let mut out = run();
    for _ in 0..50 {
        match &out {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                out = run();
            }
            _ => break,
        }
    }
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "permission denied: the socket belongs to uid 0 with mode 0600; run chaos-ctl as root"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fan_out_reports_every_unreachable_daemon() {
    let dir = TempDir::new("fanout");
    let (a, b) = (dir.path("a.sock"), dir.path("b.sock"));
    let list = dir.file(
        "daemons",
        &format!("# two nodes\nunix://{a}\nunix://{b}  # the second\n"),
    );
    let out = ctl(&["--daemons", &list, "emergency-stop"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for sock in [&a, &b] {
        assert!(
            text.contains(&format!(
                "== unix://{sock}\nerror: cannot reach chaos-daemon at unix://{sock}: no such socket"
            )),
            "{text}"
        );
    }
    assert!(stderr(&out).contains("2 of 2 daemons did not answer ok"));
    // Commands that follow one daemon do not fan out.
    let out = ctl(&["--daemons", &list, "status", "--watch"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn database_load_files_and_flags_are_checked_offline() {
    // The example validates, and the shipped config admits it at its price per query.
    let file = example("database-load");
    let config = format!("{ROOT}/chaos/chaos.yaml");
    let out = ctl(&["validate", "-f", &file, "--config", &config]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(database_load, ")
            && stdout(&out).contains(
                "admits \"orders-db-busy\": budget 50 reserved, at most 50000 queries, 0.001 \
                 per query"
            ),
        "{}",
        stdout(&out)
    );
    // A config with a lower rate limit refuses its last ramp step, naming the key.
    let dir = TempDir::new("dbload");
    let slow = dir.file(
        "slow.yaml",
        "experiments: {database_load: {max_queries_per_second: 200}}\n",
    );
    let out = ctl(&["validate", "-f", &file, "--config", &slow]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "ramp.steps[2]: 500 is not allowed; expected at most 200 queries per second \
             (experiments.database_load.max_queries_per_second)"
        ),
        "{}",
        stderr(&out)
    );
    // An inline password is a usage error that says where a password goes.
    let inline = dir.file(
        "inline.yaml",
        "name: x\ntype: database_load\ntarget: {pid: 1}\nfault: {engine: redis, address: \
         'c:6379', profile: writes, rate: 5, password: hunter2}\n",
    );
    let out = ctl(&["validate", "-f", &inline]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("fault.password: a password is never written in an experiment")
            && !stderr(&out).contains("hunter2"),
        "{}",
        stderr(&out)
    );
    // Flags: a bad value names the model's field and the flag, before any daemon is asked.
    let no_daemon = ["--daemon", "unix:///nonexistent/chaos.sock"];
    let load = |extra: &[&str]| {
        let mut args = no_daemon.to_vec();
        args.extend([
            "experiment",
            "database_load",
            "--pid",
            "1",
            "--engine",
            "postgres",
            "--address",
            "db:5432",
            "--user",
            "app",
        ]);
        args.extend(extra);
        ctl(&args)
    };
    let out = load(&[
        "--profile",
        "writes",
        "--rate",
        "5",
        "--concurrency",
        "2000",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "chaos-ctl: fault.concurrency: 2000 is not allowed; expected 1 to 1000 connections (the \
         daemon's experiments.database_load.max_connections may allow less) (--concurrency)\n"
    );
    let out = load(&["--statement", "0:SELECT 1", "--rate", "5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("fault.statements[0].weight: 0 is not allowed")
            && stderr(&out).ends_with("(--statement)\n"),
        "{}",
        stderr(&out)
    );
    // Valid: only the daemon is missing.
    let out = load(&[
        "--statement",
        "3:SELECT 1",
        "--ramp",
        "10,20",
        "--ramp-hold",
        "10s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach chaos-daemon"),
        "{}",
        stderr(&out)
    );
    // The help documents the statement syntax.
    let help = stdout(&ctl(&["experiment", "--help"]));
    for words in [
        "--statement <[WEIGHT:]SQL>",
        "--in-target-netns",
        "database_load: rates",
    ] {
        assert!(help.contains(words), "{words:?} missing in:\n{help}");
    }
}
