//! The `fault` of a `bandwidth_limit` experiment: the rate the target's egress packets may
//! leave at on a device, the burst they may leave at line rate, and the device, with their
//! checks and the tc-style notation both are written in (`1mbit`, `32kb`).

use std::fmt;

use super::latency::check_interface;
use crate::error::{ModelError, invalid};

/// Lowest `fault.rate`: 8 kbit/s (1000 bytes per second).
pub const MIN_RATE_BPS: u64 = 8_000;
/// Highest `fault.rate`: 100 gbit/s.
pub const MAX_RATE_BPS: u64 = 100_000_000_000;
/// Largest `fault.burst`: 16 MiB.
pub const MAX_BURST_BYTES: u32 = 16 << 20;

/// `fault` of a `bandwidth_limit` experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandwidthLimit {
    /// `rate`: what the target's matching egress packets may leave at, link-layer bytes
    /// counted. [`MIN_RATE_BPS`] to [`MAX_RATE_BPS`]. Required.
    pub rate: Rate,
    /// `burst`: bytes that may leave at line rate after an idle spell (the token bucket's
    /// size). 0 to [`MAX_BURST_BYTES`]. Default: 0 (every packet paced).
    pub burst: Bytes,
    /// `interface`: the device whose egress is limited. Default: the device of the default
    /// route of the target's network namespace.
    pub interface: Option<String>,
}

impl BandwidthLimit {
    pub(super) fn validate(&self) -> Result<(), ModelError> {
        if !(MIN_RATE_BPS..=MAX_RATE_BPS).contains(&self.rate.bits_per_sec) {
            return Err(invalid(
                "fault.rate",
                self.rate,
                format!(
                    "{} to {} (the daemon's experiments.bandwidth_limit.min_rate may allow \
                     less)",
                    Rate::from_bps(MIN_RATE_BPS),
                    Rate::from_bps(MAX_RATE_BPS)
                ),
            ));
        }
        if self.burst.0 > MAX_BURST_BYTES {
            return Err(invalid(
                "fault.burst",
                self.burst,
                format!("{} to {}", Bytes(0), Bytes(MAX_BURST_BYTES)),
            ));
        }
        check_interface(self.interface.as_deref())
    }
}

/// A rate in bits per second, written as tc writes it: a number and a unit, `bit`, `kbit`,
/// `mbit`, `gbit` (bits per second) or `bps`, `kbps`, `mbps`, `gbps` (bytes per second); the
/// prefixes are decimal (`1mbit` = 1,000,000 bit/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub bits_per_sec: u64,
}

/// The rate units: name and bits per second per unit, longest names first for parsing.
const RATE_UNITS: &[(&str, u64)] = &[
    ("kbit", 1_000),
    ("mbit", 1_000_000),
    ("gbit", 1_000_000_000),
    ("kbps", 8_000),
    ("mbps", 8_000_000),
    ("gbps", 8_000_000_000),
    ("bit", 1),
    ("bps", 8),
];

impl Rate {
    pub fn from_bps(bits_per_sec: u64) -> Self {
        Self { bits_per_sec }
    }

    /// Parses `text` (`1mbit`, `500kbit`, `1.5mbit`, `10mbps`); `path` names the field in the
    /// error.
    pub fn parse(path: &str, text: &str) -> Result<Self, ModelError> {
        let bad = || {
            invalid(
                path,
                format!("{text:?}"),
                "a rate: a number and a unit, bit, kbit, mbit, gbit (bits per second) or bps, \
                 kbps, mbps, gbps (bytes per second), e.g. 1mbit",
            )
        };
        let lower = text.trim().to_ascii_lowercase();
        let (number, per_unit) = RATE_UNITS
            .iter()
            .find_map(|(unit, per)| lower.strip_suffix(unit).map(|n| (n.trim(), *per)))
            .ok_or_else(bad)?;
        let bits = scaled(number, per_unit).ok_or_else(bad)?;
        Ok(Self::from_bps(bits))
    }
}

impl fmt::Display for Rate {
    /// The largest bit unit the rate is a whole number of (`1mbit`, `1500kbit`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.bits_per_sec;
        for (unit, per) in [
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if bits >= per && bits.is_multiple_of(per) {
                return write!(f, "{}{unit}", bits / per);
            }
        }
        write!(f, "{bits}bit")
    }
}

/// A byte count, written as tc writes sizes: a number and an optional unit, `b`, `kb` (or
/// `k`), `mb` (or `m`), binary prefixes (`1kb` = 1024 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Bytes(pub u32);

const BYTE_UNITS: &[(&str, u64)] = &[
    ("kb", 1 << 10),
    ("mb", 1 << 20),
    ("k", 1 << 10),
    ("m", 1 << 20),
    ("b", 1),
];

