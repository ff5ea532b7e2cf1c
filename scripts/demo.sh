#!/usr/bin/env bash
# The README's first command after set-up: build, then trace libc's malloc for a few
# seconds (5, or $1) while some ordinary commands run, so there are events to see even
# on an idle machine. Equivalent to `cargo run --release -- uprobe libc malloc -d 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --release -q -p ebpf-tool
seconds="${1:-5}"
( for _ in $(seq "$seconds"); do sleep 1; ls / >/dev/null; date >/dev/null; done ) &
target/release/ebpf-tool uprobe libc malloc -d "$seconds"
wait
