//! `fault.errno`: a Linux error number, written by name (`ECONNREFUSED`) or by number (`111`),
//! checked against the kernel's own table (`include/uapi/asm-generic/errno{,-base}.h`, the
//! numbering of x86, arm and every other architecture that uses the generic table).

use std::fmt;

use crate::error::{ModelError, invalid};

/// Highest errno number Linux defines (`EHWPOISON`).
pub const MAX_ERRNO: u32 = 133;

/// The kernel's names by number; `""` where the number is unused (41, 58).
const NAMES: [&str; MAX_ERRNO as usize + 1] = [
    "",
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "ENXIO",
    "E2BIG",
    "ENOEXEC",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "ENOTBLK",
    "EBUSY",
    "EEXIST",
    "EXDEV",
    "ENODEV",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "ENOTTY",
    "ETXTBSY",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "EMLINK",
    "EPIPE",
    "EDOM",
    "ERANGE",
    "EDEADLK",
    "ENAMETOOLONG",
    "ENOLCK",
    "ENOSYS",
    "ENOTEMPTY",
    "ELOOP",
    "",
    "ENOMSG",
    "EIDRM",
    "ECHRNG",
    "EL2NSYNC",
    "EL3HLT",
    "EL3RST",
    "ELNRNG",
    "EUNATCH",
    "ENOCSI",
    "EL2HLT",
    "EBADE",
    "EBADR",
    "EXFULL",
    "ENOANO",
    "EBADRQC",
    "EBADSLT",
    "",
    "EBFONT",
    "ENOSTR",
    "ENODATA",
    "ETIME",
    "ENOSR",
    "ENONET",
    "ENOPKG",
    "EREMOTE",
    "ENOLINK",
    "EADV",
    "ESRMNT",
    "ECOMM",
    "EPROTO",
    "EMULTIHOP",
    "EDOTDOT",
    "EBADMSG",
    "EOVERFLOW",
    "ENOTUNIQ",
    "EBADFD",
    "EREMCHG",
    "ELIBACC",
    "ELIBBAD",
    "ELIBSCN",
    "ELIBMAX",
    "ELIBEXEC",
    "EILSEQ",
    "ERESTART",
    "ESTRPIPE",
    "EUSERS",
    "ENOTSOCK",
    "EDESTADDRREQ",
    "EMSGSIZE",
    "EPROTOTYPE",
    "ENOPROTOOPT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
    "EOPNOTSUPP",
    "EPFNOSUPPORT",
    "EAFNOSUPPORT",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "ENETUNREACH",
    "ENETRESET",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "EISCONN",
    "ENOTCONN",
    "ESHUTDOWN",
    "ETOOMANYREFS",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTDOWN",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ESTALE",
    "EUCLEAN",
    "ENOTNAM",
    "ENAVAIL",
    "EISNAM",
    "EREMOTEIO",
    "EDQUOT",
    "ENOMEDIUM",
    "EMEDIUMTYPE",
    "ECANCELED",
    "ENOKEY",
    "EKEYEXPIRED",
    "EKEYREVOKED",
    "EKEYREJECTED",
    "EOWNERDEAD",
    "ENOTRECOVERABLE",
    "ERFKILL",
    "EHWPOISON",
];

/// The kernel's second names for a number: `EWOULDBLOCK`, `EDEADLOCK`, `ENOTSUP`.
const ALIASES: [(&str, u32); 3] = [("EWOULDBLOCK", 11), ("EDEADLOCK", 35), ("ENOTSUP", 95)];

pub(super) const ERRNO_ALLOWED: &str = "a Linux errno name such as ECONNREFUSED, ETIMEDOUT, EIO \
     or a number 1 to 133 (41 and 58 are unused)";

/// A Linux error number that the kernel defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(u32);

impl Errno {
    /// `ECONNREFUSED`.
    pub const ECONNREFUSED: Self = Self(111);
    /// `ECONNRESET`.
    pub const ECONNRESET: Self = Self(104);
    /// `EIO`.
    pub const EIO: Self = Self(5);

    /// `number` when Linux defines it.
    pub fn new(number: u32) -> Option<Self> {
        NAMES
            .get(number as usize)
            .is_some_and(|name| !name.is_empty())
            .then_some(Self(number))
    }

    /// The errno named `name` (its kernel name or one of the kernel's aliases).
    pub fn from_name(name: &str) -> Option<Self> {
        NAMES
            .iter()
            .position(|n| !n.is_empty() && *n == name)
            .map(|n| Self(n as u32))
            .or_else(|| {
                ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == name)
                    .map(|(_, n)| Self(*n))
            })
    }

    /// `text` as written in YAML or the proto: all digits is a number, anything else a name.
    /// The error is at `fault.errno`.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let found = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().ok().and_then(Self::new)
        } else {
            Self::from_name(text)
        };
        found.ok_or_else(|| invalid("fault.errno", format!("{text:?}"), ERRNO_ALLOWED))
    }

    /// The positive number, e.g. 111.
    pub fn number(self) -> u32 {
        self.0
    }

    /// The kernel's name, e.g. `ECONNREFUSED`.
    pub fn name(self) -> &'static str {
        NAMES[self.0 as usize]
    }
}

/// The name, e.g. `ECONNREFUSED` (what `to_proto` sends).
impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_aliases() {
        assert_eq!(Errno::parse("ECONNREFUSED"), Ok(Errno::ECONNREFUSED));
        assert_eq!(Errno::parse("111"), Ok(Errno::ECONNREFUSED));
        assert_eq!(Errno::parse("EWOULDBLOCK").map(Errno::name), Ok("EAGAIN"));
        assert_eq!(Errno::parse("ENOTSUP").map(Errno::number), Ok(95));
        assert_eq!(Errno::new(133).map(Errno::name), Some("EHWPOISON"));
        for bad in [
            "0",
            "41",
            "58",
            "134",
            "4095",
            "EFOO",
            "econnrefused",
            "",
            "-1",
        ] {
            let error = Errno::parse(bad).unwrap_err();
            assert_eq!(error.path(), Some("fault.errno"), "{bad}");
        }
    }
}
