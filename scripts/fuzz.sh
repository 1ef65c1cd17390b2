#!/usr/bin/env bash
# Fuzzes the OTLP decode paths (protobuf and JSON, all three signals, through the conversion
# to Arrow), the gRPC export body (framing, compression, the shape walk) and the SQL API (the
# real query engine over empty tables) with cargo-fuzz / libFuzzer. The test suite runs the
# same code a bounded number of times (collector/src/fuzzing.rs, store/src/fuzzing.rs). Installs cargo-fuzz if needed. Crashers land in
# fuzz/artifacts/<target>/; turn each into a regression test in collector/tests or the unit
# tests of the module it hit.
#   scripts/fuzz.sh [seconds per target, default 300]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-300}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly-only flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/sightline-fuzz-target}"
for target in otlp_protobuf otlp_json grpc_body sql_api; do
  mkdir -p "corpus/$target"
  cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
  cargo fuzz run --dev --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096
done
