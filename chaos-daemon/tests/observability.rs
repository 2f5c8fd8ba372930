//! The dashboards and alert rules in `deploy/` against the daemon that feeds them: every metric
//! a Grafana panel, annotation, template variable or alert rule names is in a real daemon's
//! `/metrics`, and every metric the daemon exports has a panel. The rule files pass `promtool
//! check rules` (the PrometheusRule's `spec` too, whose groups equal the plain file's), their
//! alerts fire on synthetic series (`promtool test rules`), and every dashboard panel has a
//! datasource and queries that parse as PromQL.

#[allow(dead_code, reason = "the notification tests use the rest")]
mod notify_support;
mod promql;
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use promql::{as_promql, metric_names, template_selector};
use serde_json::Value;
use support::*;

/// Debian's promtool (`apt-get install prometheus`).
const PROMTOOL: &str = "/usr/bin/promtool";
const DASHBOARDS: [&str; 2] = [
    "grafana/chaos-experiments.json",
    "grafana/chaos-metrics.json",
];
const RULES: &str = "prometheus/chaos-rules.yaml";
const PROMETHEUS_RULE: &str = "prometheus/prometheusrule.yaml";
const RULES_TEST: &str = "prometheus/chaos-rules.test.yaml";
/// What the issue asks the rules to alert on, by alert name.
const ALERTS: [&str; 9] = [
    "ChaosDaemonDown",
    "ChaosDaemonAbsent",
    "ChaosEmergencyStopLatched",
    "ChaosSLOViolation",
    "ChaosExperimentRolledBack",
    "ChaosGuardUnavailable",
    "ChaosBudgetAlert",
    "ChaosExperimentBudgetExhausted",
    "ChaosDailyBudgetExhausted",
];
/// Prometheus' own series, the only name not from the daemon.
const UP: &str = "up";

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn read(file: &str) -> String {
    let path = deploy(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(file: &str) -> Value {
    serde_norway::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn dashboard(file: &str) -> Value {
    serde_json::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Runs `promtool ARGS`; its stdout. Panics with its output when it fails.
fn promtool(args: &[&str]) -> String {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install it: apt-get install prometheus"
    );
    run(PROMTOOL, args)
}

/// Writes `groups` as a rules file in `dir` and runs `promtool check rules` on it.
fn check_rules(dir: &TempDir, name: &str, groups: &Value) {
    let path = dir.0.join(name);
    let text = serde_norway::to_string(&serde_json::json!({ "groups": groups })).unwrap();
    std::fs::write(&path, text).unwrap();
    promtool(&["check", "rules", path.to_str().unwrap()]);
}

/// Every rule of a rules file's `groups`.
fn rules(groups: &Value) -> Vec<&Value> {
    groups
        .as_array()
        .expect("groups is a list")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules is a list"))
        .collect()
}

/// Every PromQL expression of a dashboard: each `expr` (panel targets, annotations) and each
/// template query's selector.
fn dashboard_exprs(board: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&board["panels"], &mut out);
    walk(&board["annotations"], &mut out);
    for var in board["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            let query = var["query"]["query"]
                .as_str()
                .or(var["query"].as_str())
                .unwrap_or_else(|| panic!("a query variable without a query: {var}"));
            out.extend(template_selector(query));
        }
    }
    out
}

/// Every expression of the dashboards and the rules, by where it is.
fn every_expr() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for file in DASHBOARDS {
        for e in dashboard_exprs(&dashboard(file)) {
            all.push((file.to_owned(), e));
        }
    }
    for rule in rules(&yaml(RULES)["groups"]) {
        let e = rule["expr"].as_str().expect("a rule's expr").to_owned();
        all.push((RULES.to_owned(), e));
    }
    all
}

