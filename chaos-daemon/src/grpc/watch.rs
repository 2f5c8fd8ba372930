//! `WatchExperiment` served from one shared sample. While anyone watches, one task (the
//! publisher) reads every watched experiment each [`WATCH_TICK`] (live while it runs: the run
//! table and the kernel's counters; once ended, the store, once) and publishes the sample on a
//! `tokio::sync::watch` channel. A stream is no task: it is polled by its connection, reads the
//! latest sample when it is due and ends with its experiment's final state.
//!
//! A watcher that lags (a slow client: HTTP/2 flow control stops polling its stream) skips to
//! the latest sample when it is polled again; publishing replaces the sample and never waits
//! for a watcher. Nothing here is on a stop's path: the publisher takes the run table's lock
//! for map reads only, as `GetStatus` does.
//!
//! Each caller ([`Caller::identity`]) may have [`MAX_WATCHERS_PER_CALLER`] streams open and the
//! daemon [`MAX_WATCHERS`]; past either the call is refused with `RESOURCE_EXHAUSTED`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chaos_api::{proto, state::State};
use futures_util::stream::{self, StreamExt as _};
use tokio::sync::{Notify, watch};
use tonic::Status;

use super::{
    DaemonManager, UpdateStream,
    auth::Caller,
    blocking, convert,
    limits::{MAX_WATCHERS, MAX_WATCHERS_PER_CALLER, WATCH_TICK},
    status_of,
};
use crate::sync::lock;

/// A watcher's interval when it asks for none.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The daemon's watchers: their quota and the one publisher.
pub struct Watches {
    manager: Arc<DaemonManager>,
    shared: Arc<Shared>,
    publisher: tokio::task::AbortHandle,
}

impl Watches {
    /// Starts the publisher (on the current runtime); it samples only while someone watches.
    pub fn start(manager: Arc<DaemonManager>) -> Arc<Self> {
        let shared = Arc::new(Shared::new(MAX_WATCHERS_PER_CALLER, MAX_WATCHERS));
        let publisher = tokio::spawn(publish(manager.clone(), shared.clone())).abort_handle();
        Arc::new(Self {
            manager,
            shared,
            publisher,
        })
    }

    /// The stream of experiment `id`'s updates for `caller`, one every `interval_ms` (0: 1 s;
    /// at least [`WATCH_TICK`]), ending with its final state. Refused past the caller's or the
    /// daemon's cap.
    pub async fn watch(
        &self,
        caller: &Caller,
        id: String,
        interval_ms: u32,
    ) -> Result<UpdateStream, Status> {
        let slot = Shared::register(&self.shared, caller.identity(), &id)?;
        let manager = self.manager.clone();
        let first = blocking(move || manager.get(&id).map_err(|e| status_of(&e))).await?;
        let interval = match interval_ms {
            0 => DEFAULT_INTERVAL,
            ms => Duration::from_millis(u64::from(ms)).max(WATCH_TICK),
        };
        let running = first.row.state == State::Running;
        let first = update(convert::status_to_proto(&first));
        if !running {
            // Ended: its one state, and the slot is free again.
            return Ok(Box::pin(stream::once(async { Ok(first) })));
        }
        Ok(follow(first, interval, slot))
    }

    /// Ends every stream (`UNAVAILABLE`) and the publisher: the daemon is stopping, and its
    /// server waits for open streams to end.
    pub fn close(&self) {
        self.publisher.abort();
        self.shared.sample.send_replace(Arc::new(Sample {
            closing: true,
            ..Sample::default()
        }));
    }
}

/// What the publisher and the streams share.
struct Shared {
    quota: Mutex<Quota>,
    sample: watch::Sender<Arc<Sample>>,
    /// Wakes the idle publisher when a first watcher comes.
    wake: Notify,
    max_per_caller: usize,
    max_total: usize,
}

