//! [`ChaosConfig::admit`]: every limit of the config refuses what exceeds it, naming the
//! experiment's field and the config key; the defaults the config decides are filled in; the
//! budget becomes the kernel's fault cap.

mod common;

use common::{examples, parse};

use std::time::Duration;

use chaos_api::config::{Admission, ChaosConfig, Price, Refusal};
use chaos_api::experiment::{Experiment, ExperimentType, Fault, ResourceExhaustion};

/// A config from YAML that must be valid.
fn chaos_config(text: &str) -> ChaosConfig {
    match ChaosConfig::from_yaml(text) {
        Ok(config) => config,
        Err(error) => panic!("config must parse: {error}\n{text}"),
    }
}

/// A minimal experiment of `kind` (pid 42, 10 minutes) with `extra` lines appended.
fn experiment(kind: ExperimentType, extra: &str) -> Experiment {
    let fault = match kind {
        ExperimentType::NetworkLatency if !extra.contains("fault:") => "fault: {latency: 50ms}\n",
        ExperimentType::BandwidthLimit if !extra.contains("fault:") => "fault: {rate: 1mbit}\n",
        ExperimentType::DatabaseLoad if !extra.contains("fault:") => DATABASE_LOAD,
        _ => "",
    };
    let intensity = match kind {
        ExperimentType::ResourceExhaustion
        | ExperimentType::BandwidthLimit
        | ExperimentType::DatabaseLoad => "",
        _ if extra.contains("intensity:") => "",
        _ => "intensity: 0.25\n",
    };
    parse(&format!(
        "name: admit\ntype: {kind}\ntarget: {{pid: 42}}\nduration: 10m\n{intensity}{fault}{extra}"
    ))
}

fn admitted(config: &ChaosConfig, experiment: &Experiment) -> Admission {
    match config.admit(experiment) {
        Ok(admission) => admission,
        Err(refusal) => panic!("must be admitted: {refusal}\n{experiment:?}"),
    }
}

/// Asserts a [`Refusal::Limit`] at `path` whose message names every one of `names`.
fn refused_at(config: &ChaosConfig, experiment: &Experiment, path: &str, names: &[&str]) -> String {
    let refusal = match config.admit(experiment) {
        Ok(admission) => panic!("expected a refusal at {path}, got {admission:?}"),
        Err(refusal) => refusal,
    };
    let Refusal::Limit(error) = &refusal else {
        panic!("expected a limit at {path}, got {refusal:?}");
    };
    assert_eq!(error.path(), Some(path), "{refusal}");
    let shown = refusal.to_string();
    assert!(shown.starts_with(&format!("{path}: ")), "{shown}");
    for name in names {
        assert!(shown.contains(name), "{name:?} missing in: {shown}");
    }
    shown
}

/// Asserts a [`Refusal::BudgetTooSmall`] whose message names every one of `names`.
fn too_small(config: &ChaosConfig, experiment: &Experiment, names: &[&str]) -> String {
    let refusal = match config.admit(experiment) {
        Ok(admission) => panic!("expected BudgetTooSmall, got {admission:?}"),
        Err(refusal) => refusal,
    };
    assert!(
        matches!(refusal, Refusal::BudgetTooSmall { .. }),
        "{refusal:?}"
    );
    let shown = refusal.to_string();
    assert!(shown.starts_with("budget: "), "{shown}");
    for name in names {
        assert!(shown.contains(name), "{name:?} missing in: {shown}");
    }
    shown
}

/// A database load's fault at 100 queries per second on 8 connections.
const DATABASE_LOAD: &str =
    "fault: {engine: postgres, address: 'db:5432', user: app, profile: point_reads, rate: 100}\n";

const ALL_TYPES: [ExperimentType; 11] = [
    ExperimentType::NetworkLatency,
    ExperimentType::BandwidthLimit,
    ExperimentType::PodDeletion,
    ExperimentType::ResourceExhaustion,
    ExperimentType::PacketLoss,
    ExperimentType::PacketDuplication,
    ExperimentType::PacketCorruption,
    ExperimentType::DependencyFailure,
    ExperimentType::ApiErrorInjection,
    ExperimentType::SyscallError,
    ExperimentType::DatabaseLoad,
];

/// The types limited by `experiments.<type>.max_probability`.
const PER_FAULT_TYPES: [ExperimentType; 6] = [
    ExperimentType::PacketLoss,
    ExperimentType::PacketDuplication,
    ExperimentType::PacketCorruption,
    ExperimentType::DependencyFailure,
    ExperimentType::ApiErrorInjection,
    ExperimentType::SyscallError,
];

