//! Notifications and rollback strategies against real servers on loopback: Slack, PagerDuty and
//! generic webhook JSON reach an HTTP receiver, e-mail reaches an SMTP server, alerts show up
//! in (and are resolved by) a real Alertmanager from Debian; a channel that is down or a full
//! queue never delays `notify()`, retries are bounded, and every outcome is counted. No root.

mod notify_support;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use chaos_api::config::ChaosConfig;
use chaos_daemon::{
    metrics::Metrics,
    notify::{DeliveryPolicy, Notice, NoticeKind, Notifier, NotifyError},
};
use notify_support::{Alertmanager, Hanging, Receiver, SmtpSink, TempDir, closed_port, wait_until};

/// Fast retries, so failures show within about a second.
const FAST: DeliveryPolicy = DeliveryPolicy {
    attempts: 3,
    attempt_timeout: Duration::from_millis(300),
    first_backoff: Duration::from_millis(50),
    queue_capacity: 64,
};

fn config(yaml: &str) -> ChaosConfig {
    match ChaosConfig::from_yaml(yaml) {
        Ok(config) => config,
        Err(error) => panic!("test config: {error}\n{yaml}"),
    }
}

fn notifier(yaml: &str, metrics: &Metrics, policy: DeliveryPolicy) -> Notifier {
    match Notifier::with_policy(&config(yaml), metrics.notifications.clone(), policy) {
        Ok(notifier) => notifier,
        Err(error) => panic!("notifier: {error}"),
    }
}

fn notice(kind: NoticeKind, id: &str) -> Notice {
    Notice {
        kind,
        experiment_id: id.to_owned(),
        name: "checkout-loss".to_owned(),
        experiment_type: "packet_loss".to_owned(),
        target: "/sys/fs/cgroup/shop/checkout".to_owned(),
        node: "node-test".to_owned(),
        reason: "slo error_rate: 0.31 > 0.05".to_owned(),
        at_ms: 1_800_000_000_000,
        fields: vec![("guard".to_owned(), "error_rate".to_owned())],
    }
}

fn count(metrics: &Metrics, channel: &str, outcome: &str) -> u64 {
    metrics
        .notifications
        .with_label_values(&[channel, outcome])
        .get()
}

