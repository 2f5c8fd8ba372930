//! The notification channels and rollback actions of the `rollback` section
//! (`rollback.channels`, `rollback.actions`), with their checks.
//!
//! Secrets (webhook URLs, routing keys, header values that authenticate) never live in the YAML:
//! a definition names a file or an environment variable that holds them (`*_file` / `*_env`,
//! exactly one of the two), and the daemon reads it. This module only checks that the reference
//! is well formed; whether the file is readable or the variable set is the daemon's pre-flight.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

use crate::error::{ModelError, check_range, invalid};

/// Where PagerDuty's Events API v2 takes events.
pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The whole content of this file, without the trailing newline.
    File(PathBuf),
    /// The value of this environment variable of the daemon.
    Env(String),
}

/// One entry of `rollback.channels`, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    expecting = "a channel definition with a type: slack, pagerduty, email, webhook or alertmanager"
)]
pub enum Channel {
    /// `type: slack`: a Slack incoming webhook.
    Slack(SlackChannel),
    /// `type: pagerduty`: PagerDuty's Events API v2.
    #[serde(rename = "pagerduty")]
    PagerDuty(PagerDutyChannel),
    /// `type: email`: e-mail over SMTP.
    Email(EmailChannel),
    /// `type: webhook`: a JSON POST of every notice field to any URL.
    Webhook(Webhook),
    /// `type: alertmanager`: alerts posted to Alertmanager's API v2.
    Alertmanager(AlertmanagerChannel),
}

impl Channel {
    /// The `type` as written in the YAML.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Slack(_) => "slack",
            Self::PagerDuty(_) => "pagerduty",
            Self::Email(_) => "email",
            Self::Webhook(_) => "webhook",
            Self::Alertmanager(_) => "alertmanager",
        }
    }

    pub(super) fn validate(&self, path: &str) -> Result<(), ModelError> {
        match self {
            Self::Slack(slack) => secret(
                path,
                "webhook_url",
                &slack.webhook_url_file,
                &slack.webhook_url_env,
            )
            .map(drop),
            Self::PagerDuty(pagerduty) => {
                secret(
                    path,
                    "routing_key",
                    &pagerduty.routing_key_file,
                    &pagerduty.routing_key_env,
                )?;
                check_url(&format!("{path}.url"), &pagerduty.url)
            }
            Self::Email(email) => email.validate(path),
            Self::Webhook(webhook) => webhook.validate(path),
            Self::Alertmanager(alertmanager) => match &alertmanager.url {
                Some(url) => check_url(&format!("{path}.url"), url),
                None => Ok(()),
            },
        }
    }
}

/// `type: slack`: a Slack incoming webhook. Its URL is a secret: exactly one of
/// `webhook_url_file` and `webhook_url_env`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackChannel {
    /// A file holding the webhook URL.
    pub webhook_url_file: Option<PathBuf>,
    /// An environment variable holding the webhook URL.
    pub webhook_url_env: Option<String>,
}

impl SlackChannel {
    /// Where the webhook URL comes from; `None` unless exactly one source is set (validation
    /// refuses that).
    pub fn webhook_url(&self) -> Option<SecretSource> {
        source(&self.webhook_url_file, &self.webhook_url_env)
    }
}

/// `type: pagerduty`: PagerDuty's Events API v2. The routing (integration) key is a secret:
/// exactly one of `routing_key_file` and `routing_key_env`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerDutyChannel {
    /// A file holding the routing key.
    pub routing_key_file: Option<PathBuf>,
    /// An environment variable holding the routing key.
    pub routing_key_env: Option<String>,
    /// The Events API v2 endpoint, http(s). Default: [`DEFAULT_PAGERDUTY_URL`].
    pub url: String,
}

impl Default for PagerDutyChannel {
    fn default() -> Self {
        Self {
            routing_key_file: None,
            routing_key_env: None,
            url: DEFAULT_PAGERDUTY_URL.to_owned(),
        }
    }
}

impl PagerDutyChannel {
    /// Where the routing key comes from; `None` unless exactly one source is set.
    pub fn routing_key(&self) -> Option<SecretSource> {
        source(&self.routing_key_file, &self.routing_key_env)
    }
}

