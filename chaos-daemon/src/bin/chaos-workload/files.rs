//! The file and process calls of `chaos-workload file`: COUNT calls of one kind in a scratch
//! directory, each recorded as ok or by errno, to observe syscall-error faults.

use std::{
    fs::{File, OpenOptions},
    io,
    os::{fd::AsRawFd as _, unix::fs::FileExt as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::Tally;

/// The calls `chaos-workload file --op` knows.
pub const OPS: &str = "open, read, write, unlink, create, fork, exec, mmap";

/// Runs COUNT calls of `op` in `dir` (which must exist; `dir/data` is created when missing,
/// before the calls, and its creation is not counted).
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
                    _ => map_once(&f),
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
        "fork" => {
            for _ in 0..count {
                tally.timed(fork_and_reap);
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

/// One read-only private mapping of `f`'s first page, unmapped at once.
fn map_once(f: &File) -> io::Result<()> {
    // SAFETY: a fresh private read-only mapping that nothing else references; unmapped below
    // with the same length.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        )
    };
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
