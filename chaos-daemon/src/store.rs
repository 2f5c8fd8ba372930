//! The daemon's durable state in SQLite (rusqlite, bundled) under the state directory:
//! experiments, their event timeline, counter snapshots, guard samples and database load samples,
//! the audit log of who asked for what, and the journal of host changes (state that outlives
//! the process; see [`crate::journal`]).
//!
//! Writes are small and synchronous; the file survives a SIGKILL (WAL mode). At start-up
//! [`Store::abort_running`] marks experiments that were running when the daemon died, and
//! [`Store::latch`] tells whether the emergency stop was latched (it stays latched across
//! restarts until cleared).
//!
//! Everything it keeps is bounded: every text is cut to a bound as it is written
//! ([`MAX_AUDIT_TEXT_BYTES`] for an audit entry's fields, [`MAX_RECORD_TEXT_BYTES`] for an
//! experiment's name, target and reason and an event's message), a running experiment keeps at
//! most [`MAX_SNAPSHOTS`] counter snapshots and as many load samples (thinned, never its first
//! or last), experiments are
//! read a page at a time ([`Store::experiments_page`]), and [`Store::prune`] deletes what is
//! older than the retention.

use std::path::Path;

use chaos_api::{error::cut_and_escape, state::State};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::{
    experiment::now_ms,
    journal::{ChangeKind, HostChange, HostJournal, JournalEntry, JournalError},
    sync::lock,
};

/// Store errors carry what was being done.
#[derive(Debug, thiserror::Error)]
#[error("state store: {what}: {source}")]
pub struct StoreError {
    what: &'static str,
    source: rusqlite::Error,
}

trait Ctx<T> {
    fn ctx(self, what: &'static str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError { what, source })
    }
}

/// An experiment as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentRow {
    pub id: String,
    pub name: String,
    /// The experiment type as users write it, e.g. `dependency_failure`.
    pub kind: String,
    pub target: String,
    /// The experiment as it ran (protobuf bytes of `chaos.v1.ExperimentSpec`, with the
    /// config's defaults filled in).
    pub spec: Vec<u8>,
    pub state: State,
    pub reason: String,
    pub started_ms: u64,
    pub ended_ms: u64,
    pub seen: u64,
    pub matched: u64,
    pub injected: u64,
    pub capped: u64,
    /// Money reserved for the experiment (its fault cap is derived from it).
    pub budget: f64,
    /// Money spent: faults injected x cost per fault.
    pub spent: f64,
}

/// Kernel counters of a running experiment at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotRow {
    pub at_ms: u64,
    pub seen: u64,
    pub matched: u64,
    pub injected: u64,
    pub capped: u64,
}

/// One entry of an experiment's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub at_ms: u64,
    pub kind: String,
    pub message: String,
}

/// One guard's value at one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardSampleRow {
    pub at_ms: u64,
    pub guard: String,
    pub kind: String,
    pub objective: String,
    pub threshold: f64,
    pub value: Option<f64>,
    pub ok: bool,
}

/// A database load's figures at one second of its run (its runner's line).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadSampleRow {
    pub at_ms: u64,
    /// The rate in force, in queries per second.
    pub rate: f64,
    /// Queries per second sent over the last second.
    pub qps: f64,
    /// Latency percentiles of the last second, in microseconds; `None` when nothing finished.
    pub p50_us: Option<u64>,
    pub p95_us: Option<u64>,
    pub p99_us: Option<u64>,
    /// Queries sent and failed since the start.
    pub sent: u64,
    pub failed: u64,
}

/// The guard violation that rolled an experiment back.
#[derive(Clone, Debug, PartialEq)]
pub struct RollbackRow {
    pub guard: String,
    pub value: Option<f64>,
    pub objective: String,
    /// Unix time of the violating observation, in milliseconds.
    pub observed_ms: u64,
    /// From the evaluation that saw it until the kernel was disarmed, in microseconds.
    pub disarm_us: u64,
    /// From the violating observation until the kernel was disarmed, in microseconds (0 in
    /// records made before it was kept).
    pub observation_us: u64,
}

/// The emergency-stop latch as stored: why and since when. At most one; it outlives the daemon
/// process until cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatchRow {
    pub reason: String,
    /// Unix time of the emergency stop, in milliseconds.
    pub at_ms: u64,
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub at_ms: u64,
    pub caller: String,
    pub method: String,
    pub detail: String,
    pub outcome: String,
}

/// The most bytes of a caller's text an audit entry's caller, method, detail and outcome each
/// keep (as sent; [`cut_and_escape`] marks a cut and escapes control characters): room for an
/// emergency stop's whole reason (512 bytes and its mark), not for a request's body.
pub const MAX_AUDIT_TEXT_BYTES: usize = 1024;

/// The most bytes an experiment's name, target and reason and a timeline event's message keep
/// (a cgroup path is at most 4096 bytes; the model allows names of 63).
pub const MAX_RECORD_TEXT_BYTES: usize = 4096;

/// The most counter snapshots (and load samples) one experiment keeps: past it every second one
/// is deleted (the first and the newest kept), so a long experiment's chart keeps its whole span
/// at half the resolution.
pub const MAX_SNAPSHOTS: usize = 10_000;

/// Where a page of experiments starts: right after this experiment in the newest-first order
/// (by start, then id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageKey {
    pub started_ms: u64,
    pub id: String,
}

impl PageKey {
    /// The key of `row`.
    pub fn of(row: &ExperimentRow) -> Self {
        Self {
            started_ms: row.started_ms,
            id: row.id.clone(),
        }
    }

    /// The key as a page token: `<started_ms>/<id>`.
    pub fn token(&self) -> String {
        format!("{}/{}", self.started_ms, self.id)
    }

    /// The key a [`PageKey::token`] holds; `None` for anything else.
    pub fn from_token(token: &str) -> Option<Self> {
        let (ms, id) = token.split_once('/')?;
        let started_ms = ms.parse().ok()?;
        let id_ok = !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        id_ok.then(|| Self {
            started_ms,
            id: id.to_owned(),
        })
    }
}

