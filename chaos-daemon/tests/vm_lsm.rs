//! VM tier (`cargo xtask vm-test`): file and process syscall errors in a real Debian kernel,
//! through the BPF LSM when the boot's `lsm=` has `bpf` (`CHAOS_VM_LSM=1`) and through the
//! `fmod_ret` fallback when it does not (`CHAOS_VM_LSM=0`): the same errors must appear either
//! way, only inside the target cgroup (and below), and the kill switch, the kernel deadline and
//! the fault cap must hold as they do for the network faults.
#![cfg(feature = "vm-tests")]

mod support;

use std::{io::Write, path::Path, sync::Mutex, time::Duration};

use chaos_api::experiment::Experiment;
use chaos_daemon::{
    ebpf::lsm::LsmSupport,
    engine::{Armed, Engine, monotonic_ns},
};
use support::*;

/// The mechanism this boot must use, from the runner's `CHAOS_VM_LSM`.
fn expected_mode() -> LsmSupport {
    match std::env::var("CHAOS_VM_LSM").as_deref() {
        Ok("1") => LsmSupport::Lsm,
        Ok("0") => LsmSupport::FmodRet,
        other => panic!("CHAOS_VM_LSM={other:?}: run this via cargo xtask vm-test (0 or 1)"),
    }
}

/// `chaos-workload file --op OP` in `dir`, COUNT calls, inside `cgroup` when given.
fn calls(cgroup: Option<&Path>, op: &str, dir: &Path, count: u64) -> Tally {
    let dir = dir.to_str().unwrap();
    workload(
        cgroup,
        &[
            "file",
            "--op",
            op,
            "--dir",
            dir,
            "--count",
            &count.to_string(),
        ],
    )
}

/// A scratch directory with the `data` file the workload reads, created here, outside the
/// target: creating it inside would itself be faulted.
fn scratch(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::write(dir.0.join("data"), [0u8; 4096]).unwrap();
    dir
}

/// What the engines of this binary logged (the kernel programs' records included).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Copies the log to [`LOG`] and to standard error.
struct Capture;

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(b);
        std::io::stderr().write_all(b)?;
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines logged so far that contain `needle`.
fn logged(needle: &str) -> usize {
    let log = LOG.lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Starts `experiment` and checks the engine runs it with this boot's mechanism.
fn start(engine: &Engine, experiment: &Experiment) -> Armed {
    // The probe logs why it fell back from the BPF LSM, if it did.
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_ansi(false)
        .try_init();
    assert_eq!(engine.lsm_support(), expected_mode());
    engine.start(experiment).expect("syscall_error starts")
}

#[test]
fn open_fails_with_eio_at_the_configured_rate_inside_and_never_outside() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-open");
    // A process in a child of the target is a target too (bpf_current_task_under_cgroup).
    let leaf = cg.child("leaf");
    let dir = scratch("lsm-open");
    let engine = engine(&mount);
    let armed = start(
        &engine,
        &spec(cg.target(), syscall_error("EIO", &["open"]), 0.25),
    );
    let n = 4000;
    let inside = calls(Some(&leaf), "open", &dir.0, n);
    let outside = calls(None, "open", &dir.0, n);
    assert_eq!(inside.ok() + inside.get("EIO"), n, "only EIO: {inside:?}");
    assert_rate(
        "open EIO",
        inside.get("EIO") as f64 / n as f64,
        n,
        0.25,
        4.0,
    );
    assert_eq!(outside.ok(), n, "outside: {outside:?}");
    let c = engine.stop(armed).unwrap();
    assert_eq!(c.injected, inside.get("EIO"));
    assert_eq!(engine.lsm_links_attached(), 0, "stop detaches the hook");
    assert_eq!(
        calls(Some(&leaf), "open", &dir.0, 200).ok(),
        200,
        "after stop"
    );
}

