//! `cargo xtask vm-test`: the VM test tier. Builds static (musl) binaries and the
//! `chaos-daemon/tests/vm_*` test executables, packs them with Debian kernels' modules into an
//! initramfs, boots each configuration of [`CONFIGS`] under QEMU (TCG) and fails unless every
//! test executable reported success. See docs/vm-tier.md.

mod cpio;
mod initramfs;
mod kernel;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use kernel::{Kernel, KernelSpec};

/// The static target of the VM tier's binaries and of the image (`cargo xtask image`).
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// The kernels, by `--kernel` label.
const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        label: "6.1",
        suite: None,
    },
    KernelSpec {
        label: "6.12",
        suite: Some("bookworm-backports"),
    },
];

/// Modules every VM loads (with their dependencies).
const MODULES: &[&str] = &["sch_fq", "sch_netem", "sch_ingress", "cls_bpf", "veth"];

const LSM_WITH_BPF: &str = "lockdown,capability,landlock,yama,apparmor,bpf";
const LSM_WITHOUT_BPF: &str = "lockdown,capability,landlock,yama,apparmor";

/// One boot: a kernel, whether the BPF LSM is active, and which test executables run (`None`:
/// every `vm_*` executable; listed ones that were not built are left out).
struct Config {
    kernel: &'static str,
    bpf_lsm: bool,
    tests: Option<&'static [&'static str]>,
}

const CONFIGS: &[Config] = &[
    Config {
        kernel: "6.1",
        bpf_lsm: true,
        tests: None,
    },
    Config {
        kernel: "6.12",
        bpf_lsm: true,
        tests: None,
    },
    // The fmod_ret fallback for kernels without the BPF LSM, on both kernels (their BTF and
    // verifiers differ); the smoke test proves the BPF LSM is off.
    Config {
        kernel: "6.1",
        bpf_lsm: false,
        tests: Some(&["vm_smoke", "vm_lsm", "vm_cleanup"]),
    },
    Config {
        kernel: "6.12",
        bpf_lsm: false,
        tests: Some(&["vm_smoke", "vm_lsm", "vm_cleanup"]),
    },
];

#[derive(clap::Args)]
pub struct Args {
    /// Boot only this kernel (6.1 or 6.12).
    #[arg(long)]
    kernel: Option<String>,
    /// Run only this test executable (e.g. vm_smoke).
    #[arg(long)]
    test: Option<String>,
    /// Keep the work directory (target/vm-test/work) with the initramfs.
    #[arg(long)]
    keep: bool,
    /// Fail a boot that has not powered off after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Run the VM benchmarks (chaos-daemon/benches/vm_*) instead of the tests, on every kernel
    /// with the BPF LSM; `cargo xtask bench` does this after the host benchmarks.
    #[arg(long)]
    bench: bool,
}

impl Args {
    /// The benchmarks on every kernel, as `cargo xtask bench` runs them.
    pub fn bench() -> Self {
        Self {
            bench: true,
            ..Self::default()
        }
    }
}

impl Default for Args {
    /// Every configuration, as `cargo xtask test` runs it.
    fn default() -> Self {
        Self {
            kernel: None,
            test: None,
            keep: false,
            timeout_secs: 600,
            bench: false,
        }
    }
}

/// Fails when a configuration lists a test executable that is not among `built`.
fn missing_listed(configs: &[&Config], built: &[&str]) -> anyhow::Result<()> {
    for c in configs {
        for listed in c.tests.unwrap_or_default() {
            if !built.contains(listed) {
                bail!(
                    "vm-test configuration {}-lsm{} lists the test executable {listed}, which \
                     was not built (built: {built:?}): rename it in xtask/src/vm.rs too",
                    c.kernel,
                    u8::from(c.bpf_lsm)
                );
            }
        }
    }
    Ok(())
}

