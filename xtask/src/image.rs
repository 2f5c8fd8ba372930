//! `cargo xtask image`: the OCI image `FROM scratch` with the static (musl) chaos-daemon,
//! chaos-ctl, chaos-dbload and chaos-workload, built with buildah from `deploy/image/Containerfile`. No base
//! image and no registry: the release musl build is the VM tier's ([`vm::cargo_json`]) and shares
//! its target directory, so a rebuild after a change compiles only what changed.
//!
//! `deploy/image/Dockerfile` builds the same image in Docker; [`BINARIES`] is the recipe both
//! files must follow (checked before every build and by the tests below).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{apt, vm};

/// The image's executables: (name, path in the image). The build context holds each under its
/// name; the Containerfile and the Dockerfile's final stage copy each to its path.
pub const BINARIES: &[(&str, &str)] = &[
    ("chaos-daemon", "/usr/local/bin/chaos-daemon"),
    ("chaos-ctl", "/usr/local/bin/chaos-ctl"),
    // database_load's runner: the daemon starts it from its own directory.
    ("chaos-dbload", "/usr/local/bin/chaos-dbload"),
    // The sample application of deploy/sample/ (an HTTP server exporting request metrics, a
    // TCP dependency, a load generator), so that a drill needs no other image.
    ("chaos-workload", "/usr/local/bin/chaos-workload"),
];

/// The image's name when `--tag` is not given.
const DEFAULT_TAG: &str = "localhost/chaos-ebpf:latest";

const CONTAINERFILE: &str = "deploy/image/Containerfile";

#[derive(clap::Args)]
pub struct Args {
    /// The image's name and tag.
    #[arg(long, default_value = DEFAULT_TAG)]
    tag: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = vm::workspace_root();
    let containerfile = root.join(CONTAINERFILE);
    let text = std::fs::read_to_string(&containerfile)
        .with_context(|| format!("read {}", containerfile.display()))?;
    follows_the_recipe(CONTAINERFILE, &text)?;
    vm::ensure_musl("image")?;
    apt::ensure("image", &["buildah"])?;

    // Every binary of the two packages, as the VM tier builds them.
    let built = vm::cargo_json(&[
        "build",
        "--release",
        "--target",
        vm::TARGET,
        "-p",
        "chaos-daemon",
        "-p",
        "chaos-ctl",
        "-p",
        "chaos-dbload",
        "--bins",
    ])?;
    eprintln!("xtask image: musl build took {:.0?}", started.elapsed());
    let context = Context::new()?;
    for (name, _) in BINARIES {
        let (_, _, path) = built
            .iter()
            .find(|(kind, n, _)| kind == "bin" && n == name)
            .with_context(|| format!("the musl build produced no {name}"))?;
        std::fs::copy(path, context.0.join(name))
            .with_context(|| format!("copy {} into the build context", path.display()))?;
    }
    let status = Command::new("buildah")
        .arg("bud")
        .arg("--file")
        .arg(&containerfile)
        .args(["--tag", &args.tag])
        // Creation and file times at the epoch: the same binaries make the same image (ID),
        // so a rebuild without a change leaves no untagged image behind.
        .args(["--timestamp", "0"])
        .arg(&context.0)
        .status()
        .context("spawn buildah (apt-get install buildah)")?;
    if !status.success() {
        bail!("buildah bud {} failed ({status})", containerfile.display());
    }
    eprintln!(
        "xtask image: built {} in {:.0?} (run it with podman, or push it where your nodes pull from)",
        args.tag,
        started.elapsed()
    );
    Ok(())
}

/// A private build context under the temporary directory, removed on drop.
struct Context(PathBuf);

