//! The chaos config: the repo's `chaos/chaos.yaml` and the seed's YAML blocks as written parse,
//! and broken variants fail with the exact path of the offending key.

mod common;

use std::time::Duration;

use chaos_api::config::{ChaosConfig, DEFAULT_PROTECTED_CGROUPS, ErrorType, ManualTrigger};
use chaos_api::error::ModelError;

/// The YAML blocks of the seed's "Implementation Details" and "Monitoring Integration"
/// sections, copied verbatim (comments included); [`seed`] joins them into one document.
const SEED_BLOCKS: [&str; 5] = [
    r#"
# Budget configuration
budget:
  max_experiment_cost: 100.00
  max_daily_cost: 500.00
  cost_per_request: 0.001
  alert_threshold: 0.8

# Experiment configuration
experiments:
  network_latency:
    enabled: true
    max_latency_ms: 2000
    cost_per_minute: 0.10
    impact_threshold: 0.3

  pod_deletion:
    enabled: true
    max_pods_deleted: 2
    cost_per_pod: 50.00
    impact_threshold: 0.2

  resource_exhaustion:
    enabled: true
    max_cpu_usage: 0.9
    max_memory_usage: 0.85
    impact_threshold: 0.7
"#,
    r#"
safety_checks:
  slo_validation:
    enabled: true
    critical_slos: ['api_response_time_p95', 'api_availability', 'error_rate']
    warning_slos: ['database_connection_time_p95']

  health_checks:
    enabled: true
    min_availability: 0.99
    min_success_rate: 0.95

  rollback_triggers:
    slo_violation: true
    error_rate_increase: 0.5
    availability_drop: 0.05
    health_degradation: 0.1
"#,
    r#"
rollback:
  automatic: true
  manual_trigger: 'emergency_stop'
  max_rollback_time: 300
  notification_channels: ['slack', 'email', 'pagerduty']

  strategies:
    pod_restart: true
    traffic_shift: true
    feature_flag_disable: true
    scale_down: true
"#,
    r#"
experiment_types:
  network_latency:
    description: 'Introduce controlled network latency'
    implementation: 'istio-proxy'
    parameters:
      latency_ms: [100, 500, 1000, 2000]
      jitter: 0.1
      packet_loss: [0.01, 0.05, 0.1]

  pod_deletion:
    description: 'Terminate specific pods during experiments'
    implementation: 'kubectl delete'
    parameters:
      pods: ['frontend-*', 'backend-*']
      max_pods: 3
      impact_score_threshold: 0.3

  api_error_injection:
    description: 'Simulate API failures'
    implementation: 'fault-injection'
    parameters:
      error_rate: [0.01, 0.05, 0.1]
      error_types: [500, 502, 503, timeout]
"#,
    r#"
monitoring:
  prometheus:
    enabled: true
    metrics_port: 9090
    alertmanager_port: 9093

  grafana:
    enabled: true
    dashboards: ['chaos-experiments', 'chaos-metrics']

  custom_metrics:
    enabled: true
    collection_interval: 30s
"#,
];

/// What the seed leaves undefined and a valid config must define: its four SLO names.
const SEED_SLOS: &str = "  slos:
    api_response_time_p95: {query: 'p95', objective: '<= 0.5'}
    api_availability: {query: 'availability', objective: '>= 0.99'}
    error_rate: {query: 'errors', objective: '<= 0.01'}
    database_connection_time_p95: {query: 'db', objective: '<= 0.1'}
";

/// What the seed leaves undefined and a valid config must define: its three notification
/// channels.
const SEED_CHANNELS: &str = "  channels:
    slack: {type: slack, webhook_url_env: CHAOS_SLACK_WEBHOOK_URL}
    email: {type: email, smtp_host: localhost, from: chaos@localhost, to: [root@localhost]}
    pagerduty: {type: pagerduty, routing_key_env: CHAOS_PAGERDUTY_ROUTING_KEY}
