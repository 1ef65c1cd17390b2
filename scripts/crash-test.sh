#!/usr/bin/env bash
# The long crash-safety run: many SIGKILL cycles under load (default 50), then the exactly-once
# check of tests/python/crash_harness.py. Uses the test environment that scripts/test.sh sets up.
#   scripts/crash-test.sh [--cycles N] [--clients N] [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sightline-target}"
VENV="${SIGHTLINE_TEST_VENV:-$HOME/.cache/sightline/venv}"
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q -r tests/python/requirements.txt; }
cargo build --workspace --quiet
exec "$VENV/bin/python" tests/python/crash_harness.py --binary "$CARGO_TARGET_DIR/debug/sightline" "$@"
