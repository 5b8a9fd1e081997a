#!/usr/bin/env bash
# The memory a replica needs per upstream server: the release proxy started with 1, 10 and 50
# fake stdio servers, its RSS and its children's once every server is ready. These figures feed
# the sizing table in deploy/README.md.
#
#   bash benches/replica-footprint.sh        # prints one line per server count
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin mcpo
bin="${CARGO_TARGET_DIR:-target}/release/mcpo"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
for n in 1 10 50; do
  python3 -c "import json,sys; n=int(sys.argv[1]); print(json.dumps({'mcpServers': {f's{i}': {'command': 'mcpo', 'args': ['fake-server', '--transport', 'stdio', '--id', f's{i}']} for i in range(n)}}))" "$n" > "$work/config.json"
  "$bin" serve --host 127.0.0.1 --port 0 --config "$work/config.json" > "$work/out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "serving on" "$work/out" && break; sleep 0.1; done
  addr=$(grep -o '127.0.0.1:[0-9]*' "$work/out" | head -1)
  for _ in $(seq 100); do curl -sf "http://$addr/readyz" >/dev/null && break; sleep 0.2; done
  proxy=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  children=$(for c in $(pgrep -P "$pid"); do awk '/VmRSS/ {print $2}' "/proc/$c/status"; done |
    awk '{s += $1; n++} END {printf "%d children, %.1f MB each", n, s / n / 1024}')
  awk -v n="$n" -v p="$proxy" -v c="$children" 'BEGIN {printf "servers=%-3d proxy RSS %.1f MB; %s\n", n, p / 1024, c}'
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
