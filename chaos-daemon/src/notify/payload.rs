//! What each channel sends, built from a [`Notice`] without I/O: the Slack incoming-webhook
//! message, PagerDuty Events API v2 events, the generic webhook JSON, Alertmanager API v2
//! alerts, the e-mail subject and text, and the JSON a rollback action is POSTed.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::{Notice, NoticeKind};

/// `at_ms` (milliseconds since the Unix epoch) as RFC 3339 UTC with milliseconds.
pub fn rfc3339(at_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// One line naming the event, the experiment, the node, the target and the reason.
pub fn summary(notice: &Notice) -> String {
    let reason = if notice.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", notice.reason)
    };
    format!(
        "{}: {} experiment {} ({}) on {}, target {}{reason}",
        notice.kind.title(),
        notice.experiment_type,
        notice.name,
        notice.experiment_id,
        notice.node,
        notice.target,
    )
}

/// The generic webhook body: every field of the notice.
pub fn webhook(notice: &Notice) -> Value {
    json!({
        "kind": notice.kind.as_str(),
        "title": notice.kind.title(),
        "summary": summary(notice),
        "experiment_id": notice.experiment_id,
        "name": notice.name,
        "experiment_type": notice.experiment_type,
        "target": notice.target,
        "node": notice.node,
        "reason": notice.reason,
        "at_ms": notice.at_ms,
        "at": rfc3339(notice.at_ms),
        "fields": fields(notice),
    })
}

/// A Slack incoming-webhook message: `text` (the summary, shown in notifications) and
/// `blocks` (a header, the reason, the experiment's facts and the extra fields).
pub fn slack(notice: &Notice) -> Value {
    let header = truncate(
        &format!(
            "{} {}: {}",
            notice.kind.emoji(),
            notice.kind.title(),
            notice.name
        ),
        150,
    );
    let reason = if notice.reason.is_empty() {
        "(no reason given)".to_owned()
    } else {
        escape_mrkdwn(&notice.reason)
    };
    let fact = |label: &str, value: &str| json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{}", escape_mrkdwn(value)), 2000)});
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&reason, 3000)}}),
        json!({"type": "section", "fields": [
            fact("Experiment", &format!("{} ({})", notice.name, notice.experiment_id)),
            fact("Type", &notice.experiment_type),
            fact("Target", &notice.target),
            fact("Node", &notice.node),
            fact("At", &rfc3339(notice.at_ms)),
        ]}),
    ];
    if !notice.fields.is_empty() {
        let text = notice
            .fields
            .iter()
            .map(|(key, value)| format!("{}: {}", escape_mrkdwn(key), escape_mrkdwn(value)))
            .collect::<Vec<_>>()
            .join(" · ");
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": truncate(&text, 3000)}
        ]}));
    }
    json!({"text": summary(notice), "blocks": blocks})
}

/// A PagerDuty Events API v2 event, or `None` for the kinds PagerDuty does not get: a rollback
/// or an emergency stop triggers an incident, the end of the experiment resolves it (both with
/// the experiment id as dedup key).
pub fn pagerduty(notice: &Notice, routing_key: &str) -> Option<Value> {
    let severity = match notice.kind {
        NoticeKind::RolledBack => "error",
        NoticeKind::EmergencyStop => "critical",
        NoticeKind::Ended => {
            return Some(json!({
                "routing_key": routing_key,
                "event_action": "resolve",
                "dedup_key": notice.experiment_id,
            }));
        }
        _ => return None,
    };
    let mut details = fields(notice);
    for (key, value) in [
        ("experiment_id", &notice.experiment_id),
        ("name", &notice.name),
        ("experiment_type", &notice.experiment_type),
        ("target", &notice.target),
        ("node", &notice.node),
        ("reason", &notice.reason),
    ] {
        details.insert(key.to_owned(), Value::String(value.clone()));
    }
    Some(json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": notice.experiment_id,
        "client": "chaos-daemon",
        "payload": {
            "summary": truncate(&summary(notice), 1024),
            "source": notice.node,
            "severity": severity,
            "timestamp": rfc3339(notice.at_ms),
            "component": notice.target,
            "group": notice.experiment_type,
            "class": notice.kind.as_str(),
            "custom_details": details,
        },
    }))
}

/// One Alertmanager API v2 alert for `notice` under the name of `kind` (the notice's own kind,
/// or an earlier one being resolved), starting at `starts_at_ms`; `ends_at_ms` resolves it.
pub fn alert(
    notice: &Notice,
    kind: NoticeKind,
    starts_at_ms: u64,
    ends_at_ms: Option<u64>,
) -> Value {
    let mut annotations = Map::new();
    for (key, value) in &notice.fields {
        annotations.insert(label_name(key), Value::String(value.clone()));
    }
    for (key, value) in [
        ("summary", summary(notice)),
        ("reason", notice.reason.clone()),
        ("name", notice.name.clone()),
        ("target", notice.target.clone()),
    ] {
        annotations.insert(key.to_owned(), Value::String(value));
    }
    let mut alert = json!({
        "labels": {
            "alertname": kind.alertname(),
            "experiment_id": notice.experiment_id,
            "experiment_type": notice.experiment_type,
            "node": notice.node,
            "severity": kind.severity(),
        },
        "annotations": annotations,
        "startsAt": rfc3339(starts_at_ms),
    });
    if let (Some(ends_at_ms), Some(object)) = (ends_at_ms, alert.as_object_mut()) {
        object.insert("endsAt".to_owned(), Value::String(rfc3339(ends_at_ms)));
    }
    alert
}

