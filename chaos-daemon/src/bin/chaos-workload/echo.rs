//! UDP echo and ping: the round-trip time a latency fault adds, seen from a real socket.

use std::{
    io::{self, Write as _},
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

/// Echoes every datagram back to its sender until killed. Prints `ready PORT` once bound.
pub fn udp_echo(bind: SocketAddr) -> anyhow::Result<()> {
    let sock = UdpSocket::bind(bind)?;
    println!("ready {}", sock.local_addr()?.port());
    io::stdout().flush()?;
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        sock.send_to(&buf[..n], from)?;
    }
}

/// Sends COUNT sequence-numbered datagrams one at a time, each after the previous echo (or a
/// one-second timeout), and prints `ok=N lost=M` with the round-trip times: `p50_ns`, `p10_ns`,
/// `p90_ns`, `mean_ns`, `sd_ns`.
pub fn udp_ping(to: SocketAddr, count: u64, gap: Duration) -> anyhow::Result<()> {
    let sock = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    sock.connect(to)?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut rtts: Vec<u64> = Vec::with_capacity(count as usize);
    let mut lost = 0u64;
    let mut buf = [0u8; 64];
    for seq in 0..count {
        let t = Instant::now();
        sock.send(&seq.to_be_bytes())?;
        // Skip late echoes of earlier (timed-out) datagrams.
        loop {
            match sock.recv(&mut buf) {
                Ok(8) if buf[..8] == seq.to_be_bytes() => {
                    rtts.push(t.elapsed().as_nanos() as u64);
                    break;
                }
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    lost += 1;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        std::thread::sleep(gap);
    }
    rtts.sort_unstable();
    let q = |p: usize| rtts.get(rtts.len() * p / 100).copied().unwrap_or(0);
    let n = rtts.len().max(1) as f64;
    let mean = rtts.iter().map(|&r| r as f64).sum::<f64>() / n;
    let var = rtts.iter().map(|&r| (r as f64 - mean).powi(2)).sum::<f64>() / n;
    println!(
        "ok={} lost={lost} p50_ns={} p10_ns={} p90_ns={} mean_ns={} sd_ns={}",
        rtts.len(),
        q(50),
        q(10),
        q(90),
        mean as u64,
        var.sqrt() as u64
    );
    Ok(())
}