#[test]
fn slack_pagerduty_and_webhook_get_their_json() {
    let receiver = Receiver::start();
    let dir = TempDir::new("http");
    let slack_url = dir.file("slack", &format!("{}/slack\n", receiver.base));
    let key = dir.file("pd-key", "R0UTING-KEY\n");
    let token = dir.file("token", "Bearer s3cret\n");
    let yaml = format!(
        "rollback:
  notification_channels: [chat, pd, hook]
  channels:
    chat: {{type: slack, webhook_url_file: '{slack}'}}
    pd: {{type: pagerduty, routing_key_file: '{key}', url: '{base}/pd'}}
    hook:
      type: webhook
      url: '{base}/hook'
      headers: {{Authorization: {{value_file: '{token}'}}, X-Source: chaos-test}}
",
        slack = slack_url.display(),
        key = key.display(),
        token = token.display(),
        base = receiver.base,
    );
    let metrics = Metrics::new();
    let notifier = notifier(&yaml, &metrics, FAST);
    assert_eq!(notifier.channels(), ["chat", "pd", "hook"]);
    for (name, line) in notifier.preflight() {
        assert!(line.is_ok(), "{name}: {line:?}");
    }
    for kind in [
        NoticeKind::Started,
        NoticeKind::RolledBack,
        NoticeKind::Ended,
    ] {
        notifier.notify(notice(kind, "exp-1"));
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            count(&metrics, "chat", "delivered") == 3
                && count(&metrics, "pd", "delivered") == 2
                && count(&metrics, "hook", "delivered") == 3
        }),
        "deliveries: {}",
        metrics.render()
    );

    let slack = receiver.requests("/slack");
    let titles = slack.iter().map(|r| r.body["text"].as_str().unwrap_or(""));
    let expected = ["Experiment started", "Rolled back", "Experiment ended"];
    for (text, title) in titles.zip(expected) {
        assert!(text.starts_with(title), "{text}");
        for part in [
            "checkout-loss",
            "exp-1",
            "/sys/fs/cgroup/shop/checkout",
            "error_rate",
        ] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
    }
    let blocks = slack[1].body["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert!(
        blocks[0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("Rolled back")
    );
    assert!(slack[1].headers["content-type"].starts_with("application/json"));

    // PagerDuty: a trigger for the rollback, a resolve for the end; nothing for the start.
    let pd = receiver.requests("/pd");
    assert_eq!(pd.len(), 2, "{pd:?}");
    let trigger = &pd[0].body;
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "R0UTING-KEY");
    assert_eq!(trigger["dedup_key"], "exp-1");
    assert_eq!(trigger["payload"]["source"], "node-test");
    assert_eq!(trigger["payload"]["severity"], "error");
    assert_eq!(
        trigger["payload"]["component"],
        "/sys/fs/cgroup/shop/checkout"
    );
    assert_eq!(trigger["payload"]["custom_details"]["guard"], "error_rate");
    assert_eq!(trigger["payload"]["timestamp"], "2027-01-15T08:00:00.000Z");
    assert!(
        trigger["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("0.31 > 0.05")
    );
    assert_eq!(pd[1].body["event_action"], "resolve");
    assert_eq!(pd[1].body["dedup_key"], "exp-1");

    let hook = receiver.requests("/hook");
    assert_eq!(hook.len(), 3);
    let rolled_back = &hook[1];
    assert_eq!(rolled_back.headers["authorization"], "Bearer s3cret");
    assert_eq!(rolled_back.headers["x-source"], "chaos-test");
    let body = &rolled_back.body;
    assert_eq!(body["kind"], "rolled_back");
    assert_eq!(body["experiment_id"], "exp-1");
    assert_eq!(body["name"], "checkout-loss");
    assert_eq!(body["experiment_type"], "packet_loss");
    assert_eq!(body["target"], "/sys/fs/cgroup/shop/checkout");
    assert_eq!(body["node"], "node-test");
    assert_eq!(body["reason"], "slo error_rate: 0.31 > 0.05");
    assert_eq!(body["at_ms"], 1_800_000_000_000u64);
    assert_eq!(body["fields"]["guard"], "error_rate");
    for channel in ["chat", "pd", "hook"] {
        assert_eq!(count(&metrics, channel, "failed"), 0, "{channel}");
    }
}

#[test]
fn email_reaches_an_smtp_server() {
    let sink = SmtpSink::start();
    let dir = TempDir::new("smtp");
    let credentials = dir.file("credentials", "chaos\npa ss\n");
    let yaml = format!(
        "rollback:
  notification_channels: [mail]
  channels:
    mail:
      type: email
      smtp_host: 127.0.0.1
      smtp_port: {port}
      starttls: false
      from: 'Chaos <chaos@node-test>'
      to: [oncall@example.org, sre@example.org]
      credentials_file: '{credentials}'
",
        port = sink.port,
        credentials = credentials.display(),
    );
    let metrics = Metrics::new();
    let notifier = notifier(&yaml, &metrics, FAST);
    let preflight = notifier.preflight();
    assert!(
        preflight[0]
            .1
            .as_ref()
            .is_ok_and(|line| line.contains("login chaos")),
        "{preflight:?}"
    );
    notifier.notify(notice(NoticeKind::RolledBack, "exp-2"));
    assert!(
        wait_until(Duration::from_secs(10), || count(
            &metrics,
            "mail",
            "delivered"
        ) == 1),
        "{}",
        metrics.render()
    );
    // The sink records a transaction when its connection ends, maybe after the count.
    assert!(wait_until(Duration::from_secs(2), || !sink
        .mails()
        .is_empty()));
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    // AUTH PLAIN with base64("\0chaos\0pa ss") from the credentials file.
    assert_eq!(mail.auth.as_deref(), Some("AUTH PLAIN AGNoYW9zAHBhIHNz"));
    assert!(mail.from.contains("<chaos@node-test>"), "{}", mail.from);
    assert_eq!(mail.rcpt.len(), 2, "{:?}", mail.rcpt);
    assert!(
        mail.data
            .contains("Subject: [chaos] Rolled back: checkout-loss (exp-2) on node-test")
    );
    for part in [
        "Experiment id: exp-2",
        "/sys/fs/cgroup/shop/checkout",
        "0.31 > 0.05",
        "guard: error_rate",
    ] {
        assert!(
            mail.data.contains(part),
            "{part} missing in:\n{}",
            mail.data
        );
    }
}

