#!/usr/bin/env bash
# scripts/build-shim-macos.sh — build libhavm.dylib on macOS: the portable C part (shim/fs.c) plus the
# Virtualization.framework shim (shim/vz/havm_vz.m, ARC) plus the menu bar item (shim/vz/havm_menubar.m,
# AppKit; only the separate `havm menubar` process calls it).
#   scripts/build-shim-macos.sh [OUTPUT]      default .build/shim/libhavm.dylib; ARCH=x86_64 for Intel
# Deployment target macOS 13 (newer APIs are behind @available in the source). AccessoryAccess (USB
# passthrough, macOS 27 SDK) is weak-linked when the SDK has it, so the library still loads on 13-26.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(uname -s)" != Darwin ]; then
  echo "build-shim-macos.sh: the Objective-C shim can only be built on macOS (on Linux, shim/objc-check/check.sh compile-checks it)." >&2
  exit 4
fi
out=${1:-$root/.build/shim/libhavm.dylib}
arch=${ARCH:-arm64}
min=13.0
sdk=$(xcrun --sdk macosx --show-sdk-path)
obj=$(mktemp -d)
trap 'rm -rf "$obj"' EXIT
mkdir -p "$(dirname "$out")"

extra=()
if [ -d "$sdk/System/Library/Frameworks/AccessoryAccess.framework" ]; then
  extra+=(-weak_framework AccessoryAccess)
fi

clang -arch "$arch" -mmacosx-version-min=$min -O2 -Wall -Wextra -Werror -std=gnu11 -fPIC \
  -I "$root/shim" -c "$root/shim/fs.c" -o "$obj/fs.o"
clang -arch "$arch" -mmacosx-version-min=$min -O2 -Wall -Wextra -Wno-unused-parameter -Werror \
  -Werror=unguarded-availability-new -fobjc-arc -fobjc-arc-exceptions \
  -I "$root/shim" -c "$root/shim/vz/havm_vz.m" -o "$obj/havm_vz.o"
clang -arch "$arch" -mmacosx-version-min=$min -O2 -Wall -Wextra -Wno-unused-parameter -Werror \
  -Werror=unguarded-availability-new -fobjc-arc -fobjc-arc-exceptions \
  -I "$root/shim" -c "$root/shim/vz/havm_menubar.m" -o "$obj/havm_menubar.o"
clang -arch "$arch" -mmacosx-version-min=$min -dynamiclib -fobjc-arc -install_name @rpath/libhavm.dylib \
  "$obj/fs.o" "$obj/havm_vz.o" "$obj/havm_menubar.o" -framework Foundation -framework Virtualization -framework Security \
  -framework AppKit -framework CoreGraphics ${extra[@]+"${extra[@]}"} \
  -o "$out.tmp"
mv -f "$out.tmp" "$out"
# Every function of shim/havm.h (and the headers it includes) must be exported.
missing=$(grep -hoE 'havm_[a-z_]+\(' "$root/shim/havm.h" "$root/shim/havm_fs.h" "$root/shim/havm_menubar.h" | tr -d '(' | sort -u |
  while read -r f; do nm -gU "$out" | grep -q " _$f\$" || echo "$f"; done)
[ -z "$missing" ] || { echo "build-shim-macos.sh: not exported: $missing" >&2; exit 1; }
echo "$out"
