//! The configured channels and actions, resolved once from the config (URLs parsed, addresses
//! parsed, defaults filled in), with their secrets read at each delivery (so a rotated secret
//! is picked up) and checked by pre-flight; and one delivery attempt per channel.

use std::{collections::VecDeque, path::PathBuf, time::Duration};

use chaos_api::config::{self, HeaderValue, SecretSource};
use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp::authentication::Credentials,
};
use reqwest::{
    Client, Url,
    header::{self, HeaderName},
};
use serde_json::Value;

use super::{Notice, NoticeKind, NotifyError, payload};

/// A channel of `rollback.notification_channels`, ready to deliver.
pub(super) struct Channel {
    pub name: String,
    kind: Kind,
}

enum Kind {
    Slack { url: SecretSource },
    PagerDuty { key: SecretSource, url: Url },
    Email(Email),
    Webhook(Hook),
    Alertmanager { alerts: Url },
}

/// An SMTP server and the envelope.
struct Email {
    host: String,
    port: u16,
    starttls: bool,
    from: Mailbox,
    to: Vec<Mailbox>,
    credentials: Option<PathBuf>,
}

/// A JSON POST target with extra headers: a `webhook` channel or a rollback action.
pub(super) struct Hook {
    pub url: Url,
    headers: Vec<(HeaderName, Header)>,
}

enum Header {
    Plain(header::HeaderValue),
    Secret(SecretSource),
}

/// Why one attempt failed, and whether another may succeed.
pub(super) struct Failure {
    pub retry: bool,
    pub message: String,
}

impl Failure {
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            retry: false,
            message: message.into(),
        }
    }

    fn transient(message: impl Into<String>) -> Self {
        Self {
            retry: true,
            message: message.into(),
        }
    }
}

/// What a channel remembers between notices: the Alertmanager alerts it posted for each
/// experiment (name and start), to resolve them when the experiment ends.
#[derive(Default)]
pub(super) struct Memory {
    alerts: VecDeque<(String, Vec<(NoticeKind, u64)>)>,
}

/// Most experiments whose alerts a channel remembers; the oldest are forgotten (their alerts
/// then resolve by Alertmanager's `resolve_timeout`).
const REMEMBERED_EXPERIMENTS: usize = 256;

