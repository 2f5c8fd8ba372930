//! Terminal escapes in a caller's text: an emergency-stop reason carrying "clear the screen",
//! "set the window title" and a bell is kept by the daemon with its control characters escaped,
//! so `chaos-ctl status` and `report` show it as text and never send the escapes to the
//! terminal; a reason past its cap is refused, naming the field, and stops nothing.

mod support;

use std::time::Duration;

use chaos_api::error::MAX_REASON_BYTES;
use support::*;

/// ESC [2J (clear the screen), ESC ]0;owned BEL (set the window title), as an observer types it.
const EVIL: &str = "drill \u{1b}[2J\u{1b}]0;owned\u{7} done";
/// [`EVIL`] as the daemon keeps it and chaos-ctl shows it.
const SHOWN: &str = "drill \\u{1b}[2J\\u{1b}]0;owned\\u{7} done";

/// Asserts that chaos-ctl's `out` holds no control character but line breaks.
fn obeys_nothing(what: &str, out: &str) {
    assert!(
        !out.contains(|c: char| c.is_control() && c != '\n'),
        "{what} sends control characters to the terminal: {out:?}"
    );
}

#[test]
fn an_emergency_stop_reason_is_shown_never_obeyed() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "escapes");
    let dir = TempDir::new("escapes");
    let daemon = Daemon::permissive(&dir.0, None);
    let id = daemon.started(
        "packet_loss",
        &cg.path,
        &["--intensity", "0", "--duration", "60s"],
    );

    // A reason with escapes: it stops the experiment.
    daemon.ctl_ok(&["emergency-stop", "--reason", EVIL]);
    cg.released();
    let ended = daemon.ended(&id, Duration::from_secs(30));
    // The daemon kept the text with its control characters escaped (JSON shows what it sent).
    assert_eq!(ended["state"], "emergency_stopped", "{ended}");
    assert_eq!(
        ended["reason"],
        format!("emergency stop by uid 0: {SHOWN}"),
        "{ended}"
    );

    // Every text answer shows the reason as text.
    let report = daemon.ctl_ok(&["report", &id]);
    obeys_nothing("report", &report);
    assert!(
        report.contains(&format!("| reason | emergency stop by uid 0: {SHOWN} |")),
        "{report}"
    );
    let html = daemon.ctl_ok(&["report", &id, "--format", "html"]);
    obeys_nothing("report --format html", &html);
    let list = daemon.ctl_ok(&["report", "--last", "1h"]);
    obeys_nothing("report --last", &list);
    assert!(list.contains(&id), "{list}");
    let status = daemon.ctl_ok(&["status"]);
    obeys_nothing("status", &status);
    let latch = status.lines().next().unwrap();
    assert!(
        latch.starts_with("node test-node  emergency stop: LATCHED since ")
            && latch.ends_with(&format!(" (emergency stop by uid 0: {SHOWN})")),
        "{status}"
    );
    let json = daemon.ctl_ok(&["--output", "json", "report", &id]);
    obeys_nothing("report --output json", &json);

    // Past the cap the reason is cut, never refused: the stop happens.
    daemon.ctl_ok(&["emergency-stop", "--clear"]);
    let second = daemon.started(
        "packet_loss",
        &cg.path,
        &["--intensity", "0", "--duration", "60s"],
    );
    let long = "x".repeat(MAX_REASON_BYTES + 1);
    daemon.ctl_ok(&["emergency-stop", "--reason", &long]);
    let ended = daemon.ended(&second, Duration::from_secs(30));
    assert_eq!(ended["state"], "emergency_stopped", "{ended}");
    let cut = format!(
        "{} (cut from {} bytes)",
        &long[..MAX_REASON_BYTES],
        long.len()
    );
    assert_eq!(
        ended["reason"],
        format!("emergency stop by uid 0: {cut}"),
        "{ended}"
    );

    // The audit log keeps the reasons as the daemon does.
    daemon.terminate();
    let audit = chaos_daemon::store::Store::open(&dir.0.join("state"))
        .unwrap()
        .audit_log()
        .unwrap();
    let stops: Vec<_> = audit
        .iter()
        .filter(|a| a.method == "EmergencyStop")
        .map(|a| (a.detail.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(stops, [(SHOWN, "ok"), (cut.as_str(), "ok")], "{audit:#?}");
}