/// What one boot reported.
struct Outcome {
    name: String,
    wall: Duration,
    problems: Vec<String>,
    tests: Vec<(String, i32)>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(k) = &args.kernel
        && !KERNELS.iter().any(|s| s.label == k)
    {
        let allowed: Vec<_> = KERNELS.iter().map(|s| s.label).collect();
        bail!("--kernel {k}: unknown kernel, allowed are {allowed:?}");
    }
    let configs: Vec<&Config> = CONFIGS
        .iter()
        .filter(|c| args.kernel.as_ref().is_none_or(|k| k == c.kernel))
        // The benchmarks run once per kernel, in its full (BPF LSM) configuration.
        .filter(|c| !args.bench || c.tests.is_none())
        .collect();
    kernel::install_tools()?;
    let mut kernels: Vec<(&str, Kernel)> = Vec::new();
    for spec in KERNELS {
        if configs.iter().any(|c| c.kernel == spec.label) {
            kernels.push((spec.label, kernel::fetch(spec)?));
        }
    }
    for (label, k) in &kernels {
        eprintln!(
            "xtask vm-test: kernel {label} = {} ({})",
            k.package, k.release
        );
    }
    let build_started = Instant::now();
    let (bins, mut tests) = build(args.bench)?;
    eprintln!(
        "xtask vm-test: musl build took {:.0?}",
        build_started.elapsed()
    );
    if let Some(t) = &args.test {
        let names: Vec<&String> = tests.iter().map(|(n, _)| n).collect();
        if !tests.iter().any(|(n, _)| n == t) {
            bail!("--test {t}: no such test executable, built are {names:?}");
        }
        tests.retain(|(n, _)| n == t);
    }
    let root = workspace_root();
    let work = root.join("target/vm-test/work");
    let logs = root.join("target/vm-test/logs");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&logs)?;
    let mut modules = Vec::new();
    for (_, k) in &kernels {
        modules.push((k.release.clone(), kernel::modules(k, MODULES, &work)?));
    }
    let initrd = work.join("initrd.gz");
    let contents = initramfs::Contents {
        bins,
        tests: tests.clone(),
        modules,
    };
    initramfs::build(&contents, &initrd)?;
    let size = std::fs::metadata(&initrd)?.len();
    eprintln!("xtask vm-test: initramfs {} MiB", size.div_ceil(1 << 20));

    // A configuration that lists a test executable the build did not produce (renamed or
    // removed) would silently lose its coverage: that is a failure, not a skip.
    let built: Vec<&str> = tests.iter().map(|(n, _)| n.as_str()).collect();
    if args.test.is_none() {
        missing_listed(&configs, &built)?;
    }
    let mut outcomes = Vec::new();
    for c in configs {
        let selected: Vec<String> = tests
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| c.tests.is_none_or(|only| only.contains(&n.as_str())))
            .collect();
        let name = format!("{}-lsm{}", c.kernel, u8::from(c.bpf_lsm));
        if selected.is_empty() {
            // Only with --test: this configuration does not run that executable.
            eprintln!("xtask vm-test: {name}: does not run the selected test; skipped");
            continue;
        }
        let (_, k) = kernels
            .iter()
            .find(|(l, _)| *l == c.kernel)
            .context("kernel")?;
        let log = logs.join(format!("{name}.log"));
        let timeout = Duration::from_secs(args.timeout_secs);
        outcomes.push(unless_stuck(&name, || {
            boot(&name, c, k, &initrd, &selected, &log, timeout)
        })?);
    }
    if !args.keep {
        std::fs::remove_dir_all(&work)?;
    }

    eprintln!("\nxtask vm-test summary (logs in {}):", logs.display());
    let mut failed = outcomes.is_empty();
    for o in &outcomes {
        let tests: Vec<String> = o.tests.iter().map(|(t, rc)| format!("{t}={rc}")).collect();
        let verdict = if o.problems.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        eprintln!(
            "  {:10} {verdict:6} {:>5.0?}  {}",
            o.name,
            o.wall,
            tests.join(" ")
        );
        for p in &o.problems {
            eprintln!("             - {p}");
        }
        failed |= !o.problems.is_empty();
    }
    eprintln!("  total {:.0?}", started.elapsed());
    if failed {
        bail!("the VM tier failed");
    }
    Ok(())
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

