//! `api_error_injection` with `fault.error_types`: the HTTP error responses. The example parses
//! and converts to the proto the daemon runs, the model reads back exactly what it sent, the
//! L4 errors are unchanged without `error_types`, every refusal (in a file and on the wire)
//! names its path, and the config admits and ramps it like the L4 errors.

mod common;

use common::{experiment_rejected_at as rejected_at, parse, rejected_at as refused};

use chaos_api::config::{ChaosConfig, Price};
use chaos_api::error::ModelError;
use chaos_api::experiment::{
    ApiError, Errno, Experiment, ExperimentType, Fault, HttpError, HttpStatus, PortRange, Protocol,
    SocketCall, SocketError,
};
use chaos_api::proto::{self, fault::Kind as FaultKind};

const API_ERROR_HTTP: &str = include_str!("../../chaos/experiments/api-error-http.yaml");

/// The smallest valid HTTP error experiment.
const HTTP: &str = "\
name: http
type: api_error_injection
target:
  pid: 4242
duration: 1m
intensity: 0.3
fault:
  error_types: [503]
";

/// `HTTP` with `extra` lines appended (inside `fault` when indented).
fn http_with(extra: &str) -> String {
    format!("{HTTP}{extra}")
}

/// `HTTP` with its `fault` replaced by `fault`.
fn with_fault(fault: &str) -> String {
    HTTP.replace("fault:\n  error_types: [503]\n", fault)
}

/// The HTTP fault of `experiment`.
fn http_fault(experiment: &Experiment) -> &HttpError {
    match &experiment.fault {
        Fault::ApiErrorInjection(ApiError::Http(error)) => error,
        other => panic!("not the HTTP errors: {other:?}"),
    }
}

/// Asserts that `error` is a [`ModelError::Invalid`] with exactly this value and allowed text.
fn assert_invalid(error: &ModelError, value: &str, allowed: &str) {
    match error {
        ModelError::Invalid {
            value: v,
            allowed: a,
            ..
        } => assert_eq!((v.as_str(), a.as_str()), (value, allowed), "{error}"),
        other => panic!("expected an invalid value, got {other:?}"),
    }
}

/// A spec of api_error_injection with this fault message: pid 42, one minute, intensity 0.5.
fn spec(fault: proto::SocketError) -> proto::ExperimentSpec {
    proto::ExperimentSpec {
        targets: Vec::new(),
        name: "wire".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Pid(42)),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(FaultKind::ApiErrorInjection(fault)),
        }),
        intensity: Some(0.5),
        duration_ms: 60_000,
        max_faults: None,
        filter: None,
        budget: None,
        guards: None,
        ramp: None,
        lease_ms: None,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn http_example_to_proto() {
    let experiment = parse(API_ERROR_HTTP);
    assert_eq!(experiment.kind(), ExperimentType::ApiErrorInjection);
    assert_eq!(
        http_fault(&experiment),
        &HttpError {
            error_types: vec![
                HttpStatus::Code(500),
                HttpStatus::Code(502),
                HttpStatus::Code(503),
                HttpStatus::Timeout,
            ],
            server_ports: Some(PortRange {
                low: 8080,
                high: 8080
            }),
        }
    );
    assert!(matches!(&experiment.fault, Fault::ApiErrorInjection(e) if e.is_http()));
    assert_eq!(experiment.intensity, 0.1);
    let expected = proto::ExperimentSpec {
        targets: Vec::new(),
        name: "checkout-http-errors".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Cgroup(
                "/system.slice/checkout.service".to_owned(),
            )),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(FaultKind::ApiErrorInjection(proto::SocketError {
                errno: String::new(),
                calls: Vec::new(),
                error_types: strings(&["500", "502", "503", "timeout"]),
                server_ports: "8080".to_owned(),
            })),
        }),
        intensity: Some(0.1),
        duration_ms: 600_000,
        max_faults: None,
        filter: Some(proto::NetFilter {
            protocol: "tcp".to_owned(),
            ports: String::new(),
            cidrs: vec!["10.0.0.0/8".to_owned()],
        }),
        budget: Some(5.0),
        guards: None,
        ramp: None,
        lease_ms: None,
    };
    let sent = experiment.to_proto();
    assert_eq!(sent, expected);
    assert_eq!(Experiment::from_proto(&sent), Ok(experiment));
}

