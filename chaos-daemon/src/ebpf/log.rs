//! [`KernelLog`]: the kernel programs' rare events (`chaos-ebpf/src/note.rs`: a fault cap
//! reached, a kernel deadline passed, a packet not parsed, a file too deep for the path walk)
//! read from the object's aya-log ring buffer and written to the daemon's log under the
//! tracing target `chaos_kernel`.
//!
//! A thread of its own drains the ring buffer, so that nothing of the engine, the runtime or a
//! disarm ever waits for it; it ends when the object is dropped.

use std::{
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    thread::JoinHandle,
};

use aya::Ebpf;
use aya_log::EbpfLogger;

use super::KernelError;

/// The tracing target of the kernel's records.
pub const TARGET: &str = "chaos_kernel";

/// Writes aya-log records to tracing.
struct Forward;

impl log::Log for Forward {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let program = record.module_path().unwrap_or_default();
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: TARGET, program, "{message}"),
            log::Level::Warn => tracing::warn!(target: TARGET, program, "{message}"),
            log::Level::Info => tracing::info!(target: TARGET, program, "{message}"),
            log::Level::Debug => tracing::debug!(target: TARGET, program, "{message}"),
            log::Level::Trace => tracing::trace!(target: TARGET, program, "{message}"),
        }
    }

    fn flush(&self) {}
}

/// The thread that drains the kernel's log while the object is loaded.
pub struct KernelLog {
    /// Closing it (on drop) wakes the thread, which drains what is left and ends.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl KernelLog {
    /// Takes the ring buffer out of `ebpf` and starts draining it.
    pub fn start(ebpf: &mut Ebpf) -> Result<Self, KernelError> {
        let logger = EbpfLogger::init_with_logger(ebpf, Forward)
            .map_err(|e| KernelError::Log(e.to_string()))?;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(KernelError::Io {
                what: "creating the kernel log's wake-up pipe",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: pipe2 succeeded: both descriptors are new and owned by nothing else.
        let (wake, stop) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let thread = std::thread::Builder::new()
            .name("kernel-log".into())
            .spawn(move || drain(logger, &wake))
            .map_err(|source| KernelError::Io {
                what: "starting the kernel log thread",
                source,
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for KernelLog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Flushes `logger` whenever the kernel wrote to it, until `wake` is hung up.
fn drain(mut logger: EbpfLogger<Forward>, wake: &OwnedFd) {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: logger.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is an array of two valid pollfd structures for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            tracing::error!(
                target: TARGET,
                error = %std::io::Error::last_os_error(),
                "polling the kernel log failed; kernel events are no longer logged"
            );
            return;
        }
        logger.flush();
        if fds[1].revents != 0 {
            return;
        }
    }
}