type Executables = Vec<(String, PathBuf)>;

/// Builds the release musl binaries and the `vm_*` test (or, with `bench`, benchmark)
/// executables: (bins, tests). One cargo run, so every crate is built once with one feature set
/// (dev-dependencies included).
fn build(bench: bool) -> anyhow::Result<(Executables, Executables)> {
    let kind = if bench { "bench" } else { "test" };
    let built = cargo_json(&[
        "build",
        "--release",
        "--target",
        TARGET,
        "-p",
        "chaos-daemon",
        "-p",
        "chaos-ctl",
        "--features",
        "chaos-daemon/vm-tests",
        "--bins",
        // Only the VM tests (benches): cargo matches the glob against the targets' names.
        &format!("--{kind}"),
        "vm_*",
    ])?;
    let pick = |kind: &str, prefix: &str| -> Executables {
        let mut v: Executables = built
            .iter()
            .filter(|(k, n, _)| k == kind && n.starts_with(prefix))
            .map(|(_, n, p)| (n.clone(), p.clone()))
            .collect();
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
        v
    };
    let (bins, tests) = (pick("bin", "chaos-"), pick(kind, "vm_"));
    for want in ["chaos-daemon", "chaos-workload", "chaos-ctl"] {
        if !bins.iter().any(|(n, _)| n == want) {
            bail!("the musl build produced no {want}");
        }
    }
    if tests.is_empty() {
        bail!("no chaos-daemon {kind} executable named vm_* was built");
    }
    Ok((bins, tests))
}

/// The environment variables (and prefixes) cargo sets for the crate it runs or tests.
const CRATE_VARIABLES: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Installs what a static build for [`TARGET`] needs: musl's gcc wrapper (for the C in ring and
/// SQLite) and the Rust target. `who` names the command in apt's message.
pub fn ensure_musl(who: &str) -> anyhow::Result<()> {
    crate::apt::ensure(who, &["musl-tools"])?;
    crate::apt::run(Command::new("rustup").args(["target", "add", TARGET]))
}

/// Runs `cargo ARGS --message-format=json` (a build for [`TARGET`] compiles its C with musl-gcc)
/// and returns each executable as (kind, name, path).
pub fn cargo_json(args: &[&str]) -> anyhow::Result<Vec<(String, String, PathBuf)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(args)
        .arg("--message-format=json")
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // What cargo sets for the crate it runs (xtask, and the test that runs `cargo xtask image`)
    // is no setting of this build: ring's build script watches OUT_DIR and CARGO_MANIFEST_DIR,
    // so passing them on would rebuild ring and all above it whenever the caller changes.
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if CRATE_VARIABLES.iter().any(|v| name.starts_with(v)) {
            cmd.env_remove(&key);
        }
    }
    // ring and rusqlite's bundled SQLite are C: compile them with musl's gcc wrapper.
    if std::env::var_os("CC_x86_64_unknown_linux_musl").is_none() {
        cmd.env("CC_x86_64_unknown_linux_musl", "musl-gcc");
    }
    let out = cmd.output().with_context(|| format!("{cargo} {args:?}"))?;
    let mut exes = Vec::new();
    for line in out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let msg: serde_json::Value = serde_json::from_slice(line).context("cargo JSON message")?;
        // The compiler's errors and warnings come as JSON too: shown as cargo shows them.
        if let Some(rendered) = msg["message"]["rendered"].as_str() {
            eprint!("{rendered}");
        }
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let (Some(exe), Some(name), Some(kind)) = (
            msg["executable"].as_str(),
            msg["target"]["name"].as_str(),
            msg["target"]["kind"][0].as_str(),
        ) else {
            continue;
        };
        exes.push((kind.to_string(), name.to_string(), PathBuf::from(exe)));
    }
    if !out.status.success() {
        bail!("cargo {} failed ({})", args.join(" "), out.status);
    }
    Ok(exes)
}