/// `type: email`: e-mail over SMTP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    /// The SMTP server's host name or address. Required.
    pub smtp_host: String,
    /// The SMTP server's port; 1 to 65535. Default: 587 (submission).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// Whether to upgrade the connection with STARTTLS (required, never opportunistic); false
    /// sends in plain text (a relay on the node). Default: true.
    #[serde(default = "default_true")]
    pub starttls: bool,
    /// The sender's address (`chaos@example.org` or `Chaos <chaos@example.org>`). Required.
    pub from: String,
    /// The recipients' addresses; at least one. Required.
    pub to: Vec<String>,
    /// A file with the SMTP user name on its first line and the password on its second;
    /// without it the daemon does not authenticate. Default: none.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_true() -> bool {
    true
}

impl EmailChannel {
    fn validate(&self, path: &str) -> Result<(), ModelError> {
        let host = &self.smtp_host;
        if host.trim().is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(invalid(
                format!("{path}.smtp_host"),
                format!("{host:?}"),
                "a host name or IP address (e.g. localhost, smtp.example.org)",
            ));
        }
        check_range(&format!("{path}.smtp_port"), self.smtp_port, 1, u16::MAX)?;
        check_address(&format!("{path}.from"), &self.from)?;
        if self.to.is_empty() {
            return Err(invalid(
                format!("{path}.to"),
                "[]",
                "at least one recipient address",
            ));
        }
        for (index, address) in self.to.iter().enumerate() {
            check_address(&format!("{path}.to[{index}]"), address)?;
        }
        if let Some(file) = &self.credentials_file {
            check_file(&format!("{path}.credentials_file"), file)?;
        }
        Ok(())
    }
}

/// `type: webhook` channels and the `rollback.actions` entries: a JSON POST to `url` with
/// extra `headers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Where to POST, http(s). Required.
    pub url: String,
    /// Extra request headers: name -> a plain string (not secret), or `{value_env: NAME}` /
    /// `{value_file: PATH}` for a secret such as `Authorization`. Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
}

impl Webhook {
    fn validate(&self, path: &str) -> Result<(), ModelError> {
        check_url(&format!("{path}.url"), &self.url)?;
        for (name, value) in &self.headers {
            let header_path = format!("{path}.headers.{name}");
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(invalid(
                    &header_path,
                    format!("{name:?}"),
                    "a header name of letters, digits and !#$%&'*+-.^_`|~",
                ));
            }
            match value {
                HeaderValue::Plain(text) => {
                    if text.chars().any(|c| c.is_control() && c != '\t') {
                        return Err(invalid(
                            &header_path,
                            format!("{text:?}"),
                            "a header value without control characters",
                        ));
                    }
                }
                HeaderValue::Secret(secret_ref) => {
                    secret(
                        &header_path,
                        "value",
                        &secret_ref.value_file,
                        &secret_ref.value_env,
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// A header value: a plain string, or a reference to a secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "a header value: a string, {value_env: NAME} or {value_file: PATH}"
)]
pub enum HeaderValue {
    /// Written as is (not a secret).
    Plain(String),
    /// Read from a file or an environment variable.
    Secret(SecretRef),
}

/// `{value_env: NAME}` or `{value_file: PATH}`: exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// A file holding the value.
    #[serde(default)]
    pub value_file: Option<PathBuf>,
    /// An environment variable holding the value.
    #[serde(default)]
    pub value_env: Option<String>,
}

impl SecretRef {
    /// Where the value comes from; `None` unless exactly one source is set.
    pub fn source(&self) -> Option<SecretSource> {
        source(&self.value_file, &self.value_env)
    }
}

/// `type: alertmanager`: alerts posted to Alertmanager's API v2 (`<url>/api/v2/alerts`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerChannel {
    /// Alertmanager's base URL, http(s). Default: unset, meaning
    /// `http://127.0.0.1:<monitoring.prometheus.alertmanager_port>`.
    pub url: Option<String>,
}

/// `rollback.actions`: the webhooks that carry out the strategies that need a system outside
/// the node. Each is POSTed the JSON `{experiment_id, name, target, reason, strategy, node, at}`.
/// `pod_restart` needs none: it is `cgroup.kill` of the target on the node. A strategy set true
/// without an action is reported by pre-flight as not configured and skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub struct RollbackActions {
    /// Shifts traffic away from the target (e.g. a load balancer's drain API). Default: none.
    pub traffic_shift: Option<Webhook>,
    /// Turns the experiment's feature flags off (e.g. the flag service's API). Default: none.
    pub feature_flag_disable: Option<Webhook>,
    /// Scales the target's workload down (e.g. a deploy pipeline's trigger). Default: none.
    pub scale_down: Option<Webhook>,
}

