//! The guards end to end, as root on the host kernel: a real daemon driven by chaos-ctl, a real
//! Prometheus (Debian's) scraping a real HTTP server in the target cgroup, and faults on that
//! server's dependency. A critical SLO rolls back (the report shows both disarm times and the
//! impact score), a failing health endpoint rolls back and a healthy one does not, the
//! error-rate trigger is measured against a baseline taken before arming and fires above its
//! limit and not below, an unreachable Prometheus refuses the start and a killed one rolls
//! back, pre-flight refuses a protected target, a budget, outside the time window and under
//! the latch, listing every check in a dry run; a rollback detaches, runs its strategies and
//! only then notifies, with their outcomes; guards that do not roll back (warning SLOs,
//! `slo_violation: false`, `rollback.automatic: false`) alert once each, and status and
//! `/metrics` show a running experiment's guards.

#[allow(dead_code, reason = "the notification tests use the rest")]
mod notify_support;
mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{
    http::{Dependency, HttpWorkload, Load},
    metrics,
    prometheus::Prometheus,
    *,
};

/// Prometheus scrapes every this long.
const SCRAPE: Duration = Duration::from_millis(200);
/// The daemon evaluates the guards every this long.
const GUARD_INTERVAL_MS: u64 = 100;
/// What a rollback may take beyond one scrape and one guard interval: the query, the
/// recorder, chaos-ctl, and a loaded 2-core CI machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// `safety_checks` lines: the repo's error_rate SLO as the only critical one.
const ERROR_RATE_ONLY: &str =
    "  slo_validation:\n    critical_slos: [error_rate]\n    warning_slos: []\n";

