#!/usr/bin/env bash
# Installs everything havm's build and tests need on a fresh Debian/Ubuntu machine (idempotent):
# Debian packages with apt-get (as root or through sudo), then Bun and the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # build: the portable C part of the shim; clang + Apple's open-source headers for the Objective-C check
  gcc libc6-dev binutils clang openssl bc tar file
  # image pipeline (liblzma through FFI; xz for fixtures and the benchmark)
  xz-utils liblzma5 curl
  # qemu backend (x86_64 and, for the aarch64 guest and argv checks, arm64) and the mini-HAOS test guest
  qemu-system-x86 qemu-system-arm qemu-utils qemu-guest-agent ovmf qemu-efi-aarch64 util-linux socat procps
  # test guest builder (Debian packages unpacked into an initramfs and a GPT disk, no mounts)
  dpkg-dev cpio gzip busybox-static dosfstools mtools e2fsprogs fdisk
  # filesystems for the clone tests (loop mounts, root only)
  xfsprogs btrfs-progs mount kmod
  # supervision: real peers for the shutdown chain and the metrics endpoint
  openssh-server openssh-client dropbear-bin prometheus
  # Homebrew formula and launchd plist checks
  ruby rubocop python3
  # benchmarks
  wrk hyperfine
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Bun comes from npm (pinned in package.json); the lockfiles make installs reproducible.
if [ ! -x node_modules/.bin/bun ] || ! node_modules/.bin/bun --version >/dev/null 2>&1; then
  echo "setup: installing npm dependencies (bun, packages)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
node_modules/.bin/bun install --frozen-lockfile >/dev/null
