//! Recognisable UDP payloads and their verifying receiver: what duplication and corruption
//! look like to an application.
//!
//! A datagram of sequence number `seq` and size `S` is fully determined by the two: bytes 0..8
//! are `seq` (big endian), bytes 8..16 its complement, the rest a pseudo-random pattern derived
//! from `seq` and the byte's position. Size 8 is the plain sequence number `udp-send` has always
//! sent. Any changed byte is detected, and with two copies of the number a single changed byte
//! of either copy still tells the datagram's true number, so the receiver can say how many bytes
//! differ from what was sent.

use std::{
    collections::HashSet,
    io::{self, Write as _},
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use crate::sockopt;

/// The smallest size that carries both copies of the sequence number (any pattern after them).
pub const CHECKED_SIZE: usize = 16;

/// The payload of datagram `seq` with `size` bytes (at least 8).
pub fn payload(seq: u64, size: usize) -> Vec<u8> {
    (0..size).map(|i| byte(seq, i)).collect()
}

/// Byte `i` of the payload of datagram `seq`.
fn byte(seq: u64, i: usize) -> u8 {
    match i {
        0..8 => seq.to_be_bytes()[i],
        8..16 => (!seq).to_be_bytes()[i - 8],
        _ => {
            (mix(seq ^ ((i / 8) as u64).wrapping_mul(0xa076_1d64_78bd_642f)) >> ((i % 8) * 8)) as u8
        }
    }
}

/// splitmix64's finaliser: every input bit changes about half the output bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes of `data` that differ from the payload of `seq` of the same length.
fn differing(data: &[u8], seq: u64) -> usize {
    data.iter()
        .enumerate()
        .filter(|&(i, &b)| b != byte(seq, i))
        .count()
}

/// What one datagram is: its (recovered) sequence number when it has one, and how many of its
/// bytes differ from what that number's sender wrote (0: intact).
fn classify(data: &[u8]) -> (Option<u64>, usize) {
    let Some(first) = data.get(..8) else {
        return (None, data.len());
    };
    let claimed = u64::from_be_bytes(first.try_into().unwrap());
    let mut candidates = vec![claimed];
    if let Some(second) = data.get(8..16) {
        candidates.push(!u64::from_be_bytes(second.try_into().unwrap()));
    }
    candidates
        .into_iter()
        .map(|seq| (Some(seq), differing(data, seq)))
        .min_by_key(|&(_, d)| d)
        .unwrap()
}

/// `udp-check`'s settings.
pub struct Check {
    pub bind: SocketAddr,
    /// Sequence numbers 0..expect are valid.
    pub expect: u64,
    /// The size every datagram must have.
    pub size: usize,
    pub idle: Duration,
    pub timeout: Duration,
}

/// Receives and checks datagrams; prints `ready PORT` once bound, then, after `idle` without
/// traffic (or `timeout` in all), one line: `received` datagrams, `unique` valid sequence
/// numbers among them, `missing` = expect - unique, `duplicates` (a number seen before),
/// `corrupted` (a payload that is not its number's, a number out of range or a wrong size),
/// `corrupted_bytes_min`/`corrupted_bytes_max` over the corrupted ones (bytes that differ from
/// the payload of the recovered number; the datagram's length when none is recoverable) and
/// `wrong_size`.
pub fn udp_check(c: &Check) -> anyhow::Result<()> {
    let mut seen = HashSet::with_capacity(c.expect as usize);
    let (mut received, mut duplicates, mut corrupted, mut wrong_size) = (0u64, 0u64, 0u64, 0u64);
    let (mut bytes_min, mut bytes_max) = (usize::MAX, 0usize);
    receive(c.bind, c.idle, c.timeout, |data| {
        received += 1;
        let n = data.len();
        let (seq, bytes) = classify(data);
        let seq = seq.filter(|&s| s < c.expect);
        let size_ok = n == c.size;
        if !size_ok {
            wrong_size += 1;
        }
        if bytes > 0 || seq.is_none() || !size_ok {
            corrupted += 1;
            let bytes = if seq.is_none() { n } else { bytes };
            bytes_min = bytes_min.min(bytes);
            bytes_max = bytes_max.max(bytes);
        }
        if let Some(s) = seq
            && !seen.insert(s)
        {
            duplicates += 1;
        }
    })?;
    let unique = seen.len() as u64;
    println!(
        "received={received} unique={unique} missing={} duplicates={duplicates} \
         corrupted={corrupted} corrupted_bytes_min={} corrupted_bytes_max={bytes_max} \
         wrong_size={wrong_size}",
        c.expect - unique,
        if corrupted == 0 { 0 } else { bytes_min },
    );
    Ok(())
}

/// Binds a UDP receiver on `bind` (with a large buffer, so that it loses nothing itself),
/// prints `ready PORT`, and hands each datagram to `on` until `idle` passes without one after
/// the first (or `timeout` in all).
pub fn receive(
    bind: SocketAddr,
    idle: Duration,
    timeout: Duration,
    mut on: impl FnMut(&[u8]),
) -> anyhow::Result<()> {
    let sock = UdpSocket::bind(bind)?;
    sockopt::raise_rcvbuf(&sock)?;
    println!("ready {}", sock.local_addr()?.port());
    io::stdout().flush()?;
    sock.set_read_timeout(Some(idle))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    let mut any = false;
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                any = true;
                on(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if any {
                    break;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_8_is_the_plain_sequence_number() {
        assert_eq!(payload(0x0102, 8), 0x0102u64.to_be_bytes());
    }

    #[test]
    fn intact_payloads_classify_as_themselves() {
        for seq in [0, 1, 77, 19_999, u64::MAX] {
            assert_eq!(classify(&payload(seq, 64)), (Some(seq), 0));
        }
    }

    #[test]
    fn every_single_changed_byte_is_one_byte_of_the_right_number() {
        let seq = 12_345;
        let good = payload(seq, 64);
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                assert_eq!(classify(&bad), (Some(seq), 1), "byte {i} ^ {flip:#x}");
            }
        }
    }

    #[test]
    fn two_changed_bytes_count_two() {
        let mut bad = payload(5, 64);
        bad[20] ^= 1;
        bad[40] ^= 1;
        assert_eq!(classify(&bad), (Some(5), 2));
    }

    #[test]
    fn patterns_of_neighbours_differ_everywhere_after_the_numbers() {
        let (a, b) = (payload(1000, 64), payload(1001, 64));
        let same = a[16..].iter().zip(&b[16..]).filter(|(x, y)| x == y).count();
        assert!(same < 6, "{same} of 48 pattern bytes equal");
    }
}
