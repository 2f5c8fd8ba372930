//! `chaos-daemon`: the node daemon's command line.
//!
//! * `chaos-daemon serve` is the node daemon: the `chaos.v1.ChaosDaemon` gRPC service on a Unix
//!   socket (mode 0600), experiments recorded in SQLite under the state directory.
//! * `chaos-daemon inject` runs one fault in the foreground: it arms it, prints live counters,
//!   and stops it at its deadline, on Ctrl-C or SIGTERM.
//! * `chaos-daemon attached CGROUP` lists what the kernel has attached to a cgroup.
//!
//! If the process is killed, the kernel drops its programs with its file descriptors.

mod serve;

use std::{
    io::Write as _,
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chaos_daemon::{
    ebpf::{Hook, sys::attached_programs},
    engine::{Engine, EngineError},
    fault::{
        Direction, EgressDrop, Fault, FaultSpec, NetFilter,
        filter::{Protocol, parse_cidr, parse_ports},
        parse_calls,
    },
    target::{Resolver, Target, cgroup2_mount},
};
use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Inject one fault in the foreground until its duration ends, Ctrl-C or SIGTERM.
    Inject(Box<InjectArgs>),
    /// List the BPF programs attached to a cgroup at every hook chaos-ebpf uses (from the
    /// kernel, not from our bookkeeping). Exits 1 when any is attached.
    Attached {
        /// The cgroup directory.
        cgroup: PathBuf,
    },
}

