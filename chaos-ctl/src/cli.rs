//! The command line as clap reads it: commands, flags and their help, nothing else.
//!
//! The experiment flags carry no defaults of their own: an absent flag stays `None` and
//! [`crate::spec`] lets the model ([`chaos_api::experiment`]) fill in its default. Where the help
//! quotes a default, it is taken from the model when the help is built. The experiment type and
//! the keyword flags (`--direction`, `--distribution`, `--protocol`) accept the model's names.

use std::{path::PathBuf, time::Duration};

use chaos_api::experiment::{
    CallName, CorruptChecksum, DEFAULT_CONCURRENCY, Direction, Distribution, Engine,
    ExperimentType, MAX_STATEMENT_BYTES, MAX_STATEMENTS, Profile, Protocol, SocketCall,
    SocketError, SyscallCall, SyscallError,
};
use chaos_ctl::client::DEFAULT_ADDR;
use clap::builder::{NonEmptyStringValueParser, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(version, about = "Run chaos experiments on chaos-ebpf node daemons")]
pub struct Cli {
    /// The daemon to talk to: unix:///path/to.sock, https://host:port (with --ca, --cert,
    /// --key) or http://127.0.0.1:port (a daemon's loopback listener).
    #[arg(long, global = true, default_value = DEFAULT_ADDR)]
    pub daemon: String,
    /// Talk to every daemon listed in FILE (one address per line, `#` comments) in parallel:
    /// status, emergency-stop, capabilities and report --last report each daemon's answer;
    /// report ID shows the one daemon's that has it.
    #[arg(long, global = true)]
    pub daemons: Option<PathBuf>,
    /// CA certificate (PEM) that signed the daemons' certificates (https:// daemons).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for https:// daemons; its OU is the role (operator, observer).
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for https:// daemons.
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Kubernetes mode: the daemons are the chaos-daemon pods of the DaemonSet, found through the
/// Kubernetes API. On with --kube, --kubeconfig or --port-forward, and for `experiment --pod` or
/// `--selector`; then `status`, `stop`, `report` and `emergency-stop` reach every daemon pod.
#[derive(Args, Clone)]
#[command(next_help_heading = "Kubernetes")]
pub struct KubeArgs {
    /// Kubernetes mode: status, stop, report, emergency-stop and capabilities go to every
    /// Running chaos-daemon pod of the DaemonSet (one answer each; `stop ID` and `report ID`
    /// find the node that has it), found through the API server of --kubeconfig, else
    /// $KUBECONFIG, ~/.kube/config or the in-cluster service account. `experiment --pod` or
    /// `--selector` is always in this mode: one experiment per node with that node's pods.
    #[arg(long, global = true, conflicts_with_all = ["daemon", "daemons"])]
    pub kube: bool,
    /// The kubeconfig file (implies --kube).
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["daemon", "daemons"])]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub kube_context: Option<String>,
    /// The namespace of the chaos-daemon DaemonSet.
    #[arg(long, global = true, value_name = "NS", default_value = "chaos-system")]
    pub chaos_namespace: String,
    /// The label selector of the daemon pods.
    #[arg(
        long,
        global = true,
        value_name = "K=V[,K2=V2]",
        default_value = "app.kubernetes.io/name=chaos-daemon"
    )]
    pub daemon_selector: String,
    /// The daemons' gRPC port (the DaemonSet's --tcp).
    #[arg(long, global = true, value_name = "PORT", default_value_t = 50051)]
    pub daemon_port: u16,
    /// The name the daemons' certificate is checked against when a daemon pod is dialed by
    /// its IP (the certificate names the Service, not the pod IPs).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        default_value = "chaos-daemon.chaos-system.svc"
    )]
    pub tls_server_name: String,
    /// Reach each daemon pod through a Kubernetes port-forward (from outside the cluster)
    /// instead of its pod IP; the certificate is then checked against `localhost`. Implies
    /// --kube.
    #[arg(long, global = true, conflicts_with_all = ["daemon", "daemons"])]
    pub port_forward: bool,
}