impl RollbackActions {
    /// Each strategy name with its action, in a fixed order.
    pub fn by_strategy(&self) -> [(&'static str, Option<&Webhook>); 3] {
        [
            ("traffic_shift", self.traffic_shift.as_ref()),
            ("feature_flag_disable", self.feature_flag_disable.as_ref()),
            ("scale_down", self.scale_down.as_ref()),
        ]
    }

    pub(super) fn validate(&self) -> Result<(), ModelError> {
        for (strategy, action) in self.by_strategy() {
            if let Some(webhook) = action {
                webhook.validate(&format!("rollback.actions.{strategy}"))?;
            }
        }
        Ok(())
    }
}

/// The one source set of a `*_file` / `*_env` pair.
fn source(file: &Option<PathBuf>, env: &Option<String>) -> Option<SecretSource> {
    match (file, env) {
        (Some(file), None) => Some(SecretSource::File(file.clone())),
        (None, Some(env)) => Some(SecretSource::Env(env.clone())),
        _ => None,
    }
}

/// Checks that exactly one of `<key>_file` and `<key>_env` is set, and well formed.
fn secret(
    path: &str,
    key: &str,
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<SecretSource, ModelError> {
    match (file, env) {
        (Some(file), None) => {
            check_file(&format!("{path}.{key}_file"), file)?;
            Ok(SecretSource::File(file.clone()))
        }
        (None, Some(name)) => {
            check_env_name(&format!("{path}.{key}_env"), name)?;
            Ok(SecretSource::Env(name.clone()))
        }
        (Some(_), Some(name)) => Err(invalid(
            format!("{path}.{key}_env"),
            format!("{name:?}"),
            format!("nothing: {key}_file is set too, and the secret comes from exactly one"),
        )),
        (None, None) => Err(ModelError::Parse {
            path: path.to_owned(),
            message: format!(
                "neither {key}_file nor {key}_env is set; set exactly one (a file or an \
                 environment variable holding the secret, which never goes in the YAML)"
            ),
        }),
    }
}

/// Checks an environment variable name: letters, digits and `_`, not starting with a digit.
pub(crate) fn check_env_name(path: &str, name: &str) -> Result<(), ModelError> {
    let valid = name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("{name:?}"),
            "an environment variable name (letters, digits and _, not starting with a digit)",
        ))
    }
}

/// Checks that a path is not empty.
fn check_file(path: &str, file: &std::path::Path) -> Result<(), ModelError> {
    if file.as_os_str().is_empty() {
        Err(invalid(path, "\"\"", "a file path"))
    } else {
        Ok(())
    }
}

/// Checks that `url` is an absolute http(s) URL with a host and no whitespace; the daemon
/// parses it fully.
fn check_url(path: &str, url: &str) -> Result<(), ModelError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    let clean = !url.chars().any(|c| c.is_whitespace() || c.is_control());
    match host {
        Some(host) if clean && !host.is_empty() && !host.starts_with(':') => Ok(()),
        _ => Err(invalid(
            path,
            format!("{url:?}"),
            "an http:// or https:// URL with a host, e.g. https://hooks.example.org/chaos",
        )),
    }
}

/// Checks an e-mail address, bare or as `Name <address>`: one `@` with text on both sides.
fn check_address(path: &str, address: &str) -> Result<(), ModelError> {
    let bare = match address.rsplit_once('<') {
        Some((_, rest)) => rest.strip_suffix('>').unwrap_or(""),
        None => address.trim(),
    };
    let valid = bare
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !bare.contains(char::is_whitespace)
        && !address.contains(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("{address:?}"),
            "an e-mail address such as oncall@example.org or Chaos <chaos@example.org>",
        ))
    }
}

/// An HTTP token character (RFC 9110), as header names use.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}