#[test]
fn default_config_admits_every_example() {
    let config = ChaosConfig::default();
    for (name, text) in examples() {
        let experiment = parse(&text);
        let admission = match config.admit(&experiment) {
            Ok(admission) => admission,
            Err(refusal) => panic!("{name}: {refusal}"),
        };
        assert_eq!(
            admission.budget,
            experiment.budget.expect("every example sets a budget"),
            "{name}"
        );
        assert!(admission.max_faults >= 1, "{name}");
        // Nothing to fill in: the examples give every setting the config could decide.
        assert_eq!(admission.experiment, experiment, "{name}");
    }
}

#[test]
fn example_admissions() {
    let config = ChaosConfig::default();
    let example = |file: &str| {
        let text = examples()
            .into_iter()
            .find(|(name, _)| name == file)
            .unwrap_or_else(|| panic!("{file} exists"))
            .1;
        admitted(&config, &parse(&text))
    };
    // 20.0 at budget.cost_per_request 0.001 buys 20000 drops; max_faults 50000 is more.
    let loss = example("packet-loss.yaml");
    assert_eq!(loss.price, Price::PerFault(0.001));
    assert_eq!(loss.max_faults, 20_000);
    // max_faults 1000 is less than the 50000 that 50.0 buys.
    assert_eq!(example("dependency-failure.yaml").max_faults, 1000);
    // 100.0 at 50.0 a pod buys 2; max_faults 2; max_pods_deleted 2.
    let kill = example("pod-deletion.yaml");
    assert_eq!(kill.price, Price::PerPod(50.0));
    assert_eq!(kill.max_faults, 2);
    // Priced per minute: 10 minutes at 0.10 is 1.0 of the budget 5.0; no fault cap.
    let latency = example("network-latency.yaml");
    assert_eq!(latency.price, Price::PerMinute(0.10));
    assert_eq!(latency.max_faults, u64::MAX);
    // Per delayed or dropped packet: 50.0 at 0.001 buys 50000; max_faults 50000.
    let bandwidth = example("bandwidth-limit.yaml");
    assert_eq!(bandwidth.price, Price::PerFault(0.001));
    assert_eq!(bandwidth.max_faults, 50_000);
}

#[test]
fn bandwidth_min_rate() {
    let limited = |rate: &str| {
        experiment(
            ExperimentType::BandwidthLimit,
            &format!("fault: {{rate: {rate}}}\n"),
        )
    };
    // The default: 100kbit.
    let config = ChaosConfig::default();
    let shown = refused_at(&config, &limited("99kbit"), "fault.rate", &["99kbit"]);
    assert_eq!(
        shown,
        "fault.rate: 99kbit is not allowed; expected at least 100kbit \
         (experiments.bandwidth_limit.min_rate)"
    );
    refused_at(
        &config,
        &limited("8kbit"),
        "fault.rate",
        &["8kbit", "at least 100kbit"],
    );
    admitted(&config, &limited("100kbit"));
    admitted(&config, &limited("12.5kbps"));
    admitted(&config, &limited("100gbit"));
    // A lower floor admits down to it; a higher one refuses more, in the config's notation.
    let low = chaos_config("experiments:\n  bandwidth_limit:\n    min_rate: 8kbit\n");
    admitted(&low, &limited("8kbit"));
    let high = chaos_config("experiments:\n  bandwidth_limit: {min_rate: 1.5mbps}\n");
    refused_at(
        &high,
        &limited("10mbit"),
        "fault.rate",
        &[
            "10mbit",
            "at least 12mbit (experiments.bandwidth_limit.min_rate)",
        ],
    );
    admitted(&high, &limited("12mbit"));
    // min_rate belongs to bandwidth_limit only.
    admitted(&high, &experiment(ExperimentType::PacketLoss, ""));
}

#[test]
fn bandwidth_is_priced_per_fault() {
    let limited = |extra: &str| experiment(ExperimentType::BandwidthLimit, extra);
    // Unset cost_per_fault: budget.cost_per_request; 1.0 at 0.001 buys 1000.
    let admission = admitted(&ChaosConfig::default(), &limited("budget: 1.0\n"));
    assert_eq!(admission.price, Price::PerFault(0.001));
    assert_eq!(admission.max_faults, 1000);
    assert_eq!(
        admission.price.spent(10, Duration::from_secs(600), 1.0),
        0.01,
        "per fault, not per minute"
    );
    let fallback = chaos_config("budget:\n  cost_per_request: 0.01\n");
    assert_eq!(
        admitted(&fallback, &limited("budget: 1.0\n")).max_faults,
        100
    );
    // cost_per_fault prices it, and only it.
    let config = chaos_config(
        "budget:\n  cost_per_request: 0.01\nexperiments:\n  bandwidth_limit:\n    \
         cost_per_fault: 0.25\n",
    );
    let admission = admitted(&config, &limited("budget: 1.0\nmax_faults: 3\n"));
    assert_eq!(admission.price, Price::PerFault(0.25));
    assert_eq!(admission.max_faults, 3);
    assert_eq!(admitted(&config, &limited("budget: 1.0\n")).max_faults, 4);
    assert_eq!(
        admitted(
            &config,
            &experiment(ExperimentType::PacketLoss, "budget: 1.0\n")
        )
        .price,
        Price::PerFault(0.01)
    );
    too_small(
        &config,
        &limited("budget: 0.2\n"),
        &[
            "0.2",
            "one fault at 0.25",
            "experiments.bandwidth_limit.cost_per_fault, else budget.cost_per_request",
        ],
    );
    // Free faults: no cap from the budget.
    let free = chaos_config("experiments:\n  bandwidth_limit: {cost_per_fault: 0}\n");
    assert_eq!(admitted(&free, &limited("")).max_faults, u64::MAX);
    // Its own impact threshold.
    assert_eq!(
        ChaosConfig::default().impact_threshold(ExperimentType::BandwidthLimit),
        (0.5, "experiments.bandwidth_limit.impact_threshold")
    );
    let strict = chaos_config("experiments:\n  bandwidth_limit: {impact_threshold: 0.1}\n");
    assert_eq!(
        strict.impact_threshold(ExperimentType::BandwidthLimit),
        (0.1, "experiments.bandwidth_limit.impact_threshold")
    );
}

