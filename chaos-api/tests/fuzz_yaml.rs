//! Fuzzes both YAML parsers: arbitrary strings and mutations of the valid example documents
//! never panic, every error names a path (or concerns the whole document), and every accepted
//! document is valid, reads back unchanged from the proto it converts to, and is admitted or
//! refused with a reason by the default config.
//!
//! Runs for `CHAOS_FUZZ_SECS` seconds (default 3; CI sets 60) and prints how many cases ran.

mod common;

use chaos_api::config::ChaosConfig;
use chaos_api::error::ModelError;
use chaos_api::experiment::Experiment;
use common::fuzz::{Fuzz, check_admission, check_named};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const DOCUMENTS: [&str; 13] = [
    include_str!("../../chaos/experiments/guarded-rollout.yaml"),
    include_str!("../../chaos/experiments/packet-loss.yaml"),
    include_str!("../../chaos/experiments/packet-duplication.yaml"),
    include_str!("../../chaos/experiments/packet-corruption.yaml"),
    include_str!("../../chaos/experiments/dependency-failure.yaml"),
    include_str!("../../chaos/experiments/api-error-injection.yaml"),
    include_str!("../../chaos/experiments/api-error-http.yaml"),
    include_str!("../../chaos/experiments/pod-deletion.yaml"),
    include_str!("../../chaos/experiments/resource-exhaustion.yaml"),
    include_str!("../../chaos/experiments/network-latency.yaml"),
    include_str!("../../chaos/experiments/bandwidth-limit.yaml"),
    include_str!("../../chaos/experiments/file-errors.yaml"),
    include_str!("../../chaos/experiments/database-load.yaml"),
];

/// Values substituted for a scalar: edges of every range, other types, YAML oddities.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "0.5",
    "1.5",
    "-0.0",
    "1e309",
    "-1e309",
    ".nan",
    ".inf",
    "-.inf",
    "~",
    "null",
    "''",
    "\"\"",
    "[]",
    "{}",
    "[1, 2]",
    "{a: 1}",
    "true",
    "no",
    "65535",
    "65536",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "0x10",
    "0o7",
    "0s",
    "1ns",
    "25h",
    "24h",
    "99999999999999999999h",
    "1h 30m",
    "soon",
    "timeout",
    "emergency_stop",
    "ECONNREFUSED",
    "E",
    "133",
    "134",
    "socket",
    "[socket]",
    "[]",
    "'90-80'",
    "'0-0'",
    "80-",
    "-80",
    "0.0.0.0/0",
    "::/0",
    "10.0.0.0/33",
    "&a 1",
    "*a",
    "*nowhere",
    "!!binary aGk=",
    "!custom x",
    "|\n  block",
    ">\n  folded",
    "'unterminated",
    "[",
    "{",
    "a: b: c",
    "\"\\u0000\"",
    "100ms",
    "50ms",
    "0.3",
    "1500us",
    "61s",
    "normal",
    "eth0:1",
    "sixteen-chars-xx",
    "/var/lib/data",
    "/a/../b",
    "[open, fork]",
    "[500, 502, 503, timeout]",
    "[503, 503]",
    "[99, timeout]",
    "\"8080\"",
    "503",
    "wrong",
    "fixed",
    "icmp",
    "packet_duplication",
    "packet_corruption",
    "bandwidth_limit",
    "1mbit",
    "7999bit",
    "101gbit",
    "1.5mbit",
    "10mbps",
    "32kb",
    "17mb",
    "1500",
    "ü",
    "🦀",
    "postgres",
    "redis",
    "row_locks",
    "'db:5432'",
    "'[::1]:6379'",
    "hunter2",
    "[{sql: 'SELECT 1', weight: 0}]",
    "[{sql: ''}]",
    "100000",
    "100001",
    "1001",
    "2.5",
    "[50, 200, 500]",
    "[0, 10]",
    "/etc/chaos/db-password",
    "DB_PASSWORD",
    "database_load",
];

