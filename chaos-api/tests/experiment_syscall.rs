//! Experiment definitions of `syscall_error`: the example converts to the proto the daemon runs,
//! the defaults (`EIO` on `open`, every file), and every rejection names its path.

mod common;

use common::{experiment_rejected_at as rejected_at, parse};

use chaos_api::experiment::{
    Errno, ExperimentType, Fault, NetFilter, Protocol, SyscallCall, SyscallError,
};
use chaos_api::proto;

const FILE_ERRORS: &str = include_str!("../../chaos/experiments/file-errors.yaml");

/// The smallest valid syscall-error experiment.
const FAIL: &str = "\
name: fail-files
type: syscall_error
target:
  cgroup: /system.slice/uploads.service
duration: 1m
intensity: 0.2
";

/// `FAIL` with a `fault` of these lines.
fn fail_with(fault: &str) -> String {
    format!("{FAIL}fault:\n{fault}")
}

#[test]
fn file_errors_example_to_proto() {
    let experiment = parse(FILE_ERRORS);
    assert_eq!(experiment.kind(), ExperimentType::SyscallError);
    assert!(!experiment.kind().takes_filter() && !experiment.kind().is_host());
    let expected = proto::ExperimentSpec {
        targets: Vec::new(),
        name: "uploads-disk-errors".to_owned(),
        target: Some(proto::Target {
            kind: Some(proto::target::Kind::Cgroup(
                "/system.slice/uploads.service".to_owned(),
            )),
            pod_name: String::new(),
        }),
        fault: Some(proto::Fault {
            kind: Some(proto::fault::Kind::SyscallError(proto::SyscallError {
                errno: "EIO".to_owned(),
                calls: vec!["read".to_owned(), "write".to_owned()],
                path_prefix: String::new(),
            })),
        }),
        intensity: Some(0.05),
        duration_ms: 300_000,
        max_faults: Some(5000),
        filter: None,
        budget: Some(10.0),
        guards: None,
        ramp: None,
        lease_ms: None,
    };
    assert_eq!(experiment.to_proto(), expected);
}

#[test]
fn syscall_defaults_and_every_call() {
    let experiment = parse(FAIL);
    assert_eq!(
        experiment.fault,
        Fault::SyscallError(SyscallError {
            errno: Errno::EIO,
            calls: vec![SyscallCall::Open],
            path_prefix: None,
        })
    );
    let all = "[open, read, write, unlink, create, fork, exec, mmap]";
    let spec = parse(&fail_with(&format!("  errno: 28\n  calls: {all}\n"))).to_proto();
    let Some(proto::fault::Kind::SyscallError(error)) = spec.fault.and_then(|f| f.kind) else {
        panic!("a syscall error");
    };
    // A number is read as the kernel's errno and sent by name.
    assert_eq!(error.errno, "ENOSPC");
    assert_eq!(
        error.calls,
        [
            "open", "read", "write", "unlink", "create", "fork", "exec", "mmap"
        ]
    );
}

#[test]
fn path_prefix_with_file_calls_only() {
    let text = fail_with("  calls: [open]\n  path_prefix: /var/lib/up/\n");
    let spec = parse(&text).to_proto();
    assert!(matches!(
        spec.fault.and_then(|f| f.kind),
        Some(proto::fault::Kind::SyscallError(e)) if e.path_prefix == "/var/lib/up/"
    ));
    // open is the default call.
    parse(&fail_with("  path_prefix: /data\n"));
    parse(&fail_with(
        "  calls: [open, read, write, unlink, create, mmap]\n  path_prefix: /data\n",
    ));
    let longest = format!("/{}", "a".repeat(4094));
    parse(&fail_with(&format!("  path_prefix: {longest}\n")));
    for call in ["fork", "exec"] {
        let error = rejected_at(
            &fail_with(&format!("  calls: [read, {call}]\n  path_prefix: /data\n")),
            "fault.path_prefix",
        );
        assert!(
            error.to_string().contains(&format!(
                "no path_prefix with {call}: only file calls (open, read, write, unlink, create, \
                 mmap)"
            )),
            "{error}"
        );
    }
    let too_long = format!("{longest}a");
    for bad in [
        "data",
        "''",
        "/",
        "//",
        "/data/../etc",
        "\"/a\\0b\"",
        &too_long,
    ] {
        let error = rejected_at(
            &fail_with(&format!("  path_prefix: {bad}\n")),
            "fault.path_prefix",
        );
        assert!(error.to_string().contains("an absolute path"), "{error}");
    }
}

#[test]
fn bad_calls_and_errno() {
    let error = rejected_at(&fail_with("  calls: [open, chmod]\n"), "fault.calls[1]");
    assert_eq!(
        error.to_string(),
        "fault.calls[1]: \"chmod\" is not allowed; expected one or more of open, read, write, \
         unlink, create, fork, exec, mmap"
    );
    // A socket call is not a syscall_error call, and the other way round.
    rejected_at(&fail_with("  calls: [connect]\n"), "fault.calls[0]");
    let error = rejected_at(
        &fail_with("  calls: [open]\n").replace("syscall_error", "dependency_failure"),
        "fault.calls[0]",
    );
    assert!(
        error.to_string().contains("connect, sendmsg, bind, socket"),
        "{error}"
    );
    rejected_at(&fail_with("  calls: []\n"), "fault.calls");
    rejected_at(
        &fail_with("  calls: [read, write, read]\n"),
        "fault.calls[2]",
    );
    rejected_at(&fail_with("  calls: open\n"), "fault.calls");
    rejected_at(&fail_with("  errno: eio\n"), "fault.errno");
    rejected_at(&fail_with("  errno: 0\n"), "fault.errno");
    rejected_at(&fail_with("  errno: 134\n"), "fault.errno");
}

#[test]
fn no_filter_and_intensity_required() {
    let error = rejected_at(&format!("{FAIL}filter:\n  protocol: tcp\n"), "filter");
    assert!(error.to_string().contains("no network address"), "{error}");
    rejected_at(&format!("{FAIL}filter: {{}}\n"), "filter");
    let mut experiment = parse(FAIL);
    experiment.filter = NetFilter {
        protocol: Protocol::Tcp,
        ..NetFilter::default()
    };
    common::rejected_at(experiment.validate(), "filter");
    rejected_at(&FAIL.replace("intensity: 0.2\n", ""), "intensity");
}

#[test]
fn keys_of_other_types() {
    let error = rejected_at(&fail_with("  latency: 5ms\n"), "fault.latency");
    assert!(
        error
            .to_string()
            .ends_with("expected `errno`, `calls` or `path_prefix`"),
        "{error}"
    );
    rejected_at(&fail_with("  cpu_share: 0.5\n"), "fault.cpu_share");
    rejected_at(
        &fail_with("  path_prefix: /data\n").replace("syscall_error", "api_error_injection"),
        "fault.path_prefix",
    );
}
