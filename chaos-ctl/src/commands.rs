//! Running a command against one daemon: what each [`Action`] asks, and how its answer is
//! printed. [`answer`] is one request and its rendered answer (what the fan-out collects);
//! [`run`] adds the commands that follow a daemon over time (`--wait`, `status --watch`).

use std::{io::IsTerminal as _, io::Write as _, time::Duration};

use chaos_api::experiment::Experiment;
use chaos_api::proto;
use chaos_ctl::client::{self, Client, TlsFiles};
use chaos_ctl::render;

/// What to ask a daemon, built (and validated) from the command line before connecting.
pub enum Action {
    /// Start an experiment (a dry run when `experiment.dry_run`); with `wait`, follow it.
    Start {
        experiment: Box<Experiment>,
        wait: bool,
    },
    /// The daemon's experiments; with `watch`, redrawn every second.
    Status {
        watch: bool,
    },
    Stop {
        id: String,
    },
    Renew {
        id: String,
    },
    EmergencyStop {
        reason: String,
    },
    ClearEmergencyStop,
    /// One experiment's post-mortem, or the list of the experiments of the last period.
    Report {
        id: Option<String>,
        last: Option<Duration>,
        json: bool,
        /// The HTML page (one experiment).
        html: bool,
    },
    Capabilities,
}

/// Runs `action` against the daemon at `addr` and prints the answer.
pub async fn run(addr: &str, tls: &TlsFiles, action: &Action, json: bool) -> anyhow::Result<()> {
    match action {
        Action::Start {
            experiment,
            wait: true,
        } if !experiment.dry_run => follow(addr, tls, experiment, json).await,
        Action::Status { watch: true } => watch_status(addr, tls, json).await,
        _ => match answer(addr, None, tls, action, json).await {
            Ok(text) => {
                print!("{text}");
                Ok(())
            }
            Err(e) => {
                // A refused dry run still shows every pre-flight check, then the refusal.
                if let Action::Start { experiment, .. } = action
                    && experiment.dry_run
                    && let Some(r) = e
                        .downcast_ref::<tonic::Status>()
                        .and_then(proto::refused_dry_run)
                {
                    print!("{}", render::started(&r, true, json));
                }
                Err(e)
            }
        },
    }
}

/// Sends `action` once to the daemon at `addr` (its certificate checked against `server_name`
/// when given, see [`client::connect_as`]); returns the rendered answer.
pub async fn answer(
    addr: &str,
    server_name: Option<&str>,
    tls: &TlsFiles,
    action: &Action,
    json: bool,
) -> anyhow::Result<String> {
    let mut c = client::connect_as(addr, tls, server_name).await?;
    Ok(match action {
        Action::Start { experiment, .. } => {
            let r = start(&mut c, experiment).await?;
            render::started(&r, experiment.dry_run, json)
        }
        Action::Status { .. } => {
            let r = c.get_status(proto::GetStatusRequest {}).await?;
            render::status(&r.into_inner(), json)
        }
        Action::Renew { id } => {
            let r = c
                .renew_lease(proto::RenewLeaseRequest { id: id.clone() })
                .await?
                .into_inner();
            render::renewed(id, r.lease_ms, json)
        }
        Action::Stop { id } => {
            let r = c
                .stop_experiment(proto::StopExperimentRequest { id: id.clone() })
                .await?;
            render::stopped(&r.into_inner(), json)
        }
        Action::EmergencyStop { reason } => {
            let r = c
                .emergency_stop(proto::EmergencyStopRequest {
                    reason: reason.clone(),
                })
                .await?;
            render::emergency_stopped(&r.into_inner(), json)
        }
        Action::ClearEmergencyStop => {
            c.clear_emergency_stop(proto::ClearEmergencyStopRequest {})
                .await?;
            render::cleared(json)
        }
        Action::Report {
            id: Some(id),
            json: as_json,
            html,
            ..
        } => {
            let r = c
                .get_report(proto::GetReportRequest { id: id.clone() })
                .await?
                .into_inner();
            if *html {
                render::report_html(&r)
            } else {
                render::report(&r, *as_json)
            }
        }
        Action::Report {
            id: None,
            last,
            json: as_json,
            ..
        } => {
            let since_s = last.map_or(0, |d| d.as_secs().max(1));
            render::experiment_list(&list_experiments(&mut c, since_s).await?, *as_json)
        }
        Action::Capabilities => {
            let r = c.capabilities(proto::CapabilitiesRequest {}).await?;
            render::capabilities(&r.into_inner(), json)
        }
    })
}

