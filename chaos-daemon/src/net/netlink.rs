//! A minimal rtnetlink client on a raw `NETLINK_ROUTE` socket (libc): build a request with
//! attributes, send it, collect the replies, and turn a kernel error into its errno plus the
//! extended-ack message ("Specified qdisc kind is unknown"), the reason users need to see.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd},
};

/// `struct nlmsghdr` is 16 bytes.
const HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// Set on an error message that carries extended-ack attributes.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

/// A failed netlink request.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused: its errno and extended-ack message (may be empty).
    #[error("{op}: {message} ({errno})")]
    Kernel {
        op: &'static str,
        errno: nix::errno::Errno,
        message: String,
    },
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error },
    #[error("{op}: malformed netlink reply")]
    Malformed { op: &'static str },
}

impl NetlinkError {
    /// The kernel's errno, if the kernel answered with one.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// A request under construction: the header, a fixed payload and attributes.
pub struct Message {
    buf: Vec<u8>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Message {
    /// A request of type `ty` with `flags` (NLM_F_REQUEST is added) and a fixed header.
    pub fn new(ty: u16, flags: u16, fixed: &[u8]) -> Self {
        let mut buf = vec![0u8; HDR_LEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        let mut m = Self { buf };
        m.push(fixed);
        m
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// Appends attribute `ty` with `data`.
    pub fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.push(data);
    }

    /// The bytes after the header: a nested attribute payload built with `Message::new(0, 0, &[])`.
    pub fn into_payload(self) -> Vec<u8> {
        self.buf[HDR_LEN..].to_vec()
    }

    /// Appends a zero-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v);
    }
}

/// Iterates the `(type, payload)` attributes in `buf`; stops at the first malformed one.
pub fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let data = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, data))
    })
}

/// An open `NETLINK_ROUTE` socket in the calling thread's network namespace.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    pub fn open() -> Result<Self, NetlinkError> {
        let op = "opening a netlink socket";
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(NetlinkError::Io {
                op,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: `one` is a valid c_int for the duration of the call. Failure only loses
            // the extended-ack message, so the result is ignored.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        Ok(Self { fd, seq: 0 })
    }

    /// Sends `msg` and returns the payloads of the kernel's replies (after the netlink header).
    /// A request without `NLM_F_DUMP` gets `NLM_F_ACK` and ends at the acknowledgement.
    pub fn request(
        &mut self,
        mut msg: Message,
        op: &'static str,
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let len = msg.buf.len() as u32;
        msg.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        msg.buf[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        let flags = u16::from_ne_bytes([msg.buf[6], msg.buf[7]]);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        if !dump {
            msg.buf[6..8].copy_from_slice(&(flags | NLM_F_ACK).to_ne_bytes());
        }
        let io_err = |source| NetlinkError::Io { op, source };
        // SAFETY: the buffer is valid for its length; the kernel (pid 0) is the default peer.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                msg.buf.as_ptr().cast(),
                msg.buf.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is writable for its whole length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io_err(io::Error::last_os_error()));
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= HDR_LEN {
                let mlen = u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
                if mlen < HDR_LEN || mlen > rest.len() {
                    return Err(NetlinkError::Malformed { op });
                }
                let ty = u16::from_ne_bytes([rest[4], rest[5]]);
                let mflags = u16::from_ne_bytes([rest[6], rest[7]]);
                let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap_or_default());
                let body = &rest[HDR_LEN..mlen];
                rest = &rest[align4(mlen).min(rest.len())..];
                if seq != self.seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(replies),
                    NLMSG_ERROR => return error_reply(body, mflags, op).map(|()| replies),
                    _ => replies.push(body.to_vec()),
                }
            }
        }
    }
}

/// An `NLMSG_ERROR` body: errno 0 is the acknowledgement.
fn error_reply(body: &[u8], flags: u16, op: &'static str) -> Result<(), NetlinkError> {
    let code = body
        .get(0..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(NetlinkError::Malformed { op })?;
    if code == 0 {
        return Ok(());
    }
    // With NETLINK_CAP_ACK the request is echoed as its header only; then come the TLVs.
    let mut message = String::new();
    if flags & NLM_F_ACK_TLVS != 0
        && let Some(tlvs) = body.get(4 + HDR_LEN..)
    {
        for (ty, data) in attrs(tlvs) {
            if ty == NLMSGERR_ATTR_MSG {
                message = String::from_utf8_lossy(data)
                    .trim_end_matches('\0')
                    .to_string();
            }
        }
    }
    let errno = nix::errno::Errno::from_raw(-code);
    if message.is_empty() {
        message = errno.desc().to_string();
    }
    Err(NetlinkError::Kernel { op, errno, message })
}
