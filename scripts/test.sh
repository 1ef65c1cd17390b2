#!/usr/bin/env bash
# Runs every test of Sightline on a fresh machine: the Rust unit and integration tests (which
# start the real server and talk to it with the OpenTelemetry Rust SDK), the Python suite
# (the OpenTelemetry Python SDK, pyarrow, DuckDB, a webhook server and aiosmtpd against the real
# server), then the web UI in headless Chromium (playwright-core). Installs what the tests need
# (Python packages into a cache outside the checkout, Debian's chromium) by itself.
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

step "Web UI: pages in headless Chromium against \`sightline demo\`"
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
[ -d ui/web/node_modules ] || (cd ui/web && npm ci --no-audit --no-fund --loglevel=error)
export SIGHTLINE_ARTIFACTS="${SIGHTLINE_ARTIFACTS:-$CARGO_TARGET_DIR/ui-test-results}"
(cd ui/web && npm test)
echo "screenshots: $SIGHTLINE_ARTIFACTS"
