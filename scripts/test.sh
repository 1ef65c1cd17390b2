#!/usr/bin/env bash
# Runs every test of Sightline on a fresh machine: the Rust unit and integration tests (which
# start the real server and talk to it with the OpenTelemetry Rust SDK), then the Python suite
# (the OpenTelemetry Python SDK, pyarrow and DuckDB against the real server). Installs what the
# tests need into caches outside the checkout, so a second run (or another clone) reuses them.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sightline-target}"
VENV="${SIGHTLINE_TEST_VENV:-$HOME/.cache/sightline/venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "Rust: building and running the workspace tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

step "Python: preparing the test environment in $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
req=tests/python/requirements.txt
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

step "Python: end-to-end tests against the real server"
# The binary the Rust tests just built.
cargo build --workspace --quiet
export SIGHTLINE_BIN="$CARGO_TARGET_DIR/debug/sightline"
"$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider
