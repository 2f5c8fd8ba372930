//! The `rollback` section's channel and action definitions: every channel type parses with its
//! fields and defaults, the shipped `chaos/chaos.yaml` defines every channel it lists, and bad
//! definitions (an undefined or repeated name, a secret with no source or two, a bad URL,
//! address, header or environment variable name) fail with the dotted path of the key.

mod common;

use std::path::PathBuf;

use chaos_api::config::{
    Channel, ChaosConfig, DEFAULT_PAGERDUTY_URL, HeaderValue, SecretSource, Webhook,
};
use chaos_api::error::ModelError;

/// A config whose `rollback` section is `body` (indented by two spaces).
fn rollback(body: &str) -> String {
    let indented: String = body.lines().map(|line| format!("  {line}\n")).collect();
    format!("rollback:\n{indented}")
}

fn parse(text: &str) -> ChaosConfig {
    match ChaosConfig::from_yaml(text) {
        Ok(config) => config,
        Err(error) => panic!("config must parse: {error}\n{text}"),
    }
}

fn rejected_at(body: &str, path: &str) -> String {
    common::rejected_at(ChaosConfig::from_yaml(&rollback(body)), path).to_string()
}

fn channel(config: &ChaosConfig, name: &str) -> Channel {
    match config.rollback.channels.get(name) {
        Some(channel) => channel.clone(),
        None => panic!("channel {name} is not defined"),
    }
}

#[test]
fn repo_config_defines_every_channel_it_lists() {
    let config = common::repo_config();
    let rollback = &config.rollback;
    assert_eq!(
        rollback.notification_channels,
        ["slack", "email", "pagerduty"]
    );
    for name in &rollback.notification_channels {
        assert!(rollback.channels.contains_key(name), "{name} undefined");
    }
    let Channel::Slack(slack) = channel(&config, "slack") else {
        panic!("slack is not a slack channel");
    };
    assert_eq!(
        slack.webhook_url(),
        Some(SecretSource::Env("CHAOS_SLACK_WEBHOOK_URL".to_owned()))
    );
    let Channel::PagerDuty(pagerduty) = channel(&config, "pagerduty") else {
        panic!("pagerduty is not a pagerduty channel");
    };
    assert_eq!(pagerduty.url, DEFAULT_PAGERDUTY_URL);
    assert_eq!(
        pagerduty.routing_key(),
        Some(SecretSource::Env("CHAOS_PAGERDUTY_ROUTING_KEY".to_owned()))
    );
    let Channel::Email(email) = channel(&config, "email") else {
        panic!("email is not an email channel");
    };
    assert_eq!(email.smtp_host, "localhost");
    assert_eq!(email.smtp_port, 25);
    assert!(!email.starttls);
    assert_eq!(email.to, ["root@localhost"]);
    assert_eq!(email.credentials_file, None);
    // The seed's strategies stay on; the shipped file configures no action for them.
    assert_eq!(
        rollback.strategies.enabled(),
        [
            "pod_restart",
            "traffic_shift",
            "feature_flag_disable",
            "scale_down"
        ]
    );
    assert!(
        rollback
            .actions
            .by_strategy()
            .iter()
            .all(|(_, a)| a.is_none())
    );
}

#[test]
fn every_channel_type_parses_with_its_fields_and_defaults() {
    let config = parse(&rollback(
        "notification_channels: [chat, pd, mail, hook, am, am2]
channels:
  chat: {type: slack, webhook_url_file: /etc/chaos/slack}
  pd: {type: pagerduty, routing_key_file: /etc/chaos/pd, url: 'http://127.0.0.1:9/enqueue'}
  mail:
    type: email
    smtp_host: smtp.example.org
    from: 'Chaos <chaos@example.org>'
    to: [a@example.org, b@example.org]
    credentials_file: /etc/chaos/smtp
  hook:
    type: webhook
    url: 'https://hooks.example.org/chaos?x=1'
    headers:
      X-Plain: text
      Authorization: {value_env: HOOK_AUTH}
      X-Token: {value_file: /etc/chaos/token}
  am: {type: alertmanager}
  am2: {type: alertmanager, url: 'http://am.example.org:9093'}",
    ));
    let Channel::Slack(slack) = channel(&config, "chat") else {
        panic!("chat is not slack")
    };
    assert_eq!(
        slack.webhook_url(),
        Some(SecretSource::File(PathBuf::from("/etc/chaos/slack")))
    );
    let Channel::PagerDuty(pd) = channel(&config, "pd") else {
        panic!("pd is not pagerduty")
    };
    assert_eq!(pd.url, "http://127.0.0.1:9/enqueue");
    let Channel::Email(mail) = channel(&config, "mail") else {
        panic!("mail is not email")
    };
    assert_eq!(mail.smtp_port, 587, "default port");
    assert!(mail.starttls, "STARTTLS is the default");
    assert_eq!(
        mail.credentials_file,
        Some(PathBuf::from("/etc/chaos/smtp"))
    );
    let Channel::Webhook(hook) = channel(&config, "hook") else {
        panic!("hook is not webhook")
    };
    assert_eq!(
        hook.headers["X-Plain"],
        HeaderValue::Plain("text".to_owned())
    );
    let HeaderValue::Secret(auth) = &hook.headers["Authorization"] else {
        panic!("Authorization is not a secret")
    };
    assert_eq!(
        auth.source(),
        Some(SecretSource::Env("HOOK_AUTH".to_owned()))
    );
    let HeaderValue::Secret(token) = &hook.headers["X-Token"] else {
        panic!("X-Token is not a secret")
    };
    assert_eq!(
        token.source(),
        Some(SecretSource::File(PathBuf::from("/etc/chaos/token")))
    );
    let Channel::Alertmanager(am) = channel(&config, "am") else {
        panic!("am is not alertmanager")
    };
    assert_eq!(am.url, None, "the daemon fills in the port of monitoring");
    let Channel::Alertmanager(am2) = channel(&config, "am2") else {
        panic!("am2 is not alertmanager")
    };
    assert_eq!(am2.url.as_deref(), Some("http://am.example.org:9093"));
    assert_eq!(channel(&config, "am").type_name(), "alertmanager");
    assert_eq!(channel(&config, "pd").type_name(), "pagerduty");
}

