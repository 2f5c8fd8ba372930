//! The workload: the operations a spec asks for (profile operations or weighted statements),
//! the weighted choice of the next one, and the scratch data layout the profiles use.

use std::time::Duration;

use crate::spec::{Profile, Spec, Workload};

/// Rows in the scratch table (redis: keys) that `setup` creates.
pub const SCRATCH_ROWS: u64 = 5_000;
/// Rows read by one `range_scans` query.
pub const RANGE_ROWS: u64 = 100;

/// Names of the scratch objects of one run.
#[derive(Debug, Clone)]
pub struct Scratch {
    suffix: String,
}

impl Scratch {
    pub fn new(suffix: &str) -> Scratch {
        Scratch {
            suffix: suffix.to_owned(),
        }
    }

    /// The SQL scratch table, `chaos_scratch_<suffix>`.
    pub fn table(&self) -> String {
        format!("chaos_scratch_{}", self.suffix)
    }

    /// The prefix of every redis key of the run, `chaos:scratch:<suffix>:`.
    pub fn key_prefix(&self) -> String {
        format!("chaos:scratch:{}:", self.suffix)
    }
}

/// One concrete query to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query<'a> {
    /// A user statement, sent as written.
    Statement(&'a str),
    /// Read one row (redis: one key) by id.
    PointRead { id: u64 },
    /// Read `RANGE_ROWS` rows from `from` (redis: LRANGE on the scratch list).
    RangeScan { from: u64 },
    /// Insert or update one row (ids up to twice `SCRATCH_ROWS`, so about half insert).
    Write { id: u64 },
    /// A transaction that locks one row and holds it (redis: SET NX PX on a lock key).
    RowLock { id: u64, hold: Duration },
    /// `SELECT 1` / `PING`, on a connection of its own (connection storm).
    Ping,
}

/// One operation of the workload, measured on its own.
#[derive(Debug, Clone)]
pub struct Op {
    /// Name in the output: the profile operation, or `statement_<i>`.
    pub name: String,
    /// The statement text, for user statements.
    pub sql: Option<String>,
    pub weight: u32,
    kind: OpKind,
}

#[derive(Debug, Clone, Copy)]
enum OpKind {
    Statement,
    Profile(Profile),
}

impl Op {
    /// Whether every query of this operation opens and closes its own connection.
    pub fn own_connection(&self) -> bool {
        matches!(self.kind, OpKind::Profile(Profile::ConnectionStorm))
    }

    /// A concrete query of this operation.
    pub fn query(&self, rng: &mut Rng, lock_hold: Duration) -> Query<'_> {
        match self.kind {
            OpKind::Statement => Query::Statement(self.sql.as_deref().unwrap_or_default()),
            OpKind::Profile(Profile::PointReads) => Query::PointRead {
                id: 1 + rng.below(SCRATCH_ROWS),
            },
            OpKind::Profile(Profile::RangeScans) => Query::RangeScan {
                from: 1 + rng.below(SCRATCH_ROWS - RANGE_ROWS),
            },
            OpKind::Profile(Profile::Writes) => Query::Write {
                id: 1 + rng.below(2 * SCRATCH_ROWS),
            },
            OpKind::Profile(Profile::RowLocks) => Query::RowLock {
                id: 1 + rng.below(SCRATCH_ROWS),
                hold: lock_hold,
            },
            OpKind::Profile(Profile::ConnectionStorm) => Query::Ping,
        }
    }
}

/// The operations of a spec and their weighted choice.
#[derive(Debug, Clone)]
pub struct Plan {
    pub ops: Vec<Op>,
    total_weight: u64,
}

impl Plan {
    pub fn new(spec: &Spec) -> Plan {
        let ops: Vec<Op> = match &spec.workload {
            Workload::Profile(profile) => vec![Op {
                name: profile_op_name(*profile).to_owned(),
                sql: None,
                weight: 1,
                kind: OpKind::Profile(*profile),
            }],
            Workload::Statements(statements) => statements
                .iter()
                .enumerate()
                .map(|(i, s)| Op {
                    name: format!("statement_{i}"),
                    sql: Some(s.sql.trim().to_owned()),
                    weight: s.weight,
                    kind: OpKind::Statement,
                })
                .collect(),
        };
        let total_weight = ops.iter().map(|op| u64::from(op.weight)).sum();
        Plan { ops, total_weight }
    }

    /// Whether the workload reads or writes the scratch table/keys (so `setup` must fill it).
    pub fn needs_scratch(&self) -> bool {
        self.ops.iter().any(|op| match op.kind {
            OpKind::Profile(p) => p != Profile::ConnectionStorm,
            OpKind::Statement => false,
        })
    }

    /// The user statements, which `check` prepares on the server.
    pub fn statements(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().filter_map(|op| op.sql.as_deref())
    }

    /// Index into `ops` of the next operation, drawn by weight.
    pub fn pick(&self, rng: &mut Rng) -> usize {
        let mut x = rng.below(self.total_weight);
        for (i, op) in self.ops.iter().enumerate() {
            let w = u64::from(op.weight);
            if x < w {
                return i;
            }
            x -= w;
        }
        self.ops.len() - 1
    }
}

fn profile_op_name(profile: Profile) -> &'static str {
    match profile {
        Profile::PointReads => "point_read",
        Profile::RangeScans => "range_scan",
        Profile::Writes => "write",
        Profile::RowLocks => "row_lock",
        Profile::ConnectionStorm => "connect_ping",
    }
}

/// A small non-cryptographic random generator (splitmix64): ids and weighted choices only.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Statement;

    fn spec(workload: Workload) -> Spec {
        Spec {
            engine: crate::spec::Engine::Postgres,
            address: "127.0.0.1:1".into(),
            database: String::new(),
            user: String::new(),
            password_file: None,
            password_env: None,
            workload,
            rate: 1.0,
            concurrency: 1,
            duration_ms: 1,
            max_queries: None,
            scratch: "x".into(),
            lock_hold_ms: 100,
        }
    }

    #[test]
    fn weights_decide_the_mix() {
        let plan = Plan::new(&spec(Workload::Statements(vec![
            Statement {
                sql: "SELECT 1".into(),
                weight: 3,
            },
            Statement {
                sql: "SELECT 2".into(),
                weight: 1,
            },
        ])));
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[plan.pick(&mut rng)] += 1;
        }
        let share = f64::from(counts[0]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{counts:?}");
        assert!(!plan.needs_scratch());
        assert_eq!(
            plan.statements().collect::<Vec<_>>(),
            ["SELECT 1", "SELECT 2"]
        );
    }

    #[test]
    fn profile_queries_stay_in_the_scratch_range() {
        let plan = Plan::new(&spec(Workload::Profile(Profile::RangeScans)));
        assert!(plan.needs_scratch());
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            match plan.ops[0].query(&mut rng, Duration::ZERO) {
                Query::RangeScan { from } => {
                    assert!(from >= 1 && from + RANGE_ROWS <= SCRATCH_ROWS + 1)
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(Scratch::new("e1").table(), "chaos_scratch_e1");
        assert_eq!(Scratch::new("e1").key_prefix(), "chaos:scratch:e1:");
    }
}