impl Channel {
    /// Resolves the definition of channel `name`; `alertmanager_port` fills in Alertmanager's
    /// default URL.
    pub fn resolve(
        name: &str,
        definition: &config::Channel,
        alertmanager_port: u16,
    ) -> Result<Self, NotifyError> {
        let path = format!("rollback.channels.{name}");
        let missing = |key: &str| NotifyError::Config {
            path: path.clone(),
            reason: format!("exactly one of {key}_file and {key}_env is required"),
        };
        let kind = match definition {
            config::Channel::Slack(slack) => Kind::Slack {
                url: slack.webhook_url().ok_or_else(|| missing("webhook_url"))?,
            },
            config::Channel::PagerDuty(pagerduty) => Kind::PagerDuty {
                key: pagerduty
                    .routing_key()
                    .ok_or_else(|| missing("routing_key"))?,
                url: parse_url(&format!("{path}.url"), &pagerduty.url)?,
            },
            config::Channel::Email(email) => {
                let mailbox = |key: String, text: &str| {
                    text.parse::<Mailbox>()
                        .map_err(|error| NotifyError::Config {
                            path: key,
                            reason: format!("{text:?} is not an e-mail address: {error}"),
                        })
                };
                Kind::Email(Email {
                    host: email.smtp_host.clone(),
                    port: email.smtp_port,
                    starttls: email.starttls,
                    from: mailbox(format!("{path}.from"), &email.from)?,
                    to: email
                        .to
                        .iter()
                        .enumerate()
                        .map(|(i, to)| mailbox(format!("{path}.to[{i}]"), to))
                        .collect::<Result<_, _>>()?,
                    credentials: email.credentials_file.clone(),
                })
            }
            config::Channel::Webhook(webhook) => Kind::Webhook(Hook::resolve(&path, webhook)?),
            config::Channel::Alertmanager(alertmanager) => {
                let base = alertmanager
                    .url
                    .clone()
                    .unwrap_or_else(|| format!("http://127.0.0.1:{alertmanager_port}"));
                let alerts = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
                Kind::Alertmanager {
                    alerts: parse_url(&format!("{path}.url"), &alerts)?,
                }
            }
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
        })
    }

    /// Whether this channel gets notices of `kind`: all of them, except PagerDuty, which only
    /// gets what triggers or resolves an incident.
    pub fn wants(&self, kind: NoticeKind) -> bool {
        match self.kind {
            Kind::PagerDuty { .. } => matches!(
                kind,
                NoticeKind::RolledBack | NoticeKind::EmergencyStop | NoticeKind::Ended
            ),
            _ => true,
        }
    }

    /// Pre-flight: whether the channel's secrets can be read and its URL is usable.
    pub fn check(&self) -> Result<String, String> {
        match &self.kind {
            Kind::Slack { url } => {
                let text = read_secret(url)?;
                match Url::parse(&text) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                        Ok(format!("Slack webhook URL from {}", describe(url)))
                    }
                    _ => Err(format!(
                        "the Slack webhook URL from {} is not an http(s) URL",
                        describe(url)
                    )),
                }
            }
            Kind::PagerDuty { key, url } => {
                read_secret(key)?;
                Ok(format!(
                    "routing key from {}; events to {url}",
                    describe(key)
                ))
            }
            Kind::Email(Email {
                host,
                port,
                starttls,
                to,
                credentials,
                ..
            }) => {
                let login = match credentials {
                    Some(file) => {
                        let (user, _) = read_credentials(file)?;
                        format!(", login {user} from {}", file.display())
                    }
                    None => String::new(),
                };
                let tls = if *starttls { "STARTTLS" } else { "plain" };
                Ok(format!(
                    "SMTP {host}:{port} ({tls}{login}) to {} recipient(s)",
                    to.len()
                ))
            }
            Kind::Webhook(hook) => hook.check(),
            Kind::Alertmanager { alerts } => Ok(format!("alerts to {alerts}")),
        }
    }

    /// One delivery attempt of `notice`.
    pub async fn deliver(
        &self,
        client: &Client,
        notice: &Notice,
        memory: &mut Memory,
        timeout: Duration,
    ) -> Result<(), Failure> {
        match &self.kind {
            Kind::Slack { url } => {
                let url = read_secret(url).map_err(Failure::permanent)?;
                let url = Url::parse(&url)
                    .map_err(|_| Failure::permanent("the Slack webhook URL does not parse"))?;
                post(client, &url, &[], &payload::slack(notice), timeout, true).await
            }
            Kind::PagerDuty { key, url } => {
                let key = read_secret(key).map_err(Failure::permanent)?;
                match payload::pagerduty(notice, &key) {
                    Some(event) => post(client, url, &[], &event, timeout, false).await,
                    None => Ok(()),
                }
            }
            Kind::Email(email) => email.send(notice, timeout).await,
            Kind::Webhook(hook) => hook.post(client, &payload::webhook(notice), timeout).await,
            Kind::Alertmanager { alerts } => {
                let id = &notice.experiment_id;
                let known = memory.alerts.iter().position(|(known, _)| known == id);
                let body = if notice.kind == NoticeKind::Ended {
                    let mut fired = known
                        .map(|i| memory.alerts[i].1.clone())
                        .unwrap_or_default();
                    if !fired.iter().any(|(kind, _)| *kind == NoticeKind::Started) {
                        fired.push((NoticeKind::Started, notice.at_ms));
                    }
                    fired
                        .iter()
                        .map(|&(kind, at)| payload::alert(notice, kind, at, Some(notice.at_ms)))
                        .collect()
                } else {
                    vec![payload::alert(notice, notice.kind, notice.at_ms, None)]
                };
                post(client, alerts, &[], &Value::Array(body), timeout, false).await?;
                match (notice.kind, known) {
                    (NoticeKind::Ended, Some(i)) => {
                        memory.alerts.remove(i);
                    }
                    (NoticeKind::Ended, None) => {}
                    (kind, Some(i)) => memory.alerts[i].1.push((kind, notice.at_ms)),
                    (kind, None) => {
                        if memory.alerts.len() >= REMEMBERED_EXPERIMENTS {
                            memory.alerts.pop_front();
                        }
                        memory
                            .alerts
                            .push_back((id.clone(), vec![(kind, notice.at_ms)]));
                    }
                }
                Ok(())
            }
        }
    }
}

impl Email {
    /// One SMTP transaction: STARTTLS (required) or plain, with a login when configured.
    async fn send(&self, notice: &Notice, timeout: Duration) -> Result<(), Failure> {
        let Self {
            host,
            port,
            starttls,
            from,
            to,
            credentials,
        } = self;
        let (subject, body) = payload::email(notice);
        let mut message = Message::builder().from(from.clone()).subject(subject);
        for mailbox in to {
            message = message.to(mailbox.clone());
        }
        let message = message
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| Failure::permanent(format!("building the e-mail: {error}")))?;
        let builder = if *starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|error| Failure::permanent(format!("STARTTLS to {host}: {error}")))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        };
        let mut builder = builder.port(*port).timeout(Some(timeout));
        if let Some(file) = credentials {
            let (user, password) = read_credentials(file).map_err(Failure::permanent)?;
            builder = builder.credentials(Credentials::new(user, password));
        }
        match builder.build().send(message).await {
            Ok(_) => Ok(()),
            Err(error) => Err(Failure {
                retry: !error.is_permanent(),
                message: format!("SMTP {host}:{port}: {error}"),
            }),
        }
    }
}

