#!/usr/bin/env bash
# Ingest benchmark on a release build: starts `sightline serve` on a fresh data directory with
# the given durability, drives it with `sightline load` and prints the load tool's report
# (items/s, latency percentiles, server peak RSS) plus WAL and Parquet bytes per item.
#   scripts/bench-ingest.sh [fsync|batched] [load tool flags...]
#   e.g. scripts/bench-ingest.sh fsync --grpc --signal traces --connections 4 --duration 20s
# SLO_DIR=dir runs the server with --slo-dir dir (to measure the cost of live SLO counting).
# TLS=1 runs it with TLS on every listener (a CA and certificate made with openssl for the run)
# and the load tool with --ca-file.
# KEYS=1 creates API keys first, so every request is checked (the load tool sends an ingest
# key, the script an admin key for /metrics and the flush).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sightline-target}"
durability="${1:-fsync}"; shift || true
bin="$CARGO_TARGET_DIR/release/sightline"
[ -x "$bin" ] || cargo build --release --bin sightline
work=$(mktemp -d /tmp/sightline-bench.XXXXXX)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/sightline.toml" <<TOML
[storage]
durability = "$durability"
TOML
scheme=http; curl_tls=(); load_tls=()
if [ "${KEYS:-0}" = 1 ]; then
  mkdir -p "$work/data"
  load_tls+=(--api-key "$("$bin" keys create --data-dir "$work/data" --role ingest 2>/dev/null)")
  curl_tls+=(-H "Authorization: Bearer $("$bin" keys create --data-dir "$work/data" --role admin 2>/dev/null)")
fi
if [ "${TLS:-0}" = 1 ]; then
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 1 -subj /CN=bench-ca -keyout "$work/ca.key" \
    -out "$work/ca.pem" 2>/dev/null
  openssl req "${ec[@]}" -subj /CN=localhost -keyout "$work/server.key" -out "$work/server.csr" \
    2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$work/ext"
  openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 1 -extfile "$work/ext" -out "$work/server.pem" 2>/dev/null
  printf '[tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$work/server.pem" "$work/server.key" \
    >> "$work/sightline.toml"
  scheme=https; curl_tls+=(--cacert "$work/ca.pem"); load_tls+=(--ca-file "$work/ca.pem")
fi
"$bin" serve --config "$work/sightline.toml" --data-dir "$work/data" \
  --otlp-grpc-listen 127.0.0.1:0 --otlp-http-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --ready-file "$work/ready.json" ${SLO_DIR:+--slo-dir "$SLO_DIR"} > "$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$work/ready.json" ] && break; sleep 0.05; done
addr() { python3 -c "import json,sys; print(json.load(open('$work/ready.json'))['$1'])"; }
grpc=$(addr otlp_grpc); http=$(addr otlp_http); api=$(addr http)
args=()
for a in "$@"; do
  case "$a" in
    --grpc) args+=(--grpc "$grpc") ;;
    --http) args+=(--http "$http") ;;
    *) args+=("$a") ;;
  esac
done
"$bin" load "${args[@]}" "${load_tls[@]}" --server-pid "$pid"
metric() { curl -s "${curl_tls[@]}" "$scheme://$api/metrics" | awk -v m="$1" '$1 ~ "^"m {s += $2} END {print s+0}'; }
wal_bytes=$(metric sightline_wal_bytes_total)
items=$(metric sightline_ingest_accepted_items_total)
curl -s "${curl_tls[@]}" -XPOST "$scheme://$api/api/v1/flush" > /dev/null
parquet_bytes=$(find "$work/data" -name '*.parquet' -printf '%s\n' | awk '{s += $1} END {print s+0}')
python3 - "$wal_bytes" "$parquet_bytes" "$items" <<'PY'
import sys
wal, pq, items = (float(x) for x in sys.argv[1:])
if items:
    print(f"accepted items: {items:.0f}; WAL bytes/item: {wal / items:.1f}; Parquet bytes/item (all tables, before compaction): {pq / items:.1f}")
PY