#[test]
fn a_listed_channel_must_be_defined_once() {
    let error = rejected_at(
        "notification_channels: [hook, slack]
channels:
  hook: {type: webhook, url: 'http://127.0.0.1:1/'}",
        "rollback.notification_channels[1]",
    );
    assert!(error.contains("\"slack\""), "{error}");
    assert!(error.contains("rollback.channels"), "{error}");
    assert!(error.contains("defined: hook"), "{error}");
    let error = rejected_at(
        "notification_channels: [slack]",
        "rollback.notification_channels[0]",
    );
    assert!(error.contains("defined: none"), "{error}");
    rejected_at(
        "notification_channels: [hook, hook]
channels:
  hook: {type: webhook, url: 'http://127.0.0.1:1/'}",
        "rollback.notification_channels[1]",
    );
    // Defined but not listed: allowed (and unused).
    parse(&rollback(
        "channels:\n  spare: {type: webhook, url: 'http://127.0.0.1:1/'}",
    ));
}

#[test]
fn a_secret_has_exactly_one_well_formed_source() {
    let error = rejected_at("channels:\n  s: {type: slack}", "rollback.channels.s");
    assert!(error.contains("webhook_url_file") && error.contains("webhook_url_env"));
    let error = rejected_at(
        "channels:\n  s: {type: slack, webhook_url_file: /f, webhook_url_env: X}",
        "rollback.channels.s.webhook_url_env",
    );
    assert!(error.contains("exactly one"), "{error}");
    let error = rejected_at(
        "channels:\n  p: {type: pagerduty, routing_key_env: 'BAD-NAME'}",
        "rollback.channels.p.routing_key_env",
    );
    assert!(error.contains("\"BAD-NAME\"") && error.contains("environment variable"));
    rejected_at(
        "channels:\n  p: {type: pagerduty, routing_key_env: 1X}",
        "rollback.channels.p.routing_key_env",
    );
    rejected_at(
        "channels:\n  p: {type: pagerduty, routing_key_file: ''}",
        "rollback.channels.p.routing_key_file",
    );
    // A literal secret is not a key at all.
    let error = rejected_at(
        "channels:\n  s: {type: slack, webhook_url: 'https://hooks.slack.com/x'}",
        "rollback.channels.s",
    );
    assert!(error.contains("unknown field `webhook_url`"), "{error}");
}

#[test]
fn urls_are_absolute_http() {
    for url in [
        "ftp://x/",
        "http://",
        "hooks.example.org",
        "http://a b/",
        "https:///x",
    ] {
        let error = rejected_at(
            &format!("channels:\n  h: {{type: webhook, url: '{url}'}}"),
            "rollback.channels.h.url",
        );
        assert!(error.contains(&format!("{url:?}")), "{error}");
        assert!(error.contains("http:// or https://"), "{error}");
    }
    rejected_at(
        "channels:\n  p: {type: pagerduty, routing_key_env: K, url: 'mailto:x@y'}",
        "rollback.channels.p.url",
    );
    rejected_at(
        "channels:\n  a: {type: alertmanager, url: '127.0.0.1:9093'}",
        "rollback.channels.a.url",
    );
    rejected_at("channels:\n  h: {type: webhook}", "rollback.channels.h.url");
}