";

/// A seed block with [`SEED_SLOS`] added to its `safety_checks` and [`SEED_CHANNELS`] to its
/// `rollback`, if it has those sections.
fn defined(block: &str) -> String {
    block
        .replace("safety_checks:\n", &format!("safety_checks:\n{SEED_SLOS}"))
        .replace("\nrollback:\n", &format!("\nrollback:\n{SEED_CHANNELS}"))
}

/// The combined seed document, its SLOs defined.
fn seed() -> String {
    defined(&SEED_BLOCKS.join("\n"))
}

fn parse(text: &str) -> ChaosConfig {
    match ChaosConfig::from_yaml(text) {
        Ok(config) => config,
        Err(error) => panic!("config must parse: {error}"),
    }
}

/// The seed with `from` replaced by `to` (which must occur exactly once).
fn seed_with(from: &str, to: &str) -> String {
    let seed = seed();
    assert_eq!(seed.matches(from).count(), 1, "{from:?} must occur once");
    seed.replace(from, to)
}

/// Asserts that `text` is rejected at `path`, and that Display starts with the path.
fn assert_rejected_at(text: &str, path: &str) -> ModelError {
    common::rejected_at(ChaosConfig::from_yaml(text), path)
}

#[test]
fn seed_parses_with_its_values() {
    let config = parse(&seed());
    assert_eq!(config.budget.max_experiment_cost, 100.0);
    assert_eq!(config.budget.max_daily_cost, 500.0);
    assert_eq!(config.budget.cost_per_request, 0.001);
    assert_eq!(config.experiments.network_latency.max_latency_ms, 2000);
    assert_eq!(config.experiments.pod_deletion.max_pods_deleted, 2);
    assert_eq!(
        config.experiments.resource_exhaustion.max_memory_usage,
        0.85
    );
    assert_eq!(
        config.safety_checks.slo_validation.critical_slos,
        ["api_response_time_p95", "api_availability", "error_rate"]
    );
    assert_eq!(config.safety_checks.guard_interval_ms, 1000);
    assert_eq!(config.rollback.manual_trigger, ManualTrigger::EmergencyStop);
    assert_eq!(config.rollback.max_rollback_time, 300);
    assert!(config.rollback.strategies.scale_down);
    let api = &config.experiment_types.api_error_injection.parameters;
    assert_eq!(
        api.error_types,
        [
            ErrorType::Status(500),
            ErrorType::Status(502),
            ErrorType::Status(503),
            ErrorType::Timeout
        ]
    );
    assert_eq!(
        config
            .experiment_types
            .network_latency
            .parameters
            .latency_ms,
        [100, 500, 1000, 2000]
    );
    assert_eq!(
        config.experiment_types.pod_deletion.implementation,
        "kubectl delete"
    );
    assert_eq!(config.monitoring.prometheus.alertmanager_port, 9093);
    assert_eq!(
        config.monitoring.custom_metrics.collection_interval,
        Duration::from_secs(30)
    );
    // The seed is silent about the eBPF-only fault types: they take their defaults.
    assert!(config.experiments.packet_loss.enabled);
    assert_eq!(config.experiments.packet_loss.max_probability, 1.0);
    assert_eq!(config.experiments.dependency_failure.cost_per_fault, None);
}

#[test]
fn each_seed_block_parses_on_its_own() {
    for block in SEED_BLOCKS {
        parse(&defined(block));
    }
}