#[test]
fn alertmanager_shows_the_alert_and_resolves_it_at_the_end() {
    let alertmanager = Alertmanager::start();
    // No url: the default is 127.0.0.1:<monitoring.prometheus.alertmanager_port>.
    let yaml = format!(
        "rollback:
  notification_channels: [am]
  channels:
    am: {{type: alertmanager}}
monitoring:
  prometheus: {{alertmanager_port: {}}}
",
        alertmanager.port
    );
    let metrics = Metrics::new();
    let notifier = notifier(&yaml, &metrics, FAST);
    let mut rolled_back = notice(NoticeKind::RolledBack, "exp-3");
    rolled_back.at_ms = now_ms();
    notifier.notify(rolled_back);
    let ours = |alert: &serde_json::Value| alert["labels"]["experiment_id"] == "exp-3";
    let mut seen = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = alertmanager.alerts().into_iter().find(|a| ours(a));
            seen.is_some()
        }),
        "no alert for exp-3; {}",
        metrics.render()
    );
    let alert = seen.expect("alert");
    assert_eq!(alert["labels"]["alertname"], "ChaosExperimentRolledBack");
    assert_eq!(alert["labels"]["experiment_type"], "packet_loss");
    assert_eq!(alert["labels"]["node"], "node-test");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(
        alert["annotations"]["reason"],
        "slo error_rate: 0.31 > 0.05"
    );
    assert_eq!(alert["annotations"]["guard"], "error_rate");
    assert_eq!(alert["status"]["state"], "active");

    let mut ended = notice(NoticeKind::Ended, "exp-3");
    ended.at_ms = now_ms();
    notifier.notify(ended);
    assert!(
        wait_until(Duration::from_secs(10), || {
            !alertmanager
                .alerts()
                .iter()
                .any(|a| ours(a) && a["status"]["state"] == "active")
        }),
        "exp-3 still active: {:?}",
        alertmanager.alerts()
    );
    // The counter follows the answer, which may come after Alertmanager shows the change.
    assert!(wait_until(Duration::from_secs(2), || count(
        &metrics,
        "am",
        "delivered"
    ) == 2));
    assert_eq!(count(&metrics, "am", "failed"), 0);
}

#[test]
fn a_channel_that_is_down_delays_neither_notify_nor_the_other_channels() {
    let hanging = Hanging::start();
    let receiver = Receiver::start();
    let yaml = format!(
        "rollback:
  notification_channels: [hang, closed, ok]
  channels:
    hang: {{type: webhook, url: 'http://127.0.0.1:{}/'}}
    closed: {{type: webhook, url: 'http://127.0.0.1:{}/'}}
    ok: {{type: webhook, url: '{}/ok'}}
",
        hanging.port,
        closed_port(),
        receiver.base
    );
    let metrics = Metrics::new();
    let policy = DeliveryPolicy {
        attempt_timeout: Duration::from_secs(1),
        queue_capacity: 16,
        ..FAST
    };
    let notifier = notifier(&yaml, &metrics, policy);
    let start = Instant::now();
    notifier.notify(notice(NoticeKind::EmergencyStop, "exp-4"));
    let first = start.elapsed();
    // The working channel is served while the hanging one still waits for its first answer.
    assert!(wait_until(Duration::from_millis(900), || count(
        &metrics,
        "ok",
        "delivered"
    ) == 1));
    assert_eq!(count(&metrics, "hang", "failed"), 0);
    // Bounded: three attempts of 1 s plus 50 + 100 ms of backoff, then counted as failed.
    assert!(
        wait_until(Duration::from_secs(6), || {
            count(&metrics, "hang", "failed") == 1 && count(&metrics, "closed", "failed") == 1
        }),
        "{}",
        metrics.render()
    );
    assert_eq!(
        hanging.accepted(),
        3,
        "one connection per attempt, three attempts"
    );

    // notify() while two channels are down: never more than a queue insert.
    let mut times: Vec<Duration> = (0..200)
        .map(|i| {
            let notice = notice(NoticeKind::BudgetAlert, &format!("exp-4-{i}"));
            let start = Instant::now();
            notifier.notify(notice);
            start.elapsed()
        })
        .collect();
    times.sort();
    let (median, p99) = (times[100], times[198]);
    println!(
        "notify(): first {first:?}, median {median:?}, p99 {p99:?}, max {:?}",
        times[199]
    );
    // The first call alone may meet a cold cache or a busy CPU; it must still be far below one
    // attempt's timeout (1 s), which it would take if it waited for the hanging channel.
    assert!(
        first < Duration::from_millis(50),
        "first notify() took {first:?}"
    );
    assert!(median < Duration::from_micros(100), "median {median:?}");
    assert!(p99 < Duration::from_millis(1), "p99 {p99:?}");
}

