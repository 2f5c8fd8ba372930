//! One daemon per state directory: `serve` holds an exclusive `flock` on [`LOCK_FILE`] in the
//! state directory for as long as it runs, taken before anything touches the state (the
//! journal's undo, the store's recovery) or binds a socket. The file holds the holder's pid, for
//! the error a second daemon gives; the kernel drops the lock with the holder's descriptor, so a
//! killed daemon leaves no stale lock behind.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use anyhow::{Context as _, bail};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "daemon.lock";

/// The state directory's lock, held until dropped (or until the process ends).
pub struct StateLock {
    _held: Flock<File>,
}

impl StateLock {
    /// Takes the lock of state directory `dir` without waiting, and writes this process's pid
    /// into the lock file. Fails, naming the file and the holder's pid, when another process
    /// holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("opening the state directory's lock {}", path.display()))?;
        let mut held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => held,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let read = file.read_to_string(&mut text);
                let holder = match read.map(|_| text.trim().parse::<u32>()) {
                    Ok(Ok(pid)) => format!(" (pid {pid})"),
                    _ => String::new(),
                };
                bail!(
                    "{} is locked by another chaos-daemon{holder}: one daemon per state directory, \
                     and this one changed nothing; stop that daemon first, or give this one \
                     another --state-dir",
                    path.display()
                );
            }
            Err((_, errno)) => {
                return Err(std::io::Error::from(errno))
                    .with_context(|| format!("locking {}", path.display()));
            }
        };
        held.set_len(0)
            .and_then(|()| writeln!(held, "{}", std::process::id()))
            .with_context(|| format!("writing this daemon's pid into {}", path.display()))?;
        Ok(Self { _held: held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_names_the_file_and_the_holder() {
        let dir = std::env::temp_dir().join(format!("chaos-state-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = StateLock::acquire(&dir).unwrap();
        let pid = std::process::id();
        assert_eq!(
            std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(),
            format!("{pid}\n")
        );
        // flock locks belong to the open file: a second open in this process conflicts too.
        let e = StateLock::acquire(&dir)
            .err()
            .expect("the lock is held")
            .to_string();
        assert!(
            e.contains(&format!(
                "{} is locked by another chaos-daemon (pid {pid})",
                dir.join(LOCK_FILE).display()
            )),
            "{e}"
        );
        drop(first);
        let again = StateLock::acquire(&dir).expect("released with its holder");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_in_place_of_the_lock_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("chaos-state-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let elsewhere = dir.join("elsewhere");
        std::fs::write(&elsewhere, "keep").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join(LOCK_FILE)).unwrap();
        let e = StateLock::acquire(&dir).err().expect("refused").to_string();
        assert!(e.contains("opening the state directory's lock"), "{e}");
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
