//! `chaos-daemon serve`: wires the engine, the store and the experiment manager to the gRPC
//! service on a Unix socket (and TCP with mutual TLS), starts the reaper that ends experiments
//! whose duration elapsed, and stops everything on SIGTERM or Ctrl-C.
//!
//! A start checks every argument, then locks the state directory ([`lock`]: one daemon per
//! state directory) and binds every socket, and only then touches the state (the journal's
//! undo, the store's recovery): a second daemon on the same paths fails having changed nothing.
//!
//! Every listener has the bounds of [`chaos_daemon::grpc::limits`] (connections, streams,
//! requests in flight, timeouts, keepalive), each its own share; `WatchExperiment` is served
//! from one publisher for all ([`chaos_daemon::grpc::watch`]). At SIGTERM the watch streams end,
//! then the servers finish the calls they run, then every experiment is stopped.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use chaos_api::{config::ChaosConfig, proto::chaos_daemon_server::ChaosDaemonServer};
use chaos_daemon::{
    engine::Engine,
    experiment::{Manager, SystemClock},
    grpc::{
        Service,
        limits::{self, MAX_CONNECTIONS, TLS_HANDSHAKE_TIMEOUT},
        stamp_arrival,
        watch::Watches,
    },
    host::dbload,
    notify::Notifier,
    safety::Safety,
    store::Store,
    target::{Resolver, cgroup2_mount},
};
use clap::Args;
use tokio::net::UnixListener;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

mod lock;

#[derive(Args)]
pub struct ServeArgs {
    /// The Unix socket to serve on (created mode 0600).
    #[arg(long, default_value = "/run/chaos/daemon.sock")]
    socket: PathBuf,
    /// The chaos config (the seed's YAML: budget, limits, ...); built-in defaults without it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the SQLite store lives (created mode 0700).
    #[arg(long, default_value = "/var/lib/chaos")]
    state_dir: PathBuf,
    /// The node name reported to clients (default: the host name).
    #[arg(long)]
    node: Option<String>,
    /// Also serve gRPC on TCP at ADDR with mutual TLS (needs --tls-cert, --tls-key, --client-ca).
    #[arg(long, requires_all = ["tls_cert", "tls_key", "client_ca"])]
    tcp: Option<std::net::SocketAddr>,
    /// The daemon's certificate chain (PEM) for --tcp.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The daemon's private key (PEM) for --tcp.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs client certificates; their OU is the role (operator, observer).
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Serve plain gRPC without TLS on ADDR: loopback addresses only; callers are observers.
    #[arg(long)]
    insecure_tcp: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464); off by default.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// How often experiments are checked for an elapsed duration, in milliseconds.
    #[arg(long, default_value_t = 50)]
    reap_interval_ms: u64,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Every argument is checked before anything is touched: a refused start changes nothing.
    let config = match &args.config {
        Some(path) => ChaosConfig::load(path)?,
        None => ChaosConfig::default(),
    };
    if let Some(addr) = args.insecure_tcp
        && !addr.ip().is_loopback()
    {
        anyhow::bail!(
            "--insecure-tcp {addr}: plain TCP is only allowed on loopback; use --tcp with mutual TLS"
        );
    }
    // The TLS server is built here: unreadable or invalid PEM files fail now.
    let tls = match args.tcp {
        Some(addr) => Some((addr, tls_server(&args)?)),
        None => None,
    };
    let resolver =
        Resolver::new(cgroup2_mount()?)?.protecting(&config.safety_checks.protected_cgroups);
    let safety = Safety::new(Arc::new(config.clone())).context("setting up the guards")?;
    let node = match &args.node {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };

    // One daemon per state directory, then every socket bound: a second daemon on the same
    // paths stops here, before it undoes a journal or marks an experiment of the first.
    create_private_dir(&args.state_dir, 0o700)?;
    let _lock = lock::StateLock::acquire(&args.state_dir)?;
    let (listener, socket) = bind_private_socket(&args.socket)?;
    let tcp = match tls {
        Some((addr, server)) => Some((bind_tcp(addr, "").await?, server)),
        None => None,
    };
    let insecure_tcp = match args.insecure_tcp {
        Some(addr) => Some(bind_tcp(addr, "").await?),
        None => None,
    };
    let metrics = match args.metrics_addr {
        Some(addr) => Some(bind_tcp(addr, "the metrics address ").await?),
        None => None,
    };

    // The state: the engine keeps its own connection to the store for the host-change
    // journal, and undoes what a killed daemon left (cgroup knobs, qdiscs) before anything
    // else runs; the manager marks what was running aborted and restores the latch.
    let store = Store::open(&args.state_dir)?;
    let journal = Arc::new(std::sync::Mutex::new(Store::open(&args.state_dir)?));
    let runner =
        dbload::Runner::beside_executable(&args.state_dir.join("dbload"), resolver.mount());
    if let Err(why) = &runner {
        tracing::warn!("{why}");
    }
    let engine = Engine::with_journal(resolver, journal)
        .context("loading the kernel programs")?
        .allowing_kills(&config.experiments.pod_deletion.allowed_cgroups)
        .with_runner(runner);
    let manager = Manager::new(engine, store, config, Arc::new(SystemClock))?;
    let notifier = Notifier::new(manager.config(), manager.metrics.notifications.clone())
        .context("setting up the notification channels")?;
    manager.set_notifier(notifier, node.clone());
    println!(
        "chaos-daemon {node} listening on unix://{}",
        args.socket.display()
    );
    // Every listener gets the limits of grpc::limits (each its own share) and serves
    // WatchExperiment from the one publisher.
    let watches = Watches::start(manager.clone());
    let service = || {
        ChaosDaemonServer::with_interceptor(
            Service::new(
                manager.clone(),
                safety.clone(),
                node.clone(),
                watches.clone(),
            ),
            stamp_arrival,
        )
    };
    // At the signal every server stops taking calls and ends its connections once their calls
    // are answered; the open watch streams end first.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signalled = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut tcp_servers = Vec::new();
    if let Some((tcp, server)) = tcp {
        let addr = tcp.local_addr()?;
        println!("listening on https://{addr}");
        let what = format!("tcp {addr}");
        let incoming = capped_tcp(tcp, what.clone());
        let server = limits::limited(server, &what)
            .add_service(service())
            .serve_with_incoming_shutdown(incoming, signalled());
        tcp_servers.push(tokio::spawn(server));
    }
    if let Some(tcp) = insecure_tcp {
        let addr = tcp.local_addr()?;
        println!("listening on http://{addr} (insecure, observers only)");
        let what = format!("insecure tcp {addr}");
        let incoming = capped_tcp(tcp, what.clone());
        let server = limits::limited(tonic::transport::Server::builder(), &what)
            .add_service(service())
            .serve_with_incoming_shutdown(incoming, signalled());
        tcp_servers.push(tokio::spawn(server));
    }

    let metrics_server = match metrics {
        Some(listener) => {
            println!("metrics on http://{}/metrics", listener.local_addr()?);
            let manager = manager.clone();
            // /healthz (the DaemonSet's probes) answers once the journal is undone and every
            // listener is bound: this server starts after both.
            let app = axum::Router::new()
                .route(
                    "/metrics",
                    axum::routing::get(move || {
                        let manager = manager.clone();
                        async move { manager.metrics.render() }
                    }),
                )
                .route("/healthz", axum::routing::get(|| async { "ok\n" }));
            Some(tokio::spawn(
                async move { axum::serve(listener, app).await },
            ))
        }
        None => None,
    };

    // A thread of its own: it never waits for the store, the runtime or a slow start.
    manager
        .spawn_reaper(Duration::from_millis(args.reap_interval_ms.max(1)))
        .context("starting the reaper")?;

    let unix = limits::capped(
        UnixListenerStream::new(listener),
        MAX_CONNECTIONS,
        "the unix socket".to_owned(),
    );
    let stopping = async {
        shutdown_signal().await;
        watches.close();
        let _ = stop.send(true);
    };
    limits::limited(tonic::transport::Server::builder(), "the unix socket")
        .add_service(service())
        .serve_with_incoming_shutdown(unix, stopping)
        .await
        .context("serving gRPC")?;

    // The TCP servers had the same signal; a call they still run does not hold the shutdown.
    for mut t in tcp_servers {
        if tokio::time::timeout(TCP_SHUTDOWN_GRACE, &mut t)
            .await
            .is_err()
        {
            t.abort();
        }
    }
    if let Some(m) = metrics_server {
        m.abort();
    }
    let stopping = manager.clone();
    tokio::task::spawn_blocking(move || stopping.shutdown("daemon shutdown")).await?;
    drop(socket);
    println!("chaos-daemon stopped");
    Ok(())
}