impl KubeArgs {
    /// Whether a flag asked for Kubernetes mode.
    pub fn on(&self) -> bool {
        self.kube || self.kubeconfig.is_some() || self.port_forward
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start an experiment: chaos-ctl experiment <type> --cgroup PATH --duration 5m ...
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
    /// Check an experiment file (-f), a chaos config (--config), or both (then also whether the
    /// config admits the experiment, and at what price), offline; no daemon needed.
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
    /// Renew the lease of a running experiment started with --lease (a CI job's heartbeat).
    Renew { id: String },
    /// Disarm every experiment on the daemon and refuse new ones until --clear.
    EmergencyStop {
        /// Lift the latch instead.
        #[arg(long)]
        clear: bool,
        /// Why (recorded in the audit log and the reports): kept to 512 bytes (longer is cut,
        /// the stop still happens); control characters are kept escaped (`\u{1b}`).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Post-mortem of one experiment, or the list of the last period's experiments.
    Report {
        id: Option<String>,
        /// Experiments of the last period, e.g. 24h.
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "id")]
        last: Option<Duration>,
        /// md, json, or html (a self-contained page with charts; one experiment only).
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormat,
    },
    /// What the daemon's kernel can inject.
    Capabilities,
    /// Write the mutual TLS material of a deployment: a CA, the daemons' certificate and one
    /// client certificate per role (operator, observer); offline, no daemon needed.
    Certs(CertsArgs),
}

#[derive(Args)]
pub struct CertsArgs {
    /// The directory to write into (created if missing); existing files are never overwritten.
    #[arg(long)]
    pub out: PathBuf,
    /// An extra DNS name (or IP address) of the daemons' certificate (repeat for more).
    #[arg(long, value_name = "NAME")]
    pub daemon_dns: Vec<String>,
    /// How many days the certificates are valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Md,
    Json,
    Html,
}

#[derive(Args)]
#[command(next_help_heading = "Experiment")]
pub struct ExperimentArgs {
    /// The experiment type.
    #[arg(value_parser = experiment_type())]
    pub kind: ExperimentType,
    /// How long the fault stays armed: seconds (300) or a duration (5m), at most 24h.
    /// Default: 1 minute (the model's).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[arg(long, help = intensity_help())]
    pub intensity: Option<f64>,
    /// Money budget for this experiment (default: the daemon's budget.max_experiment_cost).
    #[arg(long)]
    pub budget: Option<f64>,
    /// At most this many faults (default: as many as the budget buys).
    #[arg(long)]
    pub max_faults: Option<u64>,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the experiment with a progress bar until it ends (renewing its lease).
    #[arg(long)]
    pub wait: bool,
    /// Dead-man switch: the daemon disarms the experiment when no renewal came for this long
    /// (1s to 1h); --wait renews it, or `chaos-ctl renew ID`.
    #[arg(long, value_parser = parse_duration)]
    pub lease: Option<Duration>,
    /// A name for reports: 1 to 63 of a-z, 0-9 and - (default: the type with - for _, e.g.
    /// packet-loss).
    #[arg(long)]
    pub name: Option<String>,
    // The headings below apply to every flag after them.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The pod the target belongs to, checked against the daemon's pod_deletion name patterns;
    /// chaos-ctl does not verify it (with --pod or --selector, each pod's own name is sent).
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        value_parser = NonEmptyStringValueParser::new(),
        conflicts_with_all = ["pods", "selector"]
    )]
    pub pod_name: Option<String>,
    #[command(flatten)]
    pub pod_choice: PodArgs,
    #[command(flatten)]
    pub fault: FaultArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub guards: GuardArgs,
}