#[test]
fn repo_config_admits_the_examples_given_a_pod_name() {
    // chaos/chaos.yaml limits pod deletions to pods named frontend-* or backend-*: the pod
    // deletion example needs the pod's name (chaos-ctl fills it in when it resolves the pod).
    let config = common::repo_config();
    for (name, text) in examples() {
        let mut experiment = parse(&text);
        if experiment.kind() == ExperimentType::PodDeletion {
            // The example names its pod; without the name the config refuses it.
            let named = experiment.targets[0].pod_name.take();
            assert_eq!(named.as_deref(), Some("shop/frontend-7d9f8-abcde"));
            refused_at(
                &config,
                &experiment,
                "target.pod_name",
                &["experiment_types.pod_deletion.parameters.pods"],
            );
            experiment.targets[0].pod_name = named;
        }
        if let Err(refusal) = config.admit(&experiment) {
            panic!("{name}: {refusal}");
        }
    }
}

#[test]
fn disabled_types_are_refused() {
    for kind in ALL_TYPES {
        let key = format!("experiments.{kind}.enabled");
        let config = chaos_config(&format!("experiments:\n  {kind}:\n    enabled: false\n"));
        let shown = refused_at(&config, &experiment(kind, ""), "type", &[&key]);
        assert!(
            shown.starts_with(&format!("type: {kind} is not allowed")),
            "{shown}"
        );
        // Only that type.
        for other in ALL_TYPES.into_iter().filter(|other| *other != kind) {
            admitted(&config, &experiment(other, ""));
        }
    }
}

#[test]
fn intensity_above_max_probability() {
    for kind in PER_FAULT_TYPES {
        let key = format!("experiments.{kind}.max_probability");
        let config = chaos_config(&format!(
            "experiments:\n  {kind}:\n    max_probability: 0.2\n"
        ));
        refused_at(
            &config,
            &experiment(kind, "intensity: 0.25\n"),
            "intensity",
            &["0.25", "at most 0.2", &key],
        );
        admitted(&config, &experiment(kind, "intensity: 0.2\n"));
        admitted(&config, &experiment(kind, "intensity: 0\n"));
    }
    // max_probability 0 forbids injecting at all, but not the type's other experiments.
    let config = chaos_config("experiments:\n  packet_loss:\n    max_probability: 0\n");
    refused_at(
        &config,
        &experiment(ExperimentType::PacketLoss, "intensity: 0.01\n"),
        "intensity",
        &["experiments.packet_loss.max_probability"],
    );
    admitted(
        &config,
        &experiment(ExperimentType::DependencyFailure, "intensity: 1\n"),
    );
}

#[test]
fn latency_worst_case() {
    // The preset ramp steps must fit under the new maximum too.
    let config = chaos_config(
        "experiments:\n  network_latency:\n    max_latency_ms: 100\n\
         experiment_types:\n  network_latency:\n    parameters:\n      latency_ms: [50, 100]\n",
    );
    let latency =
        |fault: &str| experiment(ExperimentType::NetworkLatency, &format!("fault: {fault}\n"));
    // normal: the sample reaches 6 standard deviations, 60 + 6 x 10 = 120 ms.
    refused_at(
        &config,
        &latency("{latency: 60ms, jitter: 10ms, distribution: normal}"),
        "fault.latency",
        &[
            "120 ms",
            "normal",
            "at most 100 ms",
            "experiments.network_latency.max_latency_ms",
        ],
    );
    admitted(
        &config,
        &latency("{latency: 40ms, jitter: 10ms, distribution: normal}"),
    );
    // uniform: latency + jitter, 60 + 10 = 70 ms.
    admitted(
        &config,
        &latency("{latency: 60ms, jitter: 10ms, distribution: uniform}"),
    );
    admitted(&config, &latency("{latency: 90ms, jitter: 10ms}"));
    refused_at(
        &config,
        &latency("{latency: 90ms, jitter: 11ms}"),
        "fault.latency",
        &["101 ms", "experiments.network_latency.max_latency_ms"],
    );
    refused_at(
        &config,
        &latency("{latency: 101ms}"),
        "fault.latency",
        &["experiments.network_latency.max_latency_ms"],
    );
    admitted(&config, &latency("{latency: 100ms}"));
}