#[test]
fn read_and_write_fail_with_eio() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-rw");
    let dir = scratch("lsm-rw");
    let engine = engine(&mount);
    let armed = start(
        &engine,
        &spec(cg.target(), syscall_error("EIO", &["read", "write"]), 0.5),
    );
    let n = 1000;
    for op in ["read", "write"] {
        let inside = calls(Some(&cg.path), op, &dir.0, n);
        assert_eq!(inside.ok() + inside.get("EIO"), n, "{op}: {inside:?}");
        assert_rate(
            &format!("{op} EIO"),
            inside.get("EIO") as f64 / n as f64,
            n,
            0.5,
            4.0,
        );
        assert_eq!(calls(None, op, &dir.0, n).ok(), n, "{op} outside");
    }
    engine.stop(armed).unwrap();
}

#[test]
fn unlink_create_fork_exec_and_mmap_fail_with_the_chosen_errno() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-calls");
    let dir = scratch("lsm-calls");
    let engine = engine(&mount);
    for (op, errno, n) in [
        ("unlink", "EACCES", 200),
        ("create", "EACCES", 200),
        ("fork", "EAGAIN", 200),
        ("exec", "EACCES", 50),
        ("mmap", "EPERM", 200),
    ] {
        let armed = start(
            &engine,
            &spec(cg.target(), syscall_error(errno, &[op]), 1.0),
        );
        let inside = calls(Some(&cg.path), op, &dir.0, n);
        assert_eq!(inside.get(errno), n, "{op} inside: {inside:?}");
        let outside = calls(None, op, &dir.0, n);
        assert_eq!(outside.ok(), n, "{op} outside: {outside:?}");
        let c = engine.stop(armed).unwrap();
        assert_eq!(c.injected, n, "{op}");
        assert_eq!(
            calls(Some(&cg.path), op, &dir.0, 20).ok(),
            20,
            "{op} after stop"
        );
    }
}

#[test]
fn kill_switch_stops_injecting_while_attached() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-kill");
    let dir = scratch("lsm-kill");
    let engine = engine(&mount);
    let armed = start(
        &engine,
        &spec(cg.target(), syscall_error("EIO", &["open"]), 1.0),
    );
    assert_eq!(calls(Some(&cg.path), "open", &dir.0, 100).get("EIO"), 100);
    engine.switchboard().disarm(&armed.switch).unwrap();
    assert_eq!(engine.lsm_links_attached(), 1, "still attached");
    assert_eq!(
        calls(Some(&cg.path), "open", &dir.0, 100).ok(),
        100,
        "disarmed"
    );
    engine.stop(armed).unwrap();
}

#[test]
fn kernel_deadline_ends_injection_without_the_daemon() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-deadline");
    let dir = scratch("lsm-deadline");
    let engine = engine(&mount);
    let mut s = spec(cg.target(), syscall_error("EIO", &["open"]), 1.0);
    s.duration = Duration::from_secs(8);
    // The slot's kernel deadline is set while arming: after `armed_from`, before `armed_by`.
    let deadline = |at: u64| at + s.duration.as_nanos() as u64;
    let armed_from = deadline(monotonic_ns().unwrap());
    let armed = start(&engine, &s);
    let armed_by = deadline(monotonic_ns().unwrap());
    let before = calls(Some(&cg.path), "open", &dir.0, 20);
    // Eight seconds hold a process start on a busy machine; missing them is a failure, not a
    // reason to skip the check.
    assert!(
        monotonic_ns().unwrap() < armed_from,
        "too slow to observe the window before the deadline"
    );
    assert_eq!(before.get("EIO"), 20, "before the deadline: {before:?}");
    while monotonic_ns().unwrap() < armed_by {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        engine.lsm_links_attached(),
        1,
        "still attached after the deadline"
    );
    let after = calls(Some(&cg.path), "open", &dir.0, 100);
    assert_eq!(after.ok(), 100, "after the deadline: {after:?}");
    engine.stop(armed).unwrap();
}

#[test]
fn fault_cap_is_exact() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-cap");
    let dir = scratch("lsm-cap");
    let engine = engine(&mount);
    let mut s = spec(cg.target(), syscall_error("EIO", &["open"]), 1.0);
    s.max_faults = Some(100);
    let armed = start(&engine, &s);
    let r = calls(Some(&cg.path), "open", &dir.0, 300);
    assert_eq!((r.get("EIO"), r.ok()), (100, 200), "{r:?}");
    let c = engine.stop(armed).unwrap();
    assert_eq!((c.injected, c.capped), (100, 200));
}

