#!/usr/bin/env bash
# The test command: set up a fresh machine if needed, build the native library, type-check, run every test.
# Extra arguments go to `bun test` (e.g. a path or --test-name-pattern).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"
./scripts/build.sh debug >&2
echo "typecheck: tsc --noEmit" >&2
tsc --noEmit -p .
# The end-to-end scenarios boot the mini-HAOS guest under QEMU with the compiled binary, like a user would.
export HAVM_E2E=${HAVM_E2E:-1}
export HAVM_BIN=${HAVM_BIN:-$PWD/.build/debug/havm}
exec bun test --timeout=600000 "$@"
