//! Experiment definitions of `database_load`: the example converts to the proto and back, the
//! defaults (intensity 1, 8 connections, weight 1, the ramp's first step as the rate), the one
//! target, and every rejection names its path, its value and what is allowed.

mod common;

use common::{experiment_rejected_at as rejected_at, parse};

use std::path::PathBuf;

use chaos_api::config::{ChaosConfig, Price, SecretSource};
use chaos_api::error::ModelError;
use chaos_api::experiment::{
    DatabaseLoad, Engine, Experiment, ExperimentType, Fault, Profile, Statement, Workload,
};
use chaos_api::proto::{self, fault::Kind as FaultKind};

const DATABASE_LOAD: &str = include_str!("../../chaos/experiments/database-load.yaml");

/// The smallest valid database load: a profile at a rate, the other keys defaulted.
const LOAD: &str = "\
name: db-load
type: database_load
target:
  pid: 4242
duration: 1m
";

const FAULT: &str = "fault:\n  engine: postgres\n  address: db.shop.svc:5432\n  user: app\n";

/// [`LOAD`] with `fault` lines (indented by two) after the engine, address and user, and
/// `extra` top-level lines.
fn load_with(fault: &str, extra: &str) -> String {
    format!("{LOAD}{extra}{FAULT}{fault}")
}

fn load_of(experiment: &Experiment) -> &DatabaseLoad {
    match &experiment.fault {
        Fault::DatabaseLoad(load) => load,
        other => panic!("not a database load: {other:?}"),
    }
}

/// Asserts an Invalid error at `path` showing `value` and allowing something with `allowed`.
fn invalid_at(text: &str, path: &str, value: &str, allowed: &str) {
    let error = rejected_at(text, path);
    let ModelError::Invalid {
        value: shown,
        allowed: what,
        ..
    } = &error
    else {
        panic!("expected an invalid value at {path}: {error}");
    };
    assert_eq!(shown, value, "{error}");
    assert!(what.contains(allowed), "{allowed:?} missing in: {error}");
}

#[test]
fn the_example_converts_to_the_proto_and_back() {
    let experiment = parse(DATABASE_LOAD);
    assert_eq!(experiment.kind(), ExperimentType::DatabaseLoad);
    assert_eq!(experiment.intensity, 1.0);
    let load = load_of(&experiment);
    assert_eq!(
        *load,
        DatabaseLoad {
            engine: Engine::Postgres,
            address: "orders-db.shop.svc:5432".to_owned(),
            database: Some("orders".to_owned()),
            user: Some("chaos_load".to_owned()),
            password: Some(SecretSource::File(PathBuf::from(
                "/etc/chaos/orders-db-password"
            ))),
            workload: Workload::Profile(Profile::PointReads),
            // The ramp's first step.
            rate: 50.0,
            concurrency: 16,
            network_namespace_of_target: false,
        }
    );
    let spec = experiment.to_proto();
    assert_eq!(
        spec.fault.as_ref().and_then(|f| f.kind.clone()),
        Some(FaultKind::DatabaseLoad(proto::DatabaseLoad {
            engine: "postgres".to_owned(),
            address: "orders-db.shop.svc:5432".to_owned(),
            database: "orders".to_owned(),
            user: "chaos_load".to_owned(),
            password_file: "/etc/chaos/orders-db-password".to_owned(),
            password_env: String::new(),
            profile: "point_reads".to_owned(),
            statements: Vec::new(),
            rate_qps: Some(50.0),
            concurrency: Some(16),
            network_namespace_of_target: false,
        }))
    );
    assert_eq!(spec.intensity, Some(1.0));
    assert_eq!(spec.filter, None);
    assert_eq!(
        spec.ramp.as_ref().map(|r| r.steps.clone()),
        Some(vec![50.0, 200.0, 500.0])
    );
    assert_eq!(Experiment::from_proto(&spec).unwrap(), experiment);
    // The default config admits it at its price: 50.0 at 0.001 a query.
    let admission = ChaosConfig::default().admit(&experiment).unwrap();
    assert_eq!(
        (admission.price, admission.max_faults),
        (Price::PerQuery(0.001), 50_000)
    );
}

