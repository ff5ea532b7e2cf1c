#!/usr/bin/env bash
# Makes this machine able to build ebpf-tool, kernel programs included. Idempotent: each
# step checks first and does nothing when its result is already there.
#
# Kernel code in Rust needs a compiler that can build `core` for bpfel-unknown-none
# (nightly + rust-src, or any rustc with its std source and RUSTC_BOOTSTRAP=1) and
# bpf-linker built against an LLVM at least as new as that compiler's.
#   1. A rustup nightly with rust-src and a bpf-linker on PATH: used as they are.
#   2. Otherwise Debian's rustc-web + rust-web-src, linked as the rustup toolchain
#      "ebpf-tool-rust", and bpf-linker built against the LLVM that rustc reports.
# Also installs what the tests use: C and C++ compilers for the fixtures, binutils and xz
# to make stripped and MiniDebugInfo copies.
set -euo pipefail

TOOLCHAIN=ebpf-tool-rust
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else die "run as root (apt-get is needed)"; fi
else
  SUDO=
fi

# shellcheck source=scripts/apt.sh
. "$(dirname "$0")/apt.sh"

# Tools the tests and fixtures use.
apt_install gcc g++ libc6-dev binutils xz-utils util-linux bpftool golang-go ca-certificates \
  systemtap-sdt-dev python3 libstdc++6 prometheus man-db

# Userspace builds with the machine's cargo; a machine without one gets Debian's.
if ! command -v cargo >/dev/null; then
  apt_install cargo-web rustc-web
fi

nightly_has_rust_src() {
  command -v rustup >/dev/null || return 1
  local sysroot
  sysroot=$(rustup run nightly rustc --print sysroot 2>/dev/null) || return 1
  [ -d "$sysroot/lib/rustlib/src/rust/library/core" ]
}

if nightly_has_rust_src && command -v bpf-linker >/dev/null; then
  log "using rustup nightly with rust-src and $(command -v bpf-linker)"
  exit 0
fi

apt_install rustc-web rust-web-src
llvm_major=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$llvm_major" ] || die "could not read the LLVM version from /usr/bin/rustc -vV"
log "Debian rustc $(/usr/bin/rustc -V | cut -d' ' -f2) uses LLVM $llvm_major"
apt_install "llvm-$llvm_major-dev" "libpolly-$llvm_major-dev" libzstd-dev zlib1g-dev

if command -v rustup >/dev/null; then
  if ! rustup toolchain list -v | grep -q "^$TOOLCHAIN /usr\$"; then
    rustup toolchain list | grep -q "^$TOOLCHAIN\b" && rustup toolchain uninstall "$TOOLCHAIN" >/dev/null
    log "linking /usr as rustup toolchain $TOOLCHAIN"
    rustup toolchain link "$TOOLCHAIN" /usr
  fi
fi

linker_llvm_ok() {
  local linker
  linker=$(command -v bpf-linker) || return 1
  ldd "$linker" 2>/dev/null | grep -q "libLLVM.so.$llvm_major\b"
}
if ! linker_llvm_ok; then
  log "building bpf-linker against LLVM $llvm_major (about a minute)"
  LLVM_PREFIX="/usr/lib/llvm-$llvm_major" PATH="/usr/lib/llvm-$llvm_major/bin:$PATH" \
    cargo install --force bpf-linker --no-default-features --features "llvm-$llvm_major" -q
fi
log "ready: kernel programs build with toolchain $TOOLCHAIN and $(command -v bpf-linker)"
