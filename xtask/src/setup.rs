//! Installs what building the kernel programs needs, idempotently: the nightly toolchain with
//! `rust-src` (for `-Z build-std=core`) and `clippy`, and bpf-linker built against the nightly
//! toolchain's own libLLVM (no prebuilt bpf-linker can be downloaded here; see ENVIRONMENT.md).
//!
//! bpf-linker's RUNPATH points at a small prefix of symlinks to the nightly's libLLVM; a stamp
//! file there records which bpf-linker and which libLLVM it was built for, so a nightly update
//! with a new LLVM rebuilds it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    ensure_nightly()?;
    ensure_bpf_linker()
}

fn ensure_nightly() -> anyhow::Result<()> {
    let installed = output("rustup", &["toolchain", "list"])?;
    if !installed.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("xtask setup: installing the nightly toolchain");
        exec(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let components = output(
        "rustup",
        &["component", "list", "--installed", "--toolchain", "nightly"],
    )?;
    for c in ["rust-src", "clippy"] {
        if !components.lines().any(|l| l.starts_with(c)) {
            eprintln!("xtask setup: adding {c} to the nightly toolchain");
            exec(Command::new("rustup").args(["component", "add", c, "--toolchain", "nightly"]))?;
        }
    }
    Ok(())
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let sysroot =
        PathBuf::from(output("rustup", &["run", "nightly", "rustc", "--print", "sysroot"])?.trim());
    let lib = sysroot.join("lib");
    let soname = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| {
            format!(
                "the nightly toolchain has no libLLVM.so.* in {}",
                lib.display()
            )
        })?;
    let verbose = output("rustup", &["run", "nightly", "rustc", "-vV"])?;
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV reports no LLVM version")?
        .to_string();
    let prefix = data_dir()?.join("llvm");
    let stamp_file = prefix.join("stamp");
    let stamp = format!("bpf-linker {BPF_LINKER_VERSION} for {soname}\n");
    let linker_runs = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if linker_runs && fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(());
    }

    eprintln!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against {soname} (about a minute)"
    );
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    for link in [soname.as_str(), "libLLVM.so"] {
        let dst = prefix_lib.join(link);
        let _ = fs::remove_file(&dst);
        std::os::unix::fs::symlink(lib.join(&soname), &dst)
            .with_context(|| format!("symlinking {}", dst.display()))?;
    }
    exec(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .env("LLVM_PREFIX", &prefix),
    )?;
    let version = output("bpf-linker", &["--version"])
        .context("bpf-linker was installed but does not run: is ~/.cargo/bin on PATH?")?;
    fs::write(&stamp_file, stamp)?;
    eprintln!("xtask setup: {}", version.trim());
    Ok(())
}

/// `$XDG_DATA_HOME/chaos-ebpf` or `~/.local/share/chaos-ebpf`.
fn data_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME") {
        Some(d) => PathBuf::from(d),
        None => {
            Path::new(&std::env::var_os("HOME").context("HOME is not set")?).join(".local/share")
        }
    };
    Ok(base.join("chaos-ebpf"))
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}
