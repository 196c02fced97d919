#!/usr/bin/env bash
# The whole test suite from a fresh clone: set-up (host tools, npm ci, build), type check,
# then every unit and integration test with node's test runner. Needs root (real mounts,
# runc, loop devices).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc --noEmit -p .
node scripts/run-tests.mjs test/unit test/integration
