#!/bin/sh
# Build havm's native library from the portable C sources with the system C compiler.
#   scripts/build-shim.sh [OUTPUT] [EXTRA_SOURCE_OR_FLAG...]
# OUTPUT defaults to .build/shim/libhavm.so (.dylib on macOS). Extra arguments are passed to the compiler
# after shim/fs.c, so the macOS build can add its Objective-C sources and frameworks, e.g.
#   scripts/build-shim.sh .build/shim/libhavm.dylib shim/vz/*.m -framework Virtualization -framework Foundation
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
case "$(uname -s)" in
  Darwin) ext=dylib; shared="-dynamiclib -install_name @rpath/libhavm.dylib" ;;
  *) ext=so; shared="-shared" ;;
esac
out=${1:-"$root/.build/shim/libhavm.$ext"}
[ "$#" -gt 0 ] && shift
cc=${CC:-cc}
mkdir -p "$(dirname "$out")"
tmp="$out.$$.tmp"
# shellcheck disable=SC2086 # $shared is a list of flags
"$cc" $shared -fPIC -O2 -Wall -Wextra -Werror -std=gnu11 -fvisibility=default \
  -I "$root/shim" -o "$tmp" "$root/shim/fs.c" "$@"
mv -f "$tmp" "$out"
echo "$out"
