#!/usr/bin/env bash
# Load run: the release build against a baseline measured in the same run, with wrk on 127.0.0.1.
#
#   bash benches/load.sh            # needs wrk (apt-get install wrk); Python mcpo is optional
#
# Scenarios (each 10 s): POST /echo on the fake stdio server at concurrency 1 and 16; the `slow`
# tool (20 ms of single-threaded work) with a pool of 1 and of 4 children at concurrency 16.
# If a Python mcpo 0.0.20 is installed (MCPO_PY=/path/to/mcpo; it runs only with mcp<2 and
# fastapi<0.129), the echo runs are repeated through it and the ratios printed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
target=${CARGO_TARGET_DIR:-target}
bin="$target/release/mcpo"
duration=${DURATION:-10s}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

post_script() { # $1 = body
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "'$1'" > "$work/post.lua"
}

start() { # $1 = port, rest = command; waits until the first call answers
  local port=$1; shift
  "$@" > "$work/$port.log" 2>&1 &
  for _ in $(seq 1 100); do
    curl -sf -XPOST "127.0.0.1:$port/echo" -H 'content-type: application/json' -d '{"message":"x"}' >/dev/null && return 0
    sleep 0.2
  done
  echo "server on $port did not come up" >&2; cat "$work/$port.log" >&2; exit 1
}

measure() { # $1 = label, $2 = url, $3 = connections; prints "label rps p50 p99"
  local threads=$(( $3 < 2 ? 1 : 2 ))
  wrk -t"$threads" -c"$3" -d"$duration" --latency -s "$work/post.lua" "$2" > "$work/wrk.out"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
  printf '%-34s %10s req/s   p50 %-9s p99 %-9s\n' "$1" "$rps" "$p50" "$p99"
  echo "$rps" > "$work/last"
}

rss_of() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$1/status"; }

echo "== mcpo (this build) =="
post_script '{"message":"hello"}'
start 18101 "$bin" --host 127.0.0.1 --port 18101 -- "$bin" fake-server --transport stdio
pid=$!
echo "idle RSS: $(rss_of $pid)"
measure "echo c=1" http://127.0.0.1:18101/echo 1; rs1=$(cat "$work/last")
measure "echo c=16" http://127.0.0.1:18101/echo 16; rs16=$(cat "$work/last")
echo "RSS after load: $(rss_of $pid)"
kill $pid

post_script '{"ms": 20}'
for pool in 1 4; do
  "$bin" --host 127.0.0.1 --port 18102 --pool-min-connections $pool --pool-max-connections $pool \
    -- "$bin" fake-server --transport stdio > "$work/pool.log" 2>&1 &
  pid=$!
  sleep 1
  measure "slow(20ms) pool=$pool c=16" http://127.0.0.1:18102/slow 16
  kill $pid; wait $pid 2>/dev/null || true
done

py=${MCPO_PY:-}
if [ -n "$py" ] && [ -x "$py" ]; then
  echo "== Python mcpo (baseline, same run) =="
  post_script '{"message":"hello"}'
  start 18103 "$py" --host 127.0.0.1 --port 18103 -- "$bin" fake-server --transport stdio
  pid=$!
  echo "idle RSS: $(rss_of $pid)"
  measure "echo c=1" http://127.0.0.1:18103/echo 1; py1=$(cat "$work/last")
  measure "echo c=16" http://127.0.0.1:18103/echo 16; py16=$(cat "$work/last")
  kill $pid
  awk -v a="$rs1" -v b="$py1" 'BEGIN {printf "ratio c=1:  %.1fx the baseline throughput\n", a / b}'
  awk -v a="$rs16" -v b="$py16" 'BEGIN {printf "ratio c=16: %.1fx the baseline throughput\n", a / b}'
fi
