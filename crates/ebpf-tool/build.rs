//! Builds the kernel programs (`crates/ebpf-tool-ebpf`) for the BPF target and leaves the
//! object in OUT_DIR, where `src/loader.rs` embeds it. `scripts/setup.sh` installs what
//! this needs.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use aya_build::{Package, Toolchain};

/// The rustup toolchain `scripts/setup.sh` links to Debian's rustc-web.
const LINKED_TOOLCHAIN: &str = "ebpf-tool-rust";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=EBPF_TOOLCHAIN");
    println!("cargo:rerun-if-env-changed=PATH");

    let cargo_bin = cargo_home().join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![cargo_bin];
    dirs.extend(env::split_paths(&path));
    let path = env::join_paths(dirs).context("PATH holds a directory name with ':'")?;
    if find_in(&path, "bpf-linker").is_none() {
        bail!("bpf-linker was not found on PATH or in ~/.cargo/bin; run scripts/setup.sh");
    }

    let toolchain = env::var("EBPF_TOOLCHAIN").unwrap_or_else(|_| pick_toolchain());
    // SAFETY: build scripts are single-threaded here; the variables are read by the cargo
    // process aya-build spawns. RUSTC_BOOTSTRAP=1 makes aya-build pass `-Z build-std=core`
    // even to a stable compiler (Debian's rustc-web ships the core source for it).
    unsafe {
        env::set_var("PATH", &path);
        env::set_var("RUSTC_BOOTSTRAP", "1");
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf-tool-ebpf");
    let root = root.to_str().context("the source path is not UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "ebpf-tool-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
    .context("building the kernel programs failed; scripts/setup.sh installs what they need")
}

/// A user's own nightly with rust-src wins; otherwise the toolchain setup.sh links.
fn pick_toolchain() -> String {
    let nightly_sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    match nightly_sysroot {
        Some(root) if root.join("lib/rustlib/src/rust/library/core").is_dir() => "nightly".into(),
        _ => LINKED_TOOLCHAIN.into(),
    }
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"))
}

fn find_in(path: &std::ffi::OsStr, program: &str) -> Option<PathBuf> {
    env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
