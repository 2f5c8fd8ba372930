//! What the demo creates and must remove, also when it fails: child processes that announce
//! themselves on their first stdout line ([`Proc`], killed on drop), its cgroup and private
//! directory ([`DemoDir`], removed on drop), and the small blocking HTTP GET it reads the
//! daemon's metrics and Prometheus' API with.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};

/// Longest wait of [`http_get`] for a connection or an answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// A child process that announced itself on its first stdout line; killed on drop.
pub struct Proc {
    child: Child,
    stdout: BufReader<ChildStdout>,
    pub first: String,
    pub port: u16,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("{cmd:?}"))?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        if first.is_empty() {
            bail!("{cmd:?} exited before announcing itself (see its error above)");
        }
        Ok(Self {
            child,
            stdout,
            first: first.trim().to_string(),
            port: 0,
        })
    }

    /// A workload that prints `ready PORT`.
    pub fn ready(cmd: &mut Command) -> anyhow::Result<Self> {
        let mut p = Self::spawn(cmd)?;
        p.port = p
            .first
            .strip_prefix("ready ")
            .and_then(|s| s.parse().ok())
            .with_context(|| p.first.clone())?;
        Ok(p)
    }

    pub fn next_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().to_string())
    }

    /// A udp-recv's count once it went idle.
    pub fn received(mut self) -> anyhow::Result<u64> {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        rest.trim()
            .strip_prefix("received=")
            .and_then(|s| s.parse().ok())
            .with_context(|| rest.clone())
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> anyhow::Result<()> {
        // SAFETY: plain syscall on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if !self.child.wait()?.success() {
            bail!("chaos-daemon did not stop cleanly");
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory the demo created: its cgroup (processes in it are killed first) or its private
/// state directory. Removed on drop, also when the demo fails.
pub struct DemoDir(pub PathBuf, bool);

impl DemoDir {
    pub fn cgroup(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir(path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self(path.to_path_buf(), true))
    }

    pub fn private(path: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path.to_path_buf(), false))
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
            return;
        }
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("xtask demo: could not remove {}", self.0.display());
    }
}

/// One blocking `GET` of `url` (`http://IP:PORT/PATH?QUERY`, already percent-encoded) over
/// HTTP/1.0, so the answer is never chunked: its status and body.
pub fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let addr: SocketAddr = authority
        .parse()
        .with_context(|| format!("not an IP:PORT address: {url}"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).with_context(|| format!("GET {url}"))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .with_context(|| format!("GET {url}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP answer from {url}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line from {url}: {head}"))?;
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

/// The cgroup2 mount, as util-linux's findmnt reports it.
pub fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let out = Command::new("findmnt")
        .args(["-n", "-t", "cgroup2", "-o", "TARGET"])
        .output()?;
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string);
    first
        .map(PathBuf::from)
        .context("no cgroup2 filesystem is mounted")
}
