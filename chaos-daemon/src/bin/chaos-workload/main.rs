//! `chaos-workload`: a small, deterministic traffic generator to observe faults from the
//! outside, as a user's program would. Used by the demo, the kernel tests and the benchmarks.
//!
//! Every mode can first move itself into a cgroup (`--cgroup`, before any socket exists, since a
//! socket belongs to the cgroup of the process that created it) and pin itself to a CPU
//! (`--cpu`) and enter a network namespace (`--netns`, a pod's stand-in). It prints one result line of `key=value` pairs: `ok=N` plus one count per errno
//! name, e.g. `ok=7490 ECONNREFUSED=2510`, the time all calls took, `elapsed_us=N`, and the
//! median time of one call, `p50_ns=N` (robust to a rare TCP SYN retransmission).

use std::{
    collections::BTreeMap,
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

mod echo;
mod files;
mod http;
mod sockopt;
mod verify;

#[derive(Parser)]
#[command(about = "Traffic generator for observing chaos-ebpf faults")]
struct Cli {
    /// Join this cgroup v2 directory before doing anything.
    #[arg(long, global = true)]
    cgroup: Option<PathBuf>,
    /// Pin to this CPU.
    #[arg(long, global = true)]
    cpu: Option<usize>,
    /// Enter this network namespace (e.g. /run/netns/NAME) before doing anything.
    #[arg(long, global = true)]
    netns: Option<PathBuf>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Send COUNT UDP datagrams (sequence-numbered) with sendto() on an unconnected socket.
    UdpSend {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        count: u64,
        /// Bytes per datagram: 8 is the bare big-endian sequence number; 16 or more add its
        /// complement and a pattern derived from it, which `udp-check` verifies byte by byte.
        #[arg(long, default_value_t = 8)]
        size: usize,
        /// Set IP_RECVERR (IPV6_RECVERR) first, so that a local drop the kernel reports as
        /// ENOBUFS fails the send instead of passing unseen.
        #[arg(long)]
        recverr: bool,
    },
    /// Send UDP datagrams back to back for MAX_MS and report, on CLOCK_MONOTONIC, when the first
    /// send failed (`first_error_ns`) and when one succeeded again after that (`recovered_ns`):
    /// what a fault's start and stop look like from inside the target. Prints `ready` first.
    UdpFlip {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        max_ms: u64,
    },
    /// Receive UDP datagrams; print `ready PORT` once bound, then `received=N` after IDLE_MS
    /// without traffic (or TIMEOUT_MS in all).
    UdpRecv {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        #[arg(long, default_value_t = 500)]
        idle_ms: u64,
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
    /// Receive and verify the datagrams of `udp-send --count EXPECT --size SIZE`; print
    /// `ready PORT` once bound, then after IDLE_MS without traffic (or TIMEOUT_MS in all)
    /// `received= unique= missing= duplicates= corrupted= corrupted_bytes_min=
    /// corrupted_bytes_max= wrong_size=` (see verify.rs).
    UdpCheck {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 500)]
        idle_ms: u64,
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
    /// COUNT blocking TCP connect() calls, each closed at once.
    Connect {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        count: u64,
    },
    /// COUNT socket() calls of the given kind (udp or tcp), each closed at once.
    Socket {
        #[arg(long, default_value = "udp")]
        kind: String,
        #[arg(long)]
        count: u64,
    },
    /// COUNT bind() calls to ADDR (port 0 = any), each on a fresh UDP socket.
    Bind {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        #[arg(long)]
        count: u64,
    },
    /// Accept TCP connections until TIMEOUT_MS; read each to the end and answer with the byte
    /// count (a plain connect-and-close client just sees the close). Prints `ready PORT`.
    TcpListen {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        #[arg(long, default_value_t = 600_000)]
        timeout_ms: u64,
    },
    /// Connect, send BYTES over TCP, half-close and wait for the peer's echo of the byte count.
    TcpSend {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        bytes: u64,
    },
    /// COUNT file or process calls of one kind (open, read, write, unlink, create, fork, exec,
    /// mmap, pipe-write, socket-write, getdents, thread, mmap-anon) in the existing directory
    /// DIR.
    File {
        #[arg(long)]
        op: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        count: u64,
    },
    /// Echo UDP datagrams back to their sender until killed. Prints `ready PORT`.
    UdpEcho {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
    },
    /// COUNT UDP round trips to an echo server, one at a time, GAP_MS apart; prints the
    /// round-trip time quantiles, mean and standard deviation.
    UdpPing {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        gap_ms: u64,
    },
    /// Burn CPU on THREADS threads for MS milliseconds; `ok` = loop iterations done (the
    /// throughput a CPU limit shows up in).
    Spin {
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long)]
        ms: u64,
    },
    /// Serve HTTP until killed: `GET /` and `GET /healthz` connect() to DEPENDENCY and answer
    /// 200, or 503 naming the errno; `GET /metrics` exports request counters and duration
    /// histograms. Prints `ready PORT`.
    HttpServe {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long)]
        dependency: SocketAddr,
        #[arg(long, default_value_t = 200)]
        dependency_timeout_ms: u64,
        /// Also answer 500 to this fraction (0 to 1) of the `/` requests that would be 200.
        #[arg(long, default_value_t = 0.0)]
        error_ratio: f64,
    },
    /// Replace this process with COMMAND (after `--cgroup`, `--cpu` and `--netns`): a real
    /// client such as ping run inside the target. No shell is involved.
    Exec {
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Send RPS GET requests per second to URL (http://IP:PORT/PATH) for DURATION_MS, open
    /// loop; `ok` = 2xx answers, `status_CODE` = other answers.
    HttpLoad {
        #[arg(long)]
        url: String,
        #[arg(long)]
        rps: u64,
        #[arg(long)]
        duration_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(cpu) = cli.cpu {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu).context("--cpu")?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
            .context("sched_setaffinity")?;
    }
    if let Some(ns) = &cli.netns {
        let file = std::fs::File::open(ns).with_context(|| format!("--netns {}", ns.display()))?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace {}", ns.display()))?;
    }
    if let Some(cg) = &cli.cgroup {
        std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string())
            .with_context(|| format!("joining cgroup {}", cg.display()))?;
    }
    let mut tally = Tally::default();
    let started = Instant::now();
    match cli.mode {
        Mode::Exec { command } => {
            use std::os::unix::process::CommandExt as _;
            let error = std::process::Command::new(&command[0])
                .args(&command[1..])
                .exec();
            bail!("exec {:?}: {error}", command[0]);
        }
        Mode::UdpSend {
            to,
            count,
            size,
            recverr,
        } => {
            if size != 8 && size < verify::CHECKED_SIZE {
                bail!(
                    "--size {size}: 8 (the bare number) or at least {}",
                    verify::CHECKED_SIZE
                );
            }
            let bind: SocketAddr = if to.is_ipv4() {
                "0.0.0.0:0".parse()?
            } else {
                "[::]:0".parse()?
            };
            let sock = UdpSocket::bind(bind)?;
            if recverr {
                sockopt::recv_errors(&sock)?;
            }
            for seq in 0..count {
                let data = verify::payload(seq, size);
                tally.timed(|| sock.send_to(&data, to).map(drop));
            }
        }
        Mode::Spin { threads, ms } => {
            let end = Instant::now() + Duration::from_millis(ms);
            let spin = move || {
                let mut n = 0u64;
                while Instant::now() < end {
                    for i in 0..10_000u64 {
                        std::hint::black_box(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    }
                    n += 1;
                }
                n
            };
            let handles: Vec<_> = (0..threads).map(|_| std::thread::spawn(spin)).collect();
            for h in handles {
                tally.ok += h.join().unwrap_or(0);
            }
        }
        Mode::UdpEcho { bind } => return echo::udp_echo(bind),
        Mode::UdpPing { to, count, gap_ms } => {
            return echo::udp_ping(to, count, Duration::from_millis(gap_ms));
        }
        Mode::UdpFlip { to, max_ms } => {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            println!("ready");
            io::stdout().flush()?;
            let (mut first_error, mut recovered) = (0u64, 0u64);
            let end = Instant::now() + Duration::from_millis(max_ms);
            while Instant::now() < end && recovered == 0 {
                let failed = sock.send_to(&[0u8; 8], to).is_err();
                if failed && first_error == 0 {
                    first_error = monotonic_ns();
                } else if !failed && first_error != 0 {
                    recovered = monotonic_ns();
                }
            }
            println!("first_error_ns={first_error} recovered_ns={recovered}");
            return Ok(());
        }
        Mode::UdpRecv {
            bind,
            idle_ms,
            timeout_ms,
        } => {
            let mut received = 0u64;
            verify::receive(
                bind,
                Duration::from_millis(idle_ms),
                Duration::from_millis(timeout_ms),
                |_| received += 1,
            )?;
            println!("received={received}");
            return Ok(());
        }
        Mode::UdpCheck {
            bind,
            expect,
            size,
            idle_ms,
            timeout_ms,
        } => {
            return verify::udp_check(&verify::Check {
                bind,
                expect,
                size,
                idle: Duration::from_millis(idle_ms),
                timeout: Duration::from_millis(timeout_ms),
            });
        }
        Mode::Connect { to, count } => {
            for _ in 0..count {
                tally.timed(|| TcpStream::connect(to).map(sockopt::close_with_reset));
            }
        }
        Mode::Socket { kind, count } => {
            let ty = match kind.as_str() {
                "udp" => libc::SOCK_DGRAM,
                "tcp" => libc::SOCK_STREAM,
                _ => bail!("--kind: {kind:?} is not udp or tcp"),
            };
            for _ in 0..count {
                // SAFETY: plain syscall; the returned descriptor is closed right away.
                let fd = unsafe { libc::socket(libc::AF_INET, ty, 0) };
                if fd >= 0 {
                    // SAFETY: `fd` is a descriptor we own.
                    unsafe { libc::close(fd) };
                    tally.ok += 1;
                } else {
                    tally.record(Err(io::Error::last_os_error()));
                }
            }
        }
        Mode::Bind { addr, count } => {
            for _ in 0..count {
                tally.timed(|| UdpSocket::bind(addr).map(drop));
            }
        }
        Mode::TcpListen { bind, timeout_ms } => {
            let listener = TcpListener::bind(bind)?;
            // std listens with a backlog of 128; a connect storm outruns the accept loop and
            // overflowing SYNs wait for a 1 s retransmission. Linux lets listen() raise it.
            // SAFETY: plain syscall on a socket we own.
            if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) } != 0 {
                return Err(io::Error::last_os_error().into());
            }
            println!("ready {}", listener.local_addr()?.port());
            io::stdout().flush()?;
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    std::thread::spawn(move || count_and_answer(conn));
                }
            });
            std::thread::sleep(Duration::from_millis(timeout_ms));
            return Ok(());
        }
        Mode::TcpSend { to, bytes } => {
            let result = tcp_send(to, bytes);
            tally.record(result.map(drop));
        }
        Mode::File { op, dir, count } => files::run(&op, &dir, count, &mut tally)?,
        Mode::HttpServe {
            listen,
            dependency,
            dependency_timeout_ms,
            error_ratio,
        } => {
            return http::serve(http::Serve {
                listen,
                dependency,
                dependency_timeout: Duration::from_millis(dependency_timeout_ms),
                error_ratio,
            });
        }
        Mode::HttpLoad {
            url,
            rps,
            duration_ms,
        } => http::load(&url, rps, duration_ms, &mut tally)?,
    }
    let line = format!(
        "{tally} elapsed_us={} p50_ns={}\n",
        started.elapsed().as_micros(),
        tally.p50_ns()
    );
    print_result(line.as_bytes())
}