/// A boot that has not printed `CHAOS-VM-BOOTED` by then is stuck (a normal one takes 6-30 s
/// under TCG; twice a development run hung after the firmware with no kernel output at all).
const BOOT_DEADLINE: Duration = Duration::from_secs(180);

/// How a boot ended.
enum Booted {
    /// It ran; the outcome says how the tests did.
    Ran(Outcome),
    /// It was stuck before `/init` reported ([`BOOT_DEADLINE`]): no test ran.
    Stuck,
    /// The emulator broke the kernel: an `int3` oops in kernel text ([`EMULATOR_OOPS`]). The
    /// outcome is kept in case the retry fails the same way.
    EmulatorFault(Outcome),
}

/// The kernel's report of an `int3` trap it did not place: under QEMU's multi-threaded TCG a
/// vCPU can run a stale translation of code the kernel is patching (`text_poke_bp` for a static
/// key, e.g. the CFS bandwidth key that writing `cpu.max` flips) after the patch completed.
/// Seen once (6.12, `dequeue_entities`, while a test wrote `cpu.max`). A fault of our programs
/// is never an int3 in kernel text.
const EMULATOR_OOPS: &str = "Oops: int3:";

/// Runs `boot` (one boot of `name`) and, when it was stuck before `/init` ran or the emulator
/// broke the kernel ([`Booted`]), once more; the second failure is the verdict.
fn unless_stuck(
    name: &str,
    mut boot: impl FnMut() -> anyhow::Result<Booted>,
) -> anyhow::Result<Outcome> {
    let mut last = None;
    for attempt in 1..=2 {
        match boot()? {
            Booted::Ran(outcome) => return Ok(outcome),
            Booted::Stuck => eprintln!(
                "xtask vm-test: {name} did not reach /init within {BOOT_DEADLINE:?} \
                 (attempt {attempt} of 2): killed"
            ),
            Booted::EmulatorFault(outcome) => {
                eprintln!(
                    "xtask vm-test: {name}: the kernel oopsed on an int3 it did not place (an \
                     emulator fault, see EMULATOR_OOPS; attempt {attempt} of 2)"
                );
                last = Some(outcome);
            }
        }
    }
    Ok(last.unwrap_or_else(|| Outcome {
        name: name.to_string(),
        wall: 2 * BOOT_DEADLINE,
        problems: vec![format!(
            "did not reach /init within {BOOT_DEADLINE:?}, twice"
        )],
        tests: Vec::new(),
    }))
}

/// Boots `config` and checks its serial console: the kernel and LSM state it reports, one
/// marker per test executable with its exit code, and the final result.
fn boot(
    name: &str,
    config: &Config,
    kernel: &Kernel,
    initrd: &Path,
    tests: &[String],
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<Booted> {
    let lsm = if config.bpf_lsm {
        LSM_WITH_BPF
    } else {
        LSM_WITHOUT_BPF
    };
    // Unknown `NAME=value` parameters become /init's environment. `clocksource=tsc`: with TCG's
    // emulated HPET every hrtimer (fq's watchdog, so every delayed packet) fires ~5 ms late.
    let append = format!(
        "console=ttyS0 quiet panic=-1 rdinit=/init tsc=reliable clocksource=tsc lsm={lsm} CHAOS_VM_KERNEL={} \
         CHAOS_VM_LSM={} CHAOS_VM_TESTS={}",
        config.kernel,
        u8::from(config.bpf_lsm),
        tests.join(",")
    );
    eprintln!(
        "xtask vm-test: booting {name} ({}): {}",
        kernel.release,
        tests.join(" ")
    );
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-m",
            "1024",
            "-smp",
            "2",
        ])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(kernel.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawn qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let mut file =
        std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let _ = std::io::stdout().write_all(&buf);
                let _ = file.write_all(&buf);
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                lines.lock().expect("lines lock").push(line);
                buf.clear();
            }
        })
    };
    let mut problems = Vec::new();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > BOOT_DEADLINE
            && !lines
                .lock()
                .expect("lines lock")
                .iter()
                .any(|l| l.contains("CHAOS-VM-BOOTED"))
        {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            return Ok(Booted::Stuck);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            problems.push(format!("timed out after {timeout:?}"));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = reader.join();
    let wall = started.elapsed();
    let lines = std::mem::take(&mut *lines.lock().expect("lines lock"));
    let (reported, more) = check(config, &lines, tests);
    problems.extend(more);
    let emulator_fault = lines.iter().any(|l| l.contains(EMULATOR_OOPS));
    if emulator_fault {
        problems.push(format!("the kernel reported {EMULATOR_OOPS:?}"));
    }
    let outcome = Outcome {
        name: name.to_string(),
        wall,
        problems,
        tests: reported,
    };
    Ok(if emulator_fault {
        Booted::EmulatorFault(outcome)
    } else {
        Booted::Ran(outcome)
    })
}