#[test]
fn seed_names_slos_it_does_not_define() {
    let error = assert_rejected_at(
        &SEED_BLOCKS.join("\n"),
        "safety_checks.slo_validation.critical_slos[0]",
    );
    assert_eq!(
        error.to_string(),
        "safety_checks.slo_validation.critical_slos[0]: \"api_response_time_p95\" is not \
         allowed; expected the name of an SLO defined under safety_checks.slos or in \
         safety_checks.slo_files (defined: none)"
    );
    // With some defined, the message lists them; a warning SLO is checked the same way.
    let text = defined(&SEED_BLOCKS.join("\n")).replace(
        "    database_connection_time_p95: {query: 'db', objective: '<= 0.1'}\n",
        "",
    );
    let error = assert_rejected_at(&text, "safety_checks.slo_validation.warning_slos[0]");
    assert_eq!(
        error.to_string(),
        "safety_checks.slo_validation.warning_slos[0]: \"database_connection_time_p95\" is \
         not allowed; expected the name of an SLO defined under safety_checks.slos or in \
         safety_checks.slo_files (defined: api_availability, api_response_time_p95, \
         error_rate)"
    );
}

#[test]
fn repo_config_is_the_seed_with_comments_and_definitions() {
    let repo = common::repo_config();
    // Inlined, its SLO file reads the same (only the file's name is gone).
    let mut inline = parse(&common::repo_config_inline());
    assert!(inline.safety_checks.slo_files.is_empty());
    inline.safety_checks.slo_files = repo.safety_checks.slo_files.clone();
    assert_eq!(inline, repo);
    // The repo defines every SLO the seed names, in its SLO file.
    let mut names: Vec<&String> = repo.safety_checks.slos.keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api_availability",
            "api_response_time_p95",
            "database_connection_time_p95",
            "error_rate"
        ]
    );
    let mut seed = parse(&seed());
    seed.safety_checks.slos = repo.safety_checks.slos.clone();
    seed.safety_checks.slo_files = repo.safety_checks.slo_files.clone();
    seed.rollback.channels = repo.rollback.channels.clone();
    assert_eq!(repo, seed);
}

#[test]
fn empty_mapping_gives_documented_defaults() {
    let config = parse("{}");
    assert_eq!(config, ChaosConfig::default());
    assert_eq!(parse(""), config, "an empty file is the defaults");
    assert_eq!(config.budget.alert_threshold, 0.8);
    assert!(config.rollback.notification_channels.is_empty());
    assert!(!config.rollback.strategies.pod_restart);
    assert_eq!(config.monitoring.prometheus.metrics_port, 9090);
    assert!(ChaosConfig::default().validate().is_ok());
}

#[test]
fn guard_interval_is_read_and_checked() {
    let text = seed_with(
        "safety_checks:\n",
        "safety_checks:\n  guard_interval_ms: 50\n",
    );
    assert_eq!(parse(&text).safety_checks.guard_interval_ms, 50);
    let text = seed_with(
        "safety_checks:\n",
        "safety_checks:\n  guard_interval_ms: 49\n",
    );
    assert_rejected_at(&text, "safety_checks.guard_interval_ms");
}

#[test]
fn optional_experiment_entries_are_read() {
    let text = seed_with(
        "  resource_exhaustion:\n",
        "  packet_loss:\n    max_probability: 0.2\n    cost_per_fault: 0.01\n\n  resource_exhaustion:\n",
    );
    let config = parse(&text);
    assert_eq!(config.experiments.packet_loss.max_probability, 0.2);
    assert_eq!(config.experiments.packet_loss.cost_per_fault, Some(0.01));
    assert_eq!(config.experiments.packet_loss.impact_threshold, 0.5);
}

#[test]
fn unknown_top_level_key() {
    let error = assert_rejected_at(&format!("{}\nchaos_monkey: true\n", seed()), "chaos_monkey");
    assert!(
        error.to_string().contains("unknown field `chaos_monkey`"),
        "{error}"
    );
}

#[test]
fn unknown_nested_key() {
    let text = seed_with("max_latency_ms: 2000", "max_latency: 2000");
    let error = assert_rejected_at(&text, "experiments.network_latency.max_latency");
    assert!(
        error
            .to_string()
            .starts_with("experiments.network_latency.max_latency: unknown field `max_latency`"),
        "{error}"
    );
}

