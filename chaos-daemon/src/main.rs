//! `chaos-daemon`: the node daemon's command line.
//!
//! * `chaos-daemon serve` is the node daemon: the `chaos.v1.ChaosDaemon` gRPC service on a Unix
//!   socket (mode 0600), experiments recorded in SQLite under the state directory.
//! * `chaos-daemon attached CGROUP` lists what the kernel has attached to a cgroup, and our tc
//!   programs on the devices of the calling process's network namespace.
//!
//! Experiments run only through the daemon's lifecycle (its latch, budget, audit log and
//! records): use `chaos-ctl` against `serve`. If the process is killed, the kernel drops its
//! programs with its file descriptors.

mod serve;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use chaos_daemon::ebpf::{Hook, sys::attached_programs};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "chaos-ebpf node daemon: in-kernel fault injection into cgroups"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node daemon (gRPC on a Unix socket) until SIGTERM or Ctrl-C.
    Serve(Box<serve::ServeArgs>),
    /// List the BPF programs attached to a cgroup at every hook chaos-ebpf uses (from the
    /// kernel, not from our bookkeeping). Exits 1 when any is attached.
    Attached {
        /// The cgroup directory.
        cgroup: PathBuf,
    },
}

/// The log filter without `RUST_LOG`: warnings, and the kernel programs' rare events (a fault
/// cap reached, a kernel deadline passed; see `ebpf::log`), which are one line per arm at most.
const DEFAULT_LOG: &str = "warn,chaos_kernel=info";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Attached { cgroup } => attached(&cgroup),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos-daemon: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn attached(cgroup: &std::path::Path) -> anyhow::Result<()> {
    let dir =
        std::fs::File::open(cgroup).with_context(|| format!("opening {}", cgroup.display()))?;
    let mut total = 0;
    for hook in Hook::ALL {
        let ids = attached_programs(&dir, hook.attach_type())
            .with_context(|| format!("querying {hook:?} on {}", cgroup.display()))?;
        total += ids.len();
        println!("{:<12} {ids:?}", format!("{hook:?}"));
    }
    // The tc faults sit on the devices, not on the cgroup: ours on this namespace's devices
    // (tcx, Linux 6.6+).
    let ours = |name: &str| {
        chaos_daemon::ebpf::tc::TcProgram::ALL
            .iter()
            .any(|p| name.starts_with(p.name(0).trim_end_matches('0')))
    };
    for dev in std::fs::read_dir("/sys/class/net")?.flatten() {
        let dev = dev.file_name().to_string_lossy().into_owned();
        let Ok((_, programs)) = aya::programs::SchedClassifier::query_tcx(
            dev.as_str(),
            aya::programs::TcAttachType::Egress,
        ) else {
            continue;
        };
        let names: Vec<String> = programs
            .iter()
            .filter_map(|p| p.name_as_str().map(String::from))
            .filter(|n| ours(n))
            .collect();
        if !names.is_empty() {
            println!("{:<12} {names:?}", format!("tc egress {dev}"));
            total += names.len();
        }
    }
    println!(
        "{total} programs attached to {} or to this network namespace's devices",
        cgroup.display()
    );
    if total > 0 {
        anyhow::bail!("{total} programs are attached to {}", cgroup.display());
    }
    Ok(())
}
