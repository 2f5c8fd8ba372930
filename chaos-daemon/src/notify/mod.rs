//! Notifications and rollback strategies: what the daemon tells people and other systems when
//! an experiment starts, crosses a budget alert, has a guard that alerts instead of rolling
//! back, is rolled back, exhausts its budget, is emergency-stopped, and ends; and the extra
//! rollback steps after the kernel is disarmed.
//!
//! * [`Notifier::notify`] never blocks and does no I/O on the caller's thread: it `try_send`s
//!   into a bounded queue (a full queue drops the notice and counts it). Delivery runs on a
//!   thread of its own (`deliver`) with a current-thread tokio runtime, one worker per channel,
//!   bounded retries with exponential backoff and a timeout per attempt. Outcomes are logged and
//!   counted in `chaos_notifications_total{channel, outcome}` (`delivered`, `failed`,
//!   `dropped`), so a channel that is down never delays a rollback or an emergency stop.
//! * Channels (`rollback.channels`, used when listed in `rollback.notification_channels`):
//!   Slack incoming webhooks, PagerDuty Events API v2 (a rollback or an emergency stop
//!   triggers, the end resolves, dedup key = experiment id; whether a rollback's incident stays
//!   open until a human resolves it depends on whether the lifecycle sends [`NoticeKind::Ended`]
//!   after [`NoticeKind::RolledBack`]), a generic JSON webhook, e-mail over SMTP (`lettre`),
//!   and Alertmanager API v2 alerts (`ChaosExperiment<Kind>`, all resolved at the end). Every
//!   kind goes to every channel except PagerDuty. The bodies are built in `payload`, the
//!   channels resolved and delivered in `channel`.
//! * [`Notifier::run_strategies`] runs the strategies set true in `rollback.strategies`:
//!   `pod_restart` is `cgroup.kill` of the target ([`crate::cgroupfs::kill_tree`]); the others
//!   POST to their `rollback.actions` webhook on the delivery thread while the caller waits
//!   for the answers (bounded by `rollback.max_rollback_time`).
//! * [`Notifier::preflight`] checks that every channel's secret can be read and every
//!   strategy can run, one line each.

mod channel;
mod deliver;
mod payload;

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, mpsc as std_mpsc},
    time::{Duration, Instant},
};

use chaos_api::config::ChaosConfig;
use prometheus::IntCounterVec;
use tokio::sync::mpsc::error::TrySendError;

use channel::{Channel, Hook};
use deliver::{ActionJob, Queues};

/// What happened to an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// The experiment was armed.
    Started,
    /// Spend crossed `budget.alert_threshold` of a budget.
    BudgetAlert,
    /// A guard is red and alerts instead of rolling back: a warning SLO, a critical SLO while
    /// `rollback_triggers.slo_violation` is false, any guard while `rollback.automatic` is
    /// false. Once per guard per experiment.
    GuardAlert,
    /// A guard fired and the experiment was rolled back.
    RolledBack,
    /// A budget was spent and the experiment stopped.
    BudgetExhausted,
    /// The emergency stop disarmed the experiment.
    EmergencyStop,
    /// The experiment ended (any way); resolves what the others raised.
    Ended,
}

impl NoticeKind {
    /// Every kind, in lifecycle order.
    pub const ALL: [Self; 7] = [
        Self::Started,
        Self::BudgetAlert,
        Self::GuardAlert,
        Self::RolledBack,
        Self::BudgetExhausted,
        Self::EmergencyStop,
        Self::Ended,
    ];

