//! The three subcommands' phases: `check` (connect, authenticate, prepare), `run` (check, setup,
//! load through the scheduler and the connection pool, cleanup) and `cleanup`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

use crate::engines::{Conn, DbError, QUERY_TIMEOUT, Target};
use crate::schedule::{self, Control, End, Limits, Ticket};
use crate::spec::{Engine, Spec, SpecError};
use crate::stats::{Stats, emit};
use crate::workload::{Plan, Rng, Scratch};

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("setting up the scratch data: {0}")]
    Setup(DbError),
    #[error("dropping the scratch data: {0}")]
    Cleanup(DbError),
}

/// Connects, authenticates and prepares every statement; returns the open connection.
pub async fn check(spec: &Spec, stats: Option<&Stats>) -> Result<(Target, Conn), RunError> {
    let target = Target::from_spec(spec)?;
    let mut conn = match stats {
        Some(stats) => connect_measured(&target, stats).await?,
        None => target.connect().await?,
    };
    conn.check(Plan::new(spec).statements()).await?;
    Ok((target, conn))
}

/// Drops the scratch table/keys of the spec (after a run that was killed).
pub async fn cleanup(spec: &Spec) -> Result<(), RunError> {
    cleanup_after(&Target::from_spec(spec)?, &Scratch::new(&spec.scratch)).await
}

/// Everything a worker shares with the others.
struct Shared {
    target: Target,
    plan: Plan,
    scratch: Scratch,
    lock_hold: Duration,
    stats: Stats,
    /// Set on a stop from outside: queued tickets are not sent any more.
    abandon: AtomicBool,
    tickets: Mutex<mpsc::UnboundedReceiver<Ticket>>,
}

/// Check, setup, load, cleanup; prints the `ready`, `progress` and `done` lines and returns the
/// `done` line.
pub async fn run(
    spec: &Spec,
    mut control: mpsc::Receiver<Control>,
) -> Result<serde_json::Value, RunError> {
    let plan = Plan::new(spec);
    let stats = Stats::new(&plan.ops, spec.rate);
    let (target, mut first) = check(spec, Some(&stats)).await?;
    let scratch = Scratch::new(&spec.scratch);
    if plan.needs_scratch()
        && let Err(e) = first.setup(&scratch).await
    {
        first.close().await;
        cleanup_after(&target, &scratch).await?;
        return Err(RunError::Setup(e));
    }
    let storm = plan.ops.iter().all(|op| op.own_connection());
    let mut conns = Vec::new();
    if storm {
        first.close().await;
    } else {
        conns.push(first);
        while conns.len() < spec.concurrency as usize {
            match connect_measured(&target, &stats).await {
                Ok(conn) => conns.push(conn),
                Err(e) => {
                    for conn in conns {
                        conn.close().await;
                    }
                    if plan.needs_scratch() {
                        cleanup_after(&target, &scratch).await?;
                    }
                    return Err(e.into());
                }
            }
        }
    }

    let (ticket_tx, ticket_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        target,
        plan,
        scratch,
        lock_hold: Duration::from_millis(spec.lock_hold_ms),
        stats,
        abandon: AtomicBool::new(false),
        tickets: Mutex::new(ticket_rx),
    });
    emit(&json!({
        "event": "ready",
        "engine": spec.engine.name(),
        "address": spec.address,
        "rate": spec.rate,
        "concurrency": spec.concurrency,
        "connections": conns.len(),
        "scratch": shared.plan.needs_scratch().then(|| match spec.engine {
            Engine::Redis => shared.scratch.key_prefix(),
            _ => shared.scratch.table(),
        }),
    }));
    shared.stats.start();

    let mut workers = tokio::task::JoinSet::new();
    let mut conns = conns.into_iter();
    for i in 0..spec.concurrency {
        let conn = conns.next();
        workers.spawn(worker(
            Arc::clone(&shared),
            conn,
            0x5EED ^ (u64::from(i) << 32),
        ));
    }
    let progress = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                emit(&shared.stats.progress());
            }
        })
    };

    let limits = Limits {
        rate: spec.rate,
        duration: Duration::from_millis(spec.duration_ms),
        max_queries: spec.max_queries,
    };
    let end = schedule::run(&limits, &ticket_tx, &mut control, |rate| {
        eprintln!("chaos-dbload: rate {rate} qps from now on");
        shared.stats.set_rate(rate);
    })
    .await;
    if matches!(end, End::Stopped(_)) {
        shared.abandon.store(true, Ordering::SeqCst);
    }
    drop(ticket_tx);
    // Queries under way finish (bounded by their timeout); a second stop does not wait for them.
    let grace = QUERY_TIMEOUT + shared.lock_hold + Duration::from_secs(1);
    let drained = async { while workers.join_next().await.is_some() {} };
    tokio::select! {
        () = async { let _ = tokio::time::timeout(grace, drained).await; } => {}
        Some(Control::Stop(_)) = control.recv() => {}
    }
    workers.abort_all();
    progress.abort();
    if shared.plan.needs_scratch() {
        cleanup_after(&shared.target, &shared.scratch).await?;
    }
    let done = shared.stats.done(&end.reason());
    emit(&done);
    Ok(done)
}

async fn cleanup_after(target: &Target, scratch: &Scratch) -> Result<(), RunError> {
    let mut conn = target.connect().await.map_err(RunError::Cleanup)?;
    let dropped = conn.cleanup(scratch).await;
    conn.close().await;
    dropped.map_err(RunError::Cleanup)
}

/// One connection of the pool: takes the next ticket, sends a query, measures it from the
/// ticket's intended start, reopens the connection when it broke.
async fn worker(shared: Arc<Shared>, mut conn: Option<Conn>, seed: u64) {
    let mut rng = Rng::new(seed);
    loop {
        let ticket = shared.tickets.lock().await.recv().await;
        let Some(ticket) = ticket else { break };
        if shared.abandon.load(Ordering::SeqCst) {
            shared.stats.abandoned();
            continue;
        }
        let index = shared.plan.pick(&mut rng);
        let op = &shared.plan.ops[index];
        let query = op.query(&mut rng, shared.lock_hold);
        shared.stats.sent(index);
        let result = if op.own_connection() {
            match connect_measured(&shared.target, &shared.stats).await {
                Ok(mut own) => {
                    let result = own.execute(&shared.scratch, &query).await;
                    own.close().await;
                    result
                }
                Err(e) => Err(e),
            }
        } else {
            let open = match conn.take() {
                Some(open) => Ok(open),
                None => connect_measured(&shared.target, &shared.stats).await,
            };
            match open {
                Ok(mut open) => {
                    let result = open.execute(&shared.scratch, &query).await;
                    match &result {
                        Err(e) if e.breaks_connection() => open.close().await,
                        _ => conn = Some(open),
                    }
                    result
                }
                Err(e) => Err(e),
            }
        };
        shared.stats.finished(
            index,
            ticket.intended.elapsed(),
            result.as_ref().map(|_| ()),
        );
    }
    if let Some(conn) = conn {
        conn.close().await;
    }
}

/// Opens a connection and records how long connecting and authenticating took.
async fn connect_measured(target: &Target, stats: &Stats) -> Result<Conn, DbError> {
    let began = Instant::now();
    let conn = target.connect().await?;
    stats.connected(began.elapsed());
    Ok(conn)
}