/// How long the TCP servers may take, after the signal and the socket's server, to answer
/// the calls they still run.
const TCP_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon still stops with its process (faults die with it).
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn create_private_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {} {:o}", dir.display(), mode))
}

/// The server of `--tcp`: mutual TLS with the daemon's certificate and key and the client CA.
fn tls_server(args: &ServeArgs) -> anyhow::Result<tonic::transport::Server> {
    let read = |p: &Option<PathBuf>| -> anyhow::Result<Vec<u8>> {
        let p = p
            .as_ref()
            .context("--tcp needs --tls-cert, --tls-key and --client-ca")?;
        std::fs::read(p).with_context(|| format!("reading {}", p.display()))
    };
    let tls = ServerTlsConfig::new()
        .timeout(TLS_HANDSHAKE_TIMEOUT)
        .identity(Identity::from_pem(
            read(&args.tls_cert)?,
            read(&args.tls_key)?,
        ))
        .client_ca_root(Certificate::from_pem(read(&args.client_ca)?));
    tonic::transport::Server::builder()
        .tls_config(tls)
        .context("TLS configuration")
}

/// The connections of TCP listener `tcp` (`what` in logs), at most [`MAX_CONNECTIONS`] open.
fn capped_tcp(
    tcp: tokio::net::TcpListener,
    what: String,
) -> impl tokio_stream::Stream<Item = std::io::Result<limits::Capped<tokio::net::TcpStream>>> {
    limits::capped(TcpListenerStream::new(tcp), MAX_CONNECTIONS, what)
}

/// Binds TCP address `addr` (`what` names it in the error).
async fn bind_tcp(
    addr: std::net::SocketAddr,
    what: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what}{addr}"))
}

/// The daemon's socket file, removed when dropped: at shutdown, or when the start fails after
/// it was bound.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the socket so that it is never accessible to others, not even for an instant: the
/// umask is 0177 while it is created. A stale socket from a dead daemon is replaced.
fn bind_private_socket(path: &Path) -> anyhow::Result<(UnixListener, SocketFile)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!("another daemon is already listening on {}", path.display());
    }
    let _ = std::fs::remove_file(path);
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    let file = SocketFile(path.to_path_buf());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, file))
}