/// One experiment over several cgroups: every target (and its children) fails, the cap
/// counts across them, the cgroups beside them are spared, and a later experiment on the same
/// slot with fewer targets does not inherit the old ones.
#[test]
fn one_fault_over_many_cgroups_fails_each_and_the_cap_spans_them() {
    let Some(mount) = kernel() else { return };
    let targets: Vec<TestCgroup> = (0..3)
        .map(|i| TestCgroup::new(&mount, &format!("lsm-many-{i}")))
        .collect();
    let beside = TestCgroup::new(&mount, "lsm-many-beside");
    let dir = scratch("lsm-many");
    let engine = engine(&mount);
    let mut s = spec(targets[0].target(), syscall_error("EIO", &["open"]), 1.0);
    s.targets = targets.iter().map(TestCgroup::target).collect();
    s.max_faults = Some(100);
    let armed = start(&engine, &s);
    let leaf = targets[2].child("leaf");
    let hits: Vec<u64> = [&targets[0].path, &targets[1].path, &leaf]
        .iter()
        .map(|cg| calls(Some(cg), "open", &dir.0, 30).get("EIO"))
        .collect();
    assert_eq!(hits, [30, 30, 30], "every target fails");
    assert_eq!(calls(Some(&beside.path), "open", &dir.0, 30).ok(), 30);
    assert_eq!(calls(None, "open", &dir.0, 30).ok(), 30);
    // 90 injected so far: the next 10, wherever they come from, reach the cap of 100.
    let r = calls(Some(&targets[1].path), "open", &dir.0, 40);
    assert_eq!((r.get("EIO"), r.ok()), (10, 30), "{r:?}");
    let c = engine.stop(armed).unwrap();
    assert_eq!((c.injected, c.capped), (100, 30));
    // The same slot, one target: the others are no longer its.
    let armed = start(
        &engine,
        &spec(targets[0].target(), syscall_error("EIO", &["open"]), 1.0),
    );
    assert_eq!(
        calls(Some(&targets[0].path), "open", &dir.0, 20).get("EIO"),
        20
    );
    assert_eq!(calls(Some(&targets[1].path), "open", &dir.0, 20).ok(), 20);
    assert_eq!(calls(Some(&leaf), "open", &dir.0, 20).ok(), 20);
    engine.stop(armed).unwrap();
    assert_eq!(engine.lsm_links_attached(), 0);
}

#[test]
fn two_faults_share_a_hook_and_the_last_stop_detaches_it() {
    let Some(mount) = kernel() else { return };
    let (a, b) = (
        TestCgroup::new(&mount, "lsm-a"),
        TestCgroup::new(&mount, "lsm-b"),
    );
    let dir = scratch("lsm-share");
    let engine = engine(&mount);
    let a_armed = start(
        &engine,
        &spec(a.target(), syscall_error("EIO", &["open"]), 1.0),
    );
    let b_armed = start(
        &engine,
        &spec(b.target(), syscall_error("EACCES", &["open"]), 1.0),
    );
    assert_eq!(
        engine.lsm_links_attached(),
        1,
        "one file_open program for both"
    );
    assert_eq!(calls(Some(&a.path), "open", &dir.0, 50).get("EIO"), 50);
    assert_eq!(calls(Some(&b.path), "open", &dir.0, 50).get("EACCES"), 50);
    engine.stop(a_armed).unwrap();
    assert_eq!(engine.lsm_links_attached(), 1, "b still needs it");
    assert_eq!(calls(Some(&a.path), "open", &dir.0, 50).ok(), 50);
    assert_eq!(calls(Some(&b.path), "open", &dir.0, 50).get("EACCES"), 50);
    engine.stop(b_armed).unwrap();
    assert_eq!(engine.lsm_links_attached(), 0);
}