#[test]
fn the_rule_files_pass_promtool_and_their_alerts_fire_on_synthetic_series() {
    promtool(&["check", "rules", deploy(RULES).to_str().unwrap()]);
    let plain = yaml(RULES);
    let crd = yaml(PROMETHEUS_RULE);
    assert_eq!(crd["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(crd["kind"], "PrometheusRule");
    assert!(crd["metadata"]["name"].is_string(), "{crd}");
    assert_eq!(
        crd["spec"]["groups"], plain["groups"],
        "{PROMETHEUS_RULE}'s spec.groups and {RULES}'s groups differ: edit both together"
    );
    // The operator hands spec to Prometheus as a rules file: promtool must accept it too.
    let dir = TempDir::new("obs-rules");
    check_rules(&dir, "prometheusrule-spec.yaml", &crd["spec"]["groups"]);

    let alerts = rules(&plain["groups"]);
    let names: BTreeSet<&str> = alerts.iter().filter_map(|r| r["alert"].as_str()).collect();
    assert_eq!(names, ALERTS.into_iter().collect(), "the alerts");
    for alert in &alerts {
        let name = alert["alert"].as_str().unwrap_or_default();
        assert!(
            matches!(
                alert["labels"]["severity"].as_str(),
                Some("critical" | "warning" | "info")
            ),
            "{name}: severity"
        );
        for key in ["summary", "description"] {
            assert!(
                alert["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.trim().is_empty()),
                "{name}: annotation {key}"
            );
        }
        assert!(alert["for"].is_string(), "{name}: for");
    }

    // Every alert is exercised by the unit tests, which pass.
    let tests = yaml(RULES_TEST);
    let tested: BTreeSet<&str> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|t| !t["exp_alerts"].as_array().unwrap().is_empty())
        .filter_map(|t| t["alertname"].as_str())
        .collect();
    assert_eq!(tested, names, "alerts that {RULES_TEST} sees firing");
    let out = promtool(&["test", "rules", deploy(RULES_TEST).to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// A panel and the panels of a row, flattened.
fn panels(board: &Value) -> Vec<&Value> {
    board["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()))
        .collect()
}

#[test]
fn every_dashboard_panel_has_a_datasource_and_queries_that_parse() {
    let dir = TempDir::new("obs-dashboards");
    for file in DASHBOARDS {
        let board = dashboard(file);
        let stem = Path::new(file).file_stem().unwrap().to_str().unwrap();
        assert_eq!(board["uid"], stem, "{file}: uid");
        assert!(board["schemaVersion"].as_u64() >= Some(36), "{file}");
        assert!(board["title"].is_string(), "{file}");
        let vars = board["templating"]["list"].as_array().unwrap();
        let datasource = vars
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{file}: no datasource variable"));
        assert_eq!(
            (datasource["name"].as_str(), datasource["query"].as_str()),
            (Some("DS_PROMETHEUS"), Some("prometheus")),
            "{file}"
        );
        for name in ["job", "instance"] {
            assert!(vars.iter().any(|v| v["name"] == name), "{file}: ${name}");
        }

        let mut ids = BTreeSet::new();
        for panel in panels(&board) {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{file}: id of {title}"
            );
            let pos = &panel["gridPos"];
            assert!(
                pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24,
                "{file}: {title} is wider than the dashboard"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${DS_PROMETHEUS}",
                "{file}: {title}"
            );
            let targets = panel["targets"].as_array().map(Vec::as_slice);
            assert!(
                targets.is_some_and(|t| !t.is_empty()),
                "{file}: {title} has no targets"
            );
            for t in targets.unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${DS_PROMETHEUS}",
                    "{file}: {title}"
                );
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(
                    !metric_names(expr).is_empty(),
                    "{file}: {title}: {expr:?} selects no metric"
                );
            }
        }

        // Every expression parses as PromQL: promtool checks them as recording rules.
        let rules: Vec<Value> = dashboard_exprs(&board)
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let record = format!("dashboard:expr_{i}");
                serde_json::json!({ "record": record, "expr": as_promql(e) })
            })
            .collect();
        check_rules(
            &dir,
            &format!("{stem}.yaml"),
            &serde_json::json!([{ "name": stem, "rules": rules }]),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Against a real daemon

/// A scrape of the daemon's /metrics: each series' value, and each family's type.
struct Scrape {
    body: String,
    series: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn of(addr: &str) -> Self {
        let (code, body) =
            support::http::get(&format!("http://{addr}/metrics")).expect("GET /metrics");
        assert_eq!(code, 200, "{body}");
        let mut series = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in body.lines() {
            if let Some(decl) = line.strip_prefix("# TYPE ") {
                let (name, kind) = decl.split_once(' ').unwrap();
                types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (key, value) = line.rsplit_once(' ').unwrap();
                series.insert(key.to_owned(), value.parse().unwrap());
            }
        }
        Self {
            body,
            series,
            types,
        }
    }

    fn get(&self, series: &str) -> Option<f64> {
        self.series.get(series).copied()
    }

    fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no series {series} in\n{}", self.body))
    }

    /// The names of the samples (`x_bucket`, `x_sum`, `x_count` of a histogram `x`).
    fn sample_names(&self) -> BTreeSet<&str> {
        self.series
            .keys()
            .map(|k| k.split_once('{').map_or(k.as_str(), |(name, _)| name))
            .collect()
    }

    /// The family a sample name belongs to.
    fn family<'a>(&self, sample: &'a str) -> &'a str {
        ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| sample.strip_suffix(suffix))
            .find(|f| {
                self.types
                    .get(*f)
                    .is_some_and(|t| t == "histogram" || t == "summary")
            })
            .unwrap_or(sample)
    }

    /// The series of `family` whose labels contain `labels` (e.g. `guard="x"`).
    fn matching(&self, family: &str, labels: &str) -> Vec<(&str, f64)> {
        self.series
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(family)
                    .and_then(|rest| rest.strip_prefix('{'))
                    .is_some_and(|rest| rest.contains(labels))
            })
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn dashboards_and_rules_use_only_metrics_the_daemon_exports() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "obs");
    let dir = TempDir::new("obs");
    // The health endpoint (202 until told otherwise) and the webhook channel.
    let receiver = notify_support::Receiver::start();
    let config = format!(
        "budget:\n  max_experiment_cost: 1\n  max_daily_cost: 10\n  cost_per_request: 0.01\n  \
         alert_threshold: 0.5\nsafety_checks:\n  guard_interval_ms: 100\n  baseline: 0s\n  \
         slo_validation:\n    enabled: false\n  health_checks:\n    min_success_rate: 0.95\n    \
         min_availability: 0.5\n    window: 5s\n    endpoints:\n      - url: \
         '{0}/healthz'\n        interval: 100ms\n        timeout: 500ms\nrollback:\n  \
         notification_channels: [hook]\n  channels:\n    hook: {{type: webhook, url: \
         '{0}/notice'}}\n",
        receiver.base
    );
    let path = dir.0.join("chaos.yaml");
    std::fs::write(&path, config).unwrap();
    let mut daemon = Daemon::start_in(
        &dir.0,
        None,
        &[
            "--config",
            path.to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let addr = daemon.metrics_addr();

    // Before any experiment: the day's budget is whole, and the counters alerts use are at 0.
    eventually(
        "the day's budget on /metrics",
        Duration::from_secs(10),
        || {
            Scrape::of(&addr)
                .get("chaos_daily_budget_remaining")
                .filter(|v| near(*v, 10.0))
        },
    );
    let idle = Scrape::of(&addr);
    for series in [
        "chaos_budget_exhausted_total",
        r#"chaos_budget_alerts_total{budget="experiment"}"#,
        r#"chaos_rollbacks_total{reason="slo"}"#,
        r#"chaos_rollbacks_total{reason="unavailable"}"#,
        "chaos_emergency_stop_latched",
    ] {
        assert_eq!(idle.value(series), 0.0, "{series}");
    }

    // An experiment that spends its budget: 0.5 at 0.01 a fault is 50 faults.
    let server = TcpServer::start("127.0.0.1:0");
    let guarded = ["--intensity", "1", "--guard", "health_checks"];
    let spender = daemon.started(
        "dependency_failure",
        &cg.path,
        &[&guarded[..], &["--duration", "60", "--budget", "0.5"]].concat(),
    );
    let r = server.connect_from(&cg.path, 80);
    assert_eq!((r.get("ECONNREFUSED"), r.ok()), (50, 30), "{r:?}");
    let status = daemon.ended(&spender, Duration::from_secs(10));
    assert_eq!(status["reason"], "budget exhausted", "{status}");
    // One that runs, with its guard, spend and impact score live (on a port nobody uses).
    let running = daemon.started(
        "dependency_failure",
        &cg.path,
        &[
            &guarded[..],
            &["--duration", "600", "--budget", "0.5", "--ports", "9"],
        ]
        .concat(),
    );
    let id = format!("experiment_id=\"{running}\"");
    let scrape = eventually("every family on /metrics", Duration::from_secs(20), || {
        let s = Scrape::of(&addr);
        let live = [
            "chaos_impact_score",
            "chaos_budget_spent",
            "chaos_budget_remaining",
        ]
        .iter()
        .all(|f| !s.matching(f, &id).is_empty());
        let delivered = !s
            .matching("chaos_notifications_total", r#"outcome="delivered""#)
            .is_empty();
        let exhausted = s.get("chaos_budget_exhausted_total") == Some(1.0);
        (live && delivered && exhausted).then_some(s)
    });

    // What the budget alerts read.
    assert_eq!(
        scrape.value(r#"chaos_budget_alerts_total{budget="experiment"}"#),
        1.0,
        "0.5 of 0.5 crossed the 0.5 threshold once"
    );
    assert_eq!(
        scrape.value(r#"chaos_budget_alerts_total{budget="daily"}"#),
        0.0
    );
    let (spent, left) = (
        scrape.value("chaos_daily_budget_spent"),
        scrape.value("chaos_daily_budget_remaining"),
    );
    assert!(
        near(spent, 0.5) && near(left, 9.5),
        "{spent} spent, {left} left"
    );
    // Each evaluated guard: its threshold (per experiment) and its violations (0) are there.
    let guards: Vec<&str> = scrape
        .matching("chaos_guard_evaluations_total", "guard=")
        .into_iter()
        .map(|(k, _)| {
            k["chaos_guard_evaluations_total".len()..]
                .trim_start_matches('{')
                .trim_end_matches('}')
        })
        .collect();
    assert!(!guards.is_empty(), "{}", scrape.body);
    for guard in guards {
        for family in ["chaos_guard_threshold", "chaos_guard_violations_total"] {
            assert!(
                !scrape.matching(family, guard).is_empty(),
                "{family}{{{guard}}} in\n{}",
                scrape.body
            );
        }
    }

    // Every name a dashboard or rule uses is exported; every exported family has a panel.
    let exported = scrape.sample_names();
    let mut on_dashboards = BTreeSet::new();
    for (file, expr) in every_expr() {
        for name in metric_names(&expr) {
            if name == UP {
                continue;
            }
            assert!(
                exported.contains(name.as_str()),
                "{file}: {name} (in {expr:?}) is not on the daemon's /metrics:\n{}",
                scrape.body
            );
            if file.starts_with("grafana/") {
                on_dashboards.insert(scrape.family(&name).to_owned());
            }
        }
    }
    for family in scrape.types.keys() {
        assert!(
            on_dashboards.contains(family),
            "{family} is exported but no dashboard shows it"
        );
    }

    // A failing health endpoint rolls the running experiment back: the rollback alerts' inputs.
    receiver.answer("/healthz", 503);
    let status = daemon.ended(&running, Duration::from_secs(15));
    assert_eq!(status["state"], "rolled_back", "{status}");
    let after = eventually("the rollback on /metrics", Duration::from_secs(10), || {
        let s = Scrape::of(&addr);
        (s.get(r#"chaos_rollbacks_total{reason="health"}"#) == Some(1.0)).then_some(s)
    });
    assert_eq!(
        after.value("chaos_guard_decision_to_disarm_seconds_count"),
        1.0
    );
    let violations: f64 = after
        .matching("chaos_guard_violations_total", "guard=")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert!(violations >= 1.0, "{}", after.body);
    assert!(
        after.matching("chaos_impact_score", &id).is_empty(),
        "an ended experiment's series are gone"
    );
    daemon.none_listed(Duration::from_secs(10));
    assert_eq!(cg.attached(), 0);
    daemon.terminate();
}
