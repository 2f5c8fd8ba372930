//! The guards end to end, as root on the host kernel: a real daemon driven by chaos-ctl, a real
//! Prometheus (Debian's) scraping a real HTTP server in the target cgroup, and faults on that
//! server's dependency. A critical SLO rolls back, a failing health endpoint rolls back and a
//! healthy one does not, the error-rate trigger fires above its limit and not below, an
//! unreachable Prometheus refuses the start and a killed one rolls back, and pre-flight
//! refuses outside the time window and under the latch, listing every check in a dry run.

#[allow(dead_code, reason = "the notification tests use the rest")]
mod notify_support;
mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use support::{
    http::{Dependency, HttpWorkload, Load},
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

/// The messages of `id`'s timeline events of `kind`.
fn events(daemon: &Daemon, id: &str, kind: &str) -> Vec<String> {
    let report = daemon.json(&["report", id, "--format", "json"]);
    report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
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
    let rollback = events(daemon, id, "rollback");
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
    assert_eq!(
        full["verdict"]["violation"]["guard"], "error_rate",
        "{full}"
    );
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
fn the_error_rate_trigger_fires_above_its_limit_and_not_below() {
    let Some(mount) = kernel() else { return };
    let service = Service::start(&mount, "guard-trigger", &[]);
    let safety = "  slo_validation:\n    critical_slos: []\n    warning_slos: []\n  \
                  rollback_triggers:\n    error_rate_increase: 0.4\n    availability_drop: 1\n";
    let (_dir, daemon) = service.daemon("guard-trigger", safety);
    // 15% of connects refused: the error rate climbs to about 0.15 over the 10 s rate window,
    // below the 0.4 limit, for the whole run.
    let (id, status) = refuse_until_ended(
        &daemon,
        &service.cgroup.path,
        "0.15",
        &["--duration", "12s", "--guard", "rollback_triggers"],
        Duration::from_secs(30),
    );
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(
        events(&daemon, &id, "baseline").len(),
        1,
        "the baseline is on the timeline"
    );
    // Every connect refused: it passes 0.4 within seconds.
    let (_, status) = refuse_until_ended(
        &daemon,
        &service.cgroup.path,
        "1",
        &["--duration", "60s", "--guard", "rollback_triggers"],
        Duration::from_secs(20),
    );
    rolled_back(&status, "rollback trigger error_rate_increase: moved ");
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
    let dry = daemon.experiment(
        "dependency_failure",
        &service.cgroup.path,
        &["--intensity", "0.1", "--dry-run"],
    );
    let dry = json(&String::from_utf8_lossy(&dry.stdout));
    let names: Vec<&str> = dry["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config valid",
            "target exists and is not protected",
            "kernel supports the fault",
            "budget available",
            "critical SLOs healthy",
            "health endpoints healthy",
            "inside the time window",
            "no emergency-stop latch",
            "notification channels and strategies resolvable",
        ]
    );
    let failed_checks: Vec<&str> = dry["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed_checks, ["inside the time window"], "{dry}");
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

    // Inside the window (no window), under the latch: refused.
    let safety = ERROR_RATE_ONLY;
    let (_dir, daemon) = service.daemon("guard-pre2", safety);
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
        events(&daemon, &id, "step"),
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
fn a_rollback_is_announced_and_a_channel_that_is_down_does_not_delay_it() {
    let Some(mount) = kernel() else { return };
    let service = Service::start(&mount, "guard-notify", &[]);
    let receiver = notify_support::Receiver::start();
    let down = notify_support::Hanging::start();
    let dir = TempDir::new("guard-notify");
    let safety = ERROR_RATE_ONLY;
    let rollback = format!(
        "rollback:\n  notification_channels: [hook, down]\n  channels:\n    hook: {{type: \
         webhook, url: '{0}/notice'}}\n    down: {{type: webhook, url: \
         'http://127.0.0.1:{1}/'}}\n  strategies:\n    traffic_shift: true\n  actions:\n    \
         traffic_shift: {{url: '{0}/shift'}}\n",
        receiver.base, down.port
    );
    let config = service.config(&service.prometheus.url(), safety) + &rollback;
    let daemon = Daemon::with_config(&dir.0, &config);
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
    assert!(
        notify_support::wait_until(Duration::from_secs(10), || !receiver
            .requests("/shift")
            .is_empty()),
        "the traffic_shift action was called"
    );
    assert!(down.accepted() > 0, "the down channel was tried");
    assert!(
        !events(&daemon, &id, "strategy").is_empty(),
        "the strategy's outcome is on the timeline"
    );
}
