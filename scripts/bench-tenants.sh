#!/usr/bin/env bash
# Noisy-neighbour benchmark on a release build: one server, two tenants with keys. The quiet
# tenant sends at a steady rate alone, then again while the flood tenant sends ten times its
# own limit; the load tool reports each run's refusals and ack latencies (p50/p99).
#   scripts/bench-tenants.sh [--http|--grpc] [duration]
# FLOOD_LIMIT (items/s, default 20000) is the flood tenant's ingest_items_per_second;
# QUIET_RATE (default 10000) the quiet tenant's steady rate (its limit is the default).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sightline-target}"
proto="${1:---http}"; duration="${2:-20s}"
flood_limit="${FLOOD_LIMIT:-20000}"; quiet_rate="${QUIET_RATE:-10000}"
bin="$CARGO_TARGET_DIR/release/sightline"
[ -x "$bin" ] || cargo build --release --bin sightline
work=$(mktemp -d /tmp/sightline-bench-tenants.XXXXXX)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/data"
key() { "$bin" keys create --data-dir "$work/data" --tenant "$1" --role ingest 2>/dev/null; }
quiet_key=$(key quiet); flood_key=$(key flood)
cat > "$work/sightline.toml" <<TOML
[tenants.overrides.flood]
ingest_items_per_second = $flood_limit
TOML
"$bin" serve --config "$work/sightline.toml" --data-dir "$work/data" \
  --otlp-grpc-listen 127.0.0.1:0 --otlp-http-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --ready-file "$work/ready.json" > "$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$work/ready.json" ] && break; sleep 0.05; done
addr() { python3 -c "import json,sys; print(json.load(open('$work/ready.json'))['$1'])"; }
if [ "$proto" = --grpc ]; then target=(--grpc "$(addr otlp_grpc)"); else target=(--http "$(addr otlp_http)"); fi
load() { "$bin" load "${target[@]}" --signal traces --duration "$duration" --seed 1 --json "$@"; }
summary() {
  python3 -c '
import json, sys
r = json.load(sys.stdin)
keys = ("items_per_sec", "requests", "ok", "rejected_by_status", "errored", "latency_us")
print(sys.argv[1], json.dumps({k: r.get(k) for k in keys}))
' "$1"
}
echo "quiet tenant alone at $quiet_rate spans/s:"
load --api-key "$quiet_key" --connections 4 --rate "$quiet_rate" | summary quiet-solo
echo "quiet tenant at $quiet_rate spans/s beside the flood tenant at $((10 * flood_limit)) spans/s (10x its limit of $flood_limit):"
load --api-key "$flood_key" --connections 8 --rate $((10 * flood_limit)) > "$work/flood.json" &
flood=$!
load --api-key "$quiet_key" --connections 4 --rate "$quiet_rate" | summary quiet-beside
wait "$flood"
summary flood < "$work/flood.json"
