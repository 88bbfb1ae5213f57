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
exec bun test --timeout=600000 "$@"
