//! `chaos-ctl`: runs chaos experiments on a chaos-daemon over gRPC and shows their status and
//! post-mortems.
//!
//! Exit codes: 0 ok; 1 failure (daemon unreachable, internal error); 2 usage error or invalid
//! spec; 3 refused (emergency stop latched, protected or missing target, permission, no slot).

use chaos_ctl::{client, output};

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::bail;
use chaos_api::proto::{self, fault, packet_loss, target};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(version, about = "Run chaos experiments on chaos-ebpf node daemons")]
struct Cli {
    /// The daemon to talk to.
    #[arg(long, global = true, default_value = "unix:///run/chaos/daemon.sock")]
    daemon: String,
    /// Talk to every daemon listed in FILE (one address per line, `#` comments) in parallel:
    /// status, emergency-stop, capabilities and report --last report each daemon's answer.
    #[arg(long, global = true)]
    daemons: Option<PathBuf>,
    /// CA certificate (PEM) that signed the daemons' certificates (https:// daemons).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for https:// daemons; its OU is the role (operator, observer).
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// Client private key (PEM) for https:// daemons.
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start an experiment: chaos-ctl experiment <type> --cgroup PATH --duration 300 ...
    Experiment(Box<ExperimentArgs>),
    /// Start the experiment defined in a YAML file (see chaos/experiments/).
    Apply {
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Show the plan and change nothing (also when the file says `dry_run: true`).
        #[arg(long)]
        dry_run: bool,
        /// Follow the experiment with a progress bar until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// Check an experiment file (-f) or a chaos config (--config) offline; no daemon needed.
    Validate {
        #[arg(short = 'f', long, required_unless_present = "config")]
        file: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Running experiments on the daemon.
    Status {
        /// Redraw every second until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Stop a running experiment.
    Stop { id: String },
    /// Disarm every experiment on the daemon and refuse new ones until --clear.
    EmergencyStop {
        /// Lift the latch instead.
        #[arg(long)]
        clear: bool,
        /// Why (recorded in the audit log and the reports).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Post-mortem of one experiment, or the list of the last period's experiments.
    Report {
        id: Option<String>,
        /// Experiments of the last period, e.g. 24h.
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "id")]
        last: Option<Duration>,
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormat,
    },
    /// What the daemon's kernel can inject.
    Capabilities,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Md,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum ExperimentType {
    PacketLoss,
    DependencyFailure,
    ApiErrorInjection,
    NetworkLatency,
    PodDeletion,
    ResourceExhaustion,
    /// File and process syscall errors (BPF LSM): --errno, --calls, --path-prefix.
    SyscallError,
}

#[derive(Args)]
struct ExperimentArgs {
    #[arg(value_enum)]
    kind: ExperimentType,
    #[command(flatten)]
    target: TargetArgs,
    /// How long: seconds (300) or a duration (5m).
    #[arg(long, default_value = "60", value_parser = parse_duration)]
    duration: Duration,
    /// Probability that a matching packet or call is faulted, 0 to 1 (default 0.1; 1 for
    /// network_latency, pod_deletion and resource_exhaustion).
    #[arg(long)]
    intensity: Option<f64>,
    /// Money budget for this experiment.
    #[arg(long)]
    budget: Option<f64>,
    /// At most this many faults.
    #[arg(long)]
    max_faults: Option<u64>,
    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Follow the experiment with a progress bar until it ends.
    #[arg(long)]
    wait: bool,
    /// A name for reports (default: the type).
    #[arg(long, default_value = "")]
    name: String,
    /// packet_loss: ingress, egress or both.
    #[arg(long, default_value = "both")]
    direction: String,
    /// packet_loss: egress drops visible to the sender (EPERM) instead of silent.
    #[arg(long)]
    visible_drop: bool,
    /// dependency_failure / api_error_injection: the errno to return.
    #[arg(long)]
    errno: Option<String>,
    /// dependency_failure / api_error_injection: calls to fail (connect,sendmsg,bind,socket);
    /// syscall_error: open,read,write,unlink,create,fork,exec,mmap.
    #[arg(long, value_delimiter = ',')]
    calls: Option<Vec<String>>,
    /// syscall_error: only files at or under this directory (file calls only, not fork/exec).
    #[arg(long)]
    path_prefix: Option<String>,
    /// network_latency: added delay in milliseconds.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// network_latency: jitter in milliseconds (uniform: +/- this; normal: the std deviation).
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// network_latency: jitter distribution, uniform or normal.
    #[arg(long, default_value = "uniform")]
    distribution: String,
    /// network_latency: the device whose egress is delayed (default: the default route's).
    #[arg(long, default_value = "")]
    interface: String,
    /// pod_deletion: kill again this often while the target has processes (default: once).
    #[arg(long, value_parser = parse_duration)]
    interval: Option<Duration>,
    /// resource_exhaustion: tighten cpu.max to this share (0 to 1] of what it may use now.
    #[arg(long)]
    cpu_share: Option<f64>,
    /// resource_exhaustion: tighten memory.high to this share (0 to 1] of its limit or usage.
    #[arg(long)]
    memory_share: Option<f64>,
    /// Only tcp, udp, icmp or any.
    #[arg(long, default_value = "")]
    protocol: String,
    /// Only this remote port or range (80, 8000-8100).
    #[arg(long, default_value = "")]
    ports: String,
    /// Only these remote networks (repeat or comma-separate).
    #[arg(long = "cidr", value_delimiter = ',')]
    cidrs: Vec<String>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct TargetArgs {
    /// A cgroup v2 directory on the node.
    #[arg(long)]
    cgroup: Option<PathBuf>,
    /// The cgroup of a process on the node.
    #[arg(long)]
    pid: Option<u32>,
    /// A container, by ID.
    #[arg(long)]
    container: Option<String>,
    /// A pod, by UID.
    #[arg(long)]
    pod_uid: Option<String>,
}

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REFUSED: u8 = 3;

fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => {
            humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (use seconds or e.g. 5m)"))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos-ctl: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos-ctl: {}", error_text(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Usage errors and invalid specs are 2, refusals 3, everything else 1.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(f) = e.downcast_ref::<FanOutFailed>() {
        return f.code;
    }
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return match s.code() {
            tonic::Code::InvalidArgument => EXIT_USAGE,
            tonic::Code::FailedPrecondition
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::ResourceExhausted
            | tonic::Code::NotFound => EXIT_REFUSED,
            _ => EXIT_FAILURE,
        };
    }
    if e.downcast_ref::<UsageError>().is_some() {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// Some daemons of a fan-out did not answer ok (each answer was printed already).
#[derive(Debug)]
struct FanOutFailed {
    failed: usize,
    total: usize,
    /// The exit code of the most severe answer.
    code: u8,
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

#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.output == Output::Json;
    let tls = client::TlsFiles {
        ca: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
    };
    let tls = &tls;
    let Some(file) = &cli.daemons else {
        return match cli.command {
            Command::Experiment(args) => {
                let spec = spec_from_args(&args)?;
                let mode = StartMode {
                    dry_run: args.dry_run,
                    wait: args.wait,
                };
                start(&cli.daemon, tls, spec, mode, json).await
            }
            Command::Apply {
                file,
                dry_run,
                wait,
            } => {
                let exp = read_experiment(&file)?;
                let mode = StartMode {
                    dry_run: dry_run || exp.dry_run,
                    wait,
                };
                start(&cli.daemon, tls, exp.to_proto(), mode, json).await
            }
            Command::Validate { file, config } => {
                validate(file.as_deref(), config.as_deref(), json)
            }
            Command::Status { watch: true } => watch_status(&cli.daemon, tls, json).await,
            cmd => {
                print!("{}", one(&cli.daemon, tls, &cmd, json).await?);
                Ok(())
            }
        };
    };
    match &cli.command {
        Command::Status { watch: false }
        | Command::EmergencyStop { .. }
        | Command::Capabilities
        | Command::Report { id: None, .. } => fan_out(file, tls, &cli.command, json, false).await,
        // A target or an experiment id lives on one node: "not found" elsewhere is expected.
        Command::Experiment(a) if !a.wait => fan_out(file, tls, &cli.command, json, true).await,
        Command::Apply { wait: false, .. } | Command::Stop { .. } => {
            fan_out(file, tls, &cli.command, json, true).await
        }
        _ => Err(UsageError(
            "--daemons does not work with --wait, status --watch, report ID or validate; \
             use --daemon for those"
                .into(),
        )
        .into()),
    }
}

/// Runs `cmd` on every daemon in `file` at once and prints each one's answer in file order.
/// Fails (with the most severe exit code) when any daemon failed, after reporting all.
/// With `elsewhere_ok`, a NotFound answer (target or id not on that node) is reported but does
/// not fail the command as long as some daemon answered ok.
async fn fan_out(
    file: &std::path::Path,
    tls: &client::TlsFiles,
    cmd: &Command,
    json: bool,
    elsewhere_ok: bool,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| UsageError(format!("--daemons {}: {e}", file.display())))?;
    let addrs: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if addrs.is_empty() {
        return Err(
            UsageError(format!("--daemons {}: no daemon addresses", file.display())).into(),
        );
    }
    let results =
        futures_util::future::join_all(addrs.iter().map(|a| one(a, tls, cmd, json))).await;
    let mut worst: Option<anyhow::Error> = None;
    let (mut failed, mut not_here, mut ok) = (0, 0, 0);
    let mut entries = Vec::new();
    for (addr, r) in addrs.iter().zip(results) {
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
                let elsewhere = elsewhere_ok && is_not_found(&e);
                let msg = if elsewhere {
                    format!("not on this node: {}", error_text(&e))
                } else {
                    error_text(&e)
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
                // The exit code of the most severe answer: failure (1) before usage (2) before refusal (3).
                if worst.as_ref().is_none_or(|w| exit_code(&e) < exit_code(w)) {
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
            total: addrs.len(),
            code: EXIT_REFUSED,
        }
        .into());
    }
    match worst {
        None => Ok(()),
        Some(e) => Err(FanOutFailed {
            failed,
            total: addrs.len(),
            code: exit_code(&e),
        }
        .into()),
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tonic::Status>()
        .is_some_and(|s| s.code() == tonic::Code::NotFound)
}

fn error_text(e: &anyhow::Error) -> String {
    match e.downcast_ref::<tonic::Status>() {
        Some(s) => format!("{} ({:?})", s.message(), s.code()),
        None => format!("{e:#}"),
    }
}

/// One non-streaming command against one daemon; returns what to print.
async fn one(
    daemon: &str,
    tls: &client::TlsFiles,
    cmd: &Command,
    json: bool,
) -> anyhow::Result<String> {
    let mut c = client::connect(daemon, tls).await?;
    let out = match cmd {
        Command::Experiment(a) if !a.wait => {
            start_text(&mut c, spec_from_args(a)?, a.dry_run, json).await?
        }
        Command::Apply {
            file,
            dry_run,
            wait: false,
        } => {
            let exp = read_experiment(file)?;
            start_text(&mut c, exp.to_proto(), *dry_run || exp.dry_run, json).await?
        }
        Command::Experiment(_)
        | Command::Apply { .. }
        | Command::Validate { .. }
        | Command::Status { watch: true } => {
            return Err(
                UsageError("this command runs against one daemon (--daemon)".into()).into(),
            );
        }
        Command::Status { watch: false } => status_text(&mut c, json).await?,
        Command::Stop { id } => {
            let r = c
                .stop_experiment(proto::StopExperimentRequest { id: id.clone() })
                .await?
                .into_inner();
            one_status(&r.status.unwrap_or_default(), json)
        }
        Command::EmergencyStop { clear: true, .. } => {
            c.clear_emergency_stop(proto::ClearEmergencyStopRequest {})
                .await?;
            if json {
                format!("{}\n", serde_json::json!({"cleared": true}))
            } else {
                "emergency stop cleared\n".to_string()
            }
        }
        Command::EmergencyStop {
            clear: false,
            reason,
        } => {
            let r = c
                .emergency_stop(proto::EmergencyStopRequest {
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            if json {
                format!(
                    "{}\n",
                    serde_json::json!({"disarmed": r.disarmed, "disarm_ns": r.disarm_ns})
                )
            } else {
                format!(
                    "{} experiments disarmed in {:.1} µs; new experiments refused until --clear\n",
                    r.disarmed,
                    r.disarm_ns as f64 / 1000.0
                )
            }
        }
        Command::Report { id, last, format } => {
            report_text(
                &mut c,
                id.clone(),
                *last,
                *format == ReportFormat::Json || json,
            )
            .await?
        }
        Command::Capabilities => {
            let r = c
                .capabilities(proto::CapabilitiesRequest {})
                .await?
                .into_inner();
            if json {
                let caps: Vec<_> = r
                    .capabilities
                    .iter()
                    .map(|c| serde_json::json!({"fault": c.fault, "supported": c.supported, "reason": c.reason}))
                    .collect();
                format!(
                    "{}\n",
                    serde_json::json!({"node": r.node, "kernel": r.kernel, "capabilities": caps})
                )
            } else {
                let mut t = format!("node {} (kernel {})\n", r.node, r.kernel);
                for c in r.capabilities {
                    t += &format!(
                        "  {:<20} {:<4} {}\n",
                        c.fault,
                        if c.supported { "yes" } else { "no" },
                        c.reason
                    );
                }
                t
            }
        }
    };
    Ok(out)
}

fn read_file(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| UsageError(format!("{}: {e}", path.display())).into())
}

fn read_experiment(path: &std::path::Path) -> anyhow::Result<chaos_api::experiment::Experiment> {
    chaos_api::experiment::Experiment::from_yaml(&read_file(path)?)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())).into())
}

/// Offline validation: the file parses and every value is in range.
fn validate(
    file: Option<&std::path::Path>,
    config: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(path) = file {
        let exp = read_experiment(path)?;
        if json {
            println!(
                "{}",
                serde_json::json!({"file": path.display().to_string(), "valid": true, "name": exp.name})
            );
        } else {
            println!(
                "{}: valid experiment {:?} ({:?}, {:?})",
                path.display(),
                exp.name,
                exp.kind(),
                exp.duration
            );
        }
    }
    if let Some(path) = config {
        chaos_api::config::ChaosConfig::from_yaml(&read_file(path)?)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        if json {
            println!(
                "{}",
                serde_json::json!({"file": path.display().to_string(), "valid": true})
            );
        } else {
            println!("{}: valid chaos config", path.display());
        }
    }
    Ok(())
}

fn spec_from_args(a: &ExperimentArgs) -> anyhow::Result<proto::ExperimentSpec> {
    let t = &a.target;
    let kind = match (&t.cgroup, t.pid, &t.container, &t.pod_uid) {
        (Some(c), ..) => target::Kind::Cgroup(c.display().to_string()),
        (_, Some(p), ..) => target::Kind::Pid(p),
        (_, _, Some(c), _) => target::Kind::ContainerId(c.clone()),
        (.., Some(u)) => target::Kind::PodUid(u.clone()),
        _ => bail!(UsageError("one target is required".into())),
    };
    let socket = |errno: &str, calls: &[&str]| {
        fault::Kind::SocketError(proto::SocketError {
            errno: a.errno.clone().unwrap_or_else(|| errno.into()),
            calls: a
                .calls
                .clone()
                .unwrap_or_else(|| calls.iter().map(|c| c.to_string()).collect()),
        })
    };
    let fault = match a.kind {
        ExperimentType::PacketLoss => fault::Kind::PacketLoss(proto::PacketLoss {
            direction: match a.direction.as_str() {
                "ingress" => packet_loss::Direction::Ingress,
                "egress" => packet_loss::Direction::Egress,
                "both" => packet_loss::Direction::Both,
                d => bail!(UsageError(format!(
                    "--direction: {d:?} is not ingress, egress or both"
                ))),
            } as i32,
            visible_egress_drop: a.visible_drop,
        }),
        ExperimentType::DependencyFailure => socket("ECONNREFUSED", &["connect"]),
        ExperimentType::ApiErrorInjection => socket("ECONNRESET", &["connect", "sendmsg"]),
        ExperimentType::SyscallError => fault::Kind::SyscallError(proto::SyscallError {
            errno: a.errno.clone().unwrap_or_else(|| "EIO".into()),
            calls: a.calls.clone().unwrap_or_else(|| vec!["open".into()]),
            path_prefix: a.path_prefix.clone().unwrap_or_default(),
        }),
        ExperimentType::NetworkLatency => fault::Kind::Latency(proto::Latency {
            delay_ms: a.latency_ms,
            jitter_ms: a.jitter_ms,
            distribution: a.distribution.clone(),
            interface: a.interface.clone(),
        }),
        ExperimentType::PodDeletion => fault::Kind::PodKill(proto::PodKill {
            interval_ms: a.interval.map_or(0, |i| i.as_millis() as u64),
        }),
        ExperimentType::ResourceExhaustion => {
            fault::Kind::ResourcePressure(proto::ResourcePressure {
                cpu_share: a.cpu_share,
                memory_share: a.memory_share,
            })
        }
    };
    Ok(proto::ExperimentSpec {
        name: a.name.clone(),
        target: Some(proto::Target { kind: Some(kind) }),
        fault: Some(proto::Fault { kind: Some(fault) }),
        probability: a.intensity.unwrap_or(match a.kind {
            ExperimentType::NetworkLatency
            | ExperimentType::PodDeletion
            | ExperimentType::ResourceExhaustion => 1.0,
            _ => 0.1,
        }),
        duration_ms: a.duration.as_millis() as u64,
        max_faults: a.max_faults,
        filter: Some(proto::NetFilter {
            protocol: a.protocol.clone(),
            ports: a.ports.clone(),
            cidrs: a.cidrs.clone(),
        }),
        budget: a.budget,
    })
}

/// How a start request is run: dry or for real, and whether to follow it.
struct StartMode {
    dry_run: bool,
    wait: bool,
}

/// Starts an experiment on one daemon and renders the answer: the plan, and the id unless dry.
async fn start_text(
    c: &mut client::Client,
    spec: proto::ExperimentSpec,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<String> {
    let r = c
        .start_experiment(proto::StartExperimentRequest {
            spec: Some(spec),
            dry_run,
        })
        .await?
        .into_inner();
    let plan = r.plan.unwrap_or_default();
    Ok(match (dry_run, json) {
        (true, true) => format!(
            "{}\n",
            serde_json::json!({"dry_run": true, "plan": output::plan_json(&plan)})
        ),
        (true, false) => format!("dry run: nothing was changed\n{}", output::plan_text(&plan)),
        (false, true) => format!(
            "{}\n",
            serde_json::json!({"id": r.id, "plan": output::plan_json(&plan)})
        ),
        (false, false) => format!("started {}\n{}", r.id, output::plan_text(&plan)),
    })
}

async fn start(
    daemon: &str,
    tls: &client::TlsFiles,
    spec: proto::ExperimentSpec,
    a: StartMode,
    json: bool,
) -> anyhow::Result<()> {
    let mut c = client::connect(daemon, tls).await?;
    if !a.wait || a.dry_run {
        print!("{}", start_text(&mut c, spec, a.dry_run, json).await?);
        return Ok(());
    }
    let total_ms = spec.duration_ms;
    let r = c
        .start_experiment(proto::StartExperimentRequest {
            spec: Some(spec),
            dry_run: false,
        })
        .await?
        .into_inner();
    if !json {
        println!(
            "started {}\n{}",
            r.id,
            output::plan_text(&r.plan.unwrap_or_default())
        );
    }
    let mut stream = c
        .watch_experiment(proto::WatchExperimentRequest {
            id: r.id.clone(),
            interval_ms: 500,
        })
        .await?
        .into_inner();
    let tty = std::io::stdout().is_terminal();
    let mut last = None;
    while let Some(update) = stream.message().await? {
        let s = update.status.unwrap_or_default();
        if !json {
            let line = output::progress(update.elapsed_ms, total_ms, &s);
            if tty {
                print!("\r{line}")
            } else {
                println!("{line}")
            }
            use std::io::Write as _;
            std::io::stdout().flush()?;
        }
        last = Some(s);
    }
    if tty && !json {
        println!();
    }
    if let Some(s) = last {
        print!("{}", one_status(&s, json));
    }

    Ok(())
}

fn one_status(s: &proto::ExperimentStatus, json: bool) -> String {
    if json {
        format!("{}\n", output::status_json(s))
    } else {
        let mut t = output::status_table(std::slice::from_ref(s));
        if !s.reason.is_empty() {
            t += &format!("reason: {}\n", s.reason);
        }
        t
    }
}

async fn status_text(c: &mut client::Client, json: bool) -> anyhow::Result<String> {
    let r = c.get_status(proto::GetStatusRequest {}).await?.into_inner();
    Ok(if json {
        let list: Vec<_> = r.experiments.iter().map(output::status_json).collect();
        format!(
            "{}\n",
            serde_json::json!({"node": r.node, "emergency_stop": r.emergency_stop, "experiments": list})
        )
    } else {
        format!(
            "node {}  emergency stop: {}\n{}",
            r.node,
            if r.emergency_stop { "LATCHED" } else { "no" },
            output::status_table(&r.experiments)
        )
    })
}

async fn watch_status(daemon: &str, tls: &client::TlsFiles, json: bool) -> anyhow::Result<()> {
    let mut c = client::connect(daemon, tls).await?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let text = status_text(&mut c, json).await?;
        if tty && !json {
            print!("\x1b[2J\x1b[H");
        }
        print!("{text}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn report_text(
    c: &mut client::Client,
    id: Option<String>,
    last: Option<Duration>,
    json: bool,
) -> anyhow::Result<String> {
    Ok(match id {
        Some(id) => {
            let r = c
                .get_report(proto::GetReportRequest { id })
                .await?
                .into_inner();
            if json {
                format!("{}\n", output::report_json(&r))
            } else {
                r.markdown
            }
        }
        None => {
            let since_s = last.map_or(0, |d| d.as_secs().max(1));
            let r = c
                .list_experiments(proto::ListExperimentsRequest { since_s })
                .await?
                .into_inner();
            if json {
                let list: Vec<_> = r.experiments.iter().map(output::status_json).collect();
                format!("{}\n", serde_json::Value::Array(list))
            } else {
                output::status_table(&r.experiments)
            }
        }
    })
}
