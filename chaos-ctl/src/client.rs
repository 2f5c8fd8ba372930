//! Connecting to a daemon, and saying in one line why not.
//!
//! Addresses: `unix:///path/to.sock` (the default, [`DEFAULT_ADDR`]), `https://host:port` with
//! mutual TLS (`--ca`, `--cert`, `--key`), or `http://127.0.0.1:port` for a daemon's insecure
//! loopback listener. A failure is a [`ConnectError`]: the address, what went wrong (no socket,
//! not a socket, permission, a stale socket, refused, timed out, name resolution, TLS) and what
//! to do about it.

use std::error::Error as StdError;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::{fmt, io, path::PathBuf, time::Duration};

use chaos_api::proto::chaos_daemon_client::ChaosDaemonClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

pub type Client = ChaosDaemonClient<Channel>;

/// The daemon's socket when `--daemon` is not given.
pub const DEFAULT_ADDR: &str = "unix:///run/chaos/daemon.sock";

/// How long a TCP connection may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The address forms, for messages.
const ADDRESS_FORMS: &str = "unix:///path, https://host:port";

/// Client certificate files for `https://` daemons.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Why the daemon at [`ConnectError::addr`] could not be reached. `Display` is one line: the
/// address, the problem and what to do.
#[derive(Debug)]
pub struct ConnectError {
    /// The address as given (`--daemon`, or a line of `--daemons`).
    pub addr: String,
    /// What went wrong.
    pub problem: Problem,
}

/// What went wrong when connecting.
#[derive(Debug)]
pub enum Problem {
    /// The address is none of the forms chaos-ctl knows.
    BadAddress,
    /// An `https://` address without this flag (`--ca`, `--cert` or `--key`).
    MissingTlsFlag(&'static str),
    /// A TLS file could not be read.
    TlsFile {
        flag: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// Nothing exists at the socket path.
    NoSocket,
    /// The path exists but is not a socket; says what it is ("a regular file", "a directory").
    NotASocket(&'static str),
    /// The socket (or its directory) is not accessible to this user; the socket's owner and mode
    /// when they could be read.
    SocketPermission { owner: Option<(u32, u32)> },
    /// The socket exists but nobody listens on it (a daemon that exited without removing it).
    StaleSocket,
    /// Nothing listens at the TCP address.
    Refused,
    /// The TCP connection did not complete in time.
    TimedOut,
    /// The host name could not be resolved.
    Resolve(String),
    /// The TLS setup or handshake failed.
    Tls(String),
    /// Anything else, with the underlying errors.
    Other(String),
}

impl ConnectError {
    /// Whether the command line is at fault (a malformed address, a missing TLS flag) rather
    /// than the daemon or the network.
    pub fn is_usage(&self) -> bool {
        matches!(
            self.problem,
            Problem::BadAddress | Problem::MissingTlsFlag(_)
        )
    }

    fn socket_path(&self) -> &str {
        self.addr.strip_prefix("unix://").unwrap_or(&self.addr)
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = &self.addr;
        if let Problem::BadAddress = self.problem {
            return write!(
                f,
                "--daemon {addr:?}: expected unix:///path/to.sock, https://host:port (with --ca, \
                 --cert, --key) or http://127.0.0.1:port (a daemon's loopback listener)"
            );
        }
        write!(f, "cannot reach chaos-daemon at {addr}: ")?;
        match &self.problem {
            Problem::BadAddress => Ok(()), // said above, without the prefix
            Problem::MissingTlsFlag(flag) => write!(
                f,
                "an https:// daemon needs {flag} (mutual TLS: --ca CA.pem, --cert CERT.pem, \
                 --key KEY.pem)"
            ),
            Problem::TlsFile { flag, path, error } => {
                write!(f, "{flag} {}: {error}", path.display())
            }
            Problem::NoSocket => write!(
                f,
                "no such socket; start it with `sudo chaos-daemon serve` or pass --daemon ADDR \
                 ({ADDRESS_FORMS})"
            ),
            Problem::NotASocket(what) => write!(
                f,
                "{} is {what}, not a socket; pass the daemon's socket with --daemon \
                 unix:///PATH (its `chaos-daemon serve --socket`, by default {})",
                self.socket_path(),
                DEFAULT_ADDR.trim_start_matches("unix://")
            ),
            Problem::SocketPermission {
                owner: Some((uid, mode)),
            } => write!(
                f,
                "permission denied: the socket belongs to uid {uid} with mode {mode:04o}; run \
                 chaos-ctl as root (sudo chaos-ctl ...) or as the socket's owner"
            ),
            Problem::SocketPermission { owner: None } => write!(
                f,
                "permission denied: the socket's directory is not accessible to you; run \
                 chaos-ctl as root (sudo chaos-ctl ...) or as the socket's owner"
            ),
            Problem::StaleSocket => write!(
                f,
                "connection refused: the socket exists but no daemon listens on it (left behind \
                 by a daemon that exited?); start it with `sudo chaos-daemon serve`"
            ),
            Problem::Refused => write!(
                f,
                "connection refused: nothing listens there; is chaos-daemon serving on that \
                 port (`chaos-daemon serve --tcp ADDR ...`)? Or pass --daemon ADDR \
                 ({ADDRESS_FORMS})"
            ),
            Problem::TimedOut => write!(
                f,
                "no answer within {}s; check the host, the port and the firewalls between",
                CONNECT_TIMEOUT.as_secs()
            ),
            Problem::Resolve(error) => write!(f, "cannot resolve the host name ({error})"),
            Problem::Tls(error) => write!(
                f,
                "TLS failed: {error}; check --ca (the CA that signed the daemon's certificate), \
                 --cert and --key, and that the host name is in the daemon's certificate"
            ),
            Problem::Other(error) => f.write_str(error),
        }
    }
}

impl StdError for ConnectError {}

/// Connects to the daemon at `addr`.
pub async fn connect(addr: &str, tls: &TlsFiles) -> Result<Client, ConnectError> {
    connect_as(addr, tls, None).await
}

/// Connects to the daemon at `addr`; for `https://`, checks the daemon's certificate against
/// `server_name` instead of the address's host (a daemon pod reached by its IP, whose
/// certificate names the Service).
pub async fn connect_as(
    addr: &str,
    tls: &TlsFiles,
    server_name: Option<&str>,
) -> Result<Client, ConnectError> {
    let fail = |problem| ConnectError {
        addr: addr.to_owned(),
        problem,
    };
    let channel = if let Some(path) = addr.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        let dial = path.clone();
        // The URI is required by tonic but unused: the connector dials the socket.
        Endpoint::from_static("http://chaos-daemon.local")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = dial.clone();
                async move {
                    Ok::<_, io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                }
            }))
            .await
            .map_err(|e| fail(socket_problem(&path, &e)))?
    } else if addr.starts_with("https://") {
        let read = |file: &Option<PathBuf>, flag: &'static str| {
            let path = file.as_ref().ok_or(Problem::MissingTlsFlag(flag))?;
            std::fs::read(path).map_err(|error| Problem::TlsFile {
                flag,
                path: path.clone(),
                error,
            })
        };
        let (ca, cert, key) = read(&tls.ca, "--ca")
            .and_then(|ca| Ok((ca, read(&tls.cert, "--cert")?, read(&tls.key, "--key")?)))
            .map_err(fail)?;
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key));
        if let Some(name) = server_name {
            config = config.domain_name(name);
        }
        Endpoint::try_from(addr.to_owned())
            .map_err(|_| fail(Problem::BadAddress))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tls_config(config)
            .map_err(|e| fail(Problem::Tls(innermost(&e))))?
            .connect()
            .await
            .map_err(|e| fail(tcp_problem(&e, true)))?
    } else if addr.starts_with("http://") {
        Endpoint::try_from(addr.to_owned())
            .map_err(|_| fail(Problem::BadAddress))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|e| fail(tcp_problem(&e, false)))?
    } else {
        return Err(fail(Problem::BadAddress));
    };
    Ok(ChaosDaemonClient::new(channel))
}

