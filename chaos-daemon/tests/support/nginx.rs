//! A real nginx (Debian's `/usr/sbin/nginx`) serving one static file on loopback, started
//! inside a target cgroup or outside every test cgroup; free loopback ports for it; and a
//! plain HTTP/1.1 client that reports what a user sees: the status, the body, or a timeout.
//! nginx runs in the foreground in one process, with every path it writes in a private
//! temporary directory, and is killed on drop.

use std::{
    fmt::Write as _,
    io::{self, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use super::{TempDir, start_in_cgroup};

/// Where Debian installs nginx (package `nginx`).
pub const NGINX: &str = "/usr/sbin/nginx";

/// The path nginx serves [`Nginx::body`] at.
pub const FILE: &str = "/file";

/// The file nginx serves: `len` pseudo-random bytes (fixed seed), without the byte sequence
/// `HTTP` anywhere, so that no part of it can pass for a status line.
pub fn file_body(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut body: Vec<u8> = (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u8
        })
        .collect();
    for i in 0..body.len().saturating_sub(3) {
        if &body[i..i + 4] == b"HTTP" {
            body[i] = b'h';
        }
    }
    body
}

/// `n` consecutive loopback TCP ports that nothing listens on now, below the ephemeral range
/// (so that no client socket takes one meanwhile), different on each call and per process.
pub fn free_ports(n: u16) -> Vec<u16> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let span = 12_000u64;
    let mut base =
        (u64::from(std::process::id()) * 97 + CALLS.fetch_add(1, Ordering::Relaxed) * 16) % span;
    for _ in 0..span {
        let first = 15_000 + base as u16;
        let ports: Vec<u16> = (first..first + n).collect();
        let all_free = ports
            .iter()
            .all(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return ports;
        }
        base = (base + u64::from(n)) % span;
    }
    panic!("no {n} consecutive free loopback ports in 15000..27000");
}

/// One `listen` of an [`Nginx`].
#[derive(Debug, Clone, Copy)]
pub enum Listen {
    Http(u16),
    /// HTTPS with a self-signed certificate for `localhost` and `127.0.0.1`.
    Https(u16),
}

impl Listen {
    fn port(self) -> u16 {
        match self {
            Self::Http(p) | Self::Https(p) => p,
        }
    }
}

/// A foreground nginx serving `body` at [`FILE`] on 127.0.0.1; killed on drop.
pub struct Nginx {
    child: Child,
    dir: TempDir,
    pub body: Vec<u8>,
}