/// A resource_exhaustion with the fault `fault` (YAML flow mapping).
fn squeeze(fault: &str) -> Experiment {
    experiment(
        ExperimentType::ResourceExhaustion,
        &format!("fault: {fault}\n"),
    )
}

#[test]
fn cpu_share_against_max_cpu_usage() {
    let config = chaos_config("experiments:\n  resource_exhaustion:\n    max_cpu_usage: 0.9\n");
    // A share of 0.001 takes away 99.9%: more than 90%.
    refused_at(
        &config,
        &squeeze("{cpu_share: 0.001}"),
        "fault.cpu_share",
        &[
            "0.001",
            "at least 0.1",
            "experiments.resource_exhaustion.max_cpu_usage",
        ],
    );
    admitted(&config, &squeeze("{cpu_share: 0.1}"));
    admitted(&config, &squeeze("{cpu_share: 1}"));
}

#[test]
fn memory_share_against_max_memory_usage() {
    let config = chaos_config("experiments:\n  resource_exhaustion:\n    max_memory_usage: 0.85\n");
    refused_at(
        &config,
        &squeeze("{memory_share: 0.1}"),
        "fault.memory_share",
        &[
            "0.1",
            "at least 0.15",
            "experiments.resource_exhaustion.max_memory_usage",
        ],
    );
    admitted(&config, &squeeze("{memory_share: 0.15}"));
    admitted(&config, &squeeze("{cpu_share: 0.5, memory_share: 0.5}"));
    // Each share is checked against its own limit.
    refused_at(
        &config,
        &squeeze("{cpu_share: 0.5, memory_share: 0.01}"),
        "fault.memory_share",
        &["experiments.resource_exhaustion.max_memory_usage"],
    );
}

#[test]
fn default_shares_are_one_minus_max_usage() {
    let shares = |admission: &Admission| match admission.experiment.fault {
        Fault::ResourceExhaustion(ResourceExhaustion {
            cpu_share,
            memory_share,
        }) => (cpu_share, memory_share),
        ref other => panic!("unexpected fault {other:?}"),
    };
    let near = |share: Option<f64>, expected: f64| {
        share.is_some_and(|share| (share - expected).abs() < 1e-9)
    };
    let squeeze = experiment(ExperimentType::ResourceExhaustion, "");
    let admission = admitted(&ChaosConfig::default(), &squeeze);
    let (cpu, memory) = shares(&admission);
    assert!(near(cpu, 0.1) && near(memory, 0.15), "{cpu:?} {memory:?}");
    let config = chaos_config(
        "experiments:\n  resource_exhaustion:\n    max_cpu_usage: 0.5\n    max_memory_usage: 0.25\n",
    );
    let (cpu, memory) = shares(&admitted(&config, &squeeze));
    assert!(near(cpu, 0.5) && near(memory, 0.75), "{cpu:?} {memory:?}");
    // Taking everything away would stop the target: a sliver of 0.001 stays.
    let config = chaos_config(
        "experiments:\n  resource_exhaustion:\n    max_cpu_usage: 1\n    max_memory_usage: 1\n",
    );
    let (cpu, memory) = shares(&admitted(&config, &squeeze));
    assert!(
        near(cpu, 0.001) && near(memory, 0.001),
        "{cpu:?} {memory:?}"
    );
    // One share given: the other stays untouched.
    let cpu_only = experiment(
        ExperimentType::ResourceExhaustion,
        "fault: {cpu_share: 0.5}\n",
    );
    assert_eq!(
        shares(&admitted(&ChaosConfig::default(), &cpu_only)),
        (Some(0.5), None)
    );
}

#[test]
fn pod_deletion_pod_name_patterns() {
    let config = chaos_config(
        "experiment_types:\n  pod_deletion:\n    parameters:\n      pods: ['frontend-*', 'backend-*']\n",
    );
    let kill = |pod_name: Option<&str>| {
        let mut experiment = experiment(ExperimentType::PodDeletion, "");
        experiment.targets[0].pod_name = pod_name.map(str::to_owned);
        experiment
    };
    refused_at(
        &config,
        &kill(None),
        "target.pod_name",
        &[
            "no pod name",
            "frontend-*, backend-*",
            "experiment_types.pod_deletion.parameters.pods",
        ],
    );
    refused_at(
        &config,
        &kill(Some("shop/payments-1")),
        "target.pod_name",
        &[
            "\"shop/payments-1\"",
            "experiment_types.pod_deletion.parameters.pods",
        ],
    );
    // The pattern is matched against the name, not the namespace.
    refused_at(
        &config,
        &kill(Some("frontend-ns/payments-1")),
        "target.pod_name",
        &[],
    );
    admitted(&config, &kill(Some("shop/frontend-7d9f8-abcde")));
    admitted(&config, &kill(Some("shop/backend-0")));
    // No patterns: any pod, named or not.
    admitted(&ChaosConfig::default(), &kill(None));
    admitted(&ChaosConfig::default(), &kill(Some("shop/payments-1")));
    // The patterns concern pod deletions only.
    admitted(&config, &experiment(ExperimentType::PacketLoss, ""));
}