/// How many rows [`Store::prune`] deleted, by table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub experiments: usize,
    pub events: usize,
    pub snapshots: usize,
    pub guard_samples: usize,
    pub load_samples: usize,
    pub audit: usize,
    pub journal: usize,
}

impl Pruned {
    /// Rows deleted in all.
    pub fn total(&self) -> usize {
        self.experiments
            + self.events
            + self.snapshots
            + self.guard_samples
            + self.load_samples
            + self.audit
            + self.journal
    }
}

pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, fault TEXT NOT NULL, target TEXT NOT NULL,
    spec BLOB NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    started_ms INTEGER NOT NULL, ended_ms INTEGER NOT NULL DEFAULT 0,
    seen INTEGER NOT NULL DEFAULT 0, matched INTEGER NOT NULL DEFAULT 0,
    injected INTEGER NOT NULL DEFAULT 0, capped INTEGER NOT NULL DEFAULT 0,
    budget REAL NOT NULL DEFAULT 0, spent REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS experiments_by_start ON experiments (started_ms, id);
CREATE TABLE IF NOT EXISTS snapshots (
    experiment_id TEXT NOT NULL, at_ms INTEGER NOT NULL, seen INTEGER NOT NULL,
    matched INTEGER NOT NULL, injected INTEGER NOT NULL, capped INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS snapshots_by_experiment ON snapshots (experiment_id, at_ms);
CREATE TABLE IF NOT EXISTS events (
    experiment_id TEXT NOT NULL, at_ms INTEGER NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_experiment ON events (experiment_id, at_ms);
CREATE TABLE IF NOT EXISTS guard_samples (
    experiment_id TEXT NOT NULL, at_ms INTEGER NOT NULL, guard TEXT NOT NULL, kind TEXT NOT NULL,
    objective TEXT NOT NULL, threshold REAL NOT NULL, value REAL, ok INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS guard_samples_by_experiment ON guard_samples (experiment_id, at_ms);
CREATE TABLE IF NOT EXISTS load_samples (
    experiment_id TEXT NOT NULL, at_ms INTEGER NOT NULL, rate REAL NOT NULL, qps REAL NOT NULL,
    p50_us INTEGER, p95_us INTEGER, p99_us INTEGER, sent INTEGER NOT NULL,
    failed INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS load_samples_by_experiment ON load_samples (experiment_id, at_ms);
CREATE TABLE IF NOT EXISTS rollbacks (
    experiment_id TEXT PRIMARY KEY, guard TEXT NOT NULL, value REAL, objective TEXT NOT NULL,
    observed_ms INTEGER NOT NULL, disarm_us INTEGER NOT NULL,
    observation_us INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS audit (
    at_ms INTEGER NOT NULL, caller TEXT NOT NULL, method TEXT NOT NULL, detail TEXT NOT NULL,
    outcome TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at_ms);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id TEXT NOT NULL, kind TEXT NOT NULL,
    path TEXT NOT NULL, old_value TEXT NOT NULL, applied_ms INTEGER NOT NULL,
    restored_ms INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS emergency_stop (
    id INTEGER PRIMARY KEY CHECK (id = 1), reason TEXT NOT NULL, at_ms INTEGER NOT NULL);
";

const EXPERIMENT_COLUMNS: &str = "id, name, fault, target, spec, state, reason, started_ms, \
     ended_ms, seen, matched, injected, capped, budget, spent";

impl Store {
    /// Opens (creating if needed) `state.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(dir.join("state.db")).ctx("opening state.db")?;
        Self::with_schema(conn)
    }

    /// A store that lives in memory only (for tests of the lifecycle).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().ctx("opening an in-memory store")?;
        Self::with_schema(conn)
    }

    /// Creates what is missing of the schema, columns added since a table was made included.
    fn with_schema(conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(SCHEMA).ctx("creating the schema")?;
        let has_observation = conn
            .prepare("SELECT 1 FROM pragma_table_info('rollbacks') WHERE name = 'observation_us'")
            .and_then(|mut q| q.exists([]))
            .ctx("reading the rollbacks table's columns")?;
        if !has_observation {
            conn.execute_batch(
                "ALTER TABLE rollbacks ADD COLUMN observation_us INTEGER NOT NULL DEFAULT 0",
            )
            .ctx("adding rollbacks.observation_us")?;
        }
        Ok(Self { conn })
    }

    pub fn insert_experiment(&self, e: &ExperimentRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!("INSERT INTO experiments ({EXPERIMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
                params![
                    e.id, record_text(&e.name), e.kind, record_text(&e.target), e.spec,
                    e.state.as_str(), record_text(&e.reason), e.started_ms as i64,
                    e.ended_ms as i64, e.seen as i64, e.matched as i64, e.injected as i64,
                    e.capped as i64, e.budget, e.spent
                ],
            )
            .ctx("inserting an experiment")?;
        Ok(())
    }

    /// Records how an experiment ended, with its final counters.
    pub fn finish_experiment(&self, e: &ExperimentRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE experiments SET state = ?2, reason = ?3, ended_ms = ?4, seen = ?5, \
                 matched = ?6, injected = ?7, capped = ?8, spent = ?9 WHERE id = ?1",
                params![
                    e.id,
                    e.state.as_str(),
                    record_text(&e.reason),
                    e.ended_ms as i64,
                    e.seen as i64,
                    e.matched as i64,
                    e.injected as i64,
                    e.capped as i64,
                    e.spent
                ],
            )
            .ctx("finishing an experiment")?;
        Ok(())
    }

    pub fn experiment(&self, id: &str) -> Result<Option<ExperimentRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?1"),
                [id],
                row_to_experiment,
            )
            .optional()
            .ctx("reading an experiment")
    }

    /// At most `limit` experiments started at or after `since_ms`, newest first (by start,
    /// then id), starting right after `after` (from the newest when `None`).
    pub fn experiments_page(
        &self,
        since_ms: u64,
        after: Option<&PageKey>,
        limit: usize,
    ) -> Result<Vec<ExperimentRow>, StoreError> {
        let what = "listing experiments";
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE started_ms >= ?1 \
                 AND (?2 IS NULL OR started_ms < ?2 OR (started_ms = ?2 AND id < ?3)) \
                 ORDER BY started_ms DESC, id DESC LIMIT ?4"
            ))
            .ctx(what)?;
        let rows = stmt
            .query_map(
                params![
                    since_ms as i64,
                    after.map(|k| k.started_ms as i64),
                    after.map(|k| k.id.as_str()),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                row_to_experiment,
            )
            .ctx(what)?;
        rows.collect::<Result<_, _>>().ctx(what)
    }

    /// Marks every experiment still `running` as `aborted` with `reason`; returns their ids.
    pub fn abort_running(&self, reason: &str, now_ms: u64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM experiments WHERE state = 'running'")
            .ctx("finding running experiments")?;
        let ids: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .ctx("finding running experiments")?
            .collect::<Result<_, _>>()
            .ctx("finding running experiments")?;
        for id in &ids {
            self.conn
                .execute(
                    "UPDATE experiments SET state = 'aborted', reason = ?2, ended_ms = ?3 WHERE id = ?1",
                    params![id, record_text(reason), now_ms as i64],
                )
                .ctx("aborting an experiment")?;
            self.add_event(id, now_ms, "aborted", reason)?;
        }
        Ok(ids)
    }

    /// The emergency-stop latch, if one is set.
    pub fn latch(&self) -> Result<Option<LatchRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT reason, at_ms FROM emergency_stop WHERE id = 1",
                [],
                |r| {
                    Ok(LatchRow {
                        reason: r.get(0)?,
                        at_ms: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()
            .ctx("reading the emergency-stop latch")
    }

    /// Sets the emergency-stop latch (replacing an earlier one), on disk before it returns.
    pub fn set_latch(&self, latch: &LatchRow) -> Result<(), StoreError> {
        self.durably(
            "recording the emergency-stop latch",
            "INSERT OR REPLACE INTO emergency_stop (id, reason, at_ms) VALUES (1, ?1, ?2)",
            params![latch.reason, latch.at_ms as i64],
        )
    }

    /// Removes the emergency-stop latch, on disk before it returns.
    pub fn clear_latch(&self) -> Result<(), StoreError> {
        self.durably(
            "clearing the emergency-stop latch",
            "DELETE FROM emergency_stop",
            params![],
        )
    }

    /// Runs one statement with `synchronous = FULL`: the WAL is synced before the commit
    /// returns, so the change outlives a power loss too (`NORMAL`, the rest of the store's
    /// setting, survives a killed process only).
    fn durably(
        &self,
        what: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .ctx(what)?;
        let written = self.conn.execute(sql, params).map(drop).ctx(what);
        let restored = self
            .conn
            .pragma_update(None, "synchronous", "NORMAL")
            .ctx(what);
        written.and(restored)
    }

    /// Money spent by experiments that started at or after `since_ms` and have ended.
    pub fn spent_since(&self, since_ms: u64) -> Result<f64, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(spent), 0.0) FROM experiments WHERE started_ms >= ?1 AND state != 'running'",
                [since_ms as i64],
                |r| r.get(0),
            )
            .ctx("summing the spend")
    }

    /// Adds a counter snapshot of a running experiment and keeps its counters and spend on
    /// its row (what a restart after a crash counts against the day). Past [`MAX_SNAPSHOTS`]
    /// of the experiment, every second one is deleted, the first and this one kept.
    pub fn add_snapshot(
        &mut self,
        id: &str,
        s: &SnapshotRow,
        spent: f64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().ctx("adding a counter snapshot")?;
        tx.execute(
            "INSERT INTO snapshots (experiment_id, at_ms, seen, matched, injected, capped) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                s.at_ms as i64,
                s.seen as i64,
                s.matched as i64,
                s.injected as i64,
                s.capped as i64
            ],
        )
        .ctx("adding a counter snapshot")?;
        tx.execute(
            "UPDATE experiments SET seen = ?2, matched = ?3, injected = ?4, capped = ?5, \
             spent = ?6 WHERE id = ?1 AND state = 'running'",
            params![
                id,
                s.seen as i64,
                s.matched as i64,
                s.injected as i64,
                s.capped as i64,
                spent
            ],
        )
        .ctx("adding a counter snapshot")?;
        thin(&tx, "snapshots", id).ctx("thinning counter snapshots")?;
        tx.commit().ctx("adding a counter snapshot")
    }

    pub fn snapshots(&self, id: &str) -> Result<Vec<SnapshotRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at_ms, seen, matched, injected, capped FROM snapshots WHERE experiment_id = ?1 ORDER BY at_ms",
            )
            .ctx("reading snapshots")?;
        let rows = stmt
            .query_map([id], |r| {
                let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
                Ok(SnapshotRow {
                    at_ms: n(0)?,
                    seen: n(1)?,
                    matched: n(2)?,
                    injected: n(3)?,
                    capped: n(4)?,
                })
            })
            .ctx("reading snapshots")?;
        rows.collect::<Result<_, _>>().ctx("reading snapshots")
    }

    pub fn add_event(
        &self,
        id: &str,
        at_ms: u64,
        kind: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO events (experiment_id, at_ms, kind, message) VALUES (?1, ?2, ?3, ?4)",
                params![id, at_ms as i64, kind, record_text(message)],
            )
            .ctx("adding an event")?;
        Ok(())
    }

    pub fn events(&self, id: &str) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at_ms, kind, message FROM events WHERE experiment_id = ?1 ORDER BY rowid",
            )
            .ctx("reading events")?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(EventRow {
                    at_ms: r.get::<_, i64>(0)? as u64,
                    kind: r.get(1)?,
                    message: r.get(2)?,
                })
            })
            .ctx("reading events")?;
        rows.collect::<Result<_, _>>().ctx("reading events")
    }

    /// Records one evaluation of an experiment's guards.
    pub fn add_guard_samples(
        &mut self,
        id: &str,
        rows: &[GuardSampleRow],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().ctx("adding guard samples")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO guard_samples (experiment_id, at_ms, guard, kind, objective, \
                     threshold, value, ok) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .ctx("adding guard samples")?;
            for g in rows {
                stmt.execute(params![
                    id,
                    g.at_ms as i64,
                    g.guard,
                    g.kind,
                    g.objective,
                    g.threshold,
                    g.value,
                    g.ok
                ])
                .ctx("adding guard samples")?;
            }
        }
        tx.commit().ctx("adding guard samples")
    }

    /// An experiment's guard samples, oldest first.
    pub fn guard_samples(&self, id: &str) -> Result<Vec<GuardSampleRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at_ms, guard, kind, objective, threshold, value, ok FROM guard_samples \
                 WHERE experiment_id = ?1 ORDER BY at_ms, rowid",
            )
            .ctx("reading guard samples")?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(GuardSampleRow {
                    at_ms: r.get::<_, i64>(0)? as u64,
                    guard: r.get(1)?,
                    kind: r.get(2)?,
                    objective: r.get(3)?,
                    threshold: r.get(4)?,
                    value: r.get(5)?,
                    ok: r.get(6)?,
                })
            })
            .ctx("reading guard samples")?;
        rows.collect::<Result<_, _>>().ctx("reading guard samples")
    }

    /// Adds a sample of a running database load. Past [`MAX_SNAPSHOTS`] of the experiment,
    /// every second one is deleted, the first and this one kept.
    pub fn add_load_sample(&mut self, id: &str, l: &LoadSampleRow) -> Result<(), StoreError> {
        let what = "adding a load sample";
        let us = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let tx = self.conn.transaction().ctx(what)?;
        tx.execute(
            "INSERT INTO load_samples (experiment_id, at_ms, rate, qps, p50_us, p95_us, p99_us, \
             sent, failed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                l.at_ms as i64,
                l.rate,
                l.qps,
                us(l.p50_us),
                us(l.p95_us),
                us(l.p99_us),
                l.sent as i64,
                l.failed as i64
            ],
        )
        .ctx(what)?;
        thin(&tx, "load_samples", id).ctx("thinning load samples")?;
        tx.commit().ctx(what)
    }

    /// A database load's samples, oldest first.
    pub fn load_samples(&self, id: &str) -> Result<Vec<LoadSampleRow>, StoreError> {
        let what = "reading load samples";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at_ms, rate, qps, p50_us, p95_us, p99_us, sent, failed FROM load_samples \
                 WHERE experiment_id = ?1 ORDER BY at_ms, rowid",
            )
            .ctx(what)?;
        let rows = stmt
            .query_map([id], |r| {
                let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
                let us = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.map(|v| v as u64));
                Ok(LoadSampleRow {
                    at_ms: n(0)?,
                    rate: r.get(1)?,
                    qps: r.get(2)?,
                    p50_us: us(3)?,
                    p95_us: us(4)?,
                    p99_us: us(5)?,
                    sent: n(6)?,
                    failed: n(7)?,
                })
            })
            .ctx(what)?;
        rows.collect::<Result<_, _>>().ctx(what)
    }

    /// Records what rolled experiment `id` back.
    pub fn add_rollback(&self, id: &str, r: &RollbackRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO rollbacks (experiment_id, guard, value, objective, \
                 observed_ms, disarm_us, observation_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    r.guard,
                    r.value,
                    r.objective,
                    r.observed_ms as i64,
                    r.disarm_us as i64,
                    r.observation_us as i64
                ],
            )
            .ctx("recording a rollback")?;
        Ok(())
    }

    /// What rolled experiment `id` back, if a guard did.
    pub fn rollback(&self, id: &str) -> Result<Option<RollbackRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT guard, value, objective, observed_ms, disarm_us, observation_us \
                 FROM rollbacks WHERE experiment_id = ?1",
                [id],
                |r| {
                    Ok(RollbackRow {
                        guard: r.get(0)?,
                        value: r.get(1)?,
                        objective: r.get(2)?,
                        observed_ms: r.get::<_, i64>(3)? as u64,
                        disarm_us: r.get::<_, i64>(4)? as u64,
                        observation_us: r.get::<_, i64>(5)? as u64,
                    })
                },
            )
            .optional()
            .ctx("reading a rollback")
    }

    /// Writes an audit entry, each text cut to [`MAX_AUDIT_TEXT_BYTES`] and its control
    /// characters escaped: a request, however large, costs a bounded entry.
    pub fn audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        let text = |t: &str| cut_and_escape(t, MAX_AUDIT_TEXT_BYTES);
        self.conn
            .execute(
                "INSERT INTO audit (at_ms, caller, method, detail, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    row.at_ms as i64,
                    text(&row.caller),
                    text(&row.method),
                    text(&row.detail),
                    text(&row.outcome)
                ],
            )
            .ctx("writing the audit log")?;
        Ok(())
    }

    /// Deletes the records older than `cutoff_ms` (Unix ms), in one transaction: experiments
    /// that ended before it with everything recorded of them, older events, snapshots, guard
    /// samples and load samples of any experiment, audit entries and host changes undone before
    /// it. Running experiments and host changes not yet undone stay, however old.
    pub fn prune(&mut self, cutoff_ms: u64) -> Result<Pruned, StoreError> {
        let what = "deleting old records";
        let cutoff = i64::try_from(cutoff_ms).unwrap_or(i64::MAX);
        let tx = self.conn.transaction().ctx(what)?;
        let ended = "SELECT id FROM experiments WHERE state != 'running' AND ended_ms < ?1";
        // An experiment's own records: all of an ended one, the old ones of any other but a
        // running one.
        let old = format!(
            "(at_ms < ?1 AND experiment_id NOT IN \
             (SELECT id FROM experiments WHERE state = 'running')) OR experiment_id IN ({ended})"
        );
        let delete = |sql: &str| tx.execute(sql, [cutoff]).ctx(what);
        let mut pruned = Pruned {
            events: delete(&format!("DELETE FROM events WHERE {old}"))?,
            snapshots: delete(&format!("DELETE FROM snapshots WHERE {old}"))?,
            guard_samples: delete(&format!("DELETE FROM guard_samples WHERE {old}"))?,
            load_samples: delete(&format!("DELETE FROM load_samples WHERE {old}"))?,
            audit: delete("DELETE FROM audit WHERE at_ms < ?1")?,
            journal: delete("DELETE FROM journal WHERE restored_ms != 0 AND restored_ms < ?1")?,
            ..Pruned::default()
        };
        delete(&format!(
            "DELETE FROM rollbacks WHERE experiment_id IN ({ended})"
        ))?;
        pruned.experiments =
            delete("DELETE FROM experiments WHERE state != 'running' AND ended_ms < ?1")?;
        tx.commit().ctx(what)?;
        Ok(pruned)
    }

    pub fn audit_log(&self) -> Result<Vec<AuditRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at_ms, caller, method, detail, outcome FROM audit ORDER BY rowid")
            .ctx("reading the audit log")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AuditRow {
                    at_ms: r.get::<_, i64>(0)? as u64,
                    caller: r.get(1)?,
                    method: r.get(2)?,
                    detail: r.get(3)?,
                    outcome: r.get(4)?,
                })
            })
            .ctx("reading the audit log")?;
        rows.collect::<Result<_, _>>().ctx("reading the audit log")
    }
}