/// The experiment's guards. Unset: every guard of the daemon's config, at its interval.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Guards")]
pub struct GuardArgs {
    /// Only this guard applies (repeat for more): an SLO name, health_checks,
    /// rollback_triggers or impact.
    #[arg(long = "guard", value_name = "NAME")]
    pub apply: Vec<String>,
    /// An extra critical SLO for this experiment: NAME:OBJECTIVE:PROMQL, e.g.
    /// 'checkout_errors:<= 0.01:sum(rate(http_requests_total{code=~"5.."}[1m]))'.
    #[arg(long = "slo", value_name = "NAME:OBJECTIVE:QUERY")]
    pub slos: Vec<String>,
    /// How often the guards are evaluated (50ms to 60s); default: the daemon's
    /// safety_checks.guard_interval_ms.
    #[arg(long, value_parser = parse_duration)]
    pub guard_interval: Option<Duration>,
    /// How long the guards are measured before arming (0s to 1h); default: the daemon's
    /// safety_checks.baseline.
    #[arg(long, value_parser = parse_duration)]
    pub baseline: Option<Duration>,
    /// Gradual intensity: comma-separated probabilities (0.01,0.05,0.1), or `preset` for the
    /// daemon's experiment_types list of the type; each step starts after --ramp-hold while
    /// every guard is green. --intensity is then the first step. network_latency: delays in
    /// milliseconds (then --latency-ms); database_load: rates in queries per second, e.g.
    /// 50,200,500 (then --rate).
    #[arg(long, value_name = "STEPS|preset", requires = "ramp_hold")]
    pub ramp: Option<String>,
    /// How long each ramp step holds (1s to 24h).
    #[arg(long, value_parser = parse_duration, requires = "ramp")]
    pub ramp_hold: Option<Duration>,
}

/// The target: one cgroup on one node (--cgroup, --pid, --container ID, --pod-uid), or pods
/// found through Kubernetes (--pod, --selector; then --container names a container of each).
#[derive(Args, Default)]
#[group(required = true, multiple = true)]
#[command(next_help_heading = "Target (one of; --container NAME may go with --pod or --selector)")]
pub struct TargetArgs {
    /// A cgroup v2 directory on the node.
    #[arg(long, conflicts_with_all = ["pid", "container", "pod_uid", "pods", "selector"])]
    pub cgroup: Option<String>,
    /// The cgroup of a process on the node.
    #[arg(long, conflicts_with_all = ["container", "pod_uid", "pods", "selector"])]
    pub pid: Option<u32>,
    /// A container, by ID (12 to 64 hex digits; a `containerd://` style prefix is dropped).
    /// With --pod or --selector: the NAME of a container of each pod, whose ID is the target
    /// instead of the pod's.
    #[arg(long, value_name = "ID|NAME", conflicts_with = "pod_uid")]
    pub container: Option<String>,
    /// A pod, by UID.
    #[arg(long, conflicts_with_all = ["pods", "selector"])]
    pub pod_uid: Option<String>,
    /// Kubernetes: a pod, NAMESPACE/NAME (repeat for more); resolved through the API server to
    /// its node, UID and containers (Kubernetes mode, see --kube).
    #[arg(
        long = "pod",
        value_name = "NAMESPACE/NAME",
        conflicts_with = "selector"
    )]
    pub pods: Vec<String>,
    /// Kubernetes: the pods of --namespace matching this label selector (server-side), e.g.
    /// app=shop,tier=web.
    #[arg(
        long,
        value_name = "K=V[,K2=V2]",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub selector: Option<String>,
}

impl TargetArgs {
    /// Whether the target is Kubernetes pods (--pod or --selector).
    pub fn kube(&self) -> bool {
        !self.pods.is_empty() || self.selector.is_some()
    }
}