#[test]
fn unknown_experiment_kind() {
    let text = seed_with(
        "  pod_deletion:\n    enabled",
        "  chaos_monkey:\n    enabled",
    );
    assert_rejected_at(&text, "experiments.chaos_monkey");
}

#[test]
fn wrong_type() {
    let text = seed_with("max_daily_cost: 500.00", "max_daily_cost: \"lots\"");
    assert_rejected_at(&text, "budget.max_daily_cost");
}

#[test]
fn alert_threshold_out_of_range() {
    let text = seed_with("alert_threshold: 0.8", "alert_threshold: 1.5");
    let error = assert_rejected_at(&text, "budget.alert_threshold");
    assert_eq!(
        error.to_string(),
        "budget.alert_threshold: 1.5 is not allowed; expected more than 0 and at most 1"
    );
    let text = seed_with("alert_threshold: 0.8", "alert_threshold: 0");
    assert_rejected_at(&text, "budget.alert_threshold");
}

#[test]
fn cpu_usage_out_of_range() {
    let text = seed_with("max_cpu_usage: 0.9", "max_cpu_usage: 1.2");
    assert_rejected_at(&text, "experiments.resource_exhaustion.max_cpu_usage");
}

#[test]
fn max_latency_out_of_range() {
    let text = seed_with("max_latency_ms: 2000", "max_latency_ms: 0");
    let error = assert_rejected_at(&text, "experiments.network_latency.max_latency_ms");
    assert_eq!(
        error.to_string(),
        "experiments.network_latency.max_latency_ms: 0 is not allowed; expected 1 to 60000"
    );
    let text = seed_with("max_latency_ms: 2000", "max_latency_ms: 999999");
    assert_rejected_at(&text, "experiments.network_latency.max_latency_ms");
}

#[test]
fn latency_step_above_max_latency() {
    let text = seed_with("max_latency_ms: 2000", "max_latency_ms: 1000");
    let error = assert_rejected_at(
        &text,
        "experiment_types.network_latency.parameters.latency_ms[3]",
    );
    assert!(error.to_string().contains("2000 is not allowed"), "{error}");
}

#[test]
fn experiment_cost_above_daily_cost() {
    let text = seed_with("max_experiment_cost: 100.00", "max_experiment_cost: 600");
    let error = assert_rejected_at(&text, "budget.max_experiment_cost");
    assert_eq!(
        error.to_string(),
        "budget.max_experiment_cost: 600 is not allowed; expected at most budget.max_daily_cost (500)"
    );
}

#[test]
fn negative_and_infinite_costs() {
    let text = seed_with("cost_per_pod: 50.00", "cost_per_pod: -1");
    assert_rejected_at(&text, "experiments.pod_deletion.cost_per_pod");
    let text = seed_with("cost_per_request: 0.001", "cost_per_request: .inf");
    assert_rejected_at(&text, "budget.cost_per_request");
    let text = seed_with("max_daily_cost: 500.00", "max_daily_cost: .nan");
    assert_rejected_at(&text, "budget.max_daily_cost");
}

#[test]
fn bad_duration() {
    let text = seed_with("collection_interval: 30s", "collection_interval: soon");
    let error = assert_rejected_at(&text, "monitoring.custom_metrics.collection_interval");
    assert!(error.to_string().contains("\"soon\""), "{error}");
    let text = seed_with("collection_interval: 30s", "collection_interval: 500ms");
    let error = assert_rejected_at(&text, "monitoring.custom_metrics.collection_interval");
    assert!(
        error.to_string().contains("500ms is not allowed"),
        "{error}"
    );
}

#[test]
fn bad_error_types() {
    let text = seed_with("[500, 502, 503, timeout]", "[500, 700, 503, timeout]");
    let error = assert_rejected_at(
        &text,
        "experiment_types.api_error_injection.parameters.error_types[1]",
    );
    assert!(error.to_string().contains("700 is not allowed"), "{error}");
    let text = seed_with("[500, 502, 503, timeout]", "[500, 502, 503, slow]");
    assert_rejected_at(
        &text,
        "experiment_types.api_error_injection.parameters.error_types[3]",
    );
}

