//! The HTTP side of the guard tests: a real `chaos-workload http-serve` process (inside a target
//! cgroup when given) and the TCP dependency its requests connect to, load driven from outside
//! every test cgroup, and a small blocking GET for the tests' own requests (the workload's
//! endpoints, Prometheus' API). Every process and thread stops on drop.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{Tally, WORKLOAD, spawn_ready, workload};

/// Longest wait of [`get`] for a connection or an answer.
const GET_TIMEOUT: Duration = Duration::from_secs(5);

/// A loopback TCP listener on a thread of the test process that accepts every connection and
/// closes it: the dependency the workload's requests `connect()` to. Dropping it closes the
/// listener, after which connects to its address are refused (`ECONNREFUSED`).
pub struct Dependency {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Dependency {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the dependency");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Acquire) {
                    break;
                }
                if conn.is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Dependency {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the blocked accept(), which then sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, GET_TIMEOUT);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `chaos-workload http-serve` process, ready (listening) once `start` returns; killed on drop.
pub struct HttpWorkload {
    child: Child,
    addr: SocketAddr,
}

impl HttpWorkload {
    /// Starts the server inside `cgroup` (when given) with `dependency` and `extra_args` (e.g.
    /// `["--error-ratio", "0.2"]` or `["--dependency-timeout-ms", "500"]`).
    pub fn start(cgroup: Option<&Path>, dependency: SocketAddr, extra_args: &[&str]) -> Self {
        let mut cmd = Command::new(WORKLOAD);
        if let Some(cg) = cgroup {
            cmd.arg("--cgroup").arg(cg);
        }
        cmd.args(["http-serve", "--listen", "127.0.0.1:0", "--dependency"])
            .arg(dependency.to_string())
            .args(extra_args);
        let (child, port) = spawn_ready(&mut cmd);
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HttpWorkload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Open-loop load in the background: a `chaos-workload http-load` process outside every test
/// cgroup sending `rps` GETs per second to a URL, for at most ten minutes; killed on drop.
pub struct Load {
    child: Child,
}

impl Load {
    pub fn start(url: &str, rps: u64) -> Self {
        let child = Command::new(WORKLOAD)
            .args(["http-load", "--url", url, "--rps", &rps.to_string()])
            .args(["--duration-ms", "600000"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn chaos-workload http-load");
        Self { child }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chaos-workload http-load` for `duration` in the foreground: `ok` (2xx) and `status_CODE`
/// counts.
pub fn http_load(url: &str, rps: u64, duration: Duration) -> Tally {
    let rps = rps.to_string();
    let ms = duration.as_millis().to_string();
    workload(
        None,
        &[
            "http-load",
            "--url",
            url,
            "--rps",
            &rps,
            "--duration-ms",
            &ms,
        ],
    )
}

/// One blocking `GET` of `url` (`http://IP:PORT/PATH?QUERY`, already percent-encoded) over
/// HTTP/1.0 (so the answer is never chunked): its status and body.
pub fn get(url: &str) -> io::Result<(u16, String)> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {url}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("not http://"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| invalid("not an IP:PORT address"))?;
    let mut s = TcpStream::connect_timeout(&addr, GET_TIMEOUT)?;
    s.set_read_timeout(Some(GET_TIMEOUT))?;
    s.set_write_timeout(Some(GET_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no HTTP answer from"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid("no status line from"))?;
    Ok((status, body.to_owned()))
}

/// `text` percent-encoded for a URL's query (every byte but A-Z a-z 0-9 - . _ ~).
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
