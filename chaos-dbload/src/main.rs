//! The `chaos-dbload` command: `check`, `run` and `cleanup`, each with `--spec FILE` (see the
//! library documentation). Exit 0 on success, 1 with the reason on stderr.

use std::path::PathBuf;

use anyhow::Context as _;
use chaos_dbload::{control, runner, spec::Spec};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chaos-dbload",
    about = "Controlled query load against PostgreSQL, MySQL/MariaDB and Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect, authenticate and prepare every statement; no load.
    Check {
        #[arg(long)]
        spec: PathBuf,
    },
    /// Check, set up the scratch data, send the load, clean up.
    Run {
        #[arg(long)]
        spec: PathBuf,
    },
    /// Drop the scratch table/keys of the spec.
    Cleanup {
        #[arg(long)]
        spec: PathBuf,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = execute(cli.command).await {
        eprintln!("chaos-dbload: {e:#}");
        std::process::exit(1);
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { spec } => {
            let spec = Spec::load(&spec)?;
            let (target, conn) = runner::check(&spec, None).await?;
            conn.close().await;
            eprintln!("chaos-dbload: check passed: {}", target.address());
        }
        Command::Run { spec } => {
            let spec = Spec::load(&spec)?;
            let control = control::listen().context("listening for signals")?;
            runner::run(&spec, control).await?;
        }
        Command::Cleanup { spec } => {
            let spec = Spec::load(&spec)?;
            runner::cleanup(&spec).await?;
            eprintln!("chaos-dbload: scratch data of {:?} dropped", spec.scratch);
        }
    }
    Ok(())
}