#[test]
fn bad_ports() {
    let text = seed_with("metrics_port: 9090", "metrics_port: 0");
    assert_rejected_at(&text, "monitoring.prometheus.metrics_port");
    let text = seed_with("alertmanager_port: 9093", "alertmanager_port: 70000");
    let error = assert_rejected_at(&text, "monitoring.prometheus.alertmanager_port");
    assert!(
        error.to_string().contains("70000 is not allowed"),
        "{error}"
    );
}

#[test]
fn bad_ratio_list_entry() {
    let text = seed_with(
        "packet_loss: [0.01, 0.05, 0.1]",
        "packet_loss: [0.01, 5, 0.1]",
    );
    assert_rejected_at(
        &text,
        "experiment_types.network_latency.parameters.packet_loss[1]",
    );
    let text = seed_with("jitter: 0.1", "jitter: -0.1");
    assert_rejected_at(&text, "experiment_types.network_latency.parameters.jitter");
    let text = seed_with("error_rate_increase: 0.5", "error_rate_increase: 2");
    assert_rejected_at(&text, "safety_checks.rollback_triggers.error_rate_increase");
}

#[test]
fn bad_manual_trigger_and_rollback_time() {
    let text = seed_with(
        "manual_trigger: 'emergency_stop'",
        "manual_trigger: 'panic'",
    );
    let error = assert_rejected_at(&text, "rollback.manual_trigger");
    assert!(error.to_string().contains("emergency_stop"), "{error}");
    let text = seed_with("max_rollback_time: 300", "max_rollback_time: 0");
    assert_rejected_at(&text, "rollback.max_rollback_time");
}

#[test]
fn empty_channel_name() {
    let text = seed_with(
        "['slack', 'email', 'pagerduty']",
        "['slack', '', 'pagerduty']",
    );
    assert_rejected_at(&text, "rollback.notification_channels[1]");
}

#[test]
fn missing_nested_mapping_value() {
    let text = seed_with("  grafana:\n    enabled: true\n", "  grafana: true\n");
    assert_rejected_at(&text, "monitoring.grafana");
}

#[test]
fn not_a_document() {
    for text in [
        "budget: [",
        "- a\n- b",
        "just text",
        "a: 1\n---\nb: 2",
        "{",
        "\t",
    ] {
        let error = match ChaosConfig::from_yaml(text) {
            Ok(config) => panic!("{text:?} must fail, got {config:?}"),
            Err(error) => error,
        };
        assert!(
            matches!(error, ModelError::Document { .. }) || error.path().is_some(),
            "{error}"
        );
    }
    for text in ["{", "\t", "- a", "budget: {}\n---\nbudget: {}\n"] {
        assert!(
            matches!(
                ChaosConfig::from_yaml(text),
                Err(ModelError::Document { .. })
            ),
            "{text:?}"
        );
    }
    // A syntax error inside a section is reported at that section.
    assert_rejected_at("budget: {", "budget");
    assert_rejected_at("budget: *nowhere", "budget");
}

#[test]
fn protected_cgroups_default_and_custom() {
    let config = parse(&seed());
    assert_eq!(
        config.safety_checks.protected_cgroups, DEFAULT_PROTECTED_CGROUPS,
        "the seed is silent: the node's own services are protected"
    );
    for name in [
        "init.scope",
        "system.slice",
        "kubelet.service",
        "kubepods.slice",
        "kubepods",
    ] {
        assert!(DEFAULT_PROTECTED_CGROUPS.contains(&name), "{name}");
    }
    let text = seed_with(
        "safety_checks:\n",
        "safety_checks:\n  protected_cgroups: ['init.scope', 'payments-*', 'db?.service']\n",
    );
    assert_eq!(
        parse(&text).safety_checks.protected_cgroups,
        ["init.scope", "payments-*", "db?.service"]
    );
    // An empty list is allowed: the root and the daemon's own cgroup stay protected anyway.
    let text = seed_with(
        "safety_checks:\n",
        "safety_checks:\n  protected_cgroups: []\n",
    );
    assert!(parse(&text).safety_checks.protected_cgroups.is_empty());
}