/// A mount on an existing directory, detached again on drop: a fresh tmpfs or a bind mount.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &Path) -> Self {
        Self::new(c"tmpfs", dir, Some(c"tmpfs"), 0)
    }

    /// `from` (a directory) mounted again on `dir`.
    fn bind(from: &Path, dir: &Path) -> Self {
        let from = std::ffi::CString::new(from.to_str().unwrap()).unwrap();
        Self::new(&from, dir, None, libc::MS_BIND)
    }

    fn new(
        source: &std::ffi::CStr,
        dir: &Path,
        fstype: Option<&std::ffi::CStr>,
        flags: libc::c_ulong,
    ) -> Self {
        let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let fstype = fstype.map_or(std::ptr::null(), std::ffi::CStr::as_ptr);
        // SAFETY: NUL-terminated strings (or null for no type) that outlive the call; no data.
        let rc =
            unsafe { libc::mount(source.as_ptr(), c.as_ptr(), fstype, flags, std::ptr::null()) };
        assert_eq!(
            rc,
            0,
            "mount {source:?} on {dir:?}: {}",
            std::io::Error::last_os_error()
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated string that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn path_prefix_fails_every_file_call_only_under_the_prefix() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-path");
    let root = TempDir::new("lsm-path");
    // `x-data` is the prefix; `x-data/a/b` is nested below it; `x-data/mnt` is another
    // filesystem mounted below it; `x-data2` shares its first bytes but is not under it;
    // `other` is elsewhere.
    let prefix = root.0.join("x-data");
    let (nested, mounted) = (prefix.join("a/b"), prefix.join("mnt"));
    let (sibling, other) = (root.0.join("x-data2"), root.0.join("other"));
    for d in [&nested, &mounted, &sibling, &other] {
        std::fs::create_dir_all(d).unwrap();
    }
    let _tmpfs = Mount::tmpfs(&mounted);
    for d in [&prefix, &nested, &mounted, &sibling, &other] {
        std::fs::write(d.join("data"), [0u8; 4096]).unwrap();
    }
    let engine = engine(&mount);
    let p = 0.5;
    // n = 1000 per place: 4 sigma at p = 0.5 is 0.063, so a fault at 0.4 fails.
    for (op, errno, n) in [
        ("open", "EIO", 1000),
        ("read", "EIO", 1000),
        ("write", "ENOSPC", 1000),
        ("unlink", "EACCES", 1000),
        ("create", "EROFS", 1000),
        ("mmap", "EPERM", 1000),
    ] {
        // A trailing slash is normalized away.
        let fault = syscall_error_under(errno, &[op], Some(format!("{}/", prefix.display())));
        let armed = start(&engine, &spec(cg.target(), fault, p));
        let mut failed = 0;
        for (where_, dir) in [
            ("prefix", &prefix),
            ("nested", &nested),
            ("mount", &mounted),
        ] {
            let r = calls(Some(&cg.path), op, dir, n);
            assert_eq!(r.ok() + r.get(errno), n, "{op} in {where_}: {r:?}");
            assert_rate(
                &format!("{op} {errno} under the prefix ({where_})"),
                r.get(errno) as f64 / n as f64,
                n,
                p,
                4.0,
            );
            failed += r.get(errno);
        }
        for (where_, dir) in [("x-data2", &sibling), ("other", &other)] {
            let r = calls(Some(&cg.path), op, dir, n);
            assert_eq!(r.ok(), n, "{op} in {where_}, beside the prefix: {r:?}");
        }
        let r = calls(None, op, &prefix, n);
        assert_eq!(
            r.ok(),
            n,
            "{op} under the prefix, outside the cgroup: {r:?}"
        );
        let c = engine.stop(armed).unwrap();
        assert_eq!(c.injected, failed, "{op}");
        eprintln!(
            "path_prefix {op}: {failed} of {} faulted under the prefix, 0 of {} beside it, 0 of {n} outside the cgroup",
            3 * n,
            2 * n
        );
    }
    assert_eq!(engine.lsm_links_attached(), 0);
}

/// The walk stops 63 directories below a filesystem's root (docs/faults.md): a file deeper
/// than that is outside every prefix, and the kernel says so in the log, once.
#[test]
fn a_file_deeper_than_the_walk_is_outside_every_prefix_and_logged() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-deep");
    let prefix = scratch("lsm-deep");
    let deep = (0..70).fold(prefix.0.clone(), |p, _| p.join("d"));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("data"), [0u8; 4096]).unwrap();
    let engine = engine(&mount);
    let fault = syscall_error_under("EIO", &["open"], Some(prefix.0.display().to_string()));
    let armed = start(&engine, &spec(cg.target(), fault, 1.0));
    let near = calls(Some(&cg.path), "open", &prefix.0, 10);
    assert_eq!(near.get("EIO"), 10, "under the prefix: {near:?}");
    let far = calls(Some(&cg.path), "open", &deep, 10);
    assert_eq!(far.ok(), 10, "70 directories below the prefix: {far:?}");
    let needle = "path_prefix: a file more than 63 directories below its filesystem's root";
    eventually("the kernel's line", Duration::from_secs(10), || {
        (logged(needle) > 0).then_some(())
    });
    engine.stop(armed).unwrap();
    assert_eq!(logged(needle), 1, "one line for ten calls");
    assert_eq!(engine.lsm_links_attached(), 0);
}