#[test]
fn email_fields_are_checked() {
    let mail = |fields: &str| {
        format!(
            "channels:\n  m: {{type: email, smtp_host: localhost, from: a@b, to: [c@d]{fields}}}"
        )
    };
    parse(&rollback(&mail("")));
    rejected_at(&mail(", smtp_port: 0"), "rollback.channels.m.smtp_port");
    rejected_at(
        "channels:\n  m: {type: email, smtp_host: '', from: a@b, to: [c@d]}",
        "rollback.channels.m.smtp_host",
    );
    rejected_at(
        "channels:\n  m: {type: email, smtp_host: x, from: nobody, to: [c@d]}",
        "rollback.channels.m.from",
    );
    rejected_at(
        "channels:\n  m: {type: email, smtp_host: x, from: a@b, to: []}",
        "rollback.channels.m.to",
    );
    let error = rejected_at(
        "channels:\n  m: {type: email, smtp_host: x, from: a@b, to: [c@d, 'e @f']}",
        "rollback.channels.m.to[1]",
    );
    assert!(error.contains("e-mail address"), "{error}");
    let error = rejected_at(
        "channels:\n  m: {type: email, from: a@b, to: [c@d]}",
        "rollback.channels.m.smtp_host",
    );
    assert!(error.contains("required"), "{error}");
    rejected_at(&mail(", password: x"), "rollback.channels.m");
}

#[test]
fn the_type_is_required_and_known() {
    let error = rejected_at(
        "channels:\n  x: {type: sms, number: 1}",
        "rollback.channels.x.type",
    );
    assert!(error.contains("sms"), "{error}");
    assert!(error.contains("pagerduty"), "{error}");
    let error = rejected_at(
        "channels:\n  x: {url: 'http://a/'}",
        "rollback.channels.x.type",
    );
    assert!(error.contains("required"), "{error}");
}

#[test]
fn headers_are_checked() {
    let hook = |headers: &str| {
        format!("channels:\n  h: {{type: webhook, url: 'http://a/', headers: {{{headers}}}}}")
    };
    let error = rejected_at(
        &hook("'Bad Name': x"),
        "rollback.channels.h.headers.Bad Name",
    );
    assert!(error.contains("header name"), "{error}");
    rejected_at(&hook("X-A: \"a\\nb\""), "rollback.channels.h.headers.X-A");
    rejected_at(
        &hook("X-A: {value_env: A, value_file: /b}"),
        "rollback.channels.h.headers.X-A.value_env",
    );
    rejected_at(&hook("X-A: {}"), "rollback.channels.h.headers.X-A");
    let error = common::rejected_at(
        ChaosConfig::from_yaml(&rollback(&hook("X-A: [1]"))),
        "rollback.channels.h",
    );
    assert!(error.to_string().contains("value_env"), "{error}");
}

#[test]
fn actions_parse_and_are_checked() {
    let config = parse(&rollback(
        "strategies: {traffic_shift: true, scale_down: true}
actions:
  traffic_shift: {url: 'https://lb.example.org/drain'}
  scale_down:
    url: 'http://127.0.0.1:8080/scale'
    headers: {Authorization: {value_env: DEPLOY_TOKEN}}",
    ));
    let actions = &config.rollback.actions;
    assert_eq!(
        actions.traffic_shift,
        Some(Webhook {
            url: "https://lb.example.org/drain".to_owned(),
            headers: Default::default(),
        })
    );
    assert_eq!(actions.feature_flag_disable, None);
    assert_eq!(
        actions
            .by_strategy()
            .map(|(name, action)| (name, action.is_some())),
        [
            ("traffic_shift", true),
            ("feature_flag_disable", false),
            ("scale_down", true)
        ]
    );
    assert_eq!(
        config.rollback.strategies.enabled(),
        ["traffic_shift", "scale_down"]
    );
    rejected_at(
        "actions:\n  scale_down: {url: 'nope'}",
        "rollback.actions.scale_down.url",
    );
    let error = rejected_at(
        "actions:\n  pod_restart: {url: 'http://a/'}",
        "rollback.actions.pod_restart",
    );
    assert!(error.contains("unknown field"), "{error}");
    rejected_at(
        "actions:\n  feature_flag_disable: {url: 'http://a/', headers: {X: {value_env: ''}}}",
        "rollback.actions.feature_flag_disable.headers.X.value_env",
    );
}

#[test]
fn no_channels_and_no_actions_by_default() {
    let config = parse("{}");
    assert!(config.rollback.channels.is_empty());
    assert_eq!(config.rollback.actions, Default::default());
    assert!(config.rollback.strategies.enabled().is_empty());
    // The error type is the model's, with the documented Display.
    let error: ModelError = match ChaosConfig::from_yaml(&rollback("notification_channels: [x]")) {
        Ok(config) => panic!("accepted {config:?}"),
        Err(error) => error,
    };
    assert!(
        error
            .to_string()
            .starts_with("rollback.notification_channels[0]: \"x\" is not allowed; expected"),
        "{error}"
    );
}