impl Bytes {
    /// Parses `text` (`32kb`, `1500`, `1mb`); `path` names the field in the error.
    pub fn parse(path: &str, text: &str) -> Result<Self, ModelError> {
        let bad = || {
            invalid(
                path,
                format!("{text:?}"),
                "a size: a whole number of bytes with an optional unit b, kb or mb (1kb = 1024 \
                 bytes), e.g. 32kb",
            )
        };
        let lower = text.trim().to_ascii_lowercase();
        let (number, per_unit) = BYTE_UNITS
            .iter()
            .find_map(|(unit, per)| lower.strip_suffix(unit).map(|n| (n.trim(), *per)))
            .unwrap_or((lower.as_str(), 1));
        let bytes = scaled(number, per_unit).ok_or_else(bad)?;
        // Over u32 is refused by the range check with the same value.
        Ok(Self(u32::try_from(bytes).unwrap_or(u32::MAX)))
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, per) in [("mb", 1 << 20), ("kb", 1 << 10)] {
            if n >= per && n.is_multiple_of(per) {
                return write!(f, "{}{unit}", n / per);
            }
        }
        write!(f, "{n}b")
    }
}

/// `number` (digits with at most one decimal point) times `per_unit`, rounded down; `None` if
/// it is not such a number or is over `u64::MAX`.
fn scaled(number: &str, per_unit: u64) -> Option<u64> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut value = whole.checked_mul(per_unit)?;
    if !frac.is_empty() {
        let scale = 10u64.pow(frac.len() as u32);
        let frac: u64 = frac.parse().ok()?;
        value = value.checked_add(
            u64::try_from(u128::from(frac) * u128::from(per_unit) / u128::from(scale)).ok()?,
        )?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_tc_writes_them_and_print_back() {
        for (text, bits, shown) in [
            ("1mbit", 1_000_000, "1mbit"),
            ("1.5mbit", 1_500_000, "1500kbit"),
            ("500kbit", 500_000, "500kbit"),
            ("10mbps", 80_000_000, "80mbit"),
            ("8000bit", 8_000, "8kbit"),
            ("100Gbit", 100_000_000_000, "100gbit"),
            ("1000bps", 8_000, "8kbit"),
            (" 2 mbit ", 2_000_000, "2mbit"),
            ("12345bit", 12_345, "12345bit"),
        ] {
            let rate = Rate::parse("fault.rate", text).unwrap();
            assert_eq!(rate.bits_per_sec, bits, "{text}");
            assert_eq!(rate.to_string(), shown, "{text}");
        }
        for text in [
            "", "1", "mbit", "1 mb", "-1mbit", "1e6bit", "1..2mbit", "1mbits", "x",
        ] {
            let e = Rate::parse("fault.rate", text).unwrap_err().to_string();
            assert!(
                e.contains("fault.rate") && e.contains("kbit"),
                "{text}: {e}"
            );
        }
        assert!(Rate::parse("fault.rate", "99999999999999999999gbit").is_err());
    }

    #[test]
    fn sizes_parse_with_binary_units_and_print_back() {
        for (text, bytes, shown) in [
            ("32kb", 32 << 10, "32kb"),
            ("1500", 1500, "1500b"),
            ("1500b", 1500, "1500b"),
            ("64k", 64 << 10, "64kb"),
            ("1mb", 1 << 20, "1mb"),
            ("0", 0, "0b"),
        ] {
            let b = Bytes::parse("fault.burst", text).unwrap();
            assert_eq!(b.0, bytes, "{text}");
            assert_eq!(b.to_string(), shown, "{text}");
        }
        for text in ["", "kb", "1.x", "-5", "5 gb"] {
            let e = Bytes::parse("fault.burst", text).unwrap_err().to_string();
            assert!(
                e.contains("fault.burst") && e.contains("32kb"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn limits_name_the_field_and_the_range() {
        let limit = |rate: u64, burst: u32| BandwidthLimit {
            rate: Rate::from_bps(rate),
            burst: Bytes(burst),
            interface: None,
        };
        assert!(limit(MIN_RATE_BPS, 0).validate().is_ok());
        assert!(limit(MAX_RATE_BPS, MAX_BURST_BYTES).validate().is_ok());
        let e = limit(MIN_RATE_BPS - 1, 0)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fault.rate") && e.contains("7999bit") && e.contains("8kbit to 100gbit"),
            "{e}"
        );
        let e = limit(1_000_000, MAX_BURST_BYTES + 1)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("fault.burst") && e.contains("0b to 16mb"), "{e}");
    }
}
