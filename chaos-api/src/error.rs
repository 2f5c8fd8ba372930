//! The one error type of the YAML model, and the shared checks that produce it.
//!
//! This module owns how a failure is reported: [`ModelError`], the conversion of serde failures
//! (read through `serde_path_to_error`, so every failure carries the dotted path of the offending
//! key), and the value checks that [`crate::config`] and [`crate::experiment`] share (ratios,
//! costs, ranges, humantime durations), so every failure names its path, its value and what is
//! allowed in the same words.

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

/// Builds a [`ModelError::Invalid`].
pub(crate) fn invalid(
    path: impl Into<String>,
    value: impl Display,
    allowed: impl Into<String>,
) -> ModelError {
    ModelError::Invalid {
        path: path.into(),
        value: value.to_string(),
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
