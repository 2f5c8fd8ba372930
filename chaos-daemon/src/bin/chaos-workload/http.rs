//! The HTTP workload the guard tests hurt and watch: `http-serve`, a real HTTP/1.1 server whose
//! answers depend on a TCP dependency and which exports the common HTTP server metrics for
//! Prometheus, and `http-load`, an open-loop client that drives it from outside its cgroup.
//!
//! `http-serve` opens one real `connect()` to the dependency for each `GET /` and `GET /healthz`,
//! so a `dependency_failure` fault on the server's cgroup (or a dependency that is down) turns
//! them into 503s with the errno name in the body. `GET /metrics` serves, in Prometheus' text
//! format (requests to it are not counted):
//! - `http_requests_total{handler, code}`, counter; the codes each handler answers are created
//!   at zero, so a first error shows up in `rate()` at once instead of one scrape late;
//! - `http_request_duration_seconds{handler}`, histogram (buckets 5 ms to 5 s);
//! - `db_client_connection_create_time_seconds`, histogram of the dependency `connect()` time,
//!   failed attempts included (OpenTelemetry's `db.client.connection.create_time`).

use std::{
    io::{self, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use super::{Tally, sockopt::close_with_reset};

/// Longest wait for a request head, a response, or a client's connect.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Buckets of both histograms, in seconds (the Prometheus client libraries' defaults).
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// The handlers that are counted, with the codes each may answer (created at zero).
const HANDLERS: [(&str, &[u16]); 2] = [("/", &[200, 500, 503]), ("/healthz", &[200, 503])];
/// The `handler` label of requests to any other path.
const OTHER: &str = "other";
/// Most requests `http-load` keeps in flight; a request due beyond it counts as `skipped`.
const MAX_IN_FLIGHT: usize = 512;
/// Highest `--rps` and longest `--duration-ms` of `http-load`.
const MAX_RPS: u64 = 5_000;
const MAX_DURATION_MS: u64 = 3_600_000;

/// What `http-serve` was asked to do.
pub struct Serve {
    pub listen: SocketAddr,
    pub dependency: SocketAddr,
    pub dependency_timeout: Duration,
    /// Fraction (0 to 1) of the `/` requests whose dependency check passed that answer 500.
    pub error_ratio: f64,
}

/// Serves until killed. Prints `ready PORT` once listening.
pub fn serve(args: Serve) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.error_ratio) {
        bail!(
            "--error-ratio: {} is not allowed; expected a fraction from 0 to 1",
            args.error_ratio
        );
    }
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("--listen {}", args.listen))?;
    // std listens with a backlog of 128; Linux lets listen() raise it for connect bursts.
    // SAFETY: plain syscall on a socket we own.
    if unsafe { libc::listen(listener.as_raw_fd(), 4096) } != 0 {
        return Err(io::Error::last_os_error()).context("listen");
    }
    let server = Arc::new(Server {
        metrics: Metrics::new()?,
        dependency: args.dependency,
        dependency_timeout: args.dependency_timeout,
        error_ratio: args.error_ratio,
        passed: AtomicU64::new(0),
    });
    println!("ready {}", listener.local_addr()?.port());
    io::stdout().flush()?;
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
                let server = server.clone();
                std::thread::spawn(move || server.handle(conn));
            }
            // EMFILE and the like: the clients see refused or slow connects; keep serving.
            Err(e) => {
                eprintln!("http-serve: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Ok(())
}

struct Server {
    metrics: Metrics,
    dependency: SocketAddr,
    dependency_timeout: Duration,
    error_ratio: f64,
    /// `/` requests whose dependency check passed (the `--error-ratio` sequence).
    passed: AtomicU64,
}

/// An answer: status, content type and body.
struct Answer {
    code: u16,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn text(code: u16, body: impl Into<String>) -> Self {
        Self {
            code,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

impl Server {
    fn handle(&self, mut conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
        let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
        let started = Instant::now();
        let (handler, answer) = match read_head(&mut conn) {
            Ok(Some((method, path))) => self.route(&method, &path),
            Ok(None) => (Some(OTHER), Answer::text(400, "bad request\n")),
            Err(_) => return,
        };
        let _ = write_answer(&mut conn, &answer);
        let _ = conn.shutdown(Shutdown::Write);
        if let Some(handler) = handler {
            let code = answer.code.to_string();
            self.metrics
                .requests
                .with_label_values(&[handler, &code])
                .inc();
            self.metrics
                .duration
                .with_label_values(&[handler])
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// The handler label (None: not counted) and the answer.
    fn route(&self, method: &str, path: &str) -> (Option<&'static str>, Answer) {
        let path = path.split('?').next().unwrap_or(path);
        let handler = HANDLERS.iter().map(|(h, _)| *h).find(|h| *h == path);
        match (method, path) {
            ("GET", "/metrics") => (None, self.metrics.render()),
            ("GET", "/") => (handler, self.root()),
            ("GET", "/healthz") => (handler, self.dependency_check(|| Answer::text(200, "ok\n"))),
            (_, "/" | "/healthz") => (handler, Answer::text(405, "only GET\n")),
            _ => (Some(OTHER), Answer::text(404, "not found\n")),
        }
    }

    fn root(&self) -> Answer {
        self.dependency_check(|| {
            let n = self.passed.fetch_add(1, Ordering::Relaxed) as f64;
            // Exactly `error_ratio` of the passed requests, spread evenly (every k-th for 1/k).
            if ((n + 1.0) * self.error_ratio).floor() > (n * self.error_ratio).floor() {
                Answer::text(500, "injected by --error-ratio\n")
            } else {
                Answer::text(200, "ok\n")
            }
        })
    }

    /// One real `connect()` to the dependency: `ok()` on success, else 503 naming the errno.
    fn dependency_check(&self, ok: impl FnOnce() -> Answer) -> Answer {
        let t = Instant::now();
        let result = TcpStream::connect_timeout(&self.dependency, self.dependency_timeout);
        self.metrics.connect.observe(t.elapsed().as_secs_f64());
        match result {
            Ok(s) => {
                close_with_reset(s);
                ok()
            }
            Err(e) => Answer::text(
                503,
                format!("dependency {}: {}\n", self.dependency, errno_name(&e)),
            ),
        }
    }
}

/// Reads the request head; `Ok(None)` when it is not `METHOD PATH HTTP/x`.
fn read_head(conn: &mut TcpStream) -> io::Result<Option<(String, String)>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.lines().next().unwrap_or("").split(' ');
    Ok(match (words.next(), words.next(), words.next()) {
        (Some(method), Some(path), Some(v)) if v.starts_with("HTTP/") && path.starts_with('/') => {
            Some((method.to_owned(), path.to_owned()))
        }
        _ => None,
    })
}

fn write_answer(conn: &mut TcpStream, a: &Answer) -> io::Result<()> {
    let reason = match a.code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        a.code,
        a.content_type,
        a.body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(a.body.as_bytes())
}

/// The errno name of a failed call (`ETIMEDOUT` for every timeout, std's own included), else
/// `OTHER`.
fn errno_name(e: &io::Error) -> String {
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock, _) => "ETIMEDOUT".into(),
        (_, Some(n)) => format!("{:?}", nix::errno::Errno::from_raw(n)),
        (_, None) => "OTHER".into(),
    }
}

struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    connect: Histogram,
}

impl Metrics {
    fn new() -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by handler and status code.",
            ),
            &["handler", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from a request's arrival to its answer written, by handler.",
            )
            .buckets(BUCKETS.to_vec()),
            &["handler"],
        )?;
        let connect = Histogram::with_opts(
            HistogramOpts::new(
                "db_client_connection_create_time_seconds",
                "Time of each connect() to the dependency, failed attempts included.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let registry = Registry::new();
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(connect.clone()))?;
        for (handler, codes) in HANDLERS {
            duration.with_label_values(&[handler]);
            for code in codes {
                requests.with_label_values(&[handler, &code.to_string()]);
            }
        }
        Ok(Self {
            registry,
            requests,
            duration,
            connect,
        })
    }

    fn render(&self) -> Answer {
        let encoder = TextEncoder::new();
        let mut buf = Vec::new();
        match encoder.encode(&self.registry.gather(), &mut buf) {
            Ok(()) => Answer {
                code: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: String::from_utf8_lossy(&buf).into_owned(),
            },
            Err(e) => Answer::text(500, format!("encoding the metrics: {e}\n")),
        }
    }
}

