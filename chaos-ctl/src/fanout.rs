//! One command sent to many daemons at once: those listed in `--daemons FILE`, or the daemon
//! pods of the DaemonSet in Kubernetes mode ([`crate::kubernetes::fan_out`]). Each answer is printed
//! in list order (`== DAEMON` blocks, or one JSON array), with one exit code for all: the most
//! severe failure's, after every answer was shown.

use std::path::Path;

use chaos_ctl::client::TlsFiles;

use crate::commands::{self, Action};
use crate::exit::{self, UsageError};

/// Some daemons of a fan-out did not answer ok (each answer was printed already).
#[derive(Debug)]
pub struct FanOutFailed {
    pub failed: usize,
    pub total: usize,
    /// The exit code of the most severe answer.
    pub code: u8,
}

impl std::fmt::Display for FanOutFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} daemons did not answer ok",
            self.failed, self.total
        )
    }
}

impl std::error::Error for FanOutFailed {}

/// A daemon of a fan-out.
pub struct Endpoint {
    /// How the answers name it (the address, or the node and the daemon pod).
    pub label: String,
    /// Its address (`https://IP:PORT`, ...).
    pub addr: String,
    /// The name its certificate is checked against instead of the address's host.
    pub server_name: Option<String>,
}

/// Runs `action` on every daemon in `file` at once and prints each one's answer in file order
/// (see [`run_on`]).
pub async fn run(file: &Path, tls: &TlsFiles, action: &Action, json: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| UsageError(format!("--daemons {}: {e}", file.display())))?;
    let endpoints: Vec<Endpoint> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .map(|addr| Endpoint {
            label: addr.clone(),
            addr,
            server_name: None,
        })
        .collect();
    if endpoints.is_empty() {
        return Err(
            UsageError(format!("--daemons {}: no daemon addresses", file.display())).into(),
        );
    }
    run_on(&endpoints, tls, action, json).await
}

/// `action`'s answer from every daemon of `endpoints`, asked at once, in their order.
async fn ask_all(
    endpoints: &[Endpoint],
    tls: &TlsFiles,
    action: &Action,
    json: bool,
) -> Vec<anyhow::Result<String>> {
    futures_util::future::join_all(
        endpoints
            .iter()
            .map(|d| commands::answer(&d.addr, d.server_name.as_deref(), tls, action, json)),
    )
    .await
}

/// `report ID`: the experiment lives on one node; asks every daemon and prints the answer of
/// the one that has it as `--daemon` would (an HTML page stays one page). Nobody has it: the
/// NotFound (exit 3); another failure is reported when nobody had it.
async fn only_one(
    endpoints: &[Endpoint],
    tls: &TlsFiles,
    action: &Action,
    json: bool,
) -> anyhow::Result<()> {
    let results = ask_all(endpoints, tls, action, json).await;
    let mut worst: Option<anyhow::Error> = None;
    for (d, r) in endpoints.iter().zip(results) {
        match r {
            Ok(out) => {
                print!("{out}");
                return Ok(());
            }
            Err(e) if exit::is_not_found(&e) => {
                worst.get_or_insert(e);
            }
            Err(e) => {
                eprintln!("chaos-ctl: {}: {}", d.label, exit::text(&e));
                if worst.as_ref().is_none_or(exit::is_not_found) {
                    worst = Some(e);
                }
            }
        }
    }
    Err(worst.unwrap_or_else(|| UsageError("no daemon to ask".into()).into()))
}

/// Runs `action` on every daemon of `endpoints` at once and prints each one's answer in order.
/// Fails (with the most severe exit code) when any daemon failed, after reporting all. An
/// experiment or an id lives on one node: there, a NotFound answer is reported but does not
/// fail the command as long as some daemon answered ok.
pub async fn run_on(
    endpoints: &[Endpoint],
    tls: &TlsFiles,
    action: &Action,
    json: bool,
) -> anyhow::Result<()> {
    let elsewhere_ok = match action {
        Action::Status { watch: false }
        | Action::EmergencyStop { .. }
        | Action::ClearEmergencyStop
        | Action::Capabilities
        | Action::Report { id: None, .. } => false,
        Action::Start { wait: false, .. } | Action::Stop { .. } | Action::Renew { .. } => true,
        Action::Report { id: Some(_), .. } => return only_one(endpoints, tls, action, json).await,
        Action::Start { wait: true, .. } | Action::Status { watch: true } => {
            return Err(UsageError(
                "--daemons and Kubernetes mode do not work with --wait or status --watch; use \
                 --daemon for those"
                    .into(),
            )
            .into());
        }
    };
    let results = ask_all(endpoints, tls, action, json).await;
    let mut worst: Option<anyhow::Error> = None;
    let (mut failed, mut not_here, mut ok) = (0, 0, 0);
    let mut entries = Vec::new();
    for (addr, r) in endpoints.iter().map(|d| &d.label).zip(results) {
        match r {
            Ok(out) => {
                ok += 1;
                if json {
                    let answer = serde_json::from_str::<serde_json::Value>(out.trim())
                        .unwrap_or(serde_json::Value::String(out));
                    entries.push(serde_json::json!({"daemon": addr, "ok": true, "answer": answer}));
                } else {
                    print!("== {addr}\n{out}");
                }
            }
            Err(e) => {
                let elsewhere = elsewhere_ok && exit::is_not_found(&e);
                let msg = if elsewhere {
                    format!("not on this node: {}", exit::text(&e))
                } else {
                    exit::text(&e)
                };
                if json {
                    entries.push(serde_json::json!({"daemon": addr, "ok": false, "error": msg}));
                } else {
                    println!(
                        "== {addr}\n{}: {msg}",
                        if elsewhere { "skipped" } else { "error" }
                    );
                }
                if elsewhere {
                    not_here += 1;
                    continue;
                }
                failed += 1;
                // The most severe answer: failure (1) before usage (2) before refusal (3).
                if worst
                    .as_ref()
                    .is_none_or(|w| exit::code(&e) < exit::code(w))
                {
                    worst = Some(e);
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(entries));
    }
    if ok == 0 && not_here > 0 && worst.is_none() {
        // Nobody had it: that is a refusal, like a single daemon's NotFound.
        return Err(FanOutFailed {
            failed: not_here,
            total: endpoints.len(),
            code: exit::REFUSED,
        }
        .into());
    }
    match worst {
        None => Ok(()),
        Some(e) => Err(FanOutFailed {
            failed,
            total: endpoints.len(),
            code: exit::code(&e),
        }
        .into()),
    }
}