#[test]
fn http_defaults_and_scalar_forms() {
    // No server_ports: any port; no filter: every client.
    let experiment = parse(HTTP);
    assert_eq!(
        http_fault(&experiment),
        &HttpError {
            error_types: vec![HttpStatus::Code(503)],
            server_ports: None,
        }
    );
    assert_eq!(experiment.filter.protocol, Protocol::Any);
    let sent = experiment.to_proto();
    assert_eq!(sent.filter, None);
    assert_eq!(Experiment::from_proto(&sent), Ok(experiment));

    // Codes as numbers or strings, any 3-digit code, a port as a number or a range.
    let experiment = parse(&with_fault(
        "fault:\n  error_types: ['429', timeout, 100, 599]\n  server_ports: 8000-8100\n",
    ));
    assert_eq!(
        http_fault(&experiment),
        &HttpError {
            error_types: vec![
                HttpStatus::Code(429),
                HttpStatus::Timeout,
                HttpStatus::Code(100),
                HttpStatus::Code(599),
            ],
            server_ports: Some(PortRange {
                low: 8000,
                high: 8100
            }),
        }
    );
    let experiment = parse(&http_with("  server_ports: 8080\n"));
    assert_eq!(
        http_fault(&experiment).server_ports,
        Some(PortRange {
            low: 8080,
            high: 8080
        })
    );
    // The clients' networks and tcp are allowed.
    let experiment = parse(&http_with(
        "filter: {protocol: tcp, cidrs: [10.0.0.0/8, 'fd00::/8']}\n",
    ));
    assert_eq!(experiment.filter.cidrs.len(), 2);
    assert_eq!(
        Experiment::from_proto(&experiment.to_proto()),
        Ok(experiment)
    );
    // as_text is what the file and the proto carry.
    assert_eq!(HttpStatus::Code(503).as_text(), "503");
    assert_eq!(HttpStatus::Timeout.as_text(), "timeout");
}

#[test]
fn without_error_types_the_l4_errors_are_unchanged() {
    let experiment = parse(&with_fault(""));
    assert_eq!(
        experiment.fault,
        Fault::ApiErrorInjection(ApiError::Socket(SocketError {
            errno: Errno::ECONNRESET,
            calls: vec![SocketCall::Connect, SocketCall::Sendmsg],
        }))
    );
    assert_eq!(
        experiment.fault,
        Fault::ApiErrorInjection(ApiError::Socket(SocketError::defaults(
            ExperimentType::ApiErrorInjection
        )))
    );
    let experiment = parse(&with_fault("fault: {errno: ETIMEDOUT, calls: [connect]}\n"));
    let Fault::ApiErrorInjection(ApiError::Socket(error)) = &experiment.fault else {
        panic!("{experiment:?}");
    };
    assert_eq!(error.errno, Errno::from_name("ETIMEDOUT").unwrap());
    let sent = experiment.to_proto();
    let Some(FaultKind::ApiErrorInjection(message)) =
        sent.fault.as_ref().and_then(|f| f.kind.clone())
    else {
        panic!("{sent:?}");
    };
    assert!(message.error_types.is_empty() && message.server_ports.is_empty());
    assert_eq!(Experiment::from_proto(&sent), Ok(experiment));
    // An empty message is still the L4 defaults.
    assert_eq!(
        Experiment::from_proto(&spec(proto::SocketError::default()))
            .unwrap()
            .fault,
        Fault::ApiErrorInjection(ApiError::Socket(SocketError::defaults(
            ExperimentType::ApiErrorInjection
        )))
    );
}

#[test]
fn l4_keys_are_refused_with_error_types() {
    for (key, line) in [
        ("errno", "  errno: EIO\n"),
        ("calls", "  calls: [connect]\n"),
    ] {
        let path = format!("fault.{key}");
        let error = rejected_at(&http_with(line), &path);
        assert_eq!(
            error.to_string(),
            format!(
                "{path}: not allowed with fault.error_types (HTTP errors); the L4 errors take \
                 errno and calls"
            )
        );
    }
    let error = rejected_at(
        &with_fault("fault: {server_ports: '8080'}\n"),
        "fault.server_ports",
    );
    assert_eq!(
        error.to_string(),
        "fault.server_ports: only with fault.error_types (HTTP errors): it is the HTTP server's \
         port; the L4 errors take filter.ports"
    );
    // The HTTP keys are api_error_injection's only.
    let other = http_with("").replace("api_error_injection", "dependency_failure");
    let error = rejected_at(&other, "fault.error_types");
    assert_eq!(
        error.to_string(),
        "fault.error_types: unknown field `error_types` for type dependency_failure, expected \
         `errno` or `calls`"
    );
    let loss = http_with("").replace("api_error_injection", "packet_loss");
    rejected_at(&loss, "fault.error_types");
}