#[test]
fn defaults_and_statements() {
    let experiment = parse(&load_with("  profile: writes\n  rate: 200\n", ""));
    assert_eq!(experiment.intensity, 1.0, "intensity defaults to 1");
    let load = load_of(&experiment);
    assert_eq!(load.concurrency, 8);
    assert_eq!(load.database, None);
    assert_eq!(load.password, None);
    assert!(!load.network_namespace_of_target);
    assert_eq!(load.rate, 200.0);
    // Statements, weighted (default 1), a fractional rate, a password from the environment,
    // and Redis without a user with its database index.
    let text = format!(
        "{LOAD}fault:\n  engine: redis\n  address: '[fd00::7]:6379'\n  database: 3\n  \
         password_env: REDIS_PASSWORD\n  rate: 2.5\n  concurrency: 1\n  \
         network_namespace_of_target: true\n  statements:\n    - {{sql: 'GET k', weight: 3}}\n    \
         - sql: 'INCR n'\n"
    );
    let experiment = parse(&text);
    let load = load_of(&experiment);
    assert_eq!(load.engine, Engine::Redis);
    assert_eq!(load.user, None);
    assert_eq!(load.database.as_deref(), Some("3"));
    assert_eq!(
        load.password,
        Some(SecretSource::Env("REDIS_PASSWORD".to_owned()))
    );
    assert_eq!(load.rate, 2.5);
    assert!(load.network_namespace_of_target);
    assert_eq!(
        load.workload,
        Workload::Statements(vec![
            Statement {
                sql: "GET k".to_owned(),
                weight: 3
            },
            Statement {
                sql: "INCR n".to_owned(),
                weight: 1
            },
        ])
    );
    let spec = experiment.to_proto();
    let Some(FaultKind::DatabaseLoad(message)) = spec.fault.as_ref().and_then(|f| f.kind.clone())
    else {
        panic!("{spec:?}")
    };
    assert_eq!(message.profile, "");
    assert_eq!(
        message.statements,
        [
            proto::Statement {
                sql: "GET k".to_owned(),
                weight: 3
            },
            proto::Statement {
                sql: "INCR n".to_owned(),
                weight: 1
            }
        ]
    );
    assert_eq!(Experiment::from_proto(&spec).unwrap(), experiment);
    // The message's unset values are the defaults: concurrency 8.
    let mut bare = spec.clone();
    if let Some(proto::Fault {
        kind: Some(FaultKind::DatabaseLoad(m)),
    }) = &mut bare.fault
    {
        m.concurrency = None;
    }
    assert_eq!(
        load_of(&Experiment::from_proto(&bare).unwrap()).concurrency,
        8
    );
}

#[test]
fn a_ramp_steps_the_rate() {
    let ramp = "ramp: {steps: [50, 200, 500], hold: 10s}\n";
    let experiment = parse(&load_with("  profile: point_reads\n", ramp));
    assert_eq!(load_of(&experiment).rate, 50.0);
    assert_eq!(experiment.intensity, 1.0);
    // The rate may be given, as the first step.
    parse(&load_with("  profile: point_reads\n  rate: 50\n", ramp));
    let error = rejected_at(
        &load_with("  profile: point_reads\n  rate: 100\n", ramp),
        "fault.rate",
    );
    assert_eq!(
        error.to_string(),
        "fault.rate: 100 is not allowed; expected the ramp's first step (50 queries per second) \
         or no rate: a ramp sets it"
    );
    // Steps are rates: more than 0 and at most 100000, not probabilities.
    for (steps, bad, shown) in [
        ("[0, 10]", 0, "0"),
        ("[10, 100001]", 1, "100001"),
        ("[10, -1]", 1, "-1"),
    ] {
        invalid_at(
            &load_with(
                "  profile: point_reads\n",
                &format!("ramp: {{steps: {steps}, hold: 10s}}\n"),
            ),
            &format!("ramp.steps[{bad}]"),
            shown,
            "queries per second, more than 0 and at most 100000",
        );
    }
    // Over the wire, an unset rate is the ramp's first step too.
    let spec = experiment.to_proto();
    let mut unset = spec.clone();
    if let Some(proto::Fault {
        kind: Some(FaultKind::DatabaseLoad(m)),
    }) = &mut unset.fault
    {
        m.rate_qps = None;
    }
    assert_eq!(Experiment::from_proto(&unset).unwrap(), experiment);
}

