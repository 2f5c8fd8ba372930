//! The measurements of a run (per operation: sent, ok, errors by kind, an HDR latency histogram;
//! connection times) and the JSON lines on stdout that report them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::engines::DbError;
use crate::workload::Op;

/// Latencies above this (one hour) are recorded as this.
const MAX_US: u64 = 3_600_000_000;

/// Everything measured so far; shared by the workers, the progress printer and the end.
pub struct Stats {
    inner: Mutex<Inner>,
}

struct Inner {
    started: Instant,
    rate: f64,
    ops: Vec<OpStats>,
    /// All operations since the last progress line.
    window: Histogram<u64>,
    connect: Histogram<u64>,
    /// Tickets never sent because the run was stopped first.
    abandoned: u64,
}

struct OpStats {
    name: String,
    sql: Option<String>,
    sent: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 3 significant digits from 1 us to MAX_US: the bounds are valid, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(MAX_US)
        .clamp(1, MAX_US)
}

/// `p50_us`, `p95_us`, `p99_us`, `max_us` of a histogram (null when it is empty).
fn percentiles(h: &Histogram<u64>) -> [(&'static str, Value); 4] {
    let at = |q: f64| {
        if h.is_empty() {
            Value::Null
        } else {
            json!(h.value_at_quantile(q))
        }
    };
    [
        ("p50_us", at(0.50)),
        ("p95_us", at(0.95)),
        ("p99_us", at(0.99)),
        (
            "max_us",
            if h.is_empty() {
                Value::Null
            } else {
                json!(h.max())
            },
        ),
    ]
}

fn add_errors(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (kind, n) in from {
        *into.entry(kind.clone()).or_default() += n;
    }
}

impl Stats {
    pub fn new(ops: &[Op], rate: f64) -> Stats {
        Stats {
            inner: Mutex::new(Inner {
                started: Instant::now(),
                rate,
                ops: ops
                    .iter()
                    .map(|op| OpStats {
                        name: op.name.clone(),
                        sql: op.sql.clone(),
                        sent: 0,
                        ok: 0,
                        errors: BTreeMap::new(),
                        latency: histogram(),
                    })
                    .collect(),
                window: histogram(),
                connect: histogram(),
                abandoned: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking worker cannot leave the counters half-updated in a way that matters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Restarts the clock of `elapsed_ms` (at the start of the load).
    pub fn start(&self) {
        self.lock().started = Instant::now();
    }

    pub fn set_rate(&self, rate: f64) {
        self.lock().rate = rate;
    }

    pub fn sent(&self, op: usize) {
        self.lock().ops[op].sent += 1;
    }

    pub fn abandoned(&self) {
        self.lock().abandoned += 1;
    }

    /// The end of one query: its latency from its intended start, and its result.
    pub fn finished(&self, op: usize, latency: Duration, result: Result<(), &DbError>) {
        let us = micros(latency);
        let mut inner = self.lock();
        inner.window.saturating_record(us);
        let stats = &mut inner.ops[op];
        stats.latency.saturating_record(us);
        match result {
            Ok(()) => stats.ok += 1,
            Err(e) => *stats.errors.entry(e.kind.clone()).or_default() += 1,
        }
    }

    /// Time to connect and authenticate one connection.
    pub fn connected(&self, took: Duration) {
        self.lock().connect.saturating_record(micros(took));
    }

    /// The `progress` line: counts since the start, percentiles of the last interval.
    pub fn progress(&self) -> Value {
        let mut inner = self.lock();
        let mut errors = BTreeMap::new();
        for op in &inner.ops {
            add_errors(&mut errors, &op.errors);
        }
        let mut line = json!({
            "event": "progress",
            "elapsed_ms": u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "rate": inner.rate,
            "sent": inner.ops.iter().map(|op| op.sent).sum::<u64>(),
            "ok": inner.ops.iter().map(|op| op.ok).sum::<u64>(),
            "errors": errors,
            "connect_p95_us": connect_p95(&inner.connect),
        });
        for (key, value) in percentiles(&inner.window) {
            line[key] = value;
        }
        inner.window.reset();
        line
    }

    /// The `done` line: totals and per-operation figures since the start.
    pub fn done(&self, stop_reason: &str) -> Value {
        let inner = self.lock();
        let mut total = histogram();
        let mut errors = BTreeMap::new();
        let mut statements = Vec::new();
        for op in &inner.ops {
            // Same bounds, so adding cannot fail.
            let _ = total.add(&op.latency);
            add_errors(&mut errors, &op.errors);
            let mut s = json!({
                "name": op.name,
                "sent": op.sent,
                "ok": op.ok,
                "errors": op.errors,
            });
            if let Some(sql) = &op.sql {
                s["sql"] = json!(sql);
            }
            for (key, value) in percentiles(&op.latency) {
                s[key] = value;
            }
            statements.push(s);
        }
        let elapsed = inner.started.elapsed();
        let sent: u64 = inner.ops.iter().map(|op| op.sent).sum();
        let mut line = json!({
            "event": "done",
            "stop_reason": stop_reason,
            "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "rate": inner.rate,
            "sent": sent,
            "ok": inner.ops.iter().map(|op| op.ok).sum::<u64>(),
            "errors": errors,
            "abandoned": inner.abandoned,
            "achieved_qps": sent as f64 / elapsed.as_secs_f64().max(1e-9),
            "connections_opened": inner.connect.len(),
            "connect_p95_us": connect_p95(&inner.connect),
            "statements": statements,
        });
        for (key, value) in percentiles(&total) {
            line[key] = value;
        }
        line
    }
}

fn connect_p95(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        Value::Null
    } else {
        json!(h.value_at_quantile(0.95))
    }
}

/// Writes one JSON line on stdout.
pub fn emit(line: &Value) {
    let mut out = std::io::stdout().lock();
    // stdout closed by the reader: the run goes on (its end cleans up), the figures are lost.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Engine, Profile, Spec, Workload};
    use crate::workload::Plan;

    #[test]
    fn percentiles_are_ordered_and_errors_counted_by_kind() {
        let spec = Spec {
            engine: Engine::Redis,
            address: "127.0.0.1:1".into(),
            database: String::new(),
            user: String::new(),
            password_file: None,
            password_env: None,
            workload: Workload::Profile(Profile::PointReads),
            rate: 10.0,
            concurrency: 1,
            duration_ms: 1,
            max_queries: None,
            scratch: "x".into(),
            lock_hold_ms: 100,
        };
        let stats = Stats::new(&Plan::new(&spec).ops, 10.0);
        for us in 1..=1000u64 {
            stats.sent(0);
            stats.finished(0, Duration::from_micros(us), Ok(()));
        }
        stats.sent(0);
        stats.finished(0, Duration::from_millis(5), Err(&DbError::timeout("query")));
        stats.connected(Duration::from_micros(300));
        let progress = stats.progress();
        assert_eq!(progress["sent"], 1001);
        assert_eq!(progress["ok"], 1000);
        assert_eq!(progress["errors"]["timeout"], 1);
        let p50 = progress["p50_us"].as_u64().unwrap();
        let p99 = progress["p99_us"].as_u64().unwrap();
        assert!((495..=505).contains(&p50) && p50 <= p99, "{progress}");
        // The window restarts with every progress line; the totals do not.
        assert_eq!(stats.progress()["p50_us"], Value::Null);
        let done = stats.done("duration");
        assert_eq!(done["statements"][0]["name"], "point_read");
        assert_eq!(done["max_us"], 5003);
        assert_eq!(done["connect_p95_us"], 300);
    }
}