/// How pods found through Kubernetes are chosen (with --pod or --selector).
#[derive(Args)]
#[command(next_help_heading = "Kubernetes targeting (with --pod or --selector)")]
pub struct PodArgs {
    /// The namespace --selector searches (default: default).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Blast radius: at most this many pods (of those that can be targeted, by namespace and
    /// name order).
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_pods: Option<u32>,
    /// Blast radius: at most this percentage (0 to 100] of the pods that can be targeted,
    /// rounded down but at least one; with --max-pods too, the smaller wins.
    #[arg(long, value_name = "P", value_parser = parse_percent)]
    pub percent: Option<f64>,
    /// Pods in these namespaces are never targeted (comma-separated; default:
    /// kube-system,chaos-system).
    #[arg(long, value_name = "NS[,NS]", value_delimiter = ',')]
    pub protected_namespaces: Option<Vec<String>>,
    /// The chaos config the daemons run (the ConfigMap's chaos.yaml): for pod_deletion, only
    /// pods named like experiment_types.pod_deletion.parameters.pods are chosen, and at most
    /// its max_pods (and experiments.pod_deletion.max_pods_deleted). Without it the daemons
    /// still refuse names that do not match.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The settings of the fault; each flag belongs to the types it names and is refused for the
/// others. Unset: the type's default in the model.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Fault settings (each for the types it names)")]
pub struct FaultArgs {
    /// packet_loss: which traffic is dropped (default: both).
    #[arg(long, value_parser = PossibleValuesParser::new(Direction::ALL.iter().map(|d| d.as_str())))]
    pub direction: Option<String>,
    /// packet_loss: egress drops fail the sending call (EPERM) instead of vanishing silently.
    #[arg(long)]
    pub visible_drop: bool,
    /// packet_corruption: wrong (as real corruption: the receiver's stack finds the checksum
    /// wrong and drops the packet; loopback and veth do not check it) or fixed (the
    /// application reads the changed byte) (default: wrong).
    #[arg(long, value_parser = PossibleValuesParser::new(CorruptChecksum::ALL.iter().map(|c| c.as_str())))]
    pub checksum: Option<String>,
    #[arg(long, help = errno_help(), value_parser = NonEmptyStringValueParser::new())]
    pub errno: Option<String>,
    #[arg(long, help = calls_help(), value_delimiter = ',')]
    pub calls: Option<Vec<String>>,
    /// api_error_injection: fault the target's plaintext HTTP/1.x responses instead of its
    /// socket calls: comma-separated 3-digit status codes (100 to 599) and/or `timeout` (the
    /// response's connection is blackholed), 1 to 8, e.g. 500,502,503,timeout; not with
    /// --errno or --calls. TLS, HTTP/2, gRPC, split status lines, pipelining and WebSocket
    /// upgrades are left alone.
    #[arg(long, value_delimiter = ',', value_name = "STATUS|timeout")]
    pub error_types: Option<Vec<String>>,
    /// api_error_injection with --error-types: the HTTP server's local listening port or range
    /// inside the target (8080, 8000-8100; default: any port).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub server_ports: Option<String>,
    /// syscall_error: only files at or under this directory (file calls only, not fork/exec;
    /// default: every file).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub path_prefix: Option<String>,
    /// network_latency (required): the delay added to each egress packet, in milliseconds.
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// network_latency: jitter in milliseconds (uniform: +/- this; normal: the standard
    /// deviation; default: none).
    #[arg(long)]
    pub jitter_ms: Option<u64>,
    /// network_latency: the jitter's distribution (default: uniform).
    #[arg(long, value_parser = PossibleValuesParser::new(Distribution::ALL.iter().map(|d| d.as_str())))]
    pub distribution: Option<String>,
    /// bandwidth_limit (required): the rate the target's matching egress may leave at, in
    /// bits per second with a unit, bit, kbit, mbit, gbit, or in bytes per second, bps, kbps,
    /// mbps, gbps; decimal prefixes (1mbit = 1,000,000 bit/s), e.g. 1mbit, 500kbit.
    /// database_load (required unless --ramp gives the rates): queries per second, more than 0
    /// and at most 100000, e.g. 200.
    #[arg(long, value_name = "RATE", value_parser = NonEmptyStringValueParser::new())]
    pub rate: Option<String>,
    /// bandwidth_limit: bytes that may leave at line rate after an idle spell, a number with
    /// an optional unit b, kb, mb (binary: 1kb = 1024 bytes), e.g. 32kb (default: 0, every
    /// packet paced).
    #[arg(long, value_name = "SIZE", value_parser = NonEmptyStringValueParser::new())]
    pub burst: Option<String>,
    /// network_latency, bandwidth_limit: the device whose egress is delayed or limited
    /// (default: the default route's).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub interface: Option<String>,
    /// pod_deletion: kill again this often while the target has processes (default: once).
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// resource_exhaustion: tighten cpu.max to this share (0 to 1] of what it may use now
    /// (default, with --memory-share unset too: what the daemon's config allows).
    #[arg(long)]
    pub cpu_share: Option<f64>,
    /// resource_exhaustion: tighten memory.high to this share (0 to 1] of its limit or usage.
    #[arg(long)]
    pub memory_share: Option<f64>,
    /// database_load (required): the database engine (mysql: MySQL or MariaDB).
    #[arg(long, value_parser = PossibleValuesParser::new(Engine::ALL.iter().map(|e| e.as_str())))]
    pub engine: Option<String>,
    /// database_load (required): the server, HOST:PORT (a name, an IPv4 address or [IPv6]),
    /// e.g. orders-db.shop.svc:5432.
    #[arg(long, value_name = "HOST:PORT", value_parser = NonEmptyStringValueParser::new())]
    pub address: Option<String>,
    /// database_load: the database name (postgres, mysql) or index (redis, 0 to 65535)
    /// (default: the server's).
    #[arg(long, value_name = "NAME|INDEX", value_parser = NonEmptyStringValueParser::new())]
    pub database: Option<String>,
    /// database_load: the user to connect as (required for postgres and mysql).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub user: Option<String>,
    /// database_load: the password is read by the daemon from this file on the node (an
    /// absolute path); never given on the command line.
    #[arg(long, value_name = "PATH", value_parser = NonEmptyStringValueParser::new())]
    pub password_file: Option<String>,
    /// database_load: the password is read from this environment variable of the daemon.
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    pub password_env: Option<String>,
    #[arg(long, help = profile_help(), value_parser = PossibleValuesParser::new(Profile::ALL.iter().map(|p| p.as_str())))]
    pub profile: Option<String>,
    #[arg(
        long = "statement",
        value_name = "[WEIGHT:]SQL",
        help = statement_help()
    )]
    pub statements: Vec<String>,
    #[arg(long, help = concurrency_help())]
    pub concurrency: Option<u32>,
    /// database_load: send the load from the target's network namespace (its pod's address),
    /// for a NetworkPolicy or a database allow-list that expects it (default: the daemon's).
    #[arg(long)]
    pub in_target_netns: bool,
}