#[test]
fn pod_cap_is_the_smaller_of_max_pods_deleted_and_max_pods() {
    let cap = |max_pods_deleted: u32, max_pods: u32| {
        let config = chaos_config(&format!(
            "experiments:\n  pod_deletion:\n    max_pods_deleted: {max_pods_deleted}\n    cost_per_pod: 0\n\
             experiment_types:\n  pod_deletion:\n    parameters:\n      max_pods: {max_pods}\n"
        ));
        admitted(
            &config,
            &experiment(ExperimentType::PodDeletion, "fault: {interval: 1m}\n"),
        )
        .max_faults
    };
    assert_eq!(cap(5, 3), 3);
    assert_eq!(cap(1, 3), 1);
    assert_eq!(cap(4, 4), 4);
    // The defaults: max_pods_deleted 2, max_pods 3.
    let kill = experiment(ExperimentType::PodDeletion, "budget: 100\n");
    let admission = admitted(&ChaosConfig::default(), &kill);
    assert_eq!(admission.max_faults, 2);
    assert_eq!(admission.price, Price::PerPod(50.0));
}

#[test]
fn budget_above_max_experiment_cost() {
    let config = chaos_config("budget:\n  max_experiment_cost: 10\n");
    let loss = |budget: &str| experiment(ExperimentType::PacketLoss, budget);
    refused_at(
        &config,
        &loss("budget: 10.5\n"),
        "budget",
        &["10.5", "at most 10", "budget.max_experiment_cost"],
    );
    assert_eq!(admitted(&config, &loss("budget: 10\n")).budget, 10.0);
    // No budget: the most an experiment may cost.
    assert_eq!(admitted(&config, &loss("")).budget, 10.0);
    assert_eq!(admitted(&ChaosConfig::default(), &loss("")).budget, 100.0);
}

#[test]
fn cost_per_fault_sets_the_cap() {
    for kind in PER_FAULT_TYPES {
        let config = chaos_config(&format!(
            "experiments:\n  {kind}:\n    cost_per_fault: 0.25\n"
        ));
        let admission = admitted(&config, &experiment(kind, "budget: 1.0\n"));
        assert_eq!(admission.price, Price::PerFault(0.25), "{kind}");
        assert_eq!(admission.max_faults, 4, "{kind}: 1.0 / 0.25");
        // Without it, budget.cost_per_request prices the faults.
        let admission = admitted(&ChaosConfig::default(), &experiment(kind, "budget: 1.0\n"));
        assert_eq!(admission.price, Price::PerFault(0.001), "{kind}");
        assert_eq!(admission.max_faults, 1000, "{kind}: 1.0 / 0.001");
    }
    // A cost_per_fault of another type does not apply.
    let config = chaos_config("experiments:\n  packet_loss:\n    cost_per_fault: 0.25\n");
    let admission = admitted(
        &config,
        &experiment(ExperimentType::DependencyFailure, "budget: 1.0\n"),
    );
    assert_eq!(admission.max_faults, 1000);
    // Free faults: no cap from the budget.
    let config = chaos_config("budget:\n  cost_per_request: 0\n");
    let admission = admitted(
        &config,
        &experiment(ExperimentType::PacketLoss, "budget: 0\n"),
    );
    assert_eq!(admission.max_faults, u64::MAX);
}

#[test]
fn budget_that_buys_nothing() {
    let config = chaos_config("experiments:\n  dependency_failure:\n    cost_per_fault: 0.25\n");
    let failure = |budget: &str| experiment(ExperimentType::DependencyFailure, budget);
    too_small(
        &config,
        &failure("budget: 0.2\n"),
        &["0.2", "one fault at 0.25", "cost_per_fault"],
    );
    too_small(&config, &failure("budget: 0\n"), &["one fault at 0.25"]);
    admitted(&config, &failure("budget: 0.25\n"));
    too_small(
        &ChaosConfig::default(),
        &failure("budget: 0.0005\n"),
        &["budget.cost_per_request"],
    );
    // A pod deletion that cannot pay for one pod.
    too_small(
        &ChaosConfig::default(),
        &experiment(ExperimentType::PodDeletion, "budget: 49\n"),
        &[
            "49",
            "one pod at 50",
            "experiments.pod_deletion.cost_per_pod",
        ],
    );
}