/// Past [`MAX_SNAPSHOTS`] rows of experiment `id` in `table` (one with `at_ms`), deletes every
/// second one by time, the first and the newest kept.
fn thin(tx: &rusqlite::Transaction<'_>, table: &str, id: &str) -> rusqlite::Result<()> {
    let kept: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE experiment_id = ?1"),
        [id],
        |r| r.get(0),
    )?;
    if usize::try_from(kept).unwrap_or(usize::MAX) > MAX_SNAPSHOTS {
        tx.execute(
            &format!(
                "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM (SELECT rowid, \
                 ROW_NUMBER() OVER (ORDER BY at_ms, rowid) AS n, COUNT(*) OVER () AS total \
                 FROM {table} WHERE experiment_id = ?1) WHERE n % 2 = 0 AND n < total)"
            ),
            [id],
        )?;
    }
    Ok(())
}

/// An experiment's or event's text as kept: at most [`MAX_RECORD_TEXT_BYTES`] as written.
fn record_text(text: &str) -> String {
    cut_and_escape(text, MAX_RECORD_TEXT_BYTES)
}

fn row_to_experiment(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExperimentRow> {
    let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
    Ok(ExperimentRow {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        target: r.get(3)?,
        spec: r.get(4)?,
        // A state this build does not know (written by a newer one) reads as failed.
        state: State::from_name(&r.get::<_, String>(5)?).unwrap_or(State::Failed),
        reason: r.get(6)?,
        started_ms: n(7)?,
        ended_ms: n(8)?,
        seen: n(9)?,
        matched: n(10)?,
        injected: n(11)?,
        capped: n(12)?,
        budget: r.get(13)?,
        spent: r.get(14)?,
    })
}

impl HostJournal for std::sync::Mutex<Store> {
    fn record(&self, owner: &str, change: &HostChange) -> Result<i64, JournalError> {
        let store = lock(self);
        store
            .conn
            .execute(
                "INSERT INTO journal (experiment_id, kind, path, old_value, applied_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    owner,
                    change.kind.as_str(),
                    change.path,
                    change.old_value,
                    now_ms() as i64
                ],
            )
            .ctx("recording a host change")?;
        Ok(store.conn.last_insert_rowid())
    }

    fn undone(&self, id: i64) -> Result<(), JournalError> {
        let store = lock(self);
        store
            .conn
            .execute(
                "UPDATE journal SET restored_ms = ?2 WHERE id = ?1",
                params![id, now_ms() as i64],
            )
            .ctx("marking a host change undone")?;
        Ok(())
    }

    fn pending(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let what = "reading the host-change journal";
        let store = lock(self);
        let mut stmt = store
            .conn
            .prepare(
                "SELECT id, experiment_id, kind, path, old_value FROM journal \
                 WHERE restored_ms = 0 ORDER BY id DESC",
            )
            .ctx(what)?;
        let rows: Vec<(i64, String, String, String, String)> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .ctx(what)?
            .collect::<Result<_, _>>()
            .ctx(what)?;
        rows.into_iter()
            .map(|(id, owner, kind, path, old_value)| {
                let kind =
                    ChangeKind::parse(&kind).ok_or(JournalError::UnknownKind { id, kind })?;
                Ok(JournalEntry {
                    id,
                    owner,
                    change: HostChange {
                        kind,
                        path,
                        old_value,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, started_ms: u64) -> ExperimentRow {
        ExperimentRow {
            id: id.into(),
            name: "n".into(),
            kind: "packet_loss".into(),
            target: "/sys/fs/cgroup/x".into(),
            spec: vec![1, 2, 3],
            state: State::Running,
            reason: String::new(),
            started_ms,
            ended_ms: 0,
            seen: 0,
            matched: 0,
            injected: 0,
            capped: 0,
            budget: 10.0,
            spent: 0.0,
        }
    }

    #[test]
    fn a_running_experiments_spend_survives_a_crash_through_its_snapshots() {
        let mut s = Store::in_memory().unwrap();
        s.insert_experiment(&row("c", 10)).unwrap();
        let snap = SnapshotRow {
            at_ms: 11,
            seen: 9,
            matched: 9,
            injected: 9,
            capped: 0,
        };
        s.add_snapshot("c", &snap, 0.25).unwrap();
        assert_eq!(
            s.spent_since(0).unwrap(),
            0.0,
            "running: reserved, not spent"
        );
        s.abort_running("aborted (daemon restart)", 20).unwrap();
        let c = s.experiment("c").unwrap().unwrap();
        assert_eq!((c.injected, c.spent), (9, 0.25));
        assert_eq!(s.spent_since(0).unwrap(), 0.25);
    }

    #[test]
    fn experiments_events_audit_and_abort_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("chaos-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        {
            let s = Store::open(&dir).unwrap();
            s.insert_experiment(&row("a", 10)).unwrap();
            s.insert_experiment(&row("b", 20)).unwrap();
            let mut done = row("b", 20);
            (
                done.state,
                done.reason,
                done.ended_ms,
                done.injected,
                done.spent,
            ) = (State::Stopped, "by uid 0".into(), 30, 7, 0.007);
            s.finish_experiment(&done).unwrap();
            s.add_event("a", 11, "armed", "slot 0").unwrap();
            s.audit(&AuditRow {
                at_ms: 9,
                caller: "uid 0".into(),
                method: "StartExperiment".into(),
                detail: "a".into(),
                outcome: "ok".into(),
            })
            .unwrap();
        }
        let s = Store::open(&dir).unwrap();
        assert_eq!(
            s.abort_running("aborted (daemon restart)", 40).unwrap(),
            vec!["a".to_string()]
        );
        let a = s.experiment("a").unwrap().unwrap();
        assert_eq!(
            (a.state.as_str(), a.reason.as_str(), a.ended_ms),
            ("aborted", "aborted (daemon restart)", 40)
        );
        let b = s.experiment("b").unwrap().unwrap();
        assert_eq!((b.state.as_str(), b.injected), ("stopped", 7));
        assert_eq!(s.events("a").unwrap().len(), 2);
        assert_eq!(s.audit_log().unwrap()[0].method, "StartExperiment");
        assert_eq!(
            s.spent_since(0).unwrap(),
            0.007,
            "only ended experiments count as spent"
        );
        let snap = SnapshotRow {
            at_ms: 12,
            seen: 3,
            matched: 2,
            injected: 1,
            capped: 0,
        };
        let mut s = s;
        s.add_snapshot("a", &snap, 5.0).unwrap();
        assert_eq!(s.snapshots("a").unwrap(), vec![snap]);
        assert_eq!(
            s.spent_since(0).unwrap(),
            0.007,
            "an ended row keeps its spend"
        );
        let ids: Vec<_> = s
            .experiments_page(15, None, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec!["b".to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn snapshot(at_ms: u64) -> SnapshotRow {
        SnapshotRow {
            at_ms,
            seen: at_ms,
            matched: at_ms,
            injected: 0,
            capped: 0,
        }
    }

    /// A load sample at `at_ms`, its percentiles absent every third second.
    fn load_sample(at_ms: u64) -> LoadSampleRow {
        let us = (!at_ms.is_multiple_of(3)).then_some(at_ms * 10);
        LoadSampleRow {
            at_ms,
            rate: 200.0,
            qps: at_ms as f64 + 0.5,
            p50_us: us,
            p95_us: us.map(|u| u * 2),
            p99_us: us.map(|u| u * 3),
            sent: at_ms * 200,
            failed: at_ms,
        }
    }

    #[test]
    fn load_samples_read_back_in_time_order_and_stay_bounded() {
        let mut s = Store::in_memory().unwrap();
        s.insert_experiment(&row("load", 0)).unwrap();
        // Written out of order (the recorder keeps the order sent; the reader sorts by time).
        for at in [2, 1, 3] {
            s.add_load_sample("load", &load_sample(at)).unwrap();
        }
        let big = LoadSampleRow {
            p99_us: Some(u64::MAX >> 1),
            ..load_sample(4)
        };
        s.add_load_sample("load", &big).unwrap();
        assert_eq!(
            s.load_samples("load").unwrap(),
            vec![load_sample(1), load_sample(2), load_sample(3), big]
        );
        assert_eq!(s.load_samples("load").unwrap()[2].p95_us, None);
        assert!(s.load_samples("other").unwrap().is_empty());
        // Past the bound every second one goes, the first and the newest stay.
        s.insert_experiment(&row("long", 0)).unwrap();
        for at in 1..=MAX_SNAPSHOTS as u64 + 1 {
            s.add_load_sample("long", &load_sample(at)).unwrap();
        }
        let kept = s.load_samples("long").unwrap();
        assert_eq!(kept.len(), MAX_SNAPSHOTS / 2 + 1);
        assert_eq!(kept[0], load_sample(1));
        assert_eq!(kept[kept.len() - 1], load_sample(MAX_SNAPSHOTS as u64 + 1));
        assert_eq!(s.load_samples("load").unwrap().len(), 4);
    }

    fn audit_row(at_ms: u64, detail: &str) -> AuditRow {
        AuditRow {
            at_ms,
            caller: "uid 0".into(),
            method: "StopExperiment".into(),
            detail: detail.into(),
            outcome: "ok".into(),
        }
    }

    fn ended(id: &str, started_ms: u64, ended_ms: u64) -> ExperimentRow {
        ExperimentRow {
            state: State::Completed,
            ended_ms,
            ..row(id, started_ms)
        }
    }

    /// Every experiment id in `since_ms`, page after page of `limit`, following the keys.
    fn all_pages(s: &Store, since_ms: u64, limit: usize) -> (Vec<String>, usize) {
        let (mut ids, mut pages, mut after) = (Vec::new(), 0, None);
        loop {
            let page = s.experiments_page(since_ms, after.as_ref(), limit).unwrap();
            assert!(page.len() <= limit);
            if page.is_empty() {
                return (ids, pages);
            }
            pages += 1;
            // The key goes through its token, as a client hands it back.
            after = PageKey::from_token(&PageKey::of(page.last().unwrap()).token());
            assert!(after.is_some());
            ids.extend(page.into_iter().map(|e| e.id));
        }
    }

    #[test]
    fn experiments_are_listed_a_page_at_a_time_newest_first() {
        let s = Store::in_memory().unwrap();
        // 250 experiments, five started in each millisecond: the id orders those.
        let mut expected = Vec::new();
        for i in 0..250u64 {
            let id = format!("exp-{:03}", i);
            s.insert_experiment(&row(&id, 1000 + i / 5)).unwrap();
            expected.push(id);
        }
        expected.reverse();
        let (ids, pages) = all_pages(&s, 0, 100);
        assert_eq!((ids.len(), pages), (250, 3));
        assert_eq!(ids, expected, "every experiment once, newest first");
        // A page boundary inside a millisecond loses and repeats nothing.
        let (ids, pages) = all_pages(&s, 0, 7);
        assert_eq!((ids, pages), (expected.clone(), 36));
        // The period applies to every page.
        let (ids, _) = all_pages(&s, 1040, 100);
        assert_eq!(ids, expected[..50].to_vec());
    }

    #[test]
    fn page_tokens_are_the_key_and_nothing_else() {
        let key = PageKey {
            started_ms: 1_800_000_000_000,
            id: "exp-1800000000000-0a1b2c3d-7".into(),
        };
        assert_eq!(key.token(), "1800000000000/exp-1800000000000-0a1b2c3d-7");
        assert_eq!(PageKey::from_token(&key.token()), Some(key));
        for bad in [
            "",
            "exp-1",
            "12/",
            "x/exp-1",
            "-1/exp-1",
            "12/exp 1",
            "12/exp/1",
            &format!("12/{}", "a".repeat(129)),
        ] {
            assert_eq!(PageKey::from_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn texts_are_stored_cut_to_their_bounds() {
        let s = Store::in_memory().unwrap();
        let huge = "x".repeat(3 << 20);
        let cut_record = format!(
            "{} (cut from {} bytes)",
            "x".repeat(MAX_RECORD_TEXT_BYTES),
            huge.len()
        );
        let cut_audit = format!(
            "{} (cut from {} bytes)",
            "x".repeat(MAX_AUDIT_TEXT_BYTES),
            huge.len()
        );
        // An audit entry of four huge texts keeps a bounded entry, control characters escaped.
        s.audit(&AuditRow {
            at_ms: 1,
            caller: huge.clone(),
            method: huge.clone(),
            detail: huge.clone(),
            outcome: huge.clone(),
        })
        .unwrap();
        s.audit(&audit_row(2, "a\u{1b}[2Jb")).unwrap();
        let log = s.audit_log().unwrap();
        assert_eq!(
            (
                &log[0].caller,
                &log[0].method,
                &log[0].detail,
                &log[0].outcome
            ),
            (&cut_audit, &cut_audit, &cut_audit, &cut_audit)
        );
        assert_eq!(log[1].detail, "a\\u{1b}[2Jb");
        // An experiment's name, target and reason, and an event's message, keep 4 KiB.
        let mut e = row("big", 10);
        (e.name, e.target) = (huge.clone(), huge.clone());
        s.insert_experiment(&e).unwrap();
        let stored = s.experiment("big").unwrap().unwrap();
        assert_eq!((&stored.name, &stored.target), (&cut_record, &cut_record));
        e.reason = huge.clone();
        (e.state, e.ended_ms) = (State::Stopped, 20);
        s.finish_experiment(&e).unwrap();
        assert_eq!(s.experiment("big").unwrap().unwrap().reason, cut_record);
        s.add_event("big", 20, "stopped", &huge).unwrap();
        assert_eq!(s.events("big").unwrap()[0].message, cut_record);
        s.insert_experiment(&row("running", 30)).unwrap();
        s.abort_running(&huge, 40).unwrap();
        assert_eq!(s.experiment("running").unwrap().unwrap().reason, cut_record);
    }

    #[test]
    fn a_running_experiment_keeps_a_bounded_number_of_snapshots() {
        let mut s = Store::in_memory().unwrap();
        s.insert_experiment(&row("long", 0)).unwrap();
        for at in 1..=MAX_SNAPSHOTS as u64 {
            s.add_snapshot("long", &snapshot(at), 0.0).unwrap();
        }
        assert_eq!(s.snapshots("long").unwrap().len(), MAX_SNAPSHOTS);
        // One more: every second one goes, the first and the newest stay.
        let newest = MAX_SNAPSHOTS as u64 + 1;
        s.add_snapshot("long", &snapshot(newest), 0.0).unwrap();
        let kept = s.snapshots("long").unwrap();
        assert_eq!(kept.len(), MAX_SNAPSHOTS / 2 + 1);
        assert_eq!(kept[0], snapshot(1));
        assert_eq!(kept[kept.len() - 1], snapshot(newest));
        assert!(
            kept.windows(2).all(|w| w[1].at_ms - w[0].at_ms == 2),
            "evenly thinned"
        );
        // Another experiment's snapshots are not touched.
        s.insert_experiment(&row("short", 0)).unwrap();
        s.add_snapshot("short", &snapshot(5), 0.0).unwrap();
        assert_eq!(s.snapshots("short").unwrap(), vec![snapshot(5)]);
        assert_eq!(s.snapshots("long").unwrap().len(), MAX_SNAPSHOTS / 2 + 1);
    }

    #[test]
    fn pruning_deletes_what_ended_before_the_cutoff_and_keeps_what_runs() {
        let day = 24 * 60 * 60 * 1000;
        let mut s = Store::in_memory().unwrap();
        // Ended long ago, ended recently, and running since long ago.
        let records = |s: &mut Store, id: &str, at_ms: u64| {
            s.add_event(id, at_ms, "armed", "slot 0").unwrap();
            s.add_snapshot(id, &snapshot(at_ms), 0.0).unwrap();
            s.add_guard_samples(
                id,
                &[GuardSampleRow {
                    at_ms,
                    guard: "error_rate".into(),
                    kind: "critical_slo".into(),
                    objective: "<= 0.01".into(),
                    threshold: 0.01,
                    value: Some(0.0),
                    ok: true,
                }],
            )
            .unwrap();
            s.add_load_sample(id, &load_sample(at_ms)).unwrap();
        };
        s.insert_experiment(&ended("old", day, 2 * day)).unwrap();
        records(&mut s, "old", day);
        s.add_rollback(
            "old",
            &RollbackRow {
                guard: "error_rate".into(),
                value: Some(1.0),
                objective: "<= 0.01".into(),
                observed_ms: day,
                disarm_us: 5,
                observation_us: 90_000,
            },
        )
        .unwrap();
        s.insert_experiment(&ended("recent", 2 * day, 40 * day))
            .unwrap();
        records(&mut s, "recent", 39 * day);
        records(&mut s, "recent", 2 * day);
        s.insert_experiment(&row("running", day)).unwrap();
        records(&mut s, "running", day);
        s.audit(&audit_row(day, "old")).unwrap();
        s.audit(&audit_row(40 * day, "recent")).unwrap();

        let cutoff = 10 * day;
        let pruned = s.prune(cutoff).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                experiments: 1,
                // The old experiment's, and the recent one's older than the cutoff.
                events: 2,
                snapshots: 2,
                guard_samples: 2,
                load_samples: 2,
                audit: 1,
                journal: 0,
            }
        );
        assert_eq!(s.experiment("old").unwrap(), None);
        assert_eq!(s.rollback("old").unwrap(), None);
        assert!(s.events("old").unwrap().is_empty());
        assert_eq!(s.snapshots("recent").unwrap(), vec![snapshot(39 * day)]);
        assert_eq!(s.guard_samples("recent").unwrap().len(), 1);
        assert!(s.load_samples("old").unwrap().is_empty());
        assert_eq!(
            s.load_samples("recent").unwrap(),
            vec![load_sample(39 * day)]
        );
        // A running experiment keeps its row and everything recorded of it.
        assert_eq!(
            s.experiment("running").unwrap().unwrap().state,
            State::Running
        );
        assert_eq!(s.events("running").unwrap().len(), 1);
        assert_eq!(s.snapshots("running").unwrap().len(), 1);
        assert_eq!(s.guard_samples("running").unwrap().len(), 1);
        assert_eq!(s.load_samples("running").unwrap().len(), 1);
        let log = s.audit_log().unwrap();
        assert_eq!(log, vec![audit_row(40 * day, "recent")]);
        // Nothing more to delete.
        assert_eq!(s.prune(cutoff).unwrap().total(), 0);
    }

    #[test]
    fn pruning_deletes_undone_host_changes_and_keeps_pending_ones() {
        let journal = std::sync::Mutex::new(Store::in_memory().unwrap());
        let change = |path: &str| HostChange {
            kind: ChangeKind::CgroupKnob,
            path: path.into(),
            old_value: "max".into(),
        };
        let undone = journal.record("exp-1", &change("/a/cpu.max")).unwrap();
        let pending = journal.record("exp-2", &change("/b/cpu.max")).unwrap();
        journal.undone(undone).unwrap();
        // The journal stamps the system clock: a cutoff before now keeps both.
        assert_eq!(lock(&journal).prune(0).unwrap().journal, 0);
        let pruned = lock(&journal).prune(now_ms() + 1).unwrap();
        assert_eq!(pruned.journal, 1);
        let left: Vec<i64> = journal.pending().unwrap().iter().map(|e| e.id).collect();
        assert_eq!(left, vec![pending]);
        assert_eq!(lock(&journal).prune(u64::MAX).unwrap().journal, 0);
    }

    #[test]
    fn the_latch_survives_reopen_until_cleared_and_a_new_one_replaces_it() {
        let dir = std::env::temp_dir().join(format!("chaos-store-latch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = LatchRow {
            reason: "emergency stop by uid 0: drill".into(),
            at_ms: 10,
        };
        let second = LatchRow {
            reason: "emergency stop by uid 0: again".into(),
            at_ms: 20,
        };
        {
            let s = Store::open(&dir).unwrap();
            assert_eq!(s.latch().unwrap(), None);
            s.set_latch(&first).unwrap();
        }
        {
            let s = Store::open(&dir).unwrap();
            assert_eq!(s.latch().unwrap(), Some(first));
            s.set_latch(&second).unwrap();
            assert_eq!(s.latch().unwrap(), Some(second));
            s.clear_latch().unwrap();
            // The durable writes leave the store's own setting (NORMAL = 1) in place.
            let sync: i64 = s
                .conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            assert_eq!(sync, 1);
        }
        assert_eq!(Store::open(&dir).unwrap().latch().unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rollback_keeps_both_disarm_times_and_an_older_store_gains_the_column() {
        let dir = std::env::temp_dir().join(format!("chaos-store-rb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A state.db whose rollbacks table predates observation_us, with one rollback in it.
        {
            let conn = Connection::open(dir.join("state.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE rollbacks (experiment_id TEXT PRIMARY KEY, guard TEXT NOT NULL, \
                 value REAL, objective TEXT NOT NULL, observed_ms INTEGER NOT NULL, \
                 disarm_us INTEGER NOT NULL);
                 INSERT INTO rollbacks VALUES ('old', 'error_rate', 0.5, '<= 0.01', 7, 40);",
            )
            .unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let old = s.rollback("old").unwrap().unwrap();
        assert_eq!((old.disarm_us, old.observation_us), (40, 0));
        let new = RollbackRow {
            guard: "error_rate".into(),
            value: None,
            objective: "<= 0.01".into(),
            observed_ms: 9,
            disarm_us: 41,
            observation_us: 120_041,
        };
        s.add_rollback("new", &new).unwrap();
        drop(s);
        assert_eq!(
            Store::open(&dir).unwrap().rollback("new").unwrap(),
            Some(new)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
