//! The one error type of the YAML model, and the shared checks that produce it.
//!
//! This module owns how a failure is reported: [`ModelError`], the conversion of serde failures
//! (read through `serde_path_to_error`, so every failure carries the dotted path of the offending
//! key), and the value checks that [`crate::config`] and [`crate::experiment`] share (ratios,
//! costs, ranges, humantime durations), so every failure names its path, its value and what is
//! allowed in the same words.
//!
//! It also owns how free text from a caller is made safe to show: [`escape_controls`] (the
//! daemon applies it to what it accepts, chaos-ctl to everything it prints), [`cut_and_escape`]
//! (a text bounded for a record) and [`sanitize_reason`] (the length cap of a caller's reason).

use std::borrow::Cow;
use std::fmt::{self, Display};
use std::time::Duration;

use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde_path_to_error::Segment;

/// Why a YAML document was rejected. Parsing never half-applies: a caller gets a fully validated
/// value or one of these.
///
/// `Display` starts with the dotted path of the offending key (`budget.alert_threshold: ...`,
/// list entries as `error_types[3]`), except for [`ModelError::Document`], which concerns the
/// document as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The text is not one YAML document of the expected shape: a YAML syntax error, several
    /// documents, or a scalar or list where the top-level mapping belongs.
    #[error("invalid document: {message}")]
    Document {
        /// What is wrong, with the line and column when known.
        message: String,
    },
    /// A key or value does not fit the model: an unknown key, a missing required key, a wrong
    /// type, or a value its type cannot hold (an unknown name, a port above 65535).
    #[error("{path}: {message}")]
    Parse {
        /// Dotted path of the offending key, e.g. `experiments.network_latency.foo`.
        path: String,
        /// What is wrong, with the line and column when known.
        message: String,
    },
    /// A value has the right type but is not allowed, alone or together with another field.
    #[error("{path}: {value} is not allowed; expected {allowed}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `budget.alert_threshold`.
        path: String,
        /// The value as written (strings quoted).
        value: String,
        /// What would be accepted, e.g. `0 to 1`.
        allowed: String,
    },
}

impl ModelError {
    /// The dotted path of the offending key; `None` for a [`ModelError::Document`] error.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Document { .. } => None,
            Self::Parse { path, .. } | Self::Invalid { path, .. } => Some(path),
        }
    }
}

/// The most bytes of a value an error shows, as written: a caller's text can be megabytes,
/// and an error travels back in a gRPC status (a header).
pub const MAX_SHOWN_VALUE_BYTES: usize = 256;

/// Builds a [`ModelError::Invalid`], its value cut to [`MAX_SHOWN_VALUE_BYTES`] and escaped
/// ([`cut_and_escape`]).
pub(crate) fn invalid(
    path: impl Into<String>,
    value: impl Display,
    allowed: impl Into<String>,
) -> ModelError {
    ModelError::Invalid {
        path: path.into(),
        value: cut_and_escape(&value.to_string(), MAX_SHOWN_VALUE_BYTES),
        allowed: allowed.into(),
    }
}

/// Deserializes one YAML document into `T`, turning every serde failure into a [`ModelError`]
/// that names the path of the offending key.
pub(crate) fn parse_yaml<T: DeserializeOwned>(text: &str) -> Result<T, ModelError> {
    let deserializer = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        // A `?` segment is a key that could not be read (e.g. a syntax error inside it): the
        // failure belongs to the mapping that holds it.
        let segments: Vec<Segment> = error
            .path()
            .iter()
            .take_while(|segment| !matches!(segment, Segment::Unknown))
            .cloned()
            .collect();
        let message = strip_yaml_path(&error.inner().to_string(), &segments);
        from_serde(&segments, message)
    })
}

/// Builds the error for a serde failure at `segments` with the message `message`.
fn from_serde(segments: &[Segment], message: String) -> ModelError {
    let path = join(segments);
    // serde reports a missing key at the mapping that lacks it; name the key itself.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let path = if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        return ModelError::Parse {
            path,
            message: "required field is missing".to_owned(),
        };
    }
    if path.is_empty() {
        ModelError::Document { message }
    } else {
        ModelError::Parse { path, message }
    }
}

