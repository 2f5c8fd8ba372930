//! What the guards compare against: SLO definitions (a PromQL query, an objective such as
//! `>= 0.99`, how long a breach must last), HTTP health endpoints, and the time window in which
//! experiments may run. Used by the `safety_checks` section and by experiments' own `guards`.

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, de::Error as _};

use crate::error::{ModelError, check_duration, check_duration_ms, deserialize_duration, invalid};

/// How a value is compared with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
}

impl Comparison {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ge => ">=",
            Self::Gt => ">",
            Self::Le => "<=",
            Self::Lt => "<",
        }
    }

    /// Whether larger values are better (the objective is a floor).
    pub fn is_floor(self) -> bool {
        matches!(self, Self::Ge | Self::Gt)
    }
}

/// What an SLO's value must satisfy, e.g. `>= 0.99`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    pub op: Comparison,
    pub threshold: f64,
}

impl Objective {
    /// Whether `value` meets the objective. NaN never does.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Comparison::Ge => value >= self.threshold,
            Comparison::Gt => value > self.threshold,
            Comparison::Le => value <= self.threshold,
            Comparison::Lt => value < self.threshold,
        }
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.threshold)
    }
}

const OBJECTIVE_ALLOWED: &str = "an operator (>=, >, <= or <) and a finite number, e.g. '>= 0.99'";

impl FromStr for Objective {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (op, rest) = [
            (Comparison::Ge, ">="),
            (Comparison::Le, "<="),
            (Comparison::Gt, ">"),
            (Comparison::Lt, "<"),
        ]
        .into_iter()
        .find_map(|(op, sign)| text.strip_prefix(sign).map(|rest| (op, rest)))
        .ok_or_else(|| format!("{text:?} is not an objective; expected {OBJECTIVE_ALLOWED}"))?;
        match rest.trim().parse::<f64>() {
            Ok(threshold) if threshold.is_finite() => Ok(Self { op, threshold }),
            _ => Err(format!(
                "{text:?} is not an objective; expected {OBJECTIVE_ALLOWED}"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Objective {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// One SLO: a PromQL query whose value must meet an objective.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an SLO definition (query, objective, for)"
)]
pub struct SloDefinition {
    /// An instant PromQL query returning one number (a vector of one sample or a scalar).
    pub query: String,
    /// What its value must satisfy, e.g. `>= 0.99`.
    pub objective: Objective,
    /// How long the objective must be missed before the SLO counts as breached; 0 to 1h.
    /// Default: 0s (the first missed evaluation).
    #[serde(rename = "for", default, deserialize_with = "deserialize_duration")]
    pub for_: Duration,
    /// What it means, for reports. Default: empty.
    #[serde(default)]
    pub description: String,
}

/// Longest `for` of an SLO.
pub const MAX_SLO_FOR: Duration = Duration::from_secs(3600);

/// Longest PromQL query accepted.
pub const MAX_QUERY_LEN: usize = 4096;

impl SloDefinition {
    /// Checks the query and the `for`; `path` is the definition's dotted path.
    pub fn validate(&self, path: &str) -> Result<(), ModelError> {
        if self.query.trim().is_empty() || self.query.len() > MAX_QUERY_LEN {
            return Err(invalid(
                format!("{path}.query"),
                format!("{:?}", truncate(&self.query)),
                format!("a PromQL query of 1 to {MAX_QUERY_LEN} bytes"),
            ));
        }
        // The proto carries `for_ms`.
        check_duration_ms(
            &format!("{path}.for"),
            self.for_,
            Duration::ZERO,
            MAX_SLO_FOR,
        )
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Checks every definition of `slos` at `path.<name>`, and the names.
pub fn check_slos(path: &str, slos: &BTreeMap<String, SloDefinition>) -> Result<(), ModelError> {
    for (name, slo) in slos {
        let at = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        if !is_guard_name(name) {
            return Err(invalid(
                at,
                format!("{name:?}"),
                "SLO names of 1 to 63 characters a-z, A-Z, 0-9, '_', '-' and '.'",
            ));
        }
        slo.validate(&at)?;
    }
    Ok(())
}

/// Whether `name` may name an SLO: 1 to 63 of `[A-Za-z0-9_.-]`.
pub fn is_guard_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// An HTTP endpoint probed by the health checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a health endpoint (url, method, expect_status, timeout, interval)"
)]
pub struct HealthEndpoint {
    /// `http://` or `https://` URL.
    pub url: String,
    /// GET, HEAD or POST. Default: GET.
    #[serde(default = "default_method")]
    pub method: String,
    /// Statuses that count as healthy: one code (`200`) or a range (`'200-399'`). Default:
    /// 200-399.
    #[serde(default)]
    pub expect_status: StatusRange,
    /// Longest wait for an answer; 10ms to 60s. Default: 1s.
    #[serde(default = "one_second", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Time between probes; 50ms to 1h. Default: 1s.
    #[serde(default = "one_second", deserialize_with = "deserialize_duration")]
    pub interval: Duration,
}

fn default_method() -> String {
    "GET".to_owned()
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

impl HealthEndpoint {
    fn validate(&self, path: &str) -> Result<(), ModelError> {
        let scheme_ok = ["http://", "https://"]
            .iter()
            .any(|s| self.url.starts_with(s) && self.url.len() > s.len());
        if !scheme_ok || self.url.len() > 2048 || self.url.chars().any(char::is_whitespace) {
            return Err(invalid(
                format!("{path}.url"),
                format!("{:?}", truncate(&self.url)),
                "an http:// or https:// URL without spaces",
            ));
        }
        if !["GET", "HEAD", "POST"].contains(&self.method.as_str()) {
            return Err(invalid(
                format!("{path}.method"),
                format!("{:?}", self.method),
                "GET, HEAD or POST",
            ));
        }
        check_duration(
            &format!("{path}.timeout"),
            self.timeout,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )?;
        check_duration(
            &format!("{path}.interval"),
            self.interval,
            Duration::from_millis(50),
            Duration::from_secs(3600),
        )
    }
}

/// Checks every endpoint of `endpoints` at `path[i]`.
pub fn check_endpoints(path: &str, endpoints: &[HealthEndpoint]) -> Result<(), ModelError> {
    endpoints
        .iter()
        .enumerate()
        .try_for_each(|(i, e)| e.validate(&format!("{path}[{i}]")))
}

/// HTTP statuses that count as healthy, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub min: u16,
    pub max: u16,
}

impl Default for StatusRange {
    fn default() -> Self {
        Self { min: 200, max: 399 }
    }
}

impl StatusRange {
    /// Whether `status` is healthy.
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(u64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::One(code) => code.to_string(),
            Raw::Text(text) => text,
        };
        let code = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
        };
        let range = match text.split_once('-') {
            Some((a, b)) => code(a).zip(code(b)),
            None => code(&text).map(|c| (c, c)),
        };
        match range {
            Some((min, max)) if min <= max => Ok(Self { min, max }),
            _ => Err(D::Error::custom(format_args!(
                "{text:?} is not allowed; expected an HTTP status 100 to 599 or a range such as \
                 '200-399'"
            ))),
        }
    }
}

/// When experiments may run: days of the week and hours of the day in a named time zone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a time window (time_zone, days, hours)"
)]
pub struct TimeWindow {
    /// An IANA time zone name, e.g. `Europe/Berlin`, `America/New_York` or `UTC`.
    pub time_zone: String,
    /// Allowed days (mon, tue, wed, thu, fri, sat, sun). Default: every day.
    #[serde(default = "every_day")]
    pub days: Vec<Weekday>,
    /// Allowed hours, `HH:MM-HH:MM` in that time zone; a window past midnight such as
    /// `22:00-06:00` is allowed (it starts on an allowed day). Default: `00:00-24:00`.
    #[serde(default)]
    pub hours: Hours,
}