#[test]
fn per_minute_budget_must_cover_the_duration() {
    // 10 minutes at 0.10 a minute cost 1.0.
    let latency = |budget: &str| experiment(ExperimentType::NetworkLatency, budget);
    too_small(
        &ChaosConfig::default(),
        &latency("budget: 0.5\n"),
        &[
            "0.5",
            "1.0000 for 10m at 0.1 per minute",
            "experiments.network_latency.cost_per_minute",
        ],
    );
    let admission = admitted(&ChaosConfig::default(), &latency("budget: 1.0\n"));
    assert_eq!(admission.price, Price::PerMinute(0.10));
    assert_eq!(admission.max_faults, u64::MAX);
    assert_eq!(
        admission
            .price
            .spent(0, Duration::from_secs(300), admission.budget),
        0.5
    );
}

#[test]
fn max_faults_lowers_the_cap() {
    let config = ChaosConfig::default();
    // budget 1.0 at 0.001 buys 1000.
    let loss =
        |extra: &str| experiment(ExperimentType::PacketLoss, &format!("budget: 1.0\n{extra}"));
    assert_eq!(admitted(&config, &loss("")).max_faults, 1000);
    assert_eq!(admitted(&config, &loss("max_faults: 10\n")).max_faults, 10);
    assert_eq!(
        admitted(&config, &loss("max_faults: 5000\n")).max_faults,
        1000,
        "max_faults cannot buy more than the budget"
    );
    // And below the pod cap.
    let kill = experiment(ExperimentType::PodDeletion, "max_faults: 1\n");
    assert_eq!(admitted(&config, &kill).max_faults, 1);
    // And on a time-priced type, where the budget sets no cap.
    let slow = experiment(ExperimentType::NetworkLatency, "max_faults: 7\n");
    assert_eq!(admitted(&config, &slow).max_faults, 7);
}

#[test]
fn price_spent_is_capped_by_the_budget() {
    assert_eq!(Price::PerFault(0.25).spent(3, Duration::ZERO, 10.0), 0.75);
    assert_eq!(Price::PerFault(0.25).spent(100, Duration::ZERO, 10.0), 10.0);
    assert_eq!(
        Price::PerPod(50.0).spent(1, Duration::from_secs(60), 100.0),
        50.0
    );
    let half_hour = Price::PerMinute(0.10).spent(1_000, Duration::from_secs(30 * 60), 10.0);
    assert!((half_hour - 3.0).abs() < 1e-9, "{half_hour}");
    assert_eq!(
        Price::PerMinute(1.0).spent(0, Duration::from_secs(3600), 10.0),
        10.0
    );
}

/// An experiment file of `kind` with `extra` lines, parsed (it must be valid).
fn file(kind: &str, extra: &str) -> Experiment {
    parse(&format!(
        "name: ramp\ntype: {kind}\ntarget: {{cgroup: /x}}\nduration: 10m\n{extra}"
    ))
}

#[test]
fn ramps_resolve_presets_arm_at_their_first_step_and_stay_within_the_limits() {
    let config = ChaosConfig::default();
    // A preset: the config's list for the type; the experiment arms at its first step.
    let loss = admitted(
        &config,
        &file("packet_loss", "ramp: {steps: preset, hold: 1m}\n"),
    );
    let steps = loss
        .experiment
        .ramp
        .as_ref()
        .unwrap()
        .values()
        .unwrap()
        .to_vec();
    assert_eq!(steps, [0.01, 0.05, 0.1]);
    assert_eq!(loss.experiment.intensity, 0.01);
    let refused = admitted(
        &config,
        &file("dependency_failure", "ramp: {steps: preset, hold: 1m}\n"),
    );
    assert_eq!(
        refused.experiment.intensity, 0.01,
        "the api error_rate list"
    );
    // Latency: steps in milliseconds; the preset is latency_ms; fault.latency is the first.
    let latency = admitted(
        &config,
        &file("network_latency", "ramp: {steps: preset, hold: 1m}\n"),
    );
    let Fault::NetworkLatency(l) = &latency.experiment.fault else {
        unreachable!()
    };
    assert_eq!(l.latency, Duration::from_millis(100));
    let explicit = file("network_latency", "ramp: {steps: [50, 400], hold: 1m}\n");
    let Fault::NetworkLatency(l) = &explicit.fault else {
        unreachable!()
    };
    assert_eq!(
        l.latency,
        Duration::from_millis(50),
        "set by the ramp in the file"
    );
    // A step past the config's limits is refused by its index.
    let small = chaos_config(
        "experiments:\n  network_latency:\n    max_latency_ms: 300\n  packet_loss:\n    \
         max_probability: 0.05\nexperiment_types:\n  network_latency:\n    parameters:\n      \
         latency_ms: [100, 300]\n",
    );
    refused_at(
        &small,
        &explicit,
        "ramp.steps[1]",
        &["300 ms", "max_latency_ms"],
    );
    refused_at(
        &small,
        &file("packet_loss", "ramp: {steps: [0.01, 0.2], hold: 1m}\n"),
        "ramp.steps[1]",
        &["max_probability"],
    );
    // No preset for syscall errors.
    refused_at(
        &config,
        &file("syscall_error", "ramp: {steps: preset, hold: 1m}\n"),
        "ramp.steps",
        &["no preset ramp for syscall_error"],
    );
}

