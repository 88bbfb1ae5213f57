#!/usr/bin/env bash
# Cold start of the compiled binary: `havm version` vs `bun --version`, run the same way (hyperfine, same
# run, same machine). Target: havm version under 30 ms on the project's Linux machine. Prints the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .build/release/havm ] || ./scripts/build.sh release
BUN=$(readlink -f node_modules/.bin/bun)
HOME_DIR=$(mktemp -d)
out=$(mktemp)
HOME=$HOME_DIR hyperfine -N --warmup 5 --runs ${RUNS:-40} --export-json "$out" \
  -n "havm version" "$PWD/.build/release/havm version" \
  -n "havm --help" "$PWD/.build/release/havm --help" \
  -n "bun --version" "$BUN --version" >&2
python3 - "$out" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
h, b, help_ = r["havm version"], r["bun --version"], r["havm --help"]
ms = lambda x: x["mean"] * 1000
print(f"havm version: {ms(h):.1f} ms (median {h['median']*1000:.1f} ms)   havm --help: {ms(help_):.1f} ms   bun --version: {ms(b):.1f} ms")
print(f"ratio havm version / bun --version: {h['mean']/b['mean']:.2f}   target: havm version < 30 ms -> {'MET' if ms(h) < 30 else 'NOT MET'}")
PY
rm -rf "$HOME_DIR" "$out"
