//! The socket options the workload (and the tests' in-process sink, which includes this file)
//! need beyond std.

use std::{
    io,
    net::{TcpStream, UdpSocket},
    os::fd::{AsRawFd, RawFd},
};

fn set<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `fd` is an open socket of the caller and `value` points at a `T` of the size we
    // pass; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A receiver must not lose datagrams itself: a 64 MiB buffer (root may exceed `rmem_max` with
/// SO_RCVBUFFORCE).
pub fn raise_rcvbuf(sock: &UdpSocket) -> io::Result<()> {
    set(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &((64 << 20) as libc::c_int),
    )
}

/// Asks for every send error at once (IP_RECVERR, or IPV6_RECVERR on an IPv6 socket), as ping
/// and many UDP clients do: without it Linux hides a local ENOBUFS from a UDP `sendto()`, with it
/// a congestion-notified drop on the way out fails the call.
pub fn recv_errors(sock: &UdpSocket) -> io::Result<()> {
    let (level, name) = if sock.local_addr()?.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    };
    set(sock.as_raw_fd(), level, name, &(1 as libc::c_int))
}

/// Closes with SO_LINGER 0 (RST): thousands of client-first closes would otherwise fill the
/// port range with TIME_WAIT sockets that loopback reuses while the server's side still
/// closes, and the new SYN then waits for a 1 s retransmission.
pub fn close_with_reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // Best effort: if it fails the socket closes normally.
    let _ = set(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &linger);
}
