//! The open-loop scheduler: intended start times exactly 1/rate apart from a monotonic epoch,
//! issued as tickets whatever the state of the connections (a busy pool delays the query, not
//! the ticket: latency counts from the intended start, correcting coordinated omission), rate
//! changes from now on, and the end of the load (duration, cap, stop).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// A query to send: when it was meant to start.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub intended: Instant,
}

/// A command from outside while the load runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// Queries per second from now on.
    SetRate(f64),
    /// Stop at once (the cause is reported as the stop reason).
    Stop(String),
}

/// Why the load ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `duration_ms` passed.
    Duration,
    /// `max_queries` tickets were issued.
    MaxQueries,
    /// Stopped from outside (`{"stop":true}`, SIGTERM, SIGINT): queued tickets are abandoned.
    Stopped(String),
}

impl End {
    pub fn reason(&self) -> String {
        match self {
            End::Duration => "duration".into(),
            End::MaxQueries => "max_queries".into(),
            End::Stopped(cause) => cause.clone(),
        }
    }
}

/// Intended start times: `epoch + n / rate`; a rate change starts a new epoch.
#[derive(Debug, Clone)]
pub struct Pacer {
    epoch: Instant,
    n: u64,
    interval: f64,
}

impl Pacer {
    pub fn new(start: Instant, rate: f64) -> Pacer {
        Pacer {
            epoch: start,
            n: 0,
            interval: 1.0 / rate,
        }
    }

    /// The intended start of the next query.
    pub fn next(&self) -> Instant {
        self.epoch + Duration::from_secs_f64(self.n as f64 * self.interval)
    }

    /// The next query was issued.
    pub fn advance(&mut self) {
        self.n += 1;
    }

    /// Switches to `rate` from `now`: the next query is one new interval after the last one
    /// issued, but never before `now` (no burst to make up for a slower past).
    pub fn set_rate(&mut self, rate: f64, now: Instant) {
        let interval = 1.0 / rate;
        if self.n > 0 {
            let last = self.epoch + Duration::from_secs_f64((self.n - 1) as f64 * self.interval);
            self.epoch = (last + Duration::from_secs_f64(interval)).max(now);
            self.n = 0;
        } else {
            self.epoch = self.epoch.max(now);
        }
        self.interval = interval;
    }
}

/// What the scheduler needs to know.
pub struct Limits {
    pub rate: f64,
    pub duration: Duration,
    pub max_queries: Option<u64>,
}

/// Issues tickets until the duration passes, the cap is reached or a stop arrives; returns why
/// it ended. `on_rate` hears every rate change.
pub async fn run(
    limits: &Limits,
    tickets: &mpsc::UnboundedSender<Ticket>,
    control: &mut mpsc::Receiver<Control>,
    mut on_rate: impl FnMut(f64),
) -> End {
    let start = Instant::now();
    let deadline = start + limits.duration;
    let mut pacer = Pacer::new(start, limits.rate);
    let mut issued: u64 = 0;
    let mut control_open = true;
    loop {
        if limits.max_queries.is_some_and(|cap| issued >= cap) {
            return End::MaxQueries;
        }
        let next = pacer.next();
        let wake = next.min(deadline);
        tokio::select! {
            biased;
            command = control.recv(), if control_open => match command {
                Some(Control::SetRate(rate)) => {
                    pacer.set_rate(rate, Instant::now());
                    on_rate(rate);
                }
                Some(Control::Stop(cause)) => return End::Stopped(cause),
                None => control_open = false,
            },
            () = tokio::time::sleep_until(wake) => {
                if next >= deadline {
                    return End::Duration;
                }
                if tickets.send(Ticket { intended: next }).is_err() {
                    // Every worker is gone: nothing can be sent any more.
                    return End::Stopped("workers_gone".into());
                }
                issued += 1;
                pacer.advance();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_exact_multiples_and_rate_changes_start_from_now() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, 300.0);
        for _ in 0..3000 {
            pacer.advance();
        }
        // 3000 queries at 300/s: exactly 10 s later, no drift from rounding.
        let drift = pacer.next().duration_since(t0).as_secs_f64() - 10.0;
        assert!(drift.abs() < 1e-6, "{drift}");
        // Faster from now: one new interval after the last issued, not a burst to catch up.
        let last = t0 + Duration::from_secs_f64(2999.0 / 300.0);
        pacer.set_rate(1000.0, last);
        assert_eq!(pacer.next(), last + Duration::from_millis(1));
        // After a long quiet period the next one starts now.
        let later = last + Duration::from_secs(5);
        pacer.set_rate(10.0, later);
        assert_eq!(pacer.next(), later);
    }

    #[tokio::test(start_paused = true)]
    async fn cap_stop_and_duration_end_the_tickets() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_ctl_tx, mut ctl) = mpsc::channel(1);
        let limits = Limits {
            rate: 100.0,
            duration: Duration::from_secs(60),
            max_queries: Some(137),
        };
        assert_eq!(run(&limits, &tx, &mut ctl, |_| {}).await, End::MaxQueries);
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 137);

        let limits = Limits {
            rate: 100.0,
            duration: Duration::from_secs(2),
            max_queries: None,
        };
        assert_eq!(run(&limits, &tx, &mut ctl, |_| {}).await, End::Duration);
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 200);

        let (ctl_tx, mut ctl) = mpsc::channel(4);
        ctl_tx.send(Control::SetRate(50.0)).await.unwrap();
        let mut rates = Vec::new();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ctl_tx.send(Control::Stop("SIGTERM".into())).await.unwrap();
        });
        let end = run(&limits, &tx, &mut ctl, |r| rates.push(r)).await;
        stopper.await.unwrap();
        assert_eq!(end, End::Stopped("SIGTERM".into()));
        assert_eq!(rates, [50.0]);
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert!((50..=51).contains(&n), "{n}");
    }
}