/// The repo's SLO definitions.
fn slo_file() -> String {
    format!(
        "{}/../chaos/safety/http-slos.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A workload in a test cgroup with its dependency, load from outside, and Prometheus.
struct Service {
    cgroup: TestCgroup,
    _dependency: Dependency,
    workload: HttpWorkload,
    _load: Load,
    prometheus: Prometheus,
}

impl Service {
    fn start(mount: &Path, tag: &str, extra: &[&str]) -> Self {
        let cgroup = TestCgroup::new(mount, tag);
        let dependency = Dependency::start();
        let workload = HttpWorkload::start(Some(&cgroup.path), dependency.addr(), extra);
        let load = Load::start(&workload.url("/"), 100);
        let prometheus = Prometheus::start(&[workload.addr()], SCRAPE);
        // Every query has data once two scrapes saw traffic.
        prometheus.wait_for(
            "sum(rate(http_requests_total[10s]))",
            |v| v > 0.0,
            Duration::from_secs(15),
        );
        Self {
            cgroup,
            _dependency: dependency,
            workload,
            _load: load,
            prometheus,
        }
    }

    /// A daemon (in a fresh directory tagged `tag`) with [`Service::config`] of this service's
    /// Prometheus and `safety`.
    fn daemon(&self, tag: &str, safety: &str) -> (TempDir, Daemon) {
        let dir = TempDir::new(tag);
        let daemon = Daemon::with_config(&dir.0, &self.config(&self.prometheus.url(), safety));
        (dir, daemon)
    }

    /// A daemon (in a fresh directory tagged `tag`) with the config `yaml`, serving its
    /// metrics on a free loopback port; and that port's address.
    fn daemon_with_metrics(&self, tag: &str, yaml: &str) -> (TempDir, Daemon, String) {
        let dir = TempDir::new(tag);
        let config = dir.0.join("chaos.yaml");
        std::fs::write(&config, yaml).unwrap();
        let args = ["--config", config.to_str().unwrap(), "--metrics-addr"];
        let mut daemon = Daemon::start_in(&dir.0, None, &[&args[..], &["127.0.0.1:0"]].concat());
        let addr = daemon.metrics_addr();
        (dir, daemon, addr)
    }

    /// A daemon config: the repo's SLO file, Prometheus at `prometheus`, guards every 100 ms,
    /// no baseline wait, and `safety` added under `safety_checks`.
    fn config(&self, prometheus: &str, safety: &str) -> String {
        format!(
            "{PERMISSIVE_CONFIG}safety_checks:\n  slo_files: ['{}']\n  guard_interval_ms: \
             {GUARD_INTERVAL_MS}\n  baseline: 0s\n{safety}monitoring:\n  prometheus:\n    \
             url: '{prometheus}'\n    query_timeout: 500ms\n",
            slo_file()
        )
    }
}

/// Starts a dependency failure (ECONNREFUSED on `intensity` of connects) on `cgroup`.
fn refuse(daemon: &Daemon, cgroup: &Path, intensity: &str, args: &[&str]) -> std::process::Output {
    let head = ["--intensity", intensity, "--errno", "ECONNREFUSED"];
    daemon.experiment("dependency_failure", cgroup, &[&head[..], args].concat())
}

/// Starts [`refuse`] and waits until it ended (within `within`); its final status.
fn refuse_until_ended(
    daemon: &Daemon,
    cgroup: &Path,
    intensity: &str,
    args: &[&str],
    within: Duration,
) -> (String, serde_json::Value) {
    let id = started_id(&refuse(daemon, cgroup, intensity, args));
    let status = daemon.ended(&id, within);
    (id, status)
}

/// Asserts that `status` is a rollback whose reason starts with `prefix`; the reason.
fn rolled_back(status: &serde_json::Value, prefix: &str) -> String {
    assert_eq!(status["state"], "rolled_back", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.starts_with(prefix), "{reason}");
    reason.to_owned()
}

/// Asserts that `status` ended within one scrape, one guard interval and [`MARGIN`] of arming.
fn assert_rolled_back_in_time(status: &serde_json::Value) {
    let took = Duration::from_millis(ms(&status["ended_unix_ms"]) - ms(&status["started_unix_ms"]));
    let bound = SCRAPE + Duration::from_millis(GUARD_INTERVAL_MS) + MARGIN;
    assert!(
        took <= bound,
        "rolled back {took:?} after arming; bound {bound:?}"
    );
}

/// The decision-to-disarm time of `id`'s rollback, read from its timeline event.
fn decision_to_disarm_us(daemon: &Daemon, id: &str) -> u64 {
    let rollback = daemon.events(id, "rollback");
    let message = rollback
        .first()
        .unwrap_or_else(|| panic!("no rollback event of {id}"));
    message
        .split(" µs after the evaluation that saw it")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{message}"))
}

fn ms(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap()
}

#[test]
fn a_breached_critical_slo_rolls_back_within_a_scrape_and_an_interval() {
    let Some(mount) = kernel() else { return };
    let service = Service::start(&mount, "guard-slo", &[]);
    let safety = ERROR_RATE_ONLY;
    let (_dir, daemon) = service.daemon("guard-slo", safety);

    let out = refuse(
        &daemon,
        &service.cgroup.path,
        "1",
        &["--duration", "60s", "--guard", "error_rate"],
    );
    let started = json(&String::from_utf8_lossy(&out.stdout));
    let checks = started["preflight"].as_array().expect("pre-flight lines");
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:?}");
    let id = started_id(&out);
    let status = daemon.ended(&id, Duration::from_secs(20));
    let reason = rolled_back(&status, "slo violation: error_rate = ");
    assert!(reason.ends_with("(objective <= 0.01)"), "{reason}");
    // From arming to the rollback: the first scrape that sees the errors, one evaluation.
    assert_rolled_back_in_time(&status);
    // The report names the SLO, its value and its objective, and the disarm time.
    let report = daemon.ctl_ok(&["report", &id]);
    assert!(report.contains("error_rate"), "{report}");
    assert!(report.contains("<= 0.01"), "{report}");
    decision_to_disarm_us(&daemon, &id);
    // The full report: the guard's samples against its threshold, and the violation.
    let full = &daemon.json(&["report", &id, "--format", "json"])["report"];
    let guard = full["guards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "error_rate")
        .unwrap_or_else(|| panic!("no error_rate series: {full}"));
    assert_eq!(guard["objective"], "<= 0.01", "{guard}");
    let violation = &full["verdict"]["violation"];
    assert_eq!(violation["guard"], "error_rate", "{full}");
    // Both disarm times, each for what it measures: the violating sample came before the
    // evaluation that saw it.
    let observation = ms(&violation["observation_to_disarm_us"]);
    let decision = ms(&violation["decision_to_disarm_us"]);
    assert!(observation >= decision, "{violation}");
    assert!(
        report.contains(&format!(
            "- Decision to disarm: {:.3} ms from the guard evaluation that saw the violation",
            decision as f64 / 1000.0
        )) && report.contains("- Observation to disarm: "),
        "{report}"
    );
    // The impact score, though the impact guard did not apply (`--guard error_rate`): the
    // breached SLO puts it at 1.
    assert_eq!(full["verdict"]["impact_score"], 1.0, "{full}");
    assert!(report.contains("- Impact score: 1.00 "), "{report}");
    let html = daemon.ctl_ok(&["report", &id, "--format", "html"]);
    assert!(html.contains("id=\"chart-faults\""), "{html}");
    assert!(html.contains("guard-chart"), "{html}");
    // The service recovers: nothing is attached any more.
    daemon.none_listed(Duration::from_secs(10));
    assert_eq!(service.cgroup.attached(), 0);
}

#[test]
fn a_failing_health_endpoint_rolls_back_and_a_healthy_one_does_not() {
    let Some(mount) = kernel() else { return };
    let service = Service::start(&mount, "guard-health", &[]);
    let safety = format!(
        "  slo_validation:\n    enabled: false\n  health_checks:\n    min_success_rate: 0.95\n    \
         min_availability: 0.5\n    window: 5s\n    endpoints:\n      - url: '{}'\n        \
         interval: 100ms\n        timeout: 500ms\n",
        service.workload.url("/healthz")
    );
    let (_dir, daemon) = service.daemon("guard-health", &safety);
    // A fault that spares the dependency's port: healthy for the whole run.
    let other_port = "9";
    let out = refuse(
        &daemon,
        &service.cgroup.path,
        "1",
        &[
            "--duration",
            "3s",
            "--guard",
            "health_checks",
            "--ports",
            other_port,
        ],
    );
    let id = started_id(&out);
    let status = daemon.ended(&id, Duration::from_secs(15));
    assert_eq!(status["state"], "completed", "{status}");
    // The same fault on every connect: /healthz answers 503 and the guard rolls back.
    let (_, status) = refuse_until_ended(
        &daemon,
        &service.cgroup.path,
        "1",
        &["--duration", "60s", "--guard", "health_checks"],
        Duration::from_secs(15),
    );
    let reason = rolled_back(&status, "health check failed: http://");
    assert!(reason.contains("HTTP 503"), "{reason}");
}

#[test]
fn the_error_rate_trigger_is_relative_to_the_baseline_and_fires_above_its_limit_only() {
    let Some(mount) = kernel() else { return };
    // A service that fails a fifth of its requests on its own: the baseline's error rate.
    let service = Service::start(&mount, "guard-trigger", &["--error-ratio", "0.2"]);
    let safety = "  slo_validation:\n    critical_slos: []\n    warning_slos: []\n  \
                  rollback_triggers:\n    error_rate_increase: 0.25\n    availability_drop: 1\n";
    let (_dir, daemon) = service.daemon("guard-trigger", safety);
    // A 2 s baseline, measured before arming; then 15% of connects refused: the error rate
    // climbs from about 0.2 to about 0.32, past the 0.25 limit as an absolute value but only
    // 0.12 above the baseline: no rollback for the whole run.
    let (asked, asked_ms) = (Instant::now(), unix_ms());
    let out = refuse(
        &daemon,
        &service.cgroup.path,
        "0.15",
        &[
            "--duration",
            "12s",
            "--guard",
            "rollback_triggers",
            "--baseline",
            "2s",
        ],
    );
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "the start waited for the baseline"
    );
    let id = started_id(&out);
    let error_rate = "(sum(rate(http_requests_total{code=~\"5..\"}[10s])) or 0 * \
                      sum(rate(http_requests_total[10s]))) / \
                      clamp_min(sum(rate(http_requests_total[10s])), 1e-9)";
    service
        .prometheus
        .wait_for(error_rate, |v| v > 0.27, Duration::from_secs(10));
    let status = daemon.ended(&id, Duration::from_secs(30));
    assert_eq!(status["state"], "completed", "{status}");
    assert!(
        ms(&status["started_unix_ms"]) >= asked_ms + 2000,
        "armed after the baseline window: {status}"
    );
    let baseline = daemon.events(&id, "baseline");
    assert_eq!(baseline.len(), 1, "the baseline is on the timeline");
    let measured: f64 = baseline[0]
        .split("error_rate = ")
        .nth(1)
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{baseline:?}"));
    assert!((0.1..0.3).contains(&measured), "{baseline:?}");
    let full = &daemon.json(&["report", &id, "--format", "json"])["report"];
    let trigger = full["guards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "error_rate_increase")
        .unwrap_or_else(|| panic!("{full}"));
    let moved = trigger["max"].as_f64().unwrap();
    assert!(moved < 0.25 && trigger["violations"] == 0, "{trigger}");
    // Every connect refused: it passes 0.25 above the baseline within seconds.
    let (_, status) = refuse_until_ended(
        &daemon,
        &service.cgroup.path,
        "1",
        &["--duration", "60s", "--guard", "rollback_triggers"],
        Duration::from_secs(20),
    );
    let reason = rolled_back(&status, "rollback trigger error_rate_increase: moved ");
    assert!(
        reason.contains(" > 0.25 (error_rate ") && reason.contains("(baseline 0."),
        "{reason}"
    );
}

#[test]
fn prometheus_down_refuses_the_start_and_killed_rolls_back() {
    let Some(mount) = kernel() else { return };
    let mut service = Service::start(&mount, "guard-prom", &[]);
    let dir = TempDir::new("guard-prom");
    let safety = ERROR_RATE_ONLY;
    // A port nobody listens on: pre-flight refuses, nothing is armed.
    let closed = format!("http://127.0.0.1:{}", notify_support::closed_port());
    let daemon = Daemon::with_config(&dir.0, &service.config(&closed, safety));
    let out = refuse(
        &daemon,
        &service.cgroup.path,
        "0.01",
        &["--duration", "60s"],
    );
    let (code, stderr) = failed(&out);
    assert_eq!(code, Some(3), "refused: {stderr}");
    assert!(
        stderr.contains("pre-flight check failed: critical SLOs healthy: error_rate"),
        "{stderr}"
    );
    assert!(stderr.contains("guard unavailable"), "{stderr}");
    assert_eq!(service.cgroup.attached(), 0, "nothing armed");
    drop(daemon);

    // With Prometheus up the start passes; killing Prometheus rolls it back.
    let (_dir, daemon) = service.daemon("guard-prom2", safety);
    let out = refuse(
        &daemon,
        &service.cgroup.path,
        "0.0001",
        &["--duration", "60s", "--ports", "9"],
    );
    let id = started_id(&out);
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    service.prometheus.kill();
    let status = daemon.ended(&id, Duration::from_secs(10));
    // The critical SLO, or a trigger's source: whichever query failed first.
    rolled_back(&status, "guard unavailable: ");
    assert!(killed.elapsed() < Duration::from_secs(10));
}

/// The pre-flight checks, in their order.
const CHECKS: [&str; 9] = [
    "config valid",
    "target exists and is not protected",
    "kernel supports the fault",
    "budget available",
    "critical SLOs healthy",
    "health endpoints healthy",
    "inside the time window",
    "no emergency-stop latch",
    "notification channels and strategies resolvable",
];

/// A dry run's answer, refused (exit 3) when a check failed: its stderr, and (name, passed,
/// detail) of every check it printed.
fn dry_run(
    daemon: &Daemon,
    cgroup: &Path,
    args: &[&str],
) -> (Option<i32>, String, Vec<(String, bool, String)>) {
    let out = daemon.experiment(
        "dependency_failure",
        cgroup,
        &[args, &["--dry-run"]].concat(),
    );
    let answer = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(answer["dry_run"], true, "{answer}");
    let checks = answer["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["passed"].as_bool().unwrap(),
                c["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect::<Vec<_>>();
    let names: Vec<&str> = checks.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, CHECKS, "every check, in order");
    let (code, stderr) = failed(&out);
    (code, stderr, checks)
}

/// The names of the failed checks.
fn failures(checks: &[(String, bool, String)]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| !c.1)
        .map(|c| c.0.as_str())
        .collect()
}

#[test]
fn preflight_refuses_outside_the_time_window_and_under_the_latch_and_a_dry_run_lists_all() {
    let Some(mount) = kernel() else { return };
    let service = Service::start(&mount, "guard-pre", &[]);
    // A one-hour window that starts two hours from now (UTC): now is outside it.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let hour = (now_ms / 3_600_000 + 2) % 24;
    let window = format!(
        "{ERROR_RATE_ONLY}  time_window:\n    time_zone: UTC\n    hours: '{hour:02}:00-{:02}:00'\n",
        (hour + 1) % 24
    );
    let (_dir, daemon) = service.daemon("guard-pre", &window);
    // The dry run lists every check and is refused as the start would be.
    let (code, stderr, checks) = dry_run(&daemon, &service.cgroup.path, &["--intensity", "0.1"]);
    assert_eq!(failures(&checks), ["inside the time window"], "{checks:?}");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("pre-flight check failed: inside the time window:")
            && stderr.contains("(FailedPrecondition)"),
        "{stderr}"
    );
    let out = refuse(&daemon, &service.cgroup.path, "0.1", &[]);
    let (_, stderr) = failed(&out);
    assert!(
        stderr.contains("pre-flight check failed: inside the time window:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is outside safety_checks.time_window"),
        "{stderr}"
    );
    drop(daemon);

    // Inside the window (no window). A protected target: its line fails with the reason the
    // start gives, every other check still runs.
    let safety = ERROR_RATE_ONLY;
    let (_dir, daemon) = service.daemon("guard-pre2", safety);
    let root = Path::new("/");
    let (code, stderr, checks) = dry_run(&daemon, root, &["--intensity", "0.1"]);
    assert_eq!(failures(&checks), [CHECKS[1]], "{checks:?}");
    assert!(
        checks[1].2.contains("is protected: it is the root cgroup"),
        "{checks:?}"
    );
    assert!(checks[4].2.starts_with("error_rate = "), "{checks:?}");
    let start = refuse(&daemon, root, "0.1", &[]);
    let (start_code, start_stderr) = failed(&start);
    assert_eq!((code, start_code), (Some(3), Some(3)), "{stderr}");
    assert_eq!(stderr, start_stderr, "the dry run is refused as the start");
    assert!(
        stderr.contains(&checks[1].2) && stderr.contains("(FailedPrecondition)"),
        "{stderr}"
    );
    // More than budget.max_experiment_cost: a limit of the config, which the budget line
    // needs; the other checks still run.
    let (code, stderr, checks) = dry_run(
        &daemon,
        &service.cgroup.path,
        &["--intensity", "0.1", "--budget", "2000000"],
    );
    assert_eq!(failures(&checks), [CHECKS[0], CHECKS[3]], "{checks:?}");
    assert_eq!(
        checks[0].2,
        "budget: 2000000 is not allowed; expected at most 1000000 (budget.max_experiment_cost)"
    );
    assert!(
        checks[3]
            .2
            .starts_with("not checked: the experiment's budget needs a valid config"),
        "{checks:?}"
    );
    assert!(checks[1].1 && checks[4].1, "{checks:?}");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains(&checks[0].2), "{stderr}");
    assert_eq!(service.cgroup.attached(), 0, "a dry run arms nothing");

    // Under the latch: refused.
    daemon.ctl_ok(&["emergency-stop"]);
    let out = refuse(&daemon, &service.cgroup.path, "0.1", &[]);
    let (_, stderr) = failed(&out);
    assert!(
        stderr.contains("pre-flight check failed: no emergency-stop latch"),
        "{stderr}"
    );
    assert_eq!(service.cgroup.attached(), 0);
}