#[test]
fn required_keys_name_themselves() {
    let missing = |text: &str, path: &str, words: &str| {
        let error = rejected_at(text, path);
        assert!(
            matches!(error, ModelError::Parse { .. }) && error.to_string().contains(words),
            "{error}"
        );
    };
    missing(
        &format!("{LOAD}fault: {{address: 'db:5432', user: a, profile: writes, rate: 1}}\n"),
        "fault.engine",
        "required field is missing (postgres, mysql or redis)",
    );
    missing(
        &format!("{LOAD}fault: {{engine: mysql, user: a, profile: writes, rate: 1}}\n"),
        "fault.address",
        "HOST:PORT",
    );
    missing(
        &load_with("  rate: 10\n", ""),
        "fault.profile",
        "fault.profile (point_reads, range_scans, writes, row_locks or connection_storm) or \
         fault.statements",
    );
    missing(
        &load_with("  profile: writes\n", ""),
        "fault.rate",
        "queries per second",
    );
    missing(
        &format!("{LOAD}fault: {{engine: mysql, address: 'db:3306', profile: writes, rate: 1}}\n"),
        "fault.user",
        "mysql needs the user to connect as",
    );
    missing(LOAD, "fault.engine", "required");
}

#[test]
fn a_password_is_never_inline() {
    let error = rejected_at(
        &load_with("  profile: writes\n  rate: 10\n  password: hunter2\n", ""),
        "fault.password",
    );
    let shown = error.to_string();
    assert!(
        shown.contains("fault.password_file") && shown.contains("fault.password_env"),
        "{shown}"
    );
    assert!(
        !shown.contains("hunter2"),
        "the password is not echoed: {shown}"
    );
    invalid_at(
        &load_with(
            "  profile: writes\n  rate: 10\n  password_file: /p\n  password_env: P\n",
            "",
        ),
        "fault.password_env",
        "\"P\"",
        "fault.password_file is set too",
    );
    invalid_at(
        &load_with(
            "  profile: writes\n  rate: 10\n  password_file: secrets/db\n",
            "",
        ),
        "fault.password_file",
        "\"secrets/db\"",
        "an absolute path",
    );
    invalid_at(
        &load_with(
            "  profile: writes\n  rate: 10\n  password_env: 1DB-PASS\n",
            "",
        ),
        "fault.password_env",
        "\"1DB-PASS\"",
        "an environment variable name",
    );
    // Other types have no password key at all.
    let error = rejected_at(
        &format!("{LOAD}fault: {{password: x}}\n").replace("database_load", "pod_deletion"),
        "fault.password",
    );
    assert!(
        error
            .to_string()
            .contains("unknown field `password` for type pod_deletion"),
        "{error}"
    );
}