/// The e-mail's subject and plain-text body.
pub fn email(notice: &Notice) -> (String, String) {
    let subject = format!(
        "[chaos] {}: {} ({}) on {}",
        notice.kind.title(),
        notice.name,
        notice.experiment_id,
        notice.node
    )
    .replace(char::is_control, " ");
    let mut body = format!(
        "{}\n\nEvent:         {}\nExperiment:    {}\nExperiment id: {}\nType:          {}\n\
         Target:        {}\nNode:          {}\nReason:        {}\nAt:            {}\n",
        summary(notice),
        notice.kind.title(),
        notice.name,
        notice.experiment_id,
        notice.experiment_type,
        notice.target,
        notice.node,
        notice.reason,
        rfc3339(notice.at_ms),
    );
    if !notice.fields.is_empty() {
        body.push('\n');
        for (key, value) in &notice.fields {
            body.push_str(&format!("{key}: {value}\n"));
        }
    }
    body.push_str("\n-- \nchaos-daemon\n");
    (subject, body)
}

/// The JSON POSTed to a rollback action.
pub fn action(notice: &Notice, strategy: &str) -> Value {
    json!({
        "experiment_id": notice.experiment_id,
        "name": notice.name,
        "target": notice.target,
        "reason": notice.reason,
        "strategy": strategy,
        "node": notice.node,
        "at": rfc3339(notice.at_ms),
    })
}

fn fields(notice: &Notice) -> Map<String, Value> {
    notice
        .fields
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect()
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn escape_mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`), as Alertmanager requires of
/// annotation names too.
fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            kind,
            experiment_id: "exp-7".to_owned(),
            name: "checkout <loss>".to_owned(),
            experiment_type: "packet_loss".to_owned(),
            target: "/sys/fs/cgroup/shop".to_owned(),
            node: "node-a".to_owned(),
            reason: "slo error_rate: 0.2 > 0.05".to_owned(),
            at_ms: 1_700_000_000_123,
            fields: vec![("spent".to_owned(), "1.5".to_owned())],
        }
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn pagerduty_triggers_on_rollback_and_emergency_stop_and_resolves_at_the_end() {
        let rolled_back = pagerduty(&notice(NoticeKind::RolledBack), "key").unwrap();
        assert_eq!(rolled_back["event_action"], "trigger");
        assert_eq!(rolled_back["payload"]["severity"], "error");
        let stop = pagerduty(&notice(NoticeKind::EmergencyStop), "key").unwrap();
        assert_eq!(stop["payload"]["severity"], "critical");
        let end = pagerduty(&notice(NoticeKind::Ended), "key").unwrap();
        assert_eq!(end["event_action"], "resolve");
        assert_eq!(end["dedup_key"], "exp-7");
        for kind in [
            NoticeKind::Started,
            NoticeKind::BudgetAlert,
            NoticeKind::BudgetExhausted,
        ] {
            assert_eq!(pagerduty(&notice(kind), "key"), None, "{kind:?}");
        }
    }

    #[test]
    fn slack_escapes_mrkdwn_and_lists_fields() {
        let message = slack(&notice(NoticeKind::RolledBack));
        let text = message.to_string();
        assert!(text.contains("checkout &lt;loss&gt;"), "{text}");
        assert!(text.contains("spent: 1.5"), "{text}");
        assert_eq!(
            message["text"],
            "Rolled back: packet_loss experiment checkout <loss> (exp-7) on node-a, target \
             /sys/fs/cgroup/shop: slo error_rate: 0.2 > 0.05"
        );
    }

    #[test]
    fn alerts_use_label_names_for_annotations_and_resolve_with_ends_at() {
        let mut n = notice(NoticeKind::Ended);
        n.fields.push(("9 bad-key".to_owned(), "x".to_owned()));
        let resolved = alert(&n, NoticeKind::RolledBack, 1000, Some(2000));
        assert_eq!(resolved["labels"]["alertname"], "ChaosExperimentRolledBack");
        assert_eq!(resolved["annotations"]["_9_bad_key"], "x");
        assert_eq!(resolved["startsAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(resolved["endsAt"], "1970-01-01T00:00:02.000Z");
        assert!(
            alert(&n, NoticeKind::Started, 1000, None)
                .get("endsAt")
                .is_none()
        );
    }

    #[test]
    fn long_texts_are_cut_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