fn every_day() -> Vec<Weekday> {
    Weekday::ALL.to_vec()
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday first.
    pub const ALL: [Self; 7] = [
        Self::Mon,
        Self::Tue,
        Self::Wed,
        Self::Thu,
        Self::Fri,
        Self::Sat,
        Self::Sun,
    ];

    /// Days since Monday (0 to 6).
    pub fn index(self) -> u8 {
        self as u8
    }
}

/// `HH:MM-HH:MM`, in minutes of the day; `end` may be 1440 (24:00) and may be before `start`
/// (the window goes past midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub start: u16,
    pub end: u16,
}

impl Default for Hours {
    fn default() -> Self {
        Self {
            start: 0,
            end: 24 * 60,
        }
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

impl<'de> Deserialize<'de> for Hours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let minute = |s: &str| {
            let (h, m) = s.trim().split_once(':')?;
            if !(1..=2).contains(&h.len()) || m.len() != 2 {
                return None;
            }
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            (m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        match text
            .split_once('-')
            .and_then(|(a, b)| minute(a).zip(minute(b)))
        {
            Some((start, end)) if start != end && start < 24 * 60 => Ok(Self { start, end }),
            _ => Err(D::Error::custom(format_args!(
                "{text:?} is not allowed; expected HH:MM-HH:MM with different ends, e.g. \
                 '09:00-17:00' or '22:00-06:00'"
            ))),
        }
    }
}

impl TimeWindow {
    /// Whether a local time (day of the week, minute of the day) is inside the window.
    pub fn allows(&self, weekday: Weekday, minute: u16) -> bool {
        let day_allowed = |d: u8| self.days.iter().any(|w| w.index() == d % 7);
        let Hours { start, end } = self.hours;
        if start < end {
            day_allowed(weekday.index()) && (start..end).contains(&minute)
        } else if minute >= start {
            // Past midnight: the evening part belongs to today.
            day_allowed(weekday.index())
        } else {
            // The morning part belongs to the window that began yesterday.
            minute < end && day_allowed(weekday.index() + 6)
        }
    }

    pub(super) fn validate(&self, path: &str) -> Result<(), ModelError> {
        if self.days.is_empty() {
            return Err(invalid(
                format!("{path}.days"),
                "[]",
                "at least one of mon, tue, wed, thu, fri, sat, sun",
            ));
        }
        let name = &self.time_zone;
        if jiff::tz::TimeZone::get(name).is_err() {
            return Err(invalid(
                format!("{path}.time_zone"),
                format!("{name:?}"),
                "an IANA time zone name such as UTC, Europe/Berlin or America/New_York",
            ));
        }
        Ok(())
    }

    /// Whether the instant `unix_ms` is inside the window, and the local time it is there
    /// (for messages).
    pub fn allows_at(&self, unix_ms: u64) -> Result<(bool, String), String> {
        let tz = jiff::tz::TimeZone::get(&self.time_zone).map_err(|e| e.to_string())?;
        let at = jiff::Timestamp::from_millisecond(i64::try_from(unix_ms).unwrap_or(i64::MAX))
            .map_err(|e| e.to_string())?
            .to_zoned(tz);
        let weekday = Weekday::ALL[usize::from(at.weekday().to_monday_zero_offset() as u8)];
        let minute =
            u16::try_from(at.hour()).unwrap_or(0) * 60 + u16::try_from(at.minute()).unwrap_or(0);
        Ok((
            self.allows(weekday, minute),
            at.strftime("%a %Y-%m-%d %H:%M %Z").to_string(),
        ))
    }
}
