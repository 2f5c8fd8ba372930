//! Debian's Prometheus for the demo's guard part: installed with apt when missing, its config
//! and storage written into the demo's private directory, listening on a free loopback port and
//! scraping one target every second; queried through its HTTP API. Killed on drop.
//!
//! Prometheus 2.x applies scrape targets on its scrape manager's 5 s reload tick, so the first
//! scrape comes about 5 s after start and a `rate()` has data one scrape later.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::process::{http_get, url_encode};

/// Debian's binary (package `prometheus`).
pub const BIN: &str = "/usr/bin/prometheus";
/// How often Prometheus scrapes the workload.
pub const SCRAPE: Duration = Duration::from_secs(1);
/// Longest wait for the HTTP API to answer `/-/ready`.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// Tries with a fresh port when Prometheus exits at start (the free port was taken meanwhile).
const PORT_TRIES: usize = 3;

/// Installs Debian's `prometheus` when it is missing.
pub fn ensure_installed() -> anyhow::Result<()> {
    crate::apt::ensure("demo", &["prometheus"])?;
    if !Path::new(BIN).exists() {
        bail!("apt-get installed prometheus but {BIN} is still missing");
    }
    Ok(())
}

/// A running Prometheus scraping one target's `/metrics`.
pub struct Prometheus {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus in `dir` (created) scraping `target` every [`SCRAPE`]; returns once its
    /// API answers.
    pub fn start(dir: &Path, target: SocketAddr) -> anyhow::Result<Self> {
        std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("prometheus.yml");
        let every = format!("{}ms", SCRAPE.as_millis());
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {every}\n  scrape_timeout: {every}\n  \
                 evaluation_interval: {every}\nscrape_configs:\n  - job_name: demo-http\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let log = dir.join("prometheus.log");
        for attempt in 1..=PORT_TRIES {
            let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let mut child = Command::new(BIN)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .with_context(|| format!("spawn {BIN}"))?;
            match wait_ready(&mut child, addr) {
                Ok(()) => {
                    return Ok(Self {
                        child,
                        url: format!("http://{addr}"),
                        log,
                    });
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if attempt == PORT_TRIES {
                        bail!("prometheus on {addr}: {why}\n{text}");
                    }
                    eprintln!("xtask demo: prometheus on {addr}: {why}; retrying on another port");
                }
            }
        }
        unreachable!("the last attempt returns or fails")
    }

    /// An instant query's one number: `None` for an empty result; an error for an unreachable
    /// Prometheus, a rejected query or more than one series.
    pub fn query(&self, promql: &str) -> anyhow::Result<Option<f64>> {
        let url = format!("{}/api/v1/query?query={}", self.url, url_encode(promql));
        let (status, body) = http_get(&url)?;
        let json: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("{promql}: HTTP {status}, not JSON: {body}"))?;
        if json["status"] != "success" {
            bail!("{promql}: HTTP {status}: {body}");
        }
        let result = &json["data"]["result"];
        match result.as_array().map(Vec::as_slice) {
            Some([]) => Ok(None),
            Some([one]) => one["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .map(Some)
                .with_context(|| format!("{promql}: no value in {body}")),
            _ => bail!("{promql}: not one series: {body}"),
        }
    }

    /// Waits until `promql` gives a number above zero; how long that took.
    pub fn wait_for_data(&self, promql: &str, within: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        loop {
            let last = self.query(promql);
            if matches!(last, Ok(Some(v)) if v > 0.0) {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > within {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("{promql}: no data within {within:?}; last {last:?}\n{log}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `child`'s API at `addr` answers `/-/ready` with 200.
fn wait_ready(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let until = Instant::now() + READY_WITHIN;
    let url = format!("http://{addr}/-/ready");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited at start with {status}"));
        }
        if matches!(http_get(&url), Ok((200, _))) {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!(
                "/-/ready did not answer 200 within {READY_WITHIN:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}
