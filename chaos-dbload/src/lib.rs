//! chaos-dbload: the load runner of the `database_load` experiment. It sends a controlled query
//! load to PostgreSQL, MySQL/MariaDB or Redis with the real client libraries (tokio-postgres,
//! mysql_async, redis; no TLS), measures it, and leaves nothing behind. The daemon starts it as a
//! child process in a cgroup of its own; killing that cgroup is always safe (`cleanup` then
//! removes the scratch data).
//!
//! # Modules
//!
//! - [`spec`]: the JSON spec file (`--spec FILE`) and its validation.
//! - [`engines`]: connect/authenticate, prepare, scratch setup/cleanup and one query, per engine.
//! - [`workload`]: profile operations or weighted statements, and the scratch layout.
//! - [`schedule`]: the open-loop scheduler.
//! - [`stats`]: counts, errors by kind, HDR histograms and the JSON lines on stdout.
//! - [`control`]: rate changes and stop from stdin, SIGTERM/SIGINT.
//! - [`runner`]: the `check`, `run` and `cleanup` subcommands' phases.
//!
//! # Spec
//!
//! ```json
//! {"engine": "postgres", "address": "127.0.0.1:5432", "database": "app", "user": "chaos",
//!  "password_file": "/run/secrets/db",
//!  "workload": {"profile": "point_reads"},
//!  "rate": 200, "concurrency": 8, "duration_ms": 60000, "max_queries": 10000,
//!  "scratch": "exp_42"}
//! ```
//!
//! `engine` is `postgres`, `mysql` or `redis`; `database` is the database name (redis: its index,
//! empty for 0); the password comes from `password_file` or `password_env` (at most one, never
//! inline; none means no password). `workload` is `{"profile": P}` with P one of `point_reads`,
//! `range_scans`, `writes`, `row_locks`, `connection_storm`, or
//! `{"statements": [{"sql": "SELECT ...", "weight": 3}, ...]}` (redis: a command line split on
//! whitespace, `GET k`). `rate` is in queries per second, `concurrency` the number of
//! connections, `max_queries` the cap (exactly this many queries are sent, then the run ends),
//! `scratch` (`[a-z0-9_]{1,32}`) names the scratch table `chaos_scratch_<scratch>` and the redis
//! keys `chaos:scratch:<scratch>:*`. `lock_hold_ms` (default 100) is how long a `row_locks`
//! transaction holds its lock. Unknown fields are refused.
//!
//! # Profiles
//!
//! `setup` creates and fills the scratch table (5,000 rows; redis: 5,000 string keys and a list)
//! for every profile but `connection_storm`. `point_reads` reads one row by primary key (redis
//! GET), `range_scans` 100 consecutive rows (redis LRANGE), `writes` upserts a row with an id up
//! to 10,000 (about half inserts, half updates; redis SET), `row_locks` runs
//! `BEGIN; SELECT ... FOR UPDATE`, waits `lock_hold_ms`, `COMMIT` (redis, without transactions
//! that block: `SET lock:<id> 1 NX PX <lock_hold_ms>`), `connection_storm` opens a connection per
//! query, runs `SELECT 1` (redis PING) and closes it. User statements are sent as written, over
//! the simple/text protocol, one round trip each.
//!
//! # Subcommands
//!
//! - `check --spec F`: connects, authenticates, prepares every statement on the server
//!   (PostgreSQL Parse, MySQL COM_STMT_PREPARE, redis COMMAND INFO and the command's arity),
//!   sends no load. Exit 0, or 1 with the database's own message on stderr.
//! - `run --spec F`: check, setup, load, cleanup (also after SIGTERM, SIGINT or `{"stop":true}`).
//! - `cleanup --spec F`: drops the scratch table/keys (after a SIGKILL).
//!
//! # The scheduler and coordinated omission
//!
//! The intended start of query n is `epoch + n / rate` on the monotonic clock, whatever happened
//! before: there is no drift and no waiting for the previous answer (open loop). Each intended
//! start becomes a ticket in a queue served by `concurrency` connections. When all connections
//! are busy the ticket waits in the queue, and its latency is still measured from its intended
//! start, so a stalled database shows as the latency its callers would see rather than as fewer,
//! faster queries (the coordinated-omission correction). A line `{"rate": 500}` on stdin switches
//! the rate from then on (a new epoch one new interval after the last ticket, never earlier than
//! now); the end of stdin changes nothing. The load ends when `duration_ms` passes or
//! `max_queries` tickets were issued (the queued tickets are still sent), or at a stop (queued
//! tickets are abandoned, queries under way finish within their timeout). A broken connection is
//! reopened for the next query.
//!
//! # Output (JSON lines on stdout; logs on stderr)
//!
//! - `{"event":"ready","engine":..,"address":..,"rate":..,"concurrency":..,"connections":..,"scratch":..}`
//!   after setup, just before the load.
//! - every second `{"event":"progress","elapsed_ms":..,"rate":..,"sent":..,"ok":..,"errors":{kind: n},
//!   "p50_us":..,"p95_us":..,"p99_us":..,"max_us":..,"connect_p95_us":..}`: counts since the
//!   start, latency percentiles of the last second (null when nothing finished), connection time
//!   (connect + authenticate) p95 of every connection opened so far.
//! - `{"event":"done","stop_reason":..,"elapsed_ms":..,"sent":..,"ok":..,"errors":{..},"abandoned":..,
//!   "achieved_qps":..,"connections_opened":..,"connect_p95_us":..,"p50_us":..,..,"statements":[{"name":..,
//!   "sql":..,"sent":..,"ok":..,"errors":{..},"p50_us":..,"p95_us":..,"p99_us":..,"max_us":..}]}`.
//!
//! Error kinds: `timeout`, `connection`, `sqlstate:<SQLSTATE>`, `mysql:<error code>`,
//! `redis:<error code>`. Timeouts: 5 s to connect and authenticate, 10 s per query.
//!
//! # What the server counts
//!
//! One query is one transaction in PostgreSQL (`pg_stat_database.xact_commit`), one statement
//! in MySQL (`Questions`) and one command in Redis (`total_commands_processed`), except a
//! `row_locks` transaction, which MySQL counts as three statements (BEGIN, SELECT, COMMIT).
//! Connecting sends no query (Redis: AUTH and, for a database other than 0, SELECT). `run`
//! sends its load on the connection `check` opened, plus `concurrency - 1` more; `setup` and
//! `cleanup` add a few statements of their own (PostgreSQL about 3, MySQL about 8, Redis SCAN
//! and DEL batches).

pub mod control;
pub mod engines;
pub mod runner;
pub mod schedule;
pub mod spec;
pub mod stats;
pub mod workload;