    /// The snake_case name (`rolled_back`), as in the webhook JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::BudgetAlert => "budget_alert",
            Self::GuardAlert => "guard_alert",
            Self::RolledBack => "rolled_back",
            Self::BudgetExhausted => "budget_exhausted",
            Self::EmergencyStop => "emergency_stop",
            Self::Ended => "ended",
        }
    }

    /// A human title (`Rolled back`), as in messages and e-mail subjects.
    pub fn title(self) -> &'static str {
        match self {
            Self::Started => "Experiment started",
            Self::BudgetAlert => "Budget alert",
            Self::GuardAlert => "Guard alert",
            Self::RolledBack => "Rolled back",
            Self::BudgetExhausted => "Budget exhausted",
            Self::EmergencyStop => "Emergency stop",
            Self::Ended => "Experiment ended",
        }
    }

    /// The Alertmanager alert name (`ChaosExperimentRolledBack`).
    pub fn alertname(self) -> &'static str {
        match self {
            Self::Started => "ChaosExperimentStarted",
            Self::BudgetAlert => "ChaosExperimentBudgetAlert",
            Self::GuardAlert => "ChaosExperimentGuardAlert",
            Self::RolledBack => "ChaosExperimentRolledBack",
            Self::BudgetExhausted => "ChaosExperimentBudgetExhausted",
            Self::EmergencyStop => "ChaosExperimentEmergencyStop",
            Self::Ended => "ChaosExperimentEnded",
        }
    }

    /// The `severity` label of its alert.
    pub fn severity(self) -> &'static str {
        match self {
            Self::Started | Self::Ended => "info",
            Self::BudgetAlert | Self::GuardAlert => "warning",
            Self::RolledBack | Self::BudgetExhausted | Self::EmergencyStop => "critical",
        }
    }

    fn emoji(self) -> &'static str {
        match self {
            Self::Started => ":test_tube:",
            Self::BudgetAlert => ":money_with_wings:",
            Self::GuardAlert => ":warning:",
            Self::RolledBack => ":rewind:",
            Self::BudgetExhausted => ":no_entry:",
            Self::EmergencyStop => ":rotating_light:",
            Self::Ended => ":white_check_mark:",
        }
    }
}

/// One event to announce. `fields` are extra facts (guard, value, threshold, spend) shown by
/// every channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub experiment_id: String,
    pub name: String,
    /// The experiment type as users write it (`packet_loss`).
    pub experiment_type: String,
    /// The target as users wrote it (a cgroup path, a pod).
    pub target: String,
    /// This node's name.
    pub node: String,
    /// Why (the guard and its value, `budget exhausted`, ...); may be empty.
    pub reason: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub fields: Vec<(String, String)>,
}

/// How hard delivery tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts per notice and channel (and per rollback action), at least 1. Default: 3.
    pub attempts: u32,
    /// Longest wait for one attempt. Default: 5 s.
    pub attempt_timeout: Duration,
    /// The wait before the second attempt; it doubles for each further one. Default: 1 s.
    pub first_backoff: Duration,
    /// Notices waiting in the queue, and in each channel's queue, before new ones are dropped.
    /// Default: 256.
    pub queue_capacity: usize,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            attempt_timeout: Duration::from_secs(5),
            first_backoff: Duration::from_secs(1),
            queue_capacity: 256,
        }
    }
}

impl DeliveryPolicy {
    /// The longest one delivery can take: every attempt timing out, plus the backoffs.
    pub fn worst_case(&self) -> Duration {
        let attempts = self.attempts.max(1);
        let backoffs = self
            .first_backoff
            .saturating_mul(2u32.saturating_pow(attempts - 1).saturating_sub(1));
        self.attempt_timeout.saturating_mul(attempts) + backoffs
    }
}

/// Why a [`Notifier`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A channel or action definition the daemon cannot use (a config that passed validation
    /// can still hold a URL or address that does not fully parse).
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    /// The delivery thread, its runtime or its HTTP client could not be started.
    #[error("starting the notification thread: {0}")]
    Start(#[source] std::io::Error),
}

/// The notification channels and rollback strategies of one config. Cheap to clone; the
/// delivery thread ends when the last clone is dropped (after what is queued).
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    channels: Vec<Arc<Channel>>,
    /// `None` when there is nothing to deliver (no channel and no action).
    queues: Option<Queues>,
    /// The strategies set true, in running order.
    strategies: Vec<&'static str>,
    actions: Vec<(&'static str, Arc<Hook>)>,
    policy: DeliveryPolicy,
    max_rollback_time: Duration,
}