#[test]
fn bad_error_types_are_refused_at_their_entry() {
    let allowed = "a 3-digit HTTP status code 100 to 599 (e.g. 503) or `timeout`";
    for (list, path, value) in [
        ("[99]", "fault.error_types[0]", "\"99\""),
        ("[503, 600]", "fault.error_types[1]", "\"600\""),
        ("[503, '0503']", "fault.error_types[1]", "\"0503\""),
        ("[1000]", "fault.error_types[0]", "\"1000\""),
        ("[-1]", "fault.error_types[0]", "\"-1\""),
        ("[TIMEOUT]", "fault.error_types[0]", "\"TIMEOUT\""),
        ("[' 503']", "fault.error_types[0]", "\" 503\""),
        ("[5xx]", "fault.error_types[0]", "\"5xx\""),
    ] {
        let error = rejected_at(
            &with_fault(&format!("fault:\n  error_types: {list}\n")),
            path,
        );
        assert_invalid(&error, value, allowed);
    }
    let error = rejected_at(
        &with_fault("fault:\n  error_types: [503, timeout, 503]\n"),
        "fault.error_types[2]",
    );
    assert_invalid(&error, "503", "each error type at most once");
    let error = rejected_at(
        &with_fault("fault:\n  error_types: [timeout, timeout]\n"),
        "fault.error_types[1]",
    );
    assert_invalid(&error, "timeout", "each error type at most once");
    let count = "1 to 8 entries, each a 3-digit HTTP status code 100 to 599 (e.g. 503) or \
                 `timeout` (omit fault.error_types for the L4 errors)";
    let error = rejected_at(
        &with_fault("fault:\n  error_types: []\n"),
        "fault.error_types",
    );
    assert_invalid(&error, "[]", count);
    let nine = "fault:\n  error_types: [500, 501, 502, 503, 504, 505, 506, 507, 508]\n";
    let error = rejected_at(&with_fault(nine), "fault.error_types");
    assert_invalid(&error, "9 entries", count);
    // Eight is the most.
    parse(&with_fault(
        "fault:\n  error_types: [500, 501, 502, 503, 504, 505, 506, timeout]\n",
    ));
    // Not a scalar.
    rejected_at(
        &with_fault("fault:\n  error_types: [[503]]\n"),
        "fault.error_types[0]",
    );
    rejected_at(
        &with_fault("fault:\n  error_types: 503\n"),
        "fault.error_types",
    );
}

#[test]
fn bad_server_ports_and_filters_are_refused() {
    let ports = "a port like \"80\" or a range like \"8000-8100\" (1 <= LOW <= HIGH <= 65535)";
    for (text, value) in [
        ("'0'", "\"0\""),
        ("'90-80'", "\"90-80\""),
        ("'65536'", "\"65536\""),
        ("http", "\"http\""),
    ] {
        let error = rejected_at(
            &http_with(&format!("  server_ports: {text}\n")),
            "fault.server_ports",
        );
        assert_invalid(&error, value, ports);
    }
    let error = rejected_at(&http_with("filter: {ports: '8080'}\n"), "filter.ports");
    assert_invalid(
        &error,
        "\"8080\"",
        "no filter.ports with fault.error_types: it is the client's (remote) port; use \
         fault.server_ports for the HTTP server's port",
    );
    for protocol in ["udp", "icmp"] {
        let error = rejected_at(
            &http_with(&format!("filter: {{protocol: {protocol}}}\n")),
            "filter.protocol",
        );
        assert_invalid(
            &error,
            protocol,
            "tcp or any with fault.error_types (HTTP/1.x runs over TCP)",
        );
    }
    parse(&http_with("filter: {protocol: any}\n"));
}