/// Formats `segments` like `serde_path_to_error` does (`a.b[2].c`), with "" for the root.
fn join(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        if !out.is_empty() && !matches!(segment, Segment::Seq { .. }) {
            out.push('.');
        }
        out.push_str(&segment.to_string());
    }
    out
}

/// serde_norway prefixes some messages with its own path of the enclosing node
/// (`experiments.network_latency: unknown field ...`); drop it, the error names the full path.
fn strip_yaml_path(message: &str, segments: &[Segment]) -> String {
    for end in (1..=segments.len()).rev() {
        let prefix = format!("{}: ", join(&segments[..end]));
        if let Some(rest) = message.strip_prefix(&prefix) {
            return rest.to_owned();
        }
    }
    message.to_owned()
}

/// Checks that `value` is a ratio in [0, 1].
pub(crate) fn check_ratio(path: &str, value: f64) -> Result<(), ModelError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(invalid(path, value, "0 to 1"))
    }
}

/// Checks that `value` is a finite cost of at least 0.
pub(crate) fn check_cost(path: &str, value: f64) -> Result<(), ModelError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(path, value, "a finite number of at least 0"))
    }
}

/// Checks that `min <= value <= max`.
pub(crate) fn check_range<T: PartialOrd + Display>(
    path: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ModelError> {
    if min <= value && value <= max {
        Ok(())
    } else {
        Err(invalid(path, value, format!("{min} to {max}")))
    }
}

/// Checks that `min <= value <= max` for a duration, formatting all three the humantime way.
pub(crate) fn check_duration(
    path: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ModelError> {
    if min <= value && value <= max {
        Ok(())
    } else {
        Err(invalid(
            path,
            humantime::format_duration(value),
            format!(
                "{} to {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ))
    }
}

/// Whether `duration` is a whole number of milliseconds, the proto's unit.
pub(crate) fn whole_millis(duration: Duration) -> bool {
    duration.subsec_nanos().is_multiple_of(1_000_000)
}

/// [`check_duration`] for a duration the proto carries in milliseconds: a finer value would
/// not arrive as validated, so it is refused.
pub(crate) fn check_duration_ms(
    path: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ModelError> {
    check_duration(path, value, min, max)?;
    if whole_millis(value) {
        Ok(())
    } else {
        Err(invalid(
            path,
            humantime::format_duration(value),
            "whole milliseconds",
        ))
    }
}

/// The most bytes a caller's reason (`EmergencyStopRequest.reason`, `chaos-ctl emergency-stop
/// --reason`) may have, counted as sent, before [`escape_controls`].
pub const MAX_REASON_BYTES: usize = 512;

/// `text` with every control character written as its Rust escape (`\u{1b}` for ESC, `\u{7}`
/// for BEL, `\u{a}` for a line feed), so a terminal shows it instead of obeying it. Control
/// characters are Unicode's `Cc` ([`char::is_control`]): C0 (U+0000 to U+001F, tab and line feed
/// included), DEL (U+007F) and C1 (U+0080 to U+009F). Everything else is kept as it is,
/// backslashes included, so escaping an escaped text changes nothing. Borrows when there is
/// nothing to escape.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.contains(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A caller's reason as the daemon keeps it: [`cut_and_escape`] at [`MAX_REASON_BYTES`]. Never
/// refused: an emergency stop must not fail on its reason.
pub fn sanitize_reason(reason: &str) -> String {
    cut_and_escape(reason, MAX_REASON_BYTES)
}

/// `text` as a bounded record: past `max_bytes` cut there (at a character boundary, marked
/// ` (cut from N bytes)`), then its control characters escaped by [`escape_controls`]. What is
/// kept is at most `max_bytes` of `text` before escaping (an escape writes a control character
/// in at most 6 bytes) plus the mark.
pub fn cut_and_escape(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return escape_controls(text).into_owned();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{} (cut from {} bytes)",
        escape_controls(&text[..end]),
        text.len()
    )
}

/// Reads a humantime duration written as a string (`30s`, `5m`, `1h 30m`); used with
/// `#[serde(deserialize_with = ...)]`. The range is checked later with [`check_duration`].
pub(crate) fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 500ms, 30s, 5m or 1h")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text).map_err(|error| {
                E::custom(format_args!(
                    "invalid duration {text:?}: {error}; expected a number and a unit such as \
                     500ms, 30s, 5m or 1h"
                ))
            })
        }
    }

    deserializer.deserialize_str(DurationVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        // Clear screen, set the window title, bell: every C0, DEL and C1 character is escaped.
        assert_eq!(
            escape_controls("\u{1b}[2J\u{1b}]0;owned\u{7}"),
            "\\u{1b}[2J\\u{1b}]0;owned\\u{7}"
        );
        assert_eq!(
            escape_controls("a\tb\nc\rd\u{0}e\u{7f}f\u{9b}g"),
            "a\\u{9}b\\u{a}c\\u{d}d\\u{0}e\\u{7f}f\\u{9b}g"
        );
        // Printable text, non-ASCII included, is kept and borrowed.
        let plain = "disk full on nœud-1: 100% \\ ok";
        assert!(matches!(escape_controls(plain), Cow::Borrowed(t) if t == plain));
        // Escaping twice changes nothing: an escaped text has no control character left.
        let once = escape_controls("\u{1b}[31mred\u{85}");
        assert!(!once.contains(char::is_control), "{once}");
        assert_eq!(escape_controls(&once), once);
    }

    #[test]
    fn records_are_cut_to_their_bound_then_escaped() {
        assert_eq!(cut_and_escape("abc", 3), "abc");
        assert_eq!(cut_and_escape("abcd", 3), "abc (cut from 4 bytes)");
        // Cut as sent, then escaped: the kept control character grows to its escape.
        assert_eq!(
            cut_and_escape("\u{1b}bcd", 2),
            "\\u{1b}b (cut from 4 bytes)"
        );
        // A 2 MiB text of two-byte characters keeps 128 of them and says how long it was.
        let big = "é".repeat(1 << 20);
        assert_eq!(
            cut_and_escape(&big, 257),
            format!("{} (cut from 2097152 bytes)", "é".repeat(128))
        );
    }

    #[test]
    fn an_error_shows_a_bounded_value() {
        let name = "\u{1b}".repeat(1 << 20);
        let e = invalid("name", format!("{name:?}"), "a short name");
        let shown = format!("\"{}", "\\u{1b}".repeat(42));
        assert_eq!(
            e.to_string(),
            format!(
                "name: {shown}\\u{{ (cut from {} bytes) is not allowed; expected a short name",
                6 * (1 << 20) + 2
            )
        );
    }

    #[test]
    fn reasons_are_escaped_and_cut() {
        assert_eq!(
            sanitize_reason("oncall: \u{1b}[2Jpaged\u{7}"),
            "oncall: \\u{1b}[2Jpaged\\u{7}"
        );
        assert_eq!(sanitize_reason(""), "");
        // The cap counts bytes as sent: 512 ASCII bytes are kept whole, 256 two-byte
        // characters too.
        let at_cap = "x".repeat(MAX_REASON_BYTES);
        assert_eq!(sanitize_reason(&at_cap), at_cap);
        let two_byte = "é".repeat(MAX_REASON_BYTES / 2);
        assert_eq!(sanitize_reason(&two_byte), two_byte);
        // Past it the text is cut at a character boundary and says so.
        let cut = sanitize_reason(&format!("a{two_byte}"));
        assert_eq!(
            cut,
            format!(
                "a{} (cut from 513 bytes)",
                "é".repeat(MAX_REASON_BYTES / 2 - 1)
            )
        );
        // A reason made only of escapes is cut as sent, and grows when escaped.
        let escapes = "\u{1b}".repeat(MAX_REASON_BYTES);
        assert_eq!(
            sanitize_reason(&escapes),
            "\\u{1b}".repeat(MAX_REASON_BYTES)
        );
    }
}