/// Why dialing the socket at `path` failed.
fn socket_problem(path: &std::path::Path, error: &(dyn StdError + 'static)) -> Problem {
    let Some(io) = find_io(error) else {
        return Problem::Other(chain(error));
    };
    match io.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Problem::NoSocket,
        io::ErrorKind::PermissionDenied => Problem::SocketPermission {
            owner: std::fs::metadata(path)
                .ok()
                .map(|m| (m.uid(), m.mode() & 0o7777)),
        },
        // connect(2) says ECONNREFUSED for a path that is not a socket, too.
        io::ErrorKind::ConnectionRefused => match std::fs::metadata(path) {
            Ok(m) if !m.file_type().is_socket() => Problem::NotASocket(if m.is_dir() {
                "a directory"
            } else if m.is_file() {
                "a regular file"
            } else {
                "a special file"
            }),
            _ => Problem::StaleSocket,
        },
        _ => Problem::Other(chain(error)),
    }
}

/// Why a TCP (and, for `https`, TLS) connection failed.
fn tcp_problem(error: &(dyn StdError + 'static), https: bool) -> Problem {
    let text = chain(error);
    if let Some(io) = find_io(error) {
        match io.kind() {
            io::ErrorKind::ConnectionRefused => return Problem::Refused,
            io::ErrorKind::TimedOut => return Problem::TimedOut,
            _ => {}
        }
    }
    if text.starts_with("dns error") || text.contains(": dns error") {
        Problem::Resolve(innermost(error))
    } else if https {
        Problem::Tls(innermost(error))
    } else {
        Problem::Other(text)
    }
}

/// The first I/O error in `error`'s chain.
fn find_io<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// The messages of `error`'s chain, joined with `: `, each once (tonic repeats the cause).
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The last message of `error`'s chain: the root cause.
fn innermost(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