#[test]
fn the_wire_refuses_what_the_file_refuses() {
    let http = |errno: &str, calls: &[&str], types: &[&str], ports: &str| proto::SocketError {
        errno: errno.to_owned(),
        calls: strings(calls),
        error_types: strings(types),
        server_ports: ports.to_owned(),
    };
    let read = Experiment::from_proto(&spec(http("", &[], &["502", "timeout"], "8000-8100")));
    assert_eq!(
        read.map(|e| e.fault),
        Ok(Fault::ApiErrorInjection(ApiError::Http(HttpError {
            error_types: vec![HttpStatus::Code(502), HttpStatus::Timeout],
            server_ports: Some(PortRange {
                low: 8000,
                high: 8100
            }),
        })))
    );
    let not_l4 = "not allowed with fault.error_types (HTTP errors); the L4 errors take errno \
                  and calls";
    let error = refused(
        Experiment::from_proto(&spec(http("EIO", &[], &["503"], ""))),
        "fault.errno",
    );
    assert_eq!(error.to_string(), format!("fault.errno: {not_l4}"));
    let error = refused(
        Experiment::from_proto(&spec(http("", &["connect"], &["503"], ""))),
        "fault.calls",
    );
    assert_eq!(error.to_string(), format!("fault.calls: {not_l4}"));
    refused(
        Experiment::from_proto(&spec(http("", &[], &[], "8080"))),
        "fault.server_ports",
    );
    refused(
        Experiment::from_proto(&spec(http("", &[], &["503", "503"], ""))),
        "fault.error_types[1]",
    );
    refused(
        Experiment::from_proto(&spec(http("", &[], &["200", "5000"], ""))),
        "fault.error_types[1]",
    );
    refused(
        Experiment::from_proto(&spec(http("", &[], &["503"], "90-80"))),
        "fault.server_ports",
    );
    let mut filtered = spec(http("", &[], &["503"], ""));
    filtered.filter = Some(proto::NetFilter {
        protocol: "tcp".to_owned(),
        ports: "8080".to_owned(),
        cidrs: Vec::new(),
    });
    refused(Experiment::from_proto(&filtered), "filter.ports");
    filtered.filter = Some(proto::NetFilter {
        protocol: "udp".to_owned(),
        ports: String::new(),
        cidrs: Vec::new(),
    });
    refused(Experiment::from_proto(&filtered), "filter.protocol");
    // dependency_failure's message takes no HTTP keys.
    let mut dependency = spec(http("", &[], &["503"], ""));
    dependency.fault = Some(proto::Fault {
        kind: Some(FaultKind::DependencyFailure(http("", &[], &["503"], ""))),
    });
    refused(Experiment::from_proto(&dependency), "fault.error_types");
    dependency.fault = Some(proto::Fault {
        kind: Some(FaultKind::DependencyFailure(http("", &[], &[], "8080"))),
    });
    refused(Experiment::from_proto(&dependency), "fault.server_ports");
}

#[test]
fn http_errors_are_admitted_and_ramped_like_the_l4_errors() {
    let config = ChaosConfig::default();
    let experiment = parse(API_ERROR_HTTP);
    let admission = config.admit(&experiment).expect("admitted");
    assert_eq!(admission.experiment, experiment);
    assert_eq!(
        admission.price,
        Price::PerFault(config.budget.cost_per_request)
    );
    assert!(admission.max_faults >= 1);

    // The same limits as the L4 errors: enabled, max_probability.
    let limited =
        ChaosConfig::from_yaml("experiments:\n  api_error_injection: {max_probability: 0.05}\n")
            .expect("config");
    let error = match limited.admit(&experiment) {
        Err(chaos_api::config::Refusal::Limit(error)) => error,
        other => panic!("{other:?}"),
    };
    assert_eq!(error.path(), Some("intensity"));
    assert!(
        error
            .to_string()
            .contains("experiments.api_error_injection.max_probability"),
        "{error}"
    );
    let disabled =
        ChaosConfig::from_yaml("experiments:\n  api_error_injection: {enabled: false}\n")
            .expect("config");
    assert!(disabled.admit(&experiment).is_err());

    // A ramp of intensities, explicit or the config's preset.
    let ramped = parse(&format!(
        "{}ramp: {{steps: [0.05, 0.1, 0.3], hold: 10s}}\n",
        HTTP.replace("intensity: 0.3\n", "")
    ));
    assert_eq!(ramped.intensity, 0.05);
    assert_eq!(
        Experiment::from_proto(&ramped.to_proto()),
        Ok(ramped.clone())
    );
    let admission = config.admit(&ramped).expect("admitted");
    assert_eq!(admission.experiment.intensity, 0.05);
    assert!(admission.experiment.fault == ramped.fault);
    let preset = parse(&format!(
        "{}ramp: {{steps: preset, hold: 10s}}\n",
        HTTP.replace("intensity: 0.3\n", "")
    ));
    let admission = config.admit(&preset).expect("admitted");
    let first = config
        .experiment_types
        .api_error_injection
        .parameters
        .error_rate[0];
    assert_eq!(admission.experiment.intensity, first);
    assert_eq!(
        admission
            .experiment
            .ramp
            .and_then(|r| r.values().map(<[f64]>::to_vec)),
        Some(
            config
                .experiment_types
                .api_error_injection
                .parameters
                .error_rate
                .clone()
        )
    );
    let steep = parse(&format!(
        "{}ramp: {{steps: [0.01, 0.5], hold: 10s}}\n",
        HTTP.replace("intensity: 0.3\n", "")
    ));
    let error = match limited.admit(&steep) {
        Err(chaos_api::config::Refusal::Limit(error)) => error,
        other => panic!("{other:?}"),
    };
    assert_eq!(error.path(), Some("ramp.steps[1]"));
}