/// Longest wait for a killed target's cgroup to empty.
const POD_RESTART_WAIT: Duration = Duration::from_secs(5);

impl Notifier {
    /// The channels of `rollback.notification_channels` and the strategies of
    /// `rollback.strategies`, with the default [`DeliveryPolicy`]. `counter` is
    /// `chaos_notifications_total` ([`crate::metrics::Metrics::notifications`]).
    pub fn new(config: &ChaosConfig, counter: IntCounterVec) -> Result<Self, NotifyError> {
        Self::with_policy(config, counter, DeliveryPolicy::default())
    }

    /// [`Notifier::new`] with another delivery policy.
    pub fn with_policy(
        config: &ChaosConfig,
        counter: IntCounterVec,
        policy: DeliveryPolicy,
    ) -> Result<Self, NotifyError> {
        let rollback = &config.rollback;
        let port = config.monitoring.prometheus.alertmanager_port;
        let channels = rollback
            .notification_channels
            .iter()
            .map(|name| match rollback.channels.get(name) {
                Some(definition) => Channel::resolve(name, definition, port).map(Arc::new),
                None => Err(NotifyError::Config {
                    path: "rollback.notification_channels".to_owned(),
                    reason: format!("{name:?} is not defined; define it under rollback.channels"),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let strategies = rollback.strategies.enabled();
        let actions = rollback
            .actions
            .by_strategy()
            .into_iter()
            .filter(|(strategy, _)| strategies.contains(strategy))
            .filter_map(|(strategy, action)| Some((strategy, action?)))
            .map(|(strategy, webhook)| {
                Hook::resolve(&format!("rollback.actions.{strategy}"), webhook)
                    .map(|hook| (strategy, Arc::new(hook)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let queues = if channels.is_empty() && actions.is_empty() {
            None
        } else {
            Some(deliver::start(channels.clone(), policy, counter).map_err(NotifyError::Start)?)
        };
        Ok(Self {
            inner: Arc::new(Inner {
                channels,
                queues,
                strategies,
                actions,
                policy,
                max_rollback_time: Duration::from_secs(rollback.max_rollback_time),
            }),
        })
    }

    /// A notifier with no channel and no strategy: `notify` does nothing.
    pub fn disabled() -> Self {
        Self {
            inner: Arc::new(Inner {
                channels: Vec::new(),
                queues: None,
                strategies: Vec::new(),
                actions: Vec::new(),
                policy: DeliveryPolicy::default(),
                max_rollback_time: Duration::ZERO,
            }),
        }
    }

    /// The names of the channels notices go to.
    pub fn channels(&self) -> Vec<&str> {
        self.inner
            .channels
            .iter()
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Queues `notice` for every channel that takes its kind, and returns at once: no I/O, no
    /// waiting. A full queue drops the notice (counted as `dropped` for each such channel).
    pub fn notify(&self, notice: Notice) {
        let Some(queues) = &self.inner.queues else {
            return;
        };
        if self.inner.channels.is_empty() {
            return;
        }
        if let Err(error) = queues.notices.try_send(Arc::new(notice)) {
            let (notice, why) = match error {
                TrySendError::Full(notice) => (notice, "the notification queue is full"),
                TrySendError::Closed(notice) => (notice, "the delivery thread is gone"),
            };
            for channel in &self.inner.channels {
                if channel.wants(notice.kind) {
                    queues
                        .counter
                        .with_label_values(&[&channel.name, "dropped"])
                        .inc();
                }
            }
            tracing::warn!(
                experiment_id = %notice.experiment_id,
                kind = notice.kind.as_str(),
                why,
                "notification dropped"
            );
        }
    }

    /// Pre-flight: one line per channel (`channel NAME`: its secret can be read, its URL is
    /// usable) and per strategy set true (`strategy NAME`). An `Err` fails pre-flight; a
    /// strategy without an action is `Ok("not configured, will be skipped")`.
    pub fn preflight(&self) -> Vec<(String, Result<String, String>)> {
        let mut lines: Vec<_> = self
            .inner
            .channels
            .iter()
            .map(|channel| (format!("channel {}", channel.name), channel.check()))
            .collect();
        for strategy in &self.inner.strategies {
            let result = match (*strategy, self.action(strategy)) {
                ("pod_restart", _) => Ok("cgroup.kill of the target".to_owned()),
                (_, Some(hook)) => hook.check(),
                (_, None) => Ok("not configured, will be skipped".to_owned()),
            };
            lines.push((format!("strategy {strategy}"), result));
        }
        lines
    }

    /// Runs every strategy set true, after the experiment was disarmed, and returns one result
    /// per strategy in the order of `rollback.strategies`. The webhook actions are POSTed
    /// concurrently on the delivery thread (with the [`DeliveryPolicy`]'s retries) while
    /// `pod_restart` writes `cgroup.kill` of each of `targets` here and waits up to 5 s for
    /// each to empty; then this waits for the actions' answers, at most the policy's worst case and at
    /// most `rollback.max_rollback_time`. Blocks: call it from a recorder thread, never from
    /// the disarm path or an async task. A strategy without an action is
    /// `Ok("not configured, skipped")`.
    pub fn run_strategies(
        &self,
        notice: &Notice,
        targets: &[PathBuf],
    ) -> Vec<(String, Result<String, String>)> {
        let inner = &self.inner;
        let (reply, answers) = std_mpsc::channel();
        let mut results: Vec<(&'static str, Result<String, String>)> = Vec::new();
        let mut pending = 0;
        for &strategy in &inner.strategies {
            if strategy == "pod_restart" {
                continue;
            }
            let (Some(hook), Some(queues)) = (self.action(strategy), &inner.queues) else {
                results.push((strategy, Ok("not configured, skipped".to_owned())));
                continue;
            };
            let job = ActionJob {
                strategy,
                hook: Arc::clone(hook),
                body: payload::action(notice, strategy),
                reply: reply.clone(),
            };
            match queues.actions.send(job) {
                Ok(()) => pending += 1,
                Err(_) => results.push((strategy, Err("the delivery thread is gone".to_owned()))),
            }
        }
        if inner.strategies.contains(&"pod_restart") {
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for target in targets {
                match crate::cgroupfs::kill_tree(target, POD_RESTART_WAIT, || true) {
                    Ok(n) => done.push(format!(
                        "cgroup.kill of {}: {n} process(es)",
                        target.display()
                    )),
                    Err(e) => failed.push(format!("cgroup.kill of {}: {e}", target.display())),
                }
            }
            let result = if failed.is_empty() {
                Ok(done.join("; "))
            } else {
                Err(failed
                    .into_iter()
                    .chain(done)
                    .collect::<Vec<_>>()
                    .join("; "))
            };
            results.push(("pod_restart", result));
        }
        let wait =
            (inner.policy.worst_case() + Duration::from_secs(1)).min(inner.max_rollback_time);
        let deadline = Instant::now() + wait;
        while pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match answers.recv_timeout(left) {
                Ok(answer) => {
                    results.push(answer);
                    pending -= 1;
                }
                Err(_) => break,
            }
        }
        for &strategy in &inner.strategies {
            if !results.iter().any(|(done, _)| *done == strategy) {
                results.push((strategy, Err(format!("no answer within {wait:?}"))));
            }
        }
        inner
            .strategies
            .iter()
            .filter_map(|strategy| {
                let i = results.iter().position(|(done, _)| done == strategy)?;
                let (name, result) = results.swap_remove(i);
                Some((name.to_owned(), result))
            })
            .collect()
    }

    fn action(&self, strategy: &str) -> Option<&Arc<Hook>> {
        self.inner
            .actions
            .iter()
            .find(|(name, _)| *name == strategy)
            .map(|(_, hook)| hook)
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("channels", &self.channels())
            .field("strategies", &self.inner.strategies)
            .finish_non_exhaustive()
    }
}