/// Which packets or calls are eligible (network types); every part defaults to "all".
#[derive(Args)]
#[command(
    next_help_heading = "Filter (packet_loss, packet_duplication, packet_corruption, dependency_failure, api_error_injection, network_latency, bandwidth_limit)"
)]
pub struct FilterArgs {
    /// Only this protocol (packet_corruption: tcp, udp or any).
    #[arg(long, value_parser = PossibleValuesParser::new(Protocol::ALL.iter().map(|p| p.as_str())))]
    pub protocol: Option<String>,
    /// Only this remote port or range (80, 8000-8100); not with --error-types (use
    /// --server-ports).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub ports: Option<String>,
    /// Only these remote networks (repeat or comma-separate).
    #[arg(long = "cidr", value_delimiter = ',')]
    pub cidrs: Vec<String>,
}

/// The experiment type argument: one of the model's names ([`ExperimentType::as_str`]).
fn experiment_type() -> impl TypedValueParser<Value = ExperimentType> {
    PossibleValuesParser::new(ExperimentType::ALL.map(ExperimentType::as_str))
        .try_map(|name| ExperimentType::from_name(&name).ok_or("not an experiment type"))
}

impl PodArgs {
    /// The first of these flags given: they choose among the pods of --pod or --selector.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            ("--namespace", self.namespace.is_some()),
            ("--max-pods", self.max_pods.is_some()),
            ("--percent", self.percent.is_some()),
            (
                "--protected-namespaces",
                self.protected_namespaces.is_some(),
            ),
            ("--config", self.config.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }

