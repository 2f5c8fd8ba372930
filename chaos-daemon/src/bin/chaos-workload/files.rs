//! The file and process calls of `chaos-workload file`: COUNT calls of one kind in a scratch
//! directory, each recorded as ok or by errno, to observe syscall-error faults.

use std::{
    fs::{File, OpenOptions},
    io,
    os::{
        fd::{AsFd, AsRawFd as _},
        unix::{fs::FileExt as _, net::UnixStream},
    },
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::Tally;

/// The calls `chaos-workload file --op` knows.
pub const OPS: &str = "open, read, write, unlink, create, fork, exec, mmap, pipe-write, \
    socket-write, getdents, thread, mmap-anon";

/// Runs COUNT calls of `op` in `dir` (which must exist; `dir/data` is created when missing,
/// before the calls, and its creation is not counted). `pipe-write` and `socket-write` are
/// `write()`s of one byte into a pipe and into a UNIX socket pair (each read back), `getdents`
/// lists `dir`, `thread` starts and joins a thread, `mmap-anon` maps an anonymous page.
pub fn run(op: &str, dir: &Path, count: u64, tally: &mut Tally) -> anyhow::Result<()> {
    let data = dir.join("data");
    if !data.exists() {
        std::fs::write(&data, [0u8; 4096]).with_context(|| format!("creating {data:?}"))?;
    }
    match op {
        "open" => {
            for _ in 0..count {
                tally.timed(|| File::open(&data).map(drop));
            }
        }
        "read" | "write" | "mmap" => {
            let f = open_retrying(&data, op == "write")?;
            for _ in 0..count {
                tally.timed(|| match op {
                    "read" => f.read_at(&mut [0u8; 1], 0).map(drop),
                    "write" => f.write_at(&[1u8], 0).map(drop),
                    _ => map_once(Some(&f)),
                });
            }
        }
        "unlink" => {
            for i in 0..count {
                let p = dir.join(format!("unlink-{i}"));
                File::create(&p).with_context(|| format!("creating {p:?}"))?;
                tally.timed(|| std::fs::remove_file(&p));
            }
        }
        "create" => {
            for i in 0..count {
                let p = dir.join(format!("create-{i}"));
                tally.timed(|| {
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&p)
                        .map(drop)
                });
                let _ = std::fs::remove_file(&p);
            }
        }
        "pipe-write" => {
            let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(io::Error::from)
                .context("pipe2")?;
            for _ in 0..count {
                tally.timed(|| write_through(&tx, &rx));
            }
        }
        "socket-write" => {
            let (tx, rx) = UnixStream::pair().context("socketpair")?;
            tx.set_nonblocking(true)?;
            rx.set_nonblocking(true)?;
            for _ in 0..count {
                tally.timed(|| write_through(&tx, &rx));
            }
        }
        "getdents" => {
            for _ in 0..count {
                // read_dir opens the directory; its iterator calls getdents64 and yields the
                // call's error.
                tally.timed(|| std::fs::read_dir(dir)?.try_for_each(|e| e.map(drop)));
            }
        }
        "fork" => {
            for _ in 0..count {
                tally.timed(fork_and_reap);
            }
        }
        "thread" => {
            for _ in 0..count {
                tally.timed(|| {
                    let t = std::thread::Builder::new().spawn(|| {})?;
                    t.join()
                        .map_err(|_| io::Error::other("the thread panicked"))
                });
            }
        }
        "mmap-anon" => {
            for _ in 0..count {
                tally.timed(|| map_once(None));
            }
        }
        "exec" => {
            let me = std::env::current_exe().context("current_exe")?;
            for _ in 0..count {
                tally.timed(|| {
                    Command::new(&me)
                        .arg("--help")
                        .stdout(Stdio::null())
                        .status()
                        .map(drop)
                });
            }
        }
        other => bail!("--op {other:?}: expected one of {OPS}"),
    }
    Ok(())
}

/// Opens `path` for the read/write/mmap loops; retried so that an open fault of another
/// experiment cannot stop the measurement before it starts.
fn open_retrying(path: &Path, write: bool) -> anyhow::Result<File> {
    let mut last = None;
    for _ in 0..1000 {
        match OpenOptions::new().read(true).write(write).open(path) {
            Ok(f) => return Ok(f),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no attempt"), Into::into))
        .with_context(|| format!("opening {path:?}"))
}

/// One byte written with `write()` into `tx` and read back from `rx`, both non-blocking: a
/// buffer that fills up (its reads failing) shows as EAGAIN, never as a hang.
fn write_through(tx: impl AsFd, rx: impl AsFd) -> io::Result<()> {
    nix::unistd::write(tx, &[1u8])?;
    let _ = nix::unistd::read(rx, &mut [0u8; 1]);
    Ok(())
}

/// One read-only private mapping of `f`'s first page, or of an anonymous page with `None`,
/// unmapped at once.
fn map_once(f: Option<&File>) -> io::Result<()> {
    let (flags, fd) = match f {
        Some(f) => (libc::MAP_PRIVATE, f.as_raw_fd()),
        None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
    };
    // SAFETY: a fresh private read-only mapping that nothing else references; unmapped below
    // with the same length.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `p` is the 4096-byte mapping created above.
    unsafe { libc::munmap(p, 4096) };
    Ok(())
}

/// `fork()`; the child exits at once, the parent reaps it.
fn fork_and_reap() -> io::Result<()> {
    // SAFETY: the child only calls `_exit`, which is async-signal-safe.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: leaving the child without running any Rust code after fork.
        0 => unsafe { libc::_exit(0) },
        pid => {
            let mut status = 0;
            // SAFETY: waiting for our own child; `status` outlives the call.
            if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
    }
}
