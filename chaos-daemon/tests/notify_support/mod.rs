//! Loopback servers for the notification tests, each a real server stopped by its `Drop`: an
//! HTTP receiver that records every request ([`Receiver`]), a minimal SMTP server that records
//! each transaction ([`SmtpSink`]), a port that accepts connections and never answers
//! ([`Hanging`]), a closed port ([`closed_port`]), and a real Debian Alertmanager
//! ([`Alertmanager`]); plus temp dirs and polling.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::State,
    http::{Request, StatusCode},
};

/// Polls `done` every 10 ms until it holds or `limit` passes; true if it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("chaos-notify-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// Writes `name` with `content` and returns its path.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request the [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
}

type Log = Arc<Mutex<Vec<Recorded>>>;
type Statuses = Arc<Mutex<HashMap<String, u16>>>;

/// An HTTP server on 127.0.0.1 that records every request and answers 202, or the status set
/// for its path with [`Receiver::answer`].
pub struct Receiver {
    pub base: String,
    log: Log,
    statuses: Statuses,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind receiver");
        let base = format!(
            "http://{}",
            listener.local_addr().expect("receiver address")
        );
        let log = Log::default();
        let statuses = Statuses::default();
        let app = Router::new()
            .fallback(record)
            .with_state((Arc::clone(&log), Arc::clone(&statuses)));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            base,
            log,
            statuses,
            runtime: Some(runtime),
        }
    }

    /// Answers requests to `path` with `status` from now on.
    pub fn answer(&self, path: &str, status: u16) {
        self.statuses
            .lock()
            .expect("statuses")
            .insert(path.to_owned(), status);
    }

    /// Every request so far, in arrival order.
    pub fn all(&self) -> Vec<Recorded> {
        self.log.lock().expect("log").clone()
    }

    /// The requests to `path` so far, in arrival order.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.all().into_iter().filter(|r| r.path == path).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn record(
    State((log, statuses)): State<(Log, Statuses)>,
    request: Request<Body>,
) -> StatusCode {
    let path = request.uri().path().to_owned();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let bytes = to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    log.lock().expect("log").push(Recorded {
        path: path.clone(),
        headers,
        body,
    });
    let status = statuses.lock().expect("statuses").get(&path).copied();
    StatusCode::from_u16(status.unwrap_or(202)).unwrap_or(StatusCode::ACCEPTED)
}

/// One SMTP transaction the [`SmtpSink`] accepted.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub auth: Option<String>,
    pub from: String,
    pub rcpt: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server on 127.0.0.1 (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) that records
/// what it is sent; no TLS.
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SmtpSink {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind smtp");
        let port = listener.local_addr().expect("smtp address").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mails, stop) = (Arc::clone(&mails), Arc::clone(&stop));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(mail) = stream.and_then(smtp_session) {
                        mails.lock().expect("mails").push(mail);
                    }
                }
            })
        };
        Self {
            port,
            mails,
            stop,
            thread: Some(thread),
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("mails").clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn smtp_session(stream: TcpStream) -> std::io::Result<Mail> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let mut mail = Mail::default();
    out.write_all(b"220 sink ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(mail);
        }
        let command = line.trim_end();
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n",
            "AUTH" => {
                mail.auth = Some(command.to_owned());
                b"235 2.7.0 ok\r\n"
            }
            "MAIL" => {
                mail.from = command.to_owned();
                b"250 ok\r\n"
            }
            "RCPT" => {
                mail.rcpt.push(command.to_owned());
                b"250 ok\r\n"
            }
            "DATA" => {
                out.write_all(b"354 go on\r\n")?;
                loop {
                    line.clear();
                    if lines.read_line(&mut line)? == 0 || line == ".\r\n" {
                        break;
                    }
                    mail.data.push_str(&line);
                }
                b"250 queued\r\n"
            }
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(mail);
            }
            _ => b"250 ok\r\n",
        };
        out.write_all(reply)?;
    }
}

/// A port that accepts connections and never answers; counts the connections.
pub struct Hanging {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hanging {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hanging");
        let port = listener.local_addr().expect("hanging address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            thread::spawn(move || {
                let mut held = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    held.extend(stream.ok());
                }
                for stream in held {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            })
        };
        Self {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A loopback port nothing listens on (bound, then closed).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A plain HTTP/1.0 GET on loopback: the status code and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Debian's Alertmanager.
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// A real Alertmanager on a loopback port with a temp config and storage, killed on drop.
pub struct Alertmanager {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Alertmanager {
    pub fn start() -> Self {
        assert!(
            Path::new(ALERTMANAGER).exists(),
            "{ALERTMANAGER} is missing: apt-get install prometheus-alertmanager (.ci/run does)"
        );
        let dir = TempDir::new("alertmanager");
        let config = dir.file(
            "alertmanager.yml",
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        );
        let port = closed_port();
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        let mut alertmanager = Self {
            port,
            child,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            matches!(http_get(port, "/-/ready"), Ok((200, _)))
        });
        if !ready {
            let status = alertmanager.child.try_wait();
            panic!("alertmanager did not become ready on port {port} (exit: {status:?})");
        }
        alertmanager
    }

    /// `GET /api/v2/alerts`.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_get(self.port, "/api/v2/alerts").expect("GET /api/v2/alerts");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("alerts JSON")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