impl Nginx {
    /// Starts nginx (inside `cgroup` when given) and waits until every port accepts.
    pub fn start(cgroup: Option<&Path>, listen: &[Listen], body: &[u8]) -> Self {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: install nginx (apt-get install -y nginx)"
        );
        let dir = TempDir::new("nginx");
        let d = dir.0.display().to_string();
        std::fs::create_dir_all(dir.0.join("www")).unwrap();
        std::fs::write(dir.0.join("www").join(&FILE[1..]), body).unwrap();
        let mut listens = String::new();
        for l in listen {
            match l {
                Listen::Http(p) => writeln!(listens, "    listen 127.0.0.1:{p};").unwrap(),
                Listen::Https(p) => writeln!(listens, "    listen 127.0.0.1:{p} ssl;").unwrap(),
            }
        }
        if listen.iter().any(|l| matches!(l, Listen::Https(_))) {
            let cert =
                rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                    .expect("self-signed certificate");
            std::fs::write(dir.0.join("cert.pem"), cert.cert.pem()).unwrap();
            std::fs::write(dir.0.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
            writeln!(listens, "    ssl_certificate {d}/cert.pem;").unwrap();
            writeln!(listens, "    ssl_certificate_key {d}/key.pem;").unwrap();
        }
        let conf = format!(
            "user root;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 client_body_temp_path {d}/client_body;\n\
             \x20 proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n\
             \x20 uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n\
             \x20 default_type application/octet-stream;\n\
             \x20 server {{\n\
             {listens}\
             \x20   root {d}/www;\n\
             \x20 }}\n\
             }}\n"
        );
        std::fs::write(dir.0.join("nginx.conf"), conf).unwrap();
        let mut cmd = Command::new(NGINX);
        cmd.arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.0.join("nginx.conf"))
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .args(["-g", "daemon off; master_process off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cg) = cgroup {
            start_in_cgroup(&mut cmd, cg);
        }
        let child = cmd.spawn().expect("spawn nginx");
        let mut nginx = Self {
            child,
            dir,
            body: body.to_vec(),
        };
        let until = Instant::now() + Duration::from_secs(10);
        for l in listen {
            let addr = SocketAddr::from(([127, 0, 0, 1], l.port()));
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if let Ok(Some(status)) = nginx.child.try_wait() {
                    panic!("nginx exited ({status}): {}", nginx.error_log());
                }
                assert!(
                    Instant::now() < until,
                    "nginx does not accept on {addr} within 10 s: {}",
                    nginx.error_log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        nginx
    }

    /// nginx's error log, for the messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }

    /// Its directory (certificate, configuration, logs).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A complete HTTP response: the status of its status line, its head, its body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// What a GET gave the client.
#[derive(Debug)]
pub enum Fetched {
    /// The server closed the connection after a parsable response.
    Response(Response),
    /// No byte for `read_timeout`; what had arrived until then.
    TimedOut(Vec<u8>),
    /// Anything else: an I/O error, or bytes that are no HTTP/1.x response.
    Failed(String),
}

impl Fetched {
    /// The response, or a panic naming what came instead.
    pub fn response(self, what: &str) -> Response {
        match self {
            Self::Response(r) => r,
            other => panic!("{what}: no response: {}", other.describe()),
        }
    }

    /// For the messages: a short description (the head, not the body).
    pub fn describe(&self) -> String {
        match self {
            Self::Response(r) => format!("{} ({} body bytes)", r.head, r.body.len()),
            Self::TimedOut(got) => format!("timed out after {} bytes", got.len()),
            Self::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// `GET path` over a new connection to 127.0.0.1:`port` with `Connection: close`, read to
/// the server's close; a read that waits longer than `read_timeout` ends it as
/// [`Fetched::TimedOut`].
pub fn get(port: u16, path: &str, read_timeout: Duration) -> Fetched {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => return Fetched::Failed(format!("connect {addr}: {e}")),
    };
    s.set_read_timeout(Some(read_timeout)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if let Err(e) = s.write_all(request.as_bytes()) {
        return Fetched::Failed(format!("send to {addr}: {e}"));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let _ = s.shutdown(Shutdown::Both);
                return Fetched::TimedOut(got);
            }
            Err(e) => return Fetched::Failed(format!("read from {addr}: {e}")),
        }
    }
    parse(got)
}

/// Splits a whole response into status, head and body; checks the body's length against
/// `Content-Length`.
fn parse(got: Vec<u8>) -> Fetched {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Fetched::Failed(format!(
            "no end of head in {} bytes: {:?}",
            got.len(),
            String::from_utf8_lossy(&got[..got.len().min(200)])
        ));
    };
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let body = got[end + 4..].to_vec();
    let status_line = head.lines().next().unwrap_or("");
    let status = match status_line.split(' ').collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/1.") && code.len() == 3 => code.parse(),
        _ => return Fetched::Failed(format!("not an HTTP/1.x status line: {status_line:?}")),
    };
    let Ok(status) = status else {
        return Fetched::Failed(format!("no status code in {status_line:?}"));
    };
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    if let Some(length) = length
        && length != body.len()
    {
        return Fetched::Failed(format!(
            "Content-Length {length} but {} body bytes: {head}",
            body.len()
        ));
    }
    Fetched::Response(Response { status, head, body })
}