/// Who watches what.
#[derive(Default)]
struct Quota {
    total: usize,
    by_caller: HashMap<String, usize>,
    /// Watched experiment ids, with their watcher counts.
    wanted: HashMap<String, usize>,
}

/// The watched experiments' states at one instant, by id.
#[derive(Default)]
struct Sample {
    entries: HashMap<String, Arc<Entry>>,
    /// The daemon is stopping: every stream ends.
    closing: bool,
}

/// One experiment's state in a sample: its status and whether it runs, or why it cannot be
/// read.
type Entry = Result<(proto::ExperimentStatus, bool), Status>;

fn final_entry(e: &Entry) -> bool {
    !matches!(e, Ok((_, true)))
}

impl Shared {
    fn new(max_per_caller: usize, max_total: usize) -> Self {
        Self {
            quota: Mutex::new(Quota::default()),
            sample: watch::channel(Arc::new(Sample::default())).0,
            wake: Notify::new(),
            max_per_caller,
            max_total,
        }
    }

    /// A slot for `caller` watching `id`, freed when dropped.
    fn register(shared: &Arc<Self>, caller: &str, id: &str) -> Result<Slot, Status> {
        {
            let mut q = lock(&shared.quota);
            let mine = q.by_caller.get(caller).copied().unwrap_or(0);
            if mine >= shared.max_per_caller {
                return Err(Status::resource_exhausted(format!(
                    "{caller} already has {} WatchExperiment streams open, the most one caller \
                     may have: end one before watching another",
                    shared.max_per_caller
                )));
            }
            if q.total >= shared.max_total {
                return Err(Status::resource_exhausted(format!(
                    "the daemon already serves {} WatchExperiment streams, its limit for all \
                     callers together: end one before watching another",
                    shared.max_total
                )));
            }
            q.total += 1;
            *q.by_caller.entry(caller.to_owned()).or_default() += 1;
            *q.wanted.entry(id.to_owned()).or_default() += 1;
        }
        shared.wake.notify_one();
        Ok(Slot {
            shared: shared.clone(),
            caller: caller.to_owned(),
            id: id.to_owned(),
        })
    }

    /// The watched experiment ids.
    fn wanted(&self) -> HashSet<String> {
        lock(&self.quota).wanted.keys().cloned().collect()
    }
}

/// One open stream's share of the quota.
struct Slot {
    shared: Arc<Shared>,
    caller: String,
    id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut q = lock(&self.shared.quota);
        q.total -= 1;
        let release = |counts: &mut HashMap<String, usize>, key: &str| {
            if let Some(n) = counts.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(key);
                }
            }
        };
        release(&mut q.by_caller, &self.caller);
        release(&mut q.wanted, &self.id);
    }
}

fn update(status: proto::ExperimentStatus) -> proto::ExperimentUpdate {
    proto::ExperimentUpdate {
        elapsed_ms: crate::experiment::now_ms().saturating_sub(status.started_unix_ms),
        status: Some(status),
    }
}

/// `first`, then the latest sample of the slot's experiment every `interval`, then its final
/// state as soon as a sample shows it.
fn follow(first: proto::ExperimentUpdate, interval: Duration, slot: Slot) -> UpdateStream {
    let mut samples = slot.shared.sample.subscribe();
    // The current sample is read too: a watcher that came after the close ends at once.
    samples.mark_changed();
    let follower = Follower {
        samples,
        slot,
        interval,
        due: Instant::now() + interval,
        done: false,
    };
    let rest = stream::unfold(follower, |mut f| async move {
        let next = f.next().await?;
        Some((next, f))
    });
    Box::pin(stream::once(async { Ok(first) }).chain(rest))
}

struct Follower {
    samples: watch::Receiver<Arc<Sample>>,
    slot: Slot,
    interval: Duration,
    due: Instant,
    done: bool,
}