/// Writes the result line with one `write()`, retried: a write-error fault on this very process
/// must not lose the measurement.
fn print_result(line: &[u8]) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..10_000 {
        match nix::unistd::write(io::stdout(), line) {
            Ok(n) if n == line.len() => return Ok(()),
            Ok(n) => bail!(
                "short write of the result line: {n} of {} bytes",
                line.len()
            ),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no attempt"), Into::into))
        .context("writing the result line")
}

/// CLOCK_MONOTONIC in nanoseconds (comparable across processes, unlike `Instant`).
fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .unwrap_or(nix::sys::time::TimeSpec::new(0, 0));
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

fn count_and_answer(mut conn: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    while let Ok(k) = conn.read(&mut buf) {
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    // A client that only connected gets no answer: writing into its closed connection would
    // draw an RST, and a quickly reused client port then meets stale state (1 s SYN retry).
    if n > 0 {
        let _ = conn.write_all(n.to_string().as_bytes());
    }
}

fn tcp_send(to: SocketAddr, bytes: u64) -> io::Result<()> {
    let mut s = TcpStream::connect(to)?;
    let chunk = vec![0x5au8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut echo = String::new();
    s.read_to_string(&mut echo)?;
    if echo.trim() != bytes.to_string() {
        return Err(io::Error::other(format!(
            "peer counted {echo:?}, sent {bytes}"
        )));
    }
    Ok(())
}

/// Successes and failures by errno name, and the duration of each timed call.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: BTreeMap<String, u64>,
    nanos: Vec<u64>,
}

impl Tally {
    fn timed(&mut self, call: impl FnOnce() -> io::Result<()>) {
        let t = Instant::now();
        let r = call();
        self.nanos.push(t.elapsed().as_nanos() as u64);
        self.record(r);
    }

    fn p50_ns(&mut self) -> u64 {
        self.nanos.sort_unstable();
        self.nanos.get(self.nanos.len() / 2).copied().unwrap_or(0)
    }

    fn record(&mut self, r: io::Result<()>) {
        match r {
            Ok(()) => self.ok += 1,
            Err(e) => {
                let name = e
                    .raw_os_error()
                    .map(|n| format!("{:?}", nix::errno::Errno::from_raw(n)))
                    .unwrap_or_else(|| "OTHER".into());
                *self.errors.entry(name).or_default() += 1;
            }
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ok={}", self.ok)?;
        for (name, n) in &self.errors {
            write!(f, " {name}={n}")?;
        }
        Ok(())
    }
}