#[test]
fn a_ramp_stops_at_the_step_where_a_guard_turns_red_and_the_next_never_starts() {
    let Some(mount) = kernel() else { return };
    let service = Service::start(&mount, "guard-ramp", &[]);
    let safety = "  slo_validation:\n    enabled: false\n";
    let (_dir, daemon) = service.daemon("guard-ramp", safety);
    // An SLO of this experiment only: at most half of the requests may fail.
    let slo = "half_fail:<= 0.5:sum(rate(http_requests_total{code=~\"5..\"}[10s])) / \
               clamp_min(sum(rate(http_requests_total[10s])), 1e-9)";
    // 5% holds for 8 s under the SLO; 100% crosses 0.5 within about 5 s of its start, before
    // the third step (50%) is due.
    let out = refuse(
        &daemon,
        &service.cgroup.path,
        "0.05",
        &[
            "--ramp",
            "0.05,1,0.5",
            "--ramp-hold",
            "8s",
            "--slo",
            slo,
            "--guard",
            "half_fail",
            "--duration",
            "60s",
        ],
    );
    let id = started_id(&out);
    let status = daemon.ended(&id, Duration::from_secs(40));
    rolled_back(&status, "slo violation: half_fail = ");
    assert_eq!(
        daemon.events(&id, "step"),
        ["intensity 0.05 (step 1 of 3)", "intensity 1 (step 2 of 3)"]
    );
    // The first step really ran at 5%, the second at 100%: the kernel's counters agree.
    let c = &status["counters"];
    assert!(
        ms(&c["injected"]) > 0 && ms(&c["injected"]) < ms(&c["matched"]),
        "{status}"
    );
}

