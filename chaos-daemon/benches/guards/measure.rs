//! What the guard benchmarks read besides the daemon: the workload's scrapes as Prometheus
//! stored them (when a fault became visible to the guards), CPU time of a process or thread,
//! and the printing of quantiles.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nix::time::{ClockId, clock_gettime};

use crate::support::{
    eventually,
    http::{get, url_encode},
    prometheus::Prometheus,
};

/// One scrape of the workload as Prometheus stored it: its time and the request counters.
pub struct Scrape {
    pub at_ms: f64,
    requests: f64,
    errors: f64,
}

/// The workload's scrapes of the last 20 s, oldest first (every series of
/// `http_requests_total`, summed per scrape; 5xx codes are errors).
pub fn scrapes(prometheus: &Prometheus) -> Vec<Scrape> {
    let url = format!(
        "{}/api/v1/query?query={}",
        prometheus.url(),
        url_encode("http_requests_total[20s]")
    );
    let (status, body) = get(&url).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("HTTP {status}: {e}: {body}"));
    let mut by_time: BTreeMap<i64, Scrape> = BTreeMap::new();
    for series in json["data"]["result"].as_array().expect("a matrix") {
        let error = series["metric"]["code"]
            .as_str()
            .is_some_and(|c| c.starts_with('5'));
        for point in series["values"].as_array().unwrap() {
            let at_ms = point[0].as_f64().unwrap() * 1e3;
            let value: f64 = point[1].as_str().unwrap().parse().unwrap();
            let s = by_time.entry(at_ms.round() as i64).or_insert(Scrape {
                at_ms,
                requests: 0.0,
                errors: 0.0,
            });
            s.requests += value;
            if error {
                s.errors += value;
            }
        }
    }
    by_time.into_values().collect()
}

/// The error ratio between scrapes `k - 1` and `k`: what an `irate` SLO sees after `k`.
pub fn ratio(s: &[Scrape], k: usize) -> f64 {
    let requests = s[k].requests - s[k - 1].requests;
    if requests > 0.0 {
        (s[k].errors - s[k - 1].errors) / requests
    } else {
        0.0
    }
}

/// Waits for a scrape after `after_ms` whose error ratio is at most `objective`.
pub fn wait_clean(prometheus: &Prometheus, after_ms: f64, objective: f64) {
    eventually("a healthy scrape", Duration::from_secs(20), || {
        let s = scrapes(prometheus);
        let n = s.len();
        (n >= 2 && s[n - 1].at_ms > after_ms && ratio(&s, n - 1) <= objective).then_some(())
    });
}

/// A process's CPU time (user + system, every thread): this one's, or another's by pid.
pub struct Cpu(Option<u32>);

impl Cpu {
    pub fn own() -> Self {
        Self(None)
    }

    /// The process listening with `--web.listen-address=ADDR` (Prometheus).
    pub fn listening(addr: SocketAddr) -> Self {
        let flag = format!("--web.listen-address={addr}");
        let pid = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .find_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == flag.as_bytes())
                    .then_some(pid)
            })
            .expect("the Prometheus process");
        Self(Some(pid))
    }

    pub fn now(&self) -> Duration {
        let Some(pid) = self.0 else {
            return cpu(ClockId::CLOCK_PROCESS_CPUTIME_ID);
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // After the command name: state is field 3, utime 14, stime 15 (proc(5)).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a system constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_nanos(ticks * 1_000_000_000 / hz)
    }
}

/// CPU shares (1.0 = one CPU) of `cpus` over the next `window`.
pub fn shares(cpus: &[&Cpu], window: Duration) -> Vec<f64> {
    let (before, t): (Vec<Duration>, _) = (cpus.iter().map(|c| c.now()).collect(), Instant::now());
    std::thread::sleep(window);
    let wall = t.elapsed().as_secs_f64();
    cpus.iter()
        .zip(before)
        .map(|(c, b)| (c.now() - b).as_secs_f64() / wall)
        .collect()
}

/// The CPU time of `clock` (a CPU-time clock: this thread's or this process's).
pub fn cpu(clock: ClockId) -> Duration {
    let t = clock_gettime(clock).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Unix time in milliseconds, as Prometheus stamps samples.
pub fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3
}

fn quantile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Prints p50, p99 and max of `v`, with the ratios to `baseline`'s.
pub fn report_us(what: &str, v: &[Duration], baseline: Option<&[Duration]>) {
    let us = |v: &[Duration]| -> Vec<f64> { v.iter().map(|d| d.as_secs_f64() * 1e6).collect() };
    let v = us(v);
    let ratio = baseline.map_or(String::new(), |b| {
        let b = us(b);
        format!(
            "  (x{:.2} p50, x{:.2} p99 of stop)",
            quantile(&v, 0.5) / quantile(&b, 0.5),
            quantile(&v, 0.99) / quantile(&b, 0.99)
        )
    });
    println!(
        "  {what:<46} p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>8.1} µs{ratio}",
        quantile(&v, 0.5),
        quantile(&v, 0.99),
        quantile(&v, 1.0)
    );
}

/// Prints p50, p99 and max of `v` (milliseconds).
pub fn report_ms(what: &str, v: &[f64]) {
    println!(
        "  {what:<46} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        quantile(v, 0.5),
        quantile(v, 0.99),
        quantile(v, 1.0)
    );
}