#[test]
fn path_prefix_must_exist() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-path-missing");
    let root = TempDir::new("lsm-path-missing");
    let engine = engine(&mount);
    assert_eq!(engine.lsm_support(), expected_mode());
    let fault = syscall_error_under(
        "EIO",
        &["read"],
        Some(root.0.join("missing").display().to_string()),
    );
    let e = engine.start(&spec(cg.target(), fault, 1.0)).unwrap_err();
    assert!(e.to_string().contains("fault.path_prefix"), "{e}");
    assert_eq!(engine.lsm_links_attached(), 0, "nothing attached");
}

/// `write` fails `write()` into a pipe and into a socket as into a file. At p = 1 the workload's
/// own result line would fail too (its stdout is a pipe): a cap of exactly the measured calls
/// fails each of them and lets the line through, the first capped call.
#[test]
fn write_fails_writes_into_pipes_and_sockets() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-pipe");
    let dir = scratch("lsm-pipe");
    let engine = engine(&mount);
    let n = 200;
    for op in ["pipe-write", "socket-write"] {
        let mut s = spec(cg.target(), syscall_error("EIO", &["write"]), 1.0);
        s.max_faults = Some(n);
        let armed = start(&engine, &s);
        // Outside first, while every ticket of the cap is left: they take none.
        let outside = calls(None, op, &dir.0, n);
        assert_eq!(outside.ok(), n, "{op} outside: {outside:?}");
        let inside = calls(Some(&cg.path), op, &dir.0, n);
        assert_eq!(inside.get("EIO"), n, "{op} inside: {inside:?}");
        let c = engine.stop(armed).unwrap();
        assert_eq!(
            (c.injected, c.capped),
            (n, 1),
            "{op}: every write into it, then the result line"
        );
    }
}

/// `read` fails getdents (listing a directory) and `fork` fails thread creation (a thread is a
/// clone). Outside the cgroup both work.
#[test]
fn read_fails_getdents_and_fork_fails_threads() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-more");
    let dir = scratch("lsm-more");
    let engine = engine(&mount);
    let n = 200;
    // EAGAIN for threads: musl's pthread_create reports any failed clone as EAGAIN.
    for (call, errno, op) in [("read", "EIO", "getdents"), ("fork", "EAGAIN", "thread")] {
        let armed = start(
            &engine,
            &spec(cg.target(), syscall_error(errno, &[call]), 1.0),
        );
        let inside = calls(Some(&cg.path), op, &dir.0, n);
        assert_eq!(inside.get(errno), n, "{op} inside: {inside:?}");
        let outside = calls(None, op, &dir.0, n);
        assert_eq!(outside.ok(), n, "{op} outside: {outside:?}");
        let c = engine.stop(armed).unwrap();
        assert_eq!(c.injected, n, "{op}");
    }
}

