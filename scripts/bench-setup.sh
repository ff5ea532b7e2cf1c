#!/usr/bin/env bash
# Installs the peers the benchmark compares with (bpftrace, BCC, perf) and gives BCC the
# kernel headers it compiles its programs against. Idempotent; run as root.
#
# BCC needs headers for the running kernel, and Debian has no package for a kernel it did
# not build (this machine's 6.18). Uprobe programs only use pt_regs and the helpers, which
# any recent headers have, so the nearest Debian headers do: their two packages
# (linux-headers-VERSION-amd64 and its -common) are downloaded and unpacked side by side
# into target/bench/kernel-headers, nothing installed, and the benchmark points
# BCC_KERNEL_SOURCE at the tree. Prints that directory on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HEADERS=${EBPF_TOOL_BENCH_HEADERS:-$ROOT/target/bench/kernel-headers}

log() { printf 'bench-setup: %s\n' "$*" >&2; }
die() { printf 'bench-setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get is needed)"

SUDO=
# shellcheck source=scripts/apt.sh
. "$ROOT/scripts/apt.sh"

apt_install bpftrace bpfcc-tools python3-bpfcc linux-perf gcc

# BCC and perf probe create their uprobes through tracefs's uprobe_events.
if ! [ -e /sys/kernel/tracing/uprobe_events ]; then
  log "mounting tracefs on /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || die "cannot mount tracefs (BCC and perf probe need it)"
fi

# The headers' version nearest the running kernel: the newest one not newer than it, else
# the oldest one newer.
nearest_headers() {
  local running versions
  running=$(uname -r | sed 's/[^0-9.].*//')
  versions=$(apt-cache search --names-only '^linux-headers-[0-9.]+-[0-9]+-amd64$' |
    sed -n 's/^linux-headers-\([0-9.]*-[0-9]*\)-amd64 .*/\1/p' | sort -V)
  [ -n "$versions" ] || return 1
  local best="" v
  for v in $versions; do
    if [ "$(printf '%s\n%s\n' "${v%-*}" "$running" | sort -V | head -1)" = "${v%-*}" ]; then
      best=$v
    fi
  done
  [ -n "$best" ] || best=$(printf '%s\n' "$versions" | head -1)
  printf '%s\n' "$best"
}

# The merged tree: -common's sources with -amd64's configuration and generated headers on
# top, laid out as one kernel build directory (what BCC_KERNEL_SOURCE names).
TREE=$HEADERS/merged
if [ -e "$TREE/include/generated/autoconf.h" ] && [ -e "$TREE/include/linux/kconfig.h" ]; then
  printf '%s\n' "$TREE"
  exit 0
fi

version=$(nearest_headers) || { apt_refresh; version=$(nearest_headers); } ||
  die "no linux-headers-*-amd64 package is known to apt"
log "unpacking linux-headers-$version-amd64 and -common for BCC (running $(uname -r))"
download=$(mktemp -d)
chmod 755 "$download"  # apt-get download runs as _apt
trap 'rm -rf "$download"' EXIT
(cd "$download" && apt-get download -q "linux-headers-$version-amd64" "linux-headers-$version-common" >/dev/null) ||
  { apt_refresh; (cd "$download" && apt-get download -q "linux-headers-$version-amd64" "linux-headers-$version-common" >/dev/null); }
rm -rf "$HEADERS"
mkdir -p "$HEADERS/unpacked" "$TREE"
for deb in "$download"/*.deb; do
  dpkg-deb -x "$deb" "$HEADERS/unpacked"
done
src=$HEADERS/unpacked/usr/src
# Copies, not symlinks: the -amd64 package's own scripts/tools links point into a kbuild
# package that is not unpacked, and BCC needs neither.
cp -a "$src/linux-headers-$version-common/." "$TREE/"
cp -a --remove-destination "$src/linux-headers-$version-amd64/." "$TREE/"
rm -f "$TREE/scripts" "$TREE/tools" "$TREE/Makefile"
rm -rf "$HEADERS/unpacked"
[ -e "$TREE/include/generated/autoconf.h" ] || die "unpacked headers lack include/generated/autoconf.h"
[ -e "$TREE/include/linux/kconfig.h" ] || die "unpacked headers lack include/linux/kconfig.h"
printf '%s\n' "$TREE"