    /// `--namespace`, default `default`.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// `--protected-namespaces`, default kube-system and chaos-system.
    pub fn protected(&self) -> Vec<String> {
        self.protected_namespaces
            .clone()
            .unwrap_or_else(|| vec!["kube-system".into(), "chaos-system".into()])
    }
}

/// A percentage: more than 0, at most 100.
fn parse_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!(
            "{s:?}: expected a percentage, more than 0 and at most 100"
        )),
    }
}

/// Seconds (`300`) or a humantime duration (`5m`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => {
            humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (use seconds or e.g. 5m)"))
        }
    }
}

/// `a, b and c`.
fn list(items: &[String]) -> String {
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// `--intensity`'s help, with the model's per-type defaults.
fn intensity_help() -> String {
    let (defaulted, required): (Vec<ExperimentType>, Vec<ExperimentType>) = ExperimentType::ALL
        .into_iter()
        .partition(|kind| kind.default_intensity().is_some());
    let required: Vec<String> = required.iter().map(|k| k.to_string()).collect();
    let defaulted: Vec<String> = defaulted
        .iter()
        .map(|k| format!("{k} {}", k.default_intensity().unwrap_or_default()))
        .collect();
    format!(
        "Probability (0 to 1) that a matching packet or call is faulted; required for {}; \
         default: {}",
        list(&required),
        list(&defaulted)
    )
}

/// `--profile`'s help, with the model's profiles.
fn profile_help() -> String {
    let names: Vec<&str> = Profile::ALL.iter().map(|p| p.as_str()).collect();
    format!(
        "database_load: a built-in workload, {} (row_locks: postgres and mysql only); the \
         profiles that write use a scratch table (redis: keys) the experiment creates and drops. \
         Give --profile or --statement",
        names.join(", ")
    )
}

/// `--statement`'s help, with the model's limits.
fn statement_help() -> String {
    format!(
        "database_load: a statement the load sends (redis: a command, e.g. 'GET k'); repeat \
         for up to {MAX_STATEMENTS}, each at most {MAX_STATEMENT_BYTES} bytes. A leading \
         WEIGHT: (a whole number of at least 1, default 1) sets how often it is picked \
         relative to the others, e.g. --statement '3:SELECT * FROM orders WHERE id = 42' \
         --statement 'UPDATE stock SET n = n - 1 WHERE id = 7'. Give --profile or --statement"
    )
}

/// `--concurrency`'s help, with the model's default.
fn concurrency_help() -> String {
    format!(
        "database_load: connections the load runs on, 1 to 1000 (default: \
         {DEFAULT_CONCURRENCY}; the daemon's experiments.database_load.max_connections may \
         allow less)"
    )
}

/// `--errno`'s help, with the model's defaults.
fn errno_help() -> String {
    let socket = |kind| SocketError::defaults(kind).errno;
    format!(
        "dependency_failure, api_error_injection (not with --error-types), syscall_error: the \
         errno the faulted calls return, a name or a number (default: {} for \
         dependency_failure, {} for api_error_injection, {} for syscall_error)",
        socket(ExperimentType::DependencyFailure),
        socket(ExperimentType::ApiErrorInjection),
        SyscallError::defaults().errno
    )
}

/// `--calls`' help, with the model's calls and defaults.
fn calls_help() -> String {
    let names = |calls: &[&'static str]| calls.join(",");
    let socket = |kind| {
        let calls: Vec<_> = SocketError::defaults(kind)
            .calls
            .iter()
            .map(|c| c.as_str())
            .collect();
        names(&calls)
    };
    let syscall: Vec<_> = SyscallError::defaults()
        .calls
        .iter()
        .map(|c| c.as_str())
        .collect();
    format!(
        "The calls that fail, comma-separated: dependency_failure, api_error_injection (not \
         with --error-types): {}; \
         syscall_error: {} (default: {} for dependency_failure, {} for api_error_injection, {} \
         for syscall_error)",
        SocketCall::allowed(),
        SyscallCall::allowed(),
        socket(ExperimentType::DependencyFailure),
        socket(ExperimentType::ApiErrorInjection),
        names(&syscall)
    )
}