#[test]
fn bad_ramps_are_refused_offline_naming_the_field() {
    let bad = |kind: &str, extra: &str, path: &str| {
        let text =
            format!("name: ramp\ntype: {kind}\ntarget: {{cgroup: /x}}\nduration: 1m\n{extra}");
        common::rejected_at(Experiment::from_yaml(&text), path);
    };
    bad("pod_deletion", "ramp: {steps: [0.5], hold: 10s}\n", "ramp");
    bad(
        "bandwidth_limit",
        "fault: {rate: 1mbit}\nramp: {steps: preset, hold: 10s}\n",
        "ramp",
    );
    bad(
        "packet_loss",
        "ramp: {steps: [0.1, 1.5], hold: 10s}\n",
        "ramp.steps[1]",
    );
    bad(
        "network_latency",
        "ramp: {steps: [10, 2.5], hold: 10s}\n",
        "ramp.steps[1]",
    );
    bad(
        "packet_loss",
        "ramp: {steps: [], hold: 10s}\n",
        "ramp.steps",
    );
    bad(
        "packet_loss",
        "ramp: {steps: [0.1], hold: 0s}\n",
        "ramp.hold",
    );
    // The last step must start before the end.
    bad(
        "packet_loss",
        "ramp: {steps: [0.1, 0.2, 0.3], hold: 30s}\n",
        "ramp",
    );
    bad(
        "packet_loss",
        "intensity: 0.5\nramp: {steps: [0.1, 0.2], hold: 10s}\n",
        "intensity",
    );
    bad(
        "network_latency",
        "fault: {latency: 10ms}\nramp: {steps: [20, 30], hold: 10s}\n",
        "fault.latency",
    );
    bad("packet_loss", "lease: 500ms\nintensity: 0.1\n", "lease");
}

/// A config defining the SLOs `error_rate` and `api_availability` (critical) and a health
/// endpoint.
const GUARDED: &str = "safety_checks:\n  slo_validation:\n    critical_slos: [error_rate, \
    api_availability]\n  slos:\n    error_rate: {query: 'errors', objective: '<= 0.01'}\n    \
    api_availability: {query: 'up', objective: '>= 0.99'}\n";

#[test]
fn guards_apply_names_a_guard_of_the_node_or_the_experiment() {
    let config = chaos_config(GUARDED);
    // The config's SLOs, the fixed guards and the experiment's own SLOs are known.
    admitted(
        &config,
        &experiment(
            ExperimentType::PacketLoss,
            "guards:\n  apply: [error_rate, health_checks, rollback_triggers, impact, mine]\n  \
             slos:\n    mine: {query: 'q', objective: '< 1'}\n",
        ),
    );
    // Anything else is refused, naming it and every guard it could have named.
    let shown = refused_at(
        &config,
        &experiment(
            ExperimentType::PacketLoss,
            "guards:\n  apply: [error_rate, latency_p99]\n",
        ),
        "guards.apply[1]",
        &[],
    );
    assert_eq!(
        shown,
        "guards.apply[1]: \"latency_p99\" is not allowed; expected a guard of this node or \
         experiment: health_checks, rollback_triggers, impact, api_availability, error_rate"
    );
    // A name the model refuses never reaches the config.
    common::rejected_at(
        Experiment::from_yaml(
            "name: admit\ntype: packet_loss\ntarget: {pid: 42}\nintensity: 0.1\nguards:\n  \
             apply: ['no such']\n",
        ),
        "guards.apply[0]",
    );
}

#[test]
fn an_extra_slo_may_not_redefine_one_of_the_config() {
    let config = chaos_config(GUARDED);
    let shown = refused_at(
        &config,
        &experiment(
            ExperimentType::PacketLoss,
            "guards:\n  slos:\n    error_rate: {query: 'mine', objective: '<= 0.5'}\n",
        ),
        "guards.slos.error_rate",
        &[],
    );
    assert_eq!(
        shown,
        "guards.slos.error_rate: a second definition is not allowed; expected a name the \
         node's config does not define (safety_checks.slos defines it)"
    );
}