impl Hook {
    /// Resolves a webhook definition at `path` (`rollback.channels.NAME`,
    /// `rollback.actions.STRATEGY`).
    pub fn resolve(path: &str, webhook: &config::Webhook) -> Result<Self, NotifyError> {
        let url = parse_url(&format!("{path}.url"), &webhook.url)?;
        let headers = webhook
            .headers
            .iter()
            .map(|(name, value)| {
                let header_path = format!("{path}.headers.{name}");
                let bad = |reason: String| NotifyError::Config {
                    path: header_path.clone(),
                    reason,
                };
                let header_name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|error| bad(format!("{name:?} is not a header name: {error}")))?;
                let value = match value {
                    HeaderValue::Plain(text) => Header::Plain(
                        header::HeaderValue::from_str(text)
                            .map_err(|error| bad(format!("not a header value: {error}")))?,
                    ),
                    HeaderValue::Secret(secret) => {
                        Header::Secret(secret.source().ok_or_else(|| {
                            bad("exactly one of value_file and value_env is required".to_owned())
                        })?)
                    }
                };
                Ok((header_name, value))
            })
            .collect::<Result<_, NotifyError>>()?;
        Ok(Self { url, headers })
    }

    /// Pre-flight: whether the header secrets can be read.
    pub fn check(&self) -> Result<String, String> {
        self.headers()?;
        Ok(format!("POST to {}", self.url))
    }

    /// One JSON POST of `body`.
    pub async fn post(
        &self,
        client: &Client,
        body: &Value,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let headers = self.headers().map_err(Failure::permanent)?;
        post(client, &self.url, &headers, body, timeout, false).await
    }

    fn headers(&self) -> Result<Vec<(HeaderName, header::HeaderValue)>, String> {
        self.headers
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    Header::Plain(value) => value.clone(),
                    Header::Secret(source) => {
                        let mut value = header::HeaderValue::from_str(&read_secret(source)?)
                            .map_err(|_| {
                                format!(
                                    "header {name}: the value from {} is not a header value",
                                    describe(source)
                                )
                            })?;
                        value.set_sensitive(true);
                        value
                    }
                };
                Ok((name.clone(), value))
            })
            .collect()
    }
}

/// POSTs `body` as JSON. A 2xx answer is success; no answer, 429 and 5xx may be retried, any
/// other answer is final. With `secret_url` the URL is left out of every message.
async fn post(
    client: &Client,
    url: &Url,
    headers: &[(HeaderName, header::HeaderValue)],
    body: &Value,
    timeout: Duration,
    secret_url: bool,
) -> Result<(), Failure> {
    let shown = if secret_url {
        "the webhook URL".to_owned()
    } else {
        url.to_string()
    };
    let mut request = client.post(url.clone()).json(body).timeout(timeout);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .map_err(|error| Failure::transient(format!("POST {shown}: {}", error.without_url())))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let text: String = text.chars().take(200).collect();
    let message = format!("POST {shown}: HTTP {status}: {}", text.trim());
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(Failure::transient(message))
    } else {
        Err(Failure::permanent(message))
    }
}

fn parse_url(path: &str, text: &str) -> Result<Url, NotifyError> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        Ok(_) => Err(NotifyError::Config {
            path: path.to_owned(),
            reason: format!("{text:?} is not an http(s) URL"),
        }),
        Err(error) => Err(NotifyError::Config {
            path: path.to_owned(),
            reason: format!("{text:?} is not a URL: {error}"),
        }),
    }
}

/// Reads a secret: the file's content or the variable's value, trimmed; empty is an error.
fn read_secret(source: &SecretSource) -> Result<String, String> {
    let value = match source {
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?,
        SecretSource::Env(name) => std::env::var(name)
            .map_err(|_| format!("environment variable {name} is not set (or not UTF-8)"))?,
    };
    let value = value.trim();
    if value.is_empty() {
        Err(format!("{} is empty", describe(source)))
    } else {
        Ok(value.to_owned())
    }
}

/// The SMTP user (first line) and password (second line) of a credentials file.
fn read_credentials(file: &std::path::Path) -> Result<(String, String), String> {
    let text = read_secret(&SecretSource::File(file.to_owned()))?;
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(user), Some(password)) if !user.trim().is_empty() && !password.is_empty() => {
            Ok((user.trim().to_owned(), password.to_owned()))
        }
        _ => Err(format!(
            "{} must hold the user name on its first line and the password on its second",
            file.display()
        )),
    }
}

fn describe(source: &SecretSource) -> String {
    match source {
        SecretSource::File(path) => format!("file {}", path.display()),
        SecretSource::Env(name) => format!("${name}"),
    }
}