#[test]
fn every_bad_value_names_its_path() {
    let fault = |extra: &str| load_with(&format!("  profile: writes\n  rate: 10\n{extra}"), "");
    let with = |engine: &str, address: &str, extra: &str| {
        format!(
            "{LOAD}fault:\n  engine: {engine}\n  address: '{address}'\n  user: a\n  rate: 10\n{extra}"
        )
    };
    invalid_at(
        &with("oracle", "db:1521", "  profile: writes\n"),
        "fault.engine",
        "\"oracle\"",
        "one of postgres, mysql, redis",
    );
    for address in [
        "db",
        "db:0",
        "db:65536",
        ":5432",
        "db :5432",
        "fd00::1:5432",
        "[db]:5432",
    ] {
        invalid_at(
            &with("postgres", address, "  profile: writes\n"),
            "fault.address",
            &format!("{address:?}"),
            "HOST:PORT",
        );
    }
    parse(&with("postgres", "10.0.3.7:5432", "  profile: writes\n"));
    invalid_at(
        &with("postgres", "db:5432", "  profile: sleepy\n"),
        "fault.profile",
        "\"sleepy\"",
        "one of point_reads, range_scans, writes, row_locks, connection_storm",
    );
    invalid_at(
        &with("redis", "cache:6379", "  profile: row_locks\n"),
        "fault.profile",
        "row_locks",
        "Redis has no row locks",
    );
    parse(&with("mysql", "db:3306", "  profile: row_locks\n"));
    invalid_at(
        &with(
            "redis",
            "cache:6379",
            "  profile: writes\n  database: orders\n",
        ),
        "fault.database",
        "\"orders\"",
        "a database index, 0 to 65535",
    );
    invalid_at(
        &fault("  database: ''\n"),
        "fault.database",
        "\"\"",
        "a database name",
    );
    invalid_at(
        &fault(&format!("  database: {}\n", "d".repeat(65))),
        "fault.database",
        &format!("{:?}", "d".repeat(65)),
        "1 to 64 bytes",
    );
    invalid_at(
        &with("postgres", "db:5432", "  profile: writes\n").replace("user: a", "user: ''"),
        "fault.user",
        "\"\"",
        "a user name",
    );
    for (rate, shown) in [
        ("0", "0"),
        ("-5", "-5"),
        ("100001", "100001"),
        (".nan", "NaN"),
    ] {
        invalid_at(
            &load_with(&format!("  profile: writes\n  rate: {rate}\n"), ""),
            "fault.rate",
            shown,
            "queries per second, more than 0 and at most 100000",
        );
    }
    invalid_at(
        &load_with("  profile: writes\n  rate: fast\n", ""),
        "fault.rate",
        "\"fast\"",
        "queries per second",
    );
    for (concurrency, shown) in [("0", "0"), ("1001", "1001")] {
        invalid_at(
            &fault(&format!("  concurrency: {concurrency}\n")),
            "fault.concurrency",
            shown,
            "1 to 1000 connections",
        );
    }
    rejected_at(&fault("  concurrency: -1\n"), "fault.concurrency");
    rejected_at(
        &fault("  network_namespace_of_target: maybe\n"),
        "fault.network_namespace_of_target",
    );
}

#[test]
fn statements_are_checked_one_by_one() {
    let statements = |list: &str| load_with(&format!("  rate: 10\n  statements: {list}\n"), "");
    invalid_at(
        &statements("[]"),
        "fault.statements",
        "0 statements",
        "1 to 16 statements",
    );
    let many: Vec<String> = (0..17).map(|i| format!("{{sql: 'SELECT {i}'}}")).collect();
    invalid_at(
        &statements(&format!("[{}]", many.join(", "))),
        "fault.statements",
        "17 statements",
        "1 to 16 statements",
    );
    invalid_at(
        &statements("[{sql: 'SELECT 1'}, {sql: 'SELECT 2'}, {sql: 'SELECT 3', weight: 0}]"),
        "fault.statements[2].weight",
        "0",
        "at least 1",
    );
    invalid_at(
        &statements("[{sql: 'SELECT 1'}, {sql: '  '}]"),
        "fault.statements[1].sql",
        "\"  \"",
        "a statement of 1 to 4096 bytes",
    );
    let long = "x".repeat(4097);
    let error = rejected_at(
        &statements(&format!("[{{sql: '{long}'}}]")),
        "fault.statements[0].sql",
    );
    assert!(
        error.to_string().contains("a statement of 1 to 4096 bytes"),
        "{error}"
    );
    parse(&statements(&format!("[{{sql: '{}'}}]", "x".repeat(4096))));
    rejected_at(
        &statements("[{sql: 'SELECT 1', weight: -1}]"),
        "fault.statements[0].weight",
    );
    rejected_at(&statements("[{weight: 2}]"), "fault.statements[0].sql");
    rejected_at(
        &statements("[{sql: 'SELECT 1', params: [1]}]"),
        "fault.statements[0].params",
    );
    invalid_at(
        &load_with(
            "  rate: 10\n  profile: writes\n  statements: [{sql: 'SELECT 1'}]\n",
            "",
        ),
        "fault.statements",
        "statements and a profile",
        "either fault.profile or fault.statements, not both",
    );
}