#[test]
fn bad_protected_cgroups() {
    for (list, index) in [
        ("['init.scope', 'system.slice/foo.service']", 1),
        ("['/kubepods']", 0),
        ("['init.scope', '']", 1),
        ("['  ']", 0),
        ("['a', 'b', \"tab\\there\"]", 2),
    ] {
        let text = seed_with(
            "safety_checks:\n",
            &format!("safety_checks:\n  protected_cgroups: {list}\n"),
        );
        let error = assert_rejected_at(&text, &format!("safety_checks.protected_cgroups[{index}]"));
        assert!(error.to_string().contains("without '/'"), "{error}");
    }
    let text = seed_with(
        "safety_checks:\n",
        "safety_checks:\n  protected_cgroups: init.scope\n",
    );
    assert_rejected_at(&text, "safety_checks.protected_cgroups");
}

#[test]
fn pod_deletion_allowed_cgroups() {
    assert!(
        parse(&seed())
            .experiments
            .pod_deletion
            .allowed_cgroups
            .is_empty()
    );
    let allowed = |list: &str| {
        seed_with(
            "    max_pods_deleted: 2\n",
            &format!("    max_pods_deleted: 2\n    allowed_cgroups: {list}\n"),
        )
    };
    assert_eq!(
        parse(&allowed("['chaos-test-*', 'demo.service']"))
            .experiments
            .pod_deletion
            .allowed_cgroups,
        ["chaos-test-*", "demo.service"]
    );
    for (list, index) in [
        ("['chaos-test-*', 'system.slice/demo.service']", 1),
        ("['']", 0),
        ("['a', ' ']", 1),
    ] {
        let error = assert_rejected_at(
            &allowed(list),
            &format!("experiments.pod_deletion.allowed_cgroups[{index}]"),
        );
        assert!(error.to_string().contains("without '/'"), "{error}");
    }
}

#[test]
fn syscall_error_limits_are_read() {
    assert_eq!(
        parse(&seed()).experiments.syscall_error,
        chaos_api::config::FaultLimits::default()
    );
    let limits = |body: &str| {
        seed_with(
            "  resource_exhaustion:\n",
            &format!("  syscall_error:\n{body}\n  resource_exhaustion:\n"),
        )
    };
    let config = parse(&limits(
        "    enabled: false\n    max_probability: 0.2\n    cost_per_fault: 0.01\n    impact_threshold: 0.4\n",
    ));
    let syscall = &config.experiments.syscall_error;
    assert!(!syscall.enabled);
    assert_eq!(syscall.max_probability, 0.2);
    assert_eq!(syscall.cost_per_fault, Some(0.01));
    assert_eq!(syscall.impact_threshold, 0.4);
    assert_rejected_at(
        &limits("    max_probability: 1.5\n"),
        "experiments.syscall_error.max_probability",
    );
    assert_rejected_at(
        &limits("    cost_per_fault: -1\n"),
        "experiments.syscall_error.cost_per_fault",
    );
    assert_rejected_at(
        &limits("    impact_threshold: 2\n"),
        "experiments.syscall_error.impact_threshold",
    );
    assert_rejected_at(
        &limits("    max_latency_ms: 10\n"),
        "experiments.syscall_error.max_latency_ms",
    );
}