#[test]
fn a_rollback_detaches_runs_its_strategies_then_notifies_and_a_channel_down_delays_nothing() {
    let Some(mount) = kernel() else { return };
    let service = Service::start(&mount, "guard-notify", &[]);
    let receiver = notify_support::Receiver::start();
    let down = notify_support::Hanging::start();
    let safety = ERROR_RATE_ONLY;
    // Three strategies: one kills the target's processes, one calls its action, one has none.
    let rollback = format!(
        "rollback:\n  notification_channels: [hook, down]\n  channels:\n    hook: {{type: \
         webhook, url: '{0}/notice'}}\n    down: {{type: webhook, url: \
         'http://127.0.0.1:{1}/'}}\n  strategies:\n    pod_restart: true\n    traffic_shift: \
         true\n    feature_flag_disable: true\n  actions:\n    traffic_shift: {{url: \
         '{0}/shift'}}\n",
        receiver.base, down.port
    );
    let config = service.config(&service.prometheus.url(), safety) + &rollback;
    let (_dir, daemon, metrics_at) = service.daemon_with_metrics("guard-notify", &config);
    let out = refuse(
        &daemon,
        &service.cgroup.path,
        "1",
        &["--duration", "60s", "--guard", "error_rate"],
    );
    let started = json(&String::from_utf8_lossy(&out.stdout));
    let channels = started["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "notification channels and strategies resolvable")
        .unwrap()
        .clone();
    assert_eq!(channels["passed"], true, "{channels}");
    let id = started_id(&out);
    let status = daemon.ended(&id, Duration::from_secs(20));
    rolled_back(&status, "slo violation: error_rate");
    // The hanging channel was tried (and is still waiting) while the rollback went on: it took
    // no longer than without channels.
    assert_rolled_back_in_time(&status);
    let disarm_us = decision_to_disarm_us(&daemon, &id);
    assert!(disarm_us < 50_000, "decision to disarm {disarm_us} µs");
    // The working channel got the start, the rollback and the end; the action was called.
    notify_support::wait_until(Duration::from_secs(10), || {
        let kinds: Vec<String> = receiver
            .requests("/notice")
            .iter()
            .map(|r| r.body["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        ["started", "rolled_back", "ended"]
            .iter()
            .all(|k| kinds.iter().any(|x| x == k))
    });
    let notices = receiver.requests("/notice");
    let rolled = notices
        .iter()
        .find(|r| r.body["kind"] == "rolled_back")
        .unwrap_or_else(|| panic!("{notices:?}"));
    assert_eq!(
        rolled.body["experiment_id"],
        id.as_str(),
        "{:?}",
        rolled.body
    );
    assert!(
        rolled.body["reason"]
            .as_str()
            .unwrap()
            .starts_with("slo violation: error_rate"),
        "{:?}",
        rolled.body
    );
    // In this order: the strategies (the action's call), then the rollback's notification,
    // then the end's.
    let order: Vec<String> = receiver
        .all()
        .iter()
        .filter(|r| r.path == "/shift" || r.body["experiment_id"] == id.as_str())
        .map(|r| format!("{} {}", r.path, r.body["kind"].as_str().unwrap_or_default()))
        .collect();
    let at = |what: &str| {
        order
            .iter()
            .position(|x| x == what)
            .unwrap_or_else(|| panic!("{what} in {order:?}"))
    };
    assert!(
        at("/notice started") < at("/shift ")
            && at("/shift ") < at("/notice rolled_back")
            && at("/notice rolled_back") < at("/notice ended"),
        "{order:?}"
    );
    // The rollback's notification carries the strategies' outcomes and both disarm times.
    let fields = &rolled.body["fields"];
    let field = |key: &str| {
        fields[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: {fields}"))
    };
    assert_eq!(
        field("strategy_feature_flag_disable"),
        "not configured, skipped"
    );
    assert_eq!(
        field("strategy_traffic_shift"),
        format!("POST to {}/shift answered 2xx", receiver.base)
    );
    assert!(
        field("strategy_pod_restart").starts_with(&format!(
            "cgroup.kill of {}: ",
            service.cgroup.path.display()
        )),
        "{fields}"
    );
    assert_eq!(field("guard"), "error_rate");
    let decision: u64 = field("decision_to_disarm_us").parse().unwrap();
    let observation: u64 = field("observation_to_disarm_us").parse().unwrap();
    assert!(observation >= decision, "{fields}");
    assert!(down.accepted() > 0, "the down channel was tried");
    eventually(
        "each strategy's outcome on the timeline",
        Duration::from_secs(10),
        || (daemon.events(&id, "strategy").len() == 3).then_some(()),
    );

    // /metrics: the rollback by its reason, its decision-to-disarm time, the guard's counters;
    // the experiment's own series are gone with it.
    let body = eventually("the notices on /metrics", Duration::from_secs(10), || {
        let body = metrics::scrape(&metrics_at);
        let delivered = r#"chaos_notifications_total{channel="hook",outcome="delivered"}"#;
        (metrics::value(&body, delivered) >= Some(3.0)).then_some(body)
    });
    let value = |series: &str| {
        metrics::value(&body, series).unwrap_or_else(|| panic!("{series} in\n{body}"))
    };
    assert_eq!(value(r#"chaos_rollbacks_total{reason="slo"}"#), 1.0);
    assert_eq!(value("chaos_guard_decision_to_disarm_seconds_count"), 1.0);
    let sum = value("chaos_guard_decision_to_disarm_seconds_sum");
    assert!(
        (sum - decision as f64 / 1e6).abs() < 1e-6,
        "{sum} s against {decision} µs"
    );
    assert!(value(r#"chaos_guard_evaluations_total{guard="error_rate"}"#) >= 1.0);
    assert!(value(r#"chaos_guard_violations_total{guard="error_rate"}"#) >= 1.0);
    let of_it = format!("experiment_id=\"{id}\"");
    for family in [
        "chaos_guard_value",
        "chaos_guard_threshold",
        "chaos_impact_score",
        "chaos_budget_spent",
    ] {
        let left = metrics::matching(&body, family, &of_it);
        assert!(left.is_empty(), "{family}: {left:?}");
    }
}

/// The workload's error ratio over 2 s (a guard that recovers within seconds of a fault's end).
const FAST_ERRORS: &str = "(sum(rate(http_requests_total{code=~\"5..\"}[2s])) or 0 * \
                           sum(rate(http_requests_total[2s]))) / \
                           clamp_min(sum(rate(http_requests_total[2s])), 1e-9)";

/// `safety_checks` lines: the critical SLO `fast_errors` (`<= 0.01`), the warning SLO
/// `strict_errors` (`<= 0.001`), both [`FAST_ERRORS`], and `extra`.
fn fast_slos(extra: &str) -> String {
    format!(
        "  slo_validation:\n    critical_slos: [fast_errors]\n    warning_slos: \
         [strict_errors]\n  slos:\n    fast_errors: {{query: '{FAST_ERRORS}', objective: '<= \
         0.01'}}\n    strict_errors: {{query: '{FAST_ERRORS}', objective: '<= 0.001'}}\n{extra}"
    )
}

/// The `rollback` section of a webhook channel `hook` posting to `receiver`'s `/notice`.
fn hook(receiver: &notify_support::Receiver) -> String {
    format!(
        "rollback:\n  notification_channels: [hook]\n  channels:\n    hook: {{type: webhook, \
         url: '{}/notice'}}\n",
        receiver.base
    )
}

/// The notices of `kind` about experiment `id` the receiver got, once the end's came.
fn notices(receiver: &notify_support::Receiver, id: &str, kind: &str) -> Vec<serde_json::Value> {
    let about = |k: &str| {
        receiver
            .requests("/notice")
            .into_iter()
            .map(|r| r.body)
            .filter(|b| b["experiment_id"] == id && b["kind"] == k)
            .collect::<Vec<_>>()
    };
    assert!(
        notify_support::wait_until(Duration::from_secs(10), || !about("ended").is_empty()),
        "the end of {id} was announced"
    );
    about(kind)
}

#[test]
fn guards_that_do_not_roll_back_alert_once_each_and_status_and_metrics_show_them() {
    let Some(mount) = kernel() else { return };
    let service = Service::start(&mount, "guard-alert", &[]);
    let receiver = notify_support::Receiver::start();
    let cgroup = &service.cgroup.path;
    // Breaches of the critical SLO only alert (rollback_triggers.slo_violation: false).
    let safety = fast_slos("  rollback_triggers:\n    slo_violation: false\n");
    let config = service.config(&service.prometheus.url(), &safety) + &hook(&receiver);
    let (_dir, daemon, metrics_at) = service.daemon_with_metrics("guard-alert", &config);
    // Half of the connects refused, on a ramp to all of them after 2 s: both SLOs turn red.
    let id = started_id(&refuse(
        &daemon,
        cgroup,
        "0.5",
        &[
            "--duration",
            "6s",
            "--ramp",
            "0.5,1",
            "--ramp-hold",
            "2s",
            "--guard",
            "fast_errors",
            "--guard",
            "strict_errors",
        ],
    ));
    let running = eventually("both guards red in status", Duration::from_secs(10), || {
        let status = daemon.json(&["status"]);
        let s = status["experiments"]
            .as_array()?
            .iter()
            .find(|e| e["id"] == id.as_str())?
            .clone();
        let red = s["guards"].as_array()?.iter().all(|g| g["ok"] == false);
        red.then_some(s)
    });
    // status: each guard with its value, objective and state; the impact score (0: the SLO's
    // breaches are no rollback threshold now), the step, the spend.
    let guard = |name: &str| {
        running["guards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {running}"))
            .clone()
    };
    let fast = guard("fast_errors");
    assert_eq!(
        (&fast["kind"], &fast["objective"]),
        (&json!("critical_slo"), &json!("<= 0.01")),
        "{fast}"
    );
    assert!(fast["value"].as_f64().unwrap() > 0.01, "{fast}");
    assert_eq!(guard("strict_errors")["kind"], "warning_slo");
    assert_eq!(running["state"], "running", "{running}");
    assert_eq!(running["impact"], 0.0, "{running}");
    assert_eq!(running["step"], "intensity 0.5 (step 1 of 2)", "{running}");
    assert!(running["spent"].as_f64().unwrap() >= 0.0, "{running}");
    let text = daemon.ctl_ok(&["status"]);
    let mine = text
        .split_once(&format!("guards of {id}:\n"))
        .unwrap_or_else(|| panic!("{text}"))
        .1;
    assert!(
        mine.lines()
            .any(|l| l.starts_with("  RED   fast_errors ") && l.contains("  <= 0.01 ")),
        "{text}"
    );
    assert!(
        mine.contains("  impact score 0.000\n")
            && mine.contains("  ramp: intensity 0.5 (step 1 of 2)\n")
            && mine.contains("  spent 0.0000 of its budget 1000000.0000\n"),
        "{text}"
    );
    // /metrics: this experiment's guards, its impact score and its spend.
    let body = metrics::scrape(&metrics_at);
    let value = |series: &str| {
        metrics::value(&body, series).unwrap_or_else(|| panic!("{series} in\n{body}"))
    };
    let of = |guard: &str| format!("{{experiment_id=\"{id}\",guard=\"{guard}\"}}");
    assert!(value(&format!("chaos_guard_value{}", of("fast_errors"))) > 0.01);
    assert_eq!(
        value(&format!("chaos_guard_threshold{}", of("fast_errors"))),
        0.01
    );
    assert_eq!(
        value(&format!("chaos_guard_threshold{}", of("strict_errors"))),
        0.001
    );
    let experiment = format!("{{experiment_id=\"{id}\"}}");
    assert_eq!(value(&format!("chaos_impact_score{experiment}")), 0.0);
    assert_eq!(value(&format!("chaos_budget_spent{experiment}")), 0.0);
    assert_eq!(
        value(&format!("chaos_budget_remaining{experiment}")),
        1_000_000.0
    );
    assert!(value(r#"chaos_guard_violations_total{guard="fast_errors"}"#) >= 1.0);
    assert!(value(r#"chaos_guard_evaluations_total{guard="strict_errors"}"#) >= 1.0);

    // It runs to its end: one alert per guard, on the timeline and through the channel, and
    // the red guards held the ramp at its first step.
    let status = daemon.ended(&id, Duration::from_secs(20));
    assert_eq!(status["state"], "completed", "{status}");
    let alerts = daemon.events(&id, "guard_alert");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].starts_with("slo violation: fast_errors = ")
            && alerts[0].ends_with("(safety_checks.rollback_triggers.slo_violation is false)"),
        "{alerts:?}"
    );
    let warnings = daemon.events(&id, "slo_warning");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("strict_errors: "), "{warnings:?}");
    assert_eq!(daemon.events(&id, "step"), ["intensity 0.5 (step 1 of 2)"]);
    let mut alerted: Vec<String> = notices(&receiver, &id, "guard_alert")
        .iter()
        .map(|n| n["fields"]["guard"].as_str().unwrap().to_owned())
        .collect();
    alerted.sort();
    assert_eq!(alerted, ["fast_errors", "strict_errors"]);
    let body = metrics::scrape(&metrics_at);
    assert_eq!(
        metrics::value(&body, r#"chaos_rollbacks_total{reason="slo"}"#),
        Some(0.0)
    );
    let of_it = format!("experiment_id=\"{id}\"");
    for family in [
        "chaos_guard_value",
        "chaos_guard_threshold",
        "chaos_impact_score",
    ] {
        let left = metrics::matching(&body, family, &of_it);
        assert!(left.is_empty(), "{family} gone with it: {left:?}");
    }
    drop(daemon);

    // rollback.automatic: false: a breached critical SLO alerts (once), nothing rolls back.
    service
        .prometheus
        .wait_for(FAST_ERRORS, |v| v <= 0.001, Duration::from_secs(15));
    let dir = TempDir::new("guard-alert-manual");
    let config = service.config(&service.prometheus.url(), &fast_slos(""))
        + &hook(&receiver)
        + "  automatic: false\n";
    let daemon = Daemon::with_config(&dir.0, &config);
    let (id, status) = refuse_until_ended(
        &daemon,
        cgroup,
        "1",
        &["--duration", "4s", "--guard", "fast_errors"],
        Duration::from_secs(20),
    );
    assert_eq!(status["state"], "completed", "{status}");
    let alerts = daemon.events(&id, "guard_alert");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].starts_with("slo violation: fast_errors = ")
            && alerts[0].ends_with("(rollback.automatic is false)"),
        "{alerts:?}"
    );
    let alerted = notices(&receiver, &id, "guard_alert");
    assert_eq!(alerted.len(), 1, "{alerted:?}");
    assert_eq!(alerted[0]["reason"], alerts[0].as_str());
}
