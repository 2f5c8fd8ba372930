//! The VM tier's initramfs: busybox, Debian's `tc`/`ip`/`ping` with their shared libraries, the
//! musl binaries and `vm_*` test executables, each kernel's modules, and the `/init` that sets
//! the machine up, runs the tests and prints the markers the runner reads.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::{cpio::Archive, kernel::output};

/// Debian tools the tests call by name; busybox's applets of the same name are left out.
const DEBIAN_TOOLS: &[&str] = &["tc", "ip", "ping"];

/// Markers `/init` prints; the runner parses them from the serial console.
pub const BOOTED: &str = "CHAOS-VM-BOOTED";
pub const TEST: &str = "CHAOS-VM-TEST";
pub const RESULT: &str = "CHAOS-VM-RESULT";
pub const SETUP_FAILED: &str = "CHAOS-VM-SETUP-FAILED";

/// PID 1 in the VM. Per-boot settings come from the kernel command line as environment
/// variables: CHAOS_VM_KERNEL, CHAOS_VM_LSM and CHAOS_VM_TESTS (comma-separated executables in
/// /tests; empty means all of them).
const INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
fail() { echo "CHAOS-VM-SETUP-FAILED: $*"; echo "CHAOS-VM-RESULT fail"; poweroff -f; }
must() { "$@" || fail "$*"; }
must mount -t proc proc /proc
must mount -t sysfs sysfs /sys
must mount -t devtmpfs devtmpfs /dev
must mount -t tmpfs tmpfs /tmp
must mount -t tmpfs tmpfs /run
must mount -t bpf bpf /sys/fs/bpf
must mount -t securityfs securityfs /sys/kernel/security
must mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+cpu +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control || fail "cgroup2 +cpu +memory +pids"
must ip link set lo up
mods=/lib/modules/$(uname -r)
[ -f "$mods/load-order" ] || fail "no modules for kernel $(uname -r)"
for m in $(cat "$mods/load-order"); do must insmod "$mods/$m.ko"; done
echo "CHAOS-VM-BOOTED release=$(uname -r) lsm=$(cat /sys/kernel/security/lsm)"
export CHAOS_REQUIRE_KERNEL=1 CHAOS_BIN_DIR=/bin RUST_BACKTRACE=1 CHAOS_VM_KERNEL CHAOS_VM_LSM
tests=$(echo "$CHAOS_VM_TESTS" | tr , ' ')
[ -n "$tests" ] || tests=$(ls /tests)
result=pass
for t in $tests; do
  echo "CHAOS-VM-START $t"
  "/tests/$t" --test-threads=1 --nocapture
  rc=$?
  echo "CHAOS-VM-TEST $t exit=$rc"
  [ "$rc" -eq 0 ] || result=fail
done
echo "CHAOS-VM-RESULT $result"
poweroff -f
"#;

/// What goes into the initramfs besides busybox and the Debian tools.
pub struct Contents {
    /// Static binaries for /bin: (name, path).
    pub bins: Vec<(String, PathBuf)>,
    /// Test executables for /tests: (name, path).
    pub tests: Vec<(String, PathBuf)>,
    /// Per kernel release: the modules in load order, (name, .ko).
    pub modules: Vec<(String, Vec<(String, PathBuf)>)>,
}

/// Writes the gzip-compressed newc initramfs to `out`.
pub fn build(contents: &Contents, out: &Path) -> anyhow::Result<()> {
    let mut a = Archive::default();
    for d in ["dev", "proc", "sys", "tmp", "run", "root", "etc"] {
        a.dir(d);
    }
    // The kernel opens /dev/console for PID 1 before /init mounts devtmpfs.
    a.char_dev("dev/console", 5, 1);
    a.bytes("init", INIT, 0o755);
    busybox(&mut a)?;
    for tool in DEBIAN_TOOLS {
        debian_tool(&mut a, tool)?;
    }
    for (name, path) in &contents.bins {
        a.file(&format!("bin/{name}"), path, 0o755);
    }
    a.dir("tests");
    for (name, path) in &contents.tests {
        a.file(&format!("tests/{name}"), path, 0o755);
    }
    for (release, mods) in &contents.modules {
        let dir = format!("lib/modules/{release}");
        let mut order = String::new();
        for (name, ko) in mods {
            a.file(&format!("{dir}/{name}.ko"), ko, 0o644);
            order.push_str(name);
            order.push('\n');
        }
        a.bytes(&format!("{dir}/load-order"), order, 0o644);
    }
    a.write_gz(out)
}

fn busybox(a: &mut Archive) -> anyhow::Result<()> {
    let busybox = Path::new("/bin/busybox");
    let list = output(Command::new(busybox).arg("--list")).context("busybox-static")?;
    a.file("bin/busybox", busybox, 0o755);
    for applet in list.lines().map(str::trim) {
        if !applet.is_empty() && applet != "busybox" && !DEBIAN_TOOLS.contains(&applet) {
            a.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    if !a.contains("bin/sh") {
        bail!("busybox has no sh applet");
    }
    Ok(())
}

/// Copies the host's `tool` to /usr/bin with every library `ldd` lists and the dynamic loader.
fn debian_tool(a: &mut Archive, tool: &str) -> anyhow::Result<()> {
    let host = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .with_context(|| format!("{tool} is not installed on this host"))?;
    a.file(&format!("usr/bin/{tool}"), &host, 0o755);
    for line in output(Command::new("ldd").arg(&host))?.lines() {
        let lib = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line.trim(),
        };
        let lib = lib.split(" (").next().unwrap_or("").trim();
        if lib == "not found" {
            bail!("ldd {}: a library is missing: {line}", host.display());
        }
        if lib.starts_with('/') {
            let real = std::fs::canonicalize(lib).with_context(|| format!("resolve {lib}"))?;
            a.file(lib, &real, 0o755);
        }
    }
    Ok(())
}