#[test]
fn bandwidth_limit_limits_are_read() {
    use chaos_api::config::BandwidthLimitLimits;
    use chaos_api::experiment::Rate;

    let default = BandwidthLimitLimits::default();
    assert_eq!(parse(&seed()).experiments.bandwidth_limit, default);
    assert!(default.enabled);
    assert_eq!(default.min_rate, Rate::from_bps(100_000));
    assert_eq!(
        default.cost_per_fault, None,
        "unset = budget.cost_per_request"
    );
    assert_eq!(default.impact_threshold, 0.5);
    let limits = |body: &str| {
        seed_with(
            "  resource_exhaustion:\n",
            &format!("  bandwidth_limit:\n{body}\n  resource_exhaustion:\n"),
        )
    };
    let config = parse(&limits(
        "    enabled: false\n    min_rate: 1.5mbit\n    cost_per_fault: 0.0001\n    impact_threshold: 0.4\n",
    ));
    let bandwidth = &config.experiments.bandwidth_limit;
    assert!(!bandwidth.enabled);
    assert_eq!(bandwidth.min_rate, Rate::from_bps(1_500_000));
    assert_eq!(bandwidth.cost_per_fault, Some(0.0001));
    assert_eq!(bandwidth.impact_threshold, 0.4);
    // The rate is written as in an experiment (bytes per second too).
    assert_eq!(
        parse(&limits("    min_rate: 1kbps\n"))
            .experiments
            .bandwidth_limit
            .min_rate,
        Rate::from_bps(8_000)
    );
    // Not a rate: Rate::parse's message at the key.
    for text in ["fast", "100", "''", "100 kb"] {
        let error = assert_rejected_at(
            &limits(&format!("    min_rate: {text}\n")),
            "experiments.bandwidth_limit.min_rate",
        );
        assert!(
            error
                .to_string()
                .contains("expected a rate: a number and a unit, bit, kbit"),
            "{text}: {error}"
        );
    }
    // A rate outside what an experiment may ask for.
    for (text, shown) in [("7999bit", "7999bit"), ("101gbit", "101gbit")] {
        let error = assert_rejected_at(
            &limits(&format!("    min_rate: {text}\n")),
            "experiments.bandwidth_limit.min_rate",
        );
        assert_eq!(
            error.to_string(),
            format!(
                "experiments.bandwidth_limit.min_rate: {shown} is not allowed; expected 8kbit to \
                 100gbit"
            )
        );
    }
    assert_rejected_at(
        &limits("    cost_per_fault: -1\n"),
        "experiments.bandwidth_limit.cost_per_fault",
    );
    assert_rejected_at(
        &limits("    impact_threshold: 2\n"),
        "experiments.bandwidth_limit.impact_threshold",
    );
    // The per-fault types' key is not bandwidth_limit's.
    assert_rejected_at(
        &limits("    max_probability: 0.5\n"),
        "experiments.bandwidth_limit.max_probability",
    );
}

#[test]
fn chaos_yaml_documents_the_bandwidth_limit_defaults() {
    // The commented-out section of chaos/chaos.yaml, uncommented, reads as the defaults (with
    // the example cost_per_fault, which is unset by default).
    let config = common::repo_config_inline();
    let lines: Vec<&str> = config
        .lines()
        .skip_while(|line| *line != "  # bandwidth_limit:")
        .take_while(|line| line.starts_with("  # "))
        .collect();
    assert_eq!(
        lines.len(),
        7,
        "chaos.yaml documents experiments.bandwidth_limit"
    );
    let section: String = lines
        .iter()
        .map(|line| format!("  {}\n", &line["  # ".len()..]))
        .collect();
    let read = parse(&format!("experiments:\n{section}"));
    assert_eq!(
        read.experiments.bandwidth_limit,
        chaos_api::config::BandwidthLimitLimits {
            cost_per_fault: Some(0.001),
            ..Default::default()
        },
        "{section}"
    );
}

