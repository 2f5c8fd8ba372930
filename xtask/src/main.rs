//! `cargo xtask`: the project's own commands. Needs nothing but a Rust toolchain to build, so it
//! can install everything else (`setup`) before the rest of the workspace compiles.
//!
//! * `setup` — nightly rust-src and bpf-linker built against the nightly's own LLVM (idempotent).
//! * `test`  — fmt, clippy (host and eBPF), every test; kernel tests need root.
//! * `demo`  — the local demo: a cgroup, real workloads, loss, connect errors, then a guard
//!   rolling an experiment back against a real Prometheus, a report; cleanup.
//! * `bench` — engine benchmarks, printed with ratios to a baseline measured in the same run.
//! * `vm-test` — the `vm_*` kernel tests inside QEMU on Debian kernels (BPF LSM, fq).
//! * `image` — the OCI image `FROM scratch` with static chaos-daemon and chaos-ctl (buildah).

mod apt;
mod demo;
mod image;
mod setup;
mod vm;

use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build needs (nightly rust-src, bpf-linker); does nothing when present.
    Setup,
    /// cargo fmt --check, clippy -D warnings (host crates, VM tests and the eBPF crate), cargo
    /// test, then (as root) the VM tier.
    Test {
        /// Skip the VM tier (QEMU), e.g. for a quick run while developing.
        #[arg(long)]
        no_vm: bool,
    },
    /// Run the local demo (root): loss and connect errors in a cgroup, inside versus outside,
    /// then an SLO guard rolling an experiment back against a real Prometheus, with the report.
    Demo,
    /// Run the engine and service benchmarks (root), then the VM latency benchmark, and print
    /// the figures.
    Bench,
    /// Run the VM tier (root): the vm_* tests in QEMU on Debian 6.1 and 6.12 kernels.
    VmTest(vm::Args),
    /// Build the OCI image (buildah): static (musl) chaos-daemon and chaos-ctl FROM scratch.
    Image(image::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Setup => setup::run(),
        Cmd::Test { no_vm } => {
            setup::run()?;
            test()?;
            if no_vm {
                Ok(())
            } else if is_root() {
                vm::run(vm::Args::default())
            } else if std::env::var("CHAOS_REQUIRE_KERNEL").as_deref() == Ok("1") {
                anyhow::bail!("the VM tier needs root (CHAOS_REQUIRE_KERNEL=1 forbids skipping it)")
            } else {
                eprintln!("xtask: not root: skipping the VM tier (cargo xtask vm-test)");
                Ok(())
            }
        }
        Cmd::Demo => {
            setup::run()?;
            demo::run()
        }
        Cmd::Bench => {
            setup::run()?;
            require_root("bench")?;
            cargo(&["bench", "-p", "chaos-daemon", "--benches"])?;
            // Latency needs sch_fq and sch_netem: its benchmark runs in the VM tier.
            vm::run(vm::Args::bench())
        }
        Cmd::VmTest(args) => {
            if !is_root() {
                bail!("vm-test installs Debian packages and adds an apt source: run it as root");
            }
            setup::run()?;
            vm::run(args)
        }
        Cmd::Image(args) => {
            setup::run()?;
            image::run(args)
        }
    }
}

/// Debian packages the tests run for real: Prometheus and promtool (the guards, the alert
/// rules), Alertmanager (the notifications), Chromium (the HTML report), podman, buildah and
/// runc (the daemon's image in a real container), kubectl (kustomize builds deploy/).
const TEST_PACKAGES: &[&str] = &[
    "prometheus",
    "prometheus-alertmanager",
    "chromium",
    "iputils-ping",
    "nginx",
    "curl",
    "ethtool",
    "podman",
    "buildah",
    "runc",
    "busybox-static",
    "kubectl",
    // Real servers for the database load runner's tests (chaos-dbload/tests).
    "postgresql",
    "mariadb-server",
    "redis-server",
];

fn test() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    // The VM tier's tests and benchmarks compile to nothing (or not at all) without their
    // feature: lint them with it.
    cargo(&[
        "clippy",
        "-p",
        "chaos-daemon",
        "--features",
        "vm-tests",
        "--test",
        "vm_*",
        "--bench",
        "vm_*",
        "--",
        "-D",
        "warnings",
    ])?;
    ebpf_clippy()?;
    if is_root() {
        apt::ensure("test", TEST_PACKAGES)?;
    } else {
        eprintln!(
            "xtask: not root: the kernel tests will skip (CI runs them as root); the guard, \
             notification, report and loss tests need {TEST_PACKAGES:?} installed"
        );
    }
    // The service tests drive the chaos-ctl and chaos-daemon binaries: build them all first.
    cargo(&["build", "--workspace", "--bins"])?;
    cargo(&["test"])
}

/// Lints the kernel crate on its own target with the flags `chaos-daemon/build.rs` builds it with.
fn ebpf_clippy() -> anyhow::Result<()> {
    let status = Command::new("rustup")
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--release",
            "-p",
            "chaos-ebpf",
        ])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--target-dir", "target/ebpf-clippy", "--", "-D", "warnings"])
        .env("CARGO_UNSTABLE_PROFILE_RUSTFLAGS", "true")
        .env("CARGO_PROFILE_RELEASE_RUSTFLAGS", "-Ctarget-cpu=v3")
        .env("CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_RUSTFLAGS", "")
        .status()
        .context("running clippy on chaos-ebpf")?;
    if !status.success() {
        bail!("clippy on chaos-ebpf failed");
    }
    Ok(())
}

/// Runs `cargo ARGS` with the toolchain that runs xtask; fails on a non-zero exit.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("{cargo} {args:?}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(what: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!("{what} loads eBPF programs and creates cgroups: run it as root");
    }
    Ok(())
}