/// Every experiment started in the last `since_s` seconds (0: all), newest first, page after
/// page: a page is bounded, so a long history never exceeds a message's size limit.
async fn list_experiments(
    c: &mut Client,
    since_s: u64,
) -> anyhow::Result<Vec<proto::ExperimentStatus>> {
    let mut experiments = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_experiments(proto::ListExperimentsRequest {
                since_s,
                page_size: 0,
                page_token: page_token.clone(),
            })
            .await?
            .into_inner();
        experiments.extend(page.experiments);
        if page.next_page_token.is_empty() {
            return Ok(experiments);
        }
        if page.next_page_token == page_token {
            anyhow::bail!("the daemon answered the same page twice (page token {page_token:?})");
        }
        page_token = page.next_page_token;
    }
}

/// Sends the experiment (validated by the model) as the model's message.
async fn start(
    c: &mut Client,
    experiment: &Experiment,
) -> anyhow::Result<proto::StartExperimentResponse> {
    start_spec(c, experiment.to_proto(), experiment.dry_run).await
}

/// Sends an experiment message (the model's, or one node's share of it in Kubernetes mode).
pub async fn start_spec(
    c: &mut Client,
    spec: proto::ExperimentSpec,
    dry_run: bool,
) -> anyhow::Result<proto::StartExperimentResponse> {
    let r = c
        .start_experiment(proto::StartExperimentRequest {
            spec: Some(spec),
            dry_run,
        })
        .await?;
    Ok(r.into_inner())
}

/// Starts the experiment and follows it with a progress line until it ends.
async fn follow(
    addr: &str,
    tls: &TlsFiles,
    experiment: &Experiment,
    json: bool,
) -> anyhow::Result<()> {
    let mut c = client::connect(addr, tls).await?;
    let r = start(&mut c, experiment).await?;
    if !json {
        print!("{}", render::started(&r, false, false));
    }
    let total_ms = u64::try_from(experiment.duration.as_millis()).unwrap_or(u64::MAX);
    let mut stream = c
        .watch_experiment(proto::WatchExperimentRequest {
            id: r.id.clone(),
            interval_ms: 500,
        })
        .await?
        .into_inner();
    // The lease is renewed at a third of its length for as long as this follows it: if this
    // process dies or loses the daemon, the daemon disarms the experiment.
    let renewer = experiment.lease.map(|lease| {
        let (mut c, id) = (c.clone(), r.id.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if c.renew_lease(proto::RenewLeaseRequest { id: id.clone() })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    });
    let tty = std::io::stdout().is_terminal();
    let mut last = None;
    while let Some(update) = stream.message().await? {
        let s = update.status.unwrap_or_default();
        if !json {
            let line = render::progress(update.elapsed_ms, total_ms, &s);
            if tty {
                print!("\r{line}");
            } else {
                println!("{line}");
            }
            std::io::stdout().flush()?;
        }
        last = Some(s);
    }
    if let Some(renewer) = renewer {
        renewer.abort();
    }
    if tty && !json {
        println!();
    }
    if let Some(s) = last {
        print!("{}", render::one_status(&s, json));
    }
    Ok(())
}

/// Redraws the status every second until interrupted.
async fn watch_status(addr: &str, tls: &TlsFiles, json: bool) -> anyhow::Result<()> {
    let mut c = client::connect(addr, tls).await?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let r = c.get_status(proto::GetStatusRequest {}).await?;
        if tty && !json {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", render::status(&r.into_inner(), json));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