#[test]
fn an_experiments_guard_interval_is_50ms_to_60s_in_whole_milliseconds() {
    let text = |interval: &str| {
        format!(
            "name: admit\ntype: packet_loss\ntarget: {{pid: 42}}\nintensity: 0.1\nguards:\n  \
             interval: {interval}\n"
        )
    };
    assert_eq!(
        parse(&text("50ms")).guards.interval,
        Some(Duration::from_millis(50))
    );
    let error = common::rejected_at(Experiment::from_yaml(&text("49ms")), "guards.interval");
    assert_eq!(
        error.to_string(),
        "guards.interval: 49ms is not allowed; expected 50ms to 1m"
    );
    common::rejected_at(Experiment::from_yaml(&text("61s")), "guards.interval");
    // The node's own interval has the same floor.
    let error = ChaosConfig::from_yaml("safety_checks:\n  guard_interval_ms: 49\n").unwrap_err();
    assert_eq!(error.path(), Some("safety_checks.guard_interval_ms"));
}

#[test]
fn a_database_load_is_priced_per_query_and_capped_by_the_budget() {
    let config = chaos_config(
        "experiments:\n  database_load:\n    cost_per_query: 0.002\n    max_queries_per_second: 200\n",
    );
    let load = experiment(ExperimentType::DatabaseLoad, "budget: 1\n");
    let admission = admitted(&config, &load);
    assert_eq!(admission.price, Price::PerQuery(0.002));
    // floor(1 / 0.002) executed queries.
    assert_eq!(admission.max_faults, 500);
    assert_eq!(
        admission
            .price
            .spent(250, Duration::from_secs(600), admission.budget),
        0.5
    );
    // The defaults: 0.001 per query, 500 qps, 50 connections.
    let admission = admitted(&ChaosConfig::default(), &load);
    assert_eq!(
        (admission.price, admission.max_faults),
        (Price::PerQuery(0.001), 1000)
    );
    assert_eq!(
        ChaosConfig::default().impact_threshold(ExperimentType::DatabaseLoad),
        (0.2, "experiments.database_load.impact_threshold")
    );
    // max_faults still lowers the cap.
    let capped = experiment(ExperimentType::DatabaseLoad, "budget: 1\nmax_faults: 7\n");
    assert_eq!(admitted(&config, &capped).max_faults, 7);
    // A budget that buys no query.
    let poor = experiment(ExperimentType::DatabaseLoad, "budget: 0.001\n");
    too_small(
        &config,
        &poor,
        &[
            "one query at 0.002",
            "experiments.database_load.cost_per_query",
        ],
    );
}

#[test]
fn a_database_load_above_the_configs_rate_or_connections_is_refused() {
    let config = chaos_config(
        "experiments:\n  database_load:\n    max_queries_per_second: 200\n    max_connections: 10\n",
    );
    let load = |fault: &str| {
        experiment(
            ExperimentType::DatabaseLoad,
            &format!(
                "fault: {{engine: mysql, address: 'db:3306', user: app, profile: writes, {fault}}}\n"
            ),
        )
    };
    admitted(&config, &load("rate: 200, concurrency: 10"));
    refused_at(
        &config,
        &load("rate: 200.5"),
        "fault.rate",
        &[
            "200.5",
            "at most 200 queries per second",
            "experiments.database_load.max_queries_per_second",
        ],
    );
    refused_at(
        &config,
        &load("rate: 100, concurrency: 11"),
        "fault.concurrency",
        &[
            "11",
            "at most 10 connections",
            "experiments.database_load.max_connections",
        ],
    );
    // The default concurrency (8) fits; a config below it refuses it.
    let tight = chaos_config("experiments:\n  database_load:\n    max_connections: 4\n");
    refused_at(
        &tight,
        &load("rate: 100"),
        "fault.concurrency",
        &["8", "experiments.database_load.max_connections"],
    );
    // Every ramp step is a rate the config must allow; the first is the rate.
    let ramped = |steps: &str| {
        experiment(
            ExperimentType::DatabaseLoad,
            &format!(
                "fault: {{engine: redis, address: 'cache:6379', profile: point_reads}}\n\
                 ramp: {{steps: [{steps}], hold: 1m}}\n"
            ),
        )
    };
    let admission = admitted(&config, &ramped("50, 100, 200"));
    let Fault::DatabaseLoad(armed) = &admission.experiment.fault else {
        panic!("{admission:?}")
    };
    assert_eq!(armed.rate, 50.0);
    refused_at(
        &config,
        &ramped("50, 100, 500"),
        "ramp.steps[2]",
        &[
            "500",
            "at most 200 queries per second",
            "experiments.database_load.max_queries_per_second",
        ],
    );
    // No preset ramp of rates.
    let preset = experiment(
        ExperimentType::DatabaseLoad,
        "fault: {engine: redis, address: 'cache:6379', profile: writes}\n\
         ramp: {steps: preset, hold: 1m}\n",
    );
    refused_at(
        &config,
        &preset,
        "ramp.steps",
        &[
            "a list of rates in queries per second",
            "no preset ramp for database_load",
        ],
    );
}