/// The exit codes the console reported, and what is wrong with the boot.
fn check(config: &Config, lines: &[String], tests: &[String]) -> (Vec<(String, i32)>, Vec<String>) {
    let after = |marker: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.find(marker).map(|i| l[i + marker.len()..].trim()))
            .collect()
    };
    let mut problems: Vec<String> = after(initramfs::SETUP_FAILED)
        .iter()
        .map(|s| format!("setup failed: {s}"))
        .collect();
    match after(initramfs::BOOTED).first() {
        None => problems.push("the VM never reported booting".into()),
        Some(booted) => {
            let release = booted
                .strip_prefix("release=")
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("");
            if !release.starts_with(&format!("{}.", config.kernel)) {
                problems.push(format!("booted {release}, want {}", config.kernel));
            }
            let lsm = booted.split("lsm=").nth(1).unwrap_or("");
            if lsm.split(',').any(|l| l == "bpf") != config.bpf_lsm {
                problems.push(format!(
                    "active LSMs {lsm:?} but bpf_lsm={}",
                    config.bpf_lsm
                ));
            }
        }
    }
    let mut reported = Vec::new();
    for t in tests {
        let marker = format!("{t} exit=");
        let rc = after(initramfs::TEST).iter().find_map(|s| {
            s.strip_prefix(&marker)
                .and_then(|rc| rc.parse::<i32>().ok())
        });
        match rc {
            Some(rc) => {
                if rc != 0 {
                    problems.push(format!("{t} exited with {rc}"));
                }
                reported.push((t.clone(), rc));
            }
            None => problems.push(format!("{t} never reported its exit code")),
        }
    }
    match after(initramfs::RESULT).first() {
        Some(&"pass") => {}
        Some(other) => problems.push(format!("the VM reported {other}")),
        None => problems.push("the VM never reported its result".into()),
    }
    (reported, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSM_ON: Config = Config {
        kernel: "6.1",
        bpf_lsm: true,
        tests: None,
    };

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    fn tests(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_listed_test_that_was_not_built_fails_the_run() {
        let fallback = Config {
            kernel: "6.12",
            bpf_lsm: false,
            tests: Some(&["vm_smoke", "vm_lsm"]),
        };
        let all: Vec<&Config> = CONFIGS.iter().collect();
        assert!(
            missing_listed(&all, &["vm_smoke", "vm_lsm", "vm_cleanup", "vm_latency"]).is_ok(),
            "every listed executable exists"
        );
        let e = missing_listed(&[&LSM_ON, &fallback], &["vm_smoke", "vm_lsm_renamed"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("6.12-lsm0") && e.contains("vm_lsm,") && e.contains("vm_lsm_renamed"),
            "{e}"
        );
    }

    #[test]
    fn a_clean_console_passes() {
        let console = lines(
            "\x1b[2JCHAOS-VM-BOOTED release=6.1.0-56-amd64 lsm=lockdown,capability,bpf\n\
             CHAOS-VM-TEST vm_a exit=0\nCHAOS-VM-TEST vm_b exit=0\nCHAOS-VM-RESULT pass",
        );
        let (reported, problems) = check(&LSM_ON, &console, &tests(&["vm_a", "vm_b"]));
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(reported, vec![("vm_a".into(), 0), ("vm_b".into(), 0)]);
    }

    #[test]
    fn a_failed_or_silent_test_fails_the_boot() {
        let console = lines(
            "CHAOS-VM-BOOTED release=6.1.0-56-amd64 lsm=bpf\n\
             CHAOS-VM-TEST vm_a exit=101\nCHAOS-VM-RESULT fail",
        );
        let (reported, problems) = check(&LSM_ON, &console, &tests(&["vm_a", "vm_b"]));
        assert_eq!(reported, vec![("vm_a".into(), 101)]);
        assert_eq!(
            problems,
            [
                "vm_a exited with 101",
                "vm_b never reported its exit code",
                "the VM reported fail"
            ]
        );
    }

    #[test]
    fn the_wrong_kernel_or_lsm_state_fails_the_boot() {
        let console = lines(
            "CHAOS-VM-BOOTED release=6.12.95+deb12-amd64 lsm=lockdown,capability\n\
             CHAOS-VM-TEST vm_a exit=0\nCHAOS-VM-RESULT pass",
        );
        let (_, problems) = check(&LSM_ON, &console, &tests(&["vm_a"]));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("booted 6.12.95+deb12-amd64, want 6.1"));
        assert!(problems[1].contains("bpf_lsm=true"));
    }

    #[test]
    fn a_silent_console_fails_the_boot() {
        let (_, problems) = check(&LSM_ON, &[], &tests(&["vm_a"]));
        assert_eq!(
            problems,
            [
                "the VM never reported booting",
                "vm_a never reported its exit code",
                "the VM never reported its result"
            ]
        );
    }

    #[test]
    fn kernel_versions_order_by_their_numbers() {
        let mut v = [
            "linux-image-6.12.9+deb12-amd64",
            "linux-image-6.12.90+deb12.1-amd64",
            "linux-image-6.12.90+deb12-amd64",
            "linux-image-6.12.117+deb12-amd64",
        ];
        v.sort_by_key(|n| kernel::version_key(n));
        assert_eq!(
            v,
            [
                "linux-image-6.12.9+deb12-amd64",
                "linux-image-6.12.90+deb12-amd64",
                "linux-image-6.12.90+deb12.1-amd64",
                "linux-image-6.12.117+deb12-amd64",
            ]
        );
    }

    #[test]
    fn a_stuck_boot_or_an_emulator_oops_is_booted_once_more_and_a_second_one_is_the_verdict() {
        let outcome = |problems: &[&str]| Outcome {
            name: "6.12-lsm1".into(),
            wall: Duration::from_secs(1),
            problems: problems.iter().map(|p| p.to_string()).collect(),
            tests: Vec::new(),
        };
        let mut boots = vec![
            Booted::Ran(outcome(&[])),
            Booted::EmulatorFault(outcome(&["oops"])),
        ];
        let ok = unless_stuck("x", || Ok(boots.pop().unwrap())).unwrap();
        assert!(ok.problems.is_empty());
        let mut boots = vec![
            Booted::EmulatorFault(outcome(&["second oops"])),
            Booted::Stuck,
        ];
        let failed = unless_stuck("x", || Ok(boots.pop().unwrap())).unwrap();
        assert_eq!(failed.problems, ["second oops"]);
        let mut boots = vec![Booted::Stuck, Booted::Stuck];
        let stuck = unless_stuck("x", || Ok(boots.pop().unwrap())).unwrap();
        assert!(stuck.problems[0].contains("twice"), "{:?}", stuck.problems);
    }
}
