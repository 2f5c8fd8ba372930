//! `safety_checks.time_window` at fixed instants: the days of the week and the hours are those
//! of the window's own IANA time zone (winter and summer time included, and a day that differs
//! from UTC's), and a window past midnight belongs to the day it starts on.

use chaos_api::config::{ChaosConfig, TimeWindow, Weekday};

/// The window of a config with `lines` under `safety_checks.time_window`.
fn window(lines: &str) -> TimeWindow {
    let text = format!("safety_checks:\n  time_window:\n{lines}");
    match ChaosConfig::from_yaml(&text) {
        Ok(config) => config.safety_checks.time_window.expect("a window"),
        Err(error) => panic!("config must parse: {error}\n{text}"),
    }
}

/// Unix milliseconds of an RFC 3339 instant.
fn at(rfc3339: &str) -> u64 {
    let t: jiff::Timestamp = rfc3339.parse().unwrap();
    u64::try_from(t.as_millisecond()).unwrap()
}

/// Whether the window allows `rfc3339`, and the local time it says it is.
fn allows(w: &TimeWindow, rfc3339: &str) -> (bool, String) {
    w.allows_at(at(rfc3339)).unwrap()
}

#[test]
fn business_hours_are_the_zones_own_in_winter_and_in_summer() {
    let w = window(
        "    time_zone: Europe/Berlin\n    days: [mon, tue, wed, thu, fri]\n    hours: \
         '09:00-17:00'\n",
    );
    // Monday 6 January 2025, CET (UTC+1): 08:30 UTC is 09:30 there, 16:30 UTC is 17:30.
    assert_eq!(
        allows(&w, "2025-01-06T08:30:00Z"),
        (true, "Mon 2025-01-06 09:30 CET".to_owned())
    );
    assert_eq!(
        allows(&w, "2025-01-06T16:30:00Z"),
        (false, "Mon 2025-01-06 17:30 CET".to_owned())
    );
    assert!(!allows(&w, "2025-01-06T07:59:00Z").0, "08:59 local");
    assert!(
        allows(&w, "2025-01-06T08:00:00Z").0,
        "09:00 local: the start is in"
    );
    assert!(
        !allows(&w, "2025-01-06T16:00:00Z").0,
        "17:00 local: the end is out"
    );
    // Monday 7 July 2025, CEST (UTC+2).
    assert_eq!(
        allows(&w, "2025-07-07T07:30:00Z"),
        (true, "Mon 2025-07-07 09:30 CEST".to_owned())
    );
    assert!(!allows(&w, "2025-07-07T15:30:00Z").0, "17:30 local");
}

#[test]
fn days_of_the_week_are_the_zones_own() {
    let w = window(
        "    time_zone: Europe/Berlin\n    days: [mon, tue, wed, thu, fri]\n    hours: \
         '09:00-17:00'\n",
    );
    for (instant, weekday) in [
        ("2025-01-07T10:00:00Z", "Tue"),
        ("2025-01-08T10:00:00Z", "Wed"),
        ("2025-01-09T10:00:00Z", "Thu"),
        ("2025-01-10T10:00:00Z", "Fri"),
    ] {
        let (inside, local) = allows(&w, instant);
        assert!(inside && local.starts_with(weekday), "{instant}: {local}");
    }
    for (instant, weekday) in [
        ("2025-01-11T10:00:00Z", "Sat"),
        ("2025-01-12T10:00:00Z", "Sun"),
    ] {
        let (inside, local) = allows(&w, instant);
        assert!(!inside && local.starts_with(weekday), "{instant}: {local}");
    }
    // Sunday 23:30 UTC is already Monday 00:30 in Berlin: a Monday-only window allows it.
    let monday_night =
        window("    time_zone: Europe/Berlin\n    days: [mon]\n    hours: '00:00-01:00'\n");
    assert_eq!(
        allows(&monday_night, "2025-01-12T23:30:00Z"),
        (true, "Mon 2025-01-13 00:30 CET".to_owned())
    );
    assert!(
        !allows(&monday_night, "2025-01-13T23:30:00Z").0,
        "Tuesday 00:30"
    );
    // Without days: every day.
    let every_day = window("    time_zone: UTC\n    hours: '09:00-17:00'\n");
    assert_eq!(every_day.days, Weekday::ALL);
    assert!(allows(&every_day, "2025-01-12T10:00:00Z").0, "a Sunday");
}

#[test]
fn a_window_past_midnight_belongs_to_the_day_it_starts_on() {
    // Friday nights only, in New York (EST, UTC-5, in January).
    let w = window("    time_zone: America/New_York\n    days: [fri]\n    hours: '22:00-06:00'\n");
    for (instant, inside, local) in [
        ("2025-01-11T02:59:00Z", false, "Fri 2025-01-10 21:59 EST"),
        ("2025-01-11T03:00:00Z", true, "Fri 2025-01-10 22:00 EST"),
        ("2025-01-11T04:00:00Z", true, "Fri 2025-01-10 23:00 EST"),
        // Past midnight: Saturday morning, still Friday's window.
        ("2025-01-11T08:00:00Z", true, "Sat 2025-01-11 03:00 EST"),
        ("2025-01-11T10:59:00Z", true, "Sat 2025-01-11 05:59 EST"),
        ("2025-01-11T11:00:00Z", false, "Sat 2025-01-11 06:00 EST"),
        // Saturday night is Saturday's window, and Friday morning Thursday's: not allowed.
        ("2025-01-12T04:00:00Z", false, "Sat 2025-01-11 23:00 EST"),
        ("2025-01-10T08:00:00Z", false, "Fri 2025-01-10 03:00 EST"),
    ] {
        assert_eq!(allows(&w, instant), (inside, local.to_owned()), "{instant}");
    }
    // The same as pure local times, across the week's end: Sunday's night ends on Monday.
    let sunday = window("    time_zone: UTC\n    days: [sun]\n    hours: '22:00-06:00'\n");
    assert!(sunday.allows(Weekday::Sun, 22 * 60));
    assert!(sunday.allows(Weekday::Mon, 5 * 60 + 59));
    assert!(!sunday.allows(Weekday::Mon, 6 * 60));
    assert!(!sunday.allows(Weekday::Sun, 5 * 60), "Saturday's night");
}

#[test]
fn a_window_is_checked_naming_the_key() {
    for (lines, path) in [
        (
            "    time_zone: Mars/Olympus_Mons\n",
            "safety_checks.time_window.time_zone",
        ),
        (
            "    time_zone: UTC\n    days: []\n",
            "safety_checks.time_window.days",
        ),
    ] {
        let text = format!("safety_checks:\n  time_window:\n{lines}");
        let error = ChaosConfig::from_yaml(&text).unwrap_err();
        assert_eq!(error.path(), Some(path), "{error}");
    }
    let text = "safety_checks:\n  time_window:\n    time_zone: UTC\n    hours: '09:00-09:00'\n";
    let error = ChaosConfig::from_yaml(text).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected HH:MM-HH:MM with different ends"),
        "{error}"
    );
}
