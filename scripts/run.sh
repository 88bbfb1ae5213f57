#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, build havm, run `havm run` (arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh release
exec ./.build/release/havm run "$@"
