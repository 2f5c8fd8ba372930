//! Errno values a socket-error fault may return: a real Linux error number, by name
//! (`ECONNREFUSED`) or by number (`111`).

use std::{fmt, str::FromStr};

use super::SpecError;

/// The highest errno Linux defines (`EHWPOISON`).
const MAX_ERRNO: i32 = 133;

/// A valid Linux error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(nix::errno::Errno);

impl Errno {
    /// `n` when it is a defined Linux errno.
    pub fn new(n: i32) -> Option<Self> {
        let e = nix::errno::Errno::from_raw(n);
        ((1..=MAX_ERRNO).contains(&n) && e != nix::errno::Errno::UnknownErrno).then_some(Self(e))
    }

    /// The positive number.
    pub fn number(self) -> u32 {
        self.0 as i32 as u32
    }

    /// The symbolic name, e.g. `ECONNREFUSED`.
    pub fn name(self) -> String {
        format!("{:?}", self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

impl FromStr for Errno {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let found = match s.parse::<i32>() {
            Ok(n) => Errno::new(n),
            Err(_) => (1..=MAX_ERRNO)
                .filter_map(Errno::new)
                .find(|e| e.name() == s),
        };
        found.ok_or_else(|| {
            SpecError::new(
                "fault.errno",
                s,
                "a Linux errno name or number, e.g. ECONNREFUSED, ETIMEDOUT, ENETUNREACH, EACCES, 111",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let e: Errno = "ECONNREFUSED".parse().unwrap();
        assert_eq!(e.number(), libc::ECONNREFUSED as u32);
        assert_eq!("110".parse::<Errno>().unwrap().name(), "ETIMEDOUT");
        for bad in ["0", "-1", "134", "4095", "EFOO", "econnrefused", ""] {
            assert_eq!(
                bad.parse::<Errno>().unwrap_err().field,
                "fault.errno",
                "{bad}"
            );
        }
    }
}