/// `mmap` fails mappings of a file and never an anonymous mapping, in the same experiment.
#[test]
fn mmap_fails_file_mappings_and_never_anonymous_ones() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-anon");
    let dir = scratch("lsm-anon");
    let engine = engine(&mount);
    let armed = start(
        &engine,
        &spec(cg.target(), syscall_error("EPERM", &["mmap"]), 1.0),
    );
    let n = 200;
    let file = calls(Some(&cg.path), "mmap", &dir.0, n);
    assert_eq!(file.get("EPERM"), n, "file mappings: {file:?}");
    let anon = calls(Some(&cg.path), "mmap-anon", &dir.0, n);
    assert_eq!(anon.ok(), n, "anonymous mappings: {anon:?}");
    let c = engine.stop(armed).unwrap();
    assert_eq!(c.injected, n, "only the file mappings");
}

/// A path prefix is a directory's identity: the directory reached through a bind mount of it
/// elsewhere and through a symlink to it matches too, a directory beside it does not.
#[test]
fn a_path_prefix_matches_through_a_bind_mount_and_a_symlink() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-alias");
    let root = TempDir::new("lsm-alias");
    let (prefix, bound, other) = (
        root.0.join("data"),
        root.0.join("bound"),
        root.0.join("other"),
    );
    for d in [&prefix, &bound, &other] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("data"), [0u8; 4096]).unwrap();
    }
    let link = root.0.join("link");
    std::os::unix::fs::symlink(&prefix, &link).unwrap();
    let _bind = Mount::bind(&prefix, &bound);
    let engine = engine(&mount);
    let n = 200;
    // A call on an open file and one on a new name in the directory.
    for (op, errno) in [("open", "EIO"), ("create", "EROFS")] {
        let fault = syscall_error_under(errno, &[op], Some(prefix.display().to_string()));
        let armed = start(&engine, &spec(cg.target(), fault, 1.0));
        for (through, dir) in [("the bind mount", &bound), ("the symlink", &link)] {
            let r = calls(Some(&cg.path), op, dir, n);
            assert_eq!(r.get(errno), n, "{op} through {through}: {r:?}");
        }
        let r = calls(Some(&cg.path), op, &other, n);
        assert_eq!(r.ok(), n, "{op} beside the prefix: {r:?}");
        let c = engine.stop(armed).unwrap();
        assert_eq!(c.injected, 2 * n, "{op}");
    }
}

/// A prefix stands for at most 16 directories (itself and the mounts below it): with 15 mounts
/// below it the fault runs and covers the last of them; with 16 it is refused at start, naming
/// the limit, with nothing attached.
#[test]
fn a_prefix_standing_for_more_than_16_directories_is_refused() {
    let Some(mount) = kernel() else { return };
    let cg = TestCgroup::new(&mount, "lsm-many");
    let root = TempDir::new("lsm-many");
    let prefix = root.0.join("data");
    let dirs: Vec<_> = (0..16).map(|i| prefix.join(format!("m{i}"))).collect();
    let engine = engine(&mount);
    let fault = || syscall_error_under("EIO", &["open"], Some(prefix.display().to_string()));
    let mut mounts = Vec::new();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
        mounts.push(Mount::tmpfs(d));
        // Created outside the target: creating it inside would be faulted.
        std::fs::write(d.join("data"), [0u8; 4096]).unwrap();
        if mounts.len() == 15 {
            let armed = start(&engine, &spec(cg.target(), fault(), 1.0));
            let r = calls(Some(&cg.path), "open", d, 20);
            assert_eq!(
                r.get("EIO"),
                20,
                "in the 15th mount below the prefix: {r:?}"
            );
            engine.stop(armed).unwrap();
        }
    }
    let e = engine
        .start(&spec(cg.target(), fault(), 1.0))
        .expect_err("17 directories")
        .to_string();
    assert!(
        e.contains("fault.path_prefix")
            && e.contains("at most 16 directories")
            && e.contains("17 found"),
        "{e}"
    );
    assert_eq!(engine.lsm_links_attached(), 0, "nothing attached");
}