#[test]
fn state_retention_is_read_and_checked() {
    assert_eq!(parse("{}").state.retention_days, 30);
    let config = parse("state:\n  retention_days: 7\n");
    assert_eq!(config.state.retention_days, 7);
    assert_eq!(
        config.state.retention(),
        Duration::from_secs(7 * 24 * 60 * 60)
    );
    for (days, shown) in [("0", "0"), ("3651", "3651")] {
        let error = assert_rejected_at(
            &format!("state:\n  retention_days: {days}\n"),
            "state.retention_days",
        );
        assert_eq!(
            error.to_string(),
            format!("state.retention_days: {shown} is not allowed; expected 1 to 3650")
        );
    }
    assert_rejected_at("state:\n  retention: 7\n", "state.retention");
}

#[test]
fn chaos_yaml_documents_the_state_defaults() {
    // The commented-out `state` section of chaos/chaos.yaml, uncommented, reads as the
    // defaults.
    let config = common::repo_config_inline();
    let lines: Vec<&str> = config
        .lines()
        .skip_while(|line| *line != "# state:")
        .take_while(|line| line.starts_with("# "))
        .collect();
    assert!(!lines.is_empty(), "chaos.yaml documents the state section");
    let section: String = lines
        .iter()
        .map(|line| format!("{}\n", &line["# ".len()..]))
        .collect();
    assert_eq!(
        parse(&section).state,
        chaos_api::config::StateStore::default(),
        "{section}"
    );
}

#[test]
fn database_load_limits_are_read_and_checked() {
    use chaos_api::config::DatabaseLoadLimits;

    let default = DatabaseLoadLimits::default();
    assert_eq!(
        default,
        DatabaseLoadLimits {
            enabled: true,
            max_queries_per_second: 500,
            max_connections: 50,
            cost_per_query: 0.001,
            impact_threshold: 0.2,
        }
    );
    assert_eq!(parse(&seed()).experiments.database_load, default);
    // chaos/chaos.yaml writes the defaults out.
    assert_eq!(common::repo_config().experiments.database_load, default);
    let limits = |body: &str| {
        seed_with(
            "  resource_exhaustion:\n",
            &format!("  database_load:\n{body}\n  resource_exhaustion:\n"),
        )
    };
    let config = parse(&limits(
        "    enabled: false\n    max_queries_per_second: 100000\n    max_connections: 1\n    \
         cost_per_query: 0\n    impact_threshold: 1\n",
    ));
    assert_eq!(
        config.experiments.database_load,
        DatabaseLoadLimits {
            enabled: false,
            max_queries_per_second: 100_000,
            max_connections: 1,
            cost_per_query: 0.0,
            impact_threshold: 1.0,
        }
    );
    for (body, path, shown) in [
        (
            "    max_queries_per_second: 0\n",
            "experiments.database_load.max_queries_per_second",
            "experiments.database_load.max_queries_per_second: 0 is not allowed; expected 1 to \
             100000",
        ),
        (
            "    max_queries_per_second: 100001\n",
            "experiments.database_load.max_queries_per_second",
            "experiments.database_load.max_queries_per_second: 100001 is not allowed; expected 1 \
             to 100000",
        ),
        (
            "    max_connections: 1001\n",
            "experiments.database_load.max_connections",
            "experiments.database_load.max_connections: 1001 is not allowed; expected 1 to 1000",
        ),
        (
            "    cost_per_query: -0.5\n",
            "experiments.database_load.cost_per_query",
            "experiments.database_load.cost_per_query: -0.5 is not allowed; expected a finite \
             number of at least 0",
        ),
        (
            "    impact_threshold: 1.5\n",
            "experiments.database_load.impact_threshold",
            "experiments.database_load.impact_threshold: 1.5 is not allowed; expected 0 to 1",
        ),
    ] {
        let error = assert_rejected_at(&limits(body), path);
        assert_eq!(error.to_string(), shown);
    }
    assert_rejected_at(
        &limits("    max_connections: -1\n"),
        "experiments.database_load.max_connections",
    );
    // The per-fault types' keys are not database_load's.
    assert_rejected_at(
        &limits("    cost_per_fault: 0.1\n"),
        "experiments.database_load.cost_per_fault",
    );
}
