//! Builds the kernel programs (`chaos-ebpf`) with aya-build; `src/ebpf` embeds the object.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let meta = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root = std::path::Path::new(&meta)
        .parent()
        .ok_or_else(|| anyhow!("chaos-daemon has no parent directory"))?
        .join("chaos-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    // The programs need BPF ISA v3 (`BPF_ATOMIC | BPF_FETCH` for the exact fault cap). aya-build
    // sets CARGO_ENCODED_RUSTFLAGS for its nightly cargo child, which would replace any
    // `-Ctarget-cpu` we put there; profile rustflags are appended instead. The build-override
    // keeps host proc-macros on the host CPU. Only the child cargo sees these variables.
    // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("CARGO_UNSTABLE_PROFILE_RUSTFLAGS", "true");
        std::env::set_var("CARGO_PROFILE_RELEASE_RUSTFLAGS", "-Ctarget-cpu=v3");
        std::env::set_var("CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_RUSTFLAGS", "");
    }
    println!("cargo:rerun-if-changed=../chaos-common/src");
    aya_build::build_ebpf(
        [Package {
            name: "chaos-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
