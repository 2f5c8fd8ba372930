//! The delivery thread: its own current-thread tokio runtime, fed through a bounded queue that
//! [`super::Notifier::notify`] only ever `try_send`s into. A dispatcher hands each notice to one
//! worker task per channel (again through a bounded queue, so one slow channel neither delays
//! nor reorders the others), and each worker delivers in order with bounded retries. Rollback
//! actions run here too, each as a task of its own, and answer on a reply channel.

use std::{
    io,
    sync::{Arc, mpsc as std_mpsc},
    thread,
};

use prometheus::IntCounterVec;
use reqwest::Client;
use serde_json::Value;
use tokio::{runtime, sync::mpsc, task};

use super::{
    DeliveryPolicy, Notice,
    channel::{Channel, Failure, Hook, Memory},
};

/// A rollback action to POST, with where to report its outcome.
pub(super) struct ActionJob {
    pub strategy: &'static str,
    pub hook: Arc<Hook>,
    pub body: Value,
    pub reply: std_mpsc::Sender<(&'static str, Result<String, String>)>,
}

/// The queues into the delivery thread, and the counter of what it could not take.
pub(super) struct Queues {
    pub notices: mpsc::Sender<Arc<Notice>>,
    pub actions: mpsc::UnboundedSender<ActionJob>,
    pub counter: IntCounterVec,
}

/// Starts the delivery thread. It ends once every [`Queues`] is dropped and the queued notices
/// are delivered (or given up).
pub(super) fn start(
    channels: Vec<Arc<Channel>>,
    policy: DeliveryPolicy,
    counter: IntCounterVec,
) -> io::Result<Queues> {
    let client = Client::builder()
        .timeout(policy.attempt_timeout)
        .build()
        .map_err(io::Error::other)?;
    let runtime = runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (notices, notices_rx) = mpsc::channel(policy.queue_capacity.max(1));
    let (actions, actions_rx) = mpsc::unbounded_channel();
    let delivery = Delivery {
        client,
        policy,
        counter: counter.clone(),
    };
    thread::Builder::new()
        .name("chaos-notify".to_owned())
        .spawn(move || {
            // Tasks run on this one thread (spawn_local), so they need not be Send.
            let local = task::LocalSet::new();
            runtime.block_on(local.run_until(dispatch(channels, notices_rx, actions_rx, delivery)))
        })?;
    Ok(Queues {
        notices,
        actions,
        counter,
    })
}

/// What every worker shares.
#[derive(Clone)]
struct Delivery {
    client: Client,
    policy: DeliveryPolicy,
    counter: IntCounterVec,
}

impl Delivery {
    fn count(&self, channel: &str, outcome: &str) {
        self.counter.with_label_values(&[channel, outcome]).inc();
    }

    /// Runs `attempt` up to `policy.attempts` times while it fails with a retryable failure,
    /// sleeping `first_backoff`, then twice that, and so on, in between; each attempt is cut
    /// off after `attempt_timeout`.
    async fn with_retries(
        &self,
        mut attempt: impl AsyncFnMut() -> Result<(), Failure>,
    ) -> Result<(), String> {
        let policy = &self.policy;
        let mut backoff = policy.first_backoff;
        for number in 1..=policy.attempts.max(1) {
            let failure = match tokio::time::timeout(policy.attempt_timeout, attempt()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(failure)) => failure,
                Err(_) => Failure {
                    retry: true,
                    message: format!("no answer within {:?}", policy.attempt_timeout),
                },
            };
            if !failure.retry || number >= policy.attempts {
                return Err(format!("{} (attempt {number})", failure.message));
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
        Err("no attempt made".to_owned())
    }
}

async fn dispatch(
    channels: Vec<Arc<Channel>>,
    mut notices: mpsc::Receiver<Arc<Notice>>,
    mut actions: mpsc::UnboundedReceiver<ActionJob>,
    delivery: Delivery,
) {
    let mut workers = Vec::new();
    let mut queues = Vec::new();
    for channel in channels {
        let (queue, rx) = mpsc::channel(delivery.policy.queue_capacity.max(1));
        workers.push(task::spawn_local(worker(
            Arc::clone(&channel),
            rx,
            delivery.clone(),
        )));
        queues.push((channel, queue));
    }
    loop {
        tokio::select! {
            notice = notices.recv() => {
                let Some(notice) = notice else { break };
                for (channel, queue) in &queues {
                    if channel.wants(notice.kind) && queue.try_send(Arc::clone(&notice)).is_err() {
                        delivery.count(&channel.name, "dropped");
                        tracing::warn!(
                            channel = %channel.name,
                            experiment_id = %notice.experiment_id,
                            kind = notice.kind.as_str(),
                            "notification dropped: the channel's queue is full"
                        );
                    }
                }
            }
            Some(job) = actions.recv() => {
                task::spawn_local(run_action(job, delivery.clone()));
            }
        }
    }
    drop(queues);
    for worker in workers {
        // A worker that panicked has nothing left to deliver.
        let _ = worker.await;
    }
}

/// Delivers one channel's notices in order.
async fn worker(channel: Arc<Channel>, mut queue: mpsc::Receiver<Arc<Notice>>, delivery: Delivery) {
    let mut memory = Memory::default();
    let timeout = delivery.policy.attempt_timeout;
    while let Some(notice) = queue.recv().await {
        let result = delivery
            .with_retries(async || {
                channel
                    .deliver(&delivery.client, &notice, &mut memory, timeout)
                    .await
            })
            .await;
        match result {
            Ok(()) => {
                delivery.count(&channel.name, "delivered");
                tracing::debug!(
                    channel = %channel.name,
                    experiment_id = %notice.experiment_id,
                    kind = notice.kind.as_str(),
                    "notification delivered"
                );
            }
            Err(error) => {
                delivery.count(&channel.name, "failed");
                tracing::warn!(
                    channel = %channel.name,
                    experiment_id = %notice.experiment_id,
                    kind = notice.kind.as_str(),
                    %error,
                    "notification failed"
                );
            }
        }
    }
}

async fn run_action(job: ActionJob, delivery: Delivery) {
    let hook = &job.hook;
    let body = &job.body;
    let result = delivery
        .with_retries(async || {
            hook.post(&delivery.client, body, delivery.policy.attempt_timeout)
                .await
        })
        .await
        .map(|()| format!("POST to {} answered 2xx", hook.url));
    if let Err(error) = &result {
        tracing::warn!(strategy = job.strategy, %error, "rollback action failed");
    }
    // The caller may have stopped waiting; then nobody needs the answer.
    let _ = job.reply.send((job.strategy, result));
}