#[test]
fn a_full_queue_drops_and_counts() {
    let hanging = Hanging::start();
    let yaml = format!(
        "rollback:
  notification_channels: [hang]
  channels:
    hang: {{type: webhook, url: 'http://127.0.0.1:{}/'}}
",
        hanging.port
    );
    let metrics = Metrics::new();
    let policy = DeliveryPolicy {
        attempts: 1,
        attempt_timeout: Duration::from_millis(500),
        first_backoff: Duration::from_millis(10),
        queue_capacity: 2,
    };
    let notifier = notifier(&yaml, &metrics, policy);
    for i in 0..20 {
        notifier.notify(notice(NoticeKind::Started, &format!("exp-5-{i}")));
    }
    // At most one in flight, two in the channel's queue and two in the main queue.
    assert!(
        wait_until(Duration::from_millis(400), || count(
            &metrics, "hang", "dropped"
        ) >= 15),
        "{}",
        metrics.render()
    );
    let dropped = count(&metrics, "hang", "dropped");
    assert!(
        wait_until(Duration::from_secs(5), || count(&metrics, "hang", "failed")
            + dropped
            == 20),
        "{}",
        metrics.render()
    );
    assert_eq!(count(&metrics, "hang", "delivered"), 0);
    assert!(
        metrics
            .render()
            .contains("chaos_notifications_total{channel=\"hang\",outcome=\"dropped\"}")
    );
}

#[test]
fn strategies_run_with_their_actions_and_report_each() {
    let receiver = Receiver::start();
    receiver.answer("/flags", 503);
    let yaml = format!(
        "rollback:
  strategies: {{pod_restart: true, traffic_shift: true, feature_flag_disable: true, scale_down: true}}
  actions:
    traffic_shift: {{url: '{base}/shift', headers: {{X-Team: sre}}}}
    feature_flag_disable: {{url: '{base}/flags'}}
",
        base = receiver.base
    );
    let metrics = Metrics::new();
    let notifier = notifier(&yaml, &metrics, FAST);
    let preflight = notifier.preflight();
    let lines: Vec<(&str, Result<&str, &str>)> = preflight
        .iter()
        .map(|(name, line)| (name.as_str(), line.as_deref().map_err(String::as_str)))
        .collect();
    assert_eq!(
        lines[0],
        ("strategy pod_restart", Ok("cgroup.kill of the target"))
    );
    assert_eq!(
        lines[1],
        (
            "strategy traffic_shift",
            Ok(format!("POST to {}/shift", receiver.base).as_str())
        )
    );
    assert_eq!(
        lines[3],
        ("strategy scale_down", Ok("not configured, will be skipped"))
    );

    let missing = [PathBuf::from(
        "/sys/fs/cgroup/chaos-notify-test-does-not-exist",
    )];
    let results = notifier.run_strategies(&notice(NoticeKind::RolledBack, "exp-6"), &missing);
    let names: Vec<&str> = results.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "pod_restart",
            "traffic_shift",
            "feature_flag_disable",
            "scale_down"
        ]
    );
    let pod_restart = results[0].1.as_ref().expect_err("no such cgroup");
    assert!(
        pod_restart.contains("chaos-notify-test-does-not-exist"),
        "{pod_restart}"
    );
    assert!(results[1].1.is_ok(), "{:?}", results[1]);
    let flags = results[2].1.as_ref().expect_err("503 every time");
    assert!(
        flags.contains("503") && flags.contains("attempt 3"),
        "{flags}"
    );
    assert_eq!(results[3].1, Ok("not configured, skipped".to_owned()));

    let shift = receiver.requests("/shift");
    assert_eq!(shift.len(), 1);
    assert_eq!(shift[0].headers["x-team"], "sre");
    let body = &shift[0].body;
    assert_eq!(body["strategy"], "traffic_shift");
    assert_eq!(body["experiment_id"], "exp-6");
    assert_eq!(body["name"], "checkout-loss");
    assert_eq!(body["target"], "/sys/fs/cgroup/shop/checkout");
    assert_eq!(body["reason"], "slo error_rate: 0.31 > 0.05");
    assert_eq!(body["node"], "node-test");
    assert_eq!(body["at"], "2027-01-15T08:00:00.000Z");
    assert_eq!(
        receiver.requests("/flags").len(),
        3,
        "bounded retries on 5xx"
    );
}