impl Context {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("chaos-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails unless the final stage of `text` (a Containerfile or Dockerfile named `file`) copies
/// exactly [`BINARIES`]: each from a source whose file name is the binary's, to its path.
fn follows_the_recipe(file: &str, text: &str) -> anyhow::Result<()> {
    let copies = copies(&final_stage(text))?;
    let want: Vec<(String, String)> = BINARIES
        .iter()
        .map(|(n, p)| (n.to_string(), p.to_string()))
        .collect();
    if copies != want {
        bail!(
            "{file}: the final stage copies {copies:?} (file name, path), but xtask's recipe \
             (xtask/src/image.rs BINARIES) is {want:?}"
        );
    }
    Ok(())
}

/// The instructions of a Containerfile, as (keyword in upper case, arguments): comments and
/// blank lines dropped, continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut line = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                line.push_str(part);
                line.push(' ');
            }
            None => {
                line.push_str(trimmed);
                let (keyword, rest) = line
                    .trim()
                    .split_once(char::is_whitespace)
                    .unwrap_or((&line, ""));
                out.push((keyword.to_uppercase(), rest.trim().to_string()));
                line.clear();
            }
        }
    }
    out
}

/// The instructions of the last stage, from its `FROM` on.
fn final_stage(text: &str) -> Vec<(String, String)> {
    let all = instructions(text);
    let from = all.iter().rposition(|(k, _)| k == "FROM").unwrap_or(0);
    all[from..].to_vec()
}

/// The (source file name, destination) of each `COPY` of `stage`; flags such as `--from=build`
/// are left out.
fn copies(stage: &[(String, String)]) -> anyhow::Result<Vec<(String, String)>> {
    stage
        .iter()
        .filter(|(k, _)| k == "COPY" || k == "ADD")
        .map(|(k, rest)| {
            let words: Vec<&str> = rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            match words[..] {
                [source, destination] if k == "COPY" => {
                    let name = Path::new(source)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Ok((name, destination.to_string()))
                }
                _ => bail!("`{k} {rest}`: the image's files are copied one per COPY, SOURCE DEST"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(file: &str) -> String {
        let path = vm::workspace_root().join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_containerfile_the_dockerfile_and_the_recipe_name_the_same_binaries_and_paths() {
        let containerfile = read(CONTAINERFILE);
        let dockerfile = read("deploy/image/Dockerfile");
        follows_the_recipe(CONTAINERFILE, &containerfile).unwrap();
        follows_the_recipe("deploy/image/Dockerfile", &dockerfile).unwrap();
        // Both final stages are the same image: FROM scratch, the copies, then the same
        // entrypoint and everything else.
        let rest = |text: &str| -> Vec<(String, String)> {
            let mut stage = final_stage(text);
            stage.retain(|(k, _)| k != "COPY");
            stage
        };
        assert_eq!(rest(&containerfile)[0], ("FROM".into(), "scratch".into()));
        assert_eq!(rest(&containerfile), rest(&dockerfile));
    }

    #[test]
    fn a_final_stage_that_strays_from_the_recipe_is_refused() {
        let ok = "FROM rust AS build\nRUN cargo build\nCOPY x /y\n\
                  FROM scratch\n# the binaries\nCOPY --from=build /out/chaos-daemon \\\n  \
                  /usr/local/bin/chaos-daemon\nCOPY --from=build /out/chaos-ctl /usr/local/bin/chaos-ctl\n\
                  COPY --from=build /out/chaos-dbload /usr/local/bin/chaos-dbload\n\
                  COPY --from=build /out/chaos-workload /usr/local/bin/chaos-workload\n";
        follows_the_recipe("ok", ok).unwrap();
        let moved = ok.replace("/usr/local/bin/chaos-ctl", "/bin/chaos-ctl");
        let e = follows_the_recipe("moved", &moved).unwrap_err().to_string();
        assert!(e.contains("moved") && e.contains("/bin/chaos-ctl"), "{e}");
        let missing = ok.replace(
            "COPY --from=build /out/chaos-ctl /usr/local/bin/chaos-ctl\n",
            "",
        );
        assert!(follows_the_recipe("missing", &missing).is_err());
        let extra = format!("{ok}COPY busybox /usr/local/bin/busybox\n");
        assert!(follows_the_recipe("extra", &extra).is_err());
        let two = ok.replace(
            "COPY --from=build /out/chaos-ctl /usr/local/bin/chaos-ctl",
            "COPY chaos-ctl busybox /usr/local/bin/",
        );
        let e = follows_the_recipe("two", &two).unwrap_err().to_string();
        assert!(e.contains("one per COPY"), "{e}");
    }
}
