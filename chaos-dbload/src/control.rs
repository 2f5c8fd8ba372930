//! Commands from outside while the load runs: JSON lines on stdin (`{"rate": 500}`,
//! `{"stop": true}`) and SIGTERM/SIGINT. The end of stdin changes nothing (the daemon may close
//! it); only a stop line or a signal stops the run gracefully.

use serde::Deserialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::schedule::Control;
use crate::spec::MAX_RATE;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    rate: Option<f64>,
    stop: Option<bool>,
}

/// Parses one stdin line into a command (`None` for a blank line).
pub fn parse_line(line: &str) -> Result<Option<Control>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let parsed: Line = serde_json::from_str(line).map_err(|e| {
        format!("stdin line {line:?} is not {{\"rate\": N}} or {{\"stop\": true}}: {e}")
    })?;
    match parsed {
        Line {
            stop: Some(true), ..
        } => Ok(Some(Control::Stop("stop".into()))),
        Line {
            rate: Some(rate),
            stop: None | Some(false),
        } => {
            if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE {
                Ok(Some(Control::SetRate(rate)))
            } else {
                Err(format!(
                    "stdin rate {rate} is not allowed: > 0 and <= {MAX_RATE}"
                ))
            }
        }
        _ => Err(format!(
            "stdin line {line:?} has neither a rate nor \"stop\": true"
        )),
    }
}

/// Starts listening on stdin and for SIGTERM/SIGINT; the commands arrive on the receiver.
pub fn listen() -> std::io::Result<mpsc::Receiver<Control>> {
    let (tx, rx) = mpsc::channel(64);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let signals = tx.clone();
    tokio::spawn(async move {
        // Every signal is a stop: the first ends the load, a second one also stops waiting for
        // the queries under way.
        loop {
            let cause = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            eprintln!("chaos-dbload: {cause}: stopping");
            if signals.send(Control::Stop(cause.into())).await.is_err() {
                return;
            }
        }
    });
    // A plain thread: a blocked read of stdin must not hold up the end of the process.
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            match parse_line(&line) {
                Ok(Some(command)) => {
                    if tx.blocking_send(command).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(message) => eprintln!("chaos-dbload: ignored: {message}"),
            }
        }
        eprintln!("chaos-dbload: stdin closed; the run goes on (stop it with SIGTERM)");
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_commands() {
        assert_eq!(
            parse_line(r#"{"rate": 500}"#),
            Ok(Some(Control::SetRate(500.0)))
        );
        assert_eq!(
            parse_line(r#"{"stop": true}"#),
            Ok(Some(Control::Stop("stop".into())))
        );
        assert_eq!(parse_line("  "), Ok(None));
        assert!(parse_line(r#"{"rate": 0}"#).unwrap_err().contains("rate 0"));
        assert!(
            parse_line(r#"{"rat": 5}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(
            parse_line(r#"{"stop": false}"#)
                .unwrap_err()
                .contains("neither")
        );
    }
}