#[test]
fn preflight_names_what_cannot_be_read() {
    let dir = TempDir::new("preflight");
    let bad_credentials = dir.file("credentials", "only-a-user\n");
    let yaml = format!(
        "rollback:
  notification_channels: [unset, notaurl, nofile, mail, hook]
  channels:
    unset: {{type: slack, webhook_url_env: CHAOS_NOTIFY_TEST_SURELY_UNSET}}
    notaurl: {{type: slack, webhook_url_env: PATH}}
    nofile: {{type: pagerduty, routing_key_file: '{missing}'}}
    mail: {{type: email, smtp_host: localhost, from: a@b, to: [c@d], credentials_file: '{bad}'}}
    hook: {{type: webhook, url: 'http://127.0.0.1:1/', headers: {{X-A: {{value_env: HOME}}}}}}
",
        missing = dir.0.join("missing").display(),
        bad = bad_credentials.display(),
    );
    let metrics = Metrics::new();
    let notifier = notifier(&yaml, &metrics, FAST);
    let lines = notifier.preflight();
    let line = |name: &str| {
        lines
            .iter()
            .find(|(n, _)| n == &format!("channel {name}"))
            .map(|(_, line)| line.clone())
            .expect("a line per channel")
    };
    let unset = line("unset").expect_err("unset variable");
    assert!(unset.contains("CHAOS_NOTIFY_TEST_SURELY_UNSET"), "{unset}");
    let notaurl = line("notaurl").expect_err("PATH is no URL");
    assert!(
        notaurl.contains("not an http(s) URL") && !notaurl.contains("/usr"),
        "{notaurl}"
    );
    assert!(
        line("nofile")
            .expect_err("missing file")
            .contains("missing")
    );
    assert!(line("mail").expect_err("one line").contains("second"));
    assert!(line("hook").is_ok());
    assert_eq!(lines.len(), 5, "no strategy is on");
}

#[test]
fn an_undefined_channel_and_a_disabled_notifier() {
    let mut config = config("{}");
    config
        .rollback
        .notification_channels
        .push("nope".to_owned());
    let error = Notifier::new(&config, Metrics::new().notifications.clone())
        .expect_err("undefined channel");
    assert!(matches!(error, NotifyError::Config { .. }));
    assert_eq!(
        error.to_string(),
        "rollback.notification_channels: \"nope\" is not defined; define it under rollback.channels"
    );

    let disabled = Notifier::disabled();
    disabled.notify(notice(NoticeKind::Started, "exp-7"));
    assert!(disabled.preflight().is_empty());
    assert!(disabled.channels().is_empty());
    let results = disabled.run_strategies(
        &notice(NoticeKind::RolledBack, "exp-7"),
        &[PathBuf::from("/")],
    );
    assert!(results.is_empty(), "{results:?}");
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("ms fit u64")
}