#[test]
fn one_target_no_filter_and_intensity_one() {
    let text = load_with("  profile: writes\n  rate: 10\n", "");
    let targets = text.replace("target:\n  pid: 4242\n", "targets: [{pid: 1}, {pid: 2}]\n");
    invalid_at(
        &targets,
        "targets",
        "2 targets",
        "exactly one target for database_load",
    );
    let error = rejected_at(
        &text.replace("duration: 1m\n", "duration: 1m\nfilter: {protocol: tcp}\n"),
        "filter",
    );
    assert!(
        error.to_string().contains("no filter for database_load"),
        "{error}"
    );
    invalid_at(
        &text.replace("duration: 1m\n", "duration: 1m\nintensity: 0.5\n"),
        "intensity",
        "0.5",
        "1 or omitted: database_load sends every query",
    );
    parse(&text.replace("duration: 1m\n", "duration: 1m\nintensity: 1\n"));
    // The other types' keys are not database_load's, and its keys not theirs.
    let error = rejected_at(
        &load_with("  profile: writes\n  rate: 10\n  latency: 5ms\n", ""),
        "fault.latency",
    );
    assert!(
        error
            .to_string()
            .contains("unknown field `latency` for type database_load, expected `engine`"),
        "{error}"
    );
    rejected_at(
        &format!("{LOAD}fault: {{engine: postgres}}\n").replace("database_load", "network_latency"),
        "fault.engine",
    );
}

#[test]
fn the_message_is_judged_as_the_file() {
    let experiment = parse(&load_with("  profile: writes\n  rate: 10\n", ""));
    let spec = experiment.to_proto();
    let with = |edit: &dyn Fn(&mut proto::DatabaseLoad)| {
        let mut spec = spec.clone();
        if let Some(proto::Fault {
            kind: Some(FaultKind::DatabaseLoad(m)),
        }) = &mut spec.fault
        {
            edit(m);
        }
        Experiment::from_proto(&spec)
    };
    common::rejected_at(with(&|m| m.engine = "db2".into()), "fault.engine");
    common::rejected_at(with(&|m| m.engine.clear()), "fault.engine");
    common::rejected_at(with(&|m| m.address = "db".into()), "fault.address");
    common::rejected_at(with(&|m| m.user.clear()), "fault.user");
    common::rejected_at(with(&|m| m.profile.clear()), "fault.profile");
    common::rejected_at(with(&|m| m.rate_qps = Some(-1.0)), "fault.rate");
    common::rejected_at(with(&|m| m.rate_qps = Some(0.0)), "fault.rate");
    common::rejected_at(with(&|m| m.rate_qps = None), "fault.rate");
    common::rejected_at(with(&|m| m.concurrency = Some(5000)), "fault.concurrency");
    common::rejected_at(with(&|m| m.concurrency = Some(0)), "fault.concurrency");
    common::rejected_at(
        with(&|m| {
            m.password_file = "/p".into();
            m.password_env = "P".into();
        }),
        "fault.password_env",
    );
    common::rejected_at(
        with(&|m| {
            m.profile.clear();
            m.statements = vec![proto::Statement {
                sql: "SELECT 1".into(),
                weight: 0,
            }];
        }),
        "fault.statements[0].weight",
    );
    common::rejected_at(
        with(&|m| {
            m.statements = vec![proto::Statement {
                sql: "SELECT 1".into(),
                weight: 1,
            }];
        }),
        "fault.statements",
    );
    assert_eq!(with(&|_| {}).unwrap(), experiment);
}
