//! `chaos-ctl`: runs chaos experiments on a chaos-daemon over gRPC and shows their status and
//! post-mortems.
//!
//! This file turns the command line into an [`Action`] (building and validating an experiment
//! before any connection) and sends it to one daemon or to all of them. The parts: `cli` (the
//! clap types), `spec` (flags and files -> the experiment model, offline validation),
//! `commands` (one daemon), `fanout` (`--daemons FILE`, and the daemon pods in Kubernetes
//! mode), `kubernetes` (Kubernetes mode: pods and daemon pods through the API server, one
//! experiment per node), `exit` (messages and exit codes), `certs` (the TLS material of a
//! deployment), and the library's `client` (connecting) and `render` (output).
//!
//! Exit codes: 0 ok; 1 failure (daemon unreachable, internal error); 2 usage error or invalid
//! experiment; 3 refused (emergency stop latched, protected or missing target, permission,
//! budget, no slot).

mod certs;
mod cli;
mod commands;
mod exit;
mod fanout;
mod kubernetes;
mod spec;

use std::process::ExitCode;

use chaos_ctl::client::{DEFAULT_ADDR, TlsFiles};
use clap::Parser as _;

use crate::cli::{Cli, Command, Output, ReportFormat};
use crate::commands::Action;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos-ctl: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos-ctl: {}", exit::text(&e));
            ExitCode::from(exit::code(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.output == Output::Json;
    let tls = TlsFiles {
        ca: cli.ca,
        cert: cli.cert,
        key: cli.key,
    };
    let action = match cli.command {
        Command::Validate { file, config } => {
            return spec::validate(file.as_deref(), config.as_deref(), json);
        }
        Command::Experiment(args) if args.target.kube() => {
            if cli.daemons.is_some() || cli.daemon != DEFAULT_ADDR {
                return Err(exit::usage(
                    "--pod and --selector find the daemons through Kubernetes; not with --daemon \
                     or --daemons",
                ));
            }
            return kubernetes::experiment(*args, &cli.kube, &tls, json).await;
        }
        Command::Experiment(args) => {
            if let Some(flag) = args.pod_choice.first_given() {
                return Err(exit::usage(format!(
                    "{flag} chooses among the pods of --pod or --selector; give one of them"
                )));
            }
            Action::Start {
                experiment: Box::new(spec::experiment(&args).map_err(exit::usage)?),
                wait: args.wait,
            }
        }
        Command::Apply {
            file,
            dry_run,
            wait,
        } => {
            let mut experiment = spec::read_experiment(&file)?;
            experiment.dry_run |= dry_run;
            Action::Start {
                experiment: Box::new(experiment),
                wait,
            }
        }
        Command::Status { watch } => Action::Status { watch },
        Command::Stop { id } => Action::Stop { id },
        Command::Renew { id } => Action::Renew { id },
        Command::EmergencyStop { clear: true, .. } => Action::ClearEmergencyStop,
        Command::EmergencyStop {
            clear: false,
            reason,
        } => Action::EmergencyStop { reason },
        Command::Report { id, last, format } => {
            if format == ReportFormat::Html && id.is_none() {
                return Err(exit::usage(
                    "--format html: the HTML page is of one experiment; give its ID",
                ));
            }
            Action::Report {
                id,
                last,
                json: json || format == ReportFormat::Json,
                html: format == ReportFormat::Html,
            }
        }
        Command::Capabilities => Action::Capabilities,
        Command::Certs(args) => return certs::write(&args, json),
    };
    match &cli.daemons {
        _ if cli.kube.on() => kubernetes::fan_out(&cli.kube, &tls, &action, json).await,
        None => commands::run(&cli.daemon, &tls, &action, json).await,
        Some(file) => fanout::run(file, &tls, &action, json).await,
    }
}
