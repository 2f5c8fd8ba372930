//! Debian packages the commands need, installed with apt when missing (one `apt-get update`
//! first; waits for another apt's lock): QEMU and friends for the VM tier, Prometheus,
//! Alertmanager, Chromium, ping, nginx, curl and ethtool for the tests and the demo.

use std::process::Command;

use anyhow::{Context as _, bail};

/// Wait this long for another apt process to release its lock.
pub const APT_LOCK: &str = "DPkg::Lock::Timeout=600";

/// Whether `package` is installed.
pub fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Runs `cmd`, failing with its status.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("spawn {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// `apt-get update`.
pub fn update() -> anyhow::Result<()> {
    run(Command::new("apt-get").args(["update", "-q", "-o", APT_LOCK]))
}

/// Installs the packages of `packages` that are missing, for `who` (named in the message).
pub fn ensure(who: &str, packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask {who}: installing {missing:?}");
    update()?;
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            APT_LOCK,
        ])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
