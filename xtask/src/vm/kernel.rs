//! The host side of the VM tier's kernels and tools: Debian packages installed with apt, Debian
//! kernel packages picked by name with apt-cache, downloaded with `apt-get download` and
//! extracted with `dpkg-deb -x` into a cache (`~/.cache/chaos-ebpf/vm`), and the kernel modules
//! the VM loads, with their dependencies in load order.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::apt::{self, run};

/// Debian packages the VM tier runs on the host (QEMU, the initramfs tools, modinfo); musl's
/// come with [`super::ensure_musl`].
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "iproute2",
    "iputils-ping",
    "kmod",
    "xz-utils",
];

const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/chaos-ebpf-bookworm-backports.sources";
const BACKPORTS: &str = "Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// A kernel the VM tier boots, by Debian package name pattern.
pub struct KernelSpec {
    /// `6.1`: the packages are `linux-image-<label>.*-amd64`.
    pub label: &'static str,
    /// The suite to download from (`None`: the default bookworm suites).
    pub suite: Option<&'static str>,
}

/// A kernel package extracted in the cache.
pub struct Kernel {
    pub package: String,
    /// `uname -r` of this kernel (its `lib/modules` directory name).
    pub release: String,
    pub root: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }
}

pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs the missing Debian packages and the musl target.
pub fn install_tools() -> anyhow::Result<()> {
    apt::ensure("vm-test", PACKAGES)?;
    super::ensure_musl("vm-test")
}

/// Adds the bookworm-backports suite to apt (and updates) unless it is there already.
fn ensure_backports() -> anyhow::Result<()> {
    if std::fs::read_to_string(BACKPORTS_SOURCES).is_ok_and(|s| s == BACKPORTS) {
        return Ok(());
    }
    std::fs::write(BACKPORTS_SOURCES, BACKPORTS)
        .with_context(|| format!("write {BACKPORTS_SOURCES}"))?;
    apt::update()
}

/// Orders package names like `linux-image-6.12.90+deb12.1-amd64` by their version's numbers.
pub fn version_key(name: &str) -> Vec<u64> {
    let v = name.strip_suffix("-amd64").unwrap_or(name);
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(u64::MAX))
        .collect()
}

/// The newest `linux-image-<label>.*-amd64` package apt knows (not -cloud, -rt, -unsigned, -dbg),
/// in `spec.suite` when given (`apt-cache madison` says which suites carry each package).
fn pick(spec: &KernelSpec) -> anyhow::Result<Option<String>> {
    let prefix = format!("linux-image-{}.", spec.label);
    let regex = format!("^{}", prefix.replace('.', "\\."));
    let list = output(Command::new("apt-cache").args(["search", "--names-only", &regex]))?;
    let mut names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| {
            name.strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix("-amd64"))
                .is_some_and(|v| {
                    v.replace("deb", "")
                        .chars()
                        .all(|c| c.is_ascii_digit() || ".-+".contains(c))
                })
        })
        .map(str::to_string)
        .collect();
    if let (Some(suite), false) = (spec.suite, names.is_empty()) {
        let madison = output(Command::new("apt-cache").arg("madison").args(&names))?;
        let in_suite = format!(" {suite}/");
        names.retain(|n| {
            madison
                .lines()
                .any(|l| l.split(" | ").next() == Some(n.as_str()) && l.contains(&in_suite))
        });
    }
    Ok(names.into_iter().max_by_key(|name| version_key(name)))
}

/// The cache directory of the VM tier: `~/.cache/chaos-ebpf/vm`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is unset")?;
    Ok(Path::new(&home).join(".cache/chaos-ebpf/vm"))
}

/// Picks, downloads (once) and extracts (once) the newest kernel package of `spec`.
pub fn fetch(spec: &KernelSpec) -> anyhow::Result<Kernel> {
    if spec.suite.is_some() {
        ensure_backports()?;
    }
    let package = match pick(spec)? {
        Some(p) => p,
        None => {
            apt::update()?;
            pick(spec)?.with_context(|| {
                format!("apt knows no linux-image-{}.*-amd64 package", spec.label)
            })?
        }
    };
    let cache = cache_dir()?;
    let debs = cache.join("debs").join(&package);
    let root = cache.join("kernels").join(&package);
    let done = root.join(".extracted");
    if !done.exists() {
        let deb = match find_deb(&debs)? {
            Some(d) => d,
            None => {
                eprintln!("xtask vm-test: downloading {package}");
                let partial = cache.join("debs").join(format!("{package}.partial"));
                let _ = std::fs::remove_dir_all(&partial);
                std::fs::create_dir_all(&partial)?;
                let name = match spec.suite {
                    Some(suite) => format!("{package}/{suite}"),
                    None => package.clone(),
                };
                run(Command::new("apt-get")
                    .args(["download", "-q", &name])
                    .current_dir(&partial))?;
                let _ = std::fs::remove_dir_all(&debs);
                std::fs::rename(&partial, &debs)?;
                find_deb(&debs)?.with_context(|| format!("no .deb in {}", debs.display()))?
            }
        };
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        std::fs::write(&done, "")?;
    }
    let release = single_dir(&root.join("lib/modules"))?;
    Ok(Kernel {
        package,
        release,
        root,
    })
}

fn find_deb(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

fn single_dir(dir: &Path) -> anyhow::Result<String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<anyhow::Result<_>>()?;
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one directory in {}, found {names:?}",
            dir.display()
        ),
    }
}

/// The module files of `kernel` by module name (`-` spelled `_`).
fn module_index(kernel: &Kernel) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![
        kernel
            .root
            .join("lib/modules")
            .join(&kernel.release)
            .join("kernel"),
    ];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else if let Some(m) = name.strip_suffix(".ko").or(name.strip_suffix(".ko.xz")) {
                index.insert(m.replace('-', "_"), e.path());
            }
        }
    }
    Ok(index)
}

/// The modules `wanted` and everything they depend on (per `modinfo -F depends`), dependencies
/// first, as `(name, uncompressed .ko)`; compressed modules are decompressed into `work`.
pub fn modules(
    kernel: &Kernel,
    wanted: &[&str],
    work: &Path,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let index = module_index(kernel)?;
    let mut order: Vec<(String, PathBuf)> = Vec::new();
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        order: &mut Vec<(String, PathBuf)>,
        path: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        if order.iter().any(|(n, _)| n == name) {
            return Ok(());
        }
        if path.iter().any(|n| n == name) {
            bail!("module dependency cycle: {path:?} -> {name}");
        }
        let file = index
            .get(name)
            .with_context(|| format!("module {name} is not in this kernel package"))?;
        let deps = output(Command::new("modinfo").args(["-F", "depends"]).arg(file))?;
        path.push(name.to_string());
        for dep in deps.trim().split(',').filter(|d| !d.is_empty()) {
            visit(&dep.replace('-', "_"), index, order, path)?;
        }
        path.pop();
        order.push((name.to_string(), file.clone()));
        Ok(())
    }
    for name in wanted {
        visit(name, &index, &mut order, &mut Vec::new())?;
    }
    let dir = work.join("modules").join(&kernel.release);
    std::fs::create_dir_all(&dir)?;
    order
        .into_iter()
        .map(|(name, file)| {
            if file.extension().is_some_and(|x| x == "xz") {
                let out = Command::new("xz").arg("-dc").arg(&file).output()?;
                if !out.status.success() {
                    bail!("xz -dc {} failed", file.display());
                }
                let ko = dir.join(format!("{name}.ko"));
                std::fs::write(&ko, out.stdout)?;
                Ok((name, ko))
            } else {
                Ok((name, file))
            }
        })
        .collect()
}