impl Follower {
    async fn next(&mut self) -> Option<Result<proto::ExperimentUpdate, Status>> {
        while !self.done {
            self.samples.changed().await.ok()?;
            // The latest sample: one that lagged is skipped.
            let sample = self.samples.borrow_and_update().clone();
            if sample.closing {
                self.done = true;
                return Some(Err(Status::unavailable(
                    "chaos-daemon is shutting down; its experiments stop with it",
                )));
            }
            // Not in this sample: taken before this watcher came, the next one has it.
            let Some(entry) = sample.entries.get(&self.slot.id) else {
                continue;
            };
            let now = Instant::now();
            // Due within half a tick: the ticks' jitter does not skip a period.
            let due = now + WATCH_TICK / 2 >= self.due;
            if final_entry(entry) {
                self.done = true;
            } else if due {
                self.due = now + self.interval;
            } else {
                continue;
            }
            return Some(match &**entry {
                Ok((status, _)) => Ok(update(status.clone())),
                Err(e) => Err(e.clone()),
            });
        }
        None
    }
}

/// The publisher: while anyone watches, samples every watched experiment each [`WATCH_TICK`];
/// an ended one is read once and kept while it is watched.
async fn publish(manager: Arc<DaemonManager>, shared: Arc<Shared>) {
    let mut ended: HashMap<String, Arc<Entry>> = HashMap::new();
    loop {
        let wanted = shared.wanted();
        ended.retain(|id, _| wanted.contains(id));
        if wanted.is_empty() {
            shared.wake.notified().await;
            continue;
        }
        let unread: Vec<String> = wanted
            .iter()
            .filter(|id| !ended.contains_key(*id))
            .cloned()
            .collect();
        let m = manager.clone();
        let read = tokio::task::spawn_blocking(move || {
            unread
                .into_iter()
                .map(|id| {
                    let entry = m.get(&id).map_err(|e| status_of(&e)).map(|v| {
                        let running = v.row.state == State::Running;
                        (convert::status_to_proto(&v), running)
                    });
                    (id, Arc::new(entry))
                })
                .collect::<Vec<_>>()
        })
        .await;
        match read {
            Ok(read) => {
                let mut entries = HashMap::with_capacity(wanted.len());
                for (id, entry) in read {
                    if final_entry(&entry) {
                        ended.insert(id.clone(), entry.clone());
                    }
                    entries.insert(id, entry);
                }
                for (id, entry) in &ended {
                    entries.entry(id.clone()).or_insert_with(|| entry.clone());
                }
                shared.sample.send_replace(Arc::new(Sample {
                    entries,
                    closing: false,
                }));
            }
            Err(e) => tracing::error!(error = %e, "sampling the watched experiments failed"),
        }
        tokio::time::sleep(WATCH_TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, injected: u64, state: State) -> proto::ExperimentStatus {
        proto::ExperimentStatus {
            id: id.into(),
            state: state.to_proto() as i32,
            counters: Some(proto::Counters {
                injected,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn publish(shared: &Shared, entries: &[(&str, u64, State)]) {
        let entries = entries
            .iter()
            .map(|&(id, injected, state)| {
                let entry = Ok((status(id, injected, state), state == State::Running));
                (id.to_owned(), Arc::new(entry))
            })
            .collect();
        shared.sample.send_replace(Arc::new(Sample {
            entries,
            closing: false,
        }));
    }

    fn injected(u: &Result<proto::ExperimentUpdate, Status>) -> u64 {
        let status = u.as_ref().unwrap().status.as_ref().unwrap();
        status.counters.as_ref().unwrap().injected
    }

    fn quota(shared: &Shared) -> (usize, usize, usize) {
        let q = lock(&shared.quota);
        (q.total, q.by_caller.len(), q.wanted.len())
    }

    #[test]
    fn watchers_are_capped_per_caller_and_in_all_and_freed_when_they_end() {
        let shared = Arc::new(Shared::new(2, 3));
        let a1 = Shared::register(&shared, "uid 0", "e1").unwrap();
        let _a2 = Shared::register(&shared, "uid 0", "e2").unwrap();
        let refused = Shared::register(&shared, "uid 0", "e1").err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "uid 0 already has 2 WatchExperiment streams open, the most one caller may have: \
             end one before watching another"
        );
        let _b1 = Shared::register(&shared, "cert CN=bob (observer)", "e1").unwrap();
        let refused = Shared::register(&shared, "insecure tcp", "e1")
            .err()
            .unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "the daemon already serves 3 WatchExperiment streams, its limit for all callers \
             together: end one before watching another"
        );
        assert_eq!(quota(&shared), (3, 2, 2));
        drop(a1);
        assert_eq!(quota(&shared), (2, 2, 2));
        let _c1 = Shared::register(&shared, "insecure tcp", "e3").unwrap();
        assert_eq!(
            shared.wanted(),
            HashSet::from(["e1", "e2", "e3"].map(String::from))
        );
    }

    #[tokio::test]
    async fn a_lagging_watcher_skips_to_the_latest_state_and_ends_with_the_final_one() {
        let shared = Arc::new(Shared::new(4, 4));
        let slot = Shared::register(&shared, "uid 0", "e1").unwrap();
        let mut s = follow(update(status("e1", 0, State::Running)), WATCH_TICK, slot);
        assert_eq!(injected(&s.next().await.unwrap()), 0);
        // Published many times while nobody polls the stream: publishing never waits.
        let t = Instant::now();
        for n in 1..=10_000 {
            publish(
                &shared,
                &[("e1", n, State::Running), ("e2", 7, State::Running)],
            );
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        tokio::time::sleep(WATCH_TICK).await;
        assert_eq!(injected(&s.next().await.unwrap()), 10_000);
        // The final state comes at once, whatever the interval, and ends the stream.
        publish(&shared, &[("e1", 10_001, State::EmergencyStopped)]);
        let last = s.next().await.unwrap().unwrap();
        assert_eq!(
            last.status.unwrap().state,
            State::EmergencyStopped.to_proto() as i32
        );
        assert!(s.next().await.is_none());
        // The slot is free once the stream is dropped.
        drop(s);
        assert_eq!(quota(&shared), (0, 0, 0));
    }

    #[tokio::test]
    async fn updates_come_at_the_watchers_interval_and_end_when_the_daemon_stops() {
        let shared = Arc::new(Shared::new(4, 4));
        let slot = Shared::register(&shared, "uid 0", "e1").unwrap();
        let interval = Duration::from_millis(200);
        let mut s = follow(update(status("e1", 0, State::Running)), interval, slot);
        s.next().await.unwrap().unwrap();
        let t = Instant::now();
        let ticker = {
            let shared = shared.clone();
            tokio::spawn(async move {
                for n in 1.. {
                    publish(&shared, &[("e1", n, State::Running)]);
                    tokio::time::sleep(WATCH_TICK).await;
                }
            })
        };
        s.next().await.unwrap().unwrap();
        let took = t.elapsed();
        assert!(
            took >= interval - WATCH_TICK / 2 && took < interval * 3,
            "{took:?}"
        );
        ticker.abort();
        shared.sample.send_replace(Arc::new(Sample {
            closing: true,
            ..Sample::default()
        }));
        let closed = s.next().await.unwrap().err().unwrap();
        assert_eq!(closed.code(), tonic::Code::Unavailable);
        assert!(s.next().await.is_none());
        // One that comes after the close ends at once too.
        let slot = Shared::register(&shared, "uid 0", "e1").unwrap();
        let mut late = follow(update(status("e1", 0, State::Running)), interval, slot);
        late.next().await.unwrap().unwrap();
        let closed = late.next().await.unwrap().err().unwrap();
        assert_eq!(closed.code(), tonic::Code::Unavailable);
    }
}
