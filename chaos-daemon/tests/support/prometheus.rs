//! A real Prometheus (Debian's `/usr/bin/prometheus`) for the guard tests: its config written
//! into a fresh temporary directory (scrape and evaluation interval as the test asks, one job
//! per target), its storage there too, listening on a free loopback port; queried through its
//! HTTP API. Killed (SIGKILL) and its directory removed on drop.
//!
//! Start-up: the HTTP API is ready about 0.1 s after exec, but Prometheus 2.x applies scrape
//! targets on its scrape manager's 5 s reload tick, so the first scrape comes about 5.2 s after
//! start; [`Prometheus::start`] waits for it (every target scraped once) before returning.

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    TempDir,
    http::{get, url_encode},
};

/// Debian's binary (`apt-get install prometheus`).
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// Longest wait for the HTTP API to answer `/-/ready`.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// Longest wait for every target's first scrape (the 5 s reload tick plus an interval).
const FIRST_SCRAPE_WITHIN: Duration = Duration::from_secs(20);
/// Prometheus' log file in its directory.
const LOG: &str = "prometheus.log";
/// Tries with a fresh port when Prometheus exits at start (the free port was taken meanwhile).
const PORT_TRIES: usize = 3;

/// A running Prometheus scraping the given targets' `/metrics`.
pub struct Prometheus {
    child: Option<Child>,
    addr: SocketAddr,
    dir: TempDir,
    /// How long `start` took, first scrape included.
    pub started_in: Duration,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every `scrape_interval` (also the evaluation
    /// interval and the scrape timeout; Prometheus accepts 1ms upward, in whole ms), with job
    /// `target<i>` for `targets[i]`, and waits until every target has been scraped once.
    /// Panics, naming the package to install, when the binary is missing.
    pub fn start(targets: &[SocketAddr], scrape_interval: Duration) -> Self {
        assert!(
            Path::new(PROMETHEUS_BIN).exists(),
            "{PROMETHEUS_BIN} is missing: the guard tests need a real Prometheus; \
             install it: apt-get install prometheus"
        );
        let t0 = Instant::now();
        let dir = TempDir::new("prometheus");
        let config = dir.0.join("prometheus.yml");
        std::fs::write(&config, config_text(targets, scrape_interval)).unwrap();
        for attempt in 1..=PORT_TRIES {
            let addr = free_port();
            let mut child = Command::new(PROMETHEUS_BIN)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.0.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.0.join(LOG)).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {PROMETHEUS_BIN}: {e}"));
            match wait_ready(&mut child, addr) {
                Ok(()) => {
                    let mut p = Self {
                        child: Some(child),
                        addr,
                        dir,
                        started_in: Duration::ZERO,
                    };
                    p.wait_first_scrape(targets.len());
                    p.started_in = t0.elapsed();
                    return p;
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(dir.0.join(LOG)).unwrap_or_default();
                    assert!(attempt < PORT_TRIES, "prometheus on {addr}: {why}\n{log}");
                    eprintln!("prometheus on {addr}: {why}; retrying on another port\n{log}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The job name of `targets[i]`.
    pub fn job(i: usize) -> String {
        format!("target{i}")
    }

    /// An instant query's one number: `Ok(None)` for an empty result, an error for an
    /// unreachable Prometheus, a rejected query or more than one series.
    pub fn try_query(&self, promql: &str) -> Result<Option<f64>, String> {
        let url = format!("{}/api/v1/query?query={}", self.url(), url_encode(promql));
        let (status, body) = get(&url).map_err(|e| format!("GET {url}: {e}"))?;
        let json: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("status {status}, not JSON ({e}): {body}"))?;
        if json["status"] != "success" {
            return Err(format!("status {status}: {body}"));
        }
        let data = &json["data"];
        let sample = match data["resultType"].as_str() {
            Some("scalar") => &data["result"],
            Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
                Some([]) => return Ok(None),
                Some([one]) => &one["value"],
                _ => return Err(format!("more than one series: {body}")),
            },
            _ => return Err(format!("not a scalar or vector: {body}")),
        };
        sample[1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("no value in {body}"))
    }

    /// [`try_query`](Self::try_query) with an error as `None`.
    pub fn query(&self, promql: &str) -> Option<f64> {
        self.try_query(promql).ok().flatten()
    }

    /// Queries every 50 ms until a value satisfies `pred` and returns it; panics after
    /// `timeout` with the last value or error.
    pub fn wait_for(&self, promql: &str, pred: impl Fn(f64) -> bool, timeout: Duration) -> f64 {
        let until = Instant::now() + timeout;
        loop {
            let last = self.try_query(promql);
            if let Ok(Some(v)) = last
                && pred(v)
            {
                return v;
            }
            assert!(
                Instant::now() < until,
                "{promql}: no satisfying value within {timeout:?}; last {last:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would; the API is gone when this returns.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Prometheus' own log (it logs to stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join(LOG)).unwrap_or_default()
    }

    fn wait_first_scrape(&self, targets: usize) {
        if targets == 0 {
            return;
        }
        let until = Instant::now() + FIRST_SCRAPE_WITHIN;
        while self.query("count(up)") != Some(targets as f64) {
            assert!(
                Instant::now() < until,
                "prometheus did not scrape all {targets} targets within {FIRST_SCRAPE_WITHIN:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
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
        if matches!(get(&url), Ok((200, _))) {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!(
                "/-/ready did not answer 200 within {READY_WITHIN:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config_text(targets: &[SocketAddr], interval: Duration) -> String {
    let every = format!("{}ms", interval.as_millis().max(1));
    let mut text = format!(
        "global:\n  scrape_interval: {every}\n  scrape_timeout: {every}\n  evaluation_interval: {every}\nscrape_configs:\n"
    );
    for (i, t) in targets.iter().enumerate() {
        text += &format!(
            "  - job_name: {}\n    static_configs:\n      - targets: ['{t}']\n",
            Prometheus::job(i)
        );
    }
    text
}

/// A loopback port free now (bound and released; Prometheus binds it right after).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}