/// Sends `rps` GET requests per second to `url` (`http://IP:PORT/PATH`) for `duration`, each at
/// its scheduled time whatever the earlier ones are doing (open loop), then waits for the
/// answers. Counts 2xx as `ok`, other answers as `status_CODE`, transport errors by errno name,
/// and requests not sent because [`MAX_IN_FLIGHT`] were pending as `skipped`.
pub fn load(url: &str, rps: u64, duration_ms: u64, tally: &mut Tally) -> anyhow::Result<()> {
    if !(1..=MAX_RPS).contains(&rps) {
        bail!("--rps: {rps} is not allowed; expected 1 to {MAX_RPS}");
    }
    if duration_ms > MAX_DURATION_MS {
        bail!("--duration-ms: {duration_ms} is not allowed; expected 0 to {MAX_DURATION_MS}");
    }
    let (addr, path) = parse_url(url)?;
    let path: Arc<str> = path.into();
    let total = rps * duration_ms / 1000;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let mut skipped = 0u64;
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rps);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            skipped += 1;
            continue;
        }
        let (tx, path, slots) = (tx.clone(), path.clone(), in_flight.clone());
        let spawned = std::thread::Builder::new().spawn(move || {
            let t = Instant::now();
            let result = get_status(addr, &path);
            let _ = tx.send((result, t.elapsed()));
            slots.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err(e) = spawned {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            *tally.errors.entry(errno_name(&e)).or_default() += 1;
        }
    }
    drop(tx);
    for (result, took) in rx {
        tally.nanos.push(took.as_nanos() as u64);
        let key = match result {
            Ok(code) if (200..300).contains(&code) => {
                tally.ok += 1;
                continue;
            }
            Ok(code) => format!("status_{code}"),
            Err(e) => errno_name(&e),
        };
        *tally.errors.entry(key).or_default() += 1;
    }
    if skipped > 0 {
        tally.errors.insert("skipped".into(), skipped);
    }
    Ok(())
}

/// `http://IP:PORT[/PATH]` as the address and the path (`/` when none).
fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let bad = || {
        anyhow::anyhow!(
            "--url: {url:?} is not allowed; expected http://IP:PORT/PATH (no host names)"
        )
    };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let addr = authority.parse().map_err(|_| bad())?;
    Ok((addr, path.to_owned()))
}

/// One `GET path` on a fresh connection; the answer's status code.
fn get_status(addr: SocketAddr, path: &str) -> io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
    std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP answer"))
}