/// One edit of a document. Positions are taken modulo the document's length.
#[derive(Debug, Clone)]
enum Edit {
    Byte {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        text: String,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    DeleteLine {
        line: usize,
    },
    DuplicateLine {
        line: usize,
    },
    SwapLines {
        a: usize,
        b: usize,
    },
    Indent {
        line: usize,
        spaces: usize,
        remove: bool,
    },
    Value {
        line: usize,
        value: usize,
    },
    Key {
        line: usize,
        key: String,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Byte { at, byte }),
        (any::<usize>(), "[ -~\n\t]{1,12}").prop_map(|(at, text)| Edit::Insert { at, text }),
        (any::<usize>(), 1..40usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
        any::<usize>().prop_map(|line| Edit::DeleteLine { line }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
        (any::<usize>(), 1..5usize, any::<bool>()).prop_map(|(line, spaces, remove)| {
            Edit::Indent {
                line,
                spaces,
                remove,
            }
        }),
        (any::<usize>(), any::<usize>()).prop_map(|(line, value)| Edit::Value { line, value }),
        (any::<usize>(), "[a-z_]{1,12}").prop_map(|(line, key)| Edit::Key { line, key }),
    ]
}

/// Index into a collection of `len` items (`len` > 0).
fn pick(index: usize, len: usize) -> usize {
    index % len.max(1)
}

fn apply(document: &str, edit: &Edit) -> String {
    let mut bytes = document.as_bytes().to_vec();
    let mut lines: Vec<String> = document.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match edit {
        Edit::Byte { at, byte } => {
            if !bytes.is_empty() {
                let at = pick(*at, bytes.len());
                bytes[at] = *byte;
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Edit::Insert { at, text } => {
            let at = pick(*at, bytes.len() + 1);
            bytes.splice(at..at, text.bytes());
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Edit::Delete { at, len } => {
            let at = pick(*at, bytes.len() + 1);
            let end = (at + len).min(bytes.len());
            bytes.drain(at..end);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Edit::Truncate { at } => {
            bytes.truncate(pick(*at, bytes.len() + 1));
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Edit::DeleteLine { line } => {
            lines.remove(pick(*line, n));
        }
        Edit::DuplicateLine { line } => {
            let line = pick(*line, n);
            lines.insert(line, lines[line].clone());
        }
        Edit::SwapLines { a, b } => lines.swap(pick(*a, n), pick(*b, n)),
        Edit::Indent {
            line,
            spaces,
            remove,
        } => {
            let line = &mut lines[pick(*line, n)];
            if *remove {
                let strip = line.len() - line.trim_start_matches(' ').len();
                line.drain(..strip.min(*spaces));
            } else {
                line.insert_str(0, &" ".repeat(*spaces));
            }
        }
        Edit::Value { line, value } => {
            let line = &mut lines[pick(*line, n)];
            let value = VALUES[pick(*value, VALUES.len())];
            if let Some(colon) = line.find(": ") {
                line.replace_range(colon + 2.., value);
            } else if let Some(dash) = line.find("- ") {
                line.replace_range(dash + 2.., value);
            }
        }
        Edit::Key { line, key } => {
            let line = &mut lines[pick(*line, n)];
            let start = line.len() - line.trim_start().len();
            if let Some(colon) = line.find(':')
                && colon >= start
            {
                line.replace_range(start..colon, key);
            }
        }
    }
    lines.join("\n")
}

/// `text` without comment lines (so that edits land on keys and values more often).
fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks that `error` names a path, or concerns the whole document.
fn check_error(error: &ModelError) -> Result<(), TestCaseError> {
    if error.path().is_none() {
        prop_assert!(
            error.to_string().starts_with("invalid document: "),
            "{error}"
        );
        return Ok(());
    }
    check_named(error)
}

/// Feeds `text` to both parsers.
fn check(text: &str) -> Result<(), TestCaseError> {
    match ChaosConfig::from_yaml(text) {
        Ok(config) => prop_assert!(config.validate().is_ok()),
        Err(error) => check_error(&error)?,
    }
    match Experiment::from_yaml(text) {
        Ok(experiment) => {
            prop_assert!(experiment.validate().is_ok());
            let spec = experiment.to_proto();
            prop_assert_eq!(&spec.name, &experiment.name);
            // The daemon reads exactly what the file defines; dry_run travels beside the spec.
            let expected = Experiment {
                dry_run: false,
                ..experiment.clone()
            };
            prop_assert_eq!(Experiment::from_proto(&spec), Ok(expected));
            check_admission(&experiment)?;
        }
        Err(error) => check_error(&error)?,
    }
    Ok(())
}

#[test]
fn fuzz_yaml() {
    let config = common::repo_config_inline();
    let documents: Vec<String> = DOCUMENTS
        .iter()
        .copied()
        .chain([config.as_str()])
        .flat_map(|doc| [doc.to_owned(), strip_comments(doc)])
        .collect();
    for document in &documents {
        // Every starting point is valid for one of the two parsers.
        assert!(
            ChaosConfig::from_yaml(document).is_ok() ^ Experiment::from_yaml(document).is_ok(),
            "{document}"
        );
    }
    let arbitrary = prop_oneof![
        any::<String>(),
        "[ a-z_:\\-\\[\\]{},'\"#&*!|>0-9.\n]{0,160}",
    ];
    let mutated = (0..documents.len(), proptest::collection::vec(edit(), 1..6)).prop_map(
        move |(index, edits)| {
            edits
                .iter()
                .fold(documents[index].clone(), |text, edit| apply(&text, edit))
        },
    );

    Fuzz::for_the_budget("fuzz_yaml", 64, |fuzz| {
        fuzz.run("arbitrary input", &arbitrary, |text| check(&text));
        fuzz.run("mutated document", &mutated, |text| check(&text));
    });
}

#[test]
fn pathological_inputs() {
    let deep_flow = "[".repeat(10_000);
    let deep_block: String = (0..300).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n\
                  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n\
                  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n\
                  budget: *g\n";
    let long_scalar = format!("name: {}\n", "a".repeat(100_000));
    let many_cidrs = format!(
        "name: x\ntype: packet_loss\ntarget: {{pid: 1}}\nduration: 1m\nintensity: 0.1\n\
         filter: {{cidrs: [{}]}}\n",
        vec!["10.0.0.0/8"; 1_000].join(", ")
    );
    for text in [
        deep_flow.as_str(),
        &deep_block,
        laughs,
        &long_scalar,
        &many_cidrs,
        "\u{feff}budget: {}",
        "\0",
    ] {
        if let Err(failure) = check(text) {
            panic!("{failure}");
        }
    }
}
