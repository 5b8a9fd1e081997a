#!/usr/bin/env bash
# What observability costs: wrk on `POST /echo` (fake stdio server, c=16) with metrics on and
# off, alternated so both see the same machine, and the monitor's own cost per sample.
#
#   bash benches/metrics-overhead.sh          # MCPO_NEW=path skips the build; ROUNDS=3, DURATION=10s
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
if [ -z "${MCPO_NEW:-}" ]; then cargo build --release --quiet; fi
bin=${MCPO_NEW:-$PWD/${CARGO_TARGET_DIR:-target}/release/mcpo}
rounds=${ROUNDS:-3}; duration=${DURATION:-10s}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
  "'{\"message\":\"x\"}'" > "$work/post.lua"
printf '{"mcpServers":{"f":{"command":"%s","args":["fake-server","--transport","stdio","--id","mo"]}}}' "$bin" > "$work/c.json"
start() { # env assignments...
  env "$@" "$bin" --host 127.0.0.1 --port 0 --config "$work/c.json" > "$work/proxy.out" 2>/dev/null &
  echo $! > "$work/pid"
  for _ in $(seq 200); do grep -q "serving on" "$work/proxy.out" && break; sleep 0.05; done
  base=$(grep -o 'http://[0-9.:]*' "$work/proxy.out" | head -1)
  for _ in $(seq 100); do curl -sf -XPOST "$base/f/echo" -H 'content-type: application/json' -d '{"message":"w"}' >/dev/null && break; sleep 0.1; done
}
stop() { kill "$(cat "$work/pid")" 2>/dev/null || true; wait "$(cat "$work/pid")" 2>/dev/null || true; }
rps() { wrk -t2 -c16 -d"$duration" -s "$work/post.lua" "$base/f/echo" | awk '/Requests\/sec/ {print $2}'; }
on=(); off=()
for r in $(seq "$rounds"); do
  start MCPO_METRICS_ENABLED=true; on+=("$(rps)"); stop
  start MCPO_METRICS_ENABLED=false; off+=("$(rps)"); stop
done
python3 - "${on[*]}" "${off[*]}" <<'PY'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]; off = [float(x) for x in sys.argv[2].split()]
print(f"metrics on : {', '.join(f'{x:.0f}' for x in on)} req/s (median {statistics.median(on):.0f})")
print(f"metrics off: {', '.join(f'{x:.0f}' for x in off)} req/s (median {statistics.median(off):.0f})")
print(f"ratio on/off (medians): {statistics.median(on) / statistics.median(off):.3f}")
PY
# The monitor: sample every second for 20 s, then read its measured cost per sample.
start MCPO_MONITOR_INTERVAL=1
sleep 20
curl -s "$base/diagnostics" > "$work/diag.json"
python3 - "$work/diag.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["monitor"]
cost, n = m["mean_sample_cost_ms"], m["samples"]
print(f"monitor: {n} samples, {cost:.2f} ms each; at the default 30 s interval that is {cost / 30000 * 100:.4f}% of one core")
PY
stop
