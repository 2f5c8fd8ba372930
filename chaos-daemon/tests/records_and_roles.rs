//! Bounded records and least privilege, through real daemons: a refused call, however large its
//! request, costs one audit entry of bounded size that holds nothing of the request, and an
//! operator's oversized request is audited cut; `report --last` lists a history longer than a
//! page, page by page; observers may not resolve targets (Validate, dry runs): they are refused
//! before the target is looked at, and audited, while an operator's Validate resolves it.
//!
//! Callers: the Unix socket is an operator (root), plain TCP on loopback an observer.

mod support;

use std::path::Path;

use chaos_api::{
    experiment::{Direction, EgressDrop},
    proto::{self, chaos_daemon_client::ChaosDaemonClient},
    state::State,
};
use chaos_daemon::store::{AuditRow, ExperimentRow, MAX_AUDIT_TEXT_BYTES, Store};
use support::*;
use tonic::transport::{Channel, Endpoint};

/// A request of nearly the 4 MiB a gRPC message may have: its name alone.
const HUGE_NAME_BYTES: usize = 4_000_000;

/// The daemon in `dir`, with plain TCP on loopback (observers) beside its Unix socket; returns
/// it and the observers' `http://` address.
fn daemon_with_observers(dir: &Path, config: Option<&str>) -> (Daemon, String) {
    let mut d = match config {
        Some(yaml) => {
            let path = dir.join("chaos.yaml");
            std::fs::write(&path, yaml).unwrap();
            Daemon::start_with(
                dir,
                &[
                    "--config",
                    path.to_str().unwrap(),
                    "--insecure-tcp",
                    "127.0.0.1:0",
                ],
            )
        }
        None => Daemon::start_with(dir, &["--insecure-tcp", "127.0.0.1:0"]),
    };
    let line = d.next_line();
    let port = line
        .strip_prefix("listening on http://127.0.0.1:")
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no insecure listener: {line}"))
        .to_owned();
    (d, format!("http://127.0.0.1:{port}"))
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A client of the observers' address.
async fn observer(addr: &str) -> ChaosDaemonClient<Channel> {
    let channel = Endpoint::from_shared(addr.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    ChaosDaemonClient::new(channel)
}

/// A client of the Unix socket: an operator.
async fn operator(d: &Daemon) -> chaos_ctl::client::Client {
    chaos_ctl::client::connect(&d.addr(), &Default::default())
        .await
        .unwrap()
}

/// A packet_loss experiment on `target` that injects nothing (intensity 0).
fn packet_loss(target: &Path) -> proto::ExperimentSpec {
    spec(
        cgroup_target(target),
        loss(Direction::Both, EgressDrop::Silent),
        0.0,
    )
    .to_proto()
}

/// The daemon's audit log once it exited (SIGTERM: the recorder writes what it was sent).
fn audit_after(d: Daemon) -> Vec<AuditRow> {
    let state = d.state.clone();
    d.terminate();
    Store::open(&state).unwrap().audit_log().unwrap()
}

/// Bytes of text an audit entry keeps.
fn size(a: &AuditRow) -> usize {
    a.caller.len() + a.method.len() + a.detail.len() + a.outcome.len()
}

#[test]
fn a_refused_call_costs_a_bounded_audit_entry_however_large_the_request() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("records-audit");
    let cg = TestCgroup::new(&mount, "records-audit");
    let (daemon, addr) = daemon_with_observers(&dir.0, None);
    let mut huge = packet_loss(&cg.path);
    huge.name = "\u{1b}[2J".repeat(HUGE_NAME_BYTES / 4);
    let refused = "insecure tcp 127.0.0.1:";
    block_on(async {
        let mut c = observer(&addr).await;
        for _ in 0..30 {
            let s = c
                .start_experiment(proto::StartExperimentRequest {
                    spec: Some(huge.clone()),
                    dry_run: false,
                })
                .await
                .unwrap_err();
            assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
            assert!(s.message().starts_with(refused), "{s:?}");
        }
        // An operator's oversized request is read, refused for its name, and audited cut.
        let s = operator(&daemon)
            .await
            .start_experiment(proto::StartExperimentRequest {
                spec: Some(huge.clone()),
                dry_run: false,
            })
            .await
            .unwrap_err();
        assert_eq!(
            s.code(),
            tonic::Code::InvalidArgument,
            "{:.300}",
            s.message()
        );
        assert!(s.message().starts_with("name: "), "{:.200}", s.message());
    });
    let audit = audit_after(daemon);
    // Thirty entries that hold the method and why, nothing of the request.
    let observers: Vec<&AuditRow> = audit
        .iter()
        .filter(|a| a.caller == "refused caller")
        .collect();
    assert_eq!(observers.len(), 30, "{audit:#?}");
    for a in &observers {
        assert_eq!(
            (a.method.as_str(), a.detail.as_str()),
            ("StartExperiment", "")
        );
        assert!(
            a.outcome
                .starts_with(&format!("PermissionDenied: {refused}"))
                && a.outcome
                    .ends_with(" may not call StartExperiment: it needs the Operator role"),
            "{a:?}"
        );
    }
    let total: usize = observers.iter().map(|a| size(a)).sum();
    assert!(total < 30 * 200, "30 refused calls kept {total} bytes");
    // The operator's entry: its detail (the name) and its outcome cut to the bound, the
    // escapes shown, never obeyed.
    let op: Vec<&AuditRow> = audit.iter().filter(|a| a.caller == "uid 0").collect();
    assert_eq!(op.len(), 1, "{audit:#?}");
    let cut = format!(
        " (cut from {} bytes)",
        HUGE_NAME_BYTES + " dry_run=false".len()
    );
    assert!(op[0].detail.ends_with(&cut), "{:?}", op[0].detail);
    assert!(
        op[0].detail.starts_with("\\u{1b}[2J\\u{1b}[2J"),
        "{:?}",
        op[0].detail
    );
    assert!(!op[0].detail.contains(char::is_control));
    assert!(
        op[0].outcome.starts_with("InvalidArgument: name: "),
        "{:?}",
        op[0].outcome
    );
    // At most the bound as sent, each kept control character written in 6 bytes, and the mark.
    assert!(
        size(op[0]) < 4 * (6 * MAX_AUDIT_TEXT_BYTES + 32),
        "{:?}",
        op[0]
    );
}

/// An ended experiment as an earlier daemon recorded it, `i` minutes after `t0_ms`.
fn ended(i: u64, t0_ms: u64) -> ExperimentRow {
    ExperimentRow {
        id: format!("exp-{t0_ms}-00000000-{i}"),
        name: format!("history-{i}"),
        kind: "packet_loss".into(),
        target: "/sys/fs/cgroup/app".into(),
        spec: Vec::new(),
        state: State::Completed,
        // A long reason: the 4 KiB a stored reason keeps, so the history is ~1 MiB.
        reason: "r".repeat(4096),
        started_ms: t0_ms + i * 60_000,
        ended_ms: t0_ms + i * 60_000 + 30_000,
        seen: i,
        matched: i,
        injected: i,
        capped: 0,
        budget: 1.0,
        spent: 0.0,
    }
}

#[test]
fn report_last_follows_every_page_of_a_long_history() {
    let Some(_) = kernel() else { return };
    let dir = TempDir::new("records-pages");
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    // 250 experiments over the last 250 minutes (and one from last week), recorded before
    // the daemon starts.
    let t0_ms = now_ms - 251 * 60_000;
    {
        let state = dir.0.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let store = Store::open(&state).unwrap();
        for i in 0..250 {
            store.insert_experiment(&ended(i, t0_ms)).unwrap();
        }
        store
            .insert_experiment(&ended(0, now_ms - 7 * 24 * 60 * 60 * 1000))
            .unwrap();
    }
    let daemon = Daemon::start(&dir.0);
    // The daemon answers a page: 100 experiments, newest first, and where the next starts.
    let first = block_on(async {
        operator(&daemon)
            .await
            .list_experiments(proto::ListExperimentsRequest {
                since_s: 0,
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(first.experiments.len(), 100);
    assert_eq!(first.experiments[0].name, "history-249");
    let last = ended(150, t0_ms);
    assert_eq!(
        first.next_page_token,
        format!("{}/{}", last.started_ms, last.id)
    );
    // chaos-ctl follows the pages: all 250 of the last five hours, newest first, once each.
    let listed = daemon.json(&["report", "--last", "5h"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..250).rev().map(|i| format!("history-{i}")).collect();
    assert_eq!(names, expected);
    // Without a period: the week-old one too, last.
    let all = daemon.json(&["report", "--last", "30d"]);
    assert_eq!(all.as_array().unwrap().len(), 251);
    // A token the daemon did not make is refused, naming the field.
    let bad = block_on(async {
        operator(&daemon)
            .await
            .list_experiments(proto::ListExperimentsRequest {
                since_s: 0,
                page_size: 10,
                page_token: "\u{1b}[2J".into(),
            })
            .await
            .unwrap_err()
    });
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        bad.message(),
        "page_token: \"\\\\u{1b}[2J\" is not allowed; expected the next_page_token of the \
         previous page, or \"\" for the first"
    );
}

#[test]
fn observers_may_not_resolve_targets_and_are_audited() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("records-validate");
    let cg = TestCgroup::new(&mount, "records-validate");
    let (daemon, addr) = daemon_with_observers(&dir.0, None);
    let missing = mount.join("chaos-no-such-cgroup");
    let denied = |method: &str| format!(" may not call {method}: it needs the Operator role");
    block_on(async {
        let mut c = observer(&addr).await;
        // An existing and a missing target get the same refusal: an observer learns nothing
        // of the node's cgroups (or, with a path prefix, of a container's files).
        for target in [&cg.path, &missing] {
            let s = c
                .validate(proto::ValidateRequest {
                    spec: Some(packet_loss(target)),
                })
                .await
                .unwrap_err();
            assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
            assert!(s.message().ends_with(&denied("Validate")), "{s:?}");
            // A dry run resolves the target as Validate does.
            let s = c
                .start_experiment(proto::StartExperimentRequest {
                    spec: Some(packet_loss(target)),
                    dry_run: true,
                })
                .await
                .unwrap_err();
            assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
        }
        // An operator's Validate resolves the target, and says when there is none.
        let mut op = operator(&daemon).await;
        let plan = op
            .validate(proto::ValidateRequest {
                spec: Some(packet_loss(&cg.path)),
            })
            .await
            .unwrap()
            .into_inner()
            .plan
            .unwrap();
        assert_eq!(Path::new(&plan.cgroup), cg.path);
        let s = op
            .validate(proto::ValidateRequest {
                spec: Some(packet_loss(&missing)),
            })
            .await
            .unwrap_err();
        assert_ne!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    });
    // chaos-ctl's dry run as an observer: refused (3) for the role, as a start is.
    let out = std::process::Command::new(ctl_bin())
        .args(["--daemon", &addr, "experiment", "packet_loss", "--cgroup"])
        .arg(&cg.path)
        .args(["--intensity", "0", "--dry-run"])
        .output()
        .unwrap();
    let (c, err) = failed(&out);
    assert_eq!(c, Some(3), "{err}");
    assert!(
        err.contains(&denied("StartExperiment")) && err.contains("PermissionDenied"),
        "{err}"
    );
    assert_eq!(cg.attached(), 0, "nothing was armed");

    let audit = audit_after(daemon);
    let count = |caller: &str, method: &str, outcome: &str| {
        audit
            .iter()
            .filter(|a| {
                a.caller.starts_with(caller) && a.method == method && a.outcome.starts_with(outcome)
            })
            .count()
    };
    assert_eq!(
        count("refused caller", "Validate", "PermissionDenied"),
        2,
        "{audit:#?}"
    );
    assert_eq!(
        count("refused caller", "StartExperiment", "PermissionDenied"),
        3,
        "{audit:#?}"
    );
    assert_eq!(count("uid 0", "Validate", "ok"), 1, "{audit:#?}");
    assert_eq!(count("uid 0", "Validate", "NotFound"), 1, "{audit:#?}");
}