#[derive(Args)]
struct InjectArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The fault to inject.
    #[arg(long, value_enum)]
    fault: FaultKind,
    /// Probability that a matching packet or call is faulted, 0 to 1.
    #[arg(long)]
    probability: f64,
    /// How long to inject (e.g. 300ms, 30s, 5m); the kernel enforces it.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Inject at most this many faults in total.
    #[arg(long)]
    max_faults: Option<u64>,
    /// packet-loss: which packets of the target to drop.
    #[arg(long, value_enum, default_value = "both")]
    direction: DirectionArg,
    /// packet-loss: egress drops are silent (sender sees success) or visible (EPERM).
    #[arg(long, value_enum, default_value = "silent")]
    egress_drop: EgressDropArg,
    /// socket-error: the errno to return, by name or number.
    #[arg(long, default_value = "ECONNREFUSED")]
    errno: String,
    /// socket-error: which calls fail (connect, sendmsg, bind, socket), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "connect")]
    calls: Vec<String>,
    /// Only this L4 protocol: tcp, udp, icmp or any.
    #[arg(long, default_value = "any")]
    protocol: String,
    /// Only this remote port or range (80, 8000-8100).
    #[arg(long)]
    ports: Option<String>,
    /// Only these remote networks (repeat or comma-separate).
    #[arg(long = "cidr", value_delimiter = ',')]
    cidrs: Option<Vec<String>>,
    /// How often to print counters, in milliseconds (0 = only at the end).
    #[arg(long, default_value_t = 1000)]
    report_interval_ms: u64,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct TargetArgs {
    /// A cgroup v2 directory (absolute, or relative to the cgroup2 mount).
    #[arg(long)]
    cgroup: Option<PathBuf>,
    /// The cgroup of this process.
    #[arg(long)]
    pid: Option<u32>,
    /// A container's cgroup, by ID (full or a unique prefix of 12+ characters).
    #[arg(long)]
    container: Option<String>,
    /// A pod's cgroup, by pod UID.
    #[arg(long)]
    pod_uid: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FaultKind {
    PacketLoss,
    SocketError,
}

#[derive(Clone, Copy, ValueEnum)]
enum DirectionArg {
    Ingress,
    Egress,
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
enum EgressDropArg {
    Silent,
    Visible,
}

/// Exit codes: 0 ok, 1 failure, 2 invalid spec (usage), 3 refused target.
const EXIT_FAILURE: u8 = 1;
const EXIT_INVALID: u8 = 2;
const EXIT_REFUSED: u8 = 3;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Inject(args) => inject(*args),
        Command::Attached { cgroup } => attached(&cgroup),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos-daemon: error: {e:#}");
            let code = match e.downcast_ref::<EngineError>() {
                Some(EngineError::Spec(_)) => EXIT_INVALID,
                Some(EngineError::Target(_)) => EXIT_REFUSED,
                _ => EXIT_FAILURE,
            };
            ExitCode::from(code)
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
    println!("{total} programs attached to {}", cgroup.display());
    if total > 0 {
        anyhow::bail!("{total} programs are attached to {}", cgroup.display());
    }
    Ok(())
}

fn spec_from(args: &InjectArgs) -> Result<FaultSpec, EngineError> {
    let t = &args.target;
    let target = match (&t.cgroup, t.pid, &t.container, &t.pod_uid) {
        (Some(c), ..) => Target::CgroupPath(c.clone()),
        (_, Some(p), ..) => Target::Pid(p),
        (_, _, Some(c), _) => Target::ContainerId(c.clone()),
        (.., Some(u)) => Target::PodUid(u.clone()),
        _ => unreachable!("clap requires one target"),
    };
    let fault = match args.fault {
        FaultKind::PacketLoss => Fault::PacketLoss {
            direction: match args.direction {
                DirectionArg::Ingress => Direction::Ingress,
                DirectionArg::Egress => Direction::Egress,
                DirectionArg::Both => Direction::Both,
            },
            egress_drop: match args.egress_drop {
                EgressDropArg::Silent => EgressDrop::Silent,
                EgressDropArg::Visible => EgressDrop::Visible,
            },
        },
        FaultKind::SocketError => Fault::SocketError {
            errno: args.errno.parse()?,
            calls: parse_calls(&args.calls)?,
        },
    };
    let filter = NetFilter {
        protocol: args.protocol.parse::<Protocol>()?,
        ports: args.ports.as_deref().map(parse_ports).transpose()?,
        cidrs: args
            .cidrs
            .as_ref()
            .map(|c| {
                c.iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| parse_cidr(s))
                    .collect()
            })
            .transpose()?,
    };
    Ok(FaultSpec {
        target,
        fault,
        probability: args.probability,
        duration: args.duration,
        max_faults: args.max_faults,
        filter,
    })
}

fn inject(args: InjectArgs) -> anyhow::Result<()> {
    let spec = spec_from(&args)?;
    let resolver =
        Resolver::new(cgroup2_mount().map_err(EngineError::from)?).map_err(EngineError::from)?;
    let mut engine = Engine::new(resolver).context("loading the kernel programs")?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let handle = engine.start(&spec)?;
    println!(
        "armed fault {} ({}) slot {} on {} (cgroup id {}) for {}",
        handle.id,
        spec.fault.kind(),
        handle.slot.map_or("-".into(), |s| s.to_string()),
        handle.target.path.display(),
        handle.target.id,
        humantime::format_duration(spec.duration)
    );
    std::io::stdout().flush()?;
    let started = Instant::now();
    let interval = Duration::from_millis(args.report_interval_ms);
    let mut next_report = started + interval;
    while !STOP.load(Ordering::SeqCst) && started.elapsed() < spec.duration {
        std::thread::sleep(Duration::from_millis(5));
        for (id, e) in engine.poll() {
            eprintln!("fault {id}: {e}");
        }
        if args.report_interval_ms > 0 && Instant::now() >= next_report {
            let c = engine.counters(handle.id)?;
            println!(
                "t={:.1}s seen={} matched={} injected={} capped={}",
                started.elapsed().as_secs_f64(),
                c.seen,
                c.matched,
                c.injected,
                c.capped
            );
            next_report += interval;
        }
    }
    let c = engine.stop(handle.id)?;
    println!(
        "stopped fault {} after {:.2}s: seen={} matched={} injected={} capped={}",
        handle.id,
        started.elapsed().as_secs_f64(),
        c.seen,
        c.matched,
        c.injected,
        c.capped
    );
    Ok(())
}
